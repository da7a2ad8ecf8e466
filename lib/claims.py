"""The claims' verdicts: paired differences per data set, pooled with a hierarchical bootstrap,
decided by rules with three outcomes (holds / fails / inconclusive).

    from lib import claims as C
    C.per_dataset(df, profile="budget")   # one row per claim × SSM × data set (the forest plot)
    C.verdict_table(df, profile="budget") # one row per scope × claim × SSM (the intro's grid)
    C.RULES["C1"].text                    # the rule, as the page prints it

What is compared (each difference paired by seed, i.e. by split, on records that agree in every
other training setting: ``lib.results.paired_differences``):

* **C1** looped (1×6) − standard (6×1) on the same input. A data set's difference for a seed is
  the mean over the inputs where both were run (no reshaping and/or its reshaping).
* **C3** reshaped − no reshaping, same model; the reshaping (method, chunk) is the one with the
  best mean validation accuracy among those recorded (``lib.results.best_by_validation``). A data
  set's difference for a seed is the mean over the models (6×1 and 1×6) that have both inputs.
* **C4** the two compound: the compound gain G = (looped + reshaped) − (standard + none), shown
  beside the looping effect on the reshaped input E = (looped + reshaped) − (standard + reshaped).

Pooling: per data set the mean over seeds; over data sets the mean of those, with a 95 %
interval from a hierarchical bootstrap (resample data sets, then seeds within each resampled
set: ``hierarchical_ci``). A data set where both compared models are above ``CEILING`` % or both
within ``CHANCE_BAND`` points of chance is shown but flagged and left out of the pooled verdict.
Chance is the majority-class rate (``lib.data.majority_rate``: the accuracy of always answering the
most frequent class), 100 / number of classes only for a data set whose files are not here. Profiles are never mixed: every function takes one profile.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from lib import results as R
from lib.ssm import paper_ssms, ssm_label, ssm_rank
from lib.stats import effect_text, signed

#: C1's non-inferiority margin δ (points): looped may lose at most this much to standard
DELTA = 1.0
#: C3's minimum gain (points): the paper's "1–6 points"
C3_GAIN = 1.0
#: a data set where both compared models average above this (%) is at the ceiling
CEILING = 97.0
#: ... or where both are within this many points of chance (the majority-class rate, ``chance_level``)
CHANCE_BAND = 5.0
LEVEL = 0.95
N_BOOT = 10_000
#: a verdict other than "inconclusive" needs at least this many pooled data sets: with fewer, the
#: interval resamples seeds only and says nothing about other data (the claims are about benchmarks)
MIN_SETS = 3
#: records the verdicts read: the grid's comparisons (``main``) and the pilot that chose each chunk
TAGS = (R.MAIN_TAG, "pilot")
LOOPED, STANDARD = (1, 6), (6, 1)
OUTCOMES = ("holds", "inconclusive", "fails")


@dataclasses.dataclass(frozen=True)
class Rule:
    """A claim's decision rule on the pooled effect's interval ``[lo, hi]`` (points)."""

    claim: str
    effect: str
    text: str

    def decide(self, lo: float, hi: float, mean: float = math.nan, lo2: float = math.nan,
               hi2: float = math.nan) -> str:
        if math.isnan(lo) or math.isnan(hi):
            return "not yet run"
        if self.claim == "C1":
            return "holds" if lo >= -DELTA else "fails" if hi < -DELTA else "inconclusive"
        if self.claim == "C3":
            return "holds" if (mean >= C3_GAIN and lo > 0) else "fails" if hi < C3_GAIN else "inconclusive"
        if self.claim == "C4":  # lo, hi: compound gain G; lo2, hi2: looping effect on reshaped input E
            if math.isnan(lo2):
                return "not yet run"
            if lo > 0 and lo2 >= -DELTA:
                return "holds"
            return "fails" if (hi < 0 or hi2 < -DELTA) else "inconclusive"
        raise ValueError(f"unknown claim {self.claim!r}")


RULES = {
    "C1": Rule("C1", "looped 1×6 − standard 6×1, same input",
               f"non-inferiority with margin δ = {DELTA:g} point: holds when the interval's lower bound "
               f"≥ −δ; fails when its upper bound < −δ; otherwise inconclusive"),
    "C3": Rule("C3", "reshaped − no reshaping, same model",
               f"holds when the pooled gain ≥ +{C3_GAIN:g} point and the interval's lower bound > 0; "
               f"fails when the upper bound < +{C3_GAIN:g}; otherwise inconclusive"),
    "C4": Rule("C4", "compound gain G = (looped + reshaped) − (standard + none); looping on reshaped input "
                     "E = (looped + reshaped) − (standard + reshaped)",
               f"holds when G's lower bound > 0 and E's lower bound ≥ −δ (δ = {DELTA:g}); fails when G's "
               f"upper bound < 0 or E's upper bound < −δ; otherwise inconclusive"),
}
COMMON = (f"Differences are paired by seed (same split) on records that agree in every other setting. "
          f"A verdict other than inconclusive needs at least {MIN_SETS} pooled data sets. "
          f"Per data set: the mean over seeds; pooled: the mean over data sets, {LEVEL:.0%} interval from a "
          f"hierarchical bootstrap ({N_BOOT} resamples: data sets, then seeds within each). Data sets "
          f"where both models average above {CEILING:g} % (ceiling) or within {CHANCE_BAND:g} points of "
          f"chance (the share of the most frequent class: what always answering it scores) are shown but "
          f"left out of the pooled verdict. One profile per verdict.")


def hierarchical_ci(groups, *, n: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> tuple:
    """Percentile interval of the mean over groups of each group's mean, resampling groups with
    replacement and then the values within each drawn group (deterministic for ``seed``).
    ``(nan, nan)`` without values; with one group it resamples that group's values only."""
    groups = [np.asarray(g, float).ravel() for g in groups]
    groups = [g for g in groups if g.size]
    if not groups:
        return (math.nan, math.nan)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    G = len(groups)
    pick = rng.integers(0, G, size=(int(n), G))
    stats = np.zeros(int(n))
    for j, g in enumerate(groups):  # each group's resampled means, used wherever it was drawn
        means = g[rng.integers(0, g.size, size=(int(n), g.size))].mean(axis=1)
        stats += (pick == j).sum(axis=1) * means
    stats /= G
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return (float(lo), float(hi))


