"""Build the book: jupytext -> papermill (profile) -> Jupyter Book 1 (execution off, strict).

Command line (run from anywhere; paths are relative to the repository root)::

    python -m lib.book build [--profile smoke|full] [--chapters NAME ...] [--reuse] [--out _build] [--timeout S]
    python -m lib.book execute CHAPTER [--profile smoke|full] [--out PATH]
    python -m lib.book vendor            # only write _vendor/ (vega bundle + MathJax)

``build`` does, in order:

1. reads the chapter list from ``_toc.yml`` (every ``file: chapters/NAME``; other pages such as ``api`` are
   plain Markdown and need no execution);
2. for each chapter to execute: converts ``chapters/NAME.md`` (MyST-markdown notebook) with jupytext into
   ``.build/src/NAME.ipynb`` and executes it with papermill (kernel ``python3``, working directory
   ``chapters/``, parameters ``{"profile": PROFILE}``, environment ``BOOK_BUILD=1``, ``BOOK_PROFILE``,
   ``PYTHONPATH`` = the repository root). A chapter that succeeds is written to ``chapters/NAME.ipynb``
   (gitignored), which is what Sphinx renders; one that fails prints one line naming the chapter, the
   ``.md`` line and the cell, keeps its partial output in ``.build/failed/NAME.ipynb``, and the other
   chapters are still tried;
3. writes ``_vendor/``: ``vega-bundle.js`` (``lib.viz.write_vendor``) and ``mathjax/`` (npm package
   ``mathjax@3.2.2``, fetched once with ``npm pack`` into ``.build/npm/`` and checked against its sha1);
4. runs ``jupyter-book build --all -W -n --keep-going .`` into a fresh ``_build/html`` (execution off:
   ``_config.yml``), only if every chapter executed.

Which chapters: without ``--chapters`` every chapter in ``_toc.yml`` must have its ``.md`` source, or the
build stops before executing anything and names the missing ones (exit 2). With ``--chapters A B`` only
those are executed; every other chapter in the toc is filled with its last executed notebook if that was
made from the current source with the same profile ("reused"), else with a one-cell stub page saying it
was not built ("stub"). ``--reuse`` skips executing any selected chapter whose executed notebook is
still current in that sense (a quick rebuild after editing one chapter; note that only the chapter's
``.md`` and the profile are compared, not ``lib/`` or the data, so do not use it after changing those). So ``_toc.yml`` never changes, every cross-reference resolves, and a stub can never
pass for a real chapter (its page says so, and a full build replaces it).

Exit codes: 0 success; 1 a chapter failed or the Sphinx build had warnings/errors; 2 usage or setup error
(missing chapter sources, unknown chapter, MathJax could not be vendored).

The Sphinx extension named in ``_config.yml`` (``local_extensions``) is ``lib.book_sphinx`` (the generated
API page; re-exported here). Importing this module is cheap and side-effect free.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
WORK = ROOT / ".build"
VENDOR = ROOT / "_vendor"
TOC = ROOT / "_toc.yml"

BOOK_PROFILES = {  # how a chapter runs (its papermill `profile`); the training profiles are lib.profiles.PROFILES
    "smoke": "CPU, minutes: every code path on tiny data/few steps; what CI and the chapter tests run",
    "full": "GPU, hours: the paper's protocol (all data sets, 5 seeds); what the committed results come from",
}
KERNEL = "python3"
MATHJAX = {"name": "mathjax", "version": "3.2.2", "sha1": "c754d7b46a679d7f3fa03543d6b8bf124ddf9f6b"}
# parts of the mathjax package's es5/ folder the book serves: the combined TeX component and what it
# loads on demand (TeX extensions, fonts, menu, accessibility)
MATHJAX_PARTS = ("tex-mml-chtml.js", "input/", "output/", "ui/", "a11y/", "sre/", "adaptors/")


# --------------------------------------------------------------------------------------------- chapters
def toc_files(toc: Path = TOC) -> list[str]:
    """Every page of ``_toc.yml`` (root first, then the entries in book order), as written there."""
    import yaml

    data = yaml.safe_load(Path(toc).read_text(encoding="utf-8"))
    files = [data["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    walk(data.get("chapters"))
    for part in data.get("parts") or []:
        walk(part.get("chapters"))
    return files


def toc_chapters(toc: Path = TOC) -> list[str]:
    """Names of the chapters (``chapters/NAME`` entries of ``_toc.yml``, root first), in book order."""
    return [f.split("/", 1)[1] for f in toc_files(toc) if f.startswith("chapters/")]


def source(name: str) -> Path:
    return CHAPTERS / f"{name}.md"


def executed(name: str) -> Path:
    return CHAPTERS / f"{name}.ipynb"


def source_hash(name: str) -> str:
    return hashlib.sha256(source(name).read_bytes()).hexdigest()


def chapter_title(name: str) -> str:
    """The first ``# `` heading of the chapter's source (after any front matter), else its name."""
    path = source(name)
    if path.exists():
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)
        match = re.search(r"^# (.+)$", text, flags=re.M)
        if match:
            return match.group(1).strip()
    return name.replace("_", " ").capitalize()


