"""Depth and memory in deep *linear* SSMs: closed forms and the small simulations that check them.

Source: "On the interplay between learning and memory in deep state space models" (ICLR 2025
submission, OpenReview ``hgjpO0H0id``), extending Zucchet & Orvieto (2024, arXiv:2405.21064,
"Recurrent neural networks: vanishing and exploding gradients are not the end of the story").
The paper's PDF was not available to us; what it states is known from its OpenReview discussion
(reviews and author responses). The formulas below are standard linear-time-invariant (LTI)
results that we derived to match those statements ("ours"); each docstring says which parts are
quoted from the paper ("FOUND") and which are ours.

Model (paper §3: K layers, scalar state, linear coupling, real λ)::

    x^(k)_t = λ_k x^(k)_{t-1} + b_k u^(k)_t,   y^(k)_t = c_k x^(k)_t,   u^(k+1)_t = y^(k)_t,

with u^(1) = u and x^(k)_{-1} = 0. Names follow the paper: λ → ``lam``, b, c, K; the K-dimensional
equivalent layer is (``A``, ``B``, ``C``) and its diagonal form (``P``, ``Lambda``, ``B_tilde``,
``C_tilde``).

Simulations (``deep_scalar_ssm``, ``fit_student``) run in JAX float32; closed forms run in NumPy
float64 so that they serve as references.
"""
from __future__ import annotations

from functools import partial
from math import comb
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.special import gammaln, hyp2f1

from lib.scan import linear_recurrence

# ----------------------------------------------------------------------------------------------
# 1. The deep scalar SSM
# ----------------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("mode",))
def deep_scalar_ssm(u, lam, b, c, *, mode: str = "parallel"):
    """Run K stacked scalar LTI layers on ``u`` (time on the last axis) and return every output.

    x^(k)_t = λ_k x^(k)_{t-1} + b_k u^(k)_t,  y^(k)_t = c_k x^(k)_t,  u^(k+1) = y^(k)  (paper eq. 6
    with 1-D states). ``lam``, ``b``, ``c`` have length K. Each layer is one call of
    ``lib.scan.linear_recurrence``; the layers are a ``lax.scan`` over k.

    Returns ``y`` of shape ``(K,) + u.shape``: ``y[k-1]`` is the output of layer k (the hidden state
    of layer k is ``y[k-1] / c[k-1]``).
    """
    dtype = jnp.result_type(u, lam, b, c, jnp.float32)
    u = jnp.asarray(u, dtype)
    params = tuple(jnp.asarray(p, dtype) for p in (lam, b, c))

    def layer(v, p):
        lam_k, b_k, c_k = p
        x = linear_recurrence(lam_k, (b_k * v)[..., None], mode=mode)[..., 0]
        y = c_k * x
        return y, y

    _, ys = jax.lax.scan(layer, u, params)
    return ys


@partial(jax.jit, static_argnames=("length", "mode"))
def impulse_response(lam, b, c, length: int, *, mode: str = "parallel"):
    """Impulse responses h^(k)(n), n = 0..length-1, of the stack up to every layer k (shape (K, length)).

    Measured by simulation: ``deep_scalar_ssm`` driven by the one-hot input δ_{t,0}. Closed form for
    identical layers: ``negative_binomial_impulse``.
    """
    u = jnp.zeros((length,), jnp.float32).at[0].set(1.0)
    return deep_scalar_ssm(u, lam, b, c, mode=mode)


def negative_binomial_impulse(lam, K: int, length: int):
    """h_K(n) = C(n+K-1, K-1) λ^n: impulse response of K identical layers with b = c = 1.

    Derivation (ours): H(z) = (1 - λ z^{-1})^{-K}, whose power series has negative binomial
    coefficients. Float64 NumPy.
    """
    n = np.arange(length, dtype=np.float64)
    lam = float(lam)
    if lam == 0.0:
        return (n == 0).astype(np.float64)
    log_binom = gammaln(n + K) - gammaln(K) - gammaln(n + 1)
    return np.exp(log_binom + n * np.log(abs(lam))) * np.sign(lam) ** n


# ----------------------------------------------------------------------------------------------
# 2. Autocorrelation across layers
# ----------------------------------------------------------------------------------------------