def spread(groups, by=None) -> dict:
    """How the per-seed differences of ``groups`` (one array per data set) vary: ``sigma``, the sd of a
    seed's difference about its set's mean (pooled over sets), and ``tau``, the sd of the sets' true
    mean differences (method of moments: the variance of the set means less the part their seeds
    explain, floored at 0); ``by`` (one label per group, e.g. the SSM) subtracts each label's mean
    first, so differences between SSMs do not count as spread between sets. Also ``n_groups`` and
    ``seeds`` (the median seeds per set)."""
    groups = [np.asarray(g, float).ravel() for g in groups]
    keep = [i for i, g in enumerate(groups) if g.size >= 2]
    groups = [groups[i] for i in keep]
    by = [by[i] for i in keep] if by is not None else [0] * len(groups)
    if len(groups) < 2 or len(set(by)) >= len(groups):
        return dict(tau=math.nan, sigma=math.nan, n_groups=len(groups), seeds=0)
    var_w = np.array([g.var(ddof=1) for g in groups])
    n = np.array([g.size for g in groups])
    sigma2 = float(np.sum(var_w * (n - 1)) / np.sum(n - 1))
    means = np.array([g.mean() for g in groups])
    labels = np.array([str(b) for b in by])
    centred = means - np.array([means[labels == b].mean() for b in labels])
    between = float(np.sum(centred ** 2) / (len(groups) - len(set(labels))))
    tau2 = max(0.0, between - sigma2 * float(np.mean(1.0 / n)))
    return dict(tau=math.sqrt(tau2), sigma=math.sqrt(sigma2), n_groups=len(groups), seeds=int(np.median(n)))


