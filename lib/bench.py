"""Benchmarks that write numbers (not timed tests).

    python -m lib.bench scan  [--lengths 256 1024 4096] [--batch 8] [--out data/bench/scan.json]
    python -m lib.bench train [--steps 5] [--repeats 3] [--raw] [--baseline HEAD] [--out data/bench/train.json]

``scan``: forward and forward+backward time of every SSM layer (H = P = 64) against sequence
length, parallel (associative scan; DEER for LrcSSM) vs sequential (``lax.scan``).

``train``: the training step (forward, backward, Adam; dropout on; batch 32, H = P = 64) of the
four SSMs, standard 6 blocks × 1 loop and looped 1 × 6, on the budget grid's inputs (``GRID_SHAPES``,
T′ × C′ after reshaping; ``--raw`` adds SCP1 raw for S5). Every configuration is measured in a
fresh process pinned to one core with XLA's CPU thread pool off (the grid's workers), on the
current code ("after") and on ``--baseline`` ("before", a temporary ``git worktree`` of that
revision, removed afterwards), side by side in the same run. Reported per configuration:
seed-steps per core-second (steps over the process's CPU seconds, so other load on the machine
does not count), seed-steps per wall-clock second, compile time, and peak resident memory
(``ru_maxrss``). Then the levers, each measured on its own: the scan mode on either code, compile
time against the number of loops (1×L, L = 1, 2, 4, 8), one process on both cores with XLA's
default threads, five seeds vmapped vs the trainer's per-seed program, the persistent compilation
cache (cold vs warm), and a whole short ``fit`` (every compilation it triggers).

Every timing is the median of ``repeats`` calls after a warm-up call, with compile time reported
separately; each file names the device, the JAX version and the commit.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lib.launch import ONE_CORE_XLA_FLAGS  # what each worker process is run with (the grid's setting)
from lib.ssm import SSM_NAMES, make_ssm, paper_ssms
from lib.train import default_mode


def time_call(fn, *args, repeats: int = 3, cpu: bool = False) -> dict:
    """Call ``fn(*args)`` once (compilation) and then ``repeats`` times; wall times in seconds.

    Returns ``{"first": ..., "median": ..., "best": ...}``, with ``cpu=True`` also ``"cpu_best"``: the
    fewest CPU seconds of this process over the calls, which other load on the machine does not
    inflate by taking the core. Outputs are waited for with ``jax.block_until_ready`` so asynchronous
    dispatch does not hide the work.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    times, cpu_s = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
        cpu_s.append(time.process_time() - c0)
    out = {"first": first, "median": float(statistics.median(times)), "best": float(min(times))}
    return dict(out, cpu_best=float(min(cpu_s))) if cpu else out


def _meta(kind: str, **extra) -> dict:
    from lib.run import git_commit, versions
    from lib.train import device_name

    sha, dirty = git_commit()
    return {"benchmark": kind, "device": device_name(), "platform": jax.default_backend(),
            "n_devices": len(jax.devices()), "cpu": platform.processor() or platform.machine(),
            "versions": versions(), "commit": sha, "dirty": dirty,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": "python -m lib.bench " + (" ".join(sys.argv[1:]) if sys.argv[1:2] == [kind] else kind),
            **extra}


def bench_scan(lengths=(256, 1024, 4096), batch: int = 8, hidden: int = 64, state: int = 64,
               repeats: int = 3, ssms=SSM_NAMES) -> dict:
    rows = []
    for name in ssms:
        layer = make_ssm(name, hidden, state, rngs=nnx.Rngs(0))
        graphdef, params = nnx.split(layer)
        for T in lengths:
            u = jax.random.normal(jax.random.key(1), (batch, T, hidden))
            for mode in ("parallel", "sequential"):
                def forward(params, u, mode=mode):
                    return nnx.merge(graphdef, params)(u, mode=mode)

                def loss(params, u, mode=mode):
                    return jnp.mean(forward(params, u, mode) ** 2)

                fwd = jax.jit(forward)
                bwd = jax.jit(jax.value_and_grad(loss))
                f, b = (time_call(fwd, params, u, repeats=repeats, cpu=True),
                        time_call(bwd, params, u, repeats=repeats, cpu=True))
                rows.append(dict(ssm=name, T=T, mode=mode, batch=batch, hidden=hidden, state=state,
                                 forward_s=f["median"], forward_backward_s=b["median"],
                                 forward_cpu_s=f["cpu_best"], forward_backward_cpu_s=b["cpu_best"],
                                 first_call_forward_s=f["first"], first_call_forward_backward_s=b["first"]))
                print(f"{name:12s} T={T:5d} {mode:10s} fwd {f['median'] * 1e3:9.2f} ms  "
                      f"fwd+bwd {b['median'] * 1e3:9.2f} ms", flush=True)
    return {**_meta("scan", batch=batch, hidden=hidden, state=state, repeats=repeats), "rows": rows}


