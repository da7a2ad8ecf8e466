"""The book's tables of the grids, read from run records.

The main table (``main_table``), the budget grid's coverage matrix (``budget_status``) and a chunk
read in timesteps (``chunk_timesteps``).
``lib.grid`` re-exports them; what a grid is, and which records are a grid's (``records_for``,
``coverage``), is ``lib.grid``'s.
"""
from __future__ import annotations

from lib import results as R
from lib.cost import core_s, cost_model, left_h, stop_share
from lib.datasets import DATASETS

__all__ = ["NOT_RUN", "main_table", "chunk_timesteps", "budget_status", "capped_table", "capped_display", "reported_at", "truncation_gaps"]

NOT_RUN = "not yet run"
NBSP = "\u00a0"  # a no-break space: what it joins stays on one line of a table cell


def _cell(d: "pd.DataFrame", n_seeds: int) -> dict:
    """mean ± std (points) of the records ``d`` of one configuration, and how many seeds they cover."""
    if d.empty:
        return {"text": NOT_RUN, "mean": float("nan"), "std": float("nan"), "n": 0}
    pts = 100.0 * d["test_acc"].astype(float)
    n = int(d["seed"].nunique())
    text = f"{pts.mean():.2f} ± {pts.std(ddof=0):.2f}" + (f" ({n} of {n_seeds} seeds)" if n < n_seeds else "")
    return {"text": text, "mean": float(pts.mean()), "std": float(pts.std(ddof=0)), "n": n}


def main_table(records, profile: str = "full", datasets=None, ssms=None) -> "pd.DataFrame":
    """The main table, read from run records: one row per data set × SSM × model (blocks × loops)
    of ``main_grid(profile)``, and one MiniRocket row per data set.

    ``none``: test accuracy (mean ± std over seeds, points) without reshaping; ``reshaped``: with
    the data set's reshaping at the chunk chosen by mean validation accuracy among the candidates
    that have records (``chunk``; ``chunks_run`` says how many of the candidates that is). A cell
    without records reads "not yet run", and ``command`` is the grid command that makes the row's
    missing records (it resumes). ``device`` lists where the row's records were made. Numeric
    columns ``none_mean``, ``none_std``, ``reshaped_mean``, ``reshaped_std`` are for charts."""
    import pandas as pd

    from lib.grid import grid_command, main_grid

    specs = main_grid(profile, datasets, ssms)
    n_seeds = len(specs[0].seeds) if specs else 0
    df = records if isinstance(records, pd.DataFrame) else R.read_records(records)
    if not df.empty:
        df = R.select(df, {"tag": "main", "profile": profile, "protocol": "paper"})
    rows = []
    for name in dict.fromkeys(s.dataset for s in specs):
        d_ds = df[df["dataset"] == name] if not df.empty else df
        base = d_ds[d_ds["ssm"] == "minirocket"] if not d_ds.empty else d_ds
        cell = _cell(base, n_seeds)
        rows.append({"dataset": name, "ssm": "minirocket", "model": "—", "none": cell["text"],
                     "reshaped": "—", "chunk": None, "chunks_run": "—", "none_mean": cell["mean"],
                     "none_std": cell["std"], "reshaped_mean": float("nan"), "reshaped_std": float("nan"),
                     "device": ",".join(sorted(set(base["device"]))) if cell["n"] else "",
                     "command": "" if cell["n"] >= n_seeds else
                     f"python -m lib.baseline --dataset {name} --seeds {n_seeds} --out data/results/baseline.jsonl"})
        for ssm in dict.fromkeys(s.ssm for s in specs if s.dataset == name):
            mine = [s for s in specs if s.dataset == name and s.ssm == ssm]
            for blocks, loops in dict.fromkeys((s.blocks, s.loops) for s in mine):
                d = d_ds[(d_ds["ssm"] == ssm) & (d_ds["blocks"] == blocks) & (d_ds["loops"] == loops)
                         & (d_ds["hidden"] == mine[0].hidden)] if not d_ds.empty else d_ds
                none = _cell(d[d["reshape"] == "none"] if not d.empty else d, n_seeds)
                candidates = [s.chunk for s in mine if (s.blocks, s.loops) == (blocks, loops) and s.reshape != "none"]
                resh = d[d["reshape"] != "none"] if not d.empty else d
                chunk = None
                if not resh.empty:
                    best = R.best_by_validation(resh, over=("reshape", "chunk", "order"))
                    chunk = int(best["chunk"].iloc[0])
                    rcell = _cell(best, n_seeds)
                else:
                    rcell = _cell(resh, n_seeds)
                n_chunks = int(resh["chunk"].nunique()) if not resh.empty else 0
                complete = (none["n"] >= n_seeds and not resh.empty
                            and all((resh[resh["chunk"] == c]["seed"].nunique() >= n_seeds) for c in candidates))
                rows.append({"dataset": name, "ssm": ssm, "model": f"{blocks}×{loops}",
                             "none": none["text"], "reshaped": rcell["text"], "chunk": chunk,
                             "chunks_run": f"{n_chunks} of {len(candidates)}",
                             "none_mean": none["mean"], "none_std": none["std"],
                             "reshaped_mean": rcell["mean"], "reshaped_std": rcell["std"],
                             "device": ",".join(sorted(set(d["device"]))) if not d.empty else "",
                             "command": "" if complete else
                             f"{grid_command('main', profile)} --datasets {name} --ssms {ssm}"})
    cols = ["dataset", "ssm", "model", "none", "reshaped", "chunk", "chunks_run", "device", "command",
            "none_mean", "none_std", "reshaped_mean", "reshaped_std"]
    return pd.DataFrame(rows, columns=cols)