def simulate_intervals(n_sets: int, tau: float, sigma: float, *, seeds: int = 5, reps: int = 400,
                       n_boot: int = 1000, seed: int = 0, level: float = LEVEL) -> dict:
    """What ``hierarchical_ci`` over ``n_sets`` data sets is worth at a given spread, by simulation:
    each set's true effect is drawn N(0, tau²) and each of its ``seeds`` per-seed differences
    N(that effect, sigma²). Returns ``coverage``, the share of ``reps`` grids whose interval contains
    the true pooled effect (the nominal level is ``level``), and ``half_width``, the intervals' median
    half-width in the differences' units (deterministic for ``seed``). Few sets with a spread between
    sets that dominates the seeds' give intervals that are too narrow; spread within sets alone gives
    intervals too wide (the bootstrap resamples seeds inside resampled sets)."""
    if n_sets < 1 or seeds < 1 or reps < 1:
        raise ValueError(f"n_sets, seeds and reps must be >= 1, got {n_sets}, {seeds}, {reps}")
    rng = np.random.default_rng(seed)
    hit, widths = 0, []
    for r in range(reps):
        effects = rng.normal(0.0, tau, n_sets)
        groups = [e + rng.normal(0.0, sigma, seeds) for e in effects]
        lo, hi = hierarchical_ci(groups, n=n_boot, seed=seed + 1 + r, level=level)
        hit += lo <= 0.0 <= hi
        widths.append((hi - lo) / 2)
    return dict(coverage=hit / reps, half_width=float(np.median(widths)))


def c1_spread(df: pd.DataFrame, profile: str, *, ssms=None) -> dict:
    """``spread`` of C1's per-seed differences over the data sets the verdicts pool (unflagged), all
    SSMs together (each SSM's own mean taken out), with the sets × SSMs it rests on (``cells``)."""
    ssms = paper_ssms() if ssms is None else tuple(ssms)
    d = records(df, profile, ssms)
    per = per_dataset(df, profile, ssms=ssms, n_boot=1)
    groups, by, cells = [], [], []
    for ssm in ssms:
        use = per[(per["claim"] == "C1") & (per["ssm"] == ssm) & (per["flag"] == "")]
        if use.empty:
            continue
        p = claim_pairs(d[d["ssm"] == ssm], "C1")
        for name in use["dataset"]:
            groups.append(p[p["dataset"] == name].groupby("seed")["diff"].mean().to_numpy())
            by.append(ssm)
            cells.append(f"{name} {ssm}")
    return dict(spread(groups, by), cells=cells)


SETS_SEARCHED = (10, 12, 16, 20, 24, 32, 48)  # grid sizes tried for how many sets a decision would take


def c1_decidability(df: pd.DataFrame, profile: str, *, n_sets: int = 8, search=SETS_SEARCHED) -> dict:
    """What a grid of ``n_sets`` data sets can decide about C1 at the spread the records show
    (``c1_spread``; one home for the intro's and the Experiments chapter's sentences): ``half_width``,
    the median half-width of the pooled 95 % interval (``simulate_intervals``); C1 can then read
    "holds" only for a true effect above ``holds_above`` (−δ + half-width) and "fails" only below
    ``fails_below`` (−δ − half-width). ``sets_needed``: the first size in ``search`` whose half-width is
    under δ (so that truly equal models can read "holds"), None when none is; ``sets_enough_not``: the
    size before it in ``search`` (None when it is the first). Values are NaN / None where the spread is
    not computable (fewer than two pooled cells)."""
    sp = c1_spread(df, profile)
    out = dict(sp, n_sets=n_sets, half_width=math.nan, holds_above=math.nan, fails_below=math.nan,
               sets_needed=None, sets_enough_not=None)
    if not math.isfinite(sp["tau"]):
        return out
    hw = simulate_intervals(n_sets, sp["tau"], sp["sigma"], seeds=sp["seeds"])["half_width"]
    search = tuple(search)
    need = next((g for g in search if simulate_intervals(g, sp["tau"], sp["sigma"], seeds=sp["seeds"],
                                                         reps=200)["half_width"] < DELTA), None)
    before = search[search.index(need) - 1] if need is not None and search.index(need) else None
    return dict(out, half_width=hw, holds_above=hw - DELTA, fails_below=-DELTA - hw, sets_needed=need,
                sets_enough_not=before)