#: the budget grid's model inputs, T′ × C′ after reshaping (``lib.reshape``; ``lib.grid``)
GRID_SHAPES = {
    "SelfRegulationSCP1 concat/16": (56, 96),
    "MotorImagery 30 per row": (100, 1920),
    "LSST": (36, 6),
    "NATOPS": (51, 24),
    "Handwriting concat/4": (38, 12),
}
#: the raw SCP1 input, for S5 only (``--raw``)
RAW_SHAPE = {"SelfRegulationSCP1 raw": (896, 6)}
TRAIN_SSMS = paper_ssms()
MODELS = ((6, 1), (1, 6))


def _synthetic_split(n: int, T: int, C: int, classes: int, seed: int):
    from types import SimpleNamespace

    r = np.random.default_rng(seed)
    make = lambda k: (r.normal(size=(k, T, C)).astype(np.float32), r.integers(0, classes, k))  # noqa: E731
    (Xtr, ytr), (Xv, yv), (Xt, yt) = make(n), make(32), make(32)
    return SimpleNamespace(X_train=Xtr, y_train=ytr, X_val=Xv, y_val=yv, X_test=Xt, y_test=yt)


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def _worker_step(spec: dict) -> dict:
    """One configuration's training step, in this (fresh) process: compile time, then the median
    over ``repeats`` calls (after a warm-up call) of a chunk of ``steps`` steps — forward, backward,
    Adam, dropout on — as CPU seconds of this process (core-seconds) and wall seconds; peak RSS.
    ``seed_steps_per_core_s`` takes the fastest call (the one least disturbed by other load on the
    machine: CPU time excludes the time others run, not the cache they evict), ``..._median`` the median.

    Uses only what every version of ``lib.train`` has (``MultiSeedTrainer``, ``_compiled_chunk``),
    so the same code measures the commit before the changes (``--baseline``)."""
    rss0 = _rss_mb()
    import lib.model
    from lib.train import MultiSeedTrainer, TrainConfig

    if spec.get("scan_loops") is not None:
        lib.model.LoopedClassifier.scan_loops = bool(spec["scan_loops"])
    T, C, steps, S = spec["T"], spec["C"], spec["steps"], spec["seeds"]
    kw = dict(ssm=spec["ssm"], blocks=spec["blocks"], loops=spec["loops"], hidden=spec["hidden"],
              state=spec["state"], in_features=C, num_classes=4, mode=spec["mode"] or default_mode(spec["ssm"]))
    tr = MultiSeedTrainer(kw, TrainConfig(lr=1e-3, batch_size=32, max_steps=steps, eval_every=steps),
                          list(range(S)), seed_axis=spec.get("seed_axis", "auto"))
    splits = [_synthetic_split(64, T, C, 4, s) for s in tr.padded_seeds]
    X = tr._shard(jnp.asarray(np.stack([s.X_train for s in splits])))
    Y = tr._shard(jnp.asarray(np.stack([s.y_train for s in splits]).astype(np.int32)))
    rng = np.random.default_rng(0)
    idx = tr._shard(jnp.asarray(np.stack([rng.integers(0, 64, (steps, 32)) for _ in splits]).astype(np.int32)))
    rss_built = _rss_mb()
    tr.compile_s = 0.0
    c0 = time.process_time()
    fn = tr._compiled_chunk((tr.state, tr.opt_state, X, Y, idx))
    compile_cpu_s = time.process_time() - c0
    cpu, wall = [], []
    for _ in range(spec["repeats"] + 1):
        c0, t0 = time.process_time(), time.perf_counter()
        tr.state, tr.opt_state, loss = fn(tr.state, tr.opt_state, X, Y, idx)
        jax.block_until_ready(loss)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    cpu_s, wall_s = statistics.median(cpu[1:]), statistics.median(wall[1:])
    return dict(mode=kw["mode"], seed_axis=tr.seed_axis, compile_s=tr.compile_s, compile_cpu_s=compile_cpu_s,
                seed_steps_per_core_s=S * steps / min(cpu[1:]), seed_steps_per_core_s_median=S * steps / cpu_s,
                seed_steps_per_s=S * steps / wall_s,
                cpu_ms_per_seed_step=1e3 * min(cpu[1:]) / (S * steps), threads_busy=cpu_s / wall_s,
                rss_start_mb=rss0, rss_built_mb=rss_built, peak_rss_mb=_rss_mb(),
                loss=float(np.asarray(loss).ravel()[0]))


