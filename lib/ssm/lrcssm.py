"""LrcSSM: the liquid-resistance liquid-capacitance cell with a diagonal Jacobian.

Farsang, Hasani, Rus & Grosu, "Parallelization of Non-linear State-Space Models: Scaling Up
Liquid-Resistance Liquid-Capacitance Networks for Efficient Sequence Modeling" (NeurIPS 2025,
arXiv 2505.21717; v1/v2 titled "Scaling Up Liquid-Resistance ..."); peer code MoniFarsang/LrcSSM
``experiments/lrc_ssm/LRC_diagmat.py`` (class ``LRCU``). Elementwise over the P = ``state`` units, with
input u_t of width H = ``hidden`` and x_{-1} = 0:

    s_u = σ(σ_s ⊙ (u_t − μ_s))                       sensory synapses, per input channel (H)
    s_x = σ(σ_x ⊙ (x_{t−1} − μ_x))                   recurrent synapses, per state (P)
    a   = −σ(g_leak + W_f s_u + w_f ⊙ s_x)           liquid resistance (decay)
    b   = v_leak ⊙ tanh(g_leak + W_z s_u + w_z ⊙ s_x)  drive (the same g_leak as in a)
    ε   = σ(k ⊙ x_{t−1} + β) · Δt,  Δt = ``step`` = 1  liquid capacitance (elastance)
    x_t = f(x_{t−1}, u_t) = x_{t−1} + ε ⊙ (a ⊙ x_{t−1} + b)

x_{t−1} enters only elementwise, so the Jacobian J_t = ∂x_t/∂x_{t−1} is diagonal.

Init, as the peer code: every parameter ~ U(±1/√P), P the *state* size (``lim = sqrt(1/hidden_size)``
in ``LRCU``, via equinox ``default_init``), including the H-sized σ_s, μ_s and the P×H matrices W_f,
W_z (in the paper's configuration H = P = 64, so this equals the fan-in rule). The peer's
``weight_elastance_shift`` belongs to the "symmetric" elastance, which is off in every run script; it
is omitted (8,832 instead of 8,896 parameters per cell at H = P = 64).

Output: the states x, shape (..., T, P). If P != H the layer adds a linear readout y_t = C x_t,
C ∈ R^{H×P} ~ U(±1/√P), no bias (our choice: the peer instead makes its per-block MLP map P → H).

Parallel solve (``mode="parallel"``): DEER (Lim et al., ICLR 2024, "Parallelizing non-linear
sequential models over the sequence length"), Newton's method on the whole trajectory,

    x^{(i+1)}_t = f(x^{(i)}_{t−1}, u_t) + J_t (x^{(i+1)}_{t−1} − x^{(i)}_{t−1}),
    J_t = diag ∂f/∂x at x^{(i)}_{t−1},

a linear diagonal recurrence solved by ``lib.scan.linear_recurrence`` (associative scan), starting
from x^{(0)} = 0. The peer runs ELK's quasi-DEER (Gonzalez et al., NeurIPS 2024, "Towards scalable
and stable parallelization of nonlinear RNNs"), which keeps only diag J; here J is diagonal, so that
is exact Newton. The peer iterates to max|Δx| ≤ 1e-4 (fp32) in a ``while_loop`` (``max_iter``
10000); here the count is fixed (``newton_iters``) so the cost is known in advance, or, with
``newton_tol``, the loop stops early once max|Δx| ≤ ``newton_tol`` (at most ``newton_iters`` steps).
The first ``newton_iters − 1`` steps run under ``stop_gradient``, with intermediate iterates clipped
to ±1e8 and NaN set to 0 as in ELK's ``deer.py``; the last step is differentiable with J held fixed,
which at the fixed point x* gives dx*/dθ = (I − J·shift)^{-1} ∂f/∂θ, the implicit-function gradient
(what the peer's custom VJP computes).

Default ``newton_iters = 12``, measured with ``newton_residual`` (max over all entries of
|x^(i) − x_seq|, from x^(0) = 0, N(0, 1) inputs, T = 2000–3000): at init 2 steps reach ≤ 1e-5
(H = P = 16 and 64); with every parameter scaled ×4 (a stand-in for weights grown in training) 4–5
steps; ×8 (states up to ~40) 8 steps to ≤ 1e-4 and 9 to 1e-6 relative (without the clip, step 2
overshoots past 1e26); ×16 (states ~2e3) is at its float32 floor, 4e-6 relative, by step 11.
``tests/test_lrcssm.py`` checks the ×1 and ×4 cases.
"""
from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from lib.scan import linear_recurrence
from lib.ssm import check_input, check_sizes

sigmoid = jax.nn.sigmoid
CLIP = 1e8  # bound on intermediate Newton iterates, as ELK's deer.py (clip_ytnext)
PARAMS = ("sigma_s", "mu_s", "W_f", "W_z", "sigma_x", "mu_x", "w_f", "w_z", "g_leak", "v_leak", "k", "beta")


