"""The classifier and the depth policy: ``blocks`` unique residual blocks applied ``loops`` times.

A looped SSM has k = ``blocks`` unique residual blocks θ_1..θ_k and applies them as a cycle
``loops`` = L times, θ_1..θ_k, θ_1..θ_k, ... — depth k·L with the parameters of k blocks:

    h_0 = E(u)                                  encoder, (B, T, C) -> (B, T, H)
    h_{i+1} = Block_{θ_(i mod k)}(h_i)          i = 0 .. k·L − 1, each a whole sequence pass
    logits = W · mean_t(h_{kL}) + c             head

Every application is a whole sequence-to-sequence pass and the SSM state starts from zero each
time: sequence recurrence inside, depth recurrence outside (the plain weight-tied "flat loop";
the Looped SSMs paper does not publish its loop equation, see ``reproduction-protocol.md`` §1.4).
Optional input injection adds the encoded input back before every application but the first,
h_{i+1} = Block(h_i + h_0); it is off by default and not claimed by the paper.

The standard model of the same depth is ``blocks = k·L, loops = 1``. It contains the looped one:
tie its blocks and it computes the same function — ``untie`` builds that standard model from a
looped one, block i a copy of θ_(i mod k), and the checks show the logits agree.

Residual blocks (peer code, Log-NCDE / LinOSS ``models/{LRU,S5,LinOSS}.py``; LrcSSM
``experiments/lrc_ssm``):

* LRU, S5, LinOSS — pre-norm: ``x + Dropout(GLU(Dropout(GELU(SSM(BatchNorm(x))))))`` with
  GLU(x) = W_1 x ⊙ σ(W_2 x), BatchNorm without affine parameters over batch and time, dropout
  0.1 (LRU) / 0.05 (S5, LinOSS); linear encoder; mean over time then a linear head.
* LrcSSM — ``h = LN(h); x = LRC(h); x = LN(x + h); h = MLP(x) + x`` with LayerNorm without affine
  parameters and MLP = Linear → ReLU → Linear; MLP encoder; an MLP applied to every timestep and
  then averaged over time as the head; no dropout.

Batch norm in a looped block. The peers' batch norm has no parameters, only running statistics
(buffers) that evaluation uses in place of the batch's. A looped block sees a different input
distribution at every application (the residual stream grows with depth), so with one set of
statistics shared by all L applications, evaluation normalises every application with a mixture
of all of them, while training normalised each with its own batch: the evaluated model is not the
trained one. On NATOPS a looped S5 (1 × 6) with one shared set peaked in validation accuracy at
step 100 and then fell towards chance, while (in an unrecorded probe) its training loss fell to
0.002; with statistics per application the same run reached 100 %
(``data/results/bn-ablation.jsonl``, shown in the Experiments chapter). So ``norm="batch"`` (the
default) keeps **one set of statistics per application**: block j's ``norm[c]`` serves its c-th
application (cycle c). That adds no parameter, changes nothing in training (batch statistics are
used there), and is exactly what the standard model, whose every block is applied once, has —
``untie`` hands each untied block the statistics of its application. Run for more cycles than it
was built with (test-time depth), a block uses its last cycle's statistics. ``norm="batch-shared"``
is the single shared set, for the ablation.
"""
from __future__ import annotations

import dataclasses
import numbers

import jax
import jax.numpy as jnp
from flax import nnx

from lib.scan import MODES
from lib.schema import INITS  # noqa: F401  (one home: the record vocabulary)
from lib.ssm import SSMS, make_ssm, ssm_spec


def unrolled_threefry_on_cpu() -> bool:
    """Compile JAX's threefry hash unrolled on CPU too (JAX rolls its 5 × 4 rounds into a
    ``fori_loop`` there, to compile faster), so a dropout mask is one fused pass instead of five
    passes over memory: the same bits (the same arithmetic, only not looped), about 4× faster on
    this CPU (0.43 → 0.11 ms for a 32 × 56 × 64 mask; ``lib.bench``). Uses JAX internals; returns
    False, changing nothing, where they are not as expected."""
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32 as tf

        mlir.register_lowering(tf.threefry2x32_p, tf._threefry2x32_lowering_rule, platform="cpu")
        return True
    except (ImportError, AttributeError):  # another JAX: keep its own lowering
        return False


