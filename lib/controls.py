"""Why looping works: the three controls no peer ran (issue 21 §2), as a grid and as paired comparisons.

    python -m lib.grid --grid controls --profile budget [--dry-run]

The looped-vs-standard gap could come from parameter sharing as an inductive bias, from the shared
learning rate favouring the smaller model, or from the initialisation. On ``control_sets(records)``
(``CONTROL_SETS`` and the first of ``FOURTH_SET_CANDIDATES`` the records do not flag; each on the input
its budget-grid pilot chose, ``lib.grid.budget_chunks``), for ``CONTROL_SSMS``, 5 seeds, budget
profile:

* **tied initialisation** (tag ``control-tied``): the standard 6×1 model started as
  ``untie(looped 1×6 at init)`` (``lib.model.tied_init``) and trained untied. Compared with the
  looped model and with the standard model of the default initialisation (the budget grid's cells):
  does it stay with the looped one it starts as, or move to the standard one?
* **learning rate per model** (tag ``control-lr``): lr ∈ ``CONTROL_LRS`` for looped and standard
  alike (the SSM's own rate is the budget grid's cell); each model gets the rate with the best mean
  validation accuracy, chosen per data set, and C1 (looped − standard, non-inferiority margin
  ``lib.claims.DELTA``) is decided again on those.
* **input injection** (tag ``control-injection``): the looped model with the encoded input added
  before every block application but the first, against the looped model without.

Each comparison is paired by seed (same split) and pooled over data sets with the verdicts'
hierarchical bootstrap (``lib.claims.hierarchical_ci``); sets at the ceiling or at chance are flagged
and left out of the pool, as in the verdicts.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from lib import claims as C
from lib import results as R  # records and stats
from lib.ssm import ssm_label, ssm_rank
from lib.stats import effect_text

#: the sets the issue names for the controls (issue 21 §2: SCP1 concat/16, LSST, Handwriting, + one more
#: set with headroom, chosen by ``control_sets``)
CONTROL_SETS = ("SelfRegulationSCP1", "LSST", "Handwriting")
#: the candidates for that one more set, in order of preference: the paper's other set first, then
#: the budget sets furthest from the ceiling in the pilots (Epilepsy 96 %, UWaveGestureLibrary 97 %),
#: then the short sets added to the budget grid for headroom
FOURTH_SET_CANDIDATES = ("MotorImagery", "Epilepsy", "UWaveGestureLibrary", "RacketSports", "Libras", "ERing")
CONTROL_SSMS = ("s5", "lru")
CONTROL_LRS = (3e-4, 1e-3, 3e-3)
TAGS = {"tied": "control-tied", "lr": "control-lr", "injection": "control-injection"}


def control_sets(records, profile: str = "budget", *, flagged=None) -> tuple:
    """``CONTROL_SETS`` and the one more set with headroom: the first of ``FOURTH_SET_CANDIDATES``
    whose budget-grid comparison the records do not flag (``lib.grid.flagged_pairs``: ceiling or
    chance) for any of ``CONTROL_SSMS``; a candidate not yet recorded counts as having headroom, so
    the choice can move on once its comparison is recorded (records already made stay shown).
    ``flagged``: ``flagged_pairs`` of the same records, where the caller has it already."""
    from lib import grid as G

    flagged = G.flagged_pairs(R.as_rows(records), profile) if flagged is None else flagged
    for name in FOURTH_SET_CANDIDATES:
        if (name, None) not in flagged and not any((name, ssm) in flagged for ssm in CONTROL_SSMS):
            return (*CONTROL_SETS, name)
    return CONTROL_SETS


def controls_grid(profile: str = "budget", datasets=None, ssms=None, *, records=None, flagged=None) -> list:
    """The controls' configurations (``RunSpec``s) on ``control_sets`` whose budget-grid chunk is
    chosen, in ``budget_order``; ``flagged``: ``lib.grid.flagged_pairs`` of ``records``, where the caller
    has it already (both steps read it)."""
    from lib import grid as G

    depth = G.SMOKE["depth"] if profile == "smoke" else 6
    if records is None:
        path = G.default_out("budget", profile)
        records = list(R.iter_records(path, validate=False)) if __import__("os").path.exists(path) else []
    records = R.as_rows(records)
    chosen = G.budget_chunks(records, profile)
    flagged = G.flagged_pairs(records, profile) if flagged is None else flagged
    specs = []
    for name in control_sets(records, profile, flagged=flagged):
        if (datasets and name not in datasets) or name not in chosen:
            continue
        bs = G.BUDGET_SETS[name]
        for ssm in ssms or CONTROL_SSMS:
            def spec(b, l, tag, **kw):
                s = G._budget_spec(name, ssm, b, l, bs.reshape, chosen[name], profile=profile, tag=tag)
                return dataclasses.replace(s, **kw)

            specs.append(spec(depth, 1, TAGS["tied"], init="tied"))
            default_lr = spec(depth, 1, R.MAIN_TAG).train_config().lr
            for lr in CONTROL_LRS:
                if not math.isclose(lr, default_lr):
                    specs += [spec(b, l, TAGS["lr"], lr=lr) for b, l in ((depth, 1), (1, depth))]
            specs.append(spec(1, depth, TAGS["injection"], input_injection=True))
    return G.budget_order(specs, records, profile, flagged=flagged)


def control_records(df: pd.DataFrame, profile: str = "budget") -> pd.DataFrame:
    """The records the comparisons read: the budget grid's cells (``lib.claims.records``) and the
    controls' records, for ``CONTROL_SSMS`` on the paper protocol; ``init`` filled for old records."""
    if df.empty:
        return df
    main = C.records(df, profile, CONTROL_SSMS)
    ctl = R.select(df, {"profile": profile, "protocol": "paper", "tag": list(TAGS.values())})
    ctl = ctl[ctl["ssm"].isin(CONTROL_SSMS)] if not ctl.empty else ctl
    d = pd.concat([x for x in (main, R.with_key_columns(ctl) if not ctl.empty else ctl) if not x.empty],
                  ignore_index=True) if not (main.empty and ctl.empty) else main
    if d.empty:
        return d
    d = R.with_key_columns(d)
    return d[d["reshape"] != "none"]  # the controls run on each set's chosen input


