"""Checks of lib.layers_view (the helpers behind the "State space layers" chapter): small and fast.

Run: ``.venv/bin/python -m pytest tests/test_layers_view.py -q``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from lib import bench, layers_view, viz
from lib.ssm import SSM_NAMES

H, P, T = 4, 8, 64


def test_impulse_response_equals_forward_pass_of_an_impulse():
    """For an LTI layer, the kernel column is y(δ) − D·δ: the layer run on a unit impulse."""
    layer = layers_view.timescale_layer("lru", H, P, 20.0)
    u = np.zeros((T, H), np.float32)
    u[0, 1] = 1.0
    y = np.array(layer(u, mode="sequential"))
    y[0] -= np.asarray(layer.D[...]) * u[0]
    np.testing.assert_allclose(layers_view.impulse_response(layer, T, channel=1), y, atol=1e-5)


def test_impulse_response_nonlinear_layer_is_finite_difference():
    layer = layers_view.timescale_layer("lrcssm", H, H, 20.0)
    r = layers_view.impulse_response(layer, T, channel=0, scale=1e-2)
    assert r.shape == (T, H) and np.isfinite(r).all() and np.abs(r).max() > 0


@pytest.mark.parametrize("name", SSM_NAMES)
def test_timescale_layer_builds_every_ssm(name):
    state = 2 * P if name == "s5" else P
    layer = layers_view.timescale_layer(name, H, state, 30.0)
    assert layers_view.impulse_response(layer, 16).shape == (16, H)


def test_knobs_hit_the_target_timescale():
    """LRU's ring and S5's step range put the eigenvalue timescale within a factor 2 of τ."""
    for name in ("lru", "s5"):
        state = 2 * P if name == "s5" else P
        for tau in (10.0, 100.0):
            got = layers_view.eigen_timescale(layers_view.timescale_layer(name, H, state, tau))
            assert tau / 2 <= got <= 2 * tau, (name, tau, got)
    assert layers_view.timescale_knob("linoss-im", 1.0)["step"] == layers_view.LINOSS_MAX_STEP
    with pytest.raises(ValueError):
        layers_view.timescale_knob("nope", 10.0)
    with pytest.raises(ValueError):
        layers_view.timescale_knob("lru", 0.0)


def test_eigen_timescale_conventions():
    assert math.isinf(layers_view.eigen_timescale(layers_view.timescale_layer("linoss-imex", H, P, 10.0)))
    assert math.isnan(layers_view.eigen_timescale(layers_view.timescale_layer("lrcssm", H, P, 10.0)))


def test_decay_time():
    assert layers_view.decay_time(np.exp(-np.arange(100) / 10.0)) == 11.0
    assert math.isinf(layers_view.decay_time(np.ones(10)))


def test_scan_gap():
    layer = layers_view.timescale_layer("s5", H, 2 * P, 10.0)
    u = np.random.default_rng(0).normal(size=(T, H)).astype(np.float32)
    gap = layers_view.scan_gap(layer, u)
    assert gap["max_abs_diff"] < 1e-5 and gap["max_abs_y"] > 0


def test_time_call():
    timing = bench.time_call(lambda x: x * 2, np.ones(3), repeats=2)
    assert set(timing) == {"first", "median", "best"} and timing["best"] >= 0
    with pytest.raises(ValueError):
        bench.time_call(lambda: None, repeats=0)


def test_no_kernel_widgets_outside_a_kernel():
    assert viz.has_kernel_widgets() is False


def test_state_timescales_of_a_trained_model_read_every_state():
    """Linear layers: −1/ln|λ| of every mode of every unique block, no data needed. LrcSSM: one entry per
    state and application, from the median of its Jacobian; it refuses to guess without the cases."""
    import lib

    kw = dict(hidden=H, state=P, in_features=3, num_classes=2, seed=0)
    m = lib.build_model(ssm="lru", blocks=2, loops=3, **kw)
    lam = np.concatenate([np.abs(np.asarray(b.ssm.eigenvalues())) for b in m.blocks])
    np.testing.assert_allclose(layers_view.state_timescales(m), -1 / np.log(lam), rtol=1e-5)  # float32 |λ|
    lrc = lib.build_model(ssm="lrcssm", blocks=1, loops=3, mode="sequential", **kw)
    lrc.eval()
    X = np.random.default_rng(0).normal(size=(5, 30, 3)).astype(np.float32)
    tau = layers_view.state_timescales(lrc, X)
    inputs = lrc.ssm_inputs(X)
    J0 = np.median(np.asarray(lrc.blocks[0].ssm.state_jacobian(inputs[0])).reshape(-1, P), axis=0)
    assert tau.shape == (3 * P,) and np.allclose(tau[:P], -1 / np.log(J0), rtol=1e-6)
    with pytest.raises(ValueError, match="depends on its input"):
        layers_view.state_timescales(lrc)
