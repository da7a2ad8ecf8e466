"""The SSM layers, one short file each, behind one registry (``SSMS``: name -> ``SSMSpec``).

Adding an SSM is its file plus one ``SSMSpec`` entry here: the model, training, grids, layer views and
verdicts read everything they need about it from the registry (no JAX is imported by this module).

Contract every layer follows (``lib.model`` and the checks rely on it):

* ``Layer(hidden, state, *, rngs, **options)`` is a ``flax.nnx.Module``;
* ``layer(u, mode="parallel")`` maps ``u`` of shape ``(..., T, hidden)`` (float32) to ``(..., T, hidden)``
  (float32); leading axes are batch axes; the state starts from zero for every sequence;
  ``mode="sequential"`` runs the same recurrence step by step (the reference);
* linear time-invariant layers also have ``layer.kernel(length)`` -> ``(length, hidden, hidden)`` with
  ``y_t = sum_k K_k u_{t-k} + D ⊙ u_t`` and ``layer.D``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
import numbers
import types
from typing import Any, Callable, Mapping

import numpy as np


def check_sizes(**sizes) -> list[int]:
    """Each keyword a positive integer (ValueError naming the first that is not); returns them as ints."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return [int(v) for v in sizes.values()]


def check_input(u, hidden: int, mode: str | None = None):
    """``u`` as float32 ``(..., T, hidden)``; ValueError for a wrong shape or ``mode`` (when given)."""
    import jax.numpy as jnp

    from lib.scan import check_mode

    if mode is not None:
        check_mode(mode)
    u = jnp.asarray(u, jnp.float32)
    if u.ndim < 2 or u.shape[-1] != hidden:
        raise ValueError(f"u must have shape (..., T, {hidden}), got {u.shape}")
    return u


#: the knob of LinOSS's timescale is capped here: Δt = sigmoid(ŝ) < 1 in LinOSS
LINOSS_MAX_STEP = 0.95


def _ring(tau: float) -> dict:  # LRU: |λ| on the ring [exp(−2/τ), exp(−1/(2τ))], timescales τ/2 .. 2τ
    return {"r_min": math.exp(-2.0 / tau), "r_max": math.exp(-0.5 / tau)}


def _step_range(tau: float) -> dict:  # S5: |Λ̄| = exp(−Δ/2) (HiPPO-N), Δ ∈ [1/τ, 4/τ] gives τ/2 .. 2τ
    return {"dt_min": 1.0 / tau, "dt_max": 4.0 / tau}


def _oscillator_step(tau: float) -> dict:  # LinOSS: 2/log(1 + Δt²/2) = τ, capped at LINOSS_MAX_STEP
    return {"step": min(math.sqrt(2.0 * math.expm1(2.0 / tau)), LINOSS_MAX_STEP)}


def _lrc_step(tau: float) -> dict:  # LrcSSM: linearised decay rate ½Δt · ½, so Δt = 4/τ
    return {"step": 4.0 / tau}


@dataclasses.dataclass(frozen=True)
class Knob:
    """The memory-timescale knob of an SSM, the one the layers chapter sweeps (``lib.layers_view``).

    ``options(tau)``: the values that put the timescale at about ``tau`` steps. ``logit_param``: the
    name of a parameter that is set to logit(value) after initialisation instead of passing the value
    to the constructor (LinOSS has no constructor option for its step)."""

    label: str
    options: Callable[[float], dict]
    logit_param: str | None = None


@dataclasses.dataclass(frozen=True)
class SSMSpec:
    """Everything the library knows about one SSM, in one place (the registry ``SSMS``).

    ``layer``: the layer class, or ``"module:Class"`` imported when first needed; ``options``: fixed
    constructor options; ``dropout``: the block's dropout rate (the peers' choice); ``lr`` and
    ``clip``: Adam's rate and the global gradient-norm clip (None: no clipping), shared by looped and
    standard models; ``max_steps``: step caps per profile replacing the profile's own
    (``lib.profiles``); ``block``: ``"ssm"`` (pre-norm residual block with GLU, linear encoder and
    head) or ``"lrc"`` (LrcSSM's block, MLP encoder and per-timestep MLP head); ``modes``: the scan
    mode per JAX backend, ``"*"`` for every other backend (``lib.train.default_mode``); ``knob``: the
    memory-timescale knob (``lib.layers_view``); ``paper``: one of the Looped SSMs paper's four (read
    by the verdicts and the main grid); ``splits``: the grids also run the intermediate k × L splits;
    ``label``: the name the pages print (default: ``name``)."""

    name: str
    layer: Any
    options: Mapping = dataclasses.field(default_factory=dict)
    dropout: float = 0.0
    lr: float = 1e-3
    clip: float | None = None
    max_steps: Mapping = dataclasses.field(default_factory=dict)
    block: str = "ssm"
    modes: Mapping = dataclasses.field(default_factory=lambda: {"cpu": "sequential", "*": "parallel"})
    knob: Knob | None = None
    paper: bool = False
    splits: bool = False
    label: str = ""

    def __post_init__(self):
        if not self.label:
            object.__setattr__(self, "label", self.name)
        if self.block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {self.block!r}")
        object.__setattr__(self, "options", types.MappingProxyType(dict(self.options)))
        object.__setattr__(self, "max_steps", types.MappingProxyType(dict(self.max_steps)))
        object.__setattr__(self, "modes", types.MappingProxyType(dict(self.modes)))

    def layer_class(self):
        """The layer class (imported from ``"module:Class"`` if given as a string)."""
        if isinstance(self.layer, str):
            module, cls = self.layer.split(":")
            return getattr(importlib.import_module(module), cls)
        return self.layer

    def mode(self, backend: str) -> str:
        """The scan mode on a JAX backend (``"cpu"``, ``"gpu"``, ``"tpu"``, ...)."""
        return self.modes.get(backend, self.modes["*"])