def _pairs(d: pd.DataFrame, a: dict, b: dict) -> pd.DataFrame:
    on = ["dataset", "ssm", "seed", "reshape", "chunk"]
    A, B = R.select(d, a), R.select(d, b)
    if A.empty or B.empty:
        return pd.DataFrame(columns=on + ["a", "b", "diff"])
    A = A.drop_duplicates(on)[on + ["test_acc"]].rename(columns={"test_acc": "a"})
    B = B.drop_duplicates(on)[on + ["test_acc"]].rename(columns={"test_acc": "b"})
    m = A.merge(B, on=on)
    m["a"], m["b"] = 100 * m["a"].astype(float), 100 * m["b"].astype(float)
    m["diff"] = m["a"] - m["b"]
    return m


def _best_lr(d: pd.DataFrame, model: dict) -> pd.DataFrame:
    """Per data set and SSM, the records of ``model`` at the rate with the best mean validation
    accuracy over seeds among ``CONTROL_LRS`` (ties: the smaller rate); column ``lr_chosen``."""
    m = R.select(d, model)
    m = m[[any(math.isclose(float(x), lr) for lr in CONTROL_LRS) for x in m["lr"]]] if not m.empty else m
    if m.empty:
        return m
    out = []
    for _, g in m.groupby(["dataset", "ssm"]):
        n = g.groupby("lr")["seed"].nunique()
        if len(n) < len(CONTROL_LRS):  # every rate must be there before one is chosen
            continue
        means = g.groupby("lr")["val_acc"].mean()
        lr = float(min(x for x, v in means.items() if v == means.max()))
        out.append(g[g["lr"] == lr].assign(lr_chosen=lr))
    return pd.concat(out, ignore_index=True) if out else m.iloc[0:0]


