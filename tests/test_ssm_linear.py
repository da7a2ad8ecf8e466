"""Checks of the linear SSM layers (LRU, S5, LinOSS-IM/IMEX): each test asserts a number.

Run: ``.venv/bin/python -m pytest tests/test_ssm_linear.py -q`` (add ``-s`` to see the measured values).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lib.ssm.linoss import LinOSS, input_weights, transition
from lib.ssm.lru import LRU
from lib.ssm.s5 import S5, block_hippo, hippo_n_matrix, make_dplr_hippo

H, P = 8, 16
# name -> (class, options, state). Every layer gets P = 16 complex modes, so the configurations share
# the scan's compiled pieces: S5 with conj_sym keeps state/2 modes, hence state = 2P there.
LAYERS = {
    "lru": (LRU, {}, P),
    "s5-zoh": (S5, {}, 2 * P),
    "s5-bilinear": (S5, {"discretization": "bilinear"}, 2 * P),
    "s5-zoh-4blocks-full": (S5, {"ssm_blocks": 4, "conj_sym": False}, P),
    "linoss-IM": (LinOSS, {"discretization": "IM"}, P),
    "linoss-IMEX": (LinOSS, {"discretization": "IMEX"}, P),
}


def make(name, seed=0):
    cls, options, state = LAYERS[name]
    return cls(H, state, rngs=nnx.Rngs(seed), **options)


def normal(shape, seed=1):
    return jax.random.normal(jax.random.key(seed), shape)


# Run eagerly on purpose: JAX caches each primitive per shape, so the configurations share most of
# the scan's compiled pieces; a jit per configuration costs several times more CPU time here.
def apply(layer, u, mode="parallel"):
    return layer(u, mode=mode)


def output_and_grads(layer, u):
    """y = layer(u) and the gradient of mean(y²) w.r.t. every parameter."""
    def loss(m):
        y = m(u)
        return jnp.mean(y**2), y
    (_, y), grads = nnx.value_and_grad(loss, has_aux=True)(layer)
    return y, grads


# 1. parallel (associative) scan == sequential recurrence --------------------------------------------

@pytest.mark.parametrize("name", list(LAYERS))
def test_parallel_equals_sequential(name):
    """T = 2000, batch 2, u ~ N(0, 1): max |parallel − sequential| ≤ 1e-4.

    LinOSS-IMEX is the exception that needs a relative bound: det M = 1, so its state never decays,
    outputs reach ~60 at T = 2000 and float32 rounding (≈1e-7 per step) accumulates without damping in
    both paths alike. For it the bound is 1e-4 · max|y| (measured ≈1.2e-5 · max|y|), and
    ``test_imex_float32_drift`` shows both paths are equally close to a float64 reference.
    """
    layer, u = make(name), normal((2, 2000, H))
    y_par, y_seq = apply(layer, u, "parallel"), apply(layer, u, "sequential")
    diff, scale = float(jnp.abs(y_par - y_seq).max()), float(jnp.abs(y_seq).max())
    print(f"{name}: max|par-seq| = {diff:.2e}, max|y| = {scale:.1f}")
    assert diff <= (1e-4 * scale if name == "linoss-IMEX" else 1e-4)


def test_imex_float32_drift():
    """LinOSS-IMEX at T = 2000 against a float64 NumPy recurrence: both float32 paths within 5e-5 · max|y|."""
    layer, u = make("linoss-IMEX"), normal((2, 2000, H))
    un = np.asarray(u, np.float64)
    A, step = np.asarray(layer.A, np.float64), np.asarray(layer.step, np.float64)
    m11, m12, m21, m22 = transition(A, step, "IMEX")
    f_z, f_y = input_weights(A, step, "IMEX")
    Bu = un @ np.asarray(layer.B, np.complex128).T
    z = y = np.zeros((2, len(A)), complex)
    ys = []
    for t in range(un.shape[1]):
        z, y = m11 * z + m12 * y + f_z * Bu[:, t], m21 * z + m22 * y + f_y * Bu[:, t]
        ys.append(y)
    ref = (np.stack(ys, 1) @ np.asarray(layer.C, np.complex128).T).real + np.asarray(layer.D) * un
    scale = np.abs(ref).max()
    err_par = np.abs(np.asarray(apply(layer, u, "parallel")) - ref).max() / scale
    err_seq = np.abs(np.asarray(apply(layer, u, "sequential")) - ref).max() / scale
    print(f"IMEX vs float64: parallel {err_par:.2e}, sequential {err_seq:.2e} (relative to max|y| = {scale:.1f})")
    assert err_par <= 5e-5 and err_seq <= 5e-5


# 2. LTI: the layer is a convolution with K_k -------------------------------------------------------

@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_is_convolution(name):
    """y_t = Σ_k K_k u_{t−k} + D ⊙ u_t (NumPy float64 loop over k), T = 64, batch 2: max diff ≤ 1e-4 · max|y|."""
    T, layer = 64, make(name)
    u = normal((2, T, H), seed=2)
    K = np.asarray(layer.kernel(T), np.float64)
    assert K.shape == (T, H, H) and K.dtype == np.float64
    un = np.asarray(u, np.float64)
    y_conv = np.asarray(layer.D[...], np.float64) * un
    for k in range(T):
        y_conv[:, k:] += un[:, : T - k] @ K[k].T
    y = np.asarray(apply(layer, u, "parallel"))
    rel = np.abs(y - y_conv).max() / np.abs(y_conv).max()
    print(f"{name}: max|layer - conv| / max|y| = {rel:.2e}")
    assert rel <= 1e-4


# 3. S5's HiPPO-N initialisation -------------------------------------------------------------------

@pytest.mark.parametrize("N", [4, 16, 64])
def test_hippo_n(N):
    """Re Λ = −½ (±1e-6); V unitary (‖V^H V − I‖_max ≤ 1e-10); S = V diag(Λ) V^H (max err ≤ 1e-9·N)."""
    Lambda, V = make_dplr_hippo(N)
    S = hippo_n_matrix(N)
    assert np.abs(Lambda.real + 0.5).max() <= 1e-6
    assert np.abs(V.conj().T @ V - np.eye(N)).max() <= 1e-10
    assert np.abs(V @ np.diag(Lambda) @ V.conj().T - S).max() <= 1e-9 * N
    # S is −½ I plus a skew-symmetric matrix
    assert np.abs((S + 0.5 * np.eye(N)) + (S + 0.5 * np.eye(N)).T).max() <= 1e-12


def test_s5_block_init():
    """With conj_sym and J blocks, Λ is J copies of the P/(2J) HiPPO-N eigenvalues with negative Im; Re Λ = −½."""
    Lambda, V, Vinv = block_hippo(16, blocks=2, conj_sym=True)
    assert Lambda.shape == (8,) and V.shape == (16, 8) and Vinv.shape == (8, 16)
    assert np.abs(Lambda[:4] - Lambda[4:]).max() == 0.0 and np.all(Lambda.imag < 0)
    assert np.abs(Vinv @ V - np.eye(8)).max() <= 1e-10
    layer = S5(H, 16, rngs=nnx.Rngs(0), ssm_blocks=2)
    assert float(jnp.abs(layer.Lambda_re[...] + 0.5).max()) == 0.0


# 4. LinOSS transition spectra ----------------------------------------------------------------------

def spectral_radius(A, step, discretization):
    m11, m12, m21, m22 = np.broadcast_arrays(*transition(A, step, discretization))
    M = np.stack([np.stack([m11, m12], -1), np.stack([m21, m22], -1)], -2)
    return np.abs(np.linalg.eigvals(M))


def _grid():
    rng = np.random.default_rng(0)
    A = np.concatenate([[0.0], np.logspace(-6, 4, 201), rng.uniform(0, 1e4, 2000)])
    step = np.concatenate([np.linspace(1e-3, 1.0, 100), rng.uniform(0, 1, 100)])
    return np.meshgrid(A, step, indexing="ij")


def test_linoss_im_is_dissipative():
    """IM: spectral radius ≤ 1 + 1e-6 for A ∈ [0, 1e4], Δt ∈ (0, 1] (incl. Δt = 1); |λ| = sqrt(det M) = sqrt(S)."""
    A, step = _grid()
    radius = spectral_radius(A, step, "IM").max(-1)
    S = 1 / (1 + step**2 * A)
    print(f"IM: max spectral radius {radius.max():.9f}")
    assert radius.max() <= 1 + 1e-6
    assert np.abs(radius - np.sqrt(S)).max() <= 1e-6


def test_linoss_imex_is_conservative():
    """IMEX: |λ| = 1 (±1e-6) wherever Δt²A ≤ 4; radius > 1 where Δt²A > 4.01."""
    A, step = _grid()
    mod = spectral_radius(A, step, "IMEX")
    inside = step**2 * A <= 4
    print(f"IMEX: max ||λ|-1| for Δt²A ≤ 4: {np.abs(mod[inside] - 1).max():.2e}")
    assert np.abs(mod[inside] - 1).max() <= 1e-6
    assert mod[step**2 * A > 4.01].max(-1).min() > 1.0


def test_linoss_layer_eigenvalues():
    """The layers' eigenvalues(): IM inside the unit disc (|λ| ≤ 1), IMEX on the unit circle (±1e-5)."""
    im, imex = make("linoss-IM"), make("linoss-IMEX")
    assert im.eigenvalues().shape == (2 * P,)
    assert float(jnp.abs(im.eigenvalues()).max()) <= 1.0
    assert float(jnp.abs(jnp.abs(imex.eigenvalues()) - 1).max()) <= 1e-5