#: the block kinds ``lib.model`` builds
BLOCKS = ("ssm", "lrc")

#: The registry: the one home of the SSM names and their settings. Rates and caps: LRU/S5 follow the
#: Log-NCDE choices for SCP1/Motor (1e-3), LinOSS and LrcSSM their papers' 1e-4; LrcSSM's repository
#: clips the global gradient norm at 1 and uses no dropout; the budget profile gives the SSMs trained
#: at 1e-4 twice the steps (6,000). On a CPU every SSM runs its sequential scan (``lib.bench``).
SSMS: dict[str, SSMSpec] = {s.name: s for s in (
    SSMSpec("lru", "lib.ssm.lru:LRU", dropout=0.1, lr=1e-3, paper=True, splits=True, label="LRU",
            knob=Knob("ring r_min ≤ |λ| ≤ r_max", _ring)),
    SSMSpec("s5", "lib.ssm.s5:S5", dropout=0.05, lr=1e-3, paper=True, splits=True, label="S5",
            knob=Knob("step Δ ∈ [dt_min, dt_max]", _step_range)),
    SSMSpec("linoss-im", "lib.ssm.linoss:LinOSS", {"discretization": "IM"}, dropout=0.05, lr=1e-4,
            max_steps={"budget": 6_000}, paper=True, label="LinOSS (IM)",
            knob=Knob("step Δt (all oscillators)", _oscillator_step, logit_param="step_hat")),
    SSMSpec("linoss-imex", "lib.ssm.linoss:LinOSS", {"discretization": "IMEX"}, dropout=0.05, lr=1e-4,
            max_steps={"budget": 6_000}, label="LinOSS (IMEX)",
            knob=Knob("step Δt (all oscillators)", _oscillator_step, logit_param="step_hat")),
    SSMSpec("lrcssm", "lib.ssm.lrcssm:LrcSSM", dropout=0.0, lr=1e-4, clip=1.0, max_steps={"budget": 6_000},
            block="lrc", paper=True, label="LrcSSM", knob=Knob("step Δt", _lrc_step)),
)}
#: the SSM names, in registry order (a snapshot: code that must see SSMs registered later reads ``SSMS``)
SSM_NAMES = tuple(SSMS)


def paper_ssms() -> tuple:
    """The paper's SSMs (``SSMSpec.paper``), in registry order, as the registry is now."""
    return tuple(n for n, s in SSMS.items() if s.paper)


def ssm_order() -> list:
    """The SSM names in registry order, as the registry is now: the one order of panels, legends,
    tables and sentences (``ssm_rank`` sorts by it)."""
    return list(SSMS)


def ssm_rank(name: str) -> tuple:
    """A sort key: registry order, then by name for SSMs outside the registry."""
    order = ssm_order()
    return (order.index(name) if name in order else len(order), name)


def ssm_label(name: str) -> str:
    """The name the pages print for an SSM (``SSMSpec.label``); an unregistered name as it is."""
    spec = SSMS.get(name)
    return spec.label if spec else name


def ssm_spec(name: str) -> SSMSpec:
    """The registry entry of an SSM name; ValueError naming the known ones for any other."""
    try:
        return SSMS[name]
    except (KeyError, TypeError):
        raise ValueError(f"ssm must be one of {list(SSMS)}, got {name!r}") from None


def register(spec: SSMSpec) -> SSMSpec:
    """Add an SSM to the registry (ValueError if the name is taken); updates ``SSM_NAMES``."""
    global SSM_NAMES
    if spec.name in SSMS:
        raise ValueError(f"ssm {spec.name!r} is already registered")
    SSMS[spec.name] = spec
    SSM_NAMES = tuple(SSMS)
    return spec


def unregister(name: str) -> None:
    """Remove an SSM from the registry (for tests); updates ``SSM_NAMES``."""
    global SSM_NAMES
    del SSMS[name]
    SSM_NAMES = tuple(SSMS)


@contextlib.contextmanager
def registered(spec: SSMSpec):
    """``with registered(SSMSpec(...)):`` the SSM is in the registry inside the block only."""
    register(spec)
    try:
        yield spec
    finally:
        unregister(spec.name)


def ssm_class(name: str):
    """The layer class and its fixed options for an SSM name (see ``SSMS``)."""
    spec = ssm_spec(name)
    return spec.layer_class(), dict(spec.options)


def make_ssm(name: str, hidden: int, state: int, *, rngs, **options):
    """Build the SSM layer ``name`` mapping ``(..., T, hidden) -> (..., T, hidden)``."""
    cls, fixed = ssm_class(name)
    return cls(hidden, state, rngs=rngs, **fixed, **options)
