"""The verdicts' statistics and rules (lib.claims), on constructed records whose answer is known."""
import math

import numpy as np
import pandas as pd
import pytest

from lib import claims as C
from lib import results as R
from tests.test_results import make_record

SEEDS = (2345, 3456, 4567, 5678, 6789)


def cell(dataset, ssm, blocks, loops, accs, reshape="none", chunk=1, classes=4, profile="budget", val=None):
    return [make_record(dataset=dataset, ssm=ssm, blocks=blocks, loops=loops, depth=blocks * loops,
                        reshape=reshape, chunk=chunk, seed=s, test_acc=a, val_acc=a if val is None else val,
                        profile=profile, pipeline={"n_classes": classes})
            for s, a in zip(SEEDS, accs)]


def grid(diffs, base=0.70, ssm="s5", reshape_gain=0.0, noise=0.0, seed=0, **kw):
    """Records of several data sets: looped = standard + diff (per data set), optionally reshaped."""
    rng = np.random.default_rng(seed)
    recs = []
    for i, d in enumerate(diffs):
        name = f"D{i}"
        std = base + noise * rng.normal(size=5)
        loo = std + d / 100 + noise * rng.normal(size=5)
        recs += cell(name, ssm, 6, 1, std, **kw) + cell(name, ssm, 1, 6, loo, **kw)
        if reshape_gain:
            recs += cell(name, ssm, 6, 1, std + reshape_gain / 100, "concat", 4, **kw)
            recs += cell(name, ssm, 1, 6, loo + reshape_gain / 100, "concat", 4, **kw)
    return pd.DataFrame(recs)


def verdict(v, claim, ssm="s5", scope="all sets"):
    return v[(v["claim"] == claim) & (v["ssm"] == ssm) & (v["scope"] == scope)].iloc[0]


def test_hierarchical_ci_covers_the_mean_and_widens_with_spread():
    rng = np.random.default_rng(1)
    tight = [rng.normal(0.0, 0.1, 5) for _ in range(6)]
    wide = [rng.normal(0.0, 3.0, 5) + rng.normal(0, 3) for _ in range(6)]
    lo, hi = C.hierarchical_ci(tight, n=2000)
    lo2, hi2 = C.hierarchical_ci(wide, n=2000)
    assert lo < np.mean([g.mean() for g in tight]) < hi
    assert hi2 - lo2 > 5 * (hi - lo)
    assert all(math.isnan(x) for x in C.hierarchical_ci([], n=10))
    assert C.hierarchical_ci(tight, n=500, seed=3) == C.hierarchical_ci(tight, n=500, seed=3)


def test_hierarchical_ci_resamples_data_sets_not_only_seeds():
    """Two data sets at +5 and −5 with no seed noise: a seeds-only bootstrap would give a zero-width
    interval at 0; resampling the data sets gives one that spans them."""
    lo, hi = C.hierarchical_ci([np.full(5, 5.0), np.full(5, -5.0)], n=4000)
    assert lo == pytest.approx(-5.0) and hi == pytest.approx(5.0)


@pytest.mark.parametrize("diffs,expected", [((0.0, 0.2, -0.2, 0.1), "holds"),
                                            ((-5.0, -4.6, -5.3, -4.9), "fails"),
                                            ((3.0, -6.0, 4.0, -5.0), "inconclusive")])
def test_c1_non_inferiority_three_outcomes(diffs, expected):
    v = C.verdict_table(grid(diffs, noise=0.002), "budget", ssms=("s5",), n_boot=2000)
    r = verdict(v, "C1")
    assert r["verdict"] == expected, r
    assert r["n_sets"] == 4 and r["sets"] == "D0, D1, D2, D3"


def test_c3_needs_a_point_of_gain():
    assert verdict(C.verdict_table(grid((0, 0, 0), reshape_gain=3.0), "budget", ssms=("s5",), n_boot=500),
                   "C3")["verdict"] == "holds"
    assert verdict(C.verdict_table(grid((0, 0, 0), reshape_gain=0.2), "budget", ssms=("s5",), n_boot=500),
                   "C3")["verdict"] == "fails"


def test_c4_compound_gain_and_looping_on_reshaped_input():
    r = verdict(C.verdict_table(grid((0.0, 0.1, -0.1), reshape_gain=3.0), "budget", ssms=("s5",), n_boot=500), "C4")
    assert r["verdict"] == "holds" and r["effect"] == pytest.approx(3.0, abs=0.2)
    r = verdict(C.verdict_table(grid((-4.0, -4.2, -3.9), reshape_gain=2.0), "budget", ssms=("s5",), n_boot=500), "C4")
    assert r["verdict"] == "fails"  # looping loses 4 points on the reshaped input