def chunk_timesteps(dataset: str, reshape: str, chunk: int) -> int:
    """A chunk in timesteps per step: ``concat`` chunks are timesteps; a ``rechunk`` row of ``chunk``
    values holds ``chunk / C`` timesteps' worth (C: the data set's channels, ``DATASETS``).

    A rechunk row that is not a whole number of timesteps (NATOPS's main-grid candidate 36 is 1.5
    of its 24-channel timesteps) has no such reading: that is a ``ValueError``, not a rounded count."""
    if reshape != "rechunk":
        return int(chunk)
    channels = DATASETS[dataset].channels
    if int(chunk) % channels:
        raise ValueError(f"rechunk chunk {chunk} is not a whole number of {dataset} timesteps "
                         f"({channels} channels each); it cannot be read as timesteps per step")
    return int(chunk) // channels


def budget_status(records, profile: str = "budget") -> tuple:
    """The budget grid, planned once: ``(table, summary)``.

    ``table``: one row per data set × input, one column per SSM, each cell a tuple of its models,
    standard first, e.g. ``("6×1 ✓", "1×6 2/5")`` (joined by no-break spaces, ``NBSP``): "✓" (all
    seeds recorded), "n/5" (some) or "·" (none), the chunk pilot (a looped S5 model) marked "pilot" in S5's column; "" where the grid has
    no such cell; plus the row's core-hours spent (records' ``lib.cost.core_s``, one program per
    configuration) and left, at the step caps and expected (``lib.cost.left_h``, with the shares of
    the cap the grid's own records stopped at).

    ``summary``: ``configurations``, ``done``, ``missing`` (counts), ``spent``, ``left``, ``expected``
    (core-hours, the table's column sums) and ``stops`` (SSM → the mean share of its cap its records'
    seeds stopped at, ``lib.cost.stop_share``)."""
    import pandas as pd

    from lib.grid import MAIN_SSMS, PILOT_TAG, REPO, _rows, budget_grid, grid_records

    recs = [r for r in _rows(records) if r.get("profile") == profile]
    specs = budget_grid(profile, records=recs)
    got = grid_records(specs, recs)  # the grid's own records
    have = {}
    for r in got:
        have.setdefault(R.training_key(r), r)
    b = cost_model(list(R.iter_records(str(REPO / "data" / "results" / "*.jsonl"), validate=False)))
    share = stop_share(got, profile)  # as ``lib.grid.estimate_text``
    rows, missing = {}, 0
    for s in specs:
        key = (s.dataset, "none" if s.reshape == "none" else f"{s.reshape}/{s.chunk}")
        row = rows.setdefault(key, {"data set": s.dataset, "input": key[1], "core-h spent": 0.0,
                                    "core-h left (caps)": 0.0, "core-h left (expected)": 0.0})
        seen = [have.get(R.training_key(s.training_fields(x))) for x in s.seeds]
        n = sum(r is not None for r in seen)
        mark = "✓" if n == len(s.seeds) else f"{n}/{len(s.seeds)}" if n else "·"
        row.setdefault(s.ssm, []).append((-s.blocks, f"{s.blocks}×{s.loops}{NBSP}{mark}"  # a model is never
                                          + (f"{NBSP}pilot" if s.tag == PILOT_TAG else "")))  # broken across lines
        if n:
            row["core-h spent"] += max(core_s(r) for r in seen if r is not None) / 3600
        if n < len(s.seeds):
            caps, expected = left_h(s, b, share)
            row["core-h left (caps)"] += caps
            row["core-h left (expected)"] += expected
            missing += 1
    for row in rows.values():
        for ssm in MAIN_SSMS:
            if ssm in row:
                row[ssm] = tuple(text for _, text in sorted(row[ssm]))  # one model per line (viz.table)
    sums = ["core-h spent", "core-h left (caps)", "core-h left (expected)"]
    df = pd.DataFrame(list(rows.values()))
    df = df.fillna({c: "" for c in df.columns if c not in sums})  # "": no such model; a sum stays a number
    cols = ["data set", "input"] + [c for c in MAIN_SSMS if c in df.columns] + sums
    summary = dict(configurations=len(specs), done=len(specs) - missing, missing=missing,
                   **{k: float(df[c].sum()) if len(df) else 0.0 for k, c in zip(("spent", "left", "expected"), sums)},
                   stops={k: share[k] for k in sorted(share)})
    df = df.sort_values(["data set", "input"], key=lambda c: c.map(lambda v: (v != "none", str(v))))
    return (df[cols].round(2).reset_index(drop=True) if len(df) else df), summary


