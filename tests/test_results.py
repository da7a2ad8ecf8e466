"""Run records: schema validation, atomic/resumable files, summaries, paired differences,
bootstrap intervals, claim verdicts, published numbers."""
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lib import records, results as R

REPO = Path(__file__).resolve().parents[1]


def make_record(**over):
    rec = {
        "dataset": "SelfRegulationSCP1", "ssm": "s5", "blocks": 1, "loops": 6, "depth": 6,
        "reshape": "none", "chunk": 1, "order": "time", "protocol": "paper", "seed": 2345,
        "hidden": 64, "state": 64, "lr": 1e-3, "batch_size": 32, "max_steps": 100000,
        "eval_every": 1000, "patience": 10, "time_channel": False, "standardize": False,
        "input_injection": False, "params_total": 30000, "params_blocks": 20000,
        "val_acc": 0.8, "test_acc": 0.75, "train_acc": 0.9, "best_step": 5000, "steps": 16000,
        "wall_s": 120.0, "compile_s": 10.0, "device": "cpu", "n_devices": 1,
        "versions": {"jax": "0.10.2", "flax": "0.12.8", "optax": "0.2.8", "numpy": "2.4.6",
                     "python": "3.11.7"},
        "commit": "unknown", "dirty": False, "command": "python -m lib.run ...",
        "profile": "full", "created": "2026-01-01T00:00:00+00:00", "tag": "main",
    }
    if "depth" not in over and ("blocks" in over or "loops" in over):
        over["depth"] = over.get("blocks", rec["blocks"]) * over.get("loops", rec["loops"])
    rec.update(over)
    return rec


# ------------------------------------------------------------------------------------------
# schema
# ------------------------------------------------------------------------------------------
def test_valid_record_passes_and_numpy_scalars_are_normalised():
    rec = make_record(seed=np.int64(3456), test_acc=np.float32(0.5), dirty=np.bool_(True))
    out = R.validate_record(rec)
    assert type(out["seed"]) is int and type(out["test_acc"]) is float and out["dirty"] is True
    json.dumps(out)


@pytest.mark.parametrize("field, value, words", [
    ("test_acc", 1.2, "test_acc"),
    ("val_acc", -0.1, "val_acc"),
    ("train_acc", float("nan"), "train_acc"),
    ("test_acc", 75.0, "fraction"),
    ("reshape", "patch", "reshape"),
    ("order", "channel", "order"),
    ("protocol", "mine", "protocol"),
    ("profile", "quick", "profile"),
    ("ssm", "mamba", "ssm"),
    ("depth", 5, "depth"),
    ("chunk", 4, "chunk"),          # reshape is 'none'
    ("blocks", 1.5, "blocks"),
    ("seed", True, "seed"),
    ("lr", 0.0, "lr"),
    ("wall_s", float("inf"), "wall_s"),
    ("cpu_s", -1.0, "cpu_s"),
    ("cpu_s", "fast", "cpu_s"),
    ("created", "yesterday", "created"),
    ("dirty", "no", "dirty"),
    ("versions", {"jax": "0.10.2"}, "versions"),
    ("best_step", 20000, "best_step"),
    ("params_blocks", 10 ** 6, "params_blocks"),
])
def test_invalid_field_is_named(field, value, words):
    rec = make_record(**{field: value})
    with pytest.raises(ValueError, match=words):
        R.validate_record(rec)


def test_missing_field_is_named():
    rec = make_record()
    del rec["train_acc"]
    with pytest.raises(ValueError, match="'train_acc'.*missing"):
        R.validate_record(rec)


def test_extra_field_must_be_finite_json():
    R.validate_record(make_record(note="ok", curve=[0.5, 0.6]))
    with pytest.raises(ValueError, match="curve"):
        R.validate_record(make_record(curve=[0.5, float("nan")]))
    with pytest.raises(ValueError, match="obj"):
        R.validate_record(make_record(obj=object()))


def test_baseline_record_shape_is_valid():
    rec = make_record(ssm="minirocket", blocks=0, loops=0, depth=0, lr=0.0, state=0,
                      hidden=9996, batch_size=0, max_steps=0, eval_every=0, patience=0,
                      best_step=0, steps=0, params_blocks=0, compile_s=0.0)
    R.validate_record(rec)
    with pytest.raises(ValueError, match="blocks"):
        R.validate_record({**rec, "blocks": 1, "depth": 0})