def test_ceiling_and_chance_sets_are_flagged_and_left_out():
    recs = grid((0.0, 0.1), noise=0.001)
    recs = pd.concat([recs, pd.DataFrame(cell("Top", "s5", 6, 1, [0.99] * 5) + cell("Top", "s5", 1, 6, [0.90] * 5)
                                         + cell("Coin", "s5", 6, 1, [0.5] * 5, classes=2)
                                         + cell("Coin", "s5", 1, 6, [0.4] * 5, classes=2))])
    per = C.per_dataset(recs, "budget", ssms=("s5",), n_boot=200)
    flags = dict(zip(per[per["claim"] == "C1"]["dataset"], per[per["claim"] == "C1"]["flag"]))
    assert flags == {"D0": "", "D1": "", "Top": "", "Coin": "chance"}  # Top: only one model above 97 %
    recs.loc[(recs["dataset"] == "Top") & (recs["blocks"] == 1), "test_acc"] = 0.98
    r = verdict(C.verdict_table(recs, "budget", ssms=("s5",), n_boot=200), "C1")
    assert "Top (ceiling)" in r["flagged"] and "Coin (chance)" in r["flagged"] and r["sets"] == "D0, D1"


def test_chance_is_the_majority_class_rate_where_the_data_are_here():
    """LSST has 14 classes (1/14 = 7 %) but one of them holds 32 % of the cases: models at 34–35 % have
    learnt little beyond the class prior and must not decide a verdict."""
    from lib.data import available_datasets, majority_rate

    if "LSST" not in available_datasets():
        pytest.skip("LSST's files are not here")
    assert majority_rate("LSST") == pytest.approx(0.316, abs=0.002)
    assert majority_rate("NoSuchSet") is None
    recs = pd.DataFrame(cell("LSST", "s5", 6, 1, [0.35] * 5, classes=14) + cell("LSST", "s5", 1, 6, [0.34] * 5, classes=14)
                        + cell("Other", "s5", 6, 1, [0.35] * 5, classes=14) + cell("Other", "s5", 1, 6, [0.34] * 5, classes=14))
    per = C.per_dataset(recs, "budget", ssms=("s5",), n_boot=100)
    flags = dict(zip(per[per["claim"] == "C1"]["dataset"], per[per["claim"] == "C1"]["flag"]))
    assert flags == {"LSST": "chance", "Other": ""}  # Other: no files here, so chance is 100/14 %


def test_profiles_are_never_mixed():
    recs = pd.concat([grid((0.0,), noise=0.001), grid((-9.0,), profile="full", noise=0.001)])
    assert verdict(C.verdict_table(recs, "budget", ssms=("s5",), n_boot=200), "C1")["effect"] == pytest.approx(0, abs=0.3)
    assert verdict(C.verdict_table(recs, "full", ssms=("s5",), n_boot=200), "C1")["effect"] == pytest.approx(-9, abs=0.3)


def test_rule_decisions_at_the_boundaries():
    c1 = C.RULES["C1"]
    assert c1.decide(-C.DELTA, 2.0) == "holds"
    assert c1.decide(-3.0, -C.DELTA - 1e-9) == "fails"
    assert c1.decide(-1.5, 0.5) == "inconclusive"
    assert c1.decide(math.nan, math.nan) == "not yet run"
    c3 = C.RULES["C3"]
    assert c3.decide(0.1, 3.0, mean=1.5) == "holds" and c3.decide(0.1, 3.0, mean=0.9) == "inconclusive"
    assert c3.decide(-1.0, 0.99, mean=0.0) == "fails"


def test_pilot_and_main_records_of_one_training_count_once():
    recs = grid((0.5,), noise=0.001)
    pilot = recs[recs["blocks"] == 1].assign(tag="pilot")
    d = C.records(pd.concat([recs, pilot]), "budget")
    assert len(d) == len(recs)


def test_too_few_data_sets_cannot_decide():
    """Two clean data sets would 'hold' on their seeds alone; the claims are about benchmarks."""
    v = C.verdict_table(grid((0.0, 0.1), noise=0.001), "budget", ssms=("s5",), n_boot=500)
    r = verdict(v, "C1")
    assert r["lo"] >= -C.DELTA and r["n_sets"] == 2 < C.MIN_SETS
    assert r["verdict"] == "inconclusive"