@dataclass
class Result:
    """What happened to one chapter in a build."""

    name: str
    status: str  # "executed", "failed", "reused", "stub"
    seconds: float = 0.0
    message: str = ""
    output: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status != "failed"


def _kernel_env(profile: str) -> dict:
    """Environment for papermill's kernel: it inherits os.environ of this process."""
    pythonpath = os.environ.get("PYTHONPATH", "")
    parts = [str(ROOT)] + [p for p in pythonpath.split(os.pathsep) if p and p != str(ROOT)]
    return {"BOOK_BUILD": "1", "BOOK_PROFILE": profile, "PYTHONPATH": os.pathsep.join(parts)}


class _environ:
    def __init__(self, values: dict):
        self.values, self.saved = values, {}

    def __enter__(self):
        for key, value in self.values.items():
            self.saved[key] = os.environ.get(key)
            os.environ[key] = value

    def __exit__(self, *exc):
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _md_line(name: str, cell_source: str) -> int | None:
    """Line number in ``chapters/NAME.md`` of the first non-blank line of a cell's source."""
    first = next((line for line in cell_source.splitlines() if line.strip()), None)
    if first is None or not source(name).exists():
        return None
    for number, line in enumerate(source(name).read_text(encoding="utf-8").splitlines(), 1):
        if line.rstrip() == first.rstrip():
            return number
    return None


def _failure_line(name: str, error) -> str:
    """One line: chapter, ``.md`` line of the failing statement, code cell number, cell start, error."""
    cell_source = error.source or ""
    start = _md_line(name, cell_source)
    line = start
    tb = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error.traceback or []))
    within = re.search(r"Cell In\[\d*\], line (\d+)", tb)
    if start is not None and within:
        line = start + int(within.group(1)) - 1
    number = None
    if start is not None:
        lines = source(name).read_text(encoding="utf-8").splitlines()[:start]
        number = sum(1 for l in lines if l.startswith("```{code-cell}"))
    first = next((l.strip() for l in cell_source.splitlines() if l.strip()), "")
    evalue = (error.evalue or "").strip().splitlines()
    return (f"FAILED chapters/{name}.md{':' + str(line) if line else ''} "
            f"(code cell {number if number else '?'}, starting {first[:50]!r}): "
            f"{error.ename}: {evalue[0][:200] if evalue else ''}")


def _strip_widgets(nb) -> int:
    """Drop ipywidgets state and views from an executed notebook (the static book never loads widget JS).

    Returns how many widget views were removed; their text/plain fallback stays.
    """
    removed = 0
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data:
                data.pop("application/vnd.jupyter.widget-view+json")
                removed += 1
    return removed


def _show_injected_parameters(nb) -> None:
    """Hide the chapter's own ``parameters`` cell when papermill injected the values used after it.

    The page then shows one cell, papermill's ``# Parameters`` cell, with the profile it was built with.
    """
    if not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells):
        return
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")