# ---- the cell ------------------------------------------------------------------------------------
def sensory(p, u):
    """The x-independent parts W_f s_u and W_z s_u, for all t at once: two (..., T, P) arrays."""
    s_u = sigmoid(p["sigma_s"] * (u - p["mu_s"]))
    return s_u @ p["W_f"].T, s_u @ p["W_z"].T


def cell(p, x, Wf_su, Wz_su, step=1.0):
    """One step x_{t-1} -> x_t = f(x_{t-1}, u_t); elementwise in x, broadcasts over leading axes."""
    s_x = sigmoid(p["sigma_x"] * (x - p["mu_x"]))
    a = -sigmoid(p["g_leak"] + Wf_su + p["w_f"] * s_x)
    b = p["v_leak"] * jnp.tanh(p["g_leak"] + Wz_su + p["w_z"] * s_x)
    eps = sigmoid(p["k"] * x + p["beta"]) * step
    return x + eps * (a * x + b)


def cell_and_jacobian(p, x_prev, Wf_su, Wz_su, step=1.0):
    """``f(x_{t-1}, u_t)`` and its diagonal Jacobian ∂f/∂x_{t-1} for all t at once: f is elementwise in x,
    so the JVP along ones is exactly the diagonal."""
    return jax.jvp(lambda y: cell(p, y, Wf_su, Wz_su, step), (x_prev,), (jnp.ones_like(x_prev),))


# ---- solvers (drive = sensory(p, u); states (..., T, P)) ----------------------------------------
def _scan_cells(p, drive, step):
    def body(x, d):
        x = cell(p, x, *d, step)
        return x, x
    d_t = tuple(jnp.moveaxis(d, -2, 0) for d in drive)
    _, xs = jax.lax.scan(body, jnp.zeros_like(d_t[0][0]), d_t)
    return jnp.moveaxis(xs, 0, -2)


def _shift(x):
    """x_{t-1} for every t, with x_{-1} = 0 (axis -2)."""
    return jnp.concatenate([jnp.zeros_like(x[..., :1, :]), x[..., :-1, :]], axis=-2)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def solve_sequential(p, drive, step):
    """The states x_t = f(x_{t-1}, u_t) from x_{-1} = 0, one step at a time (``lax.scan``).

    Its gradient is the adjoint recurrence written out rather than ``lax.scan``'s own transpose (the
    same chain rule, fewer passes): with J_t = ∂f/∂x at (x_{t-1}, u_t) (diagonal),
    λ_t = g_t + J_{t+1} λ_{t+1} is one linear recurrence backwards in time, and the gradients of the
    parameters and of the drive are one vectorised VJP of f over all t with cotangent λ — no
    per-step reductions inside the loop (``lib.bench train``: 1.1–1.4× a training step). A custom
    VJP: reverse mode only (``jax.jvp`` through the sequential solve is not defined).
    """
    return _scan_cells(p, drive, step)


def _solve_sequential_fwd(p, drive, step):
    xs = _scan_cells(p, drive, step)
    return xs, (p, drive, xs)


def _solve_sequential_bwd(step, res, g):
    p, drive, xs = res
    x_prev = _shift(xs)
    f = lambda p, d: cell(p, x_prev, *d, step)  # noqa: E731  all t at once
    _, J = cell_and_jacobian(p, x_prev, *drive, step)

    def back(carry, jg):  # carry = J_{t+1} λ_{t+1}
        lam = carry + jg[1]  # λ_t = J_{t+1} λ_{t+1} + g_t
        return jg[0] * lam, lam

    J_t, g_t = jnp.moveaxis(J, -2, 0), jnp.moveaxis(g, -2, 0)
    _, lam = jax.lax.scan(back, jnp.zeros_like(g_t[0]), (J_t, g_t), reverse=True)
    _, vjp = jax.vjp(f, p, drive)
    return vjp(jnp.moveaxis(lam, 0, -2))


solve_sequential.defvjp(_solve_sequential_fwd, _solve_sequential_bwd)


def newton_step(p, drive, x, step, fixed_jacobian=False):
    """One DEER step from the trajectory guess ``x``: returns the next guess."""
    x_prev = _shift(x)
    fx, J = cell_and_jacobian(p, x_prev, *drive, step)
    if fixed_jacobian:
        J = jax.lax.stop_gradient(J)
    x = linear_recurrence(J, fx - J * x_prev, mode="parallel")
    if fixed_jacobian:
        return x
    # The peer's guard for intermediate iterates ("workaround for rnn" in ELK's deer.py).
    return jnp.where(jnp.isnan(x), 0.0, jnp.clip(x, -CLIP, CLIP))