def test_summary_sentence_names_outcomes_sets_and_which_ssms_a_flag_concerns():
    recs = pd.concat([grid((0.0, 0.1, 0.2), noise=0.001),
                      pd.DataFrame(cell("Top", "s5", 6, 1, [0.99] * 5) + cell("Top", "s5", 1, 6, [0.99] * 5))])
    v = C.verdict_table(recs, "budget", ssms=("s5", "lru"), n_boot=200)
    text = C.summary_sentence(v[v["scope"] == "all sets"])
    assert "That looping matches the standard model (C1): holds for S5; not yet run for LRU." in text
    assert "rest on 3 data sets (D0, D1, D2)" in text
    assert "Top (ceiling: S5 in C1)" in text
    # a set at the ceiling on its reshaped input only (both models) is left out of C4, and still decides C1 and C3
    top = pd.DataFrame(cell("Top", "s5", 6, 1, [0.90] * 5) + cell("Top", "s5", 1, 6, [0.91] * 5)
                       + cell("Top", "s5", 6, 1, [0.99] * 5, "concat", 4) + cell("Top", "s5", 1, 6, [0.99] * 5, "concat", 4))
    v = C.verdict_table(pd.concat([grid((0.0, 0.1, 0.2), noise=0.001, reshape_gain=2.0), top]), "budget",
                        ssms=("s5",), n_boot=200)
    text = C.summary_sentence(v[v["scope"] == "all sets"])
    assert "Top (ceiling: S5 in C4)" in text and "rest on 4 data sets (D0, D1, D2, Top)" in text
    assert C.summary_sentence(v.iloc[0:0]).startswith("No looped–standard pair")



def test_summary_sentence_says_when_an_inconclusive_c1_still_excludes_no_difference():
    """Non-inferiority can stay open while the interval lies below 0: the reader is told looped is worse
    there, and by how much is open; nothing is said where the interval reaches 0."""
    rows = pd.DataFrame([
        dict(claim="C1", ssm="s5", verdict="inconclusive", effect=-1.6, lo=-3.0, hi=-0.1, n_sets=4, sets="A, B, C, D", flagged=""),
        dict(claim="C1", ssm="lru", verdict="inconclusive", effect=-1.2, lo=-2.7, hi=0.4, n_sets=4, sets="A, B, C, D", flagged=""),
        dict(claim="C1", ssm="lrcssm", verdict="inconclusive", effect=-3.0, lo=-4.0, hi=-2.0, n_sets=1, sets="A", flagged="")])
    text = C.summary_sentence(rows)
    assert "For S5 (\u22121.60 [\u22123.00, \u22120.10]) the whole interval lies below 0" in text  # a true minus
    assert "LRU (" not in text and "LrcSSM (" not in text  # reaches 0; too few sets to pool
    assert "inconclusive for LRU, S5, LrcSSM." in text  # registry order, not the labels' alphabet


def test_spread_recovers_the_spread_it_was_drawn_with():
    rng = np.random.default_rng(3)
    tau, sigma = 2.0, 3.0
    groups = [e + rng.normal(0, sigma, 10) for e in rng.normal(0, tau, 600)]
    s = C.spread(groups)
    assert abs(s["sigma"] - sigma) < 0.1 * sigma and abs(s["tau"] - tau) < 0.15 * tau
    assert s["n_groups"] == 600 and s["seeds"] == 10
    # a label's own mean is not spread between sets: two SSMs 10 points apart, no spread within each
    same = [np.array([0.0, 0.1, -0.1])] * 4 + [np.array([10.0, 10.1, 9.9])] * 4
    assert C.spread(same, by=["a"] * 4 + ["b"] * 4)["tau"] == 0.0
    assert C.spread(same)["tau"] > 4
    assert math.isnan(C.spread([np.array([1.0, 2.0])])["tau"])  # one set: no spread between sets


def test_simulated_intervals_say_what_an_interval_over_few_sets_is_worth():
    """The hierarchical bootstrap resamples seeds inside resampled sets, so with no spread between
    sets its interval is too wide (covers more than 95 %); when the spread between sets dominates,
    three sets give an interval that is too narrow — the case the page warns about. More sets give a
    narrower interval."""
    run = lambda g, tau: C.simulate_intervals(g, tau=tau, sigma=3.0, reps=300, n_boot=500)  # noqa: E731
    wide, narrow, more = run(3, 0.0), run(3, 5.0), run(12, 5.0)
    assert wide["coverage"] >= 0.97
    assert narrow["coverage"] <= 0.88 < more["coverage"]
    assert more["half_width"] < narrow["half_width"]
    # with no spread between sets, the half-width is about 1.96 × the seeds' sd of a mean, ×√2 (seeds
    # are resampled inside sets already resampled): 1.96 · 3 / √15 · √2 ≈ 2.1, within a quarter
    assert 1.6 < wide["half_width"] < 2.7
    with pytest.raises(ValueError, match="n_sets"):
        C.simulate_intervals(0, tau=1.0, sigma=1.0)


