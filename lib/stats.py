"""Statistics over run records: selecting, summarising over seeds, choosing on validation, pairing by
seed, bootstrap intervals. Accuracies are fractions in records and percentage points here; standard
deviations over seeds use ``ddof=0`` by default, as the peers' aggregation does (``np.std`` in
Log-NCDE ``results/analyse_results.py``), so our ± is comparable to theirs."""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd

from lib.records import KEY_FIELDS, with_key_columns

__all__ = ["select", "summarize", "best_by_validation", "paired_differences", "per_dataset_comparison",
           "depth_policies", "bootstrap_ci", "MINUS", "signed", "effect_text"]

#: the minus sign the book prints (U+2212), as vega's d3-format does in the charts; a hyphen is not a minus
MINUS = "\u2212"


def signed(x: float, digits: int = 2) -> str:
    """``x`` in points with its sign, as the book prints a difference: ``+1.25``, ``−0.40``."""
    return f"{x:+.{digits}f}".replace("-", MINUS)


def effect_text(mean: float, lo: float, hi: float, digits: int = 2) -> str:
    """A difference with its interval, as the book prints it: ``−1.64 [−3.03, −0.08]``."""
    return f"{signed(mean, digits)} [{signed(lo, digits)}, {signed(hi, digits)}]"


# --------------------------------------------------------------------------------------------
# selections and summaries
# --------------------------------------------------------------------------------------------
def select(df: pd.DataFrame, where: Mapping | None = None) -> pd.DataFrame:
    """Rows of ``df`` matching ``where``: ``{field: value | list of values | callable(Series)->mask}``."""
    if not where:
        return df
    mask = pd.Series(True, index=df.index)
    for f, v in where.items():
        if f not in df.columns:
            raise ValueError(f"no column {f!r} to select on")
        col = df[f]
        if callable(v):
            m = np.asarray(v(col), dtype=bool)
        elif isinstance(v, (list, tuple, set, frozenset)):
            m = col.isin(list(v)).to_numpy()
        else:
            m = (col == v).to_numpy()
        mask &= m
    return df[mask.to_numpy()]


def _check_one_per_seed(df, keys, what):
    dup = df.duplicated(subset=list(keys) + ["seed"], keep=False)
    if dup.any():
        row = df[dup].iloc[0]
        where = {k: row[k] for k in keys}
        raise ValueError(f"{what}: seed {row['seed']} occurs more than once in group {where}; "
                         f"filter first or add the distinguishing field to the grouping")


def summarize(df: pd.DataFrame, by=None, *, metric: str = "test_acc", ddof: int = 0) -> pd.DataFrame:
    """Mean ± std over seeds of ``metric`` in percentage points, one row per group.

    ``by`` defaults to every ``KEY_FIELDS`` entry except ``seed`` (one row per configuration).
    Columns: the ``by`` fields, ``n_seeds``, ``mean``, ``std`` (``ddof=0`` like the peers'
    ``np.std``) and ``text`` ("87.35 ± 2.10"). A seed occurring twice in a group is an error (it
    means ``by`` leaves out a field that differs)."""
    by = [f for f in KEY_FIELDS if f != "seed"] if by is None else list(by)
    out_cols = by + ["n_seeds", "mean", "std", "text"]
    if df.empty:
        return pd.DataFrame(columns=out_cols)
    df = with_key_columns(df)
    _check_one_per_seed(df, by, "summarize")
    pts = df.assign(_pts=100.0 * df[metric].astype(float))
    g = pts.groupby(by, dropna=False, sort=True)["_pts"]
    out = pd.DataFrame({"n_seeds": g.size(), "mean": g.mean(),
                        "std": g.std(ddof=ddof)}).reset_index()
    out["text"] = [f"{m:.2f} ± {s:.2f}" for m, s in zip(out["mean"], out["std"])]
    return out[out_cols]


def best_by_validation(df: pd.DataFrame, over=("reshape", "chunk", "order"), within=None, *,
                       metric: str = "val_acc") -> pd.DataFrame:
    """Keep, within each ``within`` group, only the ``over`` configuration with the highest mean
    ``metric`` over seeds (ties: the first in sorted order). ``within`` defaults to the
    ``KEY_FIELDS`` not in ``over`` and not ``seed``. This is how a reshaping (or lr) is chosen
    without looking at test accuracy."""
    over = list(over)
    within = [f for f in KEY_FIELDS if f not in over and f != "seed"] if within is None else list(within)
    if df.empty:
        return df
    df = with_key_columns(df)
    means = (df.groupby(within + over, dropna=False, sort=True)[metric].mean().reset_index())
    best = means.loc[means.groupby(within, dropna=False, sort=False)[metric].idxmax()]
    return df.merge(best[within + over], on=within + over, how="inner")


_DEPENDENT = {"reshape": ("chunk", "order", "pad")}


def _default_on(a: Mapping, b: Mapping) -> list:
    drop = set(a) | set(b)
    for f in list(drop):
        drop |= set(_DEPENDENT.get(f, ()))
    return [f for f in KEY_FIELDS if f not in drop]


def _no_pairs(cols) -> pd.DataFrame:
    """An empty pairs frame whose points columns are float, so that concatenating it with real
    pairs keeps them numeric."""
    return pd.DataFrame(columns=cols).astype({c: float for c in ("a", "b", "diff")})


