"""Carry the checkpoints of configurations still training across sessions whose machine goes away.

A configuration can take longer than a session (SelfRegulationSCP1 LrcSSM without reshaping: about
7 core-hours at 1 core), and its checkpoint lives in ``$LOOPED_SSM_CKPT_DIR``, which a new machine does
not have. So at a session's end, after stopping the grid (``kill -TERM``: it checkpoints at the last
evaluation), the checkpoints are committed into ``data/carry/ckpt/``; the next session copies them back
and removes the folder. Run from the repository root::

    python tools/carry.py save    [--ckpt DIR]   # commit DIR's checkpoints into data/carry (only that folder)
    python tools/carry.py restore [--ckpt DIR]   # copy them into DIR; remove data/carry in a commit

``DIR`` defaults to ``$LOOPED_SSM_CKPT_DIR`` (else ``.ckpt/``, as ``lib.run``). Every checkpoint is read
first (an unreadable one is an error and nothing is copied or committed). ``save`` refuses to run while
the carry folder holds a checkpoint that DIR lacks (not yet restored: saving would lose it), and
writes ``data/carry/README.md``, a table of what is carried (configuration, step, CPU seconds).
``restore`` never overwrites a checkpoint that is further along (a larger step) than the carried one.
``--no-commit``: copy only. Nothing to carry or restore: exit 0, no commit.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

CARRY = Path("data/carry")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # lib, when run as a script from any folder


def _git(*args, check=True) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=check).stdout


def progress(path: Path) -> dict:
    """``{"step", "seed_steps", "cpu_s", "wall_s"}`` of a checkpoint; ValueError naming it if unreadable."""
    from lib.store import load_checkpoint

    try:
        meta, _ = load_checkpoint(path)
        return {"step": int(meta["step"]), "seed_steps": int(meta["seed_steps"]),
                "cpu_s": meta.get("cpu_s"), "wall_s": float(meta["wall_s"])}
    except Exception as e:  # noqa: BLE001  NumPy, zipfile, JSON and key errors alike: one message
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None


def _copy(src: Path, dst: Path) -> None:
    """Copy whole or not at all (a temporary file, then an atomic rename)."""
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _readme(rows: list[tuple[str, dict]]) -> str:
    lines = ["# Checkpoints carried across sessions", "",
             "Configurations still training when a session ended (written by `python tools/carry.py save`).",
             "Next session: `python tools/carry.py restore` copies them into `$LOOPED_SSM_CKPT_DIR` and removes",
             "this folder in a commit; the grid then resumes them.", "",
             "| checkpoint | step | seed-steps | CPU seconds so far |", "|---|---:|---:|---:|"]
    for name, p in rows:
        cpu = f"{p['cpu_s']:.0f}" if p.get("cpu_s") is not None else "not counted"
        lines.append(f"| `{name}` | {p['step']} | {p['seed_steps']} | {cpu} |")
    return "\n".join(lines) + "\n"


def save(ckpt: Path, commit: bool) -> int:
    found = sorted(ckpt.glob("*.npz")) if ckpt.is_dir() else []
    rows = [(f.name, progress(f)) for f in found]  # all read before anything is written
    names = {n for n, _ in rows}
    unrestored = [f.name for f in sorted((CARRY / "ckpt").glob("*.npz")) if f.name not in names]
    if unrestored:  # carried from an earlier session and not in DIR: saving would lose them
        raise ValueError(f"data/carry holds checkpoints that {ckpt} lacks ({', '.join(unrestored)}); "
                         "run `python tools/carry.py restore` first")
    if not rows:
        print(f"nothing to carry: no checkpoints in {ckpt}")
        return 0
    (CARRY / "ckpt").mkdir(parents=True, exist_ok=True)
    for f in found:
        _copy(f, CARRY / "ckpt" / f.name)
    (CARRY / "README.md").write_text(_readme(rows), encoding="utf-8")
    subject = (f"carry: {len(rows)} checkpoint(s) in flight: "
               + "; ".join(f"{n.rsplit('_', 1)[0]} step {p['step']}" for n, p in rows))
    if commit:
        _git("add", "-A", "--", str(CARRY))
        _git("commit", "-q", "-m", subject, "--only", "--", str(CARRY))
    print(subject)
    return 0


def restore(ckpt: Path, commit: bool) -> int:
    carried = sorted((CARRY / "ckpt").glob("*.npz"))
    if not carried:
        print("nothing to restore")
        return 0
    plan = []
    for f in carried:  # all read before anything is copied
        here = ckpt / f.name
        p = progress(f)
        mine = progress(here)["step"] if here.exists() else -1
        if mine >= p["step"]:
            print(f"kept {here} (step {mine} >= carried step {p['step']})")
            continue
        plan.append((f, here, p))
    ckpt.mkdir(parents=True, exist_ok=True)
    for f, here, p in plan:
        _copy(f, here)
        print(f"restored {here} (step {p['step']})")
    if commit:
        _git("rm", "-r", "-q", "--", str(CARRY))
        _git("commit", "-q", "-m", f"carry: {len(carried)} checkpoint(s) restored to the checkpoint folder; "
                                   "folder removed", "--", str(CARRY))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python tools/carry.py", description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=("save", "restore"))
    p.add_argument("--ckpt", type=Path, default=None, help="the checkpoint folder (default: $LOOPED_SSM_CKPT_DIR or .ckpt)")
    p.add_argument("--no-commit", action="store_true", help="copy only; commit nothing")
    a = p.parse_args(argv)
    from lib.run import checkpoint_dir  # one home for the default folder

    ckpt = a.ckpt or checkpoint_dir()
    try:
        return (save if a.action == "save" else restore)(ckpt, not a.no_commit)
    except (OSError, ValueError, subprocess.CalledProcessError) as e:
        msg = e.stderr.strip() if isinstance(e, subprocess.CalledProcessError) and e.stderr else e
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
