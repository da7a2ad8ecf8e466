"""Training: all seeds of one configuration in ONE jitted program, early stopping per seed.

The protocol is the Log-NCDE / LinOSS one (``reproduction-protocol.md`` §3.1): Adam at a constant
learning rate, cross-entropy, batch size 32 with a fresh permutation every epoch and the last
partial batch dropped, validation every ``eval_every`` steps, and the reported test accuracy is the
one at the last validation improvement. Ties count as an improvement for the reported test
accuracy *and* as a step without improvement for patience, exactly as in the peers' code; training
stops after more than ``patience`` evaluations without a strict improvement.

How the seeds run together. Each seed has its own split (the paper protocol draws the split from
the seed) and its own initialisation. Their model states, optimiser states and data are stacked on
a leading seed axis, the train step is ``jax.vmap``-ped over it, and that axis is sharded over
every available device with ``jax.sharding`` (one GPU, eight GPUs, or CPU devices made with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``); the seed axis is padded to a multiple of
the device count with copies of the last seed, whose results are dropped. A chunk of
``eval_every`` steps is one compiled ``lax.scan``; evaluation and early-stopping bookkeeping happen
per seed on the host between chunks. Under ``vmap`` a seed that has stopped keeps stepping with the
others (its record is frozen); under ``lax.map`` (below) the stopped seeds are dropped from the
program, so they cost nothing more. Either way every seed's
result equals the one it gets when trained alone.

On a single CPU device the seed axis is a ``lax.map`` rather than a ``vmap``: XLA's CPU backend
runs the vmapped (batched) matrix products of five small models markedly slower than five plain
ones (``lib.bench train`` measured 0.61× the sequential throughput, and 0.75× again after the
changes of issue 18), while on accelerators and over several devices the vmapped program is the
fast one. The ``lax.map`` is run as its loop on the host: one program compiled for one seed, called
for each seed in turn, so the program does not change (nor recompile) as seeds stop; evaluation is
likewise one program over blocks of ``eval_batch_size`` cases, shared by the validation, test and
training parts. ``seed_axis="vmap"|"map"`` overrides the choice; both give the same numbers.

Checkpoints. ``fit(..., checkpoint=PATH)`` writes, after every evaluation, everything the loop needs to
go on (model, optimiser and best states, the batch generators' states, the per-seed bookkeeping) to
one ``.npz`` (atomically, flushed to disk before the rename; the format is ``lib.store``'s); a later ``fit`` of the same configuration
on the same data resumes from it and ends with the same numbers as an uninterrupted run. A checkpoint
that cannot be read (empty, truncated, garbage) is renamed to ``NAME.npz.corrupt``, with a notice,
and the configuration starts over; a ``NAME.npz.tmp`` left by a failed write is removed. ``deadline=`` (a ``time.time()`` value) makes
``fit`` checkpoint and raise ``Interrupted`` rather than start a chunk that would end after it, so a
configuration longer than one sitting (a time-limited batch job, a preempted node, a laptop closed) is done in pieces.

Determinism: batch order comes from ``numpy.random.default_rng(seed)``, initialisation and dropout
from ``nnx.Rngs(seed)``; the same configuration and seed give bit-identical results on CPU.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lib.model import build_model, count_params
from lib.ssm import SSMS, ssm_spec
from lib.store import _fingerprint, _from_host, _set_aside, load_checkpoint, save_checkpoint  # the checkpoint format
from lib.store import write_npz  # noqa: F401  (re-exported; one home: lib.store)

#: one learning rate per SSM, used for looped and standard models alike (the paper's regime);
#: lru/s5 follow the Log-NCDE choices for SCP1/Motor (1e-3), LinOSS and LrcSSM their papers' 1e-4.
#: Derived from the registry ``lib.ssm.SSMS`` (``train_config`` reads the registry itself).
DEFAULT_LR = {n: s.lr for n, s in SSMS.items()}
#: LrcSSM's repository clips the global gradient norm at 1; the others do not clip (registry-derived).
DEFAULT_CLIP = {n: s.clip for n, s in SSMS.items() if s.clip is not None}

#: environment variable naming JAX's persistent compilation cache folder ("" or "off": no cache)
CACHE_ENV = "LOOPED_SSM_JAX_CACHE"


def compilation_cache_dir() -> Path | None:
    """The folder of JAX's persistent compilation cache: ``$LOOPED_SSM_JAX_CACHE`` if set ("" or
    "off" turns the cache off), else ``$XDG_CACHE_HOME/looped-ssm/jax`` (``~/.cache/looped-ssm/jax``):
    outside the repository, so git never sees it."""
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        return None if env.strip().lower() in ("", "0", "off", "none") else Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "looped-ssm" / "jax"


def enable_compilation_cache(path: str | Path | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache (``compilation_cache_dir()`` unless ``path``), so a
    configuration compiled once — by an earlier run, a resumed one, another grid worker — loads its
    program from disk instead of compiling it again (``lib.bench train`` measures the saving). A cache
    folder already set through JAX's own configuration is left as it is. Returns the folder in use."""
    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current)
    folder = Path(path) if path is not None else compilation_cache_dir()
    if folder is None:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)  # only programs worth keeping
    return folder