def _worker_fit(spec: dict) -> dict:
    """A short ``fit`` of ``seeds`` seeds on synthetic data with random labels, so seeds stop at
    different evaluations: every XLA compilation it triggers (train chunks and evaluation), counted
    and timed with ``jax.monitoring``, and the whole fit's CPU and wall seconds."""
    from lib.train import TrainConfig, train_seeds

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, secs, **kw: compiles.append(secs) if name.endswith("backend_compile_duration") else None)
    T, C, S = spec["T"], spec["C"], spec["seeds"]
    kw = dict(ssm=spec["ssm"], blocks=spec["blocks"], loops=spec["loops"], hidden=spec["hidden"],
              state=spec["state"], in_features=C, num_classes=4, mode=spec["mode"] or default_mode(spec["ssm"]))
    cfg = TrainConfig(lr=1e-3, batch_size=32, max_steps=spec["max_steps"], eval_every=spec["eval_every"],
                      patience=spec["patience"])
    c0, t0 = time.process_time(), time.perf_counter()
    results, tr = train_seeds(kw, [_synthetic_split(96, T, C, 4, 100 + s) for s in range(S)], cfg, list(range(S)),
                              progress=False, keep_state=False)
    return dict(fit_cpu_s=time.process_time() - c0, fit_wall_s=time.perf_counter() - t0,
                xla_compiles=len(compiles), xla_compile_s=float(sum(compiles)), chunk_compile_s=tr.compile_s,
                seed_steps=int(sum(r.steps for r in results)), stopped_at=[r.steps for r in results],
                peak_rss_mb=_rss_mb())


def _run_worker(spec: dict, root: Path, core: int | None, env_extra: dict | None = None, timeout: int = 1800) -> dict:
    """Run ``_worker_<kind>(spec)`` of this file in a fresh Python process on the code in ``root``
    (pinned to ``core`` with one-core XLA flags, or on every core with XLA's defaults if None)."""
    import os
    import subprocess

    env = dict(os.environ, LOOPED_SSM_QUIET="1", PYTHONPATH=str(root))
    env["LOOPED_SSM_JAX_CACHE"] = ""  # cold compiles unless a measurement asks for the cache
    env.pop("XLA_FLAGS", None)
    if core is not None:
        env["XLA_FLAGS"] = ONE_CORE_XLA_FLAGS
    env.update(env_extra or {})
    code = ("import json, runpy, sys; sys.path.insert(0, '.'); "
            f"g = runpy.run_path({str(Path(__file__).resolve())!r}, run_name='lib_bench_worker'); "
            "spec = json.loads(sys.argv[1]); "
            "print('RESULT' + json.dumps(g['_worker_' + spec['kind']](spec)))")
    cmd = ([] if core is None else ["taskset", "-c", str(core)]) + [sys.executable, "-c", code, json.dumps(spec)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or "RESULT" not in proc.stdout:
        return dict(error=(proc.stderr or proc.stdout)[-2000:], process_s=time.perf_counter() - t0)
    return dict(json.loads(proc.stdout.split("RESULT", 1)[1]), process_s=time.perf_counter() - t0)


class _Baseline:
    """``git worktree add --detach`` of ``ref`` in a temporary folder, removed on exit."""

    def __init__(self, ref: str):
        self.ref, self.path = ref, None

    def __enter__(self):
        import subprocess
        import tempfile

        repo = Path(__file__).resolve().parents[1]
        self.path = Path(tempfile.mkdtemp(prefix="bench-base-")) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(self.path), self.ref], cwd=repo, check=True,
                       capture_output=True)
        self.sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=self.path, capture_output=True, text=True,
                                  check=True).stdout.strip()
        return self

    def __exit__(self, *exc):
        import shutil
        import subprocess

        repo = Path(__file__).resolve().parents[1]
        subprocess.run(["git", "worktree", "remove", "--force", str(self.path)], cwd=repo, capture_output=True)
        shutil.rmtree(self.path.parent, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=repo, capture_output=True)


