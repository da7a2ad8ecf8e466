"""Every chapter of the book executes under papermill with the smoke profile.

One test per ``chapters/*.md`` (MyST-markdown notebook): it is converted with jupytext and executed
with papermill exactly as ``python -m lib.book build`` does (kernel ``python3``, working directory
``chapters/``, ``profile="smoke"``, ``BOOK_BUILD=1``), into a temporary folder, so the working tree's
``chapters/*.ipynb`` are left alone. A failure names the chapter, the ``.md`` line and the cell.

With ``BOOK_KEEP_EXECUTED=1`` the executed notebooks go to ``chapters/NAME.ipynb`` instead, exactly
where the builder puts them, so a following ``python -m lib.book build --profile smoke --reuse``
builds the HTML without executing any chapter a second time (CI does this).
"""
import os
from pathlib import Path

import pytest

from lib import book

CHAPTERS = sorted(p.stem for p in book.CHAPTERS.glob("*.md"))


def test_every_chapter_source_is_in_the_toc():
    """Every chapter source is listed in _toc.yml (a chapter missing from the toc would never be built)."""
    toc = book.toc_chapters()
    assert toc[0] == "intro" and toc[-1] == "rerun", toc
    stray = [name for name in CHAPTERS if name not in toc]
    assert not stray, f"chapters/*.md not listed in _toc.yml: {stray}"


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_executes(name, tmp_path):
    keep = os.environ.get("BOOK_KEEP_EXECUTED", "") not in ("", "0")
    output = book.executed(name) if keep else tmp_path / f"{name}.ipynb"
    result = book.execute_chapter(name, "smoke", output=output)
    if not result.ok:
        pytest.fail(result.message, pytrace=False)
    assert Path(result.output).exists()
