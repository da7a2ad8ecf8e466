"""Where a record came from: the code's commit, the package versions, the command line, the device
(one implementation, used by the trainer, the baseline and the benchmarks)."""
from __future__ import annotations

import datetime as _dt
import platform
import subprocess
import sys
from pathlib import Path
from typing import Iterable

from lib.records import VERSION_KEYS

__all__ = ["provenance", "git_commit", "versions"]

# --------------------------------------------------------------------------------------------
# provenance helpers (for the trainer and the baseline)
# --------------------------------------------------------------------------------------------
_REPO_ROOT = Path(__file__).resolve().parents[1]


def _version(dist: str) -> str:
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def _command_line() -> str:
    """``python -m lib.run ...`` for a module of this repository run with -m, else the argv."""
    import shlex

    if not sys.argv or not sys.argv[0]:
        return ""
    prog = Path(sys.argv[0])
    args = " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        rel = prog.resolve().relative_to(_REPO_ROOT)
    except (ValueError, OSError):
        rel = None
    if rel is not None and rel.suffix == ".py" and rel.parts[0] == "lib":
        return f"python -m {'.'.join(rel.with_suffix('').parts)} {args}".strip()
    return " ".join([Path(sys.executable).name, shlex.quote(sys.argv[0]), args]).strip()


def git_commit() -> tuple[str, bool]:
    """``(sha, dirty)`` of this checkout (``dirty``: uncommitted changes to tracked files). Outside a
    git checkout (a copy of the tree sent to a GPU machine, say) it is ``$LOOPED_SSM_COMMIT`` (with
    ``dirty`` = ``$LOOPED_SSM_DIRTY == "1"``) when set, else ``("unknown", False)``."""
    import os

    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_REPO_ROOT, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_REPO_ROOT,
                                    capture_output=True, text=True, timeout=10, check=True).stdout.strip())
        return sha or "unknown", dirty
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("LOOPED_SSM_COMMIT") or "unknown", os.environ.get("LOOPED_SSM_DIRTY") == "1"


def versions(extra: Iterable[str] = ()) -> dict:
    """Installed versions of ``VERSION_KEYS`` (and ``extra``) from package metadata (no import of JAX)."""
    out = {k: _version(k) for k in VERSION_KEYS if k != "python"}
    out["python"] = platform.python_version()
    out.update({k: _version(k) for k in extra})
    return out


def provenance(*, device: str = "cpu", n_devices: int = 1, command: str | None = None,
               extra_versions: Iterable[str] = ()) -> dict:
    """The bookkeeping fields every record carries: ``versions``, ``commit``, ``dirty``,
    ``device``, ``n_devices``, ``command``, ``created``. Reads installed versions from package
    metadata (no import of JAX) and the git state of this checkout ("unknown" outside git)."""
    versions_ = versions(extra_versions)
    commit, dirty = git_commit()
    if command is None:
        command = _command_line()
    return {"versions": versions_, "commit": commit, "dirty": dirty, "device": device,
            "n_devices": int(n_devices), "command": command,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


