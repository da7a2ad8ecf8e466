"""Training: determinism, one sharded multi-seed program == per-seed runs, resumable records, a real run."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import pytest

from lib.train import PROFILES, TrainConfig, train_config, train_seeds

REPO = Path(__file__).resolve().parents[1]
KW = dict(ssm="lru", blocks=1, loops=2, hidden=8, state=8, in_features=3, num_classes=2)
CFG = TrainConfig(lr=3e-3, batch_size=16, max_steps=60, eval_every=20, patience=1)


def synthetic_split(seed):
    r = np.random.default_rng(seed)

    def part(n):
        y = r.integers(0, 2, n)
        X = r.normal(size=(n, 24, 3)).astype(np.float32)
        X[:, :, 0] += (2 * y - 1)[:, None] * 0.4
        return X, y

    (Xtr, ytr), (Xv, yv), (Xt, yt) = part(64), part(24), part(24)
    return SimpleNamespace(X_train=Xtr, y_train=ytr, X_val=Xv, y_val=yv, X_test=Xt, y_test=yt)


def _flat(state):
    from lib.store import flat_arrays

    return flat_arrays(state)


def test_same_config_and_seed_are_bit_identical():
    a, _ = train_seeds(KW, [synthetic_split(1), synthetic_split(2)], CFG, [1, 2], progress=False)
    b, _ = train_seeds(KW, [synthetic_split(1), synthetic_split(2)], CFG, [1, 2], progress=False)
    for ra, rb in zip(a, b):
        assert (ra.val_acc, ra.test_acc, ra.best_step, ra.steps) == (rb.val_acc, rb.test_acc, rb.best_step, rb.steps)
        assert [h["loss"] for h in ra.history] == [h["loss"] for h in rb.history]
        fa, fb = _flat(ra.state), _flat(rb.state)
        assert fa.keys() == fb.keys()
        assert all(np.array_equal(fa[k], fb[k]) for k in fa)
    assert a[0].history != a[1].history  # different seeds really differ


def test_seed_axis_map_equals_vmap():
    """On one CPU device the seeds loop inside the program (lax.map); vmapping them gives the same run."""
    splits = [synthetic_split(4), synthetic_split(5)]
    a, ta = train_seeds(KW, splits, CFG, [4, 5], progress=False, seed_axis="map")
    b, tb = train_seeds(KW, splits, CFG, [4, 5], progress=False, seed_axis="vmap")
    assert (ta.seed_axis, tb.seed_axis) == ("map", "vmap")
    for ra, rb in zip(a, b):
        assert (ra.val_acc, ra.test_acc, ra.best_step, ra.steps) == (rb.val_acc, rb.test_acc, rb.best_step, rb.steps)
        fa, fb = _flat(ra.state), _flat(rb.state)
        assert max(float(np.max(np.abs(fa[k] - fb[k]))) for k in fa) <= 1e-5


SHARDED = textwrap.dedent("""
    import json, sys, numpy as np, jax
    sys.path.insert(0, {tests!r})
    from test_train import KW, CFG, synthetic_split, _flat
    from lib.train import train_seeds
    seeds = [11, 12, 13]
    multi, trainer = train_seeds(KW, [synthetic_split(s) for s in seeds], CFG, seeds, progress=False)
    out = dict(devices=len(jax.devices()), pad=trainer.n_pad, axis=trainer.seed_axis,
               sharding=str(jax.tree.leaves(trainer.state)[0].sharding.spec), rows=[])
    for s, m in zip(seeds, multi):
        (one,), _ = train_seeds(KW, [synthetic_split(s)], CFG, [s], progress=False)
        fm, fo = _flat(m.state), _flat(one.state)
        out["rows"].append(dict(seed=s, multi=[m.val_acc, m.test_acc, m.best_step, m.steps],
                                single=[one.val_acc, one.test_acc, one.best_step, one.steps],
                                loss_diff=max(abs(a["loss"] - b["loss"]) for a, b in zip(m.history, one.history)),
                                param_diff=max(float(np.max(np.abs(fm[k] - fo[k]))) for k in fm
                                               if fm[k].dtype.kind == "f")))
    print("RESULT" + json.dumps(out))