def _comparisons(records, profile: str):
    """The verdicts' records (``lib.claims.records``) of one profile, per data set × input × SSM:
    ``((name, input, ssm), standard records, looped records)``, each side indexed by seed."""
    import pandas as pd

    from lib import claims as C

    df = pd.DataFrame(R.as_rows(records))
    d = C.records(df, profile) if len(df) else df
    if d.empty:
        return
    d = d.assign(input=[C.input_label(r, c) for r, c in zip(d["reshape"], d["chunk"])])
    for key, g in d.groupby(["dataset", "input", "ssm"], sort=True):
        yield key, *(g[(g["blocks"] == b) & (g["loops"] == l)].drop_duplicates("seed").set_index("seed")
                     for b, l in (C.STANDARD, C.LOOPED))


def capped_table(records, profile: str = "budget") -> "pd.DataFrame":
    """Where the step cap, not early stopping, ended training: one row per data set × input × SSM with,
    for the standard 6×1 and the looped 1×6 model, how many seeds ran to ``max_steps`` (validation
    accuracy still improved within the last ``patience`` evaluations, so the profile's cap cut the run
    short and its accuracy may understate a longer run's) out of how many were recorded: integer
    columns ``standard capped``, ``standard seeds``, ``looped capped``, ``looped seeds`` (0 seeds: the
    model has no record, e.g. a pilot's set). ``capped_display`` writes them as "k/n"."""
    import pandas as pd

    cols = ["data set", "input", "ssm", "standard capped", "standard seeds", "looped capped", "looped seeds"]
    rows = []
    for (name, inp, ssm), std, loo in _comparisons(records, profile):
        if len(std) or len(loo):
            counts = [x for m in (std, loo) for x in (int((m["steps"] >= m["max_steps"]).sum()) if len(m) else 0, len(m))]
            rows.append(dict(zip(cols, (name, inp, ssm, *counts))))
    return pd.DataFrame(rows, columns=cols).astype({c: int for c in cols[3:]})


def capped_display(t: "pd.DataFrame") -> "pd.DataFrame":
    """``capped_table`` for the page: the counts as "k/n" under ``standard 6×1`` and ``looped 1×6``."""
    out = t[["data set", "input", "ssm"]].copy()
    for model, label in (("standard", "standard 6×1"), ("looped", "looped 1×6")):
        out[label] = [f"{k}/{n}" if n else "" for k, n in zip(t[f"{model} capped"], t[f"{model} seeds"])]
    return out


def reported_at(history, cap: int) -> float:
    """The test accuracy a run would have reported had its step cap been ``cap``: the test accuracy at
    its last validation improvement up to ``cap`` (ties: the later evaluation, as ``lib.train`` does).
    A run that ended before ``cap`` reports what it reported."""
    best, out = -1.0, float("nan")
    for h in history:
        if h["step"] > cap:
            break
        if h["val_acc"] >= best:
            best, out = h["val_acc"], h["test_acc"]
    return out


def truncation_gaps(records, profile: str = "budget", *, step: int | None = None) -> "pd.DataFrame":
    """Looped 1×6 − standard 6×1 (points, paired by seed) as each comparison would have reported it at
    every step cap up to its own, read from the records' evaluation histories: one row per data set ×
    input × SSM × cap, the mean over seeds and the seed count. ``step``: the cap grid (default: the
    records' evaluation interval). Where the gap still moves at the cap, the budget profile's answer
    is not yet the longer run's."""
    import numpy as np
    import pandas as pd

    cols = ["data set", "input", "ssm", "cap", "looped − standard", "n_seeds"]
    rows = []
    for (name, inp, ssm), std, loo in _comparisons(records, profile):
        if "history" not in std or "history" not in loo:
            continue
        seeds = sorted(set(std.index) & set(loo.index))
        if not seeds:
            continue
        every = int(step or min(std["eval_every"].min(), loo["eval_every"].min()))
        top = int(max(std["max_steps"].max(), loo["max_steps"].max()))
        for cap in range(every, top + 1, every):
            diffs = [100 * (reported_at(loo.at[s, "history"] or [], cap) - reported_at(std.at[s, "history"] or [], cap))
                     for s in seeds]
            diffs = [x for x in diffs if not np.isnan(x)]
            if diffs:
                rows.append({"data set": name, "input": inp, "ssm": ssm, "cap": cap,
                             "looped − standard": float(np.mean(diffs)), "n_seeds": len(diffs)})
    return pd.DataFrame(rows, columns=cols)