def _run_all(tasks: list[dict], cores: list[int]) -> list[dict]:
    """Run ``tasks`` (each ``{"spec", "root", "env", "pinned", "serial"}``) on the given cores, one
    pinned process per core at a time; a task with ``pinned`` False runs alone on every core."""
    import concurrent.futures as cf
    import queue

    free = queue.Queue()
    for c in cores:
        free.put(c)
    out = [None] * len(tasks)

    def one(i):
        t = tasks[i]
        core = free.get()
        try:
            res = _run_worker(t["spec"], t["root"], core if t.get("pinned", True) else None, t.get("env"))
        finally:
            free.put(core)
        out[i] = {**t["spec"], "mode_asked": t["spec"]["mode"], **res, "version": t["version"]}
        s = out[i]
        what = (f"ERROR {s['error'][-300:]}" if "error" in s else
                f"fit: {s['fit_cpu_s']:6.1f} CPU s, {s['xla_compiles']} compilations, {s['xla_compile_s']:.1f} s"
                if s["kind"] == "fit" else
                f"{s['seed_steps_per_core_s']:8.2f} seed-steps/core-s  compile {s['compile_s']:6.1f} s"
                f"  peak {s['peak_rss_mb']:6.0f} MB")
        msg = (f"{s['version']:6s} {s['table']:10s} {s.get('label', ''):30s} {s['ssm']:9s} {s['blocks']}x{s['loops']} "
               f"T={s['T']:4d} C={s['C']:4d} {what}")
        print(msg, flush=True)

    serial = [i for i, t in enumerate(tasks) if not t.get("pinned", True) or t.get("serial")]
    parallel = [i for i in range(len(tasks)) if i not in serial]
    with cf.ThreadPoolExecutor(len(cores)) as ex:
        list(ex.map(one, parallel))
    for i in serial:  # alone on the machine (a process on every core, or a sequence that must not overlap)
        one(i)
    return out


#: the row groups ``bench_train`` measures (``table`` of a row); "grid" is the main table
TABLES = ("grid", "mode", "loops", "loops_scan", "scan_step", "threads", "seed_axis", "cache", "fit")