def decidability_text(dec: dict) -> str:
    """``c1_decidability``'s reading in words, one home for the intro and the Experiments chapter: the
    typical half-width, the true effects above / below which C1 can hold / fail, and how many sets truly
    equal models would need to read "holds". Empty where the spread is not computable."""
    if not math.isfinite(dec["tau"]):
        return ""
    need, before = dec["sets_needed"], dec["sets_enough_not"]
    sets = ((f"more than {before} and at most {need}" if before else f"at most {need}") if need
            else f"more than {max(SETS_SEARCHED)}")
    return (f"An interval pooled over {dec['n_sets']} sets of {dec['seeds']} seeds spans about "
            f"±{dec['half_width']:.2f} points, so C1 can read 'holds' only where looped − standard is truly "
            f"about {signed(dec['holds_above'])} points or more (the whole interval above −δ = −{DELTA:g}), and "
            f"'fails' only below about {signed(dec['fails_below'])}; between, it stays inconclusive. Looped and "
            f"standard models that are truly equal would need {sets} data sets of {dec['seeds']} seeds to read "
            f"'holds' at δ = {DELTA:g}.")


def records(df: pd.DataFrame, profile: str, ssms=None) -> pd.DataFrame:
    """The SSM records one profile's verdicts read: the paper protocol, ``TAGS``, the SSMs ``ssms``
    (default: the paper's, ``lib.ssm.paper_ssms()``), one record per training (a pilot record and a
    main record of the same training count once)."""
    if df.empty:
        return df
    d = R.select(df, {"profile": profile, "protocol": "paper", "tag": list(TAGS)})
    d = d[d["ssm"].isin(paper_ssms() if ssms is None else tuple(ssms))]
    if d.empty:
        return d
    d = R.with_key_columns(d)
    keys = [R.training_key(r) for r in d.to_dict("records")]
    return d[~pd.Series(keys, index=d.index).duplicated()].assign(tag=R.MAIN_TAG)


def input_label(r, c) -> str:
    """An input as the pages name it: "none", or "method/chunk" (e.g. "concat/16")."""
    return "none" if r == "none" else f"{r}/{int(c)}"


def _pairs(d: pd.DataFrame, a: dict, b: dict) -> pd.DataFrame:
    """Per-seed a − b (points) with the inputs and both sides' accuracies."""
    p = R.paired_differences(d, a=a, b=b)
    if p.empty:
        return pd.DataFrame(columns=["dataset", "seed", "a", "b", "diff", "input"])
    if "reshape" in p.columns:
        p["input"] = [input_label(r, c) for r, c in zip(p["reshape"], p["chunk"])]
    else:
        p["input"] = [f"{input_label(r1, c1)} vs {input_label(r2, c2)}" for r1, c1, r2, c2 in
                      zip(p["reshape_a"], p["chunk_a"], p["reshape_b"], p["chunk_b"])]
    return p


def _best_reshaped(d: pd.DataFrame) -> pd.DataFrame:
    res = d[d["reshape"] != "none"]
    return R.best_by_validation(res, over=("reshape", "chunk", "order", "pad")) if not res.empty else res


