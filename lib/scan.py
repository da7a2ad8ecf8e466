"""Linear recurrences along time: the parallel (associative) scan and its sequential reference.

Every linear block in `lib.ssm` reduces to one of two recurrences over the time axis (axis -2 of
an array shaped ``(..., T, N)``), started from a zero state:

* diagonal:  h_t = a_t ⊙ h_{t-1} + b_t                                  (LRU, S5)
* 2×2 block: [z_t; y_t] = M_t [z_{t-1}; y_{t-1}] + [f_t; g_t]            (LinOSS)

Both are computed with ``jax.lax.associative_scan`` using the operator of S5 (Smith et al. 2023,
§2.2 and App. H), (A_i, b_i) • (A_j, b_j) = (A_j A_i, A_j b_i + b_j), which is associative because
affine maps compose associatively. ``mode="sequential"`` runs the same recurrence with
``jax.lax.scan``, one step at a time: the reference the parallel path is checked against, and on a
CPU the faster of the two (``lib.bench scan``; ``lib.train.default_mode``). A transition without a
time axis (a time-invariant ``a`` or ``M``, as in every LTI layer) is not broadcast over time on the
sequential path: the step closes over it.

``complex_recurrence`` is the diagonal recurrence for a complex ``a`` and ``b`` held as real and
imaginary parts: the same numbers in real arithmetic (XLA's CPU backend runs complex products several
times slower than the real ones they expand to).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

MODES = ("parallel", "sequential")


def check_mode(mode: str) -> None:
    """ValueError unless ``mode`` is one of ``MODES``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _time_invariant(a) -> bool:
    """True for a transition with no time axis (at most one dimension: one value per state)."""
    return jnp.ndim(a) <= 1


def diagonal_operator(left, right):
    """S5's binary operator for diagonal transitions: (a_i, b_i) • (a_j, b_j) = (a_j a_i, a_j b_i + b_j)."""
    a_i, b_i = left
    a_j, b_j = right
    return a_j * a_i, a_j * b_i + b_j


def linear_recurrence(a, b, *, mode: str = "parallel"):
    """h_t = a_t ⊙ h_{t-1} + b_t with h_{-1} = 0, over axis -2 of ``b`` (shape ``(..., T, N)``).

    ``a`` broadcasts against ``b`` (a time-invariant ``a`` of shape ``(N,)`` is fine). Returns all
    states ``h`` with the shape and dtype of ``b`` (complex if either input is complex).
    """
    check_mode(mode)
    dtype = jnp.result_type(a, b)
    b = jnp.asarray(b, dtype)
    a0 = a
    a = jnp.broadcast_to(jnp.asarray(a, dtype), b.shape)
    if mode == "parallel":
        _, h = jax.lax.associative_scan(diagonal_operator, (a, b), axis=b.ndim - 2)
        return h
    b_t = jnp.moveaxis(b, -2, 0)
    if _time_invariant(a0):  # close over a: no (T, ...) copy of it
        a_c = jnp.asarray(a0, dtype)

        def step(h, b):
            h = a_c * h + b
            return h, h

        _, h = jax.lax.scan(step, jnp.zeros_like(b_t[0]), b_t)
        return jnp.moveaxis(h, 0, -2)
    a_t = jnp.moveaxis(a, -2, 0)

    def step(h, ab):
        h = ab[0] * h + ab[1]
        return h, h

    _, h = jax.lax.scan(step, jnp.zeros_like(b_t[0]), (a_t, b_t))
    return jnp.moveaxis(h, 0, -2)


def block2_operator(left, right):
    """The same operator for 2×2-block transitions stored as four diagonals (m11, m12, m21, m22)."""
    (p11, p12, p21, p22), (f1, f2) = left
    (q11, q12, q21, q22), (g1, g2) = right
    M = (q11 * p11 + q12 * p21, q11 * p12 + q12 * p22,
         q21 * p11 + q22 * p21, q21 * p12 + q22 * p22)
    F = (q11 * f1 + q12 * f2 + g1, q21 * f1 + q22 * f2 + g2)
    return M, F


