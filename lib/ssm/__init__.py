"""The SSM layers, one short file each, behind one registry.

Contract every layer follows (``lib.model`` and the checks rely on it):

* ``Layer(hidden, state, *, rngs, **options)`` is a ``flax.nnx.Module``;
* ``layer(u, mode="parallel")`` maps ``u`` of shape ``(..., T, hidden)`` (float32) to ``(..., T, hidden)``
  (float32); leading axes are batch axes; the state starts from zero for every sequence;
  ``mode="sequential"`` runs the same recurrence step by step (the reference);
* linear time-invariant layers also have ``layer.kernel(length)`` -> ``(length, hidden, hidden)`` with
  ``y_t = sum_k K_k u_{t-k} + D ⊙ u_t`` and ``layer.D``.
"""
from __future__ import annotations

import importlib
import numbers

import numpy as np

from lib.scan import check_mode


def check_sizes(**sizes) -> list[int]:
    """Each keyword a positive integer (ValueError naming the first that is not); returns them as ints."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return [int(v) for v in sizes.values()]


def check_input(u, hidden: int, mode: str | None = None):
    """``u`` as float32 ``(..., T, hidden)``; ValueError for a wrong shape or ``mode`` (when given)."""
    import jax.numpy as jnp

    if mode is not None:
        check_mode(mode)
    u = jnp.asarray(u, jnp.float32)
    if u.ndim < 2 or u.shape[-1] != hidden:
        raise ValueError(f"u must have shape (..., T, {hidden}), got {u.shape}")
    return u


# name -> (module, class name, fixed options)
_REGISTRY = {
    "lru": ("lib.ssm.lru", "LRU", {}),
    "s5": ("lib.ssm.s5", "S5", {}),
    "linoss-im": ("lib.ssm.linoss", "LinOSS", {"discretization": "IM"}),
    "linoss-imex": ("lib.ssm.linoss", "LinOSS", {"discretization": "IMEX"}),
    "lrcssm": ("lib.ssm.lrcssm", "LrcSSM", {}),
}
SSM_NAMES = tuple(_REGISTRY)


def ssm_class(name: str):
    """The layer class and its fixed options for an SSM name (see ``SSM_NAMES``)."""
    if name not in _REGISTRY:
        raise ValueError(f"ssm must be one of {list(SSM_NAMES)}, got {name!r}")
    module, cls, fixed = _REGISTRY[name]
    return getattr(importlib.import_module(module), cls), dict(fixed)


def make_ssm(name: str, hidden: int, state: int, *, rngs, **options):
    """Build the SSM layer ``name`` mapping ``(..., T, hidden) -> (..., T, hidden)``."""
    cls, fixed = ssm_class(name)
    return cls(hidden, state, rngs=rngs, **fixed, **options)
