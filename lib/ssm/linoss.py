"""LinOSS: Rusch & Rus, "Oscillatory State-Space Models" (ICLR 2025).

A layer of P uncoupled forced harmonic oscillators driven by u(t) ∈ R^H:

    y''(t) = −A y(t) + B u(t),     x(t) = Re(C y(t)) + D ⊙ u(t),

with A = diag(ReLU(Â)) ≥ 0 and B ∈ C^{P×H}, C ∈ C^{H×P} complex. Writing z = y' gives a first-order system
on the state [z; y], discretised with a learnt step Δt = sigmoid(ŝ) ∈ (0, 1), one per oscillator:

* IM (implicit Euler), with S = (1 + Δt²A)⁻¹:
      M = [[S, −Δt A S], [Δt S, S]],          F_t = [Δt S · Bu_t ; Δt² S · Bu_t]
  det M = S ≤ 1, so every eigenvalue has modulus sqrt(S) ≤ 1: dissipative for any A ≥ 0, Δt > 0.
* IMEX (symplectic Euler):
      M = [[1, −Δt A], [Δt, 1 − Δt² A]],      F_t = [Δt · Bu_t ; Δt² · Bu_t]
  det M = 1, so both eigenvalues lie on the unit circle exactly when |tr M| ≤ 2, i.e. Δt²A ≤ 4:
  energy is conserved, nothing decays.

and [z_t; y_t] = M [z_{t−1}; y_{t−1}] + F_t from zero, computed as four diagonals with
``lib.scan.block2_recurrence``; the output reads the y half: x_t = Re(C y_t) + D ⊙ u_t.

Initialisation (the authors' code, LinOSS ``models/LinOSS.py``; ``reproduction-protocol.md`` §4):
Â ~ U[0, 1), ŝ ~ U[0, 1) per oscillator; B_re, B_im ~ U(−1/√H, 1/√H); C_re, C_im ~ U(−1/√P, 1/√P);
D ~ N(0, 1).

The layer is LTI: x_t = Σ_k K_k u_{t−k} + D ⊙ u_t with K_k = Re(C diag(g_k) B) where
g_k = (M^k)_{21} f_z + (M^k)_{22} f_y is the y-part of M^k applied to the input weights (``kernel``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lib.scan import block2_recurrence
from lib.ssm import check_input, check_sizes

DISCRETIZATIONS = ("IM", "IMEX")


def _check_discretization(discretization):
    if discretization not in DISCRETIZATIONS:
        raise ValueError(f"discretization must be one of {DISCRETIZATIONS}, got {discretization!r}")


def transition(A, step, discretization: str = "IM"):
    """The 2×2 blocks (m11, m12, m21, m22) of M per oscillator, for A ≥ 0 and step Δt.

    Plain arithmetic: works on NumPy (float64) and JAX arrays; A and step broadcast together.
    """
    _check_discretization(discretization)
    dtA = step * A
    if discretization == "IM":
        S = 1.0 / (1.0 + step * dtA)                         # S = (1 + Δt²A)⁻¹
        return S, -dtA * S, step * S + 0.0 * dtA, S
    one = 0.0 * dtA + 1.0                                    # 1, broadcast to the shape of A·Δt
    return one, -dtA, step + 0.0 * dtA, 1.0 - step * dtA


def input_weights(A, step, discretization: str = "IM"):
    """(f_z, f_y): F_t = [f_z · Bu_t ; f_y · Bu_t]. IM: (Δt S, Δt² S); IMEX: (Δt, Δt²)."""
    _check_discretization(discretization)
    if discretization == "IM":
        S = 1.0 / (1.0 + step * step * A)
        return step * S, step * step * S
    return step + 0.0 * A, step * step + 0.0 * A


def uniform_init(key, shape, bound):
    """U(−bound, bound) (LinOSS's ``simple_uniform_init`` with std = bound)."""
    return jax.random.uniform(key, shape, minval=-bound, maxval=bound)


class LinOSS(nnx.Module):
    """LinOSS layer ``(..., T, hidden) -> (..., T, hidden)`` with ``state`` = P oscillators (module docstring)."""

    def __init__(self, hidden: int, state: int, *, rngs: nnx.Rngs, discretization: str = "IM"):
        H, P = check_sizes(hidden=hidden, state=state)
        _check_discretization(discretization)
        self.hidden, self.state, self.discretization = H, P, discretization
        self.A_hat = nnx.Param(jax.random.uniform(rngs.params(), (P,)))      # A = ReLU(Â)
        self.step_hat = nnx.Param(jax.random.uniform(rngs.params(), (P,)))   # Δt = sigmoid(ŝ)
        self.B_re = nnx.Param(uniform_init(rngs.params(), (P, H), H**-0.5))
        self.B_im = nnx.Param(uniform_init(rngs.params(), (P, H), H**-0.5))
        self.C_re = nnx.Param(uniform_init(rngs.params(), (H, P), P**-0.5))
        self.C_im = nnx.Param(uniform_init(rngs.params(), (H, P), P**-0.5))
        self.D = nnx.Param(jax.random.normal(rngs.params(), (H,)))

    @property
    def A(self):
        return jax.nn.relu(self.A_hat[...])

    @property
    def step(self):
        return jax.nn.sigmoid(self.step_hat[...])

    @property
    def B(self):
        return self.B_re[...] + 1j * self.B_im[...]

    @property
    def C(self):
        return self.C_re[...] + 1j * self.C_im[...]

    def eigenvalues(self):
        """The 2P eigenvalues of the discrete transition M (complex ``(2P,)``): tr/2 ± sqrt(tr²/4 − det)."""
        m11, m12, m21, m22 = transition(self.A, self.step, self.discretization)
        half_tr, det = (m11 + m22) / 2, m11 * m22 - m12 * m21
        root = jnp.sqrt((half_tr**2 - det).astype(jnp.complex64))
        return jnp.concatenate([half_tr + root, half_tr - root])

    def __call__(self, u, mode: str = "parallel"):
        u = check_input(u, self.hidden, mode)
        A, step = self.A, self.step
        # M is real, so the real and imaginary parts of the state evolve apart: one real recurrence over
        # 2P states [Re | Im] (same numbers as the complex one, several times faster on a CPU)
        two = lambda v: jnp.concatenate([v, v])                              # noqa: E731
        Bu = u @ jnp.concatenate([self.B_re[...], self.B_im[...]]).T          # [Re | Im] B u_t: (..., T, 2P)
        f_z, f_y = input_weights(A, step, self.discretization)
        M = tuple(two(m) for m in transition(A, step, self.discretization))
        _, y = block2_recurrence(M, (two(f_z) * Bu, two(f_y) * Bu), mode=mode)
        C = jnp.concatenate([self.C_re[...], -self.C_im[...]], 1)             # Re(C y) = C_re y_re − C_im y_im
        return y @ C.T + self.D[...] * u                                      # x_t = Re(C y_t) + D u_t

    def kernel(self, length: int):
        """K_k = Re(C diag(g_k) B), g_k = [M^k]_{21} f_z + [M^k]_{22} f_y: real ``(length, hidden_out, hidden_in)``."""
        A, step = self.A, self.step
        m11, m12, m21, m22 = transition(A, step, self.discretization)
        f_z, f_y = input_weights(A, step, self.discretization)

        def power(z_y, _):                                  # (z, y) ← M (z, y): walks M^k [f_z; f_y]
            z, y = z_y
            return (m11 * z + m12 * y, m21 * z + m22 * y), y

        _, g = jax.lax.scan(power, (f_z, f_y), None, length=length)          # g_k: (length, P)
        return jnp.einsum("hp,kp,pj->khj", self.C, g.astype(jnp.complex64), self.B).real