UNROLLED_THREEFRY = unrolled_threefry_on_cpu()

#: dropout rate of the peers' block per SSM (Log-NCDE / LinOSS repositories; LrcSSM uses none), from
#: the registry (``lib.ssm.SSMS``; the model reads the registry itself, so SSMs registered later count)
DROPOUT = {n: s.dropout for n, s in SSMS.items()}
NORMS = ("batch", "batch-shared", "layer", "none")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything ``build_model`` needs to rebuild a model; saved in run records."""

    ssm: str
    blocks: int
    loops: int
    hidden: int
    state: int
    in_features: int
    num_classes: int
    seed: int = 0
    dropout: float | None = None
    norm: str | None = None
    input_injection: bool = False
    mode: str = "parallel"
    ssm_options: tuple = ()

    @property
    def depth(self) -> int:
        return self.blocks * self.loops

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["ssm_options"] = dict(self.ssm_options)
        return d


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def validate_config(cfg: ModelConfig) -> ModelConfig:
    """Check every argument once, with an error that names it."""
    ssm_spec(cfg.ssm)  # ValueError naming the registered SSMs
    for name in ("blocks", "loops", "hidden", "state", "in_features"):
        _positive_int(name, getattr(cfg, name))
    _positive_int("num_classes", cfg.num_classes, 2)
    _positive_int("seed", cfg.seed, 0)
    if cfg.dropout is not None and not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {cfg.dropout!r}")
    if cfg.norm is not None and cfg.norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {cfg.norm!r}")
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {cfg.mode!r}")
    return cfg


class MLP(nnx.Module):
    """Linear -> ReLU -> Linear."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, *, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(d_in, d_hidden, rngs=rngs)
        self.fc2 = nnx.Linear(d_hidden, d_out, rngs=rngs)

    def __call__(self, x):
        return self.fc2(jax.nn.relu(self.fc1(x)))


def _norm(kind: str, hidden: int, applications: int, rngs: nnx.Rngs):
    """The norms of one block, one per application (``batch``: running statistics per application)
    or one for all (``batch-shared``, ``layer``: LayerNorm has no statistics); None for ``none``."""
    if kind in ("batch", "batch-shared"):  # statistics over batch and time, per channel; no affine (peers)
        n = applications if kind == "batch" else 1
        return nnx.List([nnx.BatchNorm(hidden, use_bias=False, use_scale=False, momentum=0.99, rngs=rngs)
                         for _ in range(n)])
    if kind == "layer":
        return nnx.List([nnx.LayerNorm(hidden, use_bias=False, use_scale=False, rngs=rngs)])
    return None


def _apply_norm(norms, x, cycle):
    """``x`` through the norm of application ``cycle`` (the last one's beyond the trained depth).

    ``cycle`` is a Python int, or a traced integer inside the loop over cycles (``LoopedClassifier``):
    then the statistics of that cycle are picked from all of them, the norm runs on them, and in
    training mode its updated statistics go back to that cycle only — the same numbers as the norm
    of that cycle called directly."""
    if norms is None:
        return x
    n = len(norms)
    if n == 1:
        return norms[0](x)
    if isinstance(cycle, numbers.Integral):
        return norms[min(int(cycle), n - 1)](x)
    i = jnp.minimum(cycle, n - 1)
    states = [nnx.state(m) for m in norms]
    norm = nnx.merge(nnx.graphdef(norms[0]), jax.tree.map(lambda *v: jnp.stack(v)[i], *states))
    y = norm(x)
    if not getattr(norm, "use_running_average", True):  # training: statistics updated
        new = nnx.state(norm)
        for j, m in enumerate(norms):
            nnx.update(m, jax.tree.map(lambda a, b, j=j: jnp.where(i == j, a, b), new, states[j]))
    return y