def solve_parallel(p, drive, step, iters, tol=None):
    p_sg, drive_sg = jax.lax.stop_gradient((p, drive))
    newton = lambda x: newton_step(p_sg, drive_sg, x, step)
    x, n = jnp.zeros_like(drive[0]), iters - 1
    if tol is None:  # fixed count
        x = jax.lax.fori_loop(0, n, lambda _, x: newton(x), x)
    else:  # stop early once max |x^(i+1) - x^(i)| <= tol (the peer's rule, with tol 1e-4)
        def body(carry):
            i, x, _ = carry
            x_next = newton(x)
            return i + 1, x_next, jnp.max(jnp.abs(x_next - x))
        carry = (0, x, jnp.asarray(jnp.inf, x.dtype))
        x = jax.lax.while_loop(lambda c: (c[0] < n) & (c[2] > tol), body, carry)[1]
    # One differentiable Newton step at the (converged) solution gives the implicit gradient.
    return newton_step(p, drive, jax.lax.stop_gradient(x), step, fixed_jacobian=True)


@partial(jax.jit, static_argnames=("mode", "step", "iters", "tol"))
def solve(p, u, *, mode, step, iters, tol):
    drive = sensory(p, u)
    if mode == "parallel":
        return solve_parallel(p, drive, step, iters, tol)
    return solve_sequential(p, drive, step)


@partial(jax.jit, static_argnames=("step",))
def state_jacobian(p, u, *, step):
    """diag ∂x_t/∂x_{t−1} of the cell along the states that the inputs ``u`` drive, shape (..., T, P).

    J is the share of a state that one step keeps: a state whose J stays near j forgets all but 1/e of
    itself in about −1/ln j steps, its memory timescale (for a linear layer, −1/ln|λ|). At the peers' init
    J ≈ 1 + ε·a ≈ 1 − ½·½, so every state starts with a memory of about 3–4 steps (``tests/test_lrcssm.py``)."""
    p, u = jax.lax.stop_gradient((p, u))
    drive = sensory(p, u)
    x_prev = _shift(_scan_cells(p, drive, step))
    return cell_and_jacobian(p, x_prev, *drive, step)[1]


@partial(jax.jit, static_argnames=("step", "iters"))
def residuals(p, u, *, step, iters):
    """max |x^(i) - x_seq| for the iterates x^(0) = 0, ..., x^(iters), without gradients."""
    p, drive = jax.lax.stop_gradient((p, sensory(p, u)))
    def body(x, _):
        x = newton_step(p, drive, x, step)
        return x, x
    x0 = jnp.zeros_like(drive[0])
    xs = jnp.concatenate([x0[None], jax.lax.scan(body, x0, None, length=iters)[1]])
    return jnp.max(jnp.abs(xs - solve_sequential(p, drive, step)).reshape(iters + 1, -1), axis=1)


class LrcSSM(nnx.Module):
    """LRC cell over ``state`` units; ``(..., T, hidden) -> (..., T, hidden)`` float32."""

    def __init__(self, hidden: int, state: int, *, rngs: nnx.Rngs, newton_iters: int = 12,
                 newton_tol: float | None = None, step: float = 1.0):
        hidden, state, newton_iters = check_sizes(hidden=hidden, state=state, newton_iters=newton_iters)
        if not step > 0:
            raise ValueError(f"step must be positive, got {step!r}")
        if newton_tol is not None and not newton_tol > 0:
            raise ValueError(f"newton_tol must be None or positive, got {newton_tol!r}")
        self.hidden, self.state, self.step = hidden, state, float(step)
        self.newton_iters, self.newton_tol = newton_iters, newton_tol
        lim = 1.0 / math.sqrt(state)
        init = lambda *shape: nnx.Param(
            jax.random.uniform(rngs.params(), shape, jnp.float32, -lim, lim))
        H, P = hidden, state
        self.sigma_s, self.mu_s = init(H), init(H)
        self.W_f, self.W_z = init(P, H), init(P, H)
        self.sigma_x, self.mu_x, self.w_f, self.w_z = init(P), init(P), init(P), init(P)
        self.g_leak, self.v_leak = init(P), init(P)
        self.k, self.beta = init(P), init(P)
        self.C = init(H, P) if P != H else None

    def params(self):
        """The cell parameters as a dict of arrays, keyed by the names in ``PARAMS``."""
        return {n: getattr(self, n)[...] for n in PARAMS}

    def states(self, u, mode: str = "parallel"):
        """The LRC states x, shape (..., T, state)."""
        return solve(self.params(), check_input(u, self.hidden, mode), mode=mode, step=self.step,
                      iters=self.newton_iters, tol=self.newton_tol)

    def __call__(self, u, mode: str = "parallel"):
        x = self.states(u, mode)
        return x if self.C is None else x @ self.C[...].T

    def state_jacobian(self, u):
        """diag ∂x_t/∂x_{t−1} along the states the inputs ``u`` drive (``state_jacobian``): ``(..., T, state)``."""
        return state_jacobian(self.params(), check_input(u, self.hidden), step=self.step)

    def newton_residual(self, u, iters: int | None = None):
        """max |x^(i) - x_seq| over all entries, for i = 0 .. iters (default ``newton_iters``)."""
        iters = self.newton_iters if iters is None else iters
        if not isinstance(iters, int) or iters < 1:
            raise ValueError(f"iters must be a positive int, got {iters!r}")
        return residuals(self.params(), check_input(u, self.hidden), step=self.step, iters=iters)