# 5. finite outputs and gradients at T = 3000 -------------------------------------------------------

@pytest.mark.parametrize("name", ["lru", "s5-zoh", "s5-bilinear", "linoss-IM", "linoss-IMEX"])
def test_finite_output_and_grads(name):
    """T = 3000: output and the gradient of mean(y²) w.r.t. every parameter are finite and not all zero."""
    layer, u = make(name), normal((2, 3000, H), seed=3)
    y, grads = output_and_grads(layer, u)
    leaves = jax.tree.leaves(grads)
    assert bool(jnp.isfinite(y).all())
    assert len(leaves) == len(jax.tree.leaves(nnx.state(layer, nnx.Param)))
    assert all(bool(jnp.isfinite(g).all()) for g in leaves)
    assert min(float(jnp.abs(g).max()) for g in leaves) > 0.0


# 6. shapes, dtypes and argument errors -------------------------------------------------------------

@pytest.mark.parametrize("name", list(LAYERS))
def test_shapes(name):
    """(T, H), (B, T, H) and (B1, B2, T, H) inputs; float32 outputs; the unbatched call equals a batch row."""
    layer = make(name)
    u = normal((3, 2, 64, H))
    y4 = apply(layer, u, "parallel")
    y3 = apply(layer, u[0], "parallel")
    y2 = apply(layer, u[0, 1], "parallel")
    assert y4.shape == u.shape and y3.shape == u[0].shape and y2.shape == (64, H)
    assert y4.dtype == y3.dtype == y2.dtype == jnp.float32
    # the same numbers up to float32 rounding: a batch's associative scan may combine its terms in
    # another order than one sequence's (outputs up to ~3 in size: a few ulp, so a relative bound)
    np.testing.assert_allclose(y2, y3[1], rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(y3, y4[0], rtol=2e-6, atol=1e-6)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(layer, nnx.Param)))
    assert layer.eigenvalues().dtype == jnp.complex64


