"""Checks of lib.data: the peers' splits, loading rules, preparation and error messages."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lib import data as D
from lib.reshape import reshape_input

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = next((f for f in D.data_folders() if (f / "SelfRegulationSCP1.npz").is_file()), None)
needs_shared = pytest.mark.skipif(SHARED is None, reason="shared/data/uea (the npz data sets) is absent")
SKTIME_DATA = None
try:  # the UEA .ts files bundled in the sktime wheel (BasicMotions, JapaneseVowels)
    import sktime

    SKTIME_DATA = Path(sktime.__file__).parent / "datasets" / "data"
except ImportError:  # pragma: no cover
    pass


@pytest.fixture(scope="module")
def scp1():
    return D.load_uea("SelfRegulationSCP1", folder=SHARED)


def _toy(n_cases=20, T=6, C=2, K=2, seed=0, duplicates=()):
    """An in-memory UEAData; ``duplicates`` are (test_case, train_case) pairs made equal."""
    rng = np.random.default_rng(seed)
    Xtr = rng.normal(size=(n_cases, T, C)).astype(np.float32)
    Xte = rng.normal(size=(n_cases // 2, T, C)).astype(np.float32)
    ytr, yte = np.arange(n_cases) % K, np.arange(n_cases // 2) % K
    for i_te, i_tr in duplicates:
        Xte[i_te] = Xtr[i_tr]
        yte[i_te] = ytr[i_tr]
    return D.UEAData("Toy", Xtr, ytr, Xte, yte, tuple(f"c{k}" for k in range(K)), ("memory",),
                     np.full(n_cases, T), np.full(n_cases // 2, T))


# ---------------------------------------------------------------------------------------------
# 1. the paper protocol reproduces the peers' splits
# ---------------------------------------------------------------------------------------------
@needs_shared
def test_paper_split_reproduces_peer_indices_scp1(scp1):
    import jax

    ref = json.loads((SHARED / "SelfRegulationSCP1.splits.json").read_text())
    assert ref["n_after_dedup"] == 561
    for global_setting in (True, False):  # the caller's setting is restored either way
        with jax.threefry_partitionable(global_setting):
            for seed in D.PAPER_SEEDS:
                s = D.split(scp1, "paper", seed)
                r = ref["seeds"][str(seed)]
                assert s.n_pool == 561 and s.n_duplicates == 0
                assert s.sizes == (392, 84, 85) == tuple(r["train_val_test_sizes"])
                assert sorted(s.idx_val.tolist()) == r["val_indices"]
                assert sorted(s.idx_test.tolist()) == r["test_indices"]
                assert sorted(np.concatenate([s.idx_train, s.idx_val, s.idx_test]).tolist()) == list(range(561))
            assert jax.config.jax_threefry_partitionable is global_setting


@needs_shared
def test_global_random_bit_setting_unchanged_and_matters(scp1):
    import jax
    import jax.random as jr

    before = jax.config.jax_threefry_partitionable
    D.split(scp1, seed=2345)
    assert jax.config.jax_threefry_partitionable == before
    # with the partitionable bits the recipe gives another permutation: the setting is needed
    with jax.threefry_partitionable(True):
        datasetkey = jr.split(jr.PRNGKey(2345), 4)[0]
        other = np.asarray(jr.permutation(jr.split(datasetkey)[0], 561))
    assert (other != D.paper_permutation(2345, 561)).sum() > 500


@needs_shared
def test_unique_cases_equals_numpy_unique(scp1):
    X = np.concatenate([scp1.X_train, scp1.X_test])
    ref = np.unique(X, axis=0, return_index=True)[1]
    assert np.array_equal(D.unique_cases(scp1.X_train, scp1.X_test), ref)
    # ties in the first 16 values, exact duplicates and -0.0 vs 0.0 (equal as floats)
    rng = np.random.default_rng(1)
    Y = rng.integers(0, 2, size=(60, 10, 3)).astype(np.float32)
    Y[:, :6] = 0.0
    Y[5] = Y[17]
    Y[40] = Y[41]
    Y[7, 0, 0], Y[8] = -0.0, Y[7]
    Y[8, 0, 0] = 0.0
    ref = np.unique(Y, axis=0, return_index=True)[1]
    got = D.unique_cases(Y[:25], Y[25:])
    assert np.array_equal(got, ref) and len(got) < 60
    assert 7 in got and 8 not in got and 5 in got and 17 not in got  # first occurrences kept


# ---------------------------------------------------------------------------------------------
# 2. split arithmetic, dedup, determinism, archive protocol
# ---------------------------------------------------------------------------------------------
@needs_shared
@pytest.mark.parametrize("name,n_pool", [("BasicMotions", 80), ("NATOPS", 360), ("Epilepsy", 274)])
def test_paper_split_sizes_and_partition(name, n_pool):
    d = D.load_uea(name, folder=SHARED)
    s = D.split(d, seed=3456)
    n = n_pool
    assert s.n_pool == n and s.n_duplicates == len(d.y_train) + len(d.y_test) - n
    assert s.sizes == (int(0.7 * n), int(0.85 * n) - int(0.7 * n), n - int(0.85 * n))
    parts = [set(s.idx_train.tolist()), set(s.idx_val.tolist()), set(s.idx_test.tolist())]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert parts[0] | parts[1] | parts[2] == set(range(n))
    # the arrays are the pool cases the indices name, with their labels
    X_all = np.concatenate([d.X_train, d.X_test])
    y_all = np.concatenate([d.y_train, d.y_test])
    rows = s.pool_index[s.idx_val]
    assert np.array_equal(s.X_val, X_all[rows]) and np.array_equal(s.y_val, y_all[rows])
    assert s.X_train.dtype == np.float32 and s.y_train.dtype == np.int64
    assert set(np.unique(s.y_train)) == set(range(d.n_classes))


def test_dedup_removes_duplicates_in_memory():
    toy = _toy(n_cases=20, duplicates=[(0, 3), (4, 3), (7, 11)])  # 30 cases, 3 copies
    s = D.split(toy, seed=2345)
    assert s.n_pool == 27 and s.n_duplicates == 3
    assert s.sizes == (18, 4, 5)  # int(18.9), int(22.95) - 18, 27 - 22
    allX = np.concatenate([s.X_train, s.X_val, s.X_test]).reshape(27, -1)
    assert len(np.unique(allX, axis=0)) == 27
    # the kept copy is the first occurrence (the train case), as np.unique's return_index
    assert 3 in s.pool_index and 11 in s.pool_index
    assert not {20, 24, 27} & set(s.pool_index.tolist())


def test_determinism_and_seed_dependence():
    toy = _toy(n_cases=40)
    a, b = D.split(toy, seed=4567), D.split(toy, seed=4567)
    for f in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test", "idx_train"):
        assert np.array_equal(getattr(a, f), getattr(b, f))
    c = D.split(toy, seed=5678)
    assert not np.array_equal(a.idx_test, c.idx_test)
    assert not np.array_equal(a.X_test, c.X_test)
    arch1, arch2 = D.split(toy, "archive", seed=1), D.split(toy, "archive", seed=2)
    assert np.array_equal(arch1.idx_val, D.split(toy, "archive", seed=1).idx_val)
    assert not np.array_equal(arch1.idx_val, arch2.idx_val)


@needs_shared
def test_archive_protocol_keeps_test_and_stratifies_validation():
    d = D.load_uea("NATOPS", folder=SHARED)  # 180 train (30 per class), 180 test
    s = D.split(d, "archive", seed=6789, val_fraction=0.2)
    assert np.array_equal(s.X_test, d.X_test) and np.array_equal(s.y_test, d.y_test)
    assert s.sizes == (144, 36, 180)
    assert np.array_equal(np.bincount(s.y_val), [6] * 6)  # 20 % of 30 per class
    assert np.array_equal(np.bincount(s.y_train), [24] * 6)
    assert sorted(np.concatenate([s.idx_train, s.idx_val]).tolist()) == list(range(180))
    assert np.array_equal(s.X_val, d.X_train[s.idx_val])
    assert s.pool_index is None and s.pipeline["val_fraction"] == 0.2
    s15 = D.split(d, "archive", seed=6789)  # default 15 %
    assert s15.sizes == (153, 27, 180)
    assert np.abs(np.bincount(s15.y_val, minlength=6) - 27 / 6).max() <= 1


# ---------------------------------------------------------------------------------------------
# 3. .ts files
# ---------------------------------------------------------------------------------------------
def test_ts_fixture_loads_with_shapes_and_sorted_labels():
    d = D.load_uea("Tiny", folder=FIXTURES)
    assert d.X_train.shape == (9, 8, 3) and d.X_test.shape == (4, 8, 3)
    assert d.X_train.dtype == np.float32
    # code-point order: 'Zeta' < 'alpha' < 'beta' (sktime's lower-casing undone)
    assert d.class_names == ("Zeta", "alpha", "beta")
    assert d.y_train.tolist() == [1, 2, 0] * 3 and d.y_test.tolist() == [2, 0, 1, 1]
    # train case 0 as written in the file
    first = (FIXTURES / "Tiny_TRAIN.ts").read_text().split("@data\n")[1].splitlines()[0].split(":")
    assert d.X_train[0, :, 0].tolist() == pytest.approx([float(v) for v in first[0].split(",")])
    assert d.X_train[0, :, 2].tolist() == pytest.approx([float(v) for v in first[2].split(",")])
    assert d.ragged is None and d.lengths_train.tolist() == [8] * 9
    s = D.split(d, seed=2345)  # test case 2 copies train case 0
    assert s.n_pool == 12 and s.n_duplicates == 1 and s.sizes == (8, 2, 2)


def test_ts_takes_precedence_over_npz_and_subfolder_layout(tmp_path):
    for f in ("Tiny_TRAIN.ts", "Tiny_TEST.ts"):
        shutil.copy(FIXTURES / f, tmp_path / f)
    np.savez(tmp_path / "Tiny.npz", X_train=np.zeros((2, 8, 3), np.float32), y_train=np.array([0, 1]),
             X_test=np.zeros((1, 8, 3), np.float32), y_test=np.array([1]), class_names=np.array(["q", "p"]))
    d = D.load_uea("Tiny", folder=tmp_path)
    assert d.source[0].endswith("Tiny_TRAIN.ts") and d.X_train.shape == (9, 8, 3)
    only_npz = tmp_path / "npz"
    only_npz.mkdir()
    shutil.move(tmp_path / "Tiny.npz", only_npz / "Tiny.npz")
    e = D.load_uea("Tiny", folder=only_npz)
    assert e.source[0].endswith("Tiny.npz") and e.X_train.shape == (2, 8, 3)
    assert e.class_names == ("p", "q") and e.y_train.tolist() == [1, 0]  # re-mapped to sorted order
    nested = tmp_path / "archive" / "Tiny"
    nested.mkdir(parents=True)
    for f in ("Tiny_TRAIN.ts", "Tiny_TEST.ts"):
        shutil.copy(FIXTURES / f, nested / f)
    assert D.load_uea("Tiny", folder=tmp_path / "archive").X_test.shape == (4, 8, 3)
    assert D.available_datasets(tmp_path / "archive") == ["Tiny"]


def test_env_var_points_at_uea_folder(monkeypatch):
    monkeypatch.setenv(D.ENV_UEA_DIR, str(FIXTURES))
    assert D.data_folders()[0] == FIXTURES
    assert D.load_uea("Tiny").source[0] == str(FIXTURES / "Tiny_TRAIN.ts")
    assert {"Tiny", "Ragged"} <= set(D.available_datasets())


@needs_shared
@pytest.mark.skipif(SKTIME_DATA is None or not (SKTIME_DATA / "BasicMotions").is_dir(),
                    reason="sktime's bundled UEA .ts files are absent")
def test_archive_ts_and_npz_agree():
    """sktime ships the archive's BasicMotions/JapaneseVowels .ts: they load to the npz arrays."""
    ts = D.load_uea("BasicMotions", folder=SKTIME_DATA)
    npz = D.load_uea("BasicMotions", folder=SHARED)
    assert ts.class_names == npz.class_names == ("Badminton", "Running", "Standing", "Walking")
    for f in ("X_train", "y_train", "X_test", "y_test"):
        assert np.array_equal(getattr(ts, f), getattr(npz, f)), f
    ts = D.load_uea("JapaneseVowels", folder=SKTIME_DATA, ragged="pad")
    npz = D.load_uea("JapaneseVowels", folder=SHARED, ragged="pad")
    assert ts.X_train.shape == npz.X_train.shape == (270, 29, 12)
    for f in ("X_train", "y_train", "X_test", "y_test", "lengths_train", "lengths_test"):
        assert np.array_equal(getattr(ts, f), getattr(npz, f)), f
    cut = D.load_uea("JapaneseVowels", folder=SHARED, ragged="truncate")
    assert cut.X_test.shape == (370, 7, 12) and np.array_equal(cut.X_test, npz.X_test[:, :7])


