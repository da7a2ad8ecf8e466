"""The experiment grids of the book, and the command that runs them (resumably).

    python -m lib.grid --profile smoke|full [--grid main|widget|lr] [--datasets ...] [--ssms ...]
                       [--out FILE] [--workers N] [--address ADDR] [--launcher ray|local]
                       [--shard I/N] [--budget-min M] [--dry-run]

``main``  — the reproduction table: standard (blocks 6 × loops 1) vs looped (1 × 6) for every SSM,
            plus 2 × 3 and 3 × 2 for s5 and lru; no reshaping vs the data set's reshaping with the
            chunk chosen on validation accuracy from ``DATASETS[name].chunks`` (all candidates run
            and are kept); 5 seeds on the paper protocol's splits.
``lr``    — the fairness check: s5 and lru, looped and standard, lr ∈ {1e-4, 1e-3, 1e-2}.
``widget``— s5, blocks 1, loops ∈ {1, 2, 3, 4, 6, 8} × chunk ∈ {1, 2, 4, 8, 16} on one low- and one
            high-dimensional set: the grid behind the Experiments chapter's sliders.

A configuration of the widget or lr grid that is also a main-grid configuration (the widget grid's
looped 1×6 cells, the lr grid's default-rate cells) is the same training: it is not trained again
when the main grid's records (``data/results/main-<profile>.jsonl``) hold it, and the book reads it
from there (``records_for``). The main grid keeps the seed-0 models of those cells (in
``data/params``, or ``--save-params DIR``) for the book's analyses of trained looped models.

The ``smoke`` profile shrinks every grid (depth 2, H = P = 16, two seeds, a few hundred steps, the
short sets) so it finishes in minutes on a 2-core CPU; its numbers are pipeline checks, not results.
Records already in the output file are skipped, so an interrupted grid resumes where it stopped.

Where it runs (``lib.launch``): by default each configuration is a task on a local Ray instance
(one CPU core each, or one GPU where there are GPUs; ``--workers N`` caps how many run at once);
``--address`` (or ``$RAY_ADDRESS``) sends the tasks to an existing Ray cluster; ``--launcher local``
runs them one after another in this process. Either way this process alone writes the records, a
configuration keeps its progress in a checkpoint, and rerunning the same command goes on where it
stopped. ``--shard I/N`` runs every N-th configuration starting at the I-th (0-based: one slice per
machine without a cluster, merged afterwards with ``lib.results merge``), and ``--budget-min M``
stops after M minutes: the configurations in progress are checkpointed at their last evaluation.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

from lib import results as R
from lib.profiles import PROFILE_NAMES
from lib.datasets import DATASETS, PAPER_DATASETS, DataSpec  # noqa: F401  (one home: lib.datasets)
from lib.ssm import paper_ssms, ssm_spec
from lib.run import REPO, RunSpec, check_writable, run, strip_flag  # noqa: F401  (strip_flag: re-exported)
from lib.controls import controls_grid  # noqa: E402  (issue 21 §2: the controls grid)


#: the main grid's SSMs: the paper's four (``lib.ssm.SSMSpec.paper``)
MAIN_SSMS = paper_ssms()
LR_GRID = (1e-4, 1e-3, 1e-2)
WIDGET_LOOPS = (1, 2, 3, 4, 6, 8)
WIDGET_CHUNKS = (1, 2, 4, 8, 16)
WIDGET_DATASETS = {"low": "SelfRegulationSCP1", "high": "NATOPS"}

SMOKE = dict(depth=2, seeds=2, datasets=("UWaveGestureLibrary",))  # the widget smoke grid covers rechunk (NATOPS)


def depth_pairs(ssm: str, depth: int) -> list[tuple[int, int]]:
    """(blocks, loops): standard, fully looped, and for the SSMs with ``SSMSpec.splits`` (s5, lru) the
    intermediate k that divide depth."""
    pairs = [(depth, 1), (1, depth)]
    if ssm_spec(ssm).splits:
        pairs += [(k, depth // k) for k in (2, 3) if depth % k == 0 and k < depth]
    return pairs


def _available(names):
    from lib.data import available_datasets

    have = set(available_datasets())
    return [n for n in names if n in have]


def main_grid(profile: str = "full", datasets=None, ssms=None) -> list[RunSpec]:
    smoke = profile == "smoke"
    depth = SMOKE["depth"] if smoke else 6
    seeds = SMOKE["seeds"] if smoke else 5
    names = list(datasets or (SMOKE["datasets"] if smoke else DATASETS))
    specs = []
    for name in names:
        ds = DATASETS[name]
        chunks = ds.chunks[:1] if smoke else ds.chunks
        for ssm in ssms or MAIN_SSMS:
            for blocks, loops in depth_pairs(ssm, depth):
                base = RunSpec(dataset=name, ssm=ssm, blocks=blocks, loops=loops, seeds=_seeds(seeds),
                               profile=profile, hidden=_size(profile), state=_size(profile))
                specs.append(base)
                specs += [dataclasses.replace(base, reshape=ds.reshape, chunk=c) for c in chunks]
    return specs


def lr_grid(profile: str = "full", datasets=None, ssms=None) -> list[RunSpec]:
    smoke = profile == "smoke"
    depth = SMOKE["depth"] if smoke else 6
    specs = []
    for name in datasets or (SMOKE["datasets"][:1] if smoke else ("SelfRegulationSCP1", "MotorImagery")):
        for ssm in ssms or ("s5", "lru"):
            for blocks, loops in ((depth, 1), (1, depth)):
                for lr in LR_GRID:
                    specs.append(RunSpec(dataset=name, ssm=ssm, blocks=blocks, loops=loops, lr=lr, tag="lr-select",
                                         seeds=_seeds(SMOKE["seeds"] if smoke else 5), profile=profile,
                                         hidden=_size(profile), state=_size(profile)))
    return specs


def widget_grid(profile: str = "full", datasets=None, ssms=None) -> list[RunSpec]:
    smoke = profile == "smoke"
    loops_set = (1, 2, 3) if smoke else WIDGET_LOOPS
    chunk_set = (1, 2) if smoke else WIDGET_CHUNKS
    specs = []
    for kind, name in WIDGET_DATASETS.items():
        if datasets and name not in datasets:
            continue
        for loops in loops_set:
            for c in chunk_set:
                if c == 1:
                    reshape, chunk = "none", 1
                elif kind == "low":
                    reshape, chunk = "concat", c
                else:  # rows of c·C values: c timesteps' worth, zero-padded at the end (T = 51)
                    reshape, chunk = "rechunk", c * DATASETS[name].channels
                specs.append(RunSpec(dataset=name, ssm="s5", blocks=1, loops=loops, reshape=reshape, chunk=chunk,
                                     pad=reshape == "rechunk",
                                     tag="widget", seeds=_seeds(SMOKE["seeds"] if smoke else 5), profile=profile,
                                     hidden=_size(profile), state=_size(profile)))
    return specs


@dataclasses.dataclass(frozen=True)
class BudgetSet:
    """One data set of the budget grid (``lib.profiles``' ``budget`` profile).

    ``reshape`` and ``candidates``: the reshaping and the chunks a looped-S5 pilot chooses from on
    validation accuracy (one candidate: fixed, no pilot). ``raw_ssms``: the SSMs also run without
    reshaping (none where the raw length is too costly on a CPU). ``splits``: also run 2×3 and 3×2
    for s5 and lru. ``pad``: zero-pad where a chunk does not divide; ``ragged``: the loader's policy
    for unequal lengths. ``decides``: False for a set whose committed records put both models at the
    ceiling or at chance (run last, flagged by the verdicts whatever this says)."""

    reshape: str
    candidates: tuple
    raw_ssms: tuple = ()
    splits: bool = False
    pad: bool = False
    ragged: str = "error"
    paper: bool = False
    decides: bool = True


#: The budget grid's inputs (issue 17 §2). Chunk candidates: timesteps (concat) or values per row
#: (rechunk, multiples of the channel count so a row holds whole timesteps).
BUDGET_SETS = {
    "SelfRegulationSCP1": BudgetSet("concat", (16,), raw_ssms=("s5", "lrcssm"), splits=True, paper=True),
    "MotorImagery": BudgetSet("rechunk", (30 * 64,), paper=True),  # 30 timesteps of 64 channels a row: T' 100
    "LSST": BudgetSet("concat", (2, 3, 4), raw_ssms=MAIN_SSMS, splits=True),
    "Handwriting": BudgetSet("concat", (2, 4, 8), raw_ssms=MAIN_SSMS),
    "UWaveGestureLibrary": BudgetSet("concat", (5, 9, 15), pad=True),
    "Epilepsy": BudgetSet("concat", (4, 8), pad=True),
    "JapaneseVowels": BudgetSet("rechunk", (24, 48), raw_ssms=MAIN_SSMS, pad=True, ragged="pad"),
    # NATOPS: T·C = 51·24, whole timesteps per row that divide it: 3 (72) or 17; FingerMovements: 50·28, 2 or 5
    "NATOPS": BudgetSet("rechunk", (72,), raw_ssms=MAIN_SSMS, decides=False),
    "FingerMovements": BudgetSet("rechunk", (56, 140), raw_ssms=MAIN_SSMS, decides=False),
}
#: the cells with full-profile records that the budget profile is calibrated on (issue 17 §1):
#: (data set, ssm, reshape, chunk), each run standard 6×1 and looped 1×6
CALIBRATION = (
    *[("NATOPS", ssm, "none", 1) for ssm in ("lru", "s5", "lrcssm")],
    *[("NATOPS", ssm, "rechunk", 72) for ssm in ("lru", "s5", "linoss-im", "lrcssm")],
    ("SelfRegulationSCP1", "s5", "concat", 16),
)
PILOT_TAG, CALIBRATION_TAG = "pilot", "calibration"


def _budget_spec(name, ssm, blocks, loops, reshape="none", chunk=1, *, profile="budget", tag=R.MAIN_TAG) -> RunSpec:
    bs = BUDGET_SETS.get(name)
    return RunSpec(dataset=name, ssm=ssm, blocks=blocks, loops=loops, reshape=reshape, chunk=chunk,
                   pad=bool(bs and bs.pad and reshape != "none"), ragged=bs.ragged if bs else "error",
                   seeds=_seeds(SMOKE["seeds"] if profile == "smoke" else 5), profile=profile,
                   hidden=_size(profile), state=_size(profile), tag=tag)


def calibration_grid(profile: str = "budget", datasets=None, ssms=None) -> list[RunSpec]:
    """The budget runs of the cells that have full-profile records (standard 6×1, looped 1×6)."""
    depth = SMOKE["depth"] if profile == "smoke" else 6
    return [_budget_spec(name, ssm, b, l, reshape, chunk, profile=profile)
            for name, ssm, reshape, chunk in CALIBRATION
            if (not datasets or name in datasets) and (not ssms or ssm in ssms)
            for b, l in ((depth, 1), (1, depth))]


def pilot_grid(profile: str = "budget", datasets=None, ssms=None) -> list[RunSpec]:
    """Looped S5 (1×6) on every chunk candidate of the sets with more than one: the chunk is chosen
    once, on mean validation accuracy over seeds (``budget_chunks``); every pilot record is kept."""
    depth = SMOKE["depth"] if profile == "smoke" else 6
    return [_budget_spec(name, "s5", 1, depth, bs.reshape, c, profile=profile, tag=PILOT_TAG)
            for name, bs in BUDGET_SETS.items() if len(bs.candidates) > 1 and (not datasets or name in datasets)
            for c in bs.candidates]


def budget_chunks(records, profile: str = "budget") -> dict:
    """Data set → the chunk its pilot chose (highest mean validation accuracy over the pilot's seeds;
    ties to the smaller chunk), for the sets whose pilot is complete; fixed-chunk sets always."""
    import pandas as pd

    df = records if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    out = {}
    for name, bs in BUDGET_SETS.items():
        if len(bs.candidates) == 1:
            out[name] = bs.candidates[0]
            continue
        specs = [s for s in pilot_grid(profile, [name])]
        got = records_for(specs, df)
        if got.empty or len(got) < sum(len(s.seeds) for s in specs):
            continue
        means = got.groupby("chunk")["val_acc"].mean()
        best = means.max()
        out[name] = int(min(c for c, v in means.items() if v == best))
    return out


def budget_grid(profile: str = "budget", datasets=None, ssms=None, *, records=None) -> list[RunSpec]:
    """The budget grid (issue 17 §2): calibration, pilots, then for every set standard 6×1 vs looped
    1×6 (plus 2×3 and 3×2 for s5 and lru where ``splits``) on its chosen reshaping and, for
    ``raw_ssms``, without reshaping. A set whose pilot is not complete has only its pilot cells (run
    the grid again once it is). Ordered by information per core-hour (``budget_order``)."""
    depth = SMOKE["depth"] if profile == "smoke" else 6
    if records is None:
        records = R.iter_records(default_out("budget", profile), validate=False) \
            if Path(default_out("budget", profile)).exists() else []
    chosen = budget_chunks(records, profile)
    specs = calibration_grid(profile, datasets, ssms) + pilot_grid(profile, datasets, ssms)
    for name, bs in BUDGET_SETS.items():
        if (datasets and name not in datasets) or name not in chosen:
            continue
        for ssm in ssms or MAIN_SSMS:
            pairs = [(depth, 1), (1, depth)]
            if bs.splits and ssm_spec(ssm).splits and profile != "smoke":
                pairs += [(2, 3), (3, 2)]
            for b, l in pairs:
                specs.append(_budget_spec(name, ssm, b, l, bs.reshape, chosen[name], profile=profile))
                if ssm in bs.raw_ssms and (b, l) in ((depth, 1), (1, depth)):
                    specs.append(_budget_spec(name, ssm, b, l, profile=profile))
    seen, unique = set(), []
    for s in specs:  # a calibration cell is also a grid cell: one training
        k = R.training_key(s.training_fields(s.seeds[0]))
        if k not in seen:
            seen.add(k)
            unique.append(s)
    return budget_order(unique, records)


#: seconds per seed-step = OVERHEAD_S + b[ssm] × depth × T' (``shared/notes/budget-protocol.md``);
#: ``cost_model`` refits b on the records; these are the note's fits, used for an SSM without CPU records
OVERHEAD_S = 5e-4
B_PRIOR = {"s5": 138e-6, "lru": 210e-6, "linoss-im": 440e-6, "linoss-imex": 440e-6, "lrcssm": 79e-6}


def raw_shape(name: str) -> tuple:
    """``(n_cases, T, C)`` of a data set's published train + test parts, read from the ``.npz`` headers
    (nothing loaded); ``.ts`` sets are loaded."""
    import zipfile

    import numpy as np

    from lib import data as D

    for folder in D.data_folders():
        path = Path(folder) / f"{name}.npz"
        if path.exists():
            shapes = {}
            with zipfile.ZipFile(path) as z:
                for part in ("X_train", "X_test"):
                    with z.open(f"{part}.npy") as f:
                        major, _ = np.lib.format.read_magic(f)
                        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                        shapes[part] = read(f)[0]
            return (shapes["X_train"][0] + shapes["X_test"][0], *shapes["X_train"][1:])
    d = D.load_uea(name, ragged=BUDGET_SETS[name].ragged if name in BUDGET_SETS else "error")
    return (len(d.X_train) + len(d.X_test), d.length, d.channels)


def input_length(spec: RunSpec) -> int:
    """T', the model input's length after reshaping (``lib.reshape``), from the raw shape."""
    import math

    _, T, C = raw_shape(spec.dataset)
    if spec.reshape == "none":
        return T
    total = T if spec.reshape == "concat" else T * C
    return math.ceil(total / spec.chunk) if spec.pad else total // spec.chunk


def cost_model(records=()) -> dict:
    """SSM → b (seconds per layer·timestep of one seed-step), the median over the CPU records'
    programs of (wall − compile) / seed-steps − ``OVERHEAD_S``, divided by depth × T'; ``B_PRIOR``
    where an SSM has no CPU records."""
    import numpy as np

    programs = {}
    for r in records:
        if r.get("device") != "cpu" or r.get("ssm") not in B_PRIOR or not r.get("steps"):
            continue
        k = (r["ssm"], r["command"], r["created"], r.get("wall_s"))
        programs.setdefault(k, []).append(r)
    per = {}
    for (ssm, *_), rs in programs.items():
        seed_steps = sum(r["steps"] for r in rs)
        t = (rs[0]["wall_s"] - rs[0]["compile_s"]) / seed_steps
        per.setdefault(ssm, []).append((t - OVERHEAD_S) / (rs[0]["depth"] * rs[0]["seq_len"]))
    return {ssm: float(np.median(per[ssm])) if ssm in per else b for ssm, b in B_PRIOR.items()}


def cost_s(spec: RunSpec, b: dict) -> float:
    """Expected core-seconds of a configuration at its step cap (early stopping only lowers it)."""
    per_step = OVERHEAD_S + b[spec.ssm] * spec.blocks * spec.loops * input_length(spec)
    return per_step * spec.train_config().max_steps * len(spec.seeds)


def budget_order(specs, records=()) -> list:
    """``specs`` in the order the budget grid runs them: the calibration, then the pilots, then the
    comparisons by information per core-hour — a pair (standard and looped on one input) stays
    together; its value is the test cases it is scored on (binomial noise ∝ 1/n) per core-second,
    doubled for the paper's sets and quartered for sets that cannot decide (``BudgetSet.decides``)."""
    b = cost_model(records)
    calib = {(n, s, r, c) for n, s, r, c in CALIBRATION}

    def tier(s):
        if (s.dataset, s.ssm, s.reshape, s.chunk) in calib and (s.blocks == 1 or s.loops == 1):
            return 0
        return 1 if s.tag == PILOT_TAG else 2

    groups = {}
    for s in specs:
        groups.setdefault((tier(s), s.dataset, s.ssm, s.reshape, s.chunk), []).append(s)

    def value(key):
        t, name, *_ = key
        bs = BUDGET_SETS.get(name)
        n_test = 0.15 * raw_shape(name)[0]  # the paper protocol's test share
        weight = (2.0 if bs and bs.paper else 1.0) * (1.0 if not bs or bs.decides else 0.25)
        return (t, -weight * n_test / sum(cost_s(s, b) for s in groups[key]))

    return [s for key in sorted(groups, key=value) for s in groups[key]]


def budget_coverage(records, profile: str = "budget") -> "pd.DataFrame":
    """The budget grid as a matrix: one row per data set × input, one column per SSM × model, each
    cell "n/5" (seeds recorded; "·" for none; "" where the grid has no such cell); plus the row's
    core-hours spent (records' ``wall_s``, one program per configuration) and its estimate left."""
    import pandas as pd

    recs = [r for r in _rows(records) if r.get("profile") == profile]
    specs = budget_grid(profile, records=recs)
    got = records_for(specs, recs)
    have = {}
    for r in got.to_dict("records"):
        have.setdefault(R.training_key(r), r)
    b = cost_model(list(R.iter_records(str(REPO / "data" / "results" / "*.jsonl"), validate=False)))
    rows = {}
    for s in specs:
        key = (s.dataset, "none" if s.reshape == "none" else f"{s.reshape}/{s.chunk}")
        row = rows.setdefault(key, {"data set": s.dataset, "input": key[1], "core-h spent": 0.0, "core-h left": 0.0})
        seen = [have.get(R.training_key(s.training_fields(x))) for x in s.seeds]
        n = sum(r is not None for r in seen)
        col = "pilot" if s.tag == PILOT_TAG else s.ssm
        mark = "✓" if n == len(s.seeds) else f"{n}/{len(s.seeds)}" if n else "·"
        row[col] = (row.get(col, "") + " " + f"{s.blocks}×{s.loops} {mark}").strip()
        if n:
            row["core-h spent"] += max(r["wall_s"] for r in seen if r is not None) / 3600
        if n < len(s.seeds):
            row["core-h left"] += cost_s(s, b) / 3600
    df = pd.DataFrame(list(rows.values())).fillna("")
    cols = ["data set", "input"] + [c for c in (*MAIN_SSMS, "pilot") if c in df.columns] + ["core-h spent",
                                                                                           "core-h left"]
    df = df.sort_values(["data set", "input"], key=lambda c: c.map(lambda v: (v != "none", str(v))))
    return df[cols].round(2).reset_index(drop=True) if len(df) else df


def estimate_text(specs, out) -> str:
    """The grid's cost: configurations done and core-hours spent (from the records' ``wall_s``), and the
    core-hours left at the step caps (``cost_s``, seconds per seed-step fitted on the records)."""
    recs = list(R.iter_records(out, validate=False)) if Path(out).exists() else []
    b = cost_model(list(R.iter_records(str(REPO / "data" / "results" / "*.jsonl"), validate=False)) + recs)
    cov = coverage(specs, recs)
    spent = sum({(r["command"], r["created"], r["wall_s"]): r["wall_s"] for r in recs}.values()) / 3600
    left = sum(cost_s(s, b) for s in cov["missing"]) / 3600
    return (f"cost: {len(cov['done'])} of {len(specs)} configurations done ({spent:.1f} core-h spent); "
            f"{len(cov['missing'])} left, at most {left:.1f} core-h at the step caps "
            f"(s per seed-step = {OVERHEAD_S * 1e3:g} ms + b × depth × T', b in µs: "
            + ", ".join(f"{k} {v * 1e6:.0f}" for k, v in b.items()) + ")")


def _planned(specs, a, out, shard, ran):
    """The configurations to run, in order; for the budget grid the plan is made again when it is
    done, so the cells of a set whose pilot finished meanwhile (``budget_chunks``) follow."""
    while True:
        todo = [s for s in specs if s not in ran]
        if not todo:
            return
        for s in todo:
            ran.add(s)
            yield s
        if a.grid != "budget":
            return
        fresh = GRIDS[a.grid](a.profile, a.datasets, a.ssms)
        specs = fresh[shard[0]::shard[1]]


GRIDS = {"main": main_grid, "lr": lr_grid, "widget": widget_grid, "budget": budget_grid, "controls": controls_grid}

NOT_RUN = "not yet run"


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


def _rows(records) -> list:
    return records.to_dict("records") if hasattr(records, "to_dict") else list(records)


def _shared_index(rows: list) -> dict:
    """``lib.results.training_key`` → index of the first main-grid (tag ``lib.results.MAIN_TAG``) record of
    ``rows`` with it. Records without training settings (MiniRocket) have no such key."""
    index = {}
    for i, r in enumerate(rows):
        if r.get("tag") == R.MAIN_TAG:
            try:
                index.setdefault(R.training_key(r), i)
            except ValueError:
                continue
    return index


def main_trainings(records) -> set:
    """The trainings (``lib.results.training_key``) that the main-grid records among ``records`` (a
    DataFrame or an iterable of records) hold: what the other grids reuse instead of training again."""
    return set(_shared_index(_rows(records)))


def records_for(specs, records) -> "pd.DataFrame":
    """The records (a DataFrame or an iterable of records) of ``specs`` (a grid), one per
    configuration and seed, as that grid sees them.

    A record counts when it has the spec's ``record_key``, or, failing that, when it is a main-grid
    record of the same training (``lib.results.training_key``): the widget grid's looped 1×6 cells
    and the lr grid's default-rate cells are main-grid configurations, trained once. Such a record
    comes with the spec's ``tag`` and keeps its own in ``recorded_tag``; nothing else changes."""
    import pandas as pd

    df = records if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    rows = _rows(df)
    own = {}
    for i, r in enumerate(rows):
        own.setdefault(R.record_key(r), i)
    shared = _shared_index(rows)
    picked = []
    for spec in specs:
        for seed in spec.seeds:
            i = own.get(R.record_key(spec.key_fields(seed)))
            if i is None:
                i = shared.get(R.training_key(spec.training_fields(seed)))
            if i is not None:
                first_tag = rows[i].get("recorded_tag", rows[i]["tag"])
                picked.append(dict(rows[i], tag=spec.tag, recorded_tag=first_tag))
    return pd.DataFrame(picked, columns=list(dict.fromkeys([*df.columns, "recorded_tag"])))


def coverage(specs, records) -> dict:
    """Which of ``specs`` (a grid) the ``records`` (a DataFrame or an iterable of records) complete.

    A configuration is done when every one of its seeds has a record (its own, or the main grid's
    record of the same training: ``records_for``). Returns ``done`` and ``missing`` (lists of specs,
    in grid order) and ``runs`` / ``runs_total`` (seeds recorded / asked)."""
    have = {R.record_key(r) for r in records_for(specs, records).to_dict("records")}
    done, missing_, runs, total = [], [], 0, 0
    for spec in specs:
        n = sum(R.record_key(spec.key_fields(s)) in have for s in spec.seeds)
        runs, total = runs + n, total + len(spec.seeds)
        (done if n == len(spec.seeds) else missing_).append(spec)
    return {"done": done, "missing": missing_, "runs": runs, "runs_total": total}


def _seeds(n):
    from lib.data import PAPER_SEEDS

    return tuple(PAPER_SEEDS[:n])


def _size(profile):
    from lib.profiles import PROFILES

    return PROFILES[profile]["hidden"]


def grid_command(grid: str = "main", profile: str = "full", out: str | None = None) -> str:
    cmd = f"python -m lib.grid --grid {grid} --profile {profile}"
    return cmd + (f" --out {out}" if out else "")


def default_out(grid: str, profile: str) -> str:
    """``data/results/<grid>-<profile>.jsonl``; ``$LOOPED_SSM_RESULTS_DIR`` replaces the folder (a GPU
    machine writes into the folder that comes back, and the records still name the plain command)."""
    return f"{os.environ.get('LOOPED_SSM_RESULTS_DIR') or 'data/results'}/{grid}-{profile}.jsonl"


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` → ``(I, N)`` with 0 <= I < N (one clear error otherwise)."""
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard I/N needs N >= 1 and 0 <= I < N, got {text!r}")
    return i, n


def main(argv=None) -> int:
    from lib.launch import LAUNCHERS

    p = argparse.ArgumentParser(prog="python -m lib.grid", description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", default="main", choices=tuple(GRIDS))
    p.add_argument("--profile", default="smoke", choices=PROFILE_NAMES)
    p.add_argument("--datasets", nargs="*", default=None)
    p.add_argument("--ssms", nargs="*", default=None)
    p.add_argument("--out", default=None,
                   help="default: data/results/<grid>-<profile>.jsonl ($LOOPED_SSM_RESULTS_DIR replaces data/results)")
    p.add_argument("--save-params", default=None, metavar="DIR",
                   help="save the first seed's trained model state of every one-block model "
                        "(default data/params for the widget grid, and for the main grid, which "
                        "saves only the widget grid's models it trains)")
    p.add_argument("--launcher", default="ray", choices=LAUNCHERS,
                   help="ray (default): one Ray task per configuration; local: one after another in this process")
    p.add_argument("--workers", type=int, default=None,
                   help="Ray: at most N configurations at once (default: every CPU core, or every GPU)")
    p.add_argument("--address", default=None,
                   help="Ray: the address of an existing cluster (default $RAY_ADDRESS, else a local instance)")
    p.add_argument("--per-gpu", type=int, default=1, metavar="K",
                   help="Ray on GPUs: K configurations share one GPU (each gets 0.9/K of its memory)")
    p.add_argument("--shard", default=None, metavar="I/N", help="run every N-th configuration from the I-th")
    p.add_argument("--budget-min", type=float, default=None, metavar="M",
                   help="stop after M minutes: the configurations in progress are checkpointed at their last "
                        "evaluation (rerun the same command to go on)")
    p.add_argument("--dry-run", action="store_true", help="list the configurations and exit")
    argv = list(sys.argv[1:] if argv is None else argv)
    a = p.parse_args(argv)
    for flag, value in (("--workers", a.workers), ("--per-gpu", a.per_gpu)):
        if value is not None and value < 1:
            print(f"error: {flag} must be >= 1, got {value}", file=sys.stderr)
            return 2
    if a.budget_min is not None and not a.budget_min > 0:
        print(f"error: --budget-min must be > 0, got {a.budget_min}", file=sys.stderr)
        return 2
    if a.launcher == "local" and (a.address or a.workers not in (None, 1)):
        print("error: --address and --workers N > 1 need --launcher ray", file=sys.stderr)
        return 2
    try:
        shard = parse_shard(a.shard) if a.shard else (0, 1)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    unknown = [d for d in a.datasets or () if d not in DATASETS]
    if unknown:
        print(f"error: unknown data set(s) {unknown}; the grid knows {list(DATASETS)}", file=sys.stderr)
        return 2
    from lib.ssm import SSM_NAMES

    bad = [s for s in a.ssms or () if s not in SSM_NAMES]
    if bad:
        print(f"error: unknown ssm(s) {bad}; choose from {list(SSM_NAMES)}", file=sys.stderr)
        return 2
    out = a.out or default_out(a.grid, a.profile)
    try:
        specs = GRIDS[a.grid](a.profile, a.datasets, a.ssms)
        have = set(_available({s.dataset for s in specs}))
        if not a.dry_run:
            check_writable(out, "--out")  # before anything trains
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name in sorted({s.dataset for s in specs} - have):
        print(f"not run: {name} — data not available here (point LOOPED_SSM_UEA_DIR at the UEA archive)")
    specs = [s for s in specs if s.dataset in have]
    if shard != (0, 1):
        specs = specs[shard[0]::shard[1]]
    where = f" (shard {shard[0]}/{shard[1]})" if shard != (0, 1) else ""
    print(f"{len(specs)} configurations x seeds -> {out}{where}", flush=True)
    if a.grid == "budget":
        print(estimate_text(specs, out), flush=True)
    if a.dry_run:
        for s in specs:
            print("  " + s.command(out))
        return 0
    from lib.launch import run_local, run_ray

    return (run_local if a.launcher == "local" else run_ray)(specs, a, out, shard, where)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # outside the training loop's own handler
        from lib.run import INTERRUPTED

        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
