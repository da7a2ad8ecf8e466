"""MiniRocket baseline: the NumPy transform equals sktime's, determinism, accuracy on
BasicMotions, records that validate, resume."""
import json
import types
from pathlib import Path

import numpy as np
import pytest

from lib import baseline as B
from lib import results as R

BASIC = Path("/work/shared/data/uea/BasicMotions.npz")
for _p in Path(__file__).resolve().parents:
    if (_p / "shared/data/uea/BasicMotions.npz").exists():
        BASIC = _p / "shared/data/uea/BasicMotions.npz"
        break
needs_basic = pytest.mark.skipif(not BASIC.exists(), reason="BasicMotions.npz not available")


@pytest.fixture
def sktime_reference(monkeypatch):
    """sktime's own ``_transform_multi``; without numba it is plain Python once its two numba-only
    helpers (``_PPV``, ``prange``) are supplied."""
    import sktime.transformations.rocket._minirocket_multi_numba as M

    if B.backend() == "sktime-python":
        monkeypatch.setattr(M, "_PPV", lambda a, b: (a > b).astype(np.float32), raising=False)
        monkeypatch.setattr(M, "prange", range, raising=False)
    return M._transform_multi


@pytest.mark.parametrize("shape, kernels", [((5, 3, 40), 200), ((4, 12, 100), 500), ((3, 1, 9), 84)])
def test_numpy_transform_equals_sktime(sktime_reference, shape, kernels):
    X = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    params = B._sktime_fit(X, kernels, 32, 7)
    ref = np.asarray(sktime_reference(X, params))
    mine = B.transform_numpy(X, params)
    assert mine.shape == ref.shape == (shape[0], max(84, kernels // 84 * 84))
    np.testing.assert_allclose(mine, ref, atol=1.0 / shape[-1] + 1e-6)  # exact without numba
    if B.backend() == "sktime-python":
        np.testing.assert_array_equal(mine, ref)
    # batching does not change anything
    np.testing.assert_array_equal(B.transform_numpy(X, params, max_bytes=1), mine)


def test_minirocket_deterministic_and_leaves_global_rng_alone():
    X = np.random.default_rng(1).normal(size=(6, 2, 30)).astype(np.float32)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = B.MiniRocket(num_kernels=168, seed=5).fit(X).transform(X)
    assert np.array_equal(np.random.get_state()[1], before)
    b = B.MiniRocket(num_kernels=168, seed=5).fit(X).transform(X)
    c = B.MiniRocket(num_kernels=168, seed=6).fit(X).transform(X)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == (6, 168) and a.min() >= 0 and a.max() <= 1
    with pytest.raises(ValueError, match="T >= 9"):
        B.MiniRocket().fit(X[:, :, :8])


def _split_from_npz(path, seed=0):
    """A train/val/test namespace straight from the npz (published test; val carved from train),
    so this test does not depend on lib.data."""
    d = np.load(path)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(d["y_train"]))
    va, tr = idx[:8], idx[8:]
    return types.SimpleNamespace(X_train=d["X_train"][tr], y_train=d["y_train"][tr],
                                 X_val=d["X_train"][va], y_val=d["y_train"][va],
                                 X_test=d["X_test"], y_test=d["y_test"])


@needs_basic
def test_fit_evaluate_on_basicmotions_arrays():
    res = B.fit_evaluate(_split_from_npz(BASIC), num_kernels=B.NUM_KERNELS["smoke"], seed=2345)
    assert res["test_acc"] >= 0.9 and res["train_acc"] == 1.0
    assert res["n_features"] == 924 and res["params_total"] == 924 * 4 + 4
    assert res["alpha"] in B.ALPHAS


@needs_basic
def test_cli_on_basicmotions_writes_valid_record_and_resumes(tmp_path, capsys):
    pytest.importorskip("lib.data")
    out = tmp_path / "baseline.jsonl"
    argv = ["--dataset", "BasicMotions", "--profile", "smoke", "--seeds", "1", "--out", str(out),
            "--data-dir", str(BASIC.parent)]
    assert B.main(argv) == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 1
    rec = R.validate_record(recs[0])
    assert rec["test_acc"] >= 0.9
    assert (rec["ssm"], rec["blocks"], rec["loops"], rec["depth"], rec["seed"]) == ("minirocket", 0, 0, 0, 2345)
    assert rec["profile"] == "smoke" and rec["protocol"] == "paper" and rec["hidden"] == 924
    assert rec["command"].startswith("python -m lib.baseline --dataset BasicMotions")
    assert sum(rec["sizes"]) == 80 and rec["versions"]["sktime"] != "absent"
    # a second run finds the seed done and writes nothing
    capsys.readouterr()
    assert B.main(argv) == 0
    assert "already in" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 1
    df = R.read_records(out)
    assert df.loc[0, "ssm"] == "minirocket" and df.loc[0, "backend"] == B.backend()
