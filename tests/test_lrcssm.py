"""LrcSSM: the DEER/Newton parallel solve against the sequential scan, gradients, the diagonal Jacobian."""
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lib.ssm import make_ssm
from lib.ssm.lrcssm import LrcSSM, cell, sensory

TOL = 1e-5          # max |x_parallel - x_sequential| (float32; measured ~5e-8 at init)
GRAD_RTOL = 1e-3    # relative error of gradients, parallel vs sequential (measured ~1e-6)


def _inputs(shape, seed=1):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def _scaled(layer, factor):
    """Multiply every parameter by ``factor``: a stand-in for weights that drifted in training."""
    for _, v in nnx.iter_graph(layer):
        if isinstance(v, nnx.Param):
            v[...] = v[...] * factor
    return layer




@pytest.mark.parametrize("factor", [1.0, 4.0])
def test_parallel_equals_sequential_T2000(factor):
    layer = _scaled(LrcSSM(16, 16, rngs=nnx.Rngs(0)), factor)
    u = _inputs((3, 2000, 16))
    y_par, y_seq = layer(u, mode="parallel"), layer(u, mode="sequential")
    assert float(jnp.max(jnp.abs(y_par - y_seq))) <= TOL
    # Convergence of the Newton iterates from x^(0) = 0: below TOL before the default count runs out.
    residual = np.asarray(layer.newton_residual(u))
    assert residual.shape == (layer.newton_iters + 1,)
    first = int(np.argmax(residual <= TOL))
    assert residual[first] <= TOL and first <= layer.newton_iters - 1, residual
    assert residual[0] > 100 * TOL  # the zero guess is far off, so convergence is not trivial
    # Early stopping on max|Δx| (newton_tol) lands on the same solution.
    early = _scaled(LrcSSM(16, 16, rngs=nnx.Rngs(0), newton_tol=1e-6), factor)
    assert float(jnp.max(jnp.abs(early(u) - y_seq))) <= TOL


@partial(jax.jit, static_argnames=("graphdef", "mode"))
def _grads_jit(graphdef, params, u, w, mode):
    loss = lambda params, u: jnp.mean(jnp.tanh(nnx.merge(graphdef, params)(u, mode=mode)) * w)
    return jax.grad(loss, argnums=(0, 1))(params, u)


def _grads(layer, u, mode):
    """Gradients of a scalar loss w.r.t. (params, u); one compile per (structure, shape, mode)."""
    graphdef, params = nnx.split(layer)
    return _grads_jit(graphdef, params, u, _inputs(u.shape[:-1] + (layer.hidden,), seed=7), mode)


@pytest.mark.parametrize("factor", [1.0, 4.0])
def test_parallel_gradients_match_sequential(factor):
    layer = _scaled(LrcSSM(16, 12, rngs=nnx.Rngs(2)), factor)   # P != H: the readout C is included
    u = _inputs((2, 1000, 16), seed=3)
    g_par, g_seq = _grads(layer, u, "parallel"), _grads(layer, u, "sequential")
    leaves_par, leaves_seq = jax.tree.leaves(g_par), jax.tree.leaves(g_seq)
    assert len(leaves_par) == 14  # 12 cell parameters, C, and the input u
    for a, b in zip(leaves_par, leaves_seq):
        rel = float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))
        assert rel <= GRAD_RTOL, rel


def test_one_step_jacobian_is_diagonal():
    layer = _scaled(LrcSSM(16, 16, rngs=nnx.Rngs(4)), 4.0)
    p = layer.params()
    Wf_su, Wz_su = sensory(p, _inputs((16,), seed=5))
    x = _inputs((16,), seed=6)
    J = jax.jacfwd(lambda x: cell(p, x, Wf_su, Wz_su))(x)
    off = J - jnp.diag(jnp.diag(J))
    assert float(jnp.max(jnp.abs(off))) == 0.0
    assert int(jnp.count_nonzero(jnp.diag(J))) == 16
    # The diagonal the Newton step uses (a JVP along ones) is exactly diag(J).
    _, d = jax.jvp(lambda x: cell(p, x, Wf_su, Wz_su), (x,), (jnp.ones_like(x),))
    assert float(jnp.max(jnp.abs(d - jnp.diag(J)))) == 0.0


def test_finite_at_T3000():
    layer = LrcSSM(16, 16, rngs=nnx.Rngs(0))
    u = _inputs((2, 3000, 16), seed=8)
    y = layer(u)
    assert bool(jnp.all(jnp.isfinite(y)))
    residual = np.asarray(layer.newton_residual(u))
    assert residual[-1] <= TOL
    g_params, g_u = _grads(layer, u, "parallel")
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves((g_params, g_u)))
    assert float(jnp.abs(g_u).max()) > 0.0