def acf_closed_form_layer2(lam, sigma, lags, b=1.0, c=1.0):
    """R^(2)(Δ) = (b c)² σ² λ^|Δ| / (1 - λ²): the ACF of the input of layer 2 under white noise.

    The first layer's output is an AR(1) process (ours: the white-noise case of the ACF
    recursion). ``R(Δ) = E[y_{t+Δ} y_t]`` (definition confirmed by the authors).
    """
    lags = np.abs(np.asarray(lags, dtype=np.float64))
    return (b * c) ** 2 * sigma**2 * float(lam) ** lags / (1.0 - float(lam) ** 2)


def acf_from_impulse(h, lags, sigma=1.0):
    """R(Δ) = σ² Σ_n h(n) h(n+|Δ|): stationary ACF of the response to white noise of variance σ².

    ``h`` has time on its last axis (truncated impulse response; the truncation must be long
    enough for h to have decayed). Returns shape ``h.shape[:-1] + (len(lags),)``.
    """
    h = np.asarray(h, dtype=np.float64)
    L = h.shape[-1]
    out = [np.sum(h[..., : L - abs(int(d))] * h[..., abs(int(d)):], axis=-1) for d in lags]
    return sigma**2 * np.stack(out, axis=-1)


def empirical_acf(y, lags, burn_in: int = 0):
    """Sample ACF  R̂(Δ) = mean_t y_{t+Δ} y_t  over t ≥ burn_in (time on the last axis, no demeaning:
    every process here has mean zero). Returns shape ``y.shape[:-1] + (len(lags),)``."""
    y = np.asarray(y, dtype=np.float64)[..., burn_in:]
    T = y.shape[-1]
    out = [np.mean(y[..., : T - abs(int(d))] * y[..., abs(int(d)):], axis=-1) for d in lags]
    return np.stack(out, axis=-1)


def acf_propagate(R, lam, b=1.0, c=1.0):
    """One layer of the ACF recursion on lags 0..L (ours)::

        R_out(Δ) = (b c)² Σ_{n,m ≥ 0} λ^{n+m} R(Δ - n + m) = (b c)²/(1-λ²) Σ_j λ^{|j|} R(Δ - j).

    The second form sums over j = m - n first, using ``Σ_n λ^{2n+|j|} = λ^{|j|}/(1-λ²)``. ``R`` is
    one-sided (R(-Δ) = R(Δ), a stationary real process) and treated as zero beyond lag L, so keep L
    several correlation times long. Float64 NumPy.
    """
    R = np.asarray(R, dtype=np.float64)
    L = R.shape[-1] - 1
    two_sided = np.concatenate([R[:0:-1], R])
    j = np.arange(-L, L + 1)
    kernel = (b * c) ** 2 * float(lam) ** np.abs(j) / (1.0 - float(lam) ** 2)
    full = np.convolve(two_sided, kernel, mode="same")
    return full[L:]


def acf_through_layers(R, lam, b=None, c=None):
    """ACFs at the input and after every layer: shape (K+1, L+1), row 0 is ``R``."""
    K = len(lam)
    b = np.ones(K) if b is None else np.asarray(b)
    c = np.ones(K) if c is None else np.asarray(c)
    out = [np.asarray(R, dtype=np.float64)]
    for k in range(K):
        out.append(acf_propagate(out[-1], lam[k], b[k], c[k]))
    return np.stack(out)


def correlation_time(R):
    """``τ_c = Σ_{Δ≥0} |R(Δ)| / R(0)`` on the lags given: a width of the ACF (larger = more memory)."""
    R = np.asarray(R, dtype=np.float64)
    return np.sum(np.abs(R), axis=-1) / R[..., 0]


# ----------------------------------------------------------------------------------------------
# 3. Hidden-state variance
# ----------------------------------------------------------------------------------------------


