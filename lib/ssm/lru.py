"""Linear Recurrent Unit (LRU): Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long
Sequences" (ICML 2023).

For an input u_t ∈ R^H and a complex state h_t ∈ C^P (P = ``state``, H = ``hidden``):

    h_t = Λ ⊙ h_{t-1} + γ ⊙ (B u_t),        h_{-1} = 0
    y_t = Re(C h_t) + D ⊙ u_t

* Λ = exp(−exp(ν) + i·exp(θ)) is diagonal, so |Λ| = exp(−exp(ν)) < 1 for any ν: the paper's stable
  exponential parameterisation. ν and θ are stored as ``nu_log`` and ``theta_log``.
* γ = sqrt(1 − |Λ|²) is the paper's normalisation: it keeps E|h_t|² at the input's scale for white-noise
  input. It is computed at initialisation and then learnt, stored as ``gamma_log`` = log γ. Peers do the
  same (minimal-LRU ``lru/model.py``; Log-NCDE/LinOSS ``models/LRU.py``).
* B, C ∈ C^{P×H}, C^{H×P} are stored as real and imaginary parts (``B_re``, ``B_im``, ``C_re``, ``C_im``).
  D ∈ R^H is a per-channel skip.

Initialisation (peers' code: minimal-LRU ``lru/model.py``; Log-NCDE/LinOSS ``models/LRU.py``):

* Ring init: Λ is sampled uniformly on the ring r_min ≤ |Λ| ≤ r_max with phase in [0, max_phase]:
  ν = log(−½ log(U·(r_max² − r_min²) + r_min²)) and θ = log(max_phase·U), U ~ Uniform[0, 1).
  The defaults r_min=0, r_max=1, max_phase=6.28 are the ones used by the peers' UEA runs
  (``reproduction-protocol.md`` §4). The LRU paper uses narrower rings close to the unit circle for its
  long-range tasks; we follow the peers.
* B_re, B_im ~ N(0, 1/(2H)); C_re, C_im ~ N(0, 1/P); D ~ N(0, 1) (minimal-LRU ``matrix_init``).

The layer is linear and time invariant, so y_t = Σ_k K_k u_{t−k} + D ⊙ u_t with
K_k = Re(C diag(γ ⊙ Λ^k) B) (``kernel``). The scan runs through ``lib.scan.complex_recurrence`` (the
complex recurrence in real arithmetic).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lib.scan import complex_recurrence
from lib.ssm import check_input, check_sizes


def nu_init(key, shape, r_min=0.0, r_max=1.0):
    """ν = log(−½ log(U (r_max² − r_min²) + r_min²)): |Λ|² is uniform on [r_min², r_max²] (ring init)."""
    u = jax.random.uniform(key, shape)
    return jnp.log(-0.5 * jnp.log(u * (r_max**2 - r_min**2) + r_min**2))


def theta_init(key, shape, max_phase=6.28):
    """θ = log(max_phase·U): the phase arg Λ = exp(θ) is uniform on [0, max_phase]."""
    return jnp.log(max_phase * jax.random.uniform(key, shape))


def lambda_from(nu_log, theta_log):
    """Λ = exp(−exp(ν) + i·exp(θ))."""
    return jnp.exp(-jnp.exp(nu_log) + 1j * jnp.exp(theta_log))


def gamma_log_init(nu_log, theta_log):
    """log γ with γ = sqrt(1 − |Λ|²), the LRU normalisation."""
    return jnp.log(jnp.sqrt(1 - jnp.abs(lambda_from(nu_log, theta_log)) ** 2))


def normal_init(key, shape, scale=1.0):
    """N(0, scale²) samples (minimal-LRU's ``matrix_init`` with normalization = 1/scale)."""
    return scale * jax.random.normal(key, shape)


class LRU(nnx.Module):
    """LRU layer ``(..., T, hidden) -> (..., T, hidden)`` with ``state`` complex modes (see module docstring)."""

    def __init__(self, hidden: int, state: int, *, rngs: nnx.Rngs,
                 r_min: float = 0.0, r_max: float = 1.0, max_phase: float = 6.28):
        H, P = check_sizes(hidden=hidden, state=state)
        if not 0.0 <= r_min < r_max <= 1.0:
            raise ValueError(f"r_min, r_max must satisfy 0 <= r_min < r_max <= 1, got r_min={r_min}, r_max={r_max}")
        if not max_phase > 0:
            raise ValueError(f"max_phase must be positive, got {max_phase}")
        self.hidden, self.state = H, P
        nu = nu_init(rngs.params(), (P,), r_min, r_max)
        theta = theta_init(rngs.params(), (P,), max_phase)
        self.nu_log = nnx.Param(nu)
        self.theta_log = nnx.Param(theta)
        self.gamma_log = nnx.Param(gamma_log_init(nu, theta))
        self.B_re = nnx.Param(normal_init(rngs.params(), (P, H), (2 * H) ** -0.5))
        self.B_im = nnx.Param(normal_init(rngs.params(), (P, H), (2 * H) ** -0.5))
        self.C_re = nnx.Param(normal_init(rngs.params(), (H, P), P**-0.5))
        self.C_im = nnx.Param(normal_init(rngs.params(), (H, P), P**-0.5))
        self.D = nnx.Param(normal_init(rngs.params(), (H,)))

    @property
    def Lambda(self):
        """The diagonal transition Λ (already discrete time), complex ``(P,)``."""
        return lambda_from(self.nu_log[...], self.theta_log[...])

    @property
    def B_norm(self):
        """γ ⊙ B, complex ``(P, H)``."""
        return (self.B_re[...] + 1j * self.B_im[...]) * jnp.exp(self.gamma_log[...])[:, None]

    @property
    def C(self):
        return self.C_re[...] + 1j * self.C_im[...]

    def eigenvalues(self):
        """The eigenvalues Λ of the state transition (complex ``(P,)``), for plots."""
        return self.Lambda

    def __call__(self, u, mode: str = "parallel"):
        u = check_input(u, self.hidden, mode)
        P, Lambda, B = self.state, self.Lambda, self.B_norm
        # complex arithmetic written out in real parts (same numbers, several times faster on a CPU)
        Bu = u @ jnp.concatenate([B.real, B.imag]).T                    # γ ⊙ (B u_t): [Re | Im], (..., T, 2P)
        h = complex_recurrence((Lambda.real, Lambda.imag), (Bu[..., :P], Bu[..., P:]), mode=mode)
        C = self.C                                                      # h_t = Λ ⊙ h_{t-1} + γ ⊙ B u_t
        y = jnp.concatenate(h, -1) @ jnp.concatenate([C.real, -C.imag], 1).T
        return y + self.D[...] * u                                      # y_t = Re(C h_t) + D ⊙ u_t

    def kernel(self, length: int):
        """K_k = Re(C diag(γ ⊙ Λ^k) B) for k < ``length``: real ``(length, hidden_out, hidden_in)``."""
        log_Lambda = -jnp.exp(self.nu_log[...]) + 1j * jnp.exp(self.theta_log[...])
        powers = jnp.exp(jnp.arange(length)[:, None] * log_Lambda)     # Λ^k: (length, P)
        return jnp.einsum("hp,kp,pj->khj", self.C, powers, self.B_norm).real