def test_record_key_normalises_types():
    a = make_record(lr=0.001, seed=2345)
    b = make_record(lr=np.float32(0.001), seed=np.int64(2345))
    assert R.record_key(a) == R.record_key(b)
    assert len(R.record_key(a)) == len(R.KEY_FIELDS)
    row = pd.Series(make_record())
    assert R.record_key(row) == R.record_key(a)
    with pytest.raises(ValueError, match="tag"):
        R.record_key({k: v for k, v in a.items() if k != "tag"})


# ------------------------------------------------------------------------------------------
# files
# ------------------------------------------------------------------------------------------
def test_append_read_roundtrip_and_versions_flattened(tmp_path):
    p = tmp_path / "runs.jsonl"
    assert R.append_records(p, [make_record(seed=s) for s in (2345, 3456)]) == 2
    R.append_records(p, make_record(seed=4567))
    df = R.read_records(p)
    assert list(df["seed"]) == [2345, 3456, 4567]
    assert "versions_jax" in df.columns and "versions" not in df.columns
    assert (df["versions_jax"] == "0.10.2").all()
    assert list(df.columns[:3]) == ["dataset", "ssm", "blocks"]


def test_read_missing_file_gives_empty_frame_with_columns(tmp_path):
    df = R.read_records(tmp_path / "nothing.jsonl")
    assert df.empty and {"dataset", "test_acc", "versions_python"} <= set(df.columns)
    assert R.read_records(str(tmp_path / "*.jsonl")).empty
    assert R.done_keys(tmp_path / "nothing.jsonl") == set()


def test_read_glob_of_files(tmp_path):
    R.append_records(tmp_path / "a.jsonl", [make_record(seed=1)])
    R.append_records(tmp_path / "b.jsonl", [make_record(seed=2)])
    assert sorted(R.read_records(str(tmp_path / "*.jsonl"))["seed"]) == [1, 2]


def test_bad_batch_writes_nothing(tmp_path):
    p = tmp_path / "runs.jsonl"
    R.append_records(p, [make_record(seed=1)])
    before = p.read_bytes()
    with pytest.raises(ValueError, match="record 1: field 'test_acc'"):
        R.append_records(p, [make_record(seed=2), make_record(seed=3, test_acc=2.0)])
    assert p.read_bytes() == before


def test_duplicates_replace_skip_error(tmp_path):
    p = tmp_path / "runs.jsonl"
    R.append_records(p, [make_record(test_acc=0.5)])
    R.append_records(p, [make_record(test_acc=0.6)])  # replace (default)
    assert list(R.read_records(p)["test_acc"]) == [0.6]
    assert R.append_records(p, [make_record(test_acc=0.7)], on_duplicate="skip") == 0
    assert list(R.read_records(p)["test_acc"]) == [0.6]
    with pytest.raises(ValueError, match="already in"):
        R.append_records(p, [make_record(test_acc=0.7)], on_duplicate="error")


def test_crash_before_replace_leaves_file_intact_and_no_temp(tmp_path, monkeypatch):
    p = tmp_path / "runs.jsonl"
    R.append_records(p, [make_record(seed=1)])
    before = p.read_bytes()

    def boom(src, dst):
        raise OSError("simulated crash")

    monkeypatch.setattr(records.os, "replace", boom)
    with pytest.raises(OSError, match="simulated crash"):
        R.append_records(p, [make_record(seed=2)])
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["runs.jsonl"]


WRITER = textwrap.dedent("""
    import os, stat, sys, time
    sys.path.insert(0, {repo!r})
    from lib import records, results as R
    from tests.test_results import make_record
    real_fsync = os.fsync
    calls = 0
    def slow_fsync(fd):
        # the temp file is written and about to be renamed: announce it, and from the 4th append
        # on, stall here so that the parent's SIGKILL lands between write and rename
        global calls
        if stat.S_ISREG(os.fstat(fd).st_mode):
            calls += 1
            print("in-fsync", calls, flush=True)
            if calls > 3:
                time.sleep(30)
        real_fsync(fd)
    records.os.fsync = slow_fsync
    for i in range(100):
        R.append_records(sys.argv[1], [make_record(seed=i, note="x" * 2000)])
        print("appended", i, flush=True)
""")