def convert(name: str):
    """The chapter's MyST source as a notebook object (jupytext), checked for a ``parameters`` cell."""
    import jupytext

    path = source(name)
    if not path.exists():
        raise FileNotFoundError(f"chapters/{name}.md does not exist")
    nb = jupytext.read(path, fmt="md:myst")
    if not any("parameters" in cell.metadata.get("tags", []) for cell in nb.cells):
        raise ValueError(f"chapters/{name}.md has no code cell tagged `parameters` (it needs `profile = \"smoke\"`)")
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    return nb


def execute_chapter(name: str, profile: str = "smoke", output: Path | None = None,
                    timeout: float | None = None) -> Result:
    """Execute one chapter with papermill; never raises for a chapter failure (see ``Result.message``).

    ``output`` defaults to ``chapters/NAME.ipynb``; it is written only when the chapter succeeds (the
    partial notebook of a failed run goes to ``.build/failed/NAME.ipynb``).
    """
    import nbformat
    import papermill

    start = time.perf_counter()
    where = f"chapters/{name}.md"
    output = Path(output) if output is not None else executed(name)
    try:
        nb = convert(name)
    except (FileNotFoundError, ValueError) as error:
        return Result(name, "failed", time.perf_counter() - start, f"FAILED {where}: {error}")
    src = WORK / "src" / f"{name}.ipynb"
    src.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, src)
    partial = WORK / "failed" / f"{name}.ipynb"
    partial.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _environ(_kernel_env(profile)):
            out = papermill.execute_notebook(
                str(src), str(partial), parameters={"profile": profile}, kernel_name=KERNEL,
                cwd=str(CHAPTERS), progress_bar=False, log_output=False, execution_timeout=timeout,
            )
    except papermill.PapermillExecutionError as error:
        message = _failure_line(name, error)
        return Result(name, "failed", time.perf_counter() - start, message, partial)
    except Exception as error:  # kernel died, timeout, papermill/nbclient errors
        text = str(error).strip().splitlines()
        message = f"FAILED {where}: {type(error).__name__}: {text[0][:200] if text else ''}"
        return Result(name, "failed", time.perf_counter() - start, message, partial)
    seconds = time.perf_counter() - start
    widgets = _strip_widgets(out)
    _show_injected_parameters(out)
    out.metadata["book"] = {"source_sha256": source_hash(name), "profile": profile, "seconds": round(seconds, 2)}
    output.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(out, output)
    partial.unlink(missing_ok=True)
    note = f"{widgets} ipywidget view(s) dropped: guard them with lib.viz.live()" if widgets else ""
    return Result(name, "executed", seconds, note, output)


def _reusable(name: str, profile: str) -> bool:
    path = executed(name)
    if not (path.exists() and source(name).exists()):
        return False
    try:
        meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {}).get("book", {})
    except (OSError, ValueError):
        return False
    return meta.get("source_sha256") == source_hash(name) and meta.get("profile") == profile