enable_compilation_cache()


def default_mode(ssm: str, backend: str | None = None) -> str:
    """The scan mode a run uses, chosen per backend from measurements; both modes compute the same
    function (``tests/test_ssm_linear.py``, ``tests/test_lrcssm.py``).

    On a CPU every SSM runs its sequential scan (``lax.scan``): the associative scan does O(log T)
    passes of extra work over the whole sequence that a CPU core has no parallel hardware to hide.
    Measured with ``lib.bench`` (one core, H = P = 64, batch 32): one layer's forward + backward is
    1.9–5.6× faster sequential at every length the grid uses (T′ = 36, 56, 100, 896;
    ``data/bench/scan.json``), a whole training step 1.5–1.8× (LRU, S5, LinOSS-IM;
    ``data/bench/train.json``, table ``mode``); LrcSSM's Newton (DEER) solve is 4–7× slower per
    layer than its sequential scan, 2.7× per step. On accelerators the parallel scans are the ones
    that fill the device, so they stay the default there."""
    return ssm_spec(ssm).mode(backend or jax.default_backend())  # the registry's ``modes``


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; ``lib.profiles.PROFILES`` holds the ones the book uses."""

    lr: float = 1e-3
    batch_size: int = 32
    max_steps: int = 30_000
    eval_every: int = 1000
    patience: int = 10
    grad_clip: float | None = None
    eval_batch_size: int = 256

    def __post_init__(self):
        if not (self.lr > 0 and np.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        for name in ("batch_size", "max_steps", "eval_every", "eval_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if isinstance(self.patience, bool) or not isinstance(self.patience, (int, np.integer)) or self.patience < 0:
            raise ValueError(f"patience must be an integer >= 0, got {self.patience!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip!r}")


from lib.profiles import PROFILES, max_steps as _profile_max_steps  # noqa: E402  (one home: lib.profiles)


def train_config(ssm: str, profile: str = "full", **overrides) -> TrainConfig:
    """The ``TrainConfig`` of a profile (``lib.profiles``) for one SSM (its learning rate, clipping
    and step cap), with overrides."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}, got {profile!r}")
    p = {k: v for k, v in PROFILES[profile].items() if k in {f.name for f in dataclasses.fields(TrainConfig)}}
    spec = ssm_spec(ssm)
    p.update(lr=spec.lr, grad_clip=spec.clip, max_steps=_profile_max_steps(profile, ssm))
    p.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**p)


def quiet() -> bool:
    """True under papermill, CI or when asked (``LOOPED_SSM_QUIET=1``): no progress bars
    (``LOOPED_SSM_LOG=1`` then prints one line per evaluation to stderr instead)."""
    return bool(os.environ.get("LOOPED_SSM_QUIET") or os.environ.get("CI") or os.environ.get("BOOK_BUILD")
                or "papermill" in sys.modules or not sys.stderr.isatty())