def state_variance_from_acf(lam, R, b=1.0):
    """E[x_t²] = b²/(1-λ²) · [R(0) + 2 Σ_{Δ≥1} λ^Δ R(Δ)] for a stationary symmetric input ACF R.

    Zucchet & Orvieto's lemma in the symmetric-input form the paper's Lemma 1 uses (FOUND: the
    lemma "differs ... by the assumption of symmetry of the inputs"; the formula itself is ours).
    ``R`` is one-sided on lags 0..L.
    """
    R = np.asarray(R, dtype=np.float64)
    d = np.arange(R.shape[-1])
    lam = float(lam)
    return b**2 / (1.0 - lam**2) * (R[..., 0] + 2.0 * np.sum(lam ** d[1:] * R[..., 1:], axis=-1))


def state_variance_exp_acf(lam, rho, R0=1.0, b=1.0):
    """E[x_t²] = b² R(0) (1 + λρ) / ((1 - λ²)(1 - λρ)) for an input with ACF R(Δ) = R(0) ρ^|Δ|.

    ρ = 0 is white noise: b² σ²/(1-λ²), the "curse of memory" of Zucchet & Orvieto (ours).
    """
    return b**2 * R0 * (1.0 + lam * rho) / ((1.0 - lam**2) * (1.0 - lam * rho))


def variance_identical_layers(lam, K: int, sigma=1.0):
    """Var of the K-th layer's state, K identical layers (b = c = 1), white-noise input of variance σ²::

        Var_K = Σ_n h_K(n)² = ₂F₁(K, K; 1; λ²) = (1-λ²)^{-(2K-1)} Σ_{j=0}^{K-1} C(K-1, j)² λ^{2j}.

    (ours: Parseval on the negative binomial impulse response, then Euler's transformation
    ₂F₁(a,b;c;z) = (1-z)^{c-a-b} ₂F₁(c-a,c-b;c;z), which terminates.) K=1: 1/(1-λ²);
    K=2: (1+λ²)/(1-λ²)³. ``lam`` may be an array. Float64 NumPy.
    """
    lam2 = np.asarray(lam, dtype=np.float64) ** 2
    s = sum(comb(K - 1, j) ** 2 * lam2**j for j in range(K))
    return sigma**2 * s / (1.0 - lam2) ** (2 * K - 1)


def variance_identical_layers_2f1(lam, K: int, sigma=1.0):
    """The same variance through SciPy's ₂F₁(K, K; 1; λ²): an independent check of the finite sum."""
    return sigma**2 * hyp2f1(K, K, 1.0, np.asarray(lam, dtype=np.float64) ** 2)


def variance_from_impulse(h, sigma=1.0):
    """σ² Σ_n h(n)²: stationary variance of the white-noise response (Parseval), time on the last axis."""
    h = np.asarray(h, dtype=np.float64)
    return sigma**2 * np.sum(h**2, axis=-1)


# ----------------------------------------------------------------------------------------------
# 4. Frequency response and group delay
# ----------------------------------------------------------------------------------------------


def frequency_response(lam, b, c, omega):
    """H(e^{iω}) = Π_k b_k c_k / (1 - λ_k e^{-iω}) (paper Prop. 2 form; real or complex λ)."""
    lam = np.asarray(lam, dtype=np.complex128)[:, None]
    z_inv = np.exp(-1j * np.atleast_1d(np.asarray(omega, dtype=np.float64)))[None, :]
    gain = np.prod(np.asarray(b) * np.asarray(c))
    return (gain * np.prod(1.0 / (1.0 - lam * z_inv), axis=0)).reshape(np.shape(omega))


def group_delay(lam, omega):
    """τ(ω) = -d arg H(e^{iω})/dω = Σ_k (r_k cos(ω-φ_k) - r_k²) / (1 - 2 r_k cos(ω-φ_k) + r_k²),

    with λ_k = r_k e^{iφ_k} (φ = 0 for real λ). Derived from the Prop. 2 frequency response (App. B
    derives "the form of the group delay"; this closed form is ours). The gains b_k c_k only
    shift the phase by a constant, so they do not enter. ``omega`` may be an array.
    """
    lam = np.asarray(lam)
    r = np.abs(lam).astype(np.float64)[:, None]
    phi = np.angle(lam).astype(np.float64)[:, None]
    cos = np.cos(np.atleast_1d(np.asarray(omega, dtype=np.float64))[None, :] - phi)
    tau = np.sum((r * cos - r**2) / (1.0 - 2.0 * r * cos + r**2), axis=0)
    return tau.reshape(np.shape(omega))