def paired_differences(df: pd.DataFrame, a: Mapping, b: Mapping, *, on=None,
                       metric: str = "test_acc") -> pd.DataFrame:
    """Per-seed differences ``a − b`` of ``metric`` in percentage points.

    ``a`` and ``b`` select rows (``select``), e.g. ``a=dict(blocks=1, loops=6)``,
    ``b=dict(blocks=6, loops=1)``. Rows are paired on ``on``, by default every ``KEY_FIELDS`` entry
    not named in ``a``/``b`` (naming ``reshape`` also frees ``chunk`` and ``order``), so a pair is
    the same data set, SSM, seed, reshaping, lr, sizes and tag. Returns the ``on`` fields, the
    freed fields as ``<field>_a``/``<field>_b``, and ``a``, ``b``, ``diff`` (points). Rows of one
    side without a partner are dropped; two rows of one side for one pair are an error."""
    on = _default_on(a, b) if on is None else list(on)
    df = with_key_columns(df)
    A, B = select(df, a), select(df, b)
    free = [f for f in KEY_FIELDS if f not in on]
    cols = on + [f"{f}_{s}" for f in free for s in ("a", "b")] + ["a", "b", "diff"]
    if A.empty or B.empty:
        return _no_pairs(cols)
    for side, name in ((A, "a"), (B, "b")):
        dup = side.duplicated(subset=on, keep=False)
        if dup.any():
            row = side[dup].iloc[0]
            raise ValueError(f"paired_differences: side {name} has several rows for "
                             f"{ {k: row[k] for k in on} }; filter first or pass on=")
    A = A[on + free + [metric]].rename(columns={metric: "_a", **{f: f"{f}_a" for f in free}})
    B = B[on + free + [metric]].rename(columns={metric: "_b", **{f: f"{f}_b" for f in free}})
    m = A.merge(B, on=on, how="inner")
    m["a"] = 100.0 * m.pop("_a").astype(float)
    m["b"] = 100.0 * m.pop("_b").astype(float)
    m["diff"] = m["a"] - m["b"]
    return m[cols].sort_values(on).reset_index(drop=True)


def per_dataset_comparison(pairs: pd.DataFrame, *, by=("dataset", "ssm"), ddof: int = 0) -> pd.DataFrame:
    """From ``paired_differences`` output: per data set and SSM (or per ``by``, e.g. adding
    ``reshape`` and ``chunk`` to compare at each input) the mean ± std over seeds of side a, side b
    and the paired difference, in points, with the number of paired seeds."""
    keys = [k for k in by if k in pairs.columns]
    cols = keys + ["n_seeds", "a_mean", "a_std", "b_mean", "b_std", "diff_mean", "diff_std"]
    if pairs.empty:
        return pd.DataFrame(columns=cols)
    g = pairs.groupby(keys, sort=True)
    out = pd.DataFrame({
        "n_seeds": g.size(),
        "a_mean": g["a"].mean(), "a_std": g["a"].std(ddof=ddof),
        "b_mean": g["b"].mean(), "b_std": g["b"].std(ddof=ddof),
        "diff_mean": g["diff"].mean(), "diff_std": g["diff"].std(ddof=ddof),
    }).reset_index()
    return out[cols]


def depth_policies(df: pd.DataFrame, *, depth: int = 6, by=("dataset", "ssm", "reshape", "chunk"),
                   min_policies: int = 2) -> pd.DataFrame:
    """Every blocks × loops factorisation of one ``depth`` on the same input, side by side.

    From SSM records (one per seed): the rows of that ``depth`` (validated = blocks · loops), summarised per ``by``
    and (blocks, loops) with ``summarize`` (mean ± std over seeds, points), keeping only the groups of
    ``by`` recorded for at least ``min_policies`` factorisations. One row per group and factorisation,
    most unique blocks first (6×1, 3×2, 2×3, 1×6); ``model`` is "blocks×loops"."""
    by = list(by)
    cols = by + ["blocks", "loops", "model", "n_seeds", "mean", "std", "text"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    s = summarize(df[df["depth"] == depth], by=by + ["blocks", "loops"])
    if s.empty:
        return pd.DataFrame(columns=cols)
    s = s.astype({"blocks": int, "loops": int})
    s["model"] = [f"{b}×{l}" for b, l in zip(s["blocks"], s["loops"])]
    n_policies = s.groupby(by, dropna=False)["model"].transform("size")
    s = s[n_policies >= min_policies]
    return s.sort_values(by + ["blocks"], ascending=[True] * len(by) + [False])[cols].reset_index(drop=True)


def bootstrap_ci(values, n: int = 10_000, seed: int = 0, level: float = 0.95) -> tuple:
    """Percentile bootstrap interval of the mean of ``values`` (e.g. per-data-set mean
    differences): resample ``len(values)`` values with replacement ``n`` times with
    ``numpy.random.default_rng(seed)``, take the ``(1±level)/2`` quantiles of the resampled means.
    Deterministic for a given seed; ``(nan, nan)`` for no values."""
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0:
        return (math.nan, math.nan)
    if not np.all(np.isfinite(v)):
        raise ValueError("bootstrap_ci: values must be finite")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(int(n), v.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return (float(lo), float(hi))
