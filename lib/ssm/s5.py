"""S5: Smith, Warrington, Linderman, "Simplified State Space Layers for Sequence Modeling" (ICLR 2023).

A multi-input multi-output continuous-time SSM, diagonalised, discretised, and run with a parallel scan.
For u_t ∈ R^H and a complex state x_t ∈ C^P (P = ``state``):

    continuous:  x'(t) = Λ x(t) + B̃ u(t),   y(t) = Re(C̃ x(t)) + D ⊙ u(t),   Λ = diag(Lambda_re + i Lambda_im)
    discrete:    x_t = Λ̄ ⊙ x_{t-1} + B̄ u_t,   y_t = Re(C̃ x_t) + D ⊙ u_t

with a learnt step Δ = step_rescale · exp(log_step), one per state. Discretisations (lindermanlab/S5
``s5/ssm.py``):

* ZOH:       Λ̄ = exp(ΛΔ),                     B̄ = Λ⁻¹(Λ̄ − 1) ⊙ B̃       (``discretize_zoh``)
* bilinear:  Λ̄ = (1 − ΔΛ/2)⁻¹(1 + ΔΛ/2),      B̄ = (1 − ΔΛ/2)⁻¹ Δ ⊙ B̃    (``discretize_bilinear``)

Initialisation (lindermanlab/S5 ``s5/ssm_init.py``, ``s5/train.py``; the UEA port of Log-NCDE/LinOSS
``models/S5.py``; ``reproduction-protocol.md`` §4.1):

* HiPPO-N: the normal part S = A + P Pᵀ of HiPPO-LegS A (P_n = sqrt(n + ½)) equals −½ I plus a
  skew-symmetric matrix, so S = V diag(Λ) V^H with V unitary and Re Λ = −½ exactly (``make_dplr_hippo``).
* Block diagonal (``ssm_blocks`` = J): J copies of the HiPPO-N of size P/J on the diagonal.
* ``conj_sym``: eigenvalues come in conjugate pairs, so only P/2 are kept and the output is 2·Re(C̃ x_t).
* B̃ = V⁻¹B with B ~ lecun_normal on a real (P, H) array (variance 1/P); C̃ = C V with C ~ lecun_normal on a
  real (H, P, 2) array read as complex (variance 1/(H·P) per part; the peers' shapes, kept as they are);
  D ~ N(0, 1); log Δ ~ U[log dt_min, log dt_max] with dt_min = 1e-3, dt_max = 1e-1.
* ``clip_eigs``: Re Λ is clipped to ≤ −1e-4 in the forward pass (Log-NCDE/LinOSS ``models/S5.py``, used
  with ZOH in their UEA runs).

The layer is LTI: y_t = Σ_k K_k u_{t−k} + D ⊙ u_t with K_k = c·Re(C̃ diag(Λ̄^k) B̄), c = 2 with conj_sym
else 1 (``kernel``). The scan runs through ``lib.scan.complex_recurrence`` (the complex recurrence in
real arithmetic).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from flax import nnx

from lib.scan import complex_recurrence
from lib.ssm import check_input, check_sizes

DISCRETIZATIONS = ("zoh", "bilinear")


# ---- HiPPO initialisation (numpy, float64; after lindermanlab/S5 s5/ssm_init.py) ----

def make_hippo(N: int):
    """HiPPO-LegS: A_nk = −sqrt(2n+1) sqrt(2k+1) for n > k, −(n+1) for n = k, 0 for n < k."""
    p = np.sqrt(1 + 2 * np.arange(N))
    return -(np.tril(p[:, None] * p[None, :]) - np.diag(np.arange(N)))


def make_nplr_hippo(N: int):
    """HiPPO-LegS as normal plus low rank: (A, P, B) with A + P Pᵀ normal, P_n = sqrt(n+½), B_n = sqrt(2n+1)."""
    return make_hippo(N), np.sqrt(np.arange(N) + 0.5), np.sqrt(2 * np.arange(N) + 1.0)


def hippo_n_matrix(N: int):
    """The HiPPO-N matrix S = A + P Pᵀ (the normal part of HiPPO-LegS), = −½ I + skew-symmetric."""
    A, P, _ = make_nplr_hippo(N)
    return A + P[:, None] * P[None, :]


def make_dplr_hippo(N: int):
    """(Λ, V) with S = V diag(Λ) V^H, V unitary, Re Λ = mean(diag S) = −½ (HiPPO-N; S4D/S5 init).

    As in lindermanlab/S5, Im Λ and V come from the Hermitian eigenproblem of −i S; the −½ I part is
    taken out first so the matrix handed to ``eigh`` is exactly Hermitian. Eigenvalues in ascending Im Λ.
    """
    S = hippo_n_matrix(N)
    Lambda_real = np.mean(np.diagonal(S)) * np.ones(N)
    Lambda_imag, V = np.linalg.eigh(-1j * (S - np.diag(Lambda_real)))
    return Lambda_real + 1j * Lambda_imag, V


hippo_n = make_dplr_hippo  # alias: the HiPPO-N eigen-decomposition (Λ, V)


def block_hippo(state: int, blocks: int = 1, conj_sym: bool = True):
    """Λ (P' values), V (P × P') and V⁻¹ (P' × P) for J = ``blocks`` HiPPO-N blocks; P' = P/2 with conj_sym."""
    size = state // blocks
    Lambda, V = make_dplr_hippo(size)
    keep = size // 2 if conj_sym else size
    Lambda, V = Lambda[:keep], V[:, :keep]
    return (np.tile(Lambda, blocks), scipy.linalg.block_diag(*[V] * blocks),
            scipy.linalg.block_diag(*[V.conj().T] * blocks))


def log_step_init(key, shape, dt_min=1e-3, dt_max=1e-1):
    """log Δ ~ U[log dt_min, log dt_max]."""
    return jax.random.uniform(key, shape, minval=np.log(dt_min), maxval=np.log(dt_max))


# ---- discretisation ----

def discretize_zoh(Lambda, B_tilde, step):
    """Zero-order hold: Λ̄ = exp(ΛΔ), B̄ = Λ⁻¹(Λ̄ − 1) ⊙ B̃."""
    Lambda_bar = jnp.exp(Lambda * step)
    return Lambda_bar, ((Lambda_bar - 1) / Lambda)[:, None] * B_tilde


def discretize_bilinear(Lambda, B_tilde, step):
    """Bilinear (Tustin): Λ̄ = (1 − ΔΛ/2)⁻¹(1 + ΔΛ/2), B̄ = (1 − ΔΛ/2)⁻¹ Δ ⊙ B̃."""
    BL = 1 / (1 - (step / 2) * Lambda)
    return BL * (1 + (step / 2) * Lambda), (BL * step)[:, None] * B_tilde


class S5(nnx.Module):
    """S5 layer ``(..., T, hidden) -> (..., T, hidden)`` with ``state`` = P (see module docstring)."""

    def __init__(self, hidden: int, state: int, *, rngs: nnx.Rngs, ssm_blocks: int = 1,
                 conj_sym: bool = True, discretization: str = "zoh", dt_min: float = 1e-3,
                 dt_max: float = 1e-1, clip_eigs: bool = True, step_rescale: float = 1.0):
        H, P, J = check_sizes(hidden=hidden, state=state, ssm_blocks=ssm_blocks)
        if P % (2 * J if conj_sym else J):
            raise ValueError(f"state must be divisible by {'2·ssm_blocks' if conj_sym else 'ssm_blocks'}"
                             f" (conj_sym={conj_sym}), got state={P}, ssm_blocks={J}")
        if discretization not in DISCRETIZATIONS:
            raise ValueError(f"discretization must be one of {DISCRETIZATIONS}, got {discretization!r}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"dt_min, dt_max must satisfy 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
        self.hidden, self.state, self.conj_sym = H, P, bool(conj_sym)
        self.discretization, self.clip_eigs, self.step_rescale = discretization, bool(clip_eigs), step_rescale

        Lambda, V, Vinv = block_hippo(P, J, conj_sym)       # constants (NumPy float64), no key needed
        V, Vinv = jnp.asarray(V, jnp.complex64), jnp.asarray(Vinv, jnp.complex64)
        B = jax.nn.initializers.lecun_normal()(rngs.params(), (P, H))
        C = jax.nn.initializers.lecun_normal()(rngs.params(), (H, P, 2))
        B_tilde = Vinv @ B                                   # B̃ = V⁻¹ B       (P', H)
        C_tilde = (C[..., 0] + 1j * C[..., 1]) @ V           # C̃ = C V         (H, P')
        self.Lambda_re = nnx.Param(jnp.asarray(Lambda.real, jnp.float32))
        self.Lambda_im = nnx.Param(jnp.asarray(Lambda.imag, jnp.float32))
        self.B_tilde_re, self.B_tilde_im = nnx.Param(B_tilde.real), nnx.Param(B_tilde.imag)
        self.C_tilde_re, self.C_tilde_im = nnx.Param(C_tilde.real), nnx.Param(C_tilde.imag)
        self.D = nnx.Param(jax.random.normal(rngs.params(), (H,)))
        self.log_step = nnx.Param(log_step_init(rngs.params(), (len(Lambda),), dt_min, dt_max))

    @property
    def Lambda(self):
        """Continuous-time eigenvalues Λ (Re Λ clipped to ≤ −1e-4 if ``clip_eigs``), complex ``(P',)``."""
        re = jnp.minimum(self.Lambda_re[...], -1e-4) if self.clip_eigs else self.Lambda_re[...]
        return re + 1j * self.Lambda_im[...]

    @property
    def B_tilde(self):
        return self.B_tilde_re[...] + 1j * self.B_tilde_im[...]

    @property
    def C_tilde(self):
        return self.C_tilde_re[...] + 1j * self.C_tilde_im[...]

    @property
    def step(self):
        """Δ = step_rescale · exp(log_step), ``(P',)``."""
        return self.step_rescale * jnp.exp(self.log_step[...])

    def discretize(self):
        """(Λ̄, B̄) by the layer's ``discretization``."""
        fn = discretize_zoh if self.discretization == "zoh" else discretize_bilinear
        return fn(self.Lambda, self.B_tilde, self.step)

    def eigenvalues(self):
        """Discrete-time eigenvalues Λ̄ (complex ``(P',)``; with conj_sym their conjugates are implied)."""
        return self.discretize()[0]

    def __call__(self, u, mode: str = "parallel"):
        u = check_input(u, self.hidden, mode)
        Lambda_bar, B_bar = self.discretize()
        # complex arithmetic written out in real parts (same numbers, several times faster on a CPU)
        P = Lambda_bar.shape[0]
        Bu = u @ jnp.concatenate([B_bar.real, B_bar.imag]).T                              # [Re | Im] B̄ u_t
        x = complex_recurrence((Lambda_bar.real, Lambda_bar.imag), (Bu[..., :P], Bu[..., P:]), mode=mode)
        C = self.C_tilde                                                                 # x_t = Λ̄ x_{t-1} + B̄ u_t
        y = jnp.concatenate(x, -1) @ jnp.concatenate([C.real, -C.imag], 1).T             # Re(C̃ x_t)
        return (2 * y if self.conj_sym else y) + self.D[...] * u                        # y_t = Re(C̃ x_t) + D u_t

    def kernel(self, length: int):
        """K_k = c·Re(C̃ diag(Λ̄^k) B̄), c = 2 with conj_sym: real ``(length, hidden_out, hidden_in)``."""
        Lambda_bar, B_bar = self.discretize()
        powers = jnp.exp(jnp.arange(length)[:, None] * jnp.log(Lambda_bar))             # Λ̄^k: (length, P')
        K = jnp.einsum("hp,kp,pj->khj", self.C_tilde, powers, B_bar).real
        return 2 * K if self.conj_sym else K