def group_delay_modes(residue, lam, omega):
    """Group delay of a diagonal (wide) SSM H(z) = Σ_k r_k / (1 - λ_k z^{-1}): τ = -Im(H'(ω)/H(ω)), with
    H'(ω) = -i Σ_k r_k λ_k e^{-iω} / (1 - λ_k e^{-iω})². Same eigenvalues with other residues
    (i.e. other B̃, C̃) give another delay: B and C shape the memory without touching the spectrum.
    """
    r = np.asarray(residue, dtype=np.complex128)[:, None]
    lam = np.asarray(lam, dtype=np.complex128)[:, None]
    e = np.exp(-1j * np.atleast_1d(np.asarray(omega, dtype=np.float64)))[None, :]
    H = np.sum(r / (1.0 - lam * e), axis=0)
    dH = -1j * np.sum(r * lam * e / (1.0 - lam * e) ** 2, axis=0)
    return (-np.imag(dH / H)).reshape(np.shape(omega))


def dc_group_delay(lam):
    """τ(0) = Σ_k λ_k / (1 - λ_k) for real λ_k ∈ [0, 1) (the ω = 0 value of ``group_delay``)."""
    lam = np.asarray(lam, dtype=np.float64)
    return np.sum(lam / (1.0 - lam), axis=-1)


def centre_of_mass(h):
    """n̄ = Σ_n n h(n) / Σ_n h(n) (time on the last axis): the DC group delay τ(0) of H(z) = Σ h(n) z^{-n}
    whenever Σ h(n) ≠ 0 (differentiate the phase of H(e^{iω}) at ω = 0)."""
    h = np.asarray(h, dtype=np.float64)
    n = np.arange(h.shape[-1])
    return np.sum(n * h, axis=-1) / np.sum(h, axis=-1)


# ----------------------------------------------------------------------------------------------
# 5. Deep = shallow-wide
# ----------------------------------------------------------------------------------------------


class WideSSM(NamedTuple):
    """One K-dimensional layer x_t = A x_{t-1} + B u_t, y_t = C x_t and its diagonal form
    x̃ = P^{-1} x:  x̃_t = Λ̃ x̃_{t-1} + B̃ u_t,  y_t = C̃ x̃_t."""

    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    P: np.ndarray
    Lambda: np.ndarray
    B_tilde: np.ndarray
    C_tilde: np.ndarray