def test_ragged_policies_on_ts():
    with pytest.raises(ValueError, match=r"ragged lengths are not supported.*pad or truncate first"):
        D.load_uea("Ragged", folder=FIXTURES)
    p = D.load_uea("Ragged", folder=FIXTURES, ragged="pad")
    assert p.X_train.shape == (4, 8, 2) and p.X_test.shape == (2, 8, 2)
    assert p.lengths_train.tolist() == [8, 5, 7, 6] and p.ragged == "pad"
    assert np.all(p.X_train[1, 5:] == p.X_train[1, 4])  # last observation repeated
    t = D.load_uea("Ragged", folder=FIXTURES, ragged="truncate")
    assert t.X_train.shape == (4, 5, 2) and np.array_equal(t.X_train, p.X_train[:, :5])


# ---------------------------------------------------------------------------------------------
# 4. time channel, standardisation, reshaping, pipeline record
# ---------------------------------------------------------------------------------------------
def test_time_channel():
    toy = _toy(n_cases=20, T=6, C=2)
    plain, timed = D.split(toy, seed=2345), D.split(toy, seed=2345, time=True)
    assert timed.input_shape == (6, 3)
    assert np.array_equal(timed.X_val[:, :, 1:], plain.X_val)
    assert timed.X_test[0, :, 0].tolist() == pytest.approx([0, 1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6])
    assert np.array_equal(timed.X_train[3, :, 0], np.arange(6, dtype=np.float32) * np.float32(1 / 6))
    assert timed.pipeline["time_channel"] is True
    # bit-for-bit the peers' jnp expression (T / L) * arange(L) with T = 1 (naive i / L differs)
    import jax.numpy as jnp

    L = 896
    peers = np.asarray((1 / L) * jnp.repeat(jnp.arange(L)[None, :], 2, axis=0))
    ours = D.split(_toy(n_cases=20, T=L, C=1), seed=2345, time=True).X_train[:2, :, 0]
    assert np.array_equal(ours, peers)
    assert not np.array_equal(ours[0], np.arange(L) / np.float32(L))


