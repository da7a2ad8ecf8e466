"""Issue 21 §2's controls: the tied initialisation end to end (flag, record, resume key), the
controls grid's composition, and the paired comparisons on records whose answer is known."""
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from lib import controls as K
from lib import records as R

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
TINY = ["--dataset", "Tiny", "--data-dir", str(FIXTURES), "--ssm", "s5", "--profile", "smoke", "--seeds", "1",
        "--max-steps", "20", "--eval-every", "10", "--hidden", "8", "--state", "8", "--batch-size", "4"]


def test_init_tied_needs_a_standard_model(tmp_path, capsys):
    from lib.run import main

    assert main([*TINY, "--blocks", "1", "--loops", "3", "--init", "tied", "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--loops 1" in err[0]
    assert not (tmp_path / "o.jsonl").exists()


def test_a_tied_run_is_its_own_training(tmp_path):
    """``--init tied`` is recorded, its resume key differs from the default run's, and the command
    in the record reruns it; a record written before the field existed reads as ``init="default"``."""
    from lib.run import main

    out = tmp_path / "o.jsonl"
    for extra in ([], ["--init", "tied"]):
        assert main([*TINY, "--blocks", "3", "--loops", "1", *extra, "--out", str(out)]) == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["init"] for r in recs] == ["default", "tied"]
    assert "--init tied" in recs[1]["command"]
    assert R.record_key(recs[0]) != R.record_key(recs[1])
    old = {k: v for k, v in recs[0].items() if k != "init"}
    assert R.record_key(old) == R.record_key(recs[0])
    with pytest.raises(ValueError, match="init"):
        R.validate_record(dict(recs[0], init="untied"))


def test_the_controls_grid():
    specs = K.controls_grid("budget", records=[])  # sets with one candidate chunk need no pilot
    names = {s.dataset for s in specs}
    assert names == {"SelfRegulationSCP1", "MotorImagery"}  # LSST and Handwriting wait for their pilots
    for name in names:
        for ssm in K.CONTROL_SSMS:
            mine = [s for s in specs if s.dataset == name and s.ssm == ssm]
            tied = [s for s in mine if s.tag == K.TAGS["tied"]]
            lrs = [s for s in mine if s.tag == K.TAGS["lr"]]
            inj = [s for s in mine if s.tag == K.TAGS["injection"]]
            assert len(mine) == 6 and len(tied) == 1 and len(lrs) == 4 and len(inj) == 1
            assert (tied[0].blocks, tied[0].loops, tied[0].init) == (6, 1, "tied")
            assert sorted({s.lr for s in lrs}) == [3e-4, 3e-3]  # 1e-3, the SSMs' own rate, is the grid's cell
            assert (inj[0].blocks, inj[0].loops, inj[0].input_injection) == (1, 6, True)
            assert all(s.reshape != "none" and s.profile == "budget" for s in mine)


# -- the comparisons on constructed records ------------------------------------------------------------------
TEMPLATE = json.loads((REPO / "data/results/budget-budget.jsonl").read_text().splitlines()[0])
SEEDS = (2345, 3456, 4567, 5678, 6789)
SETS = ("LSST", "Handwriting", "SelfRegulationSCP1")


def _rec(dataset, seed, *, blocks, loops, test, val=None, lr=1e-3, init="default", inj=False, tag="main",
         ssm="s5", reshape="concat", chunk=4):
    r = dict(TEMPLATE, dataset=dataset, ssm=ssm, seed=seed, blocks=blocks, loops=loops, depth=blocks * loops,
             reshape=reshape, chunk=chunk, lr=lr, init=init, input_injection=inj, tag=tag, test_acc=test,
             val_acc=test if val is None else val, profile="budget")
    r["pipeline"] = dict(r["pipeline"], n_classes=10)
    return r


def _records():
    rows = []
    for k, name in enumerate(SETS):
        for i, seed in enumerate(SEEDS):
            base = 0.50 + 0.02 * k + 0.01 * i
            rows += [_rec(name, seed, blocks=6, loops=1, test=base),                     # standard
                     _rec(name, seed, blocks=1, loops=6, test=base + 0.01),              # looped: +1 point
                     _rec(name, seed, blocks=6, loops=1, test=base + 0.03, init="tied", tag=K.TAGS["tied"]),
                     _rec(name, seed, blocks=1, loops=6, test=base - 0.02, inj=True, tag=K.TAGS["injection"])]
            for lr, gain in ((3e-4, -0.05), (3e-3, 0.04)):  # 3e-3 is best on validation for both models
                rows += [_rec(name, seed, blocks=6, loops=1, test=base + gain, lr=lr, tag=K.TAGS["lr"]),
                         _rec(name, seed, blocks=1, loops=6, test=base + gain + 0.005, lr=lr, tag=K.TAGS["lr"])]
    return pd.DataFrame(rows)


def test_control_comparisons_on_known_records():
    per_set, pooled = K.control_table(_records(), n_boot=500)
    got = {(r.comparison, r.dataset): r for r in per_set.itertuples()}
    for name in SETS:
        assert math.isclose(got["tied standard − looped", name].mean, 2.0, abs_tol=1e-4)
        assert math.isclose(got["tied standard − standard", name].mean, 3.0, abs_tol=1e-4)
        assert math.isclose(got["looped with injection − looped", name].mean, -3.0, abs_tol=1e-4)
        lr = got["looped − standard, each at its best rate", name]
        assert math.isclose(lr.mean, 0.5, abs_tol=1e-4) and lr.rates == "0.003 vs 0.003"
        assert lr.n_seeds == 5 and lr.flag == ""
    p = pooled.set_index("comparison")
    assert p.loc["looped − standard, each at its best rate", "n_sets"] == 3
    assert p.loc["looped − standard, each at its best rate", "verdict"] == "holds"  # +0.5 exactly: lo ≥ −1
    assert p.loc["tied standard − looped", "verdict"] == ""  # an effect, not a claim
    assert p.loc["tied standard − looped", "sets"] == ", ".join(SETS)


def test_the_learning_rate_is_chosen_only_once_every_rate_is_there():
    df = _records()
    df = df[~((df["lr"] == 3e-3) & (df["blocks"] == 1))]  # the looped model's 3e-3 runs are missing
    per_set, pooled = K.control_table(df, n_boot=200)
    assert "looped − standard, each at its best rate" not in set(per_set["comparison"])


def test_the_reading_follows_the_numbers():
    _, pooled = K.control_table(_records(), n_boot=500)
    text = " ".join(K.reading(pooled))
    # tied − looped = +2, tied − standard = +3 on every seed: both intervals exclude 0
    assert "cannot be placed: its intervals against both models exclude 0" in text
    assert "C1 holds (looped − standard +0.50" in text
    assert "hurts the looped model (\u22123.00" in text  # a true minus sign
    assert "indicative only" not in text  # three sets
    # one sentence group per SSM, in registry order, with the name the pages print
    two = pd.concat([_records(), _records().assign(ssm="lru")])
    firsts = [line.split(",")[0] for line in K.reading(K.control_table(two, n_boot=100)[1])]
    assert list(dict.fromkeys(firsts)) == ["LRU", "S5"]


def test_a_tied_start_that_ends_with_the_looped_model_is_read_so():
    df = _records()
    tied = df["tag"] == K.TAGS["tied"]
    df.loc[tied, "test_acc"] = df.loc[tied, "test_acc"] - 0.02  # now equal to the looped model, seed by seed
    _, pooled = K.control_table(df, n_boot=500)
    assert any("ends with the looped model it starts as" in line for line in K.reading(pooled))


def test_the_fourth_set_is_one_the_records_do_not_flag():
    """The one more set with headroom moves past a candidate whose comparison the records flag:
    MotorImagery with LRU at chance (majority 50 %) gives way to Epilepsy, and Epilepsy at the
    ceiling for S5 to UWaveGestureLibrary; a recorded candidate with headroom stays."""
    assert K.control_sets([]) == (*K.CONTROL_SETS, "MotorImagery")  # nothing recorded: the paper's set

    def cell(dataset, ssm, reshape, chunk, std, loo):
        return [_rec(dataset, seed, blocks=b, loops=l, test=t, ssm=ssm, reshape=reshape, chunk=chunk)
                for seed in SEEDS for (b, l), t in (((6, 1), std), ((1, 6), loo))]

    mi = cell("MotorImagery", "lru", "rechunk", 1920, 0.47, 0.52)
    assert K.control_sets(mi) == (*K.CONTROL_SETS, "Epilepsy")
    ep = cell("Epilepsy", "s5", "concat", 4, 0.99, 0.98)
    assert K.control_sets(mi + ep) == (*K.CONTROL_SETS, "UWaveGestureLibrary")
    uw = cell("UWaveGestureLibrary", "s5", "concat", 9, 0.98, 0.98)
    assert K.control_sets(mi + ep + uw) == (*K.CONTROL_SETS, "RacketSports")
    ep_ok = cell("Epilepsy", "s5", "concat", 4, 0.90, 0.92)
    assert K.control_sets(mi + ep_ok) == (*K.CONTROL_SETS, "Epilepsy")
    names = {s.dataset for s in K.controls_grid("budget", records=mi + ep)}
    assert "UWaveGestureLibrary" not in names  # its chunk waits for its pilot; MotorImagery is out
    assert "MotorImagery" not in names and "Epilepsy" not in names


def test_the_controls_grid_reads_the_flags_once(monkeypatch):
    """``controls_grid`` works out which comparisons are flagged once and hands that to both steps
    that read it (which sets, and in what order); given ``flagged`` it computes nothing again and
    plans the same grid."""
    from lib import grid as G

    recs = [_rec("MotorImagery", seed, blocks=b, loops=l, test=t, ssm="lru", reshape="rechunk", chunk=1920)
            for seed in SEEDS for (b, l), t in (((6, 1), 0.47), ((1, 6), 0.52))]
    calls = []
    real = G.flagged_pairs
    monkeypatch.setattr(G, "flagged_pairs", lambda *a, **k: calls.append(a) or real(*a, **k))
    specs = K.controls_grid("budget", records=recs)
    assert len(calls) == 1
    flagged = real(recs)
    assert K.controls_grid("budget", records=recs, flagged=flagged) == specs and len(calls) == 1
    assert K.control_sets(recs, flagged=flagged) == K.control_sets(recs) and len(calls) == 2