def write_stub(name: str, profile: str, reason: str) -> Path:
    """A one-cell notebook standing in for a chapter this build did not execute."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    nb.metadata["book"] = {"stub": True, "profile": profile}
    nb.cells.append(nbformat.v4.new_markdown_cell(
        f"# {chapter_title(name)}\n\n"
        ":::{warning}\n"
        f"This chapter was not built in this build of the book: {reason}. "
        "Build the whole book with `python -m lib.book build` (see the chapter on rerunning the book).\n"
        ":::\n"
    ))
    path = executed(name)
    nbformat.write(nb, path)
    return path


# --------------------------------------------------------------------------------------------- vendor
def vendor_mathjax(folder: Path = VENDOR) -> Path:
    """Serve MathJax from the book itself: ``folder/mathjax/`` from the npm tarball (``npm pack``, cached)."""
    target = Path(folder) / "mathjax"
    stamp = target / ".version"
    if stamp.exists() and stamp.read_text().strip() == MATHJAX["version"]:
        return target
    cache = WORK / "npm"
    cache.mkdir(parents=True, exist_ok=True)
    tgz = cache / f"{MATHJAX['name']}-{MATHJAX['version']}.tgz"
    if not tgz.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not installed (Debian: apt-get install -y npm); it fetches MathJax once")
        run = subprocess.run([npm, "pack", f"{MATHJAX['name']}@{MATHJAX['version']}", "--silent",
                              "--pack-destination", str(cache)], capture_output=True, text=True)
        if run.returncode != 0 or not tgz.exists():
            raise RuntimeError(f"npm pack {MATHJAX['name']}@{MATHJAX['version']} failed: {run.stderr.strip()[-300:]}")
    digest = hashlib.sha1(tgz.read_bytes()).hexdigest()
    if digest != MATHJAX["sha1"]:
        tgz.unlink()
        raise RuntimeError(f"{tgz.name} has sha1 {digest}, expected {MATHJAX['sha1']}; removed, try again")
    if target.exists():
        shutil.rmtree(target)
    with tarfile.open(tgz) as archive:
        for member in archive.getmembers():
            rel = member.name.removeprefix("package/")
            if rel == "LICENSE":
                keep = True
            elif rel.startswith("es5/"):
                rel = rel.removeprefix("es5/")
                keep = any(rel == p or (p.endswith("/") and rel.startswith(p)) for p in MATHJAX_PARTS)
            else:
                keep = False
            if keep and member.isfile():
                dest = target / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(archive.extractfile(member).read())
    stamp.write_text(MATHJAX["version"] + "\n")
    return target


def vendor(folder: Path = VENDOR) -> list[Path]:
    """Everything the built pages load besides Sphinx's own static files."""
    from lib import viz

    written = [viz.write_vendor(folder), vendor_mathjax(folder)]  # these create the folder
    css = Path(folder) / "book.css"  # the book's style rules (_config.yml: html_css_files)
    css.write_text((Path(__file__).with_name("book.css")).read_text())
    return written + [css]


# --------------------------------------------------------------------------------------------- sphinx
def _html_root(out: Path) -> tuple[Path, Path]:
    """(``--path-output`` for jupyter-book, the html folder it will write). JB1 always appends ``_build``."""
    out = Path(out).resolve()
    base = out.parent if out.name == "_build" else out
    return base, base / "_build" / "html"


def sphinx_build(out: Path = ROOT / "_build", profile: str = "smoke") -> tuple[int, Path]:
    """``jupyter-book build --all -W -n --keep-going`` into a fresh html folder; returns (exit code, html dir)."""
    base, html = _html_root(out)
    for stale in (html, html.parent / ".doctrees", html.parent / "jupyter_execute"):
        if stale.exists():
            shutil.rmtree(stale)
    exe = Path(sys.executable).with_name("jupyter-book")
    command = [str(exe) if exe.exists() else "jupyter-book", "build", "--all", "-W", "-n", "--keep-going"]
    if base != ROOT:
        command += ["--path-output", str(base)]
    command.append(str(ROOT))
    env = {**os.environ, **_kernel_env(profile)}
    return subprocess.run(command, cwd=ROOT, env=env).returncode, html


# --------------------------------------------------------------------------------------------- commands
def _print(result: Result) -> None:
    line = f"  {result.name:<14} {result.status:<9} {result.seconds:7.1f} s"
    if result.message and result.ok:
        line += f"   ({result.message})"
    print(line, flush=True)
    if not result.ok:
        print(result.message, flush=True)


