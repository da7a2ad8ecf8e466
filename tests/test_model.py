"""The classifier and the depth policy: inclusion (untie), parameter counts, test-time depth, errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lib
from lib.model import DROPOUT

SSMS = list(lib.SSM_NAMES)
H, P, C_IN, K = 16, 16, 5, 3


def _x(T=40, batch=4, seed=1):
    return jax.random.normal(jax.random.key(seed), (batch, T, C_IN))


def _model(ssm, blocks, loops, **kw):
    return lib.build_model(ssm=ssm, blocks=blocks, loops=loops, hidden=H, state=P, in_features=C_IN,
                           num_classes=K, seed=0, **kw)


@pytest.mark.parametrize("ssm", SSMS)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_untie_reproduces_looped_logits(ssm, k):
    """The paper's inclusion claim: the standard model with tied blocks is the looped model."""
    loops = 6 // k
    looped = _model(ssm, k, loops)
    looped.eval()
    standard = lib.untie(looped)
    standard.eval()
    x = _x()
    a, b = looped(x), standard(x)
    assert a.shape == (4, K)
    assert float(jnp.max(jnp.abs(a - b))) <= 1e-5
    # the hidden states agree after every application too
    np.testing.assert_allclose(looped.iterates(x), standard.iterates(x), atol=1e-5)
    # parameter counts: the untied model's blocks hold loops × the looped model's
    cl, cs = lib.count_params(looped), lib.count_params(standard)
    assert cs["blocks"] == loops * cl["blocks"]
    assert cs["total"] - cs["blocks"] == cl["total"] - cl["blocks"]
    assert standard.config.blocks == 6 and standard.config.loops == 1


def test_untie_in_train_mode_without_dropout():
    looped = _model("s5", 2, 3, dropout=0.0)
    standard = lib.untie(looped)
    x = _x()
    np.testing.assert_allclose(looped(x), standard(x), atol=1e-5)  # batch statistics in both


def test_untie_after_training_step_keeps_norm_statistics():
    looped = _model("lru", 1, 3)
    looped.train()
    looped(_x(seed=3))  # updates the running statistics of the batch norm
    looped.eval()
    standard = lib.untie(looped)
    standard.eval()
    np.testing.assert_allclose(looped(_x()), standard(_x()), atol=1e-5)


def test_schedule_and_iterates():
    m = _model("s5", 2, 3)
    assert m.schedule() == [0, 1, 0, 1, 0, 1]
    assert m.schedule(1) == [0, 1]
    m.eval()
    states = m.iterates(_x())
    assert states.shape == (6, 4, 40, H)
    # the last iterate is what the head reads
    np.testing.assert_allclose(m.readout(states[-1]), m(_x()), atol=1e-6)


@pytest.mark.parametrize("ssm", ["lru", "lrcssm"])
@pytest.mark.parametrize("inject", [False, True])
def test_ssm_inputs_are_what_each_application_s_layer_reads(ssm, inject):
    """``ssm_inputs`` gives, per application, exactly the array the SSM layer is called with in a forward
    pass (recorded here by wrapping each block's layer), for both block kinds and with input injection."""
    m = _model(ssm, 2, 3, input_injection=inject)
    m.eval()
    x = _x(T=24)
    seen = []
    for block in m.blocks:
        layer = block.ssm
        call = type(layer).__call__
        block.ssm.__class__ = type("Recorded", (type(layer),), {
            "__call__": lambda self, u, mode="parallel", _call=call: (seen.append(np.asarray(u)), _call(self, u, mode))[1]})
    m(x)
    forward = list(seen)  # what the forward pass fed its layers (ssm_inputs runs one more below)
    got = np.asarray(m.ssm_inputs(x))
    assert got.shape == (6, 4, 24, H) and len(forward) == 6
    np.testing.assert_allclose(got, np.stack(forward), atol=1e-6)


def test_test_time_depth():
    m = _model("s5", 1, 4)
    m.eval()
    x = _x()
    assert m(x, loops=2).shape == (4, K)
    assert m.iterates(x, loops=7).shape == (7, 4, 40, H)
    # running more loops is the same as running the first loops and then continuing
    np.testing.assert_allclose(m.iterates(x, loops=7)[:4], m.iterates(x), atol=1e-6)
    assert float(jnp.max(jnp.abs(m(x, loops=2) - m(x)))) > 1e-6


def test_input_injection_option_changes_function_and_keeps_inclusion():
    a = _model("s5", 1, 3)
    b = _model("s5", 1, 3, input_injection=True)
    a.eval(), b.eval()
    x = _x()
    assert float(jnp.max(jnp.abs(a(x) - b(x)))) > 1e-5
    s = lib.untie(b)
    s.eval()
    np.testing.assert_allclose(b(x), s(x), atol=1e-5)