def wide_equivalent(lam, b, c) -> WideSSM:
    """The K-layer scalar stack as one K-dimensional layer (paper §3.3, eqs. 8-9; matrices ours).

    Stacking x_t = (x^(1)_t, ..., x^(K)_t): (I - N) x_t = Λ x_{t-1} + b_1 e_1 u_t with
    N_{k,k-1} = b_k c_{k-1}, Λ = diag(λ). Hence::

        A = (I - N)^{-1} Λ (lower triangular, eigenvalues {λ_k}),
        B = (I - N)^{-1} e_1 b_1  (B_k = b_1 Π_{j=2..k} b_j c_{j-1}),   C = c_K e_K^T.

    For distinct λ_k, A = P Λ̃ P^{-1} (unit-norm eigenvectors, Λ̃ in the order of ``lam``), and
    B̃ = P^{-1} B, C̃ = C P. Float64 NumPy.
    """
    lam = np.asarray(lam, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    K = lam.shape[0]
    N = np.zeros((K, K))
    N[np.arange(1, K), np.arange(K - 1)] = b[1:] * c[:-1]
    M = np.linalg.inv(np.eye(K) - N)
    A = M @ np.diag(lam)
    B = M[:, 0] * b[0]
    C = np.zeros(K)
    C[-1] = c[-1]
    evals, P = np.linalg.eig(A)
    order = [int(np.argmin(np.abs(evals - l))) for l in lam]
    evals, P = np.real_if_close(evals[order]), np.real_if_close(P[:, order])
    B_tilde = np.linalg.solve(P, B)
    C_tilde = C @ P
    return WideSSM(A, B, C, P, evals, B_tilde, C_tilde)


@jax.jit
def wide_ssm(u, A, B, C):
    """y_t = C x_t with x_t = A x_{t-1} + B u_t (dense K×K ``A``, time on the last axis of ``u``)."""
    u = jnp.asarray(u, jnp.float32)
    A, B, C = (jnp.asarray(m, jnp.float32) for m in (A, B, C))

    def step(x, u_t):
        x = A @ x + B * u_t
        return x, C @ x

    _, y = jax.lax.scan(step, jnp.zeros(A.shape[0], jnp.float32), u)
    return y


@jax.jit
def diagonal_ssm(u, Lambda, B_tilde, C_tilde):
    """y_t = C̃ x̃_t with x̃_t = Λ̃ ⊙ x̃_{t-1} + B̃ u_t (diagonal, via ``lib.scan.linear_recurrence``)."""
    x = linear_recurrence(Lambda, u[..., :, None] * B_tilde)
    y = x @ C_tilde
    return jnp.real(y) if jnp.iscomplexobj(y) and not jnp.iscomplexobj(u) else y


def residues(lam, b, c):
    """r_k = (Π_j b_j c_j) λ_k^{K-1} / Π_{j≠k} (λ_k - λ_j): H(z) = Σ_k r_k / (1 - λ_k z^{-1}).

    Partial fractions of the stack's transfer function (ours); r_k = B̃_k C̃_k of
    ``wide_equivalent``. For λ's a distance δ apart, ``|r_k| ~ δ^-(K-1)``: the wide form needs large
    B̃, C̃ (FOUND: the authors' explanation of why the wide form is harder to train).
    """
    lam = np.asarray(lam, dtype=np.float64)
    K = lam.shape[0]
    gain = np.prod(np.asarray(b, dtype=np.float64) * np.asarray(c, dtype=np.float64))
    diff = lam[:, None] - lam[None, :]
    np.fill_diagonal(diff, 1.0)
    return gain * lam ** (K - 1) / np.prod(diff, axis=1)


# ----------------------------------------------------------------------------------------------
# 6. Teacher-student
# ----------------------------------------------------------------------------------------------


def matched_student_lambda(lam_star, K):
    """λ' = λ* / (K - (K-1) λ*): the common λ of K identical layers with the DC group delay of one
    teacher layer, K λ'/(1-λ') = λ*/(1-λ*) (ours). λ* = 0.99, K = 2 → λ' ≈ 0.9802."""
    return lam_star / (K - (K - 1) * lam_star)


def make_teacher(lam_star=0.99):
    """One-layer teacher (λ*, b* = sqrt(1-λ*²), c* = 1): unit-variance targets under white noise."""
    return (np.array([lam_star]), np.array([np.sqrt(1.0 - lam_star**2)]), np.array([1.0]))


def lam_from_nu(nu):
    """λ = exp(-exp(ν)) ∈ (0, 1): the LRU's stable parameterisation (Orvieto et al. 2023)."""
    return jnp.exp(-jnp.exp(nu))


def nu_from_lam(lam):
    """ν = log(-log λ), the inverse of ``lam_from_nu``."""
    return jnp.log(-jnp.log(lam))


def _student_params(p, active, norm, tied):
    """Per-layer (λ, b, c) of a student with ``K_max`` slots; inactive slots are identity layers.
    ``tied``: every active layer uses slot 0's parameters (a looped, weight-tied stack)."""
    if tied:
        p = {k: jnp.broadcast_to(v[:1], v.shape) for k, v in p.items()}
    lam = lam_from_nu(p["nu"])
    b = p["b"] * jnp.sqrt(1.0 - lam**2) if norm == "lru" else p["b"]
    return (jnp.where(active, lam, 0.0), jnp.where(active, b, 1.0), jnp.where(active, p["c"], 1.0))


@partial(jax.jit, static_argnames=("K_max", "steps", "T", "batch", "loss", "norm", "tied", "mode"))
def _fit(key, K, teacher, K_max, steps, lr, T, batch, lam_lo, lam_hi, loss, norm, tied, mode):
    """One student with K active layers out of K_max slots (K traced, so one compile serves every K)."""
    t_lam, t_b, t_c = teacher
    active = jnp.arange(K_max) < K
    k_init, k_data = jax.random.split(key)
    lam0 = jax.random.uniform(k_init, (K_max,), minval=lam_lo, maxval=lam_hi)
    b0 = jnp.ones((K_max,)) if norm == "lru" else jnp.sqrt(1.0 - lam0**2)
    params = {"nu": nu_from_lam(lam0), "b": b0, "c": jnp.ones((K_max,))}
    # Balanced unit-variance init: the K-layer output variance explodes with depth (Sec. 3), so
    # rescale every active c_k by the same factor to make Σ_n h(n)² = 1 (the teacher's value).
    h0 = impulse_response(*_student_params(params, active, norm, tied), 4 * T, mode=mode)[-1]
    energy = jnp.sum(h0**2)
    params["c"] = params["c"] * energy ** (-0.5 / K)
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps))
    state = opt.init(params)
    weight = (T - jnp.arange(T)) / T  # E_u[mean_t (y_t - y*_t)^2] = sum_n (T-n)/T (h(n) - h*(n))^2
    h_star = impulse_response(t_lam, t_b, t_c, T, mode=mode)[-1]

    def loss_fn(p, u, target):
        if loss == "expected":
            h = impulse_response(*_student_params(p, active, norm, tied), T, mode=mode)[-1]
            return jnp.sum(weight * (h - h_star) ** 2)
        y = deep_scalar_ssm(u, *_student_params(p, active, norm, tied), mode=mode)[-1]
        return jnp.mean((y - target) ** 2)

    def step(carry, i):
        p, s = carry
        if loss == "expected":
            u = target = None
        else:
            u = jax.random.normal(jax.random.fold_in(k_data, i), (batch, T))
            target = deep_scalar_ssm(u, t_lam, t_b, t_c, mode=mode)[-1]
        loss_i, g = jax.value_and_grad(loss_fn)(p, u, target)
        upd, s = opt.update(g, s, p)
        p = optax.apply_updates(p, upd)
        return (p, s), (loss_i, _student_params(p, active, norm, tied)[0])

    lam_init = _student_params(params, active, norm, tied)[0]
    (params, _), (losses, lam) = jax.lax.scan(step, (params, state), jnp.arange(steps))
    lam = jnp.where(active, jnp.concatenate([lam_init[None], lam]), jnp.nan)
    lam_f, b_f, c_f = _student_params(params, active, norm, tied)
    return {"lam": lam, "loss": losses, "b": jnp.where(active, b_f, jnp.nan),
            "c": jnp.where(active, c_f, jnp.nan)}