def _optimizer(cfg: TrainConfig):
    tx = optax.adam(cfg.lr)
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), tx) if cfg.grad_clip else tx


def _batch_indices(rng: np.random.Generator, n: int, batch: int, steps: int, carry: list) -> np.ndarray:
    """``steps`` batches of ``batch`` indices: epochs are fresh permutations, last partial batch dropped."""
    out = np.empty((steps, batch), np.int32)
    for s in range(steps):
        if len(carry) < batch:
            carry[:] = list(rng.permutation(n)[: (n // batch) * batch])
        out[s] = carry[:batch]
        del carry[:batch]
    return out


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _unstack(tree, n: int) -> list:
    """The first ``n`` seeds of a stacked (possibly seed-sharded) tree, one unsharded tree each.

    The tree comes to the host once and each seed's slice goes back to the default device: indexing a
    sharded array instead would be a cross-device gather (an all-reduce) per leaf and seed, and on CPU
    devices made with ``--xla_force_host_platform_device_count`` such eager collectives can wait on each
    other's threads past XLA's rendezvous timeout when the machine is busy."""
    host = jax.device_get(tree)
    return [jax.tree.map(lambda x: jnp.asarray(x[i]), host) for i in range(n)]


class Interrupted(Exception):
    """``fit`` stopped at its deadline; everything done so far is in ``path`` (run again to resume)."""

    def __init__(self, path, step: int, max_steps: int):
        super().__init__(f"stopped at step {step} of {max_steps} before the deadline; progress saved in {path}")
        self.path, self.step, self.max_steps = Path(path), step, max_steps


@dataclasses.dataclass
class _Progress:
    """The loop's bookkeeping on the host, per seed, and its checkpoint form."""

    live: np.ndarray  # the padded-seed indices whose states are in the program
    rngs: list  # one batch-order generator per padded seed
    carries: list  # the rest of each padded seed's current epoch
    best_val: np.ndarray  # per seed, from here on
    test_at_best: np.ndarray
    train_at_best: np.ndarray
    best_step: np.ndarray
    bad_evals: np.ndarray
    stopped_at: np.ndarray  # -1 while training
    history: list
    step: int = 0
    seed_steps: int = 0

    FLOATS = ("best_val", "test_at_best", "train_at_best")
    INTS = ("best_step", "bad_evals", "stopped_at")

    @classmethod
    def start(cls, padded_seeds, S: int) -> "_Progress":
        return cls(live=np.arange(len(padded_seeds)), rngs=[np.random.default_rng(s) for s in padded_seeds],
                   carries=[[] for _ in padded_seeds], best_val=np.full(S, -1.0), test_at_best=np.zeros(S),
                   train_at_best=np.zeros(S), best_step=np.zeros(S, int), bad_evals=np.zeros(S, int),
                   stopped_at=np.full(S, -1), history=[[] for _ in range(S)])

    def going_on(self, max_steps: int) -> bool:
        return self.step < max_steps and bool((self.stopped_at < 0).any())

    def evaluated(self, s: int, *, loss, train, val, test, patience: int) -> bool:
        """Book seed ``s``'s evaluation at ``self.step``; True when its reported state changes."""
        self.history[s].append(dict(step=self.step, loss=float(loss), train_acc=float(train),
                                    val_acc=float(val), test_acc=float(test)))
        improved = bool(val >= self.best_val[s])  # ties refresh the reported test accuracy (peers)
        if improved:
            self.bad_evals[s] = 0 if val > self.best_val[s] else self.bad_evals[s] + 1
            self.best_val[s], self.test_at_best[s], self.train_at_best[s] = val, test, train
            self.best_step[s] = self.step
        else:
            self.bad_evals[s] += 1
        if self.bad_evals[s] > patience:
            self.stopped_at[s] = self.step
        return improved

    def to_meta(self) -> dict:
        return dict(step=self.step, seed_steps=self.seed_steps, live=self.live.tolist(),
                    rng=[r.bit_generator.state for r in self.rngs], carries=[list(map(int, c)) for c in self.carries],
                    history=self.history, **{k: getattr(self, k).tolist() for k in self.FLOATS + self.INTS})

    def restore(self, meta: dict) -> None:
        """Go on from ``to_meta``'s dict (the generators keep their objects, with the saved states)."""
        for r, st in zip(self.rngs, meta["rng"]):
            r.bit_generator.state = st
        self.live, self.carries = np.asarray(meta["live"], int), meta["carries"]
        self.step, self.seed_steps, self.history = int(meta["step"]), int(meta["seed_steps"]), meta["history"]
        for k in self.FLOATS:
            setattr(self, k, np.asarray(meta[k], float))
        for k in self.INTS:
            setattr(self, k, np.asarray(meta[k], int))


@jax.jit
def _take_seed(tree, s):
    """Seed ``s`` of every stacked leaf (``s`` traced: one compiled program for every seed)."""
    return jax.tree.map(lambda a: a[s], tree)


@jax.jit
def _stack_trees(trees):
    """The leaves of a list of equal trees stacked on a new leading axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


@functools.partial(jax.jit, static_argnums=(3,))
def _block(X, s, i, size):
    """``X[s, i:i + size]`` (``X[:, i:i + size]`` for ``s`` None), ``i`` traced."""
    if s is None:
        return jax.lax.dynamic_slice_in_dim(X, i, size, axis=1)
    return jax.lax.dynamic_slice_in_dim(X[s], i, size, axis=0)


@dataclasses.dataclass
class SeedResult:
    """One seed's outcome; ``state`` is the model state at its best validation accuracy."""

    seed: int
    val_acc: float
    test_acc: float
    train_acc: float
    best_step: int
    steps: int
    history: list
    state: object = None


class MultiSeedTrainer:
    """Trains one model configuration over several seeds in one vmapped, sharded program."""

    def __init__(self, model_kwargs: dict, cfg: TrainConfig, seeds, *, devices=None, seed_axis: str = "auto"):
        self.model_kwargs = dict(model_kwargs)
        self.cfg = cfg
        self.seeds = [int(s) for s in seeds]
        if not self.seeds:
            raise ValueError("seeds must not be empty")
        self.devices = list(devices) if devices is not None else jax.devices()
        if seed_axis not in ("auto", "vmap", "map"):
            raise ValueError(f"seed_axis must be 'auto', 'vmap' or 'map', got {seed_axis!r}")
        if seed_axis == "auto":  # see the module docstring
            seed_axis = "map" if len(self.devices) == 1 and self.devices[0].platform == "cpu" else "vmap"
        self.seed_axis = seed_axis
        n_dev = len(self.devices)
        self.n_pad = -len(self.seeds) % n_dev
        self.padded_seeds = self.seeds + [self.seeds[-1]] * self.n_pad
        self.mesh = Mesh(np.array(self.devices), ("seed",))
        self.sharding = NamedSharding(self.mesh, PartitionSpec("seed"))

        models = [build_model(seed=s, **self.model_kwargs) for s in self.padded_seeds]
        self.params_count = count_params(models[0])
        models[0].train()
        self.gd_train, _ = nnx.split(models[0])
        models[0].eval()
        self.gd_eval, _ = nnx.split(models[0])
        for m in models:
            m.train()
        states = [nnx.split(m)[1] for m in models]
        self.tx = _optimizer(cfg)
        self.state = self._shard(_stack(states))
        self.opt_state = self._shard(jax.vmap(lambda st: self.tx.init(self._params(st)))(self.state))
        self._chunk_fns = {}
        self._eval_fn = None

    # -- state helpers ---------------------------------------------------------------------
    @staticmethod
    def _params(state):
        return nnx.filter_state(state, nnx.Param)

    def _shard(self, tree):
        return jax.device_put(tree, self.sharding)

    def model(self, state) -> nnx.Module:
        """A model (eval mode) from one seed's state."""
        return nnx.merge(self.gd_eval, state)

    # -- the compiled programs ---------------------------------------------------------------
    def _loss(self, params, rest, x, y):
        model = nnx.merge(self.gd_train, params, rest, copy=True)
        logits = model(x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        new_rest = nnx.split(model, nnx.Param, ...)[2]
        return loss, new_rest

    def _step(self, state, opt_state, X, Y, idx):
        params, rest = nnx.split_state(state, nnx.Param, ...)
        (loss, rest), grads = jax.value_and_grad(self._loss, has_aux=True)(params, rest, X[idx], Y[idx])
        updates, opt_state = self.tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return nnx.merge_state(params, rest), opt_state, loss

    def _chunk(self, state, opt_state, X, Y, idx):
        """``idx.shape[0]`` train steps for one seed (vmapped over seeds by the caller)."""
        def body(carry, i):
            st, os_ = carry
            st, os_, loss = self._step(st, os_, X, Y, i)
            return (st, os_), loss

        (state, opt_state), losses = jax.lax.scan(body, (state, opt_state), idx)
        return state, opt_state, losses.mean()

    def _over_seeds(self, fn):
        """``fn`` applied to every seed of stacked arguments, in one program (``seed_axis``)."""
        if self.seed_axis == "vmap":
            return jax.vmap(fn)
        return lambda *args: jax.lax.map(lambda a: fn(*a), args)

    def _compiled_chunk(self, args):
        """The compiled chunk of train steps for stacked arguments ``(state, opt_state, X, Y, idx)``.

        With ``seed_axis="map"`` the program is compiled for ONE seed and called once per seed (a
        ``lax.map`` over seeds is that same loop inside the program): its shape does not depend on how
        many seeds are still training, so seeds that stop never cause a recompile."""
        if self.seed_axis == "map":
            key = ("one seed",) + tuple(args[-1].shape[1:2])  # steps
            if key not in self._chunk_fns:
                one = jax.tree.map(lambda a: a[0], args)
                fn = jax.jit(self._chunk, donate_argnums=(0, 1))
                t0 = time.perf_counter()
                self._chunk_fns[key] = fn.lower(*one).compile()
                self.compile_s += time.perf_counter() - t0
            return functools.partial(self._per_seed, self._chunk_fns[key])
        key = args[-1].shape[:2]  # (seeds in the program, steps)
        if key not in self._chunk_fns:
            fn = jax.jit(self._over_seeds(self._chunk), donate_argnums=(0, 1))
            t0 = time.perf_counter()
            self._chunk_fns[key] = fn.lower(*args).compile()
            self.compile_s += time.perf_counter() - t0
        return self._chunk_fns[key]

    @staticmethod
    def _per_seed(fn, *args):
        """``fn`` (a one-seed program) on every seed of stacked ``args``; the outputs stacked again."""
        return _stack_trees([fn(*_take_seed(args, s)) for s in range(args[-1].shape[0])])

    def _predict_block(self, state, xb):
        """Predicted classes of one evaluation block ``(eval_batch_size, T, C)`` for one seed."""
        return jnp.argmax(nnx.merge(self.gd_eval, state)(xb), -1)

    def accuracy(self, X, Y, n: int | None = None):
        """Accuracy of every seed's current state on stacked data ``(S, N, T, C)`` (the first ``n``
        seeds of the program; default: the configuration's seeds, without padding).

        The data go through in blocks of ``eval_batch_size`` cases (the last one zero-padded), so one
        compiled program serves the validation, test and training parts alike (evaluation-mode
        norms use their running statistics: a case's prediction does not depend on its block)."""
        if self._eval_fn is None:
            self._eval_fn = jax.jit(self._predict_block if self.seed_axis == "map" else
                                    jax.vmap(self._predict_block))
        B, N = self.cfg.eval_batch_size, X.shape[1]
        n_pad = -N % B
        Xp = jnp.concatenate([X, jnp.zeros(X.shape[:1] + (n_pad,) + X.shape[2:], X.dtype)], axis=1) if n_pad else X
        starts = range(0, N + n_pad, B)
        if self.seed_axis == "map":
            preds = [np.concatenate([np.asarray(self._eval_fn(_take_seed(self.state, s), _block(Xp, s, i, B)))
                                     for i in starts]) for s in range(X.shape[0])]
        else:
            preds = [np.asarray(self._eval_fn(self.state, _block(Xp, None, i, B))) for i in starts]
            preds = list(np.concatenate(preds, axis=1))
        acc = np.mean(np.stack(preds)[:, :N] == np.asarray(Y), axis=1)
        return acc[: len(self.seeds) if n is None else n]

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, splits, *, progress: bool | None = None, keep_state: bool = True, checkpoint=None,
            deadline: float | None = None, note: dict | None = None):
        """Train on ``splits`` (one per seed, each with ``X_train, y_train, X_val, y_val, X_test,
        y_test``); returns one ``SeedResult`` per seed.

        ``checkpoint``: a ``.npz`` path written after every evaluation and resumed from when it holds
        this configuration on these data (a checkpoint of anything else is ignored, with a notice,
        and overwritten). ``deadline``: raise ``Interrupted`` (after checkpointing) rather than start
        a chunk of steps expected to end after this ``time.time()``. ``note``: a JSON-able dict kept
        per segment in ``self.segments`` (who ran which steps)."""
        if len(splits) != len(self.seeds):
            raise ValueError(f"got {len(splits)} splits for {len(self.seeds)} seeds")
        if deadline is not None and checkpoint is None:
            raise ValueError("a deadline needs a checkpoint to save the progress in")
        splits = list(splits) + [splits[-1]] * self.n_pad
        data, host = {}, []
        for part in ("train", "val", "test"):
            xs = [np.asarray(getattr(s, f"X_{part}"), np.float32) for s in splits]
            ys = [np.asarray(getattr(s, f"y_{part}"), np.int32) for s in splits]
            if len({x.shape for x in xs}) != 1:
                raise ValueError(f"every seed's {part} part must have the same shape to train together, got "
                                 f"{sorted({x.shape for x in xs})}")
            if not all(np.isfinite(x).all() for x in xs):
                raise ValueError(f"the {part} inputs contain NaN or infinite values")
            host += [np.stack(xs), np.stack(ys)]
            data[part] = (self._shard(jnp.asarray(host[-2])), self._shard(jnp.asarray(host[-1])))
        cfg = self.cfg
        n_train = data["train"][0].shape[1]
        if n_train < cfg.batch_size:
            raise ValueError(f"batch_size {cfg.batch_size} is larger than the training part ({n_train} cases)")

        S = len(self.seeds)
        # the seeds whose states are in the program (``pg.live``): all of them, and under lax.map only
        # those still training (a stopped seed's best state is kept in best_state)
        compact = self.seed_axis == "map" and self.n_pad == 0
        pg = _Progress.start(self.padded_seeds, S)
        best_state = jax.tree.map(jnp.copy, self.state) if keep_state else None
        self.compile_s, before_s = 0.0, 0.0
        before_cpu = 0.0  # process CPU seconds of earlier sittings; None: a checkpoint that did not count them
        self.segments = [dict(step=0, **(note or {}))]
        fingerprint = None
        if checkpoint is not None:
            checkpoint = Path(checkpoint)
            fingerprint = _fingerprint(self.model_kwargs, cfg, self.padded_seeds, self.seed_axis,
                                       len(self.devices), keep_state, host)
        del host
        if checkpoint is not None:  # a temporary file left by a write that failed (the checkpoint is whole)
            checkpoint.with_name(checkpoint.name + ".tmp").unlink(missing_ok=True)
        if checkpoint is not None and checkpoint.exists():
            try:
                meta, trees = load_checkpoint(checkpoint)
            except Exception as e:  # empty, truncated, garbage: set it aside and start over
                _set_aside(checkpoint, e)
                meta = None
            if meta is None:
                pass
            elif meta.get("fingerprint") != fingerprint:
                print(f"note: {checkpoint} holds another configuration or other data; starting afresh",
                      file=sys.stderr)
            else:  # resume (into new objects first: a checkpoint that does not fit changes nothing)
                try:
                    rpg = _Progress.start(self.padded_seeds, S)
                    rpg.restore(meta)
                    rdata = data
                    if len(rpg.live) < len(self.padded_seeds):
                        take = jnp.asarray(rpg.live)
                        rdata = {part: (X[take], Y[take]) for part, (X, Y) in data.items()}
                    sub = jax.tree.map(lambda x: x[: len(rpg.live)], (self.state, self.opt_state))
                    rstate, ropt = _from_host(trees["state"], sub[0]), _from_host(trees["opt"], sub[1])
                    if len(rpg.live) == len(self.padded_seeds):
                        rstate, ropt = self._shard(rstate), self._shard(ropt)
                    rbest = self._shard(_from_host(trees["best"], best_state)) if keep_state else best_state
                    rtimes = float(meta["compile_s"]), float(meta["wall_s"])
                    rcpu = float(meta["cpu_s"]) if meta.get("cpu_s") is not None else None
                    rsegments = list(meta["segments"]) + [dict(step=rpg.step, **(note or {}))]
                except Exception as e:
                    _set_aside(checkpoint, e)
                else:
                    pg, data, self.state, self.opt_state, best_state = rpg, rdata, rstate, ropt, rbest
                    (self.compile_s, before_s), self.segments, before_cpu = rtimes, rsegments, rcpu
        show = (not quiet()) if progress is None else progress
        log = not show and os.environ.get("LOOPED_SSM_LOG", "") not in ("", "0")
        t_start, c_start = time.perf_counter(), time.process_time()

        def cpu_so_far():
            return None if before_cpu is None else before_cpu + time.process_time() - c_start

        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.max_steps, initial=pg.step, desc=f"{self.model_kwargs.get('ssm')} x{S} seeds",
                       leave=False)
        try:
            while pg.going_on(cfg.max_steps):
                t_chunk = time.perf_counter()
                if compact and (pg.stopped_at[pg.live] >= 0).any():  # drop the seeds that have stopped
                    keep = np.flatnonzero(pg.stopped_at[pg.live] < 0)
                    take = jnp.asarray(keep)
                    self.state, self.opt_state = jax.tree.map(lambda x: x[take], (self.state, self.opt_state))
                    data = {part: (X[take], Y[take]) for part, (X, Y) in data.items()}
                    pg.live = pg.live[keep]
                live = pg.live
                n = min(cfg.eval_every, cfg.max_steps - pg.step)
                idx = np.stack([_batch_indices(pg.rngs[s], n_train, cfg.batch_size, n, pg.carries[s]) for s in live])
                args = (self.state, self.opt_state, *data["train"], self._shard(jnp.asarray(idx)))
                fn = self._compiled_chunk(args)
                self.state, self.opt_state, loss_live = fn(*args)
                pg.step += n
                pg.seed_steps += n * len(live)
                val, test, train, loss = (np.zeros(len(self.padded_seeds)) for _ in range(4))
                val[live] = self.accuracy(*data["val"], n=len(live))
                test[live] = self.accuracy(*data["test"], n=len(live))
                train[live] = self.accuracy(*data["train"], n=len(live))
                loss[live] = np.asarray(loss_live)
                improved = np.zeros(len(self.padded_seeds), bool)
                for s in range(S):
                    if pg.stopped_at[s] < 0:
                        improved[s] = pg.evaluated(s, loss=loss[s], train=train[s], val=val[s], test=test[s],
                                                   patience=cfg.patience)
                if keep_state and improved.any():
                    best_state = self._keep_best(best_state, improved, live)
                wall = before_s + time.perf_counter() - t_start
                if bar is not None:
                    bar.update(n)
                    bar.set_postfix(val=" ".join(f"{v:.2f}" for v in pg.best_val),
                                    stopped=int((pg.stopped_at >= 0).sum()))
                elif log:  # one line per evaluation, for runs in the background
                    print(f"{self.model_kwargs.get('ssm')} step {pg.step}: best val "
                          + " ".join(f"{v:.3f}" for v in pg.best_val)
                          + f"; stopped {int((pg.stopped_at >= 0).sum())}/{S}; {wall:.0f}s", file=sys.stderr, flush=True)
                if checkpoint is not None and pg.going_on(cfg.max_steps):
                    trees = dict(state=self.state, opt=self.opt_state)
                    if keep_state:
                        trees["best"] = best_state
                    save_checkpoint(checkpoint, dict(fingerprint=fingerprint, compile_s=self.compile_s, wall_s=wall,
                                                     cpu_s=cpu_so_far(),
                                                     segments=self.segments, **pg.to_meta()), **trees)
                    # the next chunk (without compiling) is expected to take as long as this one did
                    if deadline is not None and time.time() + (time.perf_counter() - t_chunk) > deadline:
                        raise Interrupted(checkpoint, pg.step, cfg.max_steps)
        finally:
            self.seed_steps = pg.seed_steps  # seed-steps computed, all sittings (also when interrupted)
            if bar is not None:
                bar.close()
        self.wall_s = before_s + time.perf_counter() - t_start  # includes compile_s
        self.cpu_s = cpu_so_far()  # all threads of this process; None when an earlier sitting did not count it
        pg.stopped_at[pg.stopped_at < 0] = pg.step
        states = _unstack(best_state, S) if keep_state else [None] * S
        return [SeedResult(seed=self.seeds[s], val_acc=float(pg.best_val[s]), test_acc=float(pg.test_at_best[s]),
                           train_acc=float(pg.train_at_best[s]), best_step=int(pg.best_step[s]),
                           steps=int(pg.stopped_at[s]), history=pg.history[s],
                           state=states[s])
                for s in range(S)]

    def _keep_best(self, best_state, improved, live):
        """``best_state`` with the seeds marked ``improved`` replaced by their current states
        (``self.state`` holds the seeds ``live``: all of them, or under ``lax.map`` those still training)."""
        if len(live) == len(self.padded_seeds):  # an elementwise select keeps the sharding
            mask = self._shard(jnp.asarray(improved))
            return jax.tree.map(lambda new, old: jnp.where(mask.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
                                self.state, best_state)
        at, mask = jnp.asarray(live), jnp.asarray(improved[live])
        return jax.tree.map(lambda new, old: old.at[at].set(jnp.where(mask.reshape((-1,) + (1,) * (new.ndim - 1)),
                                                                      new, old[at])),
                            self.state, best_state)


def train_seeds(model_kwargs: dict, splits, cfg: TrainConfig, seeds, *, devices=None, progress=None,
                keep_state: bool = True, seed_axis: str = "auto", checkpoint=None, deadline=None, note=None):
    """Train ``build_model(seed=s, **model_kwargs)`` on ``splits[i]`` for every seed ``s = seeds[i]``
    in one program; returns ``(results, trainer)`` (``checkpoint``, ``deadline``, ``note``: see
    ``MultiSeedTrainer.fit``)."""
    trainer = MultiSeedTrainer(model_kwargs, cfg, seeds, devices=devices, seed_axis=seed_axis)
    return trainer.fit(splits, progress=progress, keep_state=keep_state, checkpoint=checkpoint, deadline=deadline,
                       note=note), trainer


def device_name(devices=None) -> str:
    d = (devices or jax.devices())[0]
    return getattr(d, "device_kind", d.platform) if d.platform != "cpu" else "cpu"