""")


def test_sharded_multi_seed_equals_per_seed_runs(tmp_path):
    """3 seeds on 4 forced CPU devices (padded to 4) give each seed's single-seed result."""
    script = tmp_path / "sharded.py"
    script.write_text(SHARDED.format(tests=str(REPO / "tests")))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", LOOPED_SSM_QUIET="1")
    proc = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert out["devices"] == 4 and out["pad"] == 1 and out["axis"] == "vmap"
    assert "seed" in out["sharding"]
    for row in out["rows"]:
        assert row["multi"] == row["single"], row
        assert row["loss_diff"] <= 1e-5 and row["param_diff"] <= 1e-5, row


def test_early_stopping_and_reported_test_accuracy():
    (r,), _ = train_seeds(KW, [synthetic_split(3)], TrainConfig(lr=3e-3, batch_size=16, max_steps=200,
                                                                 eval_every=20, patience=1), [3], progress=False)
    vals = [h["val_acc"] for h in r.history]
    best = max(vals)
    last_best = max(i for i, v in enumerate(vals) if v == best)  # ties count: the last one reports
    assert r.val_acc == best
    assert r.test_acc == r.history[last_best]["test_acc"]
    assert r.best_step == r.history[last_best]["step"]
    assert r.steps == r.history[-1]["step"] <= 200


def test_profiles_and_config_errors():
    assert train_config("lrcssm", "full").grad_clip == 1.0
    assert train_config("s5", "smoke").max_steps == PROFILES["smoke"]["max_steps"]
    assert train_config("s5", "full", lr=0.01).lr == 0.01
    with pytest.raises(ValueError, match="profile must be one of"):
        train_config("s5", "huge")
    with pytest.raises(ValueError, match="lr must be a positive number"):
        TrainConfig(lr=-1.0)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        TrainConfig(batch_size=0)
    bad = synthetic_split(1)
    bad.X_val = bad.X_val.copy()
    bad.X_val[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="the val inputs contain NaN"):
        train_seeds(KW, [bad], CFG, [1], progress=False)
    with pytest.raises(ValueError, match="batch_size 128 is larger than the training part"):
        train_seeds(KW, [synthetic_split(1)], TrainConfig(batch_size=128), [1], progress=False)


def _have(name):
    from lib.data import available_datasets

    return name in available_datasets()


@pytest.mark.slow
@pytest.mark.skipif(not _have("BasicMotions"), reason="BasicMotions.npz not in the shared data folder")
def test_real_run_on_basicmotions_reaches_90_percent(tmp_path):
    from lib.results import read_records
    from lib.run import main

    out = tmp_path / "bm.jsonl"
    argv = ["--dataset", "BasicMotions", "--ssm", "s5", "--blocks", "1", "--loops", "2", "--seeds", "1",
            "--profile", "smoke", "--out", str(out), "--save-params", str(tmp_path / "params")]
    assert main(argv) == 0
    df = read_records(out)
    assert len(df) == 1 and df.test_acc.iloc[0] >= 0.9 and df.val_acc.iloc[0] >= 0.9
    assert df.device.iloc[0] == "cpu" and df.params_blocks.iloc[0] > 0
    # a second run finds the record and trains nothing
    assert main(argv) == 0
    assert len(read_records(out)) == 1
    # the saved best-validation model reproduces its recorded test accuracy
    from lib import data as D
    from lib.store import load_state

    model, meta = load_state(next((tmp_path / "params").glob("*.npz")))
    s = D.split(D.load_uea("BasicMotions"), "paper", 2345)
    acc = float(np.mean(np.argmax(np.asarray(model(s.X_test)), -1) == s.y_test))
    assert acc == pytest.approx(df.test_acc.iloc[0])


KILL = textwrap.dedent("""
    import sys
    from lib.run import RunSpec, run
    for loops in (1, 2, 3):
        spec = RunSpec(dataset="BasicMotions", ssm="lru", blocks=1, loops=loops, seeds=(2345,), hidden=8,
                       state=8, profile="smoke", max_steps=20, eval_every=10)
        run(spec, sys.argv[1], progress=False)
        print("done", loops, flush=True)
""")