def test_standardize_fitted_on_train_only():
    toy = _toy(n_cases=40, T=10, C=3)
    toy.X_train[:] = toy.X_train * np.array([1, 10, 100], np.float32) + np.array([5, -3, 7], np.float32)
    s = D.split(toy, seed=2345, time=True)
    p = D.prepare(s, standardize=True)
    x = p.X_train[:, :, 1:].astype(np.float64)
    assert np.abs(x.mean(axis=(0, 1))).max() < 1e-5
    assert np.abs(x.std(axis=(0, 1)) - 1).max() < 1e-5
    raw = s.X_train[:, :, 1:].astype(np.float64)
    mu, sd = raw.mean(axis=(0, 1)), raw.std(axis=(0, 1))
    assert np.allclose(p.X_test[:, :, 1:], (s.X_test[:, :, 1:] - mu) / sd, atol=1e-5)
    assert np.allclose(p.X_val[:, :, 1:], (s.X_val[:, :, 1:] - mu) / sd, atol=1e-5)
    assert abs(p.X_val[:, :, 1:].mean()) > 1e-3  # val was not re-fitted to mean 0
    assert np.array_equal(p.X_train[:, :, 0], s.X_train[:, :, 0])  # time channel untouched
    rec = p.pipeline["standardize"]
    assert rec["fit_on"] == "train" and rec["before_reshape"] and rec["mean"] == pytest.approx(mu.tolist())
    assert s.pipeline.get("standardize") is None  # the input split is not modified


