"""Benchmarks that write numbers (not timed tests).

    python -m lib.bench scan  [--lengths 256 1024 4096] [--batch 8] [--out data/bench/scan.json]
    python -m lib.bench train [--length 1000] [--steps 5] [--out data/bench/train.json]

``scan``: forward and forward+backward time of every SSM layer (H = P = 64) against sequence
length, parallel (associative scan; DEER for LrcSSM) vs sequential (``lax.scan``).
``train``: train steps per second for each SSM at H = P = 64, depth 6 (blocks 1 and blocks 6),
batch 32 on a 1000-step sequence; and the throughput of 5 seeds in one program (vmapped, sharded)
vs 5 single-seed programs run one after another.

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

from lib.ssm import SSM_NAMES, make_ssm
from lib.train import default_mode


def time_call(fn, *args, repeats: int = 3) -> dict:
    """Call ``fn(*args)`` once (compilation) and then ``repeats`` times; wall times in seconds.

    Returns ``{"first": ..., "median": ..., "best": ...}``; outputs are waited for with
    ``jax.block_until_ready`` so asynchronous dispatch does not hide the work.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return {"first": first, "median": float(statistics.median(times)), "best": float(min(times))}


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
                f, b = time_call(fwd, params, u, repeats=repeats), time_call(bwd, params, u, repeats=repeats)
                rows.append(dict(ssm=name, T=T, mode=mode, batch=batch, hidden=hidden, state=state,
                                 forward_s=f["median"], forward_backward_s=b["median"],
                                 first_call_forward_s=f["first"], first_call_forward_backward_s=b["first"]))
                print(f"{name:12s} T={T:5d} {mode:10s} fwd {f['median'] * 1e3:9.2f} ms  "
                      f"fwd+bwd {b['median'] * 1e3:9.2f} ms", flush=True)
    return {**_meta("scan", batch=batch, hidden=hidden, state=state, repeats=repeats), "rows": rows}


def _synthetic_split(n: int, T: int, C: int, classes: int, seed: int):
    from types import SimpleNamespace

    r = np.random.default_rng(seed)
    make = lambda k: (r.normal(size=(k, T, C)).astype(np.float32), r.integers(0, classes, k))  # noqa: E731
    (Xtr, ytr), (Xv, yv), (Xt, yt) = make(n), make(32), make(32)
    return SimpleNamespace(X_train=Xtr, y_train=ytr, X_val=Xv, y_val=yv, X_test=Xt, y_test=yt)


def _steps_per_second(model_kwargs, seeds, T, C, steps, repeats, seed_axis="auto"):
    """Train steps per second (per program call) of a MultiSeedTrainer over ``seeds``."""
    from lib.train import MultiSeedTrainer, TrainConfig

    cfg = TrainConfig(lr=1e-3, batch_size=32, max_steps=steps, eval_every=steps)
    tr = MultiSeedTrainer(model_kwargs, cfg, seeds, seed_axis=seed_axis)
    splits = [_synthetic_split(64, T, C, 4, s) for s in tr.padded_seeds]
    X = tr._shard(jnp.asarray(np.stack([s.X_train for s in splits])))
    Y = tr._shard(jnp.asarray(np.stack([s.y_train for s in splits]).astype(np.int32)))
    idx = tr._shard(jnp.asarray(np.stack([np.arange(steps * 32).reshape(steps, 32) % 64 for _ in splits],
                                         ).astype(np.int32)))
    tr.compile_s = 0.0
    fn = tr._compiled_chunk((tr.state, tr.opt_state, X, Y, idx))
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        tr.state, tr.opt_state, loss = fn(tr.state, tr.opt_state, X, Y, idx)
        jax.block_until_ready(loss)
        times.append(time.perf_counter() - t0)
    return steps / statistics.median(times[1:]), tr.compile_s


def bench_train(length: int = 1000, steps: int = 5, repeats: int = 2, hidden: int = 64, state: int = 64,
                in_features: int = 6, seeds: int = 5, ssms=SSM_NAMES) -> dict:
    rows = []
    base = dict(hidden=hidden, state=state, in_features=in_features, num_classes=4)
    for name in ssms:
        for blocks, loops in ((1, 6), (6, 1)):
            kw = dict(ssm=name, blocks=blocks, loops=loops, mode=default_mode(name), **base)
            sps, comp = _steps_per_second(kw, [0], length, in_features, steps, repeats)
            rows.append(dict(kind="steps_per_second", ssm=name, mode=kw["mode"], blocks=blocks, loops=loops, T=length, batch=32,
                             seeds=1, steps_per_s=sps, compile_s=comp))
            print(f"{name:12s} blocks={blocks} loops={loops}: {sps:8.3f} steps/s (compile {comp:.1f} s)", flush=True)
    # 5 seeds in one program vs 5 single-seed programs one after another (s5, looped)
    kw = dict(ssm="s5", blocks=1, loops=6, **base)
    multi = {axis: _steps_per_second(kw, list(range(seeds)), length, in_features, steps, repeats, axis)
             for axis in ("vmap", "map")}
    from lib.train import MultiSeedTrainer, TrainConfig

    auto = MultiSeedTrainer(kw, TrainConfig(), [0, 1]).seed_axis
    sps_multi, comp_multi = multi[auto]
    seq_times, comp_seq = [], 0.0
    for s in range(seeds):
        sps_one, comp = _steps_per_second(kw, [s], length, in_features, steps, repeats)
        seq_times.append(steps / sps_one)
        comp_seq += comp
    multi_thr = sps_multi * seeds  # seed-steps per second
    seq_thr = seeds * steps / sum(seq_times)
    rows.append(dict(kind="multi_seed", ssm="s5", blocks=1, loops=6, T=length, batch=32, seeds=seeds,
                     seed_axis=auto, vmap_seed_steps_per_s=multi["vmap"][0] * seeds,
                     map_seed_steps_per_s=multi["map"][0] * seeds,
                     one_program_seed_steps_per_s=multi_thr, sequential_seed_steps_per_s=seq_thr,
                     speedup=multi_thr / seq_thr, compile_s_one_program=comp_multi, compile_s_sequential=comp_seq))
    print(f"{seeds} seeds in one program ({auto}; vmap {multi['vmap'][0] * seeds:.3f}, map "
          f"{multi['map'][0] * seeds:.3f}): {multi_thr:.3f} seed-steps/s vs sequential {seq_thr:.3f} "
          f"(x{multi_thr / seq_thr:.2f})", flush=True)
    return {**_meta("train", length=length, steps=steps, repeats=repeats, hidden=hidden, state=state), "rows": rows}


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
    t.add_argument("--length", type=int, default=1000)
    t.add_argument("--steps", type=int, default=5)
    t.add_argument("--repeats", type=int, default=2)
    t.add_argument("--seeds", type=int, default=5)
    t.add_argument("--ssms", nargs="+", default=list(SSM_NAMES), choices=SSM_NAMES)
    t.add_argument("--out", default="data/bench/train.json")
    a = p.parse_args(argv)
    sizes = ("lengths", "batch", "repeats") if a.what == "scan" else ("length", "steps", "repeats", "seeds")
    for name in sizes:
        v = getattr(a, name)
        if min(v if isinstance(v, list) else [v]) < 1:
            print(f"error: --{name} must be >= 1, got {v}", file=sys.stderr)
            return 2
    if a.what == "scan":
        res = bench_scan(tuple(a.lengths), a.batch, repeats=a.repeats, ssms=a.ssms)
    else:
        res = bench_train(a.length, a.steps, a.repeats, seeds=a.seeds, ssms=a.ssms)
    print("wrote", write_json(res, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