def test_param_counts_scale_with_blocks_not_loops():
    c1 = lib.count_params(_model("lru", 1, 6))
    c6 = lib.count_params(_model("lru", 6, 1))
    c1b = lib.count_params(_model("lru", 1, 2))
    assert c1 == c1b
    assert c6["blocks"] == 6 * c1["blocks"]
    assert c1["total"] > c1["blocks"] > 0


def test_dropout_defaults_and_train_eval_switch():
    m = _model("lru", 1, 2)
    assert m.blocks[0].dropout.rate == DROPOUT["lru"] == 0.1
    x = _x()
    m.train()
    a, b = m(x), m(x)  # dropout draws differ
    assert float(jnp.max(jnp.abs(a - b))) > 0
    m.eval()
    np.testing.assert_array_equal(m(x), m(x))


def test_model_is_jittable_and_differentiable():
    from flax import nnx

    m = _model("s5", 1, 3)

    @nnx.jit
    def loss_fn(model, x):
        return jnp.mean(model(x) ** 2)

    grads = nnx.grad(loss_fn)(m, _x())
    leaves = jax.tree.leaves(grads)
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)


@pytest.mark.parametrize("ssm", SSMS)
def test_finite_logits_and_grads_long_sequence(ssm):
    from flax import nnx

    m = lib.build_model(ssm=ssm, blocks=1, loops=2, hidden=8, state=8, in_features=3, num_classes=2, seed=0)
    x = jax.random.normal(jax.random.key(0), (2, 3000, 3))

    def loss_fn(model):
        return jnp.mean(model(x) ** 2)

    loss, grads = nnx.value_and_grad(loss_fn)(m)
    assert bool(jnp.isfinite(loss))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ssm": "mamba"}, "ssm must be one of"),
        ({"blocks": 0}, "blocks must be an integer >= 1"),
        ({"loops": 0}, "loops must be an integer >= 1"),
        ({"loops": 2.5}, "loops must be an integer >= 1"),
        ({"hidden": -1}, "hidden must be an integer >= 1"),
        ({"num_classes": 1}, "num_classes must be an integer >= 2"),
        ({"mode": "fast"}, "mode must be one of"),
        ({"norm": "group"}, "norm must be one of"),
        ({"dropout": 1.0}, "dropout must be in"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = dict(ssm="s5", blocks=1, loops=2, hidden=8, state=8, in_features=3, num_classes=2, seed=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        lib.build_model(**args)


def test_bad_input_shape_and_loops():
    m = _model("s5", 1, 2)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, T, in_features\)"):
        m(jnp.zeros((40, C_IN)))
    with pytest.raises(ValueError, match="x has 4 features but the model was built with in_features=5"):
        m(jnp.zeros((2, 40, 4)))
    with pytest.raises(ValueError, match="loops must be an integer >= 1"):
        m(_x(), loops=0)


def _settle_statistics(model, x, passes=400):
    """Many training-mode passes on one batch: the running statistics approach that batch's."""
    from flax import nnx

    model.train()

    @nnx.jit
    def update(m, x):
        m(x)

    for _ in range(passes):
        update(model, x)
    model.eval()


@pytest.mark.parametrize("ssm", ["s5", "lru"])
def test_batch_norm_statistics_per_application(ssm):
    """A looped block sees a different distribution at every application. With statistics per
    application (the default) each application's running mean settles on the mean of its own input;
    one shared set (``batch-shared``) can only settle on a mixture of them."""
    x = _x(seed=5) * 3.0
    gaps = {}
    for norm in ("batch", "batch-shared"):
        m = _model(ssm, 1, 4, dropout=0.0, norm=norm)
        _settle_statistics(m, x)
        m.train()
        h0 = m.encoder(x)
        inputs = [h0, *m.iterates(x)[:-1]]  # what application c normalises (training mode)
        m.eval()
        norms = m.blocks[0].norm
        assert len(norms) == (4 if norm == "batch" else 1)
        gaps[norm] = max(float(jnp.max(jnp.abs(norms[min(c, len(norms) - 1)].mean[...] - inp.mean(axis=(0, 1)))))
                         for c, inp in enumerate(inputs))
        spread = max(float(jnp.max(jnp.abs(a.mean(axis=(0, 1)) - inputs[0].mean(axis=(0, 1))))) for a in inputs)
    assert spread > 0.05  # the applications really see different distributions
    assert gaps["batch"] < 0.1 * spread < gaps["batch-shared"], (gaps, spread)
    # untie keeps each application's statistics: the same logits in evaluation mode
    m = _model(ssm, 2, 3, norm="batch")
    _settle_statistics(m, x, passes=20)
    s = lib.untie(m)
    s.eval()
    np.testing.assert_allclose(m(x), s(x), atol=1e-5)
    np.testing.assert_allclose(m.iterates(x), s.iterates(x), atol=1e-5)
    assert lib.count_params(_model(ssm, 1, 4, norm="batch")) == lib.count_params(_model(ssm, 1, 4, norm="batch-shared"))


def test_test_time_depth_beyond_training_uses_the_last_cycles_statistics():
    m = _model("s5", 1, 3)
    _settle_statistics(m, _x(seed=2), passes=5)
    x = _x()
    np.testing.assert_allclose(m.iterates(x, loops=5)[:3], m.iterates(x), atol=1e-6)
    assert len(m.blocks[0].norm) == 3


# -- issue 18: the compiled loop over cycles and the unrolled threefry give the same numbers ----------

@pytest.mark.parametrize("ssm, kw", [("s5", {}), ("lru", {"input_injection": True}),
                                     ("linoss-im", {"norm": "batch-shared"}), ("lrcssm", {}), ("s5", {"blocks": 2})])
def test_scanned_loops_equal_unrolled_under_jit(ssm, kw):
    """Training mode (dropout on, batch statistics updated) under jit: the loops as one lax.scan give
    the unrolled program's logits, iterates (also at test-time depth), norm statistics and dropout
    counters, to float32 rounding (measured ≤ 5e-7)."""
    from flax import nnx

    from lib.model import LoopedClassifier

    x, outs = _x(), []
    for scan in (True, False):
        m = _model(ssm, kw.get("blocks", 1), 3, **{k: v for k, v in kw.items() if k != "blocks"})
        m.scan_loops = scan
        m.train()
        y, it = nnx.jit(lambda m, x: (m(x), m.iterates(x, loops=5)))(m, x)
        state = nnx.to_flat_state(nnx.state(m, nnx.Any(nnx.BatchStat, nnx.RngCount)))
        outs.append((y, it, {k: np.asarray(v) for k, v in state}))
    (y1, i1, s1), (y0, i0, s0) = outs
    assert LoopedClassifier.scan_loops is None  # the class default is untouched
    assert float(jnp.max(jnp.abs(y1 - y0))) <= 1e-5
    assert float(jnp.max(jnp.abs(i1 - i0))) <= 1e-5 * float(jnp.max(jnp.abs(i0)))
    assert s1.keys() == s0.keys()
    assert all(np.allclose(s1[k], s0[k], rtol=1e-5, atol=1e-6) for k in s0)


def test_unrolled_threefry_gives_jax_bits():
    """lib.model compiles JAX's threefry unrolled on CPU: the dropout masks are JAX's own bits."""
    import subprocess
    import sys

    code = "import jax, numpy as np; print(np.asarray(jax.random.bits(jax.random.key(3), (257,))).tolist())"
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    from lib.model import UNROLLED_THREEFRY

    assert UNROLLED_THREEFRY
    ours = np.asarray(jax.jit(lambda k: jax.random.bits(k, (257,)))(jax.random.key(3))).tolist()
    assert ours == eval(plain)


@pytest.mark.parametrize("ssm", ["s5", "lru"])
def test_tied_init_is_the_looped_model_untied_with_its_own_dropout_streams(ssm):
    """init="tied" (issue 21's control): at initialisation the standard k×1 model computes the looped
    1×k model's function (its blocks are copies of the one block), yet its blocks draw different
    dropout masks, like any standard model's; it is refused for a looped model and unknown inits."""
    from flax import nnx

    from lib.model import build_model

    kw = dict(ssm=ssm, hidden=16, state=16, in_features=3, num_classes=4, seed=11)
    tied = build_model(blocks=3, loops=1, init="tied", **kw)
    looped = build_model(blocks=1, loops=3, **kw)
    default = build_model(blocks=3, loops=1, **kw)
    x = jax.random.normal(jax.random.key(0), (2, 20, 3))
    for m in (tied, looped, default):
        m.eval()
    np.testing.assert_array_equal(np.asarray(tied(x)), np.asarray(looped(x)))
    assert not np.allclose(np.asarray(default(x)), np.asarray(looped(x)))
    first, last = (jax.tree.leaves(nnx.state(tied.blocks[i], nnx.Param)) for i in (0, 2))
    assert all(np.array_equal(a, b) for a, b in zip(first, last))
    rngs = [jax.tree.leaves(nnx.state(tied.blocks[i], nnx.RngKey)) for i in range(3)]
    if rngs[0]:  # the blocks' dropout streams differ (the default standard model's)
        assert not all(np.array_equal(jax.random.key_data(a), jax.random.key_data(b)) for a, b in zip(rngs[0], rngs[1]))
    with pytest.raises(ValueError, match="standard models"):
        build_model(blocks=1, loops=3, init="tied", **kw)
    with pytest.raises(ValueError, match="init must be one of"):
        build_model(blocks=3, loops=1, init="untied", **kw)
