"""Run records and the statistics over them, in one import for the chapters, and the ``merge`` command.

    python -m lib.results merge OUT/*.jsonl --into data/results/main-full.jsonl [--replace]

Each name lives in one module with one job, and is only re-exported here:

* ``lib.records``    what a record is (``FIELDS``, ``KEY_FIELDS``, checks) and where it lives (locked
  JSONL append and read, resume keys, ``merge``);
* ``lib.provenance`` where a record came from (commit, versions, command line);
* ``lib.stats``      selecting, summarising over seeds, pairing by seed, bootstrap intervals;
* ``lib.claims``     the claims' rules and verdicts, and the published numbers (``data/published.json``).

    from lib import results as R
    R.append_records("data/results/main-full.jsonl", [rec])   # validated, atomic, concurrent-safe
    df = R.read_records("data/results/*.jsonl")               # DataFrame, versions flattened
    R.summarize(df)                                           # mean ± std over seeds, in points
"""
from __future__ import annotations

import sys

from lib.provenance import *  # noqa: F401,F403
from lib.provenance import __all__ as _prov_all
from lib.records import *  # noqa: F401,F403
from lib.records import __all__ as _rec_all
from lib.records import merge
from lib.stats import *  # noqa: F401,F403
from lib.stats import __all__ as _stats_all

__all__ = [*_rec_all, *_prov_all, *_stats_all]


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m lib.results",
                                description="Merge run records (JSONL) into a records file.")
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("merge", help="append the records of SRC files to INTO (validated first)")
    m.add_argument("sources", nargs="+", metavar="SRC")
    m.add_argument("--into", required=True)
    m.add_argument("--replace", action="store_true", help="replace records already in INTO")
    a = p.parse_args(argv)
    try:
        n_read, n_written, notes = merge(a.sources, a.into, on_duplicate="replace" if a.replace else "skip")
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{n_read} records read, {n_written} written to {a.into}")
    for line in notes:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