def test_shapes_dtypes_and_arguments():
    layer = make_ssm("lrcssm", 8, 8, rngs=nnx.Rngs(0), newton_iters=6)
    for shape in [(50, 8), (2, 3, 50, 8)]:
        for mode in ("parallel", "sequential"):
            y = layer(_inputs(shape), mode=mode)
            assert y.shape == shape and y.dtype == jnp.float32
    assert layer.C is None
    wide = LrcSSM(8, 5, rngs=nnx.Rngs(0))
    assert wide.states(_inputs((3, 50, 8))).shape == (3, 50, 5)
    assert wide(_inputs((3, 50, 8))).shape == (3, 50, 8) and wide.C.shape == (8, 5)
    params = jax.tree.leaves(nnx.state(wide, nnx.Param))
    assert all(p.dtype == jnp.float32 for p in params)
    assert sum(p.size for p in params) == 2 * 8 + 2 * 5 * 8 + 8 * 5 + 8 * 5
    # Init as the peer code: U(±1/√P) for every parameter.
    assert max(float(jnp.abs(p).max()) for p in params) <= 1 / np.sqrt(5)

    for kwargs, name in [({"hidden": 0}, "hidden"), ({"state": -1}, "state"),
                         ({"newton_iters": 0}, "newton_iters"), ({"newton_tol": -1.0}, "newton_tol"),
                         ({"step": 0.0}, "step")]:
        args = {"hidden": 8, "state": 8, **kwargs}
        with pytest.raises(ValueError, match=name):
            LrcSSM(args.pop("hidden"), args.pop("state"), rngs=nnx.Rngs(0), **args)
    with pytest.raises(ValueError, match="mode"):
        layer(_inputs((50, 8)), mode="fast")
    with pytest.raises(ValueError, match="u must have shape"):
        layer(_inputs((50, 7)))
    with pytest.raises(ValueError, match="iters"):
        layer.newton_residual(_inputs((50, 8)), iters=0)


@pytest.mark.parametrize("factor", [1.0, 4.0])
def test_sequential_vjp_by_hand_matches_autodiff(factor):
    """``solve_sequential``'s adjoint recurrence (its custom VJP) against JAX's own
    transpose of the plain ``lax.scan``, for every parameter and the input, with the parameters
    batched over a leading seed axis (``vmap``, as the grid trains its seeds) and P != H."""
    from lib.ssm.lrcssm import PARAMS, _scan_cells, solve_sequential

    layers = [_scaled(LrcSSM(8, 12, rngs=nnx.Rngs(s)), factor) for s in range(3)]
    p = {n: jnp.stack([getattr(l, n)[...] for l in layers]) for n in PARAMS}
    u = _inputs((3, 4, 50, 8))
    w = _inputs((3, 4, 50, 12), seed=9)

    def loss(solver):
        def one(p, u, w):
            return jnp.sum(jnp.tanh(solver(p, sensory(p, u), 1.0)) * w)
        return lambda p, u: jnp.sum(jax.vmap(one)(p, u, w))

    by_hand = jax.jit(jax.grad(loss(solve_sequential), argnums=(0, 1)))(p, u)
    auto = jax.jit(jax.grad(loss(_scan_cells), argnums=(0, 1)))(p, u)
    for (name, a), b in zip(sorted(by_hand[0].items()), [auto[0][n] for n in sorted(auto[0])]):
        scale = float(jnp.max(jnp.abs(b)))
        assert scale > 0, name
        assert float(jnp.max(jnp.abs(a - b))) <= 1e-4 * scale, name
    assert float(jnp.max(jnp.abs(by_hand[1] - auto[1]))) <= 1e-4 * float(jnp.max(jnp.abs(auto[1])))


def test_state_jacobian_is_the_cells_derivative_along_its_trajectory():
    """``state_jacobian`` is ∂x_t/∂x_{t−1} at the states the sequential solve reaches: a central finite
    difference of ``cell`` there agrees (float64 would be exact; float32 to ~1e-3)."""
    from lib.ssm.lrcssm import _scan_cells, _shift

    layer = make_ssm("lrcssm", 8, 8, rngs=nnx.Rngs(3))
    _scaled(layer, 3.0)  # away from init, where every state looks alike
    u = _inputs((2, 40, 8))
    J = np.asarray(layer.state_jacobian(u))
    p = layer.params()
    drive = sensory(p, u)
    x_prev = _shift(_scan_cells(p, drive, layer.step))
    h = 1e-2
    fd = (cell(p, x_prev + h, *drive, layer.step) - cell(p, x_prev - h, *drive, layer.step)) / (2 * h)
    assert J.shape == (2, 40, 8)
    np.testing.assert_allclose(J, np.asarray(fd), atol=2e-3)
    assert J.std() > 1e-2  # the scaled cell's states differ: the check is not of a constant


def test_every_state_starts_with_a_memory_of_a_few_steps():
    """At the peers' init ε = σ(k x + β) ≈ ½ and a ≈ −½, so J ≈ 1 − ¼ for every state: −1/ln J of 3–4
    steps (what the Experiments chapter's table of trained memories is read against)."""
    for seed in range(3):
        J = np.asarray(make_ssm("lrcssm", 64, 64, rngs=nnx.Rngs(seed)).state_jacobian(_inputs((4, 200, 64), seed)))
        assert abs(np.median(J) - 0.75) < 0.02
        assert 0.55 < J.min() and J.max() < 0.9  # no state starts slow
        assert 3.0 < -1 / np.log(np.median(J)) < 4.0
