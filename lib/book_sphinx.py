"""The book's Sphinx extension (``_config.yml``: ``local_extensions``), used by ``python -m lib.book build``.

``setup(app)`` fills ``api.md`` with one autodoc section per module found under ``lib/`` (``lib_modules``),
so the API page follows the code without being edited; shows any docstring that is not valid
reStructuredText verbatim instead of breaking the strict build, and command lines in docstrings as
copyable code blocks; and drops sphinx-thebe's assets, which this book does not use. Importing this module
is cheap and side-effect free.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

API_DOCNAME = "api"
_IGNORED_DOCUTILS = ("Unknown interpreted text role", "Unknown directive type", "No role entry", "No directive entry")


def lib_modules() -> list[str]:
    """Every module of the ``lib`` package found on disk, package first, in path order."""
    names = []
    for path in sorted((ROOT / "lib").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__main__" or any(p.startswith((".", "_")) and p != "__init__" for p in parts):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return sorted(set(names), key=lambda n: (n != "lib", n))


def _api_source(app, docname, content):
    if docname != API_DOCNAME:
        return
    blocks = []
    for module in lib_modules():
        blocks.append(f"\n## `{module}`\n\n```{{eval-rst}}\n.. automodule:: {module}\n   :members:\n```\n")
    content[0] = content[0] + "\n" + "".join(blocks)


def _docutils_problems(text: str) -> list[str]:
    """Warnings and errors plain docutils reports for ``text`` (Sphinx-only roles/directives ignored)."""
    import docutils.core

    stream = io.StringIO()
    try:
        docutils.core.publish_doctree(
            text, settings_overrides={"report_level": 2, "halt_level": 5, "warning_stream": stream,
                                      "file_insertion_enabled": False, "raw_enabled": False})
    except Exception as error:  # pragma: no cover - docutils itself failed
        return [str(error)]
    problems = re.findall(r"^.*\((?:WARNING|ERROR|SEVERE)/\d\).*$", stream.getvalue(), flags=re.M)
    return [p for p in problems if not any(s in p for s in _IGNORED_DOCUTILS)]


_COMMAND = re.compile(r"^(\$ )?(\.venv/bin/)?(python3? -m |jupyter-book |make |papermill |tools/|bash )")


def _commands_as_code(lines: list[str]) -> list[str]:
    """Make every indented paragraph of command lines a ``code-block:: bash``.

    A docstring's usage block (indented ``python -m lib.bench scan ...`` lines after a plain paragraph) is a
    block quote to reStructuredText: its lines are joined into one and ``--flag`` becomes an en dash, so
    nothing on the page could be copied. A block already introduced by ``::`` or a directive is left alone.
    """
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        indent = len(line) - len(line.lstrip())
        previous = next((p for p in reversed(out) if p.strip()), "")
        literal_before = previous.rstrip().endswith("::") or previous.lstrip().startswith(".. ")
        if (indent and _COMMAND.match(line.strip()) and not (out and out[-1].strip())
                and not literal_before and (len(previous) - len(previous.lstrip())) < indent):
            block = []
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) >= indent):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            base = " " * (len(previous) - len(previous.lstrip()))
            out += [base + ".. code-block:: bash", ""] + [base + "   " + b[indent:] if b.strip() else "" for b in block] + [""]
            continue
        out.append(line)
        i += 1
    return out


def _safe_docstring(app, what, name, obj, options, lines):
    """Show a docstring that is not valid reStructuredText verbatim rather than fail the strict build;
    show command lines as copyable code blocks (``_commands_as_code``)."""
    if not lines:
        return
    shown = _commands_as_code(lines)
    if _docutils_problems("\n".join(shown)):
        shown = ["::", ""] + ["    " + line for line in lines] + [""]
    lines[:] = shown


# sphinx-thebe is a default extension of Jupyter Book 1 that this book does not use (no launch buttons, no
# live kernels: ``launch_buttons.thebe: false``); it still adds its config script (``const THEBE_JS_URL``)
# to every page, twice, which is a SyntaxError in the browser. Its assets are dropped from every page.
_THEBE = re.compile(r"THEBE_JS_URL|sphinx-thebe|thebe@")


def _drop_thebe(app, pagename, templatename, context, doctree):
    for key in ("script_files", "css_files"):
        if key in context:
            context[key] = [a for a in context[key]
                            if not _THEBE.search(str(getattr(a, "filename", "") or a)
                                                 + str(getattr(a, "attributes", {}).get("body", "")))]


def _one_search_field(app, config):
    """pydata-sphinx-theme 0.17 puts its search field into a header bar above every page unless
    ``navbar_persistent`` is set; sphinx-book-theme has one in the sidebar already, so the bar showed
    nothing but a second search field. An empty ``navbar_persistent`` (the book sets no other navbar
    item) leaves the header empty, so it is not drawn."""
    config.html_theme_options = dict(config.html_theme_options or {})
    config.html_theme_options.setdefault("navbar_persistent", [])


def setup(app):
    """Sphinx extension: generated API page (see the module docstring); no thebe assets; one search field."""
    app.connect("config-inited", _one_search_field)
    app.connect("source-read", _api_source)
    app.connect("autodoc-process-docstring", _safe_docstring)
    app.connect("html-page-context", _drop_thebe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
