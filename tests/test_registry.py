"""Adding an SSM is its file plus one registry entry (issue 20): a toy SSM, registered here only,
goes through ``lib.model.build_model``, a smoke run of ``lib.run`` and the verdicts (``lib.claims``),
and every per-SSM setting the library reads comes from the registry (``lib.ssm.SSMS``)."""
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from flax import nnx

import lib.ssm as S
from lib import claims as C
from lib import results as R

FIXTURES = Path(__file__).parent / "fixtures"


class ToySSM(nnx.Module):
    """A diagonal real linear recurrence: ``h_t = a ⊙ h_{t−1} + B u_t``, ``y_t = C h_t + D ⊙ u_t``."""

    def __init__(self, hidden: int, state: int, *, rngs: nnx.Rngs, decay: float = 0.9, scale: float = 1.0):
        self.hidden, self.scale = hidden, scale
        self.a_logit = nnx.Param(jnp.full((state,), math.log(decay / (1.0 - decay))))
        self.B = nnx.Param(scale * jax.random.normal(rngs.params(), (state, hidden)) / math.sqrt(hidden))
        self.C = nnx.Param(jax.random.normal(rngs.params(), (hidden, state)) / math.sqrt(state))
        self.D = nnx.Param(jnp.ones((hidden,)))

    def __call__(self, u, mode: str = "parallel"):
        u = S.check_input(u, self.hidden, mode)
        a, bu = jax.nn.sigmoid(self.a_logit[...]), u @ self.B[...].T
        if mode == "sequential":
            _, h = jax.lax.scan(lambda h, x: (a * h + x, a * h + x), jnp.zeros(bu.shape[:-2] + a.shape),
                                jnp.moveaxis(bu, -2, 0))
            h = jnp.moveaxis(h, 0, -2)
        else:
            _, h = jax.lax.associative_scan(lambda l, r: (l[0] * r[0], r[0] * l[1] + r[1]),
                                            (jnp.broadcast_to(a, bu.shape), bu), axis=-2)
        return h @ self.C[...].T + self.D[...] * u


#: the one entry a new SSM needs (its settings deliberately unlike the others', to see them read)
TOY = S.SSMSpec("toy", ToySSM, {"scale": 0.5}, dropout=0.2, lr=3e-3, clip=0.5, max_steps={"budget": 123},
                modes={"cpu": "parallel", "*": "sequential"}, paper=True, splits=True,
                knob=S.Knob("decay a", lambda tau: {"decay": math.exp(-1.0 / tau)}))


@pytest.fixture
def toy():
    with S.registered(TOY) as spec:
        yield spec
    assert "toy" not in S.SSMS and "toy" not in S.SSM_NAMES


def test_the_registry_is_the_one_home_of_the_per_ssm_settings():
    from lib import grid as G, layers_view as LV, model as M, profiles as P, train as T

    assert S.SSM_NAMES == tuple(S.SSMS) == ("lru", "s5", "linoss-im", "linoss-imex", "lrcssm")
    assert M.DROPOUT == {n: s.dropout for n, s in S.SSMS.items()}
    assert T.DEFAULT_LR == {n: s.lr for n, s in S.SSMS.items()}
    assert T.DEFAULT_CLIP == {"lrcssm": 1.0}
    assert P.MAX_STEPS_BY_SSM == {"budget": {"linoss-im": 6000, "linoss-imex": 6000, "lrcssm": 6000}}
    assert R.PAPER_SSMS == G.MAIN_SSMS == S.paper_ssms() == ("lru", "s5", "linoss-im", "lrcssm")
    assert set(LV.KNOBS) == set(S.SSMS)
    assert [S.ssm_label(n) for n in S.SSMS] == ["LRU", "S5", "LinOSS (IM)", "LinOSS (IMEX)", "LrcSSM"]
    assert S.ssm_label("nope") == "nope" and S.SSMSpec("x", ToySSM).label == "x"  # default: the name
    with pytest.raises(ValueError, match="ssm must be one of"):
        S.ssm_spec("nope")
    with pytest.raises(ValueError, match="already registered"):
        S.register(S.SSMS["s5"])
    with pytest.raises(ValueError, match="block must be one of"):
        S.SSMSpec("x", ToySSM, block="transformer")


