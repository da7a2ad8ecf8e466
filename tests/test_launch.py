"""The grid on Ray (``lib.launch``): records identical to the in-process run, one writer, a worker
killed mid-configuration loses nothing, a failing task is retried once and then reported without
stopping the others, and the local Ray instance stops with its driver."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib import records as R

REPO = Path(__file__).resolve().parents[1]
ray = pytest.importorskip("ray")

#: the fields that must agree between two runs of the same configuration (not times, not provenance)
SAME = ("dataset", "ssm", "blocks", "loops", "reshape", "chunk", "seed", "val_acc", "test_acc", "train_acc",
        "best_step", "steps", "params_total", "history")


def _have(name):
    from lib.data import available_datasets

    return name in available_datasets()


needs_uwave = pytest.mark.skipif(not _have("UWaveGestureLibrary"), reason="UWaveGestureLibrary not in the shared data")
GRID = ["--grid", "main", "--profile", "smoke", "--ssms", "s5", "--datasets", "UWaveGestureLibrary"]


def _env(tmp_path, **extra):
    return dict(os.environ, LOOPED_SSM_QUIET="1", LOOPED_SSM_CKPT_DIR=str(tmp_path / "ckpt"), **extra)


def _grid(tmp_path, *args, timeout=900):
    return subprocess.run([sys.executable, "-m", "lib.grid", *GRID, *args], cwd=REPO, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=timeout)


def _same(path):
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    return sorted((tuple(json.dumps(r[k], sort_keys=True) for k in SAME) for r in rows))


@pytest.mark.slow
@needs_uwave
def test_ray_records_equal_the_in_process_run(tmp_path):
    """Two configurations through a local Ray instance (two tasks at once) and in this process: the
    same records, written by the driver alone, and no checkpoint left behind."""
    ray_out, local_out = tmp_path / "ray.jsonl", tmp_path / "local.jsonl"
    a = _grid(tmp_path, "--shard", "0/2", "--workers", "2", "--out", str(ray_out))
    assert a.returncode == 0, a.stderr[-3000:]
    assert "running on local Ray instance, 2 CPU core(s)" in a.stdout
    b = _grid(tmp_path, "--shard", "0/2", "--launcher", "local", "--out", str(local_out))
    assert b.returncode == 0, b.stderr[-3000:]
    assert len(R.read_records(ray_out)) == 4  # 2 configurations x 2 seeds
    assert _same(ray_out) == _same(local_out)
    assert not list((tmp_path / "ckpt").glob("*.npz"))
    again = _grid(tmp_path, "--shard", "0/2", "--workers", "2", "--out", str(ray_out))
    assert again.returncode == 0 and again.stdout.count("skipped (recorded)") == 2


def _task_pids(ckpt: Path) -> list[int]:
    """The Ray worker processes running ``train_task`` for this test (their checkpoint folder)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if b"ray::train_task" not in (d / "cmdline").read_bytes():
                continue
            if f"LOOPED_SSM_CKPT_DIR={ckpt}".encode() in (d / "environ").read_bytes():
                pids.append(int(d.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
@needs_uwave
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_worker_killed_mid_configuration_loses_nothing(tmp_path):
    """SIGKILL the task's process once its checkpoint exists: Ray runs the task again, it resumes
    from the checkpoint (two segments), and the records equal an uninterrupted run's."""
    ckpt, out = tmp_path / "ckpt", tmp_path / "ray.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "lib.grid", *GRID, "--shard", "0/4", "--workers", "1", "--out", str(out)],
                         cwd=REPO, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = []
    try:
        t0 = time.time()
        while not killed and p.poll() is None and time.time() - t0 < 600:
            if list(ckpt.glob("*.npz")):
                for pid in _task_pids(ckpt):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.05)
        stdout, stderr = p.communicate(timeout=900)
    finally:
        if p.poll() is None:
            p.kill()
    assert killed, "the task finished before it could be killed"
    assert p.returncode == 0, stderr[-3000:]
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 2
    assert all(len(r["segments"]) == 2 and r["segments"][1]["step"] > 0 for r in recs), [r["segments"] for r in recs]
    local = tmp_path / "local.jsonl"
    b = _grid(tmp_path, "--shard", "0/4", "--launcher", "local", "--out", str(local))
    assert b.returncode == 0, b.stderr[-3000:]
    assert _same(out) == _same(local)


def _flaky(spec, *, marker: str, **kw):
    """A stand-in task: fails for the spec named "bad" (every time), fails the first time for
    "once" (a marker file remembers), and returns a record-like result otherwise."""
    if spec == "bad":
        raise ValueError("this configuration cannot train")
    if spec == "once" and not Path(marker).exists():
        Path(marker).write_text("tried")
        raise RuntimeError("a transient failure")
    return {"spec": spec, "pid": os.getpid()}


def test_a_failing_task_is_retried_once_then_reported_without_stopping_the_rest(tmp_path):
    from lib.launch import RayLauncher, error_text

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this file
    launcher = RayLauncher(workers=2, task=_flaky)
    try:
        results, errors = {}, {}
        launcher.run_round(["good", "bad", "once", "good2"],
                           submit_kw=lambda spec: dict(marker=str(tmp_path / "marker")),
                           on_result=lambda spec, r: results.__setitem__(spec, r),
                           on_error=lambda spec, e: errors.__setitem__(spec, error_text(e)))
    finally:
        launcher.close()
    assert sorted(results) == ["good", "good2", "once"]  # "once" succeeded on its retry
    assert list(errors) == ["bad"] and "ValueError: this configuration cannot train" in errors["bad"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
@needs_uwave
def test_the_tasks_and_the_local_ray_instance_stop_with_the_driver(tmp_path, sig):
    """Killed, interrupted or terminated, the driver takes its tasks and Ray's own processes with it;
    SIGINT and SIGTERM end with 130/143 and the resume hint, and the checkpoints stay."""
    ckpt = tmp_path / "ckpt"
    # the driver as started from a terminal: SIGINT at its default. A job started in the background
    # (``cmd &`` without job control, as when these tests run under ``nohup ... &``) inherits SIGINT
    # ignored (POSIX), and then neither Ctrl-C nor ``kill -INT`` reaches it: stop such a grid with SIGTERM.
    # A handler (not "ignore") in this process becomes the default in the child at exec.
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        p = subprocess.Popen([sys.executable, "-m", "lib.grid", *GRID, "--workers", "2", "--out", str(tmp_path / "g.jsonl")],
                             cwd=REPO, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    finally:
        signal.signal(signal.SIGINT, old)
    try:
        t0 = time.time()
        while len(_task_pids(ckpt)) < 2 and time.time() - t0 < 120:
            time.sleep(0.2)
        tasks = _task_pids(ckpt)
        assert len(tasks) == 2, "the tasks did not start"
        session = _ray_pids(tasks)
        p.send_signal(sig)
        rc = p.wait(timeout=60)
        t0 = time.time()
        while any(Path(f"/proc/{x}").exists() and _alive(x) for x in tasks + session) and time.time() - t0 < 30:
            time.sleep(0.2)
        left = [x for x in tasks + session if _alive(x)]
        assert not left, f"outlived the driver: {left}"
        if sig != signal.SIGKILL:
            said = p.stdout.read()
            assert rc == (130 if sig == signal.SIGINT else 143), said[-2000:]
            assert "interrupted; run the same command again to go on" in said
    finally:
        if p.poll() is None:
            p.kill()


def _alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] not in "ZX"
    except OSError:
        return False


def _ray_pids(tasks):
    """The parents of the task processes (the raylet) and their other children (Ray's agents)."""
    out = set()
    for t in tasks:
        try:
            ppid = int(Path(f"/proc/{t}/stat").read_text().rsplit(") ", 1)[1].split()[1])
        except OSError:
            continue
        out.add(ppid)
        for task in Path(f"/proc/{ppid}/task").iterdir():
            out.update(int(c) for c in (task / "children").read_text().split())
    return sorted(out - set(tasks))


def test_the_budget_grid_keeps_every_seed_of_its_looped_cells(tmp_path):
    """Issue 21 §1 analyses trained looped models of the budget grid: every seed of a looped cell is
    saved (under data/params/budget, the profile in the name), a standard cell's are not."""
    import argparse

    from lib.launch import BUDGET_PARAMS, _Plan
    from lib.run import RunSpec, run
    from lib.store import params_path

    a = argparse.Namespace(grid="budget", profile="budget", save_params=None, budget_min=None, out=None)
    plan = _Plan([], a, str(tmp_path / "x.jsonl"), "")
    looped = RunSpec(dataset="Tiny", ssm="s5", blocks=2, loops=3, profile="budget")
    standard = RunSpec(dataset="Tiny", ssm="s5", blocks=6, loops=1, profile="budget")
    assert (plan.save_folder(looped), plan.save_seeds(looped)) == (BUDGET_PARAMS, "all")
    assert plan.save_folder(standard) is None
    rec = dict(dataset="NATOPS", ssm="s5", blocks=1, loops=6, reshape="none", chunk=1, protocol="paper", seed=2345)
    assert params_path(tmp_path, rec).name == "NATOPS_s5_b1x6_none1_paper_s2345"  # full profile: the old name
    assert params_path(tmp_path, dict(rec, profile="budget")).name == "NATOPS_s5_b1x6_none1_paper_budget_s2345"
    spec = RunSpec(dataset="Tiny", ssm="s5", blocks=1, loops=2, seeds=(2345, 3456), hidden=8, state=8,
                   batch_size=4, max_steps=10, eval_every=5, profile="smoke")
    fixtures = Path(__file__).parent / "fixtures"
    run(spec, None, data_folder=fixtures, save_params=tmp_path / "p", save_seeds="all", progress=False,
        checkpoint=False)
    assert sorted(p.name for p in (tmp_path / "p").glob("*.npz")) == [
        "Tiny_s5_b1x2_none1_paper_smoke_s2345.npz", "Tiny_s5_b1x2_none1_paper_smoke_s3456.npz"]