COMPARISONS = (
    # (control, comparison, a, b, rule): a − b in points; rule None: an effect with its interval
    ("tied", "tied standard − looped", dict(blocks=6, loops=1, init="tied"), dict(blocks=1, loops=6), None),
    ("tied", "tied standard − standard", dict(blocks=6, loops=1, init="tied"), dict(blocks=6, loops=1, init="default"),
     None),
    ("lr", "looped − standard, each at its best rate", dict(blocks=1, loops=6), dict(blocks=6, loops=1), "C1"),
    ("injection", "looped with injection − looped", dict(blocks=1, loops=6, input_injection=True),
     dict(blocks=1, loops=6, input_injection=False), None),
)


def control_pairs(df: pd.DataFrame, profile: str = "budget") -> pd.DataFrame:
    """Every comparison's per-seed pairs: control, comparison, dataset, ssm, seed, a, b, diff, and
    for the learning-rate control the two chosen rates."""
    d = control_records(df, profile)
    cols = ["control", "comparison", "dataset", "ssm", "seed", "a", "b", "diff", "lr_a", "lr_b"]
    if d.empty:
        return pd.DataFrame(columns=cols)
    default_lr = {s: float(R.select(d, {"ssm": s, "tag": R.MAIN_TAG})["lr"].iloc[0])
                  for s in CONTROL_SSMS if not R.select(d, {"ssm": s, "tag": R.MAIN_TAG}).empty}
    at_default = d[[math.isclose(float(x), default_lr.get(s, math.nan)) for x, s in zip(d["lr"], d["ssm"])]]
    parts = []
    for control, name, a, b, _ in COMPARISONS:
        if control == "lr":
            A, B = _best_lr(d, a), _best_lr(d, b)
            if A.empty or B.empty:
                continue
            p = _pairs(pd.concat([A, B], ignore_index=True), a, b)
            la = A.groupby(["dataset", "ssm"])["lr_chosen"].first()
            lb = B.groupby(["dataset", "ssm"])["lr_chosen"].first()
            p["lr_a"] = [la.get((x, s)) for x, s in zip(p["dataset"], p["ssm"])]
            p["lr_b"] = [lb.get((x, s)) for x, s in zip(p["dataset"], p["ssm"])]
        else:
            base = dict(init="default", input_injection=False)
            p = _pairs(at_default, {**base, **a}, {**base, **b})
        if not p.empty:
            parts.append(p.assign(control=control, comparison=name))
    if not parts:
        return pd.DataFrame(columns=cols)
    return pd.concat(parts, ignore_index=True).reindex(columns=cols)


def control_table(df: pd.DataFrame, profile: str = "budget", *, n_boot: int = C.N_BOOT, seed: int = 0):
    """``(per_set, pooled)``: per comparison × SSM × data set the mean paired difference over seeds
    with its interval and flag; pooled over the unflagged sets with the hierarchical interval, the
    sets it rests on, and, for the learning-rate control, C1's verdict (``lib.claims.RULES``)."""
    pairs = control_pairs(df, profile)
    d = control_records(df, profile)
    rows = []
    for (control, comp, ssm, name), g in pairs.groupby(["control", "comparison", "ssm", "dataset"], sort=False):
        per_seed = g.groupby("seed")[["a", "b", "diff"]].mean()
        lo, hi = C.hierarchical_ci([per_seed["diff"].to_numpy()], n=n_boot, seed=seed)
        a_m, b_m = float(per_seed["a"].mean()), float(per_seed["b"].mean())
        rates = ("" if control != "lr" else f"{g['lr_a'].iloc[0]:g} vs {g['lr_b'].iloc[0]:g}")
        rows.append(dict(control=control, comparison=comp, ssm=ssm, dataset=name, mean=float(per_seed["diff"].mean()),
                         lo=lo, hi=hi, a_mean=a_m, b_mean=b_m, n_seeds=len(per_seed), rates=rates,
                         flag=C.flag(a_m, b_m, C.chance_level(d, name))))
    per_set = pd.DataFrame(rows, columns=["control", "comparison", "ssm", "dataset", "mean", "lo", "hi", "a_mean",
                                          "b_mean", "n_seeds", "rates", "flag"])
    pooled = []
    for (control, comp, ssm), g in per_set.groupby(["control", "comparison", "ssm"], sort=False):
        use = g[g["flag"] == ""]
        groups = [pairs[(pairs["comparison"] == comp) & (pairs["ssm"] == ssm) & (pairs["dataset"] == n)]
                  .groupby("seed")["diff"].mean().to_numpy() for n in use["dataset"]]
        lo, hi = C.hierarchical_ci(groups, n=n_boot, seed=seed)
        mean = float(np.mean([x.mean() for x in groups])) if groups else math.nan
        rule = next(r for c, n, _, _, r in COMPARISONS if n == comp)
        verdict = ("" if rule is None else
                   "not enough sets" if len(groups) < C.MIN_SETS else C.RULES[rule].decide(lo, hi))
        pooled.append(dict(control=control, comparison=comp, ssm=ssm, mean=mean, lo=lo, hi=hi, n_sets=len(groups),
                           sets=", ".join(use["dataset"]),
                           flagged=", ".join(f"{n} ({f})" for n, f in zip(g["dataset"], g["flag"]) if f),
                           verdict=verdict))
    return per_set, pd.DataFrame(pooled, columns=["control", "comparison", "ssm", "mean", "lo", "hi", "n_sets", "sets",
                                                  "flagged", "verdict"])