def bench_train(*, steps: int = 5, repeats: int = 3, hidden: int = 64, state: int = 64, ssms=TRAIN_SSMS,
                shapes=None, raw: bool = False, baseline: str | None = "HEAD", levers: bool = True,
                cores=(0, 1), tables=None) -> dict:
    """The training-step table of issue 18 (see the module docstring), before and after in one run;
    ``tables`` (a subset of ``TABLES``) measures only those row groups."""
    import os

    shapes = dict(GRID_SHAPES if shapes is None else shapes)
    here = Path(__file__).resolve().parents[1]
    base = dict(hidden=hidden, state=state, steps=steps, repeats=repeats, seeds=1, mode=None, kind="step")
    with (_Baseline(baseline) if baseline else _NoBaseline()) as bl:
        roots = {"after": here} | ({"before": bl.path} if baseline else {})
        tasks = []

        def add(version, env=None, pinned=True, serial=False, **spec):
            if tables and spec.get("table") not in tables:
                return
            tasks.append(dict(spec=dict(base, **spec), root=roots[version], version=version, env=env,
                              pinned=pinned, serial=serial))

        grid = [(name, T, C, ssm, b, l) for name, (T, C) in shapes.items() for ssm in ssms for b, l in MODELS]
        if raw:
            grid += [(name, T, C, "s5", b, l) for name, (T, C) in RAW_SHAPE.items() for b, l in MODELS]
        for name, T, C, ssm, b, l in grid:
            for version in roots:
                add(version, label=name, ssm=ssm, blocks=b, loops=l, T=T, C=C, table="grid")
        if levers:
            T, C = shapes.get("SelfRegulationSCP1 concat/16", next(iter(shapes.values())))
            lever = dict(label="SelfRegulationSCP1 concat/16", T=T, C=C)
            for ssm in ssms:  # both scan modes on each code
                for version in roots:
                    for mode in ("parallel", "sequential"):
                        add(version, ssm=ssm, blocks=6, loops=1, mode=mode, table="mode", **lever)
                for L in (1, 2, 4, 8):  # compile time against the number of loops: unrolled, and one lax.scan
                    for version in roots:
                        add(version, ssm=ssm, blocks=1, loops=L, steps=2, repeats=1, table="loops", **lever)
                    add("after", ssm=ssm, blocks=1, loops=L, steps=2, repeats=1, scan_loops=True, table="loops_scan",
                        **lever)
                # the time per step of a 1×6 model with its loops as one lax.scan (vs unrolled: the grid table)
                add("after", ssm=ssm, blocks=1, loops=6, scan_loops=True, table="scan_step", **lever)
            # XLA's threads: one process on both cores with XLA's defaults (alone, after the rest)
            for ssm in ("s5", "lrcssm"):
                add("after", ssm=ssm, blocks=6, loops=1, table="threads", pinned=False, **lever)
            # five seeds in one program, vmapped vs the trainer's choice on one CPU (a lax.map, run per seed)
            for axis in ("vmap", "auto"):
                add("after", ssm="s5", blocks=1, loops=6, seeds=5, seed_axis=axis, table="seed_axis", **lever)
            # the persistent compilation cache: the same configuration compiled cold, then from the cache
            import tempfile

            cache = tempfile.mkdtemp(prefix="bench-jax-cache-")
            for attempt in ("cold", "warm"):
                for b, l in MODELS:
                    add("after", env={"LOOPED_SSM_JAX_CACHE": cache}, serial=True, ssm="s5", blocks=b, loops=l,
                        cache=attempt, table="cache", **lever)
            # a whole short fit: every compilation it triggers (seeds stopping, evaluation)
            T, C = shapes.get("NATOPS", (T, C))
            for version in roots:
                add(version, kind="fit", ssm="s5", blocks=6, loops=1, T=T, C=C, seeds=5, max_steps=120,
                    eval_every=10, patience=1, label="NATOPS", table="fit")
        rows = _run_all(tasks, list(cores))
        if levers:
            import shutil

            shutil.rmtree(cache, ignore_errors=True)
        base_sha = getattr(bl, "sha", None)
    summary = _summarise(rows)
    for line in summary.get("lines", []):
        print(line)
    return {**_meta("train", steps=steps, repeats=repeats, hidden=hidden, state=state, batch=32, dropout="on",
                    baseline_commit=base_sha, cores=list(cores), one_core_xla_flags=ONE_CORE_XLA_FLAGS,
                    load_note=("wall-clock numbers share the cores with whatever else runs; the per-core "
                               "throughput is CPU time of the measuring process (core-seconds)"),
                    loadavg=list(os.getloadavg())),
            "summary": {k: v for k, v in summary.items() if k != "lines"}, "rows": rows}


class _NoBaseline:
    path = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return float(np.exp(np.mean(np.log(xs)))) if xs else None