def test_prepare_reshape_and_pipeline():
    toy = _toy(n_cases=20, T=12, C=2)
    s = D.split(toy, seed=2345)
    p = D.prepare(s, reshape="concat", chunk=4, standardize=True)
    assert p.X_train.shape == (21, 3, 8) and p.input_shape == (3, 8)
    std = D.prepare(s, standardize=True)
    assert np.array_equal(p.X_val, reshape_input(std.X_val, "concat", 4))
    r = D.prepare(s, reshape="rechunk", chunk=6, order="feature")
    assert r.X_test.shape == (len(s.y_test), 4, 6)
    assert np.array_equal(r.X_test[0].ravel(), s.X_test[0].T.ravel())
    pipe = json.loads(json.dumps(p.pipeline))  # JSON-able for run records
    assert pipe["reshape"] == {"method": "concat", "chunk": 4, "order": "time", "pad": False}
    assert pipe["input_shape"] == [3, 8] and pipe["raw_shape"] == [12, 2]
    assert pipe["protocol"] == "paper" and pipe["seed"] == 2345 and pipe["sizes"]["train"] == 21
    with pytest.raises(ValueError, match="does not divide"):
        D.prepare(s, reshape="concat", chunk=5)
    assert D.prepare(s, reshape="concat", chunk=5, pad=True).input_shape == (3, 10)
    with pytest.raises(ValueError, match="already been prepared"):
        D.prepare(p)


