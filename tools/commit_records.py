"""Commit the grid's finished records in their own commit, named by what they hold.

Run from the repository root while (or after) a grid trains into this checkout::

    python tools/commit_records.py                       # every data/results/*.jsonl that grew
    python tools/commit_records.py --params data/params/budget   # and the models the grid saved there

The new records are the lines of each results file that its version at ``HEAD`` does not have. They
are grouped by configuration, and the commit message names each one with its mean ± std test accuracy
over seeds, its wall time (and CPU time, where the records counted it) and the commit its code came
from, for example::

    records: budget-budget, 1 configuration(s): ERing s5 6×1 none (main): 96.44 ± 2.53 (5 seeds, 1264 s, 579 s CPU, code 8ed097d)

Only the results files and ``--params`` folders are committed (``git commit --only``), so nothing
else staged or edited in the checkout is swept into a records commit. Nothing new: exit 0, no commit.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path


def _git(*args, cwd=".", check=True) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check).stdout


def new_records(path: Path, cwd=".") -> list[dict]:
    """The records of ``path`` (a JSONL file) that are not in its version at ``HEAD`` (all, if untracked)."""
    rel = Path(path).resolve().relative_to(Path(cwd).resolve()).as_posix()
    old = set(subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=cwd, capture_output=True, text=True).stdout
              .splitlines())
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip() and line not in old]


def message(new: dict[str, list[dict]]) -> tuple[str, str]:
    """``(subject, body)`` for ``{file stem: its new records}``: one part per configuration."""
    groups: dict[tuple, list[dict]] = {}
    for stem, recs in new.items():
        for r in recs:
            inp = "none" if r.get("reshape", "none") == "none" else f"{r['reshape']}/{r.get('chunk')}"
            key = (stem, r.get("dataset"), r.get("ssm"), r.get("blocks"), r.get("loops"), inp, r.get("tag"),
                   str(r.get("commit") or "")[:7])
            groups.setdefault(key, []).append(r)
    parts = []
    for (stem, name, ssm, k, L, inp, tag, code), recs in groups.items():
        acc = [100 * r["test_acc"] for r in recs if r.get("test_acc") is not None]
        spread = f" ± {statistics.stdev(acc):.2f}" if len(acc) > 1 else ""
        score = f"{statistics.mean(acc):.2f}{spread}" if acc else "no accuracy"
        wall = max((r.get("wall_s") or 0) for r in recs)
        counted = [r["cpu_s"] for r in recs if r.get("cpu_s") is not None]
        cpu = f", {max(counted):.0f} s CPU" if counted else ""  # records made before CPU seconds were counted: none
        parts.append(f"{name} {ssm} {k}×{L} {inp} ({tag}): {score} ({len(recs)} seed{'s' * (len(recs) != 1)}, "
                     f"{wall:.0f} s{cpu}, code {code or '?'})")
    stems = ", ".join(sorted(new))
    subject = (f"records: {stems}, {len(groups)} configuration(s): " + "; ".join(parts[:3])
               + (f"; and {len(parts) - 3} more" if len(parts) > 3 else ""))
    body = ("\n".join(parts) + "\n\ntest %, mean ± std over seeds; wall seconds of the configuration's program "
            "(and its CPU seconds, where the records counted them)")
    return subject, body


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python tools/commit_records.py", description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="*", help="results files (default: data/results/*.jsonl)")
    p.add_argument("--params", nargs="*", default=[], metavar="DIR", help="folders of saved models to commit too")
    a = p.parse_args(argv)
    files = [Path(f) for f in a.files] or sorted(Path("data/results").glob("*.jsonl"))
    new = {}
    try:
        for f in files:
            recs = new_records(f)
            if recs:
                new[f.stem] = recs
    except (OSError, ValueError) as e:  # an unreadable file or a line that is not JSON: nothing is committed
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not new:
        print("nothing new")
        return 0
    subject, body = message(new)
    paths = [str(f) for f in files if f.stem in new] + [d for d in a.params if Path(d).is_dir()]
    _git("add", "--", *paths)
    _git("commit", "-q", "-m", subject, "-m", body, "--only", "--", *paths)
    print(subject)
    return 0


if __name__ == "__main__":
    sys.exit(main())
