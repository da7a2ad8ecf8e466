# Two commands on a fresh machine (see README):
#   make book   set up, execute every chapter (profile smoke; PROFILE=full for the GPU profile), build the HTML
#   make test   set up, build the book (smoke), run the whole test suite (closed forms, behaviour, chapters, browser)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PROFILE ?= smoke

.PHONY: setup browser book test bench clean
setup: $(VENV)/.installed
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	touch $@

# Debian's chromium for the browser tests (never a browser download from playwright)
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@chromium --version

book: setup
	$(PY) -m lib.book build --profile $(PROFILE)

test: setup browser
	$(PY) -m lib.book build --profile smoke
	BOOK_HTML=_build/html $(PY) -m pytest

bench: setup
	$(PY) -m lib.bench scan
	$(PY) -m lib.bench train

clean:
	rm -rf _build .build _vendor chapters/*.ipynb