class SSMBlock(nnx.Module):
    """Pre-norm residual block around a linear SSM: ``x + Drop(GLU(Drop(GELU(SSM(Norm(x))))))``."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        H = cfg.hidden
        self.norm = _norm(cfg.norm or "batch", H, cfg.loops, rngs)
        self.ssm = make_ssm(cfg.ssm, H, cfg.state, rngs=rngs, **dict(cfg.ssm_options))
        self.W1 = nnx.Linear(H, H, rngs=rngs)  # GLU(x) = W1 x ⊙ σ(W2 x)
        self.W2 = nnx.Linear(H, H, rngs=rngs)
        rate = ssm_spec(cfg.ssm).dropout if cfg.dropout is None else cfg.dropout
        self.dropout = nnx.Dropout(rate, rngs=rngs)
        self.mode = cfg.mode

    def ssm_input(self, x, cycle: int = 0):
        """What this block's SSM layer reads when the hidden sequence ``x`` enters it: ``Norm(x)``."""
        return _apply_norm(self.norm, x, cycle)

    def __call__(self, x, cycle: int = 0):
        skip = x
        x = self.ssm(self.ssm_input(x, cycle), mode=self.mode)
        x = self.dropout(jax.nn.gelu(x))
        x = self.W1(x) * jax.nn.sigmoid(self.W2(x))
        x = self.dropout(x)
        return skip + x


class LrcBlock(nnx.Module):
    """LrcSSM's block: ``h = LN(h); x = LRC(h); x = LN(x + h); h = MLP(x) + x``."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        H = cfg.hidden
        kind = cfg.norm or "layer"
        self.norm1 = _norm(kind, H, cfg.loops, rngs)
        self.ssm = make_ssm(cfg.ssm, H, cfg.state, rngs=rngs, **dict(cfg.ssm_options))
        self.norm2 = _norm(kind, H, cfg.loops, rngs)
        self.mlp = MLP(H, H, H, rngs=rngs)
        self.dropout = nnx.Dropout(ssm_spec(cfg.ssm).dropout if cfg.dropout is None else cfg.dropout, rngs=rngs)
        self.mode = cfg.mode

    def ssm_input(self, h, cycle: int = 0):
        """What this block's LRC layer reads when the hidden sequence ``h`` enters it: ``LN(h)``."""
        return _apply_norm(self.norm1, h, cycle)

    def __call__(self, h, cycle: int = 0):
        h = self.ssm_input(h, cycle)
        x = self.ssm(h, mode=self.mode)
        x = _apply_norm(self.norm2, x + h, cycle)
        return self.dropout(self.mlp(x)) + x