def _fit_args(teacher, steps, lr, T, batch, lam_init, loss, norm, tied, mode):
    if loss not in ("sampled", "expected"):
        raise ValueError(f"loss must be 'sampled' or 'expected', got {loss!r}")
    if norm not in ("lru", "none"):
        raise ValueError(f"norm must be 'lru' or 'none', got {norm!r}")
    teacher = tuple(jnp.asarray(t, jnp.float32) for t in teacher)
    return dict(teacher=teacher, steps=steps, lr=lr, T=T, batch=batch, lam_lo=lam_init[0],
                lam_hi=lam_init[1], loss=loss, norm=norm, tied=bool(tied), mode=mode)


def fit_student(teacher, K: int, steps: int = 1000, lr: float = 0.01, seed=0, T: int = 300,
                batch: int = 32, lam_init=(0.5, 0.9), loss: str = "sampled", norm: str = "lru",
                tied: bool = False, mode: str = "sequential"):
    """Train a K-layer scalar linear SSM student with Adam (cosine-decayed ``lr``) to match a fixed
    teacher stack ``teacher = (lam, b, c)`` on white-noise inputs u ~ N(0, 1): the linear system
    identification task of Zucchet & Orvieto (2024), whose scan used T = 300 and Adam with a cosine
    schedule (the paper's own settings are unknown).

    * ``loss="sampled"``: MSE on a fresh (batch, T) white-noise draw at every step.
    * ``loss="expected"``: its exact expectation over u, Σ_{n<T} (T-n)/T (h(n) - h*(n))² (zero initial
      state), i.e. full-batch gradient descent on the population loss (no sampling noise).

    Student layer k: λ_k = exp(-exp(ν_k)) ∈ (0, 1); ``norm="lru"``: b_k = sqrt(1-λ_k²) β_k (the LRU's
    input normalisation γ), β_k(0) = 1; ``norm="none"``: b_k trained directly, b_k(0) = sqrt(1-λ_k(0)²).
    c_k(0) = s for all k, with s chosen so the student's initial output has unit variance under white
    noise (the K-layer variance explodes with depth otherwise, and Adam's second-moment estimate then
    keeps the steps tiny for thousands of iterations). λ_k(0) ~ U[lam_init] (lam_init = (a, a) starts
    all layers equal). ν, b (or β), c are trained. ``tied=True`` shares one (λ, b, c) across the K
    layers: a looped (weight-tied) student. ``mode`` is the scan of ``lib.scan.linear_recurrence``:
    "sequential" compiles much faster on CPU inside the training loop (same numbers up to float32
    rounding). Deterministic given ``seed``; a sequence of seeds is vmapped (leading seed axis).

    Returns NumPy arrays: ``lam`` (steps+1, K) per-layer λ (row 0 = init), ``loss`` (steps,), the
    final effective ``b`` and ``c`` (K,).
    """
    kw = _fit_args(teacher, steps, lr, T, batch, lam_init, loss, norm, tied, mode)
    if np.ndim(seed) == 0:
        out = _fit(jax.random.PRNGKey(int(seed)), K, K_max=K, **kw)
    else:
        keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seed])
        out = jax.vmap(lambda k: _fit(k, K, K_max=K, **kw))(keys)
    return {k: np.asarray(v) for k, v in out.items()}