# ---------------------------------------------------------------------------------------------
# 5. bad input: one clear error each
# ---------------------------------------------------------------------------------------------
def test_unknown_dataset_lists_available_and_how_to_point():
    with pytest.raises(ValueError, match=r"unknown data set 'EigenWorms'.*Available: Ragged, Tiny.*LOOPED_SSM_UEA_DIR"):
        D.load_uea("EigenWorms", folder=FIXTURES)


def test_missing_folder_and_half_pair(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        D.load_uea("Tiny", folder=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        D.available_datasets(tmp_path / "nowhere")
    shutil.copy(FIXTURES / "Tiny_TRAIN.ts", tmp_path / "Tiny_TRAIN.ts")
    with pytest.raises(FileNotFoundError, match="Tiny_TEST.ts"):
        D.load_uea("Tiny", folder=tmp_path)


def test_nan_data_is_refused(tmp_path):
    text = (FIXTURES / "Tiny_TEST.ts").read_text().split("@data\n")
    rows = text[1].splitlines()
    rows[3] = "?" + rows[3][rows[3].index(","):]  # the archive's missing-value marker
    (tmp_path / "Tiny_TEST.ts").write_text(text[0] + "@data\n" + "\n".join(rows) + "\n")
    shutil.copy(FIXTURES / "Tiny_TRAIN.ts", tmp_path / "Tiny_TRAIN.ts")
    with pytest.raises(ValueError, match=r"1 NaN/infinite values in X_test \(cases \[3\]\)"):
        D.load_uea("Tiny", folder=tmp_path)
    X = np.zeros((3, 4, 2), np.float32)
    X[1, 2, 0] = np.inf
    np.savez(tmp_path / "Bad.npz", X_train=X, y_train=np.zeros(3, int), X_test=X[:1],
             y_test=np.zeros(1, int), class_names=np.array(["a"]))
    with pytest.raises(ValueError, match=r"NaN/infinite values in X_train \(cases \[1\]\)"):
        D.load_uea("Bad", folder=tmp_path)


def test_bad_protocol_seed_and_options():
    toy = _toy()
    with pytest.raises(ValueError, match="unknown protocol 'kfold'"):
        D.split(toy, "kfold")
    for bad in (-1, 2**32, 1.5, True, "2345", None):
        with pytest.raises(ValueError, match="seed must be an integer"):
            D.split(toy, seed=bad)
    with pytest.raises(ValueError, match="val_fraction applies to protocol='archive' only"):
        D.split(toy, val_fraction=0.2)
    with pytest.raises(ValueError, match="val_fraction must be in"):
        D.split(toy, "archive", val_fraction=1.5)
    with pytest.raises(ValueError, match="ragged must be one of"):
        D.load_uea("Tiny", folder=FIXTURES, ragged="drop")
    with pytest.raises(ValueError, match="cannot carve a stratified validation set"):
        D.split(_toy(n_cases=4, K=2), "archive", val_fraction=0.25)  # 1 case for 2 classes


def test_import_is_light_and_side_effect_free():
    code = ("import sys, lib.data; print(int('jax' in sys.modules), int('sktime' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], check=True,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": "."}).stdout
    assert out.split() == ["0", "0"]