@pytest.mark.slow
@pytest.mark.skipif(not _have("BasicMotions"), reason="BasicMotions.npz not in the shared data folder")
def test_killed_grid_resumes_without_duplicates(tmp_path):
    from lib.results import read_records

    out = tmp_path / "grid.jsonl"
    script = tmp_path / "grid.py"
    script.write_text(KILL)
    env = dict(os.environ, LOOPED_SSM_QUIET="1")
    proc = subprocess.Popen([sys.executable, str(script), str(out)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # the first configuration is recorded ...
    assert line.startswith("done 1")
    proc.send_signal(signal.SIGKILL)  # ... then the run dies in the middle of the second
    proc.wait(timeout=30)
    first = read_records(out)
    assert len(first) == 1 and first.loops.tolist() == [1]
    t0 = time.time()
    done = subprocess.run([sys.executable, str(script), str(out)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    df = read_records(out)
    assert sorted(df.loops.tolist()) == [1, 2, 3]  # resumed: loops 1 not retrained, no duplicates
    assert df.wall_s[df.loops == 1].iloc[0] == first.wall_s.iloc[0]
    assert time.time() - t0 < 900


def test_map_axis_drops_stopped_seeds_and_keeps_each_seeds_result():
    """Under lax.map a seed that stopped leaves the program; the others' runs are unchanged."""
    cfg = TrainConfig(lr=3e-3, batch_size=16, max_steps=160, eval_every=20, patience=1)
    seeds = [3, 21, 22]
    multi, trainer = train_seeds(KW, [synthetic_split(s) for s in seeds], cfg, seeds, progress=False,
                                 seed_axis="map")
    assert len({r.steps for r in multi}) > 1, "the seeds should stop at different steps for this check"
    assert trainer.seed_steps == sum(r.steps for r in multi)  # nothing computed after a seed stopped
    for s, m in zip(seeds, multi):
        (one,), _ = train_seeds(KW, [synthetic_split(s)], cfg, [s], progress=False, seed_axis="map")
        assert (m.val_acc, m.test_acc, m.best_step, m.steps) == (one.val_acc, one.test_acc, one.best_step, one.steps)
        assert [h["loss"] for h in m.history] == pytest.approx([h["loss"] for h in one.history], abs=1e-5)
        fm, fo = _flat(m.state), _flat(one.state)
        assert max(float(np.max(np.abs(fm[k] - fo[k]))) for k in fm if fm[k].dtype.kind == "f") <= 1e-5


def test_background_log_prints_one_line_per_evaluation(monkeypatch, capsys):
    monkeypatch.setenv("LOOPED_SSM_LOG", "1")
    (r,), _ = train_seeds(KW, [synthetic_split(1)], CFG, [1], progress=False)
    lines = [line for line in capsys.readouterr().err.splitlines() if " step " in line]
    assert len(lines) == len(r.history) and lines[-1].startswith(f"lru step {r.history[-1]['step']}: best val")


# -- checkpoints inside a configuration ---------------------------------------------------------
CK_CFG = TrainConfig(lr=3e-3, batch_size=16, max_steps=160, eval_every=20, patience=1)
CK_SEEDS = [3, 21, 22]


class _Killed(Exception):
    pass


def _same_runs(a, b, ta, tb):
    for ra, rb in zip(a, b):
        assert (ra.val_acc, ra.test_acc, ra.train_acc, ra.best_step, ra.steps) == \
               (rb.val_acc, rb.test_acc, rb.train_acc, rb.best_step, rb.steps)
        assert ra.history == rb.history
        fa, fb = _flat(ra.state), _flat(rb.state)
        assert fa.keys() == fb.keys() and all(np.array_equal(fa[k], fb[k]) for k in fa)
    assert ta.seed_steps == tb.seed_steps


@pytest.mark.parametrize("axis", ["map", "vmap"])
def test_a_killed_fit_resumes_from_its_checkpoint_to_the_same_result(tmp_path, monkeypatch, axis):
    """Killed right after a checkpoint, after one seed has already stopped: the rerun goes on from
    there and ends bit-identical to an uninterrupted run (batch order, dropout keys, best states)."""
    import lib.train as T

    splits = [synthetic_split(s) for s in CK_SEEDS]
    whole, tw = train_seeds(KW, splits, CK_CFG, CK_SEEDS, progress=False, seed_axis=axis)
    first_stop = min(r.steps for r in whole)
    assert first_stop < max(r.steps for r in whole), "the seeds should stop at different steps for this check"
    kill_at = first_stop // CK_CFG.eval_every + 1  # the evaluation after the first seed stopped
    ck = tmp_path / "run.npz"
    real, saves = T.save_checkpoint, []

    def save_then_die(*args, **kwargs):
        real(*args, **kwargs)
        saves.append(args[1]["step"])
        if len(saves) == kill_at:
            raise _Killed

    monkeypatch.setattr(T, "save_checkpoint", save_then_die)
    with pytest.raises(_Killed):
        train_seeds(KW, splits, CK_CFG, CK_SEEDS, progress=False, seed_axis=axis, checkpoint=ck, note={"run": 1})
    monkeypatch.setattr(T, "save_checkpoint", real)
    meta, _ = T.load_checkpoint(ck)
    assert meta["step"] == kill_at * CK_CFG.eval_every
    if axis == "map":
        assert len(meta["live"]) < len(CK_SEEDS)  # the stopped seed had left the program
    again, ta = train_seeds(KW, splits, CK_CFG, CK_SEEDS, progress=False, seed_axis=axis, checkpoint=ck,
                            note={"run": 2})
    _same_runs(whole, again, tw, ta)
    assert ta.segments == [dict(step=0, run=1), dict(step=kill_at * CK_CFG.eval_every, run=2)]
    assert ta.wall_s > meta["wall_s"]  # the time of both sittings
    assert ta.cpu_s > meta["cpu_s"] > 0 and tw.cpu_s > 0  # CPU seconds too
    # a checkpoint written before CPU seconds were counted (the last one of the second sitting, without
    # them): the record cannot know them, so it leaves them out
    meta, trees = T.load_checkpoint(ck)
    T.save_checkpoint(ck, {k: v for k, v in meta.items() if k != "cpu_s"}, **trees)
    _, old = train_seeds(KW, splits, CK_CFG, CK_SEEDS, progress=False, seed_axis=axis, checkpoint=ck)
    assert old.cpu_s is None and old.wall_s > meta["wall_s"]


def test_a_deadline_stops_at_an_evaluation_and_the_next_sitting_finishes(tmp_path):
    from lib.train import Interrupted

    ck = tmp_path / "run.npz"
    with pytest.raises(Interrupted) as stop:
        train_seeds(KW, [synthetic_split(1)], CFG, [1], progress=False, checkpoint=ck, deadline=time.time())
    assert stop.value.step == CFG.eval_every and ck.exists()
    assert str(ck) in str(stop.value)
    resumed, tr = train_seeds(KW, [synthetic_split(1)], CFG, [1], progress=False, checkpoint=ck)
    whole, tw = train_seeds(KW, [synthetic_split(1)], CFG, [1], progress=False)
    _same_runs(whole, resumed, tw, tr)
    with pytest.raises(ValueError, match="needs a checkpoint"):
        train_seeds(KW, [synthetic_split(1)], CFG, [1], progress=False, deadline=time.time())


def test_a_checkpoint_of_another_configuration_or_other_data_is_not_resumed(tmp_path, capsys):
    from lib.train import Interrupted

    ck = tmp_path / "run.npz"
    with pytest.raises(Interrupted):
        train_seeds(KW, [synthetic_split(1)], CFG, [1], progress=False, checkpoint=ck, deadline=time.time())
    other = TrainConfig(lr=1e-2, batch_size=16, max_steps=60, eval_every=20, patience=1)
    for cfg, split in ((other, synthetic_split(1)), (CFG, synthetic_split(2))):
        capsys.readouterr()
        with pytest.raises(Interrupted):  # starts afresh (and overwrites the checkpoint) ...
            train_seeds(KW, [split], cfg, [1], progress=False, checkpoint=ck, deadline=time.time())
        assert "holds another configuration or other data; starting afresh" in capsys.readouterr().err
        got, tg = train_seeds(KW, [split], cfg, [1], progress=False, checkpoint=ck)
        ref, tref = train_seeds(KW, [split], cfg, [1], progress=False)
        _same_runs(ref, got, tref, tg)  # ... and ends as a run that never saw the other checkpoint


@pytest.mark.slow
@pytest.mark.skipif(not _have("BasicMotions"), reason="BasicMotions.npz not in the shared data folder")
def test_run_stopped_by_its_time_limit_goes_on_and_records_both_sittings(tmp_path, capsys):
    from lib.results import read_records
    from lib.run import RunSpec, checkpoint_path, main

    out = tmp_path / "bm.jsonl"
    argv = ["--dataset", "BasicMotions", "--ssm", "lru", "--blocks", "1", "--loops", "2", "--seeds", "2",
            "--profile", "smoke", "--hidden", "8", "--state", "8", "--max-steps", "60", "--eval-every", "20",
            "--out", str(out)]
    assert main(argv + ["--stop-after-min", "0.0001"]) == 0
    said = capsys.readouterr().out
    assert "stopped at step 20 of 60" in said and "run the same command again to go on" in said
    assert not out.exists()  # nothing partial in the records
    spec = RunSpec(dataset="BasicMotions", ssm="lru", blocks=1, loops=2, seeds=(2345, 3456), hidden=8, state=8,
                   profile="smoke", max_steps=60, eval_every=20)
    ck = checkpoint_path(spec)
    assert ck.exists()
    assert main(argv) == 0
    df = read_records(out)
    assert len(df) == 2 and not ck.exists()  # the checkpoint goes once the records are written
    for segs in df["segments"]:
        assert [s["step"] for s in segs] == [0, 20] and {"commit", "device", "started"} <= set(segs[0])
    assert "--stop-after-min" not in df["command"].iloc[0]
    # the same configuration in one sitting gives the same numbers
    one = tmp_path / "one.jsonl"
    assert main([*argv[:-1], str(one), "--no-checkpoint"]) == 0
    ref = read_records(one)
    assert ref["test_acc"].tolist() == df["test_acc"].tolist() and ref["steps"].tolist() == df["steps"].tolist()
    assert main(argv + ["--stop-after-min", "-1"]) == 2
    assert "--stop-after-min must be > 0" in capsys.readouterr().err


# -- issue 18: the compiled programs -------------------------------------------------------------------

def test_default_mode_is_sequential_on_cpu():
    from lib.ssm import SSM_NAMES
    from lib.train import default_mode

    assert all(default_mode(s, "cpu") == "sequential" for s in SSM_NAMES)
    assert all(default_mode(s, "gpu") == "parallel" for s in SSM_NAMES)


def test_one_program_however_many_seeds_are_left():
    """On one CPU device the chunk is compiled for one seed and run per seed: seeds that stop at
    different evaluations cause no recompile, and evaluation is one program for val, test and train."""
    splits = [synthetic_split(s) for s in (21, 22, 23)]
    cfg = TrainConfig(lr=3e-3, batch_size=16, max_steps=120, eval_every=10, patience=0)
    results, tr = train_seeds(KW, splits, cfg, [21, 22, 23], progress=False)
    assert tr.seed_axis == "map"
    assert len({r.steps for r in results}) > 1  # the seeds stopped at different steps
    assert len(tr._chunk_fns) == 1
    assert tr._eval_fn._cache_size() == 1


def test_compilation_cache_folder(monkeypatch, tmp_path):
    from lib.train import CACHE_ENV, compilation_cache_dir

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "c"))
    assert compilation_cache_dir() == tmp_path / "c"
    for off in ("", "off", "0"):
        monkeypatch.setenv(CACHE_ENV, off)
        assert compilation_cache_dir() is None
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compilation_cache_dir() == tmp_path / "looped-ssm" / "jax"