def _fmt(r) -> str:
    return effect_text(r["mean"], r["lo"], r["hi"])


def reading(pooled: pd.DataFrame) -> list:
    """One sentence per SSM and control saying what the pooled comparisons say about why looping
    matches, computed from ``control_table``'s pooled rows (an interval containing 0: no detectable
    difference); fewer than ``lib.claims.MIN_SETS`` sets is said to be indicative only."""
    out = []
    for name in sorted(pooled["ssm"].unique(), key=ssm_rank):  # registry order, the names the pages print
        g, ssm = pooled[pooled["ssm"] == name], ssm_label(name)
        p = {r["comparison"]: r for r in g.to_dict("records") if r["n_sets"] > 0}

        def few(r):
            return "" if r["n_sets"] >= C.MIN_SETS else f" (on {r['n_sets']} set(s), under {C.MIN_SETS}: indicative only)"

        tl, ts = p.get("tied standard − looped"), p.get("tied standard − standard")
        if tl and ts:
            near_l, near_s = tl["lo"] <= 0 <= tl["hi"], ts["lo"] <= 0 <= ts["hi"]
            if near_l and not near_s:
                text = "ends with the looped model it starts as: the starting point carries the difference"
            elif near_s and not near_l:
                text = ("ends with the standard model: what sets the looped model apart is that its blocks stay tied "
                        "while it trains, not where they start")
            else:
                text = ("cannot be placed: its intervals against both models " +
                        ("contain 0" if near_l and near_s else "exclude 0") + "")
            out.append(f"{ssm}, tied initialisation ({tl['sets']}): the standard model started as the looped one "
                       f"{text}; tied − looped {_fmt(tl)}, tied − standard {_fmt(ts)} points{few(tl)}.")
        lr = p.get("looped − standard, each at its best rate")
        if lr:
            said = {"holds": "C1 holds", "fails": "C1 fails", "inconclusive": "C1 is inconclusive"}.get(
                lr["verdict"], f"C1 cannot be decided yet ({lr['verdict']})")
            out.append(f"{ssm}, learning rate per model ({lr['sets']}): with each model at its best rate on validation, "
                       f"{said} (looped − standard {_fmt(lr)} points){few(lr)}.")
        inj = p.get("looped with injection − looped")
        if inj:
            effect = ("helps the looped model" if inj["lo"] > 0 else "hurts the looped model" if inj["hi"] < 0
                      else "makes no difference the interval can detect")
            out.append(f"{ssm}, input injection ({inj['sets']}): adding the input at every iteration {effect} "
                       f"({_fmt(inj)} points){few(inj)}.")
    return out