def _summarise(rows: list[dict]) -> dict:
    """Ratios after / before, per configuration and as geometric means (per SSM and over all)."""
    ok = [r for r in rows if "error" not in r]
    key = lambda r: (r["table"], r["label"], r["ssm"], r["blocks"], r["loops"], r.get("mode_asked"))  # noqa: E731
    by = {}
    for r in ok:
        by.setdefault(key(r), {})[r["version"]] = r
    speed, per_ssm = [], {}
    for k, v in by.items():
        if k[0] == "grid" and "before" in v and "after" in v:
            ratio = v["after"]["seed_steps_per_core_s"] / v["before"]["seed_steps_per_core_s"]
            speed.append(ratio)
            per_ssm.setdefault(k[2], []).append(ratio)
    out = {"geomean_speedup": _geomean(speed), "configurations": len(speed),
           "geomean_speedup_per_ssm": {s: _geomean(v) for s, v in per_ssm.items()},
           "errors": len(rows) - len(ok)}
    out["lines"] = [f"geometric mean of after/before seed-steps per core-second over {len(speed)} configurations: "
                    f"{out['geomean_speedup']}"] + [f"  {s}: {g:.2f}x" for s, g in out["geomean_speedup_per_ssm"].items()]
    return out


def merge_runs(old: dict, new: dict) -> dict:
    """``old``'s rows with those of the tables ``new`` measured replaced by ``new``'s (each row keeps
    the run it came from, ``run``: 0 the first, 1, 2, ... the supplements, listed in ``supplements``)."""
    tables = {r["table"] for r in new["rows"]}
    n = len(old.get("supplements", [])) + 1
    keep = [dict(r, run=r.get("run", 0)) for r in old["rows"] if r["table"] not in tables]
    out = dict(old, rows=keep + [dict(r, run=n) for r in new["rows"]])
    out["supplements"] = old.get("supplements", []) + [
        {k: new[k] for k in ("command", "created", "commit", "dirty", "baseline_commit", "loadavg")}
        | {"tables": sorted(tables), "run": n}]
    out["summary"] = {k: v for k, v in _summarise(out["rows"]).items() if k != "lines"}
    return out


def write_json(obj: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lib.bench", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("scan")
    s.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    s.add_argument("--batch", type=int, default=8)
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--ssms", nargs="+", default=list(SSM_NAMES), choices=SSM_NAMES)
    s.add_argument("--out", default="data/bench/scan.json")
    t = sub.add_parser("train")
    t.add_argument("--steps", type=int, default=5, help="train steps per timed call")
    t.add_argument("--repeats", type=int, default=3, help="timed calls (median) after a warm-up call")
    t.add_argument("--ssms", nargs="+", default=list(TRAIN_SSMS), choices=SSM_NAMES)
    t.add_argument("--shapes", nargs="+", default=list(GRID_SHAPES), choices=list(GRID_SHAPES),
                   help="which of the budget grid's inputs (T' x C')")
    t.add_argument("--raw", action="store_true", help="also SelfRegulationSCP1 raw (896 x 6), S5 only")
    t.add_argument("--baseline", default="HEAD",
                   help="git revision measured side by side as 'before' (a temporary worktree); '' for none")
    t.add_argument("--no-levers", action="store_true", help="only the table, not the lever measurements")
    t.add_argument("--cores", type=int, nargs="+", default=[0, 1], help="one pinned worker per core")
    t.add_argument("--tables", nargs="+", choices=TABLES, help="measure only these row groups")
    t.add_argument("--merge", metavar="FILE",
                   help="put the rows measured into FILE (a train.json), replacing its rows of the same tables")
    t.add_argument("--out", default="data/bench/train.json")
    a = p.parse_args(argv)
    sizes = ("lengths", "batch", "repeats") if a.what == "scan" else ("steps", "repeats")
    for name in sizes:
        v = getattr(a, name)
        if min(v if isinstance(v, list) else [v]) < 1:
            print(f"error: --{name} must be >= 1, got {v}", file=sys.stderr)
            return 2
    if a.what == "scan":
        res = bench_scan(tuple(a.lengths), a.batch, repeats=a.repeats, ssms=a.ssms)
    else:
        res = bench_train(steps=a.steps, repeats=a.repeats, ssms=tuple(a.ssms),
                          shapes={k: GRID_SHAPES[k] for k in a.shapes}, raw=a.raw, baseline=a.baseline or None,
                          levers=not a.no_levers, cores=tuple(a.cores), tables=a.tables)
        if a.merge:
            res = merge_runs(json.loads(Path(a.merge).read_text()), res)
    print("wrote", write_json(res, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