class LoopedClassifier(nnx.Module):
    """Encoder, ``blocks`` unique residual blocks applied as a cycle ``loops`` times, head.

    ``model(x)`` maps ``(batch, T, in_features)`` to logits ``(batch, num_classes)``;
    ``model(x, loops=n)`` runs ``n`` cycles instead of the ``loops`` it was built with (test-time
    depth); ``model.iterates(x)`` returns the hidden sequence after every block application.
    """

    #: under ``jit``, run loops > 1 as one ``lax.scan`` over the cycles (``_run_cycles``): a 1×L model
    #: then compiles in about the time of a 1×1 one, whatever L. False unrolls the L applications.
    #: None (the default) decides by backend, from ``lib.bench train``: on a CPU a 1×6 model's step
    #: takes 1.2–1.5× as long with the scan (every activation the backward pass needs is copied into
    #: the loop's stacked buffers and read back), far more over a run of thousands of steps than the
    #: seconds of compile time it saves, so CPUs unroll; accelerators scan. Eager calls always unroll: there is no program to
    #: compile, and op by op they give the untied model's numbers bit for bit. Compiled, the two orders
    #: agree to float32 rounding (``tests/test_model.py``).
    scan_loops = None

    def _scan(self) -> bool:
        return jax.default_backend() != "cpu" if self.scan_loops is None else bool(self.scan_loops)

    def __init__(self, cfg: ModelConfig):
        cfg = validate_config(cfg)
        self.config = cfg
        rngs = nnx.Rngs(params=cfg.seed, dropout=cfg.seed)
        H = cfg.hidden
        lrc = ssm_spec(cfg.ssm).block == "lrc"
        self.encoder = MLP(cfg.in_features, H, H, rngs=rngs) if lrc else nnx.Linear(cfg.in_features, H, rngs=rngs)
        block = LrcBlock if lrc else SSMBlock
        self.blocks = nnx.List([block(cfg, rngs=rngs) for _ in range(cfg.blocks)])
        self.head = MLP(H, H, cfg.num_classes, rngs=rngs) if lrc else nnx.Linear(H, cfg.num_classes, rngs=rngs)

    # -- the depth policy -------------------------------------------------------------------
    def schedule(self, loops: int | None = None) -> list[int]:
        """Which unique block each of the k·L applications uses: 0..k−1 repeated ``loops`` times."""
        loops = self.config.loops if loops is None else _positive_int("loops", loops)
        return [j for _ in range(loops) for j in range(len(self.blocks))]

    def _check_input(self, x):
        if x.ndim != 3:
            raise ValueError(f"x must have shape (batch, T, in_features), got shape {tuple(x.shape)}")
        if x.shape[-1] != self.config.in_features:
            raise ValueError(
                f"x has {x.shape[-1]} features but the model was built with in_features={self.config.in_features}"
            )

    def _run(self, x, loops, keep: bool):
        self._check_input(x)
        h0 = self.encoder(x)
        L = self.config.loops if loops is None else _positive_int("loops", loops)
        if L > 1 and isinstance(h0, jax.core.Tracer) and self._scan():  # compiled: one copy of the blocks
            return self._run_cycles(h0, L, keep)
        h, states = h0, []
        k = len(self.blocks)
        for i, j in enumerate(self.schedule(L)):
            if self.config.input_injection and i > 0:
                h = h + h0
            h = self.blocks[j](h, cycle=i // k)
            if keep:
                states.append(h)
        return h, states

    def _run_cycles(self, h0, loops: int, keep: bool):
        """The ``loops`` cycles as one ``lax.scan`` over the tied blocks: the program holds each unique
        block once, so compile time does not grow with the number of loops. The blocks' parameters
        are constants of the loop; their other state (norm statistics, dropout counters) is carried
        through it, so every application sees and updates exactly what it does unrolled."""
        k = len(self.blocks)
        graphdef, params, rest = nnx.split(self.blocks, nnx.Param, ...)
        inject = self.config.input_injection

        def cycle(carry, c):
            h, rest = carry
            blocks = nnx.merge(graphdef, params, rest)
            outs = []
            for j in range(k):
                if inject:  # h + h0 before every application but the first (i = c·k + j > 0)
                    h = jnp.where((c > 0) | (j > 0), h + h0, h) if j == 0 else h + h0
                h = blocks[j](h, cycle=c)
                outs.append(h)
            return (h, nnx.split(blocks, nnx.Param, ...)[2]), (jnp.stack(outs) if keep else None)

        (h, rest), outs = jax.lax.scan(cycle, (h0, rest), jnp.arange(loops))
        nnx.update(self.blocks, rest)
        return h, (list(outs.reshape((loops * k,) + outs.shape[2:])) if keep else [])

    def ssm_inputs(self, x, loops: int | None = None):
        """What the SSM layer of every application reads: ``(blocks·loops, batch, T, hidden)``, its block's
        norm of the hidden sequence entering it (plus the encoded input, where the model injects it).
        Use in eval mode: in training mode the norms would update their statistics once more."""
        h0 = self.encoder(x)
        entering = [h0, *self.iterates(x, loops)[:-1]]
        k, inject = len(self.blocks), self.config.input_injection
        return jnp.stack([self.blocks[j].ssm_input(h + h0 if inject and i > 0 else h, cycle=i // k)
                          for i, (j, h) in enumerate(zip(self.schedule(loops), entering))])

    def readout(self, h):
        """The head: mean over time, then linear (LrcSSM: per-timestep MLP, then mean over time)."""
        if ssm_spec(self.config.ssm).block == "lrc":
            return self.head(h).mean(axis=-2)
        return self.head(h.mean(axis=-2))

    def __call__(self, x, loops: int | None = None):
        h, _ = self._run(x, loops, keep=False)
        return self.readout(h)

    def iterates(self, x, loops: int | None = None):
        """Hidden sequences after every application: ``(blocks·loops, batch, T, hidden)``."""
        _, states = self._run(x, loops, keep=True)
        return jnp.stack(states)


def build_model(ssm: str, blocks: int, loops: int, hidden: int, state: int, in_features: int,
                num_classes: int, seed: int = 0, *, dropout: float | None = None, norm: str | None = None,
                input_injection: bool = False, mode: str = "parallel", init: str = "default",
                **ssm_options) -> LoopedClassifier:
    """Build a looped (``blocks`` < depth) or standard (``loops == 1``) SSM classifier.

    ``ssm`` is a name in the registry ``lib.ssm.SSMS``; extra keyword arguments go to the SSM layer (e.g.
    ``ssm_blocks=4`` for S5's block-diagonal init, ``r_min=0.9`` for LRU). ``norm`` defaults to the
    peers' choice (batch norm for LRU/S5/LinOSS, layer norm for LrcSSM). ``init`` (one of ``INITS``):
    ``"tied"`` starts a standard model from ``tied_init`` (the looped model's weights, untied).
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    cfg = ModelConfig(ssm=ssm, blocks=blocks, loops=loops, hidden=hidden, state=state,
                      in_features=in_features, num_classes=num_classes, seed=seed, dropout=dropout,
                      norm=norm, input_injection=bool(input_injection), mode=mode,
                      ssm_options=tuple(sorted(ssm_options.items())))
    return tied_init(cfg) if init == "tied" else LoopedClassifier(cfg)




def tied_init(cfg: ModelConfig) -> LoopedClassifier:
    """A standard model (``cfg.loops == 1``, k = ``cfg.blocks``) whose weights start as those of the
    looped model with one block applied k times, built with the same seed — ``untie(looped)`` —
    and are then trained untied (issue 21's tied-initialisation control: does the standard model
    stay with the looped one it starts as?). The weights and norm statistics come from
    ``untie``; everything else (the dropout streams) is the default standard model's, so the
    blocks do not share dropout masks."""
    cfg = validate_config(cfg)
    if cfg.loops != 1:
        raise ValueError(f"init='tied' is for standard models (loops 1), got loops {cfg.loops}")
    standard = LoopedClassifier(cfg)
    looped = LoopedClassifier(dataclasses.replace(cfg, blocks=1, loops=cfg.blocks))
    nnx.update(standard, nnx.state(untie(looped), nnx.Any(nnx.Param, nnx.BatchStat)))
    return standard


def untie(model: LoopedClassifier) -> LoopedClassifier:
    """The standard model containing ``model``: ``blocks·loops`` untied blocks, block i a copy of
    unique block ``i mod blocks`` (weights, and the norm statistics of that application), with the
    same encoder and head. It computes the same function as ``model`` at the depth ``model`` was
    built with, in training and in evaluation mode."""
    cfg = model.config
    std_cfg = dataclasses.replace(cfg, blocks=cfg.blocks * cfg.loops, loops=1)
    standard = LoopedClassifier(std_cfg)
    standard.encoder = nnx.clone(model.encoder)
    standard.head = nnx.clone(model.head)
    k = cfg.blocks
    untied = []
    for i, j in enumerate(model.schedule()):
        block = nnx.clone(model.blocks[j])
        for name in ("norm", "norm1", "norm2"):  # keep only the statistics of application i // k
            norms = getattr(block, name, None)
            if norms is not None:
                setattr(block, name, nnx.List([norms[min(i // k, len(norms) - 1)]]))
        untied.append(block)
    standard.blocks = nnx.List(untied)
    return standard


def count_params(model: nnx.Module) -> dict:
    """Trainable parameter counts: ``{"total": ..., "blocks": ...}`` (``blocks``: the residual blocks)."""
    def size(tree):
        return int(sum(x.size for x in jax.tree.leaves(tree)))

    total = size(nnx.state(model, nnx.Param))
    blocks = size(nnx.state(model.blocks, nnx.Param)) if hasattr(model, "blocks") else 0
    return {"total": total, "blocks": blocks}