def test_sigkill_midway_leaves_only_whole_records(tmp_path):
    p = tmp_path / "runs.jsonl"
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(repo=str(REPO)))
    proc = subprocess.Popen([sys.executable, str(script), str(p)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        seen = []
        while not (seen and seen[-1] == "in-fsync 4"):   # 3 appends done, the 4th mid-write
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            seen.append(line.strip())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert "appended 2" in seen and "appended 3" not in seen
    leftovers = [x for x in tmp_path.iterdir() if x.name.endswith(".tmp")]
    assert len(leftovers) == 1                    # the killed writer's complete-but-unrenamed file
    text = p.read_text()
    assert text.endswith("\n")
    recs = [json.loads(line) for line in text.splitlines()]
    for r in recs:
        R.validate_record(r)
    assert [r["seed"] for r in recs] == [0, 1, 2]  # only whole records, the 4th never landed
    assert len(R.read_records(p)) == 3
    # the next writer removes the dead writer's temp file
    R.append_records(p, [make_record(seed=3)])
    assert [x.name for x in tmp_path.iterdir() if x.name.endswith(".tmp")] == []
    assert list(R.read_records(p)["seed"]) == [0, 1, 2, 3]


def test_corrupt_file_errors_name_the_line(tmp_path):
    p = tmp_path / "runs.jsonl"
    R.append_records(p, [make_record(seed=1), make_record(seed=2)])
    lines = p.read_text().splitlines()
    p.write_text(lines[0] + "\n" + lines[1][:40] + "\n")
    with pytest.raises(ValueError, match=r"runs\.jsonl:2: not valid JSON"):
        R.read_records(p)
    with pytest.raises(ValueError, match=r"runs\.jsonl:2"):   # never written over
        R.append_records(p, [make_record(seed=3)])
    p.write_text(lines[0] + "\n\n" + json.dumps({**json.loads(lines[1]), "test_acc": 3}) + "\n")
    with pytest.raises(ValueError, match=r"runs\.jsonl:3: field 'test_acc'"):
        R.read_records(p)
    p.write_text(lines[0] + "\n[1, 2]\n")
    with pytest.raises(ValueError, match=r":2: a record must be a JSON object"):
        R.read_records(p)
    p.write_text(lines[0] + "\n" + lines[1])  # no final newline: a partial write
    with pytest.raises(ValueError, match=r":2: last line has no newline"):
        R.read_records(p)


def test_resume_skips_configs_already_present(tmp_path):
    p = tmp_path / "runs.jsonl"
    configs = [{k: v for k, v in make_record(blocks=b, loops=6 // b, seed=s).items() if k in R.KEY_FIELDS}
               for b in (1, 6) for s in (2345, 3456)]
    assert R.missing(configs, p) == configs
    R.append_records(p, [make_record(blocks=1, loops=6, seed=2345),
                         make_record(blocks=6, loops=1, seed=3456)])
    todo = R.missing(configs, p)
    assert [(c["blocks"], c["seed"]) for c in todo] == [(1, 3456), (6, 2345)]
    assert len(R.done_keys(p)) == 2
    # a different tag or lr is a different run
    assert len(R.missing([{**configs[0], "tag": "lr-select"}, {**configs[0], "lr": 1e-4}], p)) == 2


@pytest.mark.parametrize("change", [dict(profile="budget"), dict(max_steps=3000), dict(eval_every=250),
                                    dict(patience=4), dict(batch_size=16), dict(standardize=True),
                                    dict(time_channel=True), dict(input_injection=True), dict(pad=True),
                                    dict(ragged="pad"), dict(ssm_options={"ssm_blocks": 4}), dict(hidden=16)])
def test_resume_key_covers_every_training_setting(tmp_path, change):
    """A run that differs in anything that changes training is not 'already recorded' (issue 19 §2)."""
    p = tmp_path / "runs.jsonl"
    R.append_records(p, [make_record()])
    other = {k: v for k, v in make_record(**change).items() if k in R.KEY_FIELDS}
    assert R.missing([other], p) == [other]
    assert R.record_key(other) != R.record_key(make_record())


def test_old_records_get_the_new_key_fields_derived():
    """Records written before pad/ragged/ssm_options were fields stay readable and keep their identity."""
    old = make_record()
    for f in ("pad", "ragged", "ssm_options"):
        old.pop(f, None)
    new = make_record(pad=False, ragged="error", ssm_options={})
    assert R.record_key(old) == R.record_key(new)
    padded = make_record(pipeline={"reshape": {"method": "rechunk", "chunk": 72, "order": "time", "pad": True}})
    assert R.record_key(padded) == R.record_key(make_record(pad=True))
    opt = make_record(command="python -m lib.run --ssm-option ssm_blocks=4")
    assert R.record_key(opt) == R.record_key(make_record(ssm_options={"ssm_blocks": 4}))
    df = pd.DataFrame([old, new])  # a column only some records have reads NaN for the others
    assert R.record_key(df.iloc[0]) == R.record_key(df.iloc[1])


# ------------------------------------------------------------------------------------------
# summaries
# ------------------------------------------------------------------------------------------
def frame(rows):
    return pd.DataFrame([make_record(**r) for r in rows])


def test_summarize_matches_hand_computed():
    df = frame([dict(seed=1, test_acc=0.70), dict(seed=2, test_acc=0.80), dict(seed=3, test_acc=0.90),
                dict(seed=1, blocks=6, loops=1, test_acc=0.5), dict(seed=2, blocks=6, loops=1, test_acc=0.6)])
    s = R.summarize(df, by=["dataset", "ssm", "blocks", "loops"])
    looped = s[s["blocks"] == 1].iloc[0]
    assert looped["n_seeds"] == 3
    assert looped["mean"] == pytest.approx(80.0)
    assert looped["std"] == pytest.approx(math.sqrt(200 / 3))          # ddof=0 like the peers
    assert looped["text"] == "80.00 ± 8.16"
    std1 = R.summarize(df, by=["dataset", "ssm", "blocks", "loops"], ddof=1)
    assert std1[std1["blocks"] == 1].iloc[0]["std"] == pytest.approx(10.0)
    standard = s[s["blocks"] == 6].iloc[0]
    assert (standard["n_seeds"], standard["mean"], standard["std"]) == (2, pytest.approx(55.0), pytest.approx(5.0))
    # default grouping: one row per configuration
    assert len(R.summarize(df)) == 2
    with pytest.raises(ValueError, match="seed 1 occurs more than once"):
        R.summarize(df, by=["dataset", "ssm"])


def test_paired_differences_pair_by_seed():
    df = frame([dict(seed=1, test_acc=0.70), dict(seed=2, test_acc=0.80), dict(seed=3, test_acc=0.90),
                dict(seed=2, blocks=6, loops=1, test_acc=0.75), dict(seed=1, blocks=6, loops=1, test_acc=0.60),
                dict(seed=9, blocks=6, loops=1, test_acc=0.10)])
    p = R.paired_differences(df, a=dict(blocks=1, loops=6), b=dict(blocks=6, loops=1))
    assert list(p["seed"]) == [1, 2]
    assert p["diff"].tolist() == pytest.approx([10.0, 5.0])
    assert p["a"].tolist() == pytest.approx([70.0, 80.0])
    assert {"blocks_a", "blocks_b", "loops_a", "loops_b"} <= set(p.columns)
    per = R.per_dataset_comparison(p)
    assert per.iloc[0]["diff_mean"] == pytest.approx(7.5) and per.iloc[0]["n_seeds"] == 2
    # ambiguous pairing is an error
    df2 = pd.concat([df, frame([dict(seed=1, test_acc=0.7, hidden=128)])])
    with pytest.raises(ValueError, match="several rows"):
        R.paired_differences(df2, a=dict(blocks=1, loops=6), b=dict(blocks=6, loops=1),
                             on=["dataset", "ssm", "seed"])


def test_paired_differences_over_reshape_frees_chunk():
    df = frame([dict(seed=1, test_acc=0.70), dict(seed=1, reshape="concat", chunk=4, test_acc=0.73)])
    p = R.paired_differences(df, a=dict(reshape="concat"), b=dict(reshape="none"))
    assert p["diff"].tolist() == pytest.approx([3.0])
    assert (p["chunk_a"].iloc[0], p["chunk_b"].iloc[0]) == (4, 1)


def test_per_dataset_comparison_by_input_keeps_chunks_apart():
    rows = [dict(seed=s, reshape="rechunk", chunk=c, blocks=b, loops=l, test_acc=acc)
            for s in (1, 2) for c, looped, standard in ((8, 0.90, 0.80), (16, 0.70, 0.75))
            for b, l, acc in ((1, 6, looped), (6, 1, standard))]
    p = R.paired_differences(frame(rows), a=dict(blocks=1, loops=6), b=dict(blocks=6, loops=1))
    per = R.per_dataset_comparison(p, by=("dataset", "ssm", "reshape", "chunk"))
    assert per["chunk"].tolist() == [8, 16] and per["n_seeds"].tolist() == [2, 2]
    assert per["diff_mean"].tolist() == pytest.approx([10.0, -5.0])
    pooled = R.per_dataset_comparison(p)
    assert len(pooled) == 1 and pooled.iloc[0]["diff_mean"] == pytest.approx(2.5)


def test_depth_policies_side_by_side_per_input():
    # chunk 72: three factorisations of depth 6; chunk 36: one only (dropped); a depth-4 model (dropped)
    rows = [dict(seed=s, reshape="rechunk", chunk=72, blocks=b, loops=l, test_acc=acc + s / 100)
            for s in (1, 2) for b, l, acc in ((1, 6, 0.90), (3, 2, 0.80), (6, 1, 0.70))]
    rows += [dict(seed=1, reshape="rechunk", chunk=36, blocks=1, loops=6, test_acc=0.5),
             dict(seed=1, reshape="rechunk", chunk=72, blocks=1, loops=4, test_acc=0.1)]
    d = R.depth_policies(frame(rows))
    assert d["chunk"].tolist() == [72, 72, 72]
    assert d["model"].tolist() == ["6×1", "3×2", "1×6"]          # most unique blocks first
    assert d["mean"].tolist() == pytest.approx([71.5, 81.5, 91.5])
    assert d["n_seeds"].tolist() == [2, 2, 2]
    assert len(R.depth_policies(frame(rows), min_policies=1)) == 4  # chunk 36's lone 1×6 comes back
    assert R.depth_policies(frame(rows), depth=4, min_policies=1)["model"].tolist() == ["1×4"]
    assert R.depth_policies(frame(rows).iloc[:0]).empty


def test_best_by_validation_picks_by_val_not_test():
    df = frame([dict(seed=s, reshape="concat", chunk=c, val_acc=v, test_acc=t)
                for s in (1, 2) for c, v, t in ((4, 0.9, 0.5), (8, 0.6, 0.99))])
    best = R.best_by_validation(df)
    assert set(best["chunk"]) == {4} and len(best) == 2


def test_bootstrap_ci_is_deterministic_and_contains_the_mean():
    v = np.array([1.0, -0.5, 2.0, 0.3, 1.1, -1.2])
    a, b = R.bootstrap_ci(v), R.bootstrap_ci(v)
    assert a == b
    assert a[0] < v.mean() < a[1]
    assert R.bootstrap_ci(v, seed=1) != a
    wide, narrow = R.bootstrap_ci(v, level=0.99), R.bootstrap_ci(v, level=0.5)
    assert wide[0] <= a[0] <= narrow[0] <= narrow[1] <= a[1] <= wide[1]
    assert R.bootstrap_ci([2.5]) == (2.5, 2.5)
    assert all(math.isnan(x) for x in R.bootstrap_ci([]))


def test_published_numbers():
    from lib.claims import published_numbers

    p = published_numbers()
    assert set(p["dataset"]) == {"SelfRegulationSCP1", "MotorImagery"}
    assert {"LRU", "S5", "LinOSS-IM", "LrcSSM", "LrcSSM (fixed config)",
            "Looped SSM (variant unknown)"} <= set(p["model"])
    row = p[(p["model"] == "S5") & (p["dataset"] == "SelfRegulationSCP1")].iloc[0]
    assert (row["mean"], row["std"], row["source"]) == (89.88, 4.62, "Log-NCDE v3 (arXiv v3)")
    row = p[(p["model"] == "LinOSS-IM") & (p["dataset"] == "MotorImagery")].iloc[0]
    assert (row["mean"], row["source"]) == (60.00, "LinOSS ICLR 2025")
    assert p[p["model"] == "LrcSSM"]["source"].eq("LrcSSM NeurIPS 2025 Table 1").all()
    looped = p[p["model"].str.startswith("Looped")]
    assert list(looped["dataset"]) == ["SelfRegulationSCP1"] and looped["mean"].iloc[0] == 90.12
    assert "variant unknown" in looped["source"].iloc[0]
    assert len(published_numbers(None)) == 5 * 6 + 5
    assert p[p["model"].str.startswith("Looped")]["std"].isna().all()  # not published: NaN, not 0


CONCURRENT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    from lib import records, results as R
    from tests.test_results import make_record
    for i in range(10):
        R.append_records(sys.argv[1], [make_record(seed=int(sys.argv[2]) * 1000 + i)])
""")


def test_concurrent_writers_lose_nothing(tmp_path):
    p = tmp_path / "runs.jsonl"
    script = tmp_path / "w.py"
    script.write_text(CONCURRENT.format(repo=str(REPO)))
    procs = [subprocess.Popen([sys.executable, str(script), str(p), str(k)], cwd=REPO)
             for k in (1, 2)]
    assert [pr.wait(timeout=60) for pr in procs] == [0, 0]
    seeds = sorted(R.read_records(p)["seed"])
    assert seeds == sorted([k * 1000 + i for k in (1, 2) for i in range(10)])