def test_c1_decidability_says_what_a_complete_grid_can_decide():
    """One home for both pages' "what C1 can decide": the half-width over ``n_sets`` sets at the
    records' spread, the effects above/below which C1 can hold/fail (−δ ± half-width), and the
    searched number of sets that brings the half-width under δ; the quieter the seeds, the fewer sets."""
    noisy = C.c1_decidability(grid([-1.0, 0.5, 2.0, 0.0], noise=0.03, seed=1), "budget", n_sets=8)
    assert noisy["n_groups"] == 4 and noisy["cells"] == ["D0 s5", "D1 s5", "D2 s5", "D3 s5"]
    hw = C.simulate_intervals(8, noisy["tau"], noisy["sigma"], seeds=noisy["seeds"])["half_width"]
    assert noisy["half_width"] == hw
    assert noisy["holds_above"] == pytest.approx(hw - C.DELTA)
    assert noisy["fails_below"] == pytest.approx(-C.DELTA - hw)
    need = noisy["sets_needed"]
    assert need in C.SETS_SEARCHED
    assert C.simulate_intervals(need, noisy["tau"], noisy["sigma"], seeds=5, reps=200)["half_width"] < C.DELTA
    before = noisy["sets_enough_not"]
    assert before is None or C.simulate_intervals(before, noisy["tau"], noisy["sigma"], seeds=5,
                                                  reps=200)["half_width"] >= C.DELTA
    quiet = C.c1_decidability(grid([-1.0, 0.5, 2.0, 0.0], noise=0.005, seed=1), "budget", search=(3, 4, 6, 8))
    assert quiet["half_width"] < noisy["half_width"] and quiet["sets_needed"] in (3, 4, 6, 8)
    none = C.c1_decidability(grid([0.0]), "budget")  # one set: no spread between sets to estimate
    assert math.isnan(none["half_width"]) and none["sets_needed"] is None
    # the words both pages print come from the same numbers
    text = C.decidability_text(noisy)
    assert f"±{hw:.2f}" in text and R.signed(hw - C.DELTA) in text and R.signed(-C.DELTA - hw) in text
    assert f"at most {need} data sets" in text or f"and at most {need} data sets" in text
    assert C.decidability_text(none) == ""
    assert f"more than {max(C.SETS_SEARCHED)}" in C.decidability_text(dict(noisy, sets_needed=None))


def test_depth_policy_pairs_compares_every_split_of_depth_6_with_6x1_seed_by_seed():
    base = np.array([0.70, 0.72, 0.74, 0.76, 0.78])
    recs = (cell("D", "s5", 6, 1, base) + cell("D", "s5", 3, 2, base - 0.02) + cell("D", "s5", 1, 6, base + 0.01)
            + cell("E", "s5", 6, 1, base) + cell("E", "s5", 1, 6, base)  # two models only
            + cell("Top", "s5", 6, 1, [0.99] * 5) + cell("Top", "s5", 2, 3, [0.98] * 5)
            + cell("Top", "s5", 1, 6, [0.99] * 5)
            + cell("D", "s5", 2, 2, base))  # depth 4: not a split of depth 6
    dp = C.depth_policy_pairs(pd.DataFrame(recs), "budget", min_models=3, n_boot=500)
    assert set(dp["dataset"]) == {"D", "Top"}  # E has two ways only
    d = dp[dp["dataset"] == "D"].set_index("model")
    assert list(d.index) == ["6×1", "3×2", "1×6"]
    assert math.isnan(d.loc["6×1", "diff"]) and d.loc["6×1", "mean"] == pytest.approx(74.0)
    assert d.loc["3×2", "diff"] == pytest.approx(-2.0) and d.loc["3×2", "hi"] == pytest.approx(-2.0)
    assert d.loc["1×6", "diff"] == pytest.approx(1.0) and d.loc["1×6", "n_seeds"] == 5
    assert (d["flag"] == "").all() and d.loc["3×2", "input"] == "none"
    top = dp[dp["dataset"] == "Top"].set_index("model")
    assert top.loc["2×3", "flag"] == "ceiling" and top.loc["1×6", "flag"] == "ceiling"
    assert len(C.depth_policy_pairs(pd.DataFrame(recs), "budget", n_boot=100).query("dataset == 'E'")) == 2
    assert C.depth_policy_pairs(pd.DataFrame(recs), "full").empty  # profiles are never mixed