def block2_recurrence(M, F, *, mode: str = "parallel"):
    """[z_t; y_t] = M_t [z_{t-1}; y_{t-1}] + F_t with zero initial state.

    ``M = (m11, m12, m21, m22)``: four arrays broadcastable to the state shape ``(..., T, N)``;
    ``F = (f_z, f_y)``: two arrays of that shape. Returns ``(z, y)``, each ``(..., T, N)``.
    """
    check_mode(mode)
    f1, f2 = F
    dtype = jnp.result_type(*M, f1, f2)
    shape = jnp.broadcast_shapes(jnp.shape(f1), jnp.shape(f2))
    F = tuple(jnp.broadcast_to(jnp.asarray(f, dtype), shape) for f in F)
    Ft = tuple(jnp.moveaxis(f, -2, 0) for f in F)
    zero = jnp.zeros(shape[:-2] + shape[-1:], dtype)
    if mode == "sequential" and all(_time_invariant(m) for m in M):  # close over M
        m11, m12, m21, m22 = (jnp.asarray(m, dtype) for m in M)

        def step(state, g):
            z, y = state
            z, y = m11 * z + m12 * y + g[0], m21 * z + m22 * y + g[1]
            return (z, y), (z, y)

        _, (z, y) = jax.lax.scan(step, (zero, zero), Ft)
        return jnp.moveaxis(z, 0, -2), jnp.moveaxis(y, 0, -2)
    M = tuple(jnp.broadcast_to(jnp.asarray(m, dtype), shape) for m in M)
    if mode == "parallel":
        _, (z, y) = jax.lax.associative_scan(block2_operator, (M, F), axis=len(shape) - 2)
        return z, y
    Mt = tuple(jnp.moveaxis(m, -2, 0) for m in M)

    def step(state, inputs):
        z, y = state
        (m11, m12, m21, m22), (g1, g2) = inputs
        z, y = m11 * z + m12 * y + g1, m21 * z + m22 * y + g2
        return (z, y), (z, y)

    _, (z, y) = jax.lax.scan(step, (zero, zero), (Mt, Ft))
    return jnp.moveaxis(z, 0, -2), jnp.moveaxis(y, 0, -2)


def complex_operator(left, right):
    """``diagonal_operator`` for complex a, b held as real parts: (a_re, a_im, b_re, b_im)."""
    ar, ai, br, bi = left
    cr, ci, dr, di = right
    return (cr * ar - ci * ai, cr * ai + ci * ar, cr * br - ci * bi + dr, cr * bi + ci * br + di)


def complex_recurrence(a, b, *, mode: str = "parallel"):
    """h_t = a_t ⊙ h_{t-1} + b_t with h_{-1} = 0 for complex ``a = (a_re, a_im)``, ``b = (b_re, b_im)``,
    in real arithmetic; returns ``(h_re, h_im)``, each of ``b_re``'s shape ``(..., T, N)``.

    The same recurrence as ``linear_recurrence(a_re + i a_im, b_re + i b_im)``, term by term:
    Re h_t = Re a ⊙ Re h_{t−1} − Im a ⊙ Im h_{t−1} + Re b_t and Im h_t = Re a ⊙ Im h_{t−1} +
    Im a ⊙ Re h_{t−1} + Im b_t. A time-invariant ``a`` (shape ``(N,)``) is closed over on the
    sequential path. (Measured alternatives that were slower on the CPU, ``lib.bench scan``-sized:
    the state packed as one array ``[Re | Im]``, a hand-written adjoint recurrence for the gradient,
    ``lax.scan(unroll=k)`` and k steps per iteration.)
    """
    check_mode(mode)
    (ar, ai), (br, bi) = a, b
    dtype = jnp.result_type(ar, ai, br, bi)
    shape = jnp.broadcast_shapes(jnp.shape(br), jnp.shape(bi))
    br, bi = (jnp.broadcast_to(jnp.asarray(x, dtype), shape) for x in (br, bi))
    zero = jnp.zeros(shape[:-2] + shape[-1:], dtype)
    if mode == "sequential" and _time_invariant(ar) and _time_invariant(ai):
        ar, ai = jnp.asarray(ar, dtype), jnp.asarray(ai, dtype)

        def step(h, b):
            hr, hi = h
            hr, hi = ar * hr - ai * hi + b[0], ar * hi + ai * hr + b[1]
            return (hr, hi), (hr, hi)

        _, (hr, hi) = jax.lax.scan(step, (zero, zero), (jnp.moveaxis(br, -2, 0), jnp.moveaxis(bi, -2, 0)))
        return jnp.moveaxis(hr, 0, -2), jnp.moveaxis(hi, 0, -2)
    ar, ai = (jnp.broadcast_to(jnp.asarray(x, dtype), shape) for x in (ar, ai))
    if mode == "parallel":
        _, _, hr, hi = jax.lax.associative_scan(complex_operator, (ar, ai, br, bi), axis=len(shape) - 2)
        return hr, hi

    def step(h, abi):
        hr, hi = h
        a_r, a_i, b_r, b_i = abi
        hr, hi = a_r * hr - a_i * hi + b_r, a_r * hi + a_i * hr + b_i
        return (hr, hi), (hr, hi)

    _, (hr, hi) = jax.lax.scan(step, (zero, zero), tuple(jnp.moveaxis(x, -2, 0) for x in (ar, ai, br, bi)))
    return jnp.moveaxis(hr, 0, -2), jnp.moveaxis(hi, 0, -2)