def build(profile: str = "smoke", chapters: list[str] | None = None, out: Path = ROOT / "_build",
          timeout: float | None = None, reuse: bool = False) -> int:
    start = time.perf_counter()
    toc = toc_chapters()
    if chapters:
        unknown = [c for c in chapters if c not in toc]
        if unknown:
            print(f"error: not chapters of _toc.yml: {', '.join(unknown)} (chapters: {', '.join(toc)})")
            return 2
        selected = [c for c in toc if c in chapters]
    else:
        missing = [f"chapters/{c}.md" for c in toc if not source(c).exists()]
        if missing:
            print(f"error: _toc.yml lists chapters whose source does not exist: {', '.join(missing)}. "
                  f"Write them, or build the others with --chapters (the missing ones become stub pages).")
            return 2
        selected = toc
    print(f"book: profile={profile}; executing {len(selected)} of {len(toc)} chapters with papermill", flush=True)
    results = []
    for name in toc:
        if name in selected and reuse and _reusable(name, profile):
            result = Result(name, "reused", 0.0, "--reuse: executed notebook is current")
        elif name in selected:
            result = execute_chapter(name, profile, timeout=timeout)
            if not result.ok:
                executed(name).unlink(missing_ok=True)
        elif _reusable(name, profile):
            result = Result(name, "reused", 0.0, "last executed notebook, same source and profile")
        else:
            reason = ("its source does not exist yet" if not source(name).exists()
                      else "it was not among the chapters selected with --chapters")
            write_stub(name, profile, reason)
            result = Result(name, "stub", 0.0, reason)
        _print(result)
        results.append(result)
    failed = [r for r in results if not r.ok]
    executed_seconds = sum(r.seconds for r in results)
    if failed:
        print(f"book: {len(failed)} chapter(s) failed; the book was not built. Partial notebooks: .build/failed/")
        for result in failed:
            print(result.message)
        return 1
    try:
        t = time.perf_counter()
        vendor()
        vendor_seconds = time.perf_counter() - t
    except RuntimeError as error:
        print(f"error: could not vendor the book's JavaScript: {error}")
        return 2
    t = time.perf_counter()
    code, html = sphinx_build(out, profile)
    sphinx_seconds = time.perf_counter() - t
    total = time.perf_counter() - start
    print(f"book: chapters {executed_seconds:.1f} s, vendor {vendor_seconds:.1f} s, "
          f"jupyter-book {sphinx_seconds:.1f} s, total {total:.1f} s")
    if code != 0:
        print(f"book: jupyter-book build failed (exit {code}); see the warnings above and {html.parent}/html/reports/")
        return 1
    stubs = [r.name for r in results if r.status == "stub"]
    print(f"book: built {html / 'index.html'}" + (f" (stub pages: {', '.join(stubs)})" if stubs else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.book", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="execute the chapters, vendor the JS, build the HTML book")
    b.add_argument("--profile", choices=sorted(BOOK_PROFILES), default="smoke")
    b.add_argument("--chapters", nargs="+", metavar="NAME", help="execute only these (others: reused or stubs)")
    b.add_argument("--out", type=Path, default=ROOT / "_build", help="build folder (html goes to OUT/html)")
    b.add_argument("--timeout", type=float, default=None, help="per-cell timeout in seconds (default: none)")
    b.add_argument("--reuse", action="store_true",
                   help="skip executing a chapter whose executed notebook came from the same .md and "
                        "profile (changes to lib/ or data are not noticed)")
    e = sub.add_parser("execute", help="execute one chapter with papermill")
    e.add_argument("chapter")
    e.add_argument("--profile", choices=sorted(BOOK_PROFILES), default="smoke")
    e.add_argument("--out", type=Path, default=None, help="executed notebook (default chapters/NAME.ipynb)")
    e.add_argument("--timeout", type=float, default=None)
    sub.add_parser("vendor", help="write _vendor/ (vega bundle, MathJax) only")
    args = parser.parse_args(argv)

    if args.command == "build":
        return build(args.profile, args.chapters, args.out, args.timeout, args.reuse)
    if args.command == "execute":
        name = Path(args.chapter).stem
        if not source(name).exists():
            print(f"error: chapters/{name}.md does not exist")
            return 2
        result = execute_chapter(name, args.profile, args.out, args.timeout)
        _print(result)
        if result.ok:
            print(f"wrote {result.output}")
        return 0 if result.ok else 1
    try:
        for path in vendor():
            print(f"wrote {path}")
    except RuntimeError as error:
        print(f"error: {error}")
        return 2
    return 0


# --------------------------------------------------------------------------------------------- Sphinx extension
from lib.book_sphinx import API_DOCNAME, lib_modules, setup  # noqa: E402,F401  (one home: lib.book_sphinx)


if __name__ == "__main__":
    sys.exit(main())