@pytest.mark.parametrize("cls, options, match", [
    (LRU, {"hidden": -1}, "hidden"), (LRU, {"state": 0}, "state"), (LRU, {"r_max": 1.5}, "r_max"),
    (S5, {"hidden": 0}, "hidden"), (S5, {"state": -4}, "state"), (S5, {"state": 15}, "state"),
    (S5, {"ssm_blocks": 3}, "ssm_blocks"), (S5, {"ssm_blocks": 0}, "ssm_blocks"),
    (S5, {"state": 12, "ssm_blocks": 4}, "ssm_blocks"),
    (S5, {"discretization": "euler"}, "discretization"), (S5, {"dt_min": 0.0}, "dt_min"),
    (LinOSS, {"state": -1}, "state"), (LinOSS, {"discretization": "EX"}, "discretization"),
])
def test_bad_arguments(cls, options, match):
    kwargs = {"hidden": H, "state": P, **options}
    with pytest.raises(ValueError, match=match):
        cls(kwargs.pop("hidden"), kwargs.pop("state"), rngs=nnx.Rngs(0), **kwargs)


@pytest.mark.parametrize("name", ["lru", "s5-zoh", "linoss-IM"])
def test_bad_call(name):
    layer = make(name)
    with pytest.raises(ValueError, match="mode"):
        layer(normal((10, H)), mode="fast")
    with pytest.raises(ValueError, match="u must"):
        layer(normal((10, H + 1)))
    with pytest.raises(ValueError, match="u must"):
        layer(normal((H,)))


# 7. the real-arithmetic recurrences (issue 18) ------------------------------------------------------

@pytest.mark.parametrize("mode", ["parallel", "sequential"])
def test_complex_recurrence_in_real_parts(mode):
    """complex_recurrence on real and imaginary parts == linear_recurrence on complex numbers (T = 300)."""
    from lib.scan import complex_recurrence, linear_recurrence

    k = jax.random.split(jax.random.key(0), 4)
    a = 0.99 * jnp.exp(1j * jax.random.uniform(k[0], (P,), maxval=3.0)) * jax.random.uniform(k[1], (P,))
    b = normal((2, 300, P), 2) + 1j * normal((2, 300, P), 3)
    ref = linear_recurrence(a, b, mode="sequential")
    hr, hi = complex_recurrence((a.real, a.imag), (b.real, b.imag), mode=mode)
    assert hr.dtype == jnp.float32
    assert float(jnp.abs(hr + 1j * hi - ref).max()) <= 1e-5 * float(jnp.abs(ref).max())


def test_block2_time_invariant_sequential_equals_broadcast():
    """A time-invariant M is closed over on the sequential path: the same states as M broadcast over time."""
    from lib.scan import block2_recurrence

    layer = make("linoss-IM")
    M = transition(layer.A, layer.step, "IM")
    F = (normal((2, 100, P), 4), normal((2, 100, P), 5))
    z0, y0 = block2_recurrence(tuple(jnp.broadcast_to(m, (2, 100, P)) for m in M), F, mode="sequential")
    z1, y1 = block2_recurrence(M, F, mode="sequential")
    assert float(jnp.abs(z1 - z0).max()) == 0.0 and float(jnp.abs(y1 - y0).max()) == 0.0