def claim_pairs(d: pd.DataFrame, claim: str) -> pd.DataFrame:
    """One SSM's per-seed pairs of a claim (``d``: ``records`` of one SSM): columns dataset, seed,
    a, b, diff (points), input, part (C4: "G" or "E")."""
    (lk, ll), (sk, sl) = LOOPED, STANDARD
    looped, standard = dict(blocks=lk, loops=ll), dict(blocks=sk, loops=sl)
    none = d[d["reshape"] == "none"] if not d.empty else d
    best = _best_reshaped(d) if not d.empty else d
    parts = []
    if d.empty:
        return pd.DataFrame(columns=["dataset", "seed", "a", "b", "diff", "input", "part"])
    if claim == "C1":
        parts.append(_pairs(d, looped, standard).assign(part=""))
    elif claim == "C3":
        for m in (standard, looped):
            both = pd.concat([R.select(best, m), R.select(none, m)], ignore_index=True)
            p = _pairs(both, dict(m, reshape=["concat", "rechunk"]), dict(m, reshape="none"))
            parts.append(p.assign(part="", input=[f"{m['blocks']}×{m['loops']} {i}" for i in p["input"]]))
    elif claim == "C4":
        both = pd.concat([R.select(best, looped), R.select(none, standard)], ignore_index=True)
        parts.append(_pairs(both, dict(looped, reshape=["concat", "rechunk"]), dict(standard, reshape="none"))
                     .assign(part="G"))
        # the standard model on the input chosen for the looped one (paired on the same input)
        chosen = R.select(best, looped)
        inputs = ["dataset", "reshape", "chunk", "order", "pad"]
        std = R.select(d[d["reshape"] != "none"], standard).merge(chosen[inputs].drop_duplicates(), on=inputs)
        parts.append(_pairs(pd.concat([chosen, std], ignore_index=True), looped, standard).assign(part="E"))
    else:
        raise ValueError(f"claim must be C1, C3 or C4, got {claim!r}")
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(columns=["dataset", "seed", "a", "b", "diff", "input", "part"])
    out = pd.concat(parts, ignore_index=True)[["dataset", "seed", "a", "b", "diff", "input", "part"]]
    return out.astype({"a": float, "b": float, "diff": float})  # an empty part's columns are objects


def chance_level(d: pd.DataFrame, name: str) -> float:
    """Data set ``name``'s chance level (%): its majority-class rate where its files are here, else
    100 / the number of classes its records name."""
    from lib.data import majority_rate

    m = majority_rate(name)
    if m is not None:
        return 100.0 * m
    rows = d[d["dataset"] == name]
    for p in rows.get("pipeline", pd.Series(dtype=object)):
        if isinstance(p, dict) and p.get("n_classes"):
            return 100.0 / p["n_classes"]
    return math.nan


def flag(a_mean: float, b_mean: float, chance: float) -> str:
    """"ceiling", "chance" or "" for a data set whose two compared models average ``a_mean`` and
    ``b_mean`` (%)."""
    if a_mean > CEILING and b_mean > CEILING:
        return "ceiling"
    if not math.isnan(chance) and a_mean < chance + CHANCE_BAND and b_mean < chance + CHANCE_BAND:
        return "chance"
    return ""


def _seed_summary(p: pd.DataFrame, chance: float, *, n_boot: int, seed: int) -> dict:
    """One comparison's per-seed pairs ``p`` (``_pairs``) summarised as the verdicts read them: the
    mean difference over seeds with its bootstrap interval over seeds, both sides' means, the seed
    count and the flag (ceiling / chance / "")."""
    per_seed = p.groupby("seed")[["a", "b", "diff"]].mean()
    lo, hi = hierarchical_ci([per_seed["diff"].to_numpy()], n=n_boot, seed=seed)
    a_m, b_m = float(per_seed["a"].mean()), float(per_seed["b"].mean())
    return dict(mean=float(per_seed["diff"].mean()), lo=lo, hi=hi, a_mean=a_m, b_mean=b_m, n_seeds=len(per_seed),
                flag=flag(a_m, b_m, chance))


def per_dataset(df: pd.DataFrame, profile: str, *, ssms=None, n_boot: int = N_BOOT,
                seed: int = 0) -> pd.DataFrame:
    """One row per claim × SSM (default: the paper's, ``lib.ssm.paper_ssms()``) × data set (× C4
    part): the mean paired difference over seeds, its interval (bootstrap over seeds), both sides'
    mean accuracy, the inputs, the seed count and the flag (ceiling / chance / "")."""
    ssms = paper_ssms() if ssms is None else tuple(ssms)
    d = records(df, profile, ssms)
    rows = []
    for ssm in ssms:
        ds = d[d["ssm"] == ssm] if not d.empty else d
        for claim in ("C1", "C3", "C4"):
            p = claim_pairs(ds, claim)
            for (name, part), g in p.groupby(["dataset", "part"], sort=True):
                rows.append(dict(profile=profile, claim=claim, ssm=ssm, dataset=name, part=part,
                                 **_seed_summary(g, chance_level(ds, name), n_boot=n_boot, seed=seed),
                                 inputs=", ".join(sorted(set(g["input"]))), paper=name in _paper_sets()))
    cols = ["profile", "claim", "ssm", "dataset", "part", "mean", "lo", "hi", "a_mean", "b_mean", "n_seeds",
            "inputs", "flag", "paper"]
    return pd.DataFrame(rows, columns=cols)


