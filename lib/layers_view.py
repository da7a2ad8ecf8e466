"""Views of the SSM layers for the book: impulse responses, a memory-timescale knob, scan checks, timings.

Nothing here defines a layer; every function takes the layers of ``lib.ssm`` through their public API
(``Layer(hidden, state, *, rngs, **options)``, ``layer(u, mode=...)``, ``layer.kernel(length)``).

* ``impulse_response(layer, length)`` — what the state path of a layer does with a unit impulse in one
  input channel: ``K_k[:, channel]`` from ``layer.kernel`` for the linear time-invariant layers (LRU, S5,
  LinOSS), and the finite difference ``(y(s·δ) − y(0)) / s`` for the nonlinear LrcSSM. The skip
  ``D ⊙ u_t`` (an impulse at ``k = 0`` only) is left out.
* ``timescale_layer(name, hidden, state, tau)`` — a layer of SSM ``name`` at initialisation whose memory
  timescale is about ``tau`` steps (|λ|^τ ≈ 1/e), set through the knob that SSM has: LRU's ring
  ``r_min, r_max``, S5's step range ``dt_min, dt_max``, LinOSS's step Δt, LrcSSM's ``step``.
  ``timescale_knob`` says which value it uses.
* ``eigen_timescale(layer)`` — the median timescale −1/log|λ| of a linear layer's eigenvalues.
* ``state_timescales(model, X)`` — the timescale of every state of a trained model: −1/log|λ| for the
  linear layers, −1/log J along its trajectories on the cases ``X`` for LrcSSM.
* ``decay_time(envelope)`` — the first lag at which an impulse-response envelope falls below 1/e of its peak.
* ``scan_gap(layer, u)`` — max |parallel − sequential| of a layer on ``u`` (the check that the associative
  scan computes the recurrence).

Timings are ``lib.bench.time_call``; whether to build ipywidgets is ``lib.viz.has_kernel_widgets``.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lib.ssm import LINOSS_MAX_STEP, SSMS, make_ssm  # noqa: F401  (LINOSS_MAX_STEP: the knob's cap)

#: the knob each SSM exposes for its memory timescale (what ``timescale_layer`` sets), from the
#: registry (``lib.ssm.SSMSpec.knob``; the functions below read the registry itself)
KNOBS = {n: s.knob.label for n, s in SSMS.items() if s.knob is not None}


def _knob(name: str):
    spec = SSMS.get(name)
    if spec is None or spec.knob is None:
        raise ValueError(f"unknown ssm {name!r}; expected one of {[n for n, s in SSMS.items() if s.knob]}")
    return spec.knob


def timescale_knob(name: str, tau: float) -> dict:
    """The option values that put SSM ``name``'s memory timescale at about ``tau`` steps
    (``lib.ssm.SSMSpec.knob``).

    * LRU: |λ| uniform-ish on the ring [exp(−2/τ), exp(−1/(2τ))], i.e. timescales τ/2 .. 2τ.
    * S5: |Λ̄| = exp(Re Λ · Δ) = exp(−Δ/2) (HiPPO-N has Re Λ = −½), so Δ ∈ [1/τ, 4/τ] gives τ/2 .. 2τ.
    * LinOSS-IM: |λ|² = 1/(1 + Δt²A); with A ≈ ½ (the mean of its U[0, 1) init) the timescale
      2/log(1 + Δt²/2) equals τ at Δt = sqrt(2(e^{2/τ} − 1)), capped at ``LINOSS_MAX_STEP``.
      LinOSS-IMEX gets the same Δt, but |λ| = 1 for it at any Δt: only its frequencies move.
    * LrcSSM: linearised about x = 0 the cell decays at rate ε·|a| ≈ ½Δt · ½, so Δt = 4/τ.
    """
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau!r}")
    return _knob(name).options(tau)


def timescale_layer(name: str, hidden: int, state: int, tau: float, *, seed: int = 0):
    """A freshly initialised layer of SSM ``name`` with memory timescale about ``tau`` (``timescale_knob``).

    LinOSS has no constructor option for its step, so its ``step_hat`` parameter (the knob's
    ``logit_param``) is overwritten with logit(Δt) after initialisation; everything else is the
    layer's own init.
    """
    knob = timescale_knob(name, tau)
    rngs = nnx.Rngs(seed)
    param = _knob(name).logit_param
    if param is not None:
        layer = make_ssm(name, hidden, state, rngs=rngs)
        (step,) = knob.values()
        p = getattr(layer, param)
        p[...] = jnp.full_like(p[...], math.log(step / (1.0 - step)))
        return layer
    return make_ssm(name, hidden, state, rngs=rngs, **knob)


@nnx.jit(static_argnames=("length",))
def _kernel_column(layer, length: int, channel):
    return jnp.take(layer.kernel(length), channel, axis=2)


@nnx.jit(static_argnames=("length",))
def _finite_difference(layer, length: int, channel, scale):
    u = jnp.zeros((2, length, layer.hidden), jnp.float32).at[1, 0, channel].set(scale)
    y = layer(u, mode="sequential")
    return (y[1] - y[0]) / scale


def impulse_response(layer, length: int, *, channel: int = 0, scale: float = 1.0) -> np.ndarray:
    """The state path's response to a unit impulse at t = 0 in input ``channel``: ``(length, hidden)``.

    Linear time-invariant layers (those with ``kernel``): ``K_k[:, channel]``, k = 0 .. length − 1, so
    y_t = Σ_k K_k u_{t−k} + D ⊙ u_t without the skip term. Others (LrcSSM): the finite difference
    (y(scale·δ) − y(0)) / scale, run with the sequential recurrence; it depends on ``scale`` because
    the cell is nonlinear.
    """
    if not 0 <= channel < layer.hidden:
        raise ValueError(f"channel must be in [0, {layer.hidden}), got {channel!r}")
    if hasattr(layer, "kernel"):
        return np.asarray(_kernel_column(layer, int(length), channel))
    return np.asarray(_finite_difference(layer, int(length), channel, jnp.float32(scale)))


def eigen_timescale(layer, *, tol: float = 1e-6) -> float:
    """Median over the modes of −1/log|λ| (steps until |λ|^k = 1/e), from ``layer.eigenvalues()``.

    ``inf`` for modes with |λ| ≥ 1 − ``tol`` (they do not decay; the default ``tol`` absorbs float32
    rounding of |λ| = 1, as for LinOSS-IMEX); ``nan`` for layers without ``eigenvalues`` (LrcSSM,
    whose Jacobian changes with the input).
    """
    if not hasattr(layer, "eigenvalues"):
        return math.nan
    return float(np.median(_timescales(layer.eigenvalues(), tol)))


def _timescales(keep, tol: float) -> np.ndarray:
    """−1/ln|keep|, the steps until |keep|^k = 1/e; ``inf`` where |keep| ≥ 1 − ``tol``."""
    radius = np.abs(np.asarray(keep, np.complex128)).ravel()
    with np.errstate(divide="ignore"):
        return np.where(radius < 1.0 - tol, -1.0 / np.log(np.minimum(radius, 1.0 - tol)), np.inf)


def state_timescales(model, X=None, *, tol: float = 1e-6) -> np.ndarray:
    """How long every state of a trained model remembers, in steps: −1/ln of the share of itself a state
    keeps per step, one entry per state of every SSM layer, ``inf`` where nothing decays.

    For the linear layers the share is |λ| of each mode of every unique block (``layer.eigenvalues()``; the
    cases ``X`` are not needed). LrcSSM's Jacobian depends on its input, so there it is each state's
    median over the cases and steps of ``X`` (``(batch, T, in_features)``) of its diagonal Jacobian J_t
    (``LrcSSM.state_jacobian``), in every block application, on what that application's layer reads
    (``model.ssm_inputs``): one entry per state and application. ``model`` in eval mode.
    """
    layers = [block.ssm for block in model.blocks]
    if all(hasattr(layer, "eigenvalues") for layer in layers):
        return _timescales(np.concatenate([np.asarray(layer.eigenvalues()) for layer in layers]), tol)
    if X is None:
        raise ValueError("an LrcSSM state's memory depends on its input: pass the cases X")
    inputs = model.ssm_inputs(jnp.asarray(X, jnp.float32))
    keep = [np.median(np.asarray(model.blocks[j].ssm.state_jacobian(u)).reshape(-1, model.config.state), axis=0)
            for j, u in zip(model.schedule(), inputs)]
    return _timescales(np.concatenate(keep), tol)


def decay_time(envelope) -> float:
    """First lag k at which ``envelope[k] < envelope.max() / e`` after the peak; ``inf`` if it never does."""
    env = np.asarray(envelope, np.float64)
    peak = int(np.argmax(env))
    below = np.flatnonzero(env[peak:] < env[peak] / math.e)
    return float(peak + below[0]) if below.size else math.inf


def scan_gap(layer, u) -> dict:
    """max |parallel − sequential| and max |y| of ``layer`` on ``u`` (shape ``(..., T, hidden)``)."""
    y_par = np.asarray(layer(u, mode="parallel"), np.float64)
    y_seq = np.asarray(layer(u, mode="sequential"), np.float64)
    gap, scale = float(np.max(np.abs(y_par - y_seq))), float(np.max(np.abs(y_seq)))
    return {"max_abs_diff": gap, "max_abs_y": scale, "relative": gap / scale if scale else 0.0}