def fit_students(teacher, Ks, seeds, steps: int = 1000, lr: float = 0.01, T: int = 300,
                 batch: int = 32, lam_init=(0.5, 0.9), loss: str = "sampled", norm: str = "lru",
                 tied: bool = False, mode: str = "sequential"):
    """``fit_student`` over a grid of depths × seeds in one compiled, vmapped program.

    Students have max(Ks) layer slots; the slots beyond a student's K are identity layers
    (λ = 0, b = c = 1, never trained), so one compilation serves every depth. The initial λ's are
    drawn for max(Ks) slots, so a student here does not start from the same λ's as ``fit_student``
    with the same seed. Outputs have leading axes (len(Ks), len(seeds)); ``lam``, ``b``, ``c`` are
    NaN in inactive slots.
    """
    kw = _fit_args(teacher, steps, lr, T, batch, lam_init, loss, norm, tied, mode)
    K_max = int(max(Ks))
    keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
    Kv = jnp.asarray(Ks, jnp.int32)
    fit = lambda k, K: _fit(k, K, K_max=K_max, **kw)  # noqa: E731
    out = jax.vmap(lambda K: jax.vmap(lambda k: fit(k, K))(keys))(Kv)
    return {k: np.asarray(v) for k, v in out.items()}


def best_equal_lambda(teacher, K: int, T: int | None = 300):
    """The λ of K *identical* layers that minimises the expected MSE to ``teacher = (lam, b, c)``:

        min_{λ, G} Σ_n w_n (G h_K(n; λ) - h*(n))²,   w_n = (T-n)/T (n < T), or w_n = 1 if T is None,

    with h_K the negative binomial impulse response and the gain G solved in closed form. This is
    where a looped (tied) student trained on the white-noise task should land (ours: a numerical
    optimum, not a formula from the paper). Returns (λ_eq, loss at λ_eq).
    """
    from scipy.optimize import minimize_scalar

    t_lam = np.asarray(teacher[0], dtype=np.float64)
    L = T if T is not None else int(60 / (1.0 - np.max(np.abs(t_lam)))) + 1000
    h_star = np.asarray(impulse_response(*teacher, L, mode="sequential")[-1], dtype=np.float64)
    w = (T - np.arange(L)) / T if T is not None else np.ones(L)

    def loss(lam):
        h = negative_binomial_impulse(lam, K, L)
        G = np.sum(w * h * h_star) / np.sum(w * h * h)
        return np.sum(w * (G * h - h_star) ** 2)

    res = minimize_scalar(loss, bounds=(1e-6, 1.0 - 1e-6), method="bounded",
                          options={"xatol": 1e-9})
    return float(res.x), float(res.fun)