def depth_policy_pairs(df: pd.DataFrame, profile: str, *, ssms=None, min_models: int = 2, n_boot: int = N_BOOT,
                       seed: int = 0) -> pd.DataFrame:
    """Depth 6 split other ways on the same input, against the standard 6×1 model: for every input
    (data set, reshaping, chunk) and SSM with records of 6×1 and of at least one other k × L of the
    same depth (3×2, 2×3, 1×6; ``min_models`` k × L in all), one row per k × L: its mean ± std test accuracy, the mean paired
    difference from 6×1 over seeds (points) with its bootstrap interval over seeds, the seed count,
    and the flag (ceiling / chance / "", ``flag`` on the two models' means). The looped end (1×6)
    is C1's comparison; 3×2 and 2×3 say whether sharing is gradual."""
    ssms = paper_ssms() if ssms is None else tuple(ssms)
    d = records(df, profile, ssms)
    cols = ["dataset", "input", "ssm", "model", "blocks", "loops", "mean", "std", "diff", "lo", "hi", "n_seeds",
            "flag"]
    if d.empty:
        return pd.DataFrame(columns=cols)
    depth = STANDARD[0] * STANDARD[1]
    d = d[d["blocks"] * d["loops"] == depth]
    rows = []
    for (name, ssm, reshape, chunk), g in d.groupby(["dataset", "ssm", "reshape", "chunk"], sort=True):
        models = sorted({(int(b), int(l)) for b, l in zip(g["blocks"], g["loops"])}, reverse=True)
        if STANDARD not in models or len(models) < max(2, min_models):
            continue
        std = dict(blocks=STANDARD[0], loops=STANDARD[1])
        chance = chance_level(d, name)
        for b, l in models:
            acc = 100 * R.select(g, dict(blocks=b, loops=l))["test_acc"].astype(float)
            row = dict(dataset=name, input=input_label(reshape, chunk), ssm=ssm, model=f"{b}×{l}", blocks=b,
                       loops=l, mean=float(acc.mean()), std=float(acc.std(ddof=0)), diff=math.nan, lo=math.nan,
                       hi=math.nan, n_seeds=len(acc), flag="")
            if (b, l) != STANDARD:
                p = _pairs(g, dict(blocks=b, loops=l), std)
                if not p.empty:
                    t = _seed_summary(p, chance, n_boot=n_boot, seed=seed)
                    row.update(diff=t["mean"], lo=t["lo"], hi=t["hi"], n_seeds=t["n_seeds"], flag=t["flag"])
            rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def _paper_sets() -> tuple:
    from lib.datasets import PAPER_DATASETS

    return PAPER_DATASETS


def _pool(rows: pd.DataFrame, pairs_by_set: dict, *, n_boot, seed):
    groups = [pairs_by_set[n] for n in rows["dataset"]]
    lo, hi = hierarchical_ci(groups, n=n_boot, seed=seed)
    mean = float(np.mean([g.mean() for g in groups])) if groups else math.nan
    return mean, lo, hi