def test_an_unregistered_ssm_falls_back_nowhere():
    from lib import train as T
    from lib.model import build_model
    from lib.profiles import max_steps

    for call in (lambda: T.train_config("toy"), lambda: T.default_mode("toy", "cpu"),
                 lambda: max_steps("budget", "toy"),
                 lambda: build_model("toy", 1, 1, 4, 4, in_features=2, num_classes=2)):
        with pytest.raises(ValueError, match="ssm must be one of"):
            call()


def test_a_registered_toy_ssm_is_read_everywhere(toy):
    from lib import grid as G, layers_view as LV, train as T
    from lib.model import build_model, count_params
    from lib.profiles import max_steps

    assert S.SSM_NAMES[-1] == "toy" and "toy" in S.paper_ssms()
    # one order for panels, legends and sentences: the registry's, an unregistered name after it
    assert S.ssm_order() == ["lru", "s5", "linoss-im", "linoss-imex", "lrcssm", "toy"]
    assert sorted(["zz", "toy", "lrcssm", "aa", "s5"], key=S.ssm_rank) == ["s5", "lrcssm", "toy", "aa", "zz"]
    from lib import viz as V
    assert V.ssm_facet().to_dict()["sort"] == V.ssm_color().to_dict()["sort"] == S.ssm_order()
    cfg = T.train_config("toy", "budget")
    assert (cfg.lr, cfg.grad_clip, cfg.max_steps) == (3e-3, 0.5, 123) and max_steps("full", "toy") == 30_000
    assert T.default_mode("toy", "cpu") == "parallel" and T.default_mode("toy", "gpu") == "sequential"
    assert G.depth_pairs("toy", 6) == [(6, 1), (1, 6), (2, 3), (3, 2)]
    assert LV.timescale_knob("toy", 10.0) == {"decay": pytest.approx(math.exp(-0.1))}
    assert LV.timescale_layer("toy", 4, 3, 10.0).a_logit[...].shape == (3,)

    model = build_model("toy", blocks=1, loops=3, hidden=8, state=4, in_features=3, num_classes=2, seed=0)
    assert model.blocks[0].dropout.rate == 0.2 and model.blocks[0].ssm.scale == 0.5  # the fixed options
    x = jax.random.normal(jax.random.key(0), (2, 7, 3))
    model.eval()
    assert model(x).shape == (2, 2) and count_params(model)["blocks"] > 0
    layer = model.blocks[0].ssm
    u = jax.random.normal(jax.random.key(1), (2, 7, 8))
    np.testing.assert_allclose(layer(u, mode="parallel"), layer(u, mode="sequential"), rtol=1e-5, atol=1e-5)


def test_a_toy_ssm_trains_with_lib_run_and_gets_verdicts(toy, tmp_path):
    from lib.run import main

    out = tmp_path / "toy.jsonl"
    base = ["--dataset", "Tiny", "--data-dir", str(FIXTURES), "--ssm", "toy", "--profile", "smoke",
            "--seeds", "2", "--max-steps", "10", "--eval-every", "10", "--hidden", "8", "--state", "4", "--batch-size", "4",
            "--out", str(out), "--no-checkpoint"]
    for blocks, loops in ((6, 1), (1, 6)):  # standard and looped at depth 6 (the verdicts' pair)
        assert main(base + ["--blocks", str(blocks), "--loops", str(loops)]) == 0
    df = R.read_records(out)  # validated: "toy" is a known SSM while it is registered
    assert len(df) == 4 and set(df["ssm"]) == {"toy"} and set(df["depth"]) == {6}
    assert set(df["lr"]) == {3e-3}  # the registry's rate

    per = C.per_dataset(df, "smoke", n_boot=50)  # the default SSMs: the paper's, the toy among them
    c1 = per[(per["claim"] == "C1") & (per["ssm"] == "toy")]
    assert len(c1) == 1 and c1["dataset"].iloc[0] == "Tiny" and c1["n_seeds"].iloc[0] == 2
    v = C.verdict_table(df, "smoke", n_boot=50)
    toy_rows = v[(v["ssm"] == "toy") & (v["scope"] == "all sets")]
    assert set(toy_rows["claim"]) == {"C1", "C3", "C4"}
    assert set(v["ssm"]) == {"lru", "s5", "linoss-im", "lrcssm", "toy"}
