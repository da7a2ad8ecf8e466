"""The grid command line: slices (--shard), Ray workers, a time budget, resuming, merging."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import math

import pytest

from lib import grid as G
from lib import results as R

REPO = Path(__file__).resolve().parents[1]


def _have(name):
    from lib.data import available_datasets

    return name in available_datasets()


def _cli(*args, timeout=900):
    env = dict(os.environ, LOOPED_SSM_QUIET="1")
    return subprocess.run([sys.executable, "-m", "lib.grid", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _listed(stdout):
    return [line.strip() for line in stdout.splitlines() if line.startswith("  python -m lib.run")]


@pytest.mark.skipif(not _have("UWaveGestureLibrary"), reason="UWaveGestureLibrary not in the shared data")
def test_shards_partition_the_grid(tmp_path):
    out = str(tmp_path / "g.jsonl")
    base = ["--grid", "main", "--profile", "full", "--datasets", "UWaveGestureLibrary", "--out", out, "--dry-run"]
    whole = _listed(_cli(*base).stdout)
    assert len(whole) == len(G.main_grid("full", ["UWaveGestureLibrary"]))
    parts = [_listed(_cli(*base, "--shard", f"{i}/3").stdout) for i in range(3)]
    assert sorted(sum(parts, [])) == sorted(whole)  # every configuration exactly once
    assert all(abs(len(p) - len(whole) / 3) < 1 for p in parts)  # balanced


@pytest.mark.parametrize("args, message", [
    (["--shard", "3/3"], "0 <= I < N"),
    (["--shard", "a/b"], "I/N"),
    (["--workers", "0"], "--workers must be >= 1"),
    (["--per-gpu", "0"], "--per-gpu must be >= 1"),
    (["--launcher", "local", "--workers", "2"], "need --launcher ray"),
    (["--budget-min", "0"], "--budget-min must be > 0"),
    (["--finish-within", "-5"], "--finish-within must be > 0"),
    (["--datasets", "NoSuchSet"], "unknown data set"),
])
def test_bad_grid_arguments_give_one_clear_error(tmp_path, args, message):
    out = tmp_path / "g.jsonl"
    r = _cli("--profile", "smoke", "--out", str(out), *args, timeout=120)
    assert r.returncode == 2
    assert message in r.stderr and r.stderr.count("error") == 1
    assert not out.exists()


def test_the_budget_grids_take_their_own_data_sets(tmp_path, monkeypatch):
    """``--datasets`` is checked against the chosen grid's sets: LSST and Epilepsy are budget (and
    controls) sets, not the main grid's. No records (an empty results folder): the budget grid starts
    with Epilepsy's pilots, and the controls run on the sets with one candidate chunk."""
    monkeypatch.setenv("LOOPED_SSM_RESULTS_DIR", str(tmp_path))
    r = _cli("--grid", "controls", "--profile", "budget", "--datasets", "LSST", "MotorImagery", "--dry-run", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "--dataset MotorImagery" in r.stdout and "--dataset SelfRegulationSCP1" not in r.stdout
    r = _cli("--grid", "budget", "--profile", "budget", "--datasets", "Epilepsy", "--dry-run", timeout=120)
    assert r.returncode == 0 and "--dataset Epilepsy --ssm s5" in r.stdout, r.stderr
    r = _cli("--grid", "main", "--profile", "smoke", "--datasets", "LSST", "--dry-run", timeout=120)
    assert r.returncode == 2 and "the main grid knows" in r.stderr


def test_strip_removes_a_flag_and_its_value():
    from lib.run import strip_flag

    argv = ["--grid", "main", "--workers", "4", "--shard=1/2", "--out", "x"]
    assert strip_flag(strip_flag(argv, "--workers"), "--shard") == ["--grid", "main", "--out", "x"]


@pytest.mark.slow
@pytest.mark.skipif(not _have("UWaveGestureLibrary"), reason="UWaveGestureLibrary not in the shared data")
def test_workers_with_a_budget_stop_early_then_resume_without_duplicates(tmp_path, monkeypatch):
    """Past the budget each Ray task checkpoints its configuration at its first evaluation and
    returns no record; the same command then goes on from the checkpoints and completes the grid."""
    ckpt = tmp_path / "ckpt"
    monkeypatch.setenv("LOOPED_SSM_CKPT_DIR", str(ckpt))
    out = tmp_path / "g.jsonl"
    base = ["--grid", "main", "--profile", "smoke", "--ssms", "s5", "--out", str(out), "--workers", "2"]
    n_configs = len(G.main_grid("smoke", None, ["s5"]))
    assert n_configs == 4
    first = _cli(*base, "--budget-min", "0.001")
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.count("budget of 0.001 min reached") == 1
    assert first.stdout.count("stopped at step") == 2, first.stdout  # the two configurations in progress
    assert first.stdout.count("rerun the same command to go on") == 1
    assert not out.exists()  # nothing partial in the records
    assert len(list(ckpt.glob("*.npz"))) == 2  # one configuration in progress per worker
    second = _cli(*base)
    assert second.returncode == 0, second.stderr[-2000:]
    df = R.read_records(out)
    assert len(df) == n_configs * 2
    assert not df.duplicated(list(R.KEY_FIELDS)).any()
    assert df["command"].str.startswith("python -m lib.grid --grid main --profile smoke").all()
    eval_every = df["eval_every"].iloc[0]
    resumed = df[df["segments"].map(len) == 2]
    assert len(resumed) == 2 * 2  # the two checkpointed configurations x two seeds went on from step 50
    assert all([s["step"] for s in segs] == [0, eval_every] for segs in resumed["segments"])
    assert not list(ckpt.glob("*.npz"))
    assert (df["cpu_s"] > 0).all()  # every record counts its process's CPU seconds, resumed ones too


def test_merge_keeps_existing_records_and_adds_new_ones(tmp_path):
    rec = json.loads(next(line for line in (REPO / "data/results/baseline.jsonl").read_text().splitlines()))
    a, b, into = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "into.jsonl"
    R.append_records(a, [rec])
    R.append_records(into, [dict(rec, test_acc=0.5)])
    R.append_records(b, [dict(rec, seed=1), dict(rec, seed=2)])
    assert R.main(["merge", str(a), str(b), "--into", str(into)]) == 0
    df = R.read_records(into)
    assert sorted(df["seed"]) == sorted([rec["seed"], 1, 2])
    assert df.loc[df["seed"] == rec["seed"], "test_acc"].item() == 0.5  # kept, not replaced
    assert R.main(["merge", str(a), "--into", str(into), "--replace"]) == 0
    assert R.read_records(into).loc[lambda d: d["seed"] == rec["seed"], "test_acc"].item() == rec["test_acc"]


def test_merge_of_a_missing_or_bad_file_writes_nothing(tmp_path, capsys):
    into = tmp_path / "into.jsonl"
    assert R.main(["merge", str(tmp_path / "nope.jsonl"), "--into", str(into)]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"dataset": "X"}\n')
    assert R.main(["merge", str(bad), "--into", str(into)]) == 2
    assert not into.exists()
    err = capsys.readouterr().err
    assert "no record file matches" in err and "bad.jsonl" in err


def test_records_made_outside_git_take_the_commit_from_the_environment(monkeypatch, tmp_path):
    """One provenance implementation: lib.run's records and lib.baseline's (lib.provenance.provenance)
    both fall back to $LOOPED_SSM_COMMIT outside a git checkout."""
    from lib import provenance as P, run as Run

    monkeypatch.setattr(P, "_REPO_ROOT", tmp_path)  # not a git checkout
    monkeypatch.delenv("LOOPED_SSM_COMMIT", raising=False)
    assert Run.git_commit() == ("unknown", False)
    monkeypatch.setenv("LOOPED_SSM_COMMIT", "abc123")
    monkeypatch.setenv("LOOPED_SSM_DIRTY", "1")
    assert Run.git_commit() == ("abc123", True)
    prov = P.provenance(command="x")
    assert (prov["commit"], prov["dirty"]) == ("abc123", True)


def test_results_folder_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("LOOPED_SSM_RESULTS_DIR", raising=False)
    assert G.default_out("main", "full") == "data/results/main-full.jsonl"
    monkeypatch.setenv("LOOPED_SSM_RESULTS_DIR", str(tmp_path))
    assert G.default_out("widget", "full") == f"{tmp_path}/widget-full.jsonl"
    assert G.grid_command("main", "full") == "python -m lib.grid --grid main --profile full"


def _record(template, **kw):
    rec = dict(template, ssm="s5", blocks=6, loops=1, depth=6, hidden=64, state=64, lr=1e-3, device="cpu",
               batch_size=32, max_steps=30000, eval_every=1000, patience=10, best_step=1000, steps=11000,
               params_blocks=1000)
    rec.update(kw)
    return rec


def test_main_table_reads_cells_from_records_and_marks_the_rest_not_yet_run(tmp_path):
    template = json.loads((REPO / "data/results/baseline.jsonl").read_text().splitlines()[0])
    seeds = G._seeds(5)
    recs = [_record(template, dataset="NATOPS", seed=s, test_acc=0.80 + 0.01 * i, val_acc=0.8)
            for i, s in enumerate(seeds)]
    recs += [_record(template, dataset="NATOPS", blocks=1, loops=6, seed=s, test_acc=0.9, val_acc=0.8)
             for s in seeds[:3]]
    recs += [_record(template, dataset="NATOPS", reshape="rechunk", chunk=8, seed=s, test_acc=0.95, val_acc=0.9)
             for s in seeds]
    recs += [_record(template, dataset="NATOPS", reshape="rechunk", chunk=72, seed=s, test_acc=0.99, val_acc=0.5)
             for s in seeds]  # better on test, worse on validation: not chosen
    recs += [dict(template, dataset="NATOPS", seed=s, test_acc=0.5) for s in seeds]  # MiniRocket
    path = tmp_path / "r.jsonl"
    R.append_records(path, recs)
    t = G.main_table([path], datasets=["NATOPS"]).set_index(["ssm", "model"])
    assert len(t) == 1 + 4 + 4 + 2 + 2  # MiniRocket, lru and s5 (4 models), linoss-im and lrcssm (2)
    s5 = t.loc[("s5", "6×1")]
    assert s5["none"] == "82.00 ± 1.41" and s5["none_mean"] == pytest.approx(82.0)
    assert s5["reshaped"] == "95.00 ± 0.00" and s5["chunk"] == 8 and s5["chunks_run"] == "2 of 4"
    assert s5["command"] == "python -m lib.grid --grid main --profile full --datasets NATOPS --ssms s5"
    assert t.loc[("s5", "1×6"), "none"] == "90.00 ± 0.00 (3 of 5 seeds)"
    assert t.loc[("s5", "1×6"), "reshaped"] == G.NOT_RUN
    assert (t.loc["lru", "none"] == G.NOT_RUN).all() and (t.loc["lru", "command"] != "").all()
    mr = t.loc[("minirocket", "—")]
    assert mr["none"] == "50.00 ± 0.00" and mr["command"] == "" and mr["device"] == "cpu"
    # smoke-profile records are never read as full-profile cells
    smoke = tmp_path / "smoke.jsonl"
    R.append_records(smoke, [dict(r, profile="smoke", test_acc=0.1) for r in recs])
    t2 = G.main_table([path, smoke], datasets=["NATOPS"]).set_index(["ssm", "model"])
    assert t2.loc[("s5", "6×1"), "none"] == "82.00 ± 1.41"


def test_coverage_counts_a_configuration_done_only_when_all_its_seeds_are_recorded():
    template = json.loads((REPO / "data/results/baseline.jsonl").read_text().splitlines()[0])
    specs = G.widget_grid("full", ["NATOPS"])
    a, b = specs[0], specs[7]  # 1 loop, none; 2 loops, rechunk
    keys = lambda spec, seeds: [dict(template, **spec.key_fields(s)) for s in seeds]
    recs = keys(a, a.seeds) + keys(b, b.seeds[:2])
    cov = G.coverage(specs, pd.DataFrame(recs))
    assert cov["done"] == [a] and len(cov["missing"]) == len(specs) - 1 and b in cov["missing"]
    assert cov["runs"] == 7 and cov["runs_total"] == 5 * len(specs)
    assert G.coverage(specs, [])["runs"] == 0  # an iterable of records works too
    # another tag (other than the main grid's, whose records of the same training are shared), learning
    # rate, size or profile is another configuration
    other = [dict(r, tag="lr-select") for r in keys(a, a.seeds)] + [dict(r, hidden=16) for r in keys(a, a.seeds)]
    other += [dict(r, tag="main", profile="budget") for r in keys(a, a.seeds)]
    assert G.coverage(specs, other)["done"] == []
    assert G.coverage(specs, [dict(r, tag="main") for r in keys(a, a.seeds)])["done"] == [a]


def test_chunk_timesteps_reads_rechunk_rows_in_timesteps():
    assert G.chunk_timesteps("NATOPS", "rechunk", 384) == 16  # 24 channels
    assert G.chunk_timesteps("SelfRegulationSCP1", "concat", 16) == 16
    assert G.chunk_timesteps("NATOPS", "none", 1) == 1
    assert [G.chunk_timesteps(s.dataset, s.reshape, s.chunk) for s in G.widget_grid("full", ["NATOPS"])][:5] \
        == list(G.WIDGET_CHUNKS)


def test_chunk_timesteps_refuses_a_row_that_is_not_whole_timesteps():
    # NATOPS's main-grid candidate 36 is 1.5 of its 24-channel timesteps: no rounded reading
    with pytest.raises(ValueError, match="not a whole number of NATOPS timesteps"):
        G.chunk_timesteps("NATOPS", "rechunk", 36)


def _as_records(spec, template, **kw):
    return [dict(template, **spec.training_fields(s), **kw) for s in spec.seeds]


def test_records_for_reads_a_main_grid_training_as_the_widget_cell_it_also_is():
    import dataclasses

    template = json.loads((REPO / "data/results/baseline.jsonl").read_text().splitlines()[0])
    specs = G.widget_grid("full", ["SelfRegulationSCP1"])
    cell = next(s for s in specs if s.loops == 6 and s.reshape == "concat" and s.chunk == 16)
    recs = _as_records(dataclasses.replace(cell, tag="main"), template, test_acc=0.9, val_acc=0.9)
    got = G.records_for(specs, pd.DataFrame(recs))
    assert len(got) == 5 and set(got["tag"]) == {"widget"} and set(got["recorded_tag"]) == {"main"}
    assert got["test_acc"].tolist() == [0.9] * 5
    assert G.coverage(specs, recs)["done"] == [cell]
    # the widget grid's own record of a seed wins over the main grid's
    got = G.records_for(specs, pd.DataFrame(recs + [dict(recs[0], tag="widget", test_acc=0.5)]))
    assert len(got) == 5 and (got["recorded_tag"] == "widget").sum() == 1 and got["test_acc"].min() == 0.5
    # another training, or another grid than main, is not reused
    for change in (dict(lr=1e-2), dict(profile="smoke"), dict(time_channel=True), dict(max_steps=100),
                   dict(hidden=16), dict(tag="lr-select")):
        assert G.records_for(specs, pd.DataFrame([dict(r, **change) for r in recs])).empty, change
    assert G.records_for(specs, []).empty and "recorded_tag" in G.records_for(specs, []).columns
    again = G.records_for(specs, G.records_for(specs, pd.DataFrame(recs)))  # a view read as records again
    assert list(again.columns).count("recorded_tag") == 1 and set(again["recorded_tag"]) == {"main"}


def test_grid_records_keep_a_field_one_record_lacks_absent_not_nan():
    # records given as dicts are not passed through a table: a record without ``cpu_s`` (made from an
    # older checkpoint) stays without it beside one that has it, and keeps its other fields as read
    template = json.loads((REPO / "data/results/baseline.jsonl").read_text().splitlines()[0])
    template.pop("cpu_s", None)
    spec = G.main_grid("full", ["SelfRegulationSCP1"], ["s5"])[0]
    recs = _as_records(spec, template, test_acc=0.9)
    recs[0] = dict(recs[0], cpu_s=12.5)
    got = G.grid_records([spec], recs)
    assert len(got) == 5 and got[0]["cpu_s"] == 12.5 and all("cpu_s" not in r for r in got[1:])
    assert all(r["recorded_tag"] == r["tag"] == spec.tag for r in got)
    frame = G.records_for([spec], recs)  # the table of the same records: NaN where a field is absent
    assert frame["cpu_s"].isna().sum() == 4 and list(frame.columns)[-1] == "recorded_tag"


def test_the_lr_grid_reads_its_default_rate_cells_from_the_main_grid():
    template = json.loads((REPO / "data/results/baseline.jsonl").read_text().splitlines()[0])
    standard = G.main_grid("full", ["SelfRegulationSCP1"], ["s5"])[0]
    assert (standard.blocks, standard.loops, standard.reshape, standard.lr) == (6, 1, "none", None)
    got = G.records_for(G.lr_grid("full", ["SelfRegulationSCP1"], ["s5"]), _as_records(standard, template))
    assert len(got) == 5 and set(got["lr"]) == {1e-3} and set(got["tag"]) == {"lr-select"}
    assert set(zip(got["blocks"], got["loops"])) == {(6, 1)}


def test_run_does_not_train_seeds_another_grid_has_trained(tmp_path):
    from lib import run as Run

    spec = G.widget_grid("smoke", ["NATOPS"])[0]
    trained = {R.training_key(spec.training_fields(s)) for s in spec.seeds}
    assert Run.run(spec, tmp_path / "o.jsonl", trained=trained) == []  # returns before loading any data
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.skipif(not _have("NATOPS"), reason="NATOPS not in the shared data")
def test_widget_grid_skips_the_trainings_the_main_grid_recorded(tmp_path, monkeypatch, capsys):
    import dataclasses

    template = json.loads((REPO / "data/results/baseline.jsonl").read_text().splitlines()[0])
    monkeypatch.setenv("LOOPED_SSM_RESULTS_DIR", str(tmp_path))
    specs = G.widget_grid("smoke", ["NATOPS"])
    recs = [r for s in specs for r in _as_records(dataclasses.replace(s, tag="main"), template)]
    (tmp_path / "main-smoke.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert G.main(["--grid", "widget", "--profile", "smoke", "--datasets", "NATOPS"]) == 0
    out = capsys.readouterr().out
    assert out.count("skipped (the main grid's records hold this training)") == len(specs), out
    assert not (tmp_path / "widget-smoke.jsonl").exists()


# ---------------------------------------------------------------------------------------------- budget grid
def _budget_records(specs, val=0.8, test=0.75, **over):
    template = json.loads((REPO / "data/results/baseline.jsonl").read_text().splitlines()[0])
    return [dict(template, **s.key_fields(x), val_acc=val, test_acc=test, **over) for s in specs for x in s.seeds]


def test_budget_profile_is_a_truncation_of_full():
    from lib.profiles import PROFILES, max_steps
    from lib.train import DEFAULT_LR, train_config

    full, budget = PROFILES["full"], PROFILES["budget"]
    assert {k: v for k, v in full.items() if k not in ("max_steps", "eval_every", "patience")} == \
        {k: v for k, v in budget.items() if k not in ("max_steps", "eval_every", "patience")}
    assert (budget["eval_every"], budget["patience"], budget["max_steps"]) == (250, 4, 3000)
    for ssm, lr in DEFAULT_LR.items():  # the SSMs trained at 1e-4 get 6,000 steps
        assert max_steps("budget", ssm) == (6000 if lr == 1e-4 else 3000)
        assert train_config(ssm, "budget").max_steps == max_steps("budget", ssm)
        assert train_config(ssm, "full").max_steps == 30_000


def test_budget_grid_runs_calibration_then_pilots_then_comparisons():
    specs = G.budget_grid("budget", records=[])
    calib = {(n, s, r, c) for n, s, r, c in G.CALIBRATION}
    kinds = ["calibration" if (s.dataset, s.ssm, s.reshape, s.chunk) in calib and 1 in (s.blocks, s.loops) else
             "pilot" if s.tag == G.PILOT_TAG else "cell" for s in specs]
    assert kinds == sorted(kinds, key=["calibration", "pilot", "cell"].index)
    assert kinds.count("calibration") == 2 * len(G.CALIBRATION)
    # without pilot records only the fixed-chunk sets (SCP1, MotorImagery) have comparisons
    assert {s.dataset for s in specs if s.tag == "main"} <= {"SelfRegulationSCP1", "MotorImagery", "NATOPS"}
    assert all(s.profile == "budget" and len(s.seeds) == 5 for s in specs)
    keys = [R.training_key(s.training_fields(s.seeds[0])) for s in specs]
    assert len(keys) == len(set(keys))  # a calibration cell that is also a grid cell trains once


def test_budget_pilot_chooses_the_chunk_on_validation_and_opens_the_set():
    pilots = G.pilot_grid("budget", ["LSST"])
    assert [s.chunk for s in pilots] == list(G.BUDGET_SETS["LSST"].candidates)
    recs = []
    for s in pilots:  # validation best at chunk 3, test best at chunk 2: the choice must follow validation
        recs += _budget_records([s], val=0.9 if s.chunk == 3 else 0.5, test=0.9 if s.chunk == 2 else 0.5)
    assert G.budget_chunks(recs)["LSST"] == 3
    assert "LSST" not in G.budget_chunks(recs[:-1])  # an incomplete pilot chooses nothing
    cells = [s for s in G.budget_grid("budget", ["LSST"], records=recs) if s.tag == "main"]
    assert {(s.reshape, s.chunk) for s in cells} == {("none", 1), ("concat", 3)}
    assert {(s.blocks, s.loops) for s in cells} == {(6, 1), (1, 6), (2, 3), (3, 2)}


def test_budget_order_puts_flagged_comparisons_last():
    """A comparison the records already flag (both models above 97 %) runs after those that can decide;
    the records reach the ordering also when given as a generator (once read by the pilots' choice)."""
    jv = [s for s in G.budget_grid("budget", ["JapaneseVowels"], records=[]) if s.tag == "main"]
    assert not jv  # no pilot, no cells
    pilots = G.pilot_grid("budget", ["JapaneseVowels", "Handwriting"])
    recs = _budget_records(pilots, val=0.9, test=0.9)
    main = [s for s in G.budget_grid("budget", ["JapaneseVowels", "Handwriting"], records=recs) if s.tag == "main"]
    lru = [s for s in main if s.ssm == "lru" and s.reshape != "none"]
    ceiling = _budget_records([s for s in lru if s.dataset == "JapaneseVowels"], val=0.99, test=0.99)
    assert G.flagged_pairs(recs + ceiling) == {("JapaneseVowels", "lru")}
    order = [s for s in G.budget_grid("budget", ["JapaneseVowels", "Handwriting"], records=iter(recs + ceiling))
             if s.tag == "main"]

    def at(specs, name):  # positions of the lru pair on the reshaped input
        return [i for i, s in enumerate(specs) if s.dataset == name and s.ssm == "lru" and s.reshape != "none"]

    assert min(at(order, "JapaneseVowels")) > max(at(order, "Handwriting"))
    plain = [s for s in G.budget_grid("budget", ["JapaneseVowels", "Handwriting"], records=recs) if s.tag == "main"]
    assert max(at(plain, "JapaneseVowels")) < min(at(plain, "Handwriting"))  # unflagged, the cheaper set first


def test_budget_ragged_and_padded_sets_carry_their_policy():
    jv = [s for s in G.pilot_grid("budget", ["JapaneseVowels"])]
    assert all(s.ragged == "pad" and s.pad for s in jv)
    assert "--ragged pad" in jv[0].command() and "--pad" in jv[0].command()


def test_cost_model_reads_seconds_per_seed_step_from_the_records():
    spec = G.calibration_grid()[0]
    rec = _budget_records([spec])
    T = G.input_length(spec)
    b = 200e-6
    for r in rec:
        r.update(device="cpu", steps=1000, depth=6, seq_len=T, compile_s=10.0, command="c", created="t",
                 wall_s=10.0 + 5 * 1000 * (G.OVERHEAD_S + b * 6 * T))
    assert G.cost_model(rec)[spec.ssm] == pytest.approx(b)
    assert G.cost_model([])[spec.ssm] == G.B_PRIOR[spec.ssm]
    # where the run counted its CPU seconds, they are the cost: a machine busy with other work
    # stretched the wall time (here to 1.5×), not the model's work
    busy = [dict(r, cpu_s=r["wall_s"], wall_s=1.5 * r["wall_s"]) for r in rec]
    assert G.cost_model(busy)[spec.ssm] == pytest.approx(b)
    assert G.core_s(busy[0]) == busy[0]["cpu_s"] and G.core_s(rec[0]) == rec[0]["wall_s"]
    assert G.core_s(dict(rec[0], cpu_s=float("nan"))) == rec[0]["wall_s"]  # a table's empty cell


def test_protocol_estimate_prices_a_grid_at_the_records_mean_steps():
    """The full protocol's cost is priced at the steps its records actually trained (early stopping),
    not its cap: twice the mean steps, twice the core-hours; shares per data set sum to one."""
    from lib import cost

    specs = [s for s in G.main_grid("full", ["NATOPS", "SelfRegulationSCP1"], ["s5"])]
    recs = [dict(profile="full", ssm="s5", steps=st) for st in (1000, 3000)] + [dict(profile="budget", ssm="s5", steps=9)]
    est = cost.protocol_estimate(specs, recs, "full")
    assert est["steps"] == 2000 and est["n_records"] == 2
    b = est["b"]
    want = sum(cost.cost_s(s, b, 2000) for s in specs) / 3600
    assert est["core_h"] == pytest.approx(want)
    assert sum(est["share"].values()) == pytest.approx(1.0) and set(est["share"]) == {"NATOPS", "SelfRegulationSCP1"}
    assert list(est["share"].values()) == sorted(est["share"].values(), reverse=True)
    double = cost.protocol_estimate(specs, [dict(r, steps=2 * r["steps"]) for r in recs], "full")
    assert double["core_h"] == pytest.approx(2 * want)
    assert math.isnan(cost.protocol_estimate(specs, [], "full")["steps"])


def test_left_core_h_expects_each_ssm_to_stop_where_its_records_did():
    """At most: every configuration at its cap. Expected: scaled by the share of the cap at which the
    SSM's records of that profile stopped; an SSM without records is expected at its cap."""
    from lib import cost

    specs = [s for s in G.budget_grid("budget", ["NATOPS"]) if s.ssm in ("s5", "lru")]
    recs = ([dict(profile="budget", ssm="s5", steps=st, max_steps=3000) for st in (1500, 3000)]
            + [dict(profile="full", ssm="lru", steps=100, max_steps=30000)])  # another profile: not read
    assert cost.stop_share(recs, "budget") == {"s5": 0.75}
    b = G.cost_model([])
    at_caps, expected, share = G.left_core_h(specs, b, recs, "budget")
    caps = {s.ssm: 0.0 for s in specs}
    for s in specs:
        caps[s.ssm] += G.cost_s(s, b) / 3600
    assert at_caps == pytest.approx(sum(caps.values()))
    assert expected == pytest.approx(0.75 * caps["s5"] + caps["lru"]) and share == {"s5": 0.75}
    assert G.left_core_h([], b, recs, "budget")[:2] == (0, 0)


def test_cost_model_follows_the_newest_programs():
    """Old programs of slower code do not hold the estimate up: the newest ``RECENT_PROGRAMS`` decide."""
    from lib import cost

    spec = G.calibration_grid()[0]
    T = G.input_length(spec)
    recs = []
    for i, b in enumerate([400e-6] * 20 + [100e-6] * cost.RECENT_PROGRAMS):
        for r in _budget_records([spec]):
            r.update(device="cpu", steps=1000, depth=6, seq_len=T, compile_s=1.0, command="c",
                     created=f"2026-12-{1 + i // 24:02d}T{i % 24:02d}:00:00", wall_s=1.0 + 5 * 1000 * (G.OVERHEAD_S + b * 6 * T))
            recs.append(r)
    assert G.cost_model(recs[::-1])[spec.ssm] == pytest.approx(100e-6)
    assert G.cost_model(recs + recs)[spec.ssm] == pytest.approx(100e-6)  # the same records read twice


def test_capped_table_counts_seeds_the_step_cap_stopped():
    from lib.tables import capped_display, capped_table

    specs = [s for s in G.calibration_grid() if s.dataset == "NATOPS" and s.ssm == "s5" and s.reshape == "none"]
    recs = []
    for s in specs:
        for i, r in enumerate(_budget_records([s])):
            cap = s.train_config().max_steps
            r.update(profile="budget", max_steps=cap, steps=cap if (s.loops == 1 or i < 2) else cap - 1000)
            recs.append(r)
    t = capped_table(recs)
    assert t.to_dict("records") == [{"data set": "NATOPS", "input": "none", "ssm": "s5", "standard capped": 5,
                                     "standard seeds": 5, "looped capped": 2, "looped seeds": 5}]
    assert capped_display(t).to_dict("records") == [{"data set": "NATOPS", "input": "none", "ssm": "s5",
                                                     "standard 6×1": "5/5", "looped 1×6": "2/5"}]
    only_looped = capped_table([r for r in recs if r["loops"] > 1])
    assert only_looped[["standard seeds", "looped seeds"]].values.tolist() == [[0, 5]]
    assert capped_display(only_looped)["standard 6×1"].tolist() == [""]
    assert capped_table([]).empty


def test_truncation_gaps_read_what_a_lower_cap_would_have_reported():
    from lib.tables import reported_at, truncation_gaps

    hist = [dict(step=250, val_acc=0.5, test_acc=0.4), dict(step=500, val_acc=0.7, test_acc=0.6),
            dict(step=750, val_acc=0.7, test_acc=0.65), dict(step=1000, val_acc=0.6, test_acc=0.9)]
    assert [reported_at(hist, c) for c in (250, 500, 750, 1000, 5000)] == [0.4, 0.6, 0.65, 0.65, 0.65]
    specs = [s for s in G.calibration_grid() if s.dataset == "NATOPS" and s.ssm == "s5" and s.reshape == "none"]
    recs = []
    for s in specs:  # looped catches up: −20 points at step 250, 0 from step 500 on
        looped = s.loops > 1
        for r in _budget_records([s]):
            r.update(profile="budget", max_steps=500, eval_every=250,
                     history=[dict(step=250, val_acc=0.5, test_acc=0.5 if looped else 0.7),
                              dict(step=500, val_acc=0.8, test_acc=0.8)])
            recs.append(r)
    t = truncation_gaps(recs)
    assert list(t["cap"]) == [250, 500] and list(t["n_seeds"]) == [5, 5]
    assert t["looped − standard"].tolist() == pytest.approx([-20.0, 0.0])


def test_input_length_matches_the_pipeline():
    from lib import data as D

    for spec in G.pilot_grid("budget", ["Epilepsy", "JapaneseVowels"]):
        ds = D.load_uea(spec.dataset, ragged=spec.ragged)
        s = D.prepare(D.split(ds, "paper", 2345), reshape=spec.reshape, chunk=spec.chunk, pad=spec.pad)
        assert s.X_train.shape[1] == G.input_length(spec)


def test_budget_coverage_marks_what_is_recorded():
    specs = G.calibration_grid()[:2]
    cov = G.budget_status(_budget_records(specs[:1]) + _budget_records(specs[1:])[:2])[0]
    label = "none" if specs[0].reshape == "none" else f"{specs[0].reshape}/{specs[0].chunk}"
    row = cov[(cov["data set"] == specs[0].dataset) & (cov["input"] == label)].iloc[0]
    assert row[specs[0].ssm] == ("6×1\u00a0✓", "1×6\u00a02/5")
    # a pilot is a looped S5 model: marked in S5's column, after the standard model it pairs with
    pilots = G.pilot_grid("budget", ["LSST"])
    recs = [r for p in pilots for r in _budget_records([p], val=0.9 if p.chunk == 2 else 0.5)]
    cov = G.budget_status(recs)[0].set_index(["data set", "input"])
    assert "pilot" not in cov.columns
    assert cov.loc[("LSST", "concat/2"), "s5"] == ("6×1\u00a0·", "3×2\u00a0·", "2×3\u00a0·", "1×6\u00a0✓\u00a0pilot")  # the chosen chunk: its comparisons
    assert cov.loc[("LSST", "concat/3"), "s5"] == ("1×6\u00a0✓\u00a0pilot",)
    assert cov.loc[("LSST", "concat/2"), "lru"] == ("6×1\u00a0·", "3×2\u00a0·", "2×3\u00a0·", "1×6\u00a0·")


def test_budget_status_plans_once_and_agrees_with_the_grid_cli():
    """The Experiments coverage paragraph reads ``budget_status``'s summary: its counts are
    ``coverage``'s, its core-hours the table's column sums and ``left_core_h``'s (the CLI's numbers)."""
    specs = G.calibration_grid()[:3]
    recs = _budget_records(specs[:1]) + _budget_records(specs[1:2])[:2]
    for r in recs:  # trained half their cap (a baseline record as template: give it a trained run's fields)
        r.update(steps=r["max_steps"] // 2, depth=r["blocks"] * r["loops"], seq_len=G.input_length(specs[0]),
                 wall_s=100.0, compile_s=1.0)
    for r in recs[len(specs[0].seeds):]:  # one program counted its CPU seconds, the other did not (NaN in a table)
        r["cpu_s"] = 50.0
    cov, st = G.budget_status(recs)
    plan = G.budget_grid("budget", records=recs)
    c = G.coverage(plan, recs)
    assert (st["configurations"], st["done"], st["missing"]) == (len(plan), len(c["done"]), len(c["missing"])) \
        and st["done"] == 1
    b = G.cost_model(list(R.iter_records(str(G.REPO / "data" / "results" / "*.jsonl"), validate=False)))
    left, expected, stops = G.left_core_h(c["missing"], b, recs, "budget")
    assert st["stops"] == stops == {specs[0].ssm: pytest.approx(0.5)}
    assert (st["left"], st["expected"]) == (pytest.approx(left), pytest.approx(expected))
    assert st["spent"] == pytest.approx(cov["core-h spent"].sum(), abs=0.005 * len(cov)) and 0 < st["expected"] < st["left"]
    assert st["spent"] == pytest.approx((100.0 + 50.0) / 3600)  # CPU seconds where counted, else wall
    # budget records outside the grid (another tag: a control, a probe) change neither the shares nor the sums
    other = [dict(r, tag="another", steps=r["max_steps"]) for r in recs]
    assert G.budget_status(recs + other)[1] == st


def test_every_budget_chunk_divides_its_length_or_pads():
    """A candidate chunk that does not divide the (flattened) length stops the grid with an error
    mid-run unless the set pads (FingerMovements' 112 and NATOPS' 48 once did)."""
    from lib.data import available_datasets

    have = set(available_datasets())
    for name, bs in G.BUDGET_SETS.items():
        if name not in have:
            continue
        _, T, C = G.raw_shape(name)
        length = T * C if bs.reshape == "rechunk" else T
        for c in bs.candidates:
            assert bs.pad or length % c == 0, (name, c, length)
            if bs.reshape == "rechunk":
                assert c % C == 0, (name, c, C)  # whole timesteps per row


def test_the_printed_cost_counts_only_the_selected_configurations(tmp_path):
    """``estimate_text`` for a selection (``--datasets``/``--ssms``) reports the core-hours spent on
    that selection's records, not on every record in the file."""
    specs = [s for s in G.calibration_grid() if s.dataset == "NATOPS" and s.reshape == "none"]
    s5 = [s for s in specs if s.ssm == "s5"]
    others = [s for s in specs if s.ssm != "s5"]
    out = tmp_path / "b.jsonl"
    recs = [dict(r, wall_s=3600.0, created=f"2026-01-0{i % 9 + 1}", profile="budget")
            for i, r in enumerate(_budget_records(s5))]
    recs += [dict(r, wall_s=36000.0, created="2026-02-01", profile="budget") for r in _budget_records(others)]
    out.write_text("".join(json.dumps(r) + "\n" for r in recs))
    text = G.estimate_text(s5, out)
    assert text.startswith(f"cost: {len(s5)} of {len(s5)} configurations done (")
    n_programs = len({(r["command"], r["created"]) for r in recs[:len(s5) * 5]})
    assert f"({n_programs:.1f} core-h spent)" in text  # 1 h per program of the selection; 10 h ones left out


def test_the_budget_plan_is_made_again_after_the_pilots(monkeypatch):
    """A set's comparisons exist only once its pilots have chosen its chunk; the budget grid runs up
    to its last pilot, plans again, and so runs them in their place in the order, not after every
    comparison planned before them."""
    from types import SimpleNamespace

    pilot = G.pilot_grid("budget", ["Libras"])[:1]
    old = [G._budget_spec("Handwriting", "s5", 6, 1, "none"), G._budget_spec("Handwriting", "s5", 1, 6, "none")]
    new = [G._budget_spec("Libras", "s5", 6, 1, "concat", 3)]
    assert G.plan_round(pilot + old) == pilot and G.plan_round(old) == old
    monkeypatch.setitem(G.GRIDS, "budget", lambda *_: pilot + new + old)
    a = SimpleNamespace(grid="budget", profile="budget", datasets=None, ssms=None)
    assert list(G._planned(pilot + old, a, "out.jsonl", (0, 1), set())) == pilot + new + old


def test_dry_run_marks_what_is_recorded_and_what_is_left(tmp_path):
    """``--dry-run`` says of each configuration whether ``out`` records it, or what it costs at the cap;
    the commands stay runnable as printed (the note is a shell comment)."""
    specs = [s for s in G.calibration_grid() if s.dataset == "NATOPS" and s.reshape == "none" and s.ssm == "s5"]
    out = str(tmp_path / "b.jsonl")
    Path(out).write_text("".join(json.dumps(dict(r, profile="budget")) + "\n" for r in _budget_records(specs[:1])))
    lines = G.dry_run_lines(specs, out)
    assert len(lines) == len(specs) and lines[0] == f"  {specs[0].command(out)}  # recorded"
    assert all(l.startswith(f"  {s.command(out)}  # left: ≤ ") and l.endswith(" core-h") for l, s in zip(lines[1:], specs[1:]))
    assert float(lines[1].split("≤ ")[1].split()[0]) > 0
    assert _listed("\n".join(lines)) == [l.strip() for l in lines]


@pytest.mark.parametrize("grid, extra", [("budget", ["--dry-run"]), ("budget", []), ("controls", ["--launcher", "local"])])
def test_a_corrupt_results_file_is_one_clear_error_before_anything_runs(tmp_path, grid, extra):
    """The grid reads --out's records to resume (and, for the budget grid, to print its cost): a file
    that is not valid JSON lines stops it with one line naming the file and line, exit 2, the file
    untouched, and nothing started (no configuration line, no traceback)."""
    out = tmp_path / "r.jsonl"
    out.write_text('{"a": 1}\n{not json\n')
    before = out.read_bytes()
    r = _cli("--grid", grid, "--profile", "smoke", "--out", str(out), *extra, timeout=120)
    assert r.returncode == 2
    assert r.stderr.count("error") == 1 and f"{out}:2: not valid JSON" in r.stderr
    assert "Traceback" not in r.stderr and "configurations x seeds" not in r.stdout
    assert out.read_bytes() == before


def test_finish_within_starts_only_what_ends_in_time_on_the_cores_at_hand(monkeypatch):
    """List scheduling in plan order at the step caps: a configuration that would end late is skipped,
    and a shorter one after it may still fit; more cores fit more."""
    specs = [s for s in G.calibration_grid() if s.dataset == "NATOPS"]
    cost = {s: c for s, c in zip(specs, [30, 30, 50, 20, 10, 70] + [999] * (len(specs) - 6))}  # minutes
    monkeypatch.setattr(G, "cost_s", lambda spec, b: 60 * cost[spec])
    assert G.fits_within(specs, {}, 60, 1) == [specs[0], specs[1]]  # 30 + 30; then none fits what is left
    assert G.fits_within(specs, {}, 60, 2) == [specs[0], specs[1], specs[3], specs[4]]  # 50 no longer fits
    assert G.fits_within(specs, {}, 100, 2) == specs[:5]
    assert G.fits_within(specs, {}, 5, 4) == []
    with pytest.raises(ValueError, match="minutes must be > 0"):
        G.fits_within(specs, {}, 0, 2)


def test_finish_within_lists_its_choice_and_keeps_it_when_the_grid_is_planned_again(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOPED_SSM_RESULTS_DIR", str(tmp_path))  # no records: every configuration is left
    r = _cli("--grid", "budget", "--profile", "budget", "--datasets", "NATOPS", "--workers", "2",
             "--finish-within", "30", "--dry-run", timeout=120)
    assert r.returncode == 0, r.stderr
    head = r.stdout.split("finish within 30 min on 2 worker(s): ")[1]
    chosen, of = int(head.split()[0]), int(head.split()[2])
    listed = _listed(r.stdout)
    assert 0 < chosen == len(listed) < of  # some fit, not all
    assert all(float(l.split("≤ ")[1].split()[0]) <= 0.5 for l in listed)  # at most 30 min (0.5 core-h) each
    from types import SimpleNamespace

    a = SimpleNamespace(grid="budget", profile="budget", datasets=["NATOPS"], ssms=None)
    whole = G.replan(a, (0, 1))
    a.keep = set(whole[:2])
    assert G.replan(a, (0, 1)) == whole[:2] and G.replan(a, (1, 2)) == whole[1:2]