def verdict_table(df: pd.DataFrame, profile: str, *, ssms=None, n_boot: int = N_BOOT,
                  seed: int = 0) -> pd.DataFrame:
    """One row per scope ("paper's sets", "all sets") × claim × SSM (default: the paper's,
    ``lib.ssm.paper_ssms()``): the pooled effect (C4: the compound gain G, with E beside it), its
    interval, the verdict (``RULES``), the data sets it rests on and those flagged and left out (with
    why), and the seed count."""
    ssms = paper_ssms() if ssms is None else tuple(ssms)
    d = records(df, profile, ssms)
    per = per_dataset(df, profile, ssms=ssms, n_boot=n_boot, seed=seed)
    out = []
    for scope, only_paper in (("paper's sets", True), ("all sets", False)):
        for claim in ("C1", "C3", "C4"):
            for ssm in ssms:
                ds = d[d["ssm"] == ssm] if not d.empty else d
                p = claim_pairs(ds, claim)
                sel = per[(per["claim"] == claim) & (per["ssm"] == ssm)]
                if only_paper:
                    sel = sel[sel["paper"].astype(bool)]
                res = {}
                for part in (("G", "E") if claim == "C4" else ("",)):
                    rows = sel[sel["part"] == part]
                    flagged = rows[rows["flag"] != ""]
                    if claim == "C4":  # a set flagged on either part is left out of both
                        flagged = sel[(sel["flag"] != "")]
                    used = rows[~rows["dataset"].isin(set(flagged["dataset"]))]
                    seeds = {n: g.groupby("seed")["diff"].mean().to_numpy()
                             for n, g in p[p["part"] == part].groupby("dataset")}
                    res[part] = (_pool(used, seeds, n_boot=n_boot, seed=seed), used, flagged)
                (mean, lo, hi), used, flagged = res["G" if claim == "C4" else ""]
                lo2 = hi2 = mean2 = math.nan
                if claim == "C4":
                    (mean2, lo2, hi2), used_e, _ = res["E"]
                    used = used[used["dataset"].isin(set(used_e["dataset"]))]
                verdict = RULES[claim].decide(lo, hi, mean, lo2, hi2) if len(used) else (
                    "not decidable" if len(flagged) else "not yet run")
                if verdict in ("holds", "fails") and len(used) < MIN_SETS:
                    verdict = "inconclusive"  # the interval would be over seeds of too few data sets
                out.append(dict(profile=profile, scope=scope, claim=claim, ssm=ssm, effect=mean, lo=lo, hi=hi,
                                e_effect=mean2, e_lo=lo2, e_hi=hi2, verdict=verdict, n_sets=len(used),
                                sets=", ".join(used["dataset"]),
                                flagged=", ".join(sorted({f"{n} ({f})" for n, f in
                                                          zip(flagged["dataset"], flagged["flag"])})),
                                n_seeds=int(used["n_seeds"].min()) if len(used) else 0,
                                inputs="; ".join(f"{n}: {i}" for n, i in zip(used["dataset"], used["inputs"]))))
    cols = ["profile", "scope", "claim", "ssm", "effect", "lo", "hi", "e_effect", "e_lo", "e_hi", "verdict",
            "n_sets", "sets", "flagged", "n_seeds", "inputs"]
    return pd.DataFrame(out, columns=cols)


def summary_sentence(v: pd.DataFrame) -> str:
    """A plain-language paragraph from ``verdict_table`` rows of one scope (computed, never typed)."""
    if v.empty or (v["verdict"] == "not yet run").all():
        return ("No looped–standard pair has records in this profile yet, so every trained claim reads "
                "'not yet run'; the Experiments chapter's coverage matrix shows what the grid has done.")
    parts = []
    names = {"C1": "looping matches the standard model (C1)", "C3": "reshaping gains at least a point (C3)",
             "C4": "the two compound (C4)"}
    for claim, g in v.groupby("claim", sort=True):
        by = {o: [ssm_label(x) for x in sorted(g[g["verdict"] == o]["ssm"], key=ssm_rank)]
              for o in (*OUTCOMES, "not yet run", "not decidable")}
        bits = [f"{o} for {', '.join(s)}" + (" (every data set with records for it is at the ceiling or at chance)"
                                             if o == "not decidable" else "") for o, s in by.items() if s]
        parts.append(f"That {names[claim]}: " + "; ".join(bits) + ".")
        if claim == "C1":  # inconclusive for non-inferiority, yet "no difference" is excluded
            worse = g[(g["verdict"] == "inconclusive") & (g["hi"] < 0) & (g["n_sets"] >= MIN_SETS)]
            if len(worse):
                parts.append("For " + ", ".join(f"{ssm_label(r.ssm)} ({effect_text(r.effect, r.lo, r.hi)})"
                                                for r in worse.itertuples())
                             + " the whole interval lies below 0: on these sets the looped model is worse than the "
                             f"standard one, but whether by more than δ = {DELTA:g} point is not decided on these sets.")
    sets = sorted({s for x in v["sets"] for s in x.split(", ") if s})
    who = {}  # "set (flag)" -> SSM -> the claims whose comparisons on it are flagged
    for x, ssm, claim in zip(v["flagged"], v["ssm"], v["claim"]):
        for f in (f for f in x.split(", ") if f):
            who.setdefault(f, {}).setdefault(ssm, set()).add(claim)
    flagged = []
    for f in sorted(who):  # a set can be at the ceiling on one input (one claim) and decide another
        by_claims = {}
        for ssm, cs in sorted(who[f].items(), key=lambda kv: ssm_rank(kv[0])):
            by_claims.setdefault(tuple(sorted(cs)), []).append(ssm_label(ssm))
        flagged.append(f"{f[:-1]}: " + "; ".join(f"{', '.join(ssms)} in {', '.join(cs)}"
                                                   for cs, ssms in by_claims.items()) + ")")
    tail = f" The pooled effects rest on {len(sets)} data set{'s' * (len(sets) != 1)} ({', '.join(sets) or 'none'})"
    tail += f"; flagged and left out, for the SSMs and claims named: {', '.join(flagged)}." if flagged else "."
    return " ".join(parts) + tail


#: truncation is acceptable when it moves looped − standard by at most this much on average (points)
CALIBRATION_TOLERANCE = 1.0


def calibration_table(df: pd.DataFrame, cells, *, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Budget against full on the same cells (``cells``: ``(dataset, ssm, reshape, chunk)``, each run
    standard 6×1 and looped 1×6 in both profiles): each profile's mean ± std test accuracy of both
    models, its paired looped − standard difference with a seed-bootstrap interval, and ``shift``
    = budget difference − full difference (points). Cells without both profiles' pairs are left out."""
    rows = []
    for name, ssm, reshape, chunk in cells:
        row = dict(dataset=name, ssm=ssm, input=input_label(reshape, chunk))
        ok = True
        for profile in ("full", "budget"):
            d = records(df, profile)
            if d.empty:
                ok = False
                break
            d = d[(d["dataset"] == name) & (d["ssm"] == ssm) & (d["reshape"] == reshape) & (d["chunk"] == chunk)]
            p = _pairs(d, dict(blocks=LOOPED[0], loops=LOOPED[1]), dict(blocks=STANDARD[0], loops=STANDARD[1]))
            if p.empty:
                ok = False
                break
            lo, hi = hierarchical_ci([p["diff"].to_numpy()], n=n_boot, seed=seed)
            for side, m in (("standard", STANDARD), ("looped", LOOPED)):
                acc = 100 * R.select(d, dict(blocks=m[0], loops=m[1]))["test_acc"].astype(float)
                row[f"{profile} {side}"] = f"{acc.mean():.2f} ± {acc.std(ddof=0):.2f}"
            steps = d["steps"].astype(float)
            row[f"{profile} diff"], row[f"{profile} lo"], row[f"{profile} hi"] = float(p["diff"].mean()), lo, hi
            row[f"{profile} steps"] = float(steps.median())
            row[f"{profile} seeds"] = len(p)
        if ok:
            row["shift"] = row["budget diff"] - row["full diff"]
            rows.append(row)
    return pd.DataFrame(rows)


#: the peers' and the paper's published numbers (a data file, not code)
PUBLISHED_FILE = __import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "published.json"
DEFAULT_DATASETS = R.DEFAULT_DATASETS


def published_numbers(datasets=DEFAULT_DATASETS) -> pd.DataFrame:
    """Published test accuracies (%, mean ± std over 5 seeds/splits) of the peers (LRU, S5,
    LinOSS-IM, LrcSSM; the fixed-config LrcSSM) and the Looped-SSMs paper's known per-data-set
    numbers (wizwand, variant unknown), read from ``data/published.json``. ``datasets=None``: all six."""
    import json

    rows = json.loads(PUBLISHED_FILE.read_text(encoding="utf-8"))["rows"]
    df = pd.DataFrame(rows, columns=["model", "dataset", "mean", "std", "n_seeds", "source", "evidence", "note"])
    df["std"] = df["std"].astype(float)  # null: not published
    return df[df["dataset"].isin(list(datasets))].reset_index(drop=True) if datasets is not None else df
