"""lib.looping: iterate metrics on sequences with known fixed points, inclusion, test-time depth, params."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import lib
from lib import looping as LP

H, P, C_IN, K = 8, 8, 3, 3


def _model(ssm="s5", blocks=1, loops=3, **kw):
    m = lib.build_model(ssm=ssm, blocks=blocks, loops=loops, hidden=H, state=P, in_features=C_IN,
                        num_classes=K, seed=0, **kw)
    m.eval()
    return m


def _x(n=6, T=12, seed=1):
    return jax.random.normal(jax.random.key(seed), (n, T, C_IN))


def _interleave(seqs):
    """Per-block sequences ``(L, B, T, H)`` for blocks 0..k-1 -> iterates ``(k·L, B, T, H)`` in schedule order."""
    return np.stack(seqs, axis=1).reshape((-1,) + seqs[0].shape[1:])


def test_geometric_decay_without_fixed_point_offset():
    """h_i = rho^i w: relative change is exactly 1 - rho, cosine exactly 1."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(2, 5, H))
    rho, L = 0.6, 7
    seq = np.stack([rho ** i * w for i in range(L)])
    df = LP.iterate_metrics(seq.astype(np.float32), 1)
    assert list(df["loop"]) == list(range(1, L + 1))
    assert np.isnan(df["rel_change"].iloc[0]) and np.isnan(df["cosine"].iloc[0])
    np.testing.assert_allclose(df["rel_change"].iloc[1:], 1 - rho, rtol=1e-5)
    np.testing.assert_allclose(df["cosine"].iloc[1:], 1.0, atol=1e-6)
    # distance to the last iterate: |rho^i - rho^(L-1)| / rho^(L-1)
    np.testing.assert_allclose(df["dist_to_last"], [rho ** i / rho ** (L - 1) - 1 for i in range(L)], rtol=1e-4)


def test_two_cycle_of_fixed_points_matches_closed_form():
    """k = 2: block 0 converges to v, block 1 to -v, both geometrically (h = v + rho^i w, w ⟂ v).

    Per vector the relative change is rho^(i-1) (1 - rho) |w| / sqrt(|v|^2 + rho^(2(i-1)) |w|^2); the
    metrics average it over batch and time. Same-block change -> 0 and cosine -> 1 (fixed points) while
    the change between consecutive applications stays near |v - (-v)| / |v| = 2 (the cycle)."""
    rng = np.random.default_rng(1)
    B, T, L, rho = 3, 4, 12, 0.5
    v = np.zeros((B, T, H))
    v[..., 0] = rng.uniform(1, 3, size=(B, T))  # v along e_0, w along e_1: orthogonal
    w = np.zeros((B, T, H))
    w[..., 1] = rng.uniform(1, 3, size=(B, T))
    seq0 = np.stack([v + rho ** i * w for i in range(L)])
    seq1 = np.stack([-v + rho ** i * w for i in range(L)])
    df = LP.iterate_metrics(_interleave([seq0, seq1]).astype(np.float32), 2)
    assert len(df) == 2 * L and set(df["block"]) == {0, 1}
    nv, nw = v[..., 0], w[..., 1]
    for i in range(1, L):
        expect = np.mean(rho ** (i - 1) * (1 - rho) * nw / np.sqrt(nv ** 2 + rho ** (2 * (i - 1)) * nw ** 2))
        got = df[(df.loop == i + 1)]["rel_change"].to_numpy()
        np.testing.assert_allclose(got, expect, rtol=1e-4)
        a, b = v + rho ** i * w, v + rho ** (i - 1) * w
        cos = np.mean((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)))
        np.testing.assert_allclose(df[(df.loop == i + 1)]["cosine"].to_numpy(), cos, rtol=1e-5)
    late = df[df.loop == L]
    assert (late["rel_change"] < 1e-3).all() and (late["cosine"] > 1 - 1e-6).all()
    assert (late["step_change"] > 1.9).all()  # the cycle: consecutive applications stay far apart
    np.testing.assert_allclose(late["dist_to_last"], 0, atol=1e-7)


def test_identical_iterates():
    h = np.random.default_rng(2).normal(size=(1, 2, 5, H)).astype(np.float32)
    states = np.repeat(h, 8, axis=0)  # k = 2, L = 4, every iterate the same
    df = LP.iterate_metrics(states, 2)
    np.testing.assert_allclose(df["cosine"].iloc[2:], 1.0, atol=1e-6)
    np.testing.assert_allclose(df["rel_change"].iloc[2:], 0.0, atol=1e-7)
    np.testing.assert_allclose(df["dist_to_last"], 0.0, atol=1e-7)
    with pytest.raises(ValueError, match="cannot be split"):
        LP.iterate_metrics(states[:7], 2)


@pytest.mark.parametrize("ssm,k", [("s5", 2), ("lrcssm", 1), ("lru", 3)])
def test_inclusion_check(ssm, k):
    m = _model(ssm, k, 6 // k)
    m.train()
    out = LP.inclusion_check(m, _x())
    assert out["max_abs_diff"] <= 1e-5 and out["max_abs_logit"] > 0
    assert out["depth"] == 6 and out["blocks"] == k
    assert out["block_params_standard"] == (6 // k) * out["block_params_looped"]
    assert out["params_standard"] - out["block_params_standard"] == out["params_looped"] - out["block_params_looped"]
    assert not m.blocks[0].dropout.deterministic  # the caller's model is left in training mode


def test_test_time_depth_matches_direct_runs():
    m = _model("s5", 2, 2)
    x = _x(n=10)
    y = np.arange(10) % K
    acc, mets = LP.depth_sweep(m, x, y, [1, 2, 3], batch_size=4)  # 3 batches, the last one short
    assert list(acc["loops"]) == [1, 2, 3] and list(acc["depth"]) == [2, 4, 6]
    assert list(acc["trained"]) == [False, True, False]
    assert ((acc["accuracy"] >= 0) & (acc["accuracy"] <= 1)).all()
    for n, a in zip(acc["loops"], acc["accuracy"]):
        direct = float(np.mean(np.asarray(jnp.argmax(m(x, loops=n), -1)) == y))
        assert a == pytest.approx(direct)
    # batched metrics equal the metrics of the whole set at once
    whole = LP.iterate_metrics(m.iterates(x, loops=3), 2)
    np.testing.assert_allclose(mets["rel_change"], whole["rel_change"], rtol=1e-5)
    np.testing.assert_allclose(mets["dist_to_last"], whole["dist_to_last"], rtol=1e-5, atol=1e-7)
    t = LP.test_time_depth(m, x, y, range(1, 5))
    assert len(t) == 4 and t["accuracy"].between(0, 1).all()


def test_batch_stats_mode_is_training_mode_without_dropout():
    """The control for untrained models: batch norm on batch statistics, dropout off."""
    m = _model("lru", 1, 2, dropout=0.0)
    fresh = LP.reinit(m)
    x = _x(n=8)
    y = np.arange(8) % K
    acc, mets = LP.depth_sweep(fresh, x, y, [2], batch_stats=True)
    _, mets_eval = LP.depth_sweep(fresh, x, y, [2])
    fresh.train()
    direct = float(np.mean(np.asarray(jnp.argmax(fresh(x), -1)) == y))
    assert acc["accuracy"].iloc[0] == pytest.approx(direct)
    whole = LP.iterate_metrics(fresh.iterates(x), 1)
    np.testing.assert_allclose(mets["norm"], whole["norm"], rtol=1e-5)
    assert not np.allclose(mets_eval["norm"], whole["norm"], rtol=1e-3)  # running statistics differ


def test_params_vs_depth_counts_real_models():
    df = LP.params_vs_depth(["s5", "lrcssm"], blocks=(1, 2, 3), depths=[6], hidden=H, state=P,
                            in_features=C_IN, num_classes=K)
    for _, row in df.iterrows():
        m = lib.build_model(ssm=row.ssm, blocks=int(row.blocks), loops=int(row.loops), hidden=H, state=P,
                            in_features=C_IN, num_classes=K)
        assert lib.count_params(m) == {"total": row.params_total, "blocks": row.params_blocks}
    assert set(df[df.kind == "looped"]["blocks"]) == {1, 2, 3}


def test_schedule_frame_is_the_model_schedule():
    df = LP.schedule_frame((1, 2, 3), 6)
    for k in (1, 2, 3, 6):
        sub = df[df.blocks == k]
        assert list(sub["block"]) == _model("s5", k, 6 // k).schedule()


def test_load_trained_roundtrip(tmp_path):
    """A model saved the way ``lib.run`` saves it comes back with the data it was trained for."""
    from lib.store import save_state

    ds = lib.data.load_uea("BasicMotions")
    s = lib.data.prepare(lib.data.split(ds, "paper", 2345), reshape="concat", chunk=4)
    kw = dict(ssm="s5", blocks=2, loops=2, hidden=H, state=P, in_features=s.X_train.shape[-1],
              num_classes=s.n_classes)
    m = lib.build_model(seed=2345, **kw)
    rec = dict(dataset="BasicMotions", ssm="s5", blocks=2, loops=2, reshape="concat", chunk=4, order="time",
               protocol="paper", seed=2345, val_acc=0.5, test_acc=0.5, best_step=0, commit="x", command="y")
    save_state(tmp_path, rec, None, nnx.split(m)[1], kw)
    assert LP.saved_models(tmp_path) == sorted(tmp_path.glob("*.npz"))
    loaded, meta, split = LP.load_trained(LP.saved_models(tmp_path)[0])
    m.eval()
    np.testing.assert_allclose(loaded(split.X_test), m(split.X_test), atol=1e-6)
    np.testing.assert_array_equal(split.X_test, s.X_test)
    assert "time channel False" in meta["data_note"]


def test_load_trained_uses_the_records_ragged_policy(tmp_path):
    """A model trained on a ragged set (JapaneseVowels, ``--ragged pad``) loads with its data: the
    record's policy reaches the loader (it refused the set before)."""
    from lib.store import save_state

    if "JapaneseVowels" not in lib.data.available_datasets():
        pytest.skip("JapaneseVowels is not here")
    ds = lib.data.load_uea("JapaneseVowels", ragged="pad")
    s = lib.data.prepare(lib.data.split(ds, "paper", 2345), reshape="rechunk", chunk=24, pad=True)
    kw = dict(ssm="s5", blocks=1, loops=2, hidden=H, state=P, in_features=s.X_train.shape[-1],
              num_classes=s.n_classes)
    m = lib.build_model(seed=2345, **kw)
    rec = dict(dataset="JapaneseVowels", ssm="s5", blocks=1, loops=2, reshape="rechunk", chunk=24, order="time",
               protocol="paper", seed=2345, ragged="pad", pad=True, val_acc=0.5, test_acc=0.5, best_step=0,
               commit="x", command="y", pipeline=dict(ragged="pad", time_channel=False, standardize=False,
                                                       reshape=dict(method="rechunk", chunk=24, pad=True)))
    save_state(tmp_path, rec, None, nnx.split(m)[1], kw)
    loaded, meta, split = LP.load_trained(LP.saved_models(tmp_path)[0])
    np.testing.assert_array_equal(split.X_test, s.X_test)


def test_pick_saved_prefers_matching_groups_and_the_asked_ssm(tmp_path):
    import json as _json

    from lib import looping as LP

    def save(name, ssm, blocks, dataset="D", seed=1, val_acc=None, profile="full"):
        (tmp_path / f"{name}.npz").write_bytes(b"")
        rec = {"dataset": dataset, "reshape": "none", "chunk": 1, "seed": seed, "profile": profile}
        if val_acc is not None:
            rec["val_acc"] = val_acc
        (tmp_path / f"{name}.json").write_text(_json.dumps(
            {"model": {"ssm": ssm, "blocks": blocks, "loops": 6 // blocks, "hidden": 64}, "record": rec}))
        return tmp_path / f"{name}.npz"

    a_lru = save("a_lru_k1", "lru", 1)
    b_s5 = save("b_s5_k1", "s5", 1)
    assert LP.saved_models(tmp_path) == [a_lru, b_s5]
    assert LP.pick_saved([a_lru, b_s5]) == {1: a_lru}            # sorted order without a preference
    assert LP.pick_saved([a_lru, b_s5], ssm="s5") == {1: b_s5}   # the asked SSM first
    c_s5 = save("c_s5_k2", "s5", 2)
    d_lru = save("d_lru_k2", "lru", 2, dataset="E")
    # a like-with-like pair (same data set, SSM, seed) wins over the first file of each k
    assert LP.pick_saved([a_lru, b_s5, c_s5, d_lru]) == {1: b_s5, 2: c_s5}
    # ... trained under one protocol: a budget-profile k = 2 is no pair for a full-profile k = 1
    c_budget = save("c_s5_k2_budget", "s5", 2, profile="budget")
    a_budget = save("a_lru_k1_budget", "lru", 1, profile="budget")
    lru_budget = save("h_lru_k2_budget", "lru", 2, profile="budget")
    assert LP.pick_saved([b_s5, c_budget, a_budget, lru_budget], ssm="s5") == {1: a_budget, 2: lru_budget}
    # without a pair, the model that learnt its task best (validation) wins over the sorted order
    near_chance = save("e_s5_k1", "s5", 1, dataset="F", val_acc=0.55)
    learnt = save("f_s5_k1", "s5", 1, dataset="G", val_acc=0.98)
    assert LP.pick_saved([near_chance, learnt], blocks=(1,)) == {1: learnt}
    assert LP.pick_saved([near_chance, learnt, c_s5], ssm="s5") == {1: learnt, 2: c_s5}
    # a model of the asked depth (k·L) wins over a better-validated one of another depth
    shallow = save("g_s5_k1", "s5", 1, dataset="H", val_acc=1.0)
    meta = _json.loads(shallow.with_suffix(".json").read_text())
    meta["model"]["loops"] = 2
    shallow.with_suffix(".json").write_text(_json.dumps(meta))
    assert LP.pick_saved([learnt, shallow], blocks=(1,)) == {1: shallow}
    assert LP.pick_saved([learnt, shallow], blocks=(1,), depth=6) == {1: learnt}


def test_loop_families_group_one_block_models_that_differ_only_in_loops(tmp_path):
    import json as _json

    def save(name, loops, ssm="s5", blocks=1, chunk=384, seed=1):
        (tmp_path / f"{name}.npz").write_bytes(b"")
        rec = {"dataset": "D", "reshape": "rechunk", "chunk": chunk, "seed": seed}
        (tmp_path / f"{name}.json").write_text(_json.dumps(
            {"model": {"ssm": ssm, "blocks": blocks, "loops": loops, "hidden": 64}, "record": rec}))
        return tmp_path / f"{name}.npz"

    big = {L: save(f"a{L}", L) for L in (1, 2, 4, 8)}
    small = {L: save(f"b{L}", L, chunk=192) for L in (2, 6)}           # only two loop counts: no family
    lru = {L: save(f"c{L}", L, ssm="lru", chunk=96) for L in (1, 2, 3)}
    save("d", 3, blocks=2)                                             # two blocks: never in a family
    save("e", 3, seed=2)                                               # another seed: another group
    fams = LP.loop_families(tmp_path)
    assert [f[1] for f in fams] == [big, lru]                         # larger group first
    assert fams[0][0] == dict(dataset="D", ssm="s5", reshape="rechunk", chunk=384, hidden=64, seed=1)
    assert [f[1] for f in LP.loop_families(tmp_path, ssm="lru")] == [lru, big]
    assert LP.loop_families(tmp_path, min_size=2)[-1][1] == small


def test_loop_families_order_is_the_stated_rule_not_the_keys_text(tmp_path):
    import json as _json

    def family(dataset, reshape, chunk, loops=(1, 2, 3)):
        for L in loops:
            name = f"{dataset}_{reshape}_{chunk}_{L}"
            (tmp_path / f"{name}.npz").write_bytes(b"")
            rec = {"dataset": dataset, "reshape": reshape, "chunk": chunk, "seed": 0}
            (tmp_path / f"{name}.json").write_text(_json.dumps(
                {"model": {"ssm": "s5", "blocks": 1, "loops": L, "hidden": 64}, "record": rec}))

    for chunk in (192, 48, 384, 96):
        family("N", "rechunk", chunk)
    family("N", "none", 1)
    family("A", "concat", 16)
    family("A", "concat", 8, loops=(1, 2, 3, 4))                      # larger: first of its data set
    got = [(k["dataset"], k["reshape"], k["chunk"]) for k, _ in LP.loop_families(tmp_path)]
    # by data set; largest first; no reshaping first; chunks numerically (str order: 192, 384, 48, 96)
    assert got == [("A", "concat", 8), ("A", "concat", 16), ("N", "none", 1), ("N", "rechunk", 48),
                   ("N", "rechunk", 96), ("N", "rechunk", 192), ("N", "rechunk", 384)]


# ------------------------------------------------------------------ trajectory classes (classify_trajectory)
def _orth(d, seed):
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))[0]


def _iterate(A, b, h0, n):
    """h_0 = h0, h_{i+1} = A h_i + b: ``n`` states."""
    out = [h0]
    for _ in range(n - 1):
        out.append(A @ out[-1] + b)
    return np.stack(out)


def test_contraction_map_is_a_fixed_point():
    """h <- A h + b, A symmetric with eigenvalues in [0.1, 0.6]: every step ratio is at most 0.6 (the
    spectral radius), and with one eigenvalue well above the rest the ratio tends to it."""
    d = 16
    Q = _orth(d, 3)
    A = Q @ np.diag(np.linspace(0.1, 0.6, d)) @ Q.T
    rng = np.random.default_rng(4)
    res = LP.classify_trajectory(_iterate(A, rng.normal(size=d), 10 * rng.normal(size=d), 12))
    assert res["label"] == "fixed point" and res["reason"].startswith("contracting")
    assert 0.1 - 1e-9 <= res["rho_min"] and res["rho_max"] <= 0.6 + 1e-9
    assert res["period"] is None and len(res["steps"]) == 11
    gap = Q @ np.diag(np.r_[np.linspace(0.05, 0.2, d - 1), 0.6]) @ Q.T
    res = LP.classify_trajectory(_iterate(gap, rng.normal(size=d), rng.normal(size=d), 12))
    assert res["label"] == "fixed point" and res["rho"] == pytest.approx(0.6, abs=0.01)
    # a damped oscillation (eigenvalue -0.5) is a fixed point too, not a cycle
    osc = _iterate(-0.5 * np.eye(d), rng.normal(size=d), rng.normal(size=d), 8)
    assert LP.classify_trajectory(osc)["label"] == "fixed point"


def test_drift_is_not_a_fixed_point_however_the_norm_grows():
    """h <- h + c: the relative change r of iterate_metrics falls by more than half (the old verdict's
    'fixed point'), the classifier says drift: every step the same, in the same direction."""
    rng = np.random.default_rng(5)
    B, T, L = 3, 4, 7
    h0, c = rng.normal(size=(B, T, H)), rng.normal(size=(B, T, H))
    states = np.stack([h0 + i * c for i in range(L)])
    r = LP.iterate_metrics(states.astype(np.float32), 1)["rel_change"].to_numpy()
    assert r[-1] / r[1] < 0.5                                   # the trap: r alone reads as settling
    res = LP.classify_trajectory(states)
    assert res["label"] == "drift"
    assert res["rho"] == pytest.approx(1.0, abs=1e-9) and res["cos_min"] == pytest.approx(1.0, abs=1e-9)
    assert res["q2"] == pytest.approx(2.0, abs=1e-9) and res["q3"] == pytest.approx(3.0, abs=1e-9)
    # a little noise on top (1 % of a step) changes nothing; so does a steady slow-down of 3 % a step
    noisy = states + 0.01 * np.linalg.norm(c) / np.sqrt(c.size) * rng.normal(size=states.shape)
    assert LP.classify_trajectory(noisy)["label"] == "drift"
    slowing = np.cumsum(np.stack([h0] + [0.97 ** i * c for i in range(L - 1)]), axis=0)
    assert LP.classify_trajectory(slowing)["label"] == "drift"


def test_cycles_of_period_two_and_three():
    rng = np.random.default_rng(6)
    pts = rng.normal(size=(3, 2, 5, H))
    two = np.stack([pts[i % 2] for i in range(8)])
    res = LP.classify_trajectory(two)
    assert res["label"] == "cycle" and res["period"] == 2 and res["q2"] == pytest.approx(0.0, abs=1e-12)
    assert res["cos_min"] == pytest.approx(-1.0, abs=1e-9)    # each step undoes the one before
    # approaching the 2-cycle geometrically (each point + 0.5^i w) is a cycle as well
    w = rng.normal(size=pts[0].shape)
    near = np.stack([pts[i % 2] + 0.5 ** i * w for i in range(10)])
    assert LP.classify_trajectory(near)["label"] == "cycle"
    three = np.stack([pts[i % 3] for i in range(10)])
    res3 = LP.classify_trajectory(three)
    assert res3["label"] == "cycle" and res3["period"] == 3 and res3["q2"] > LP.Q_CYCLE
    assert LP.classify_trajectory(three, periods=(2,))["label"] == "undecided"  # period 3 not looked for


def test_expanding_map_diverges():
    d = 12
    Q = _orth(d, 7)
    A = Q @ np.diag(np.linspace(1.2, 1.5, d)) @ Q.T
    rng = np.random.default_rng(8)
    res = LP.classify_trajectory(_iterate(A, rng.normal(size=d), rng.normal(size=d), 10))
    assert res["label"] == "diverging" and res["reason"].startswith("expanding")
    assert 1.2 - 1e-9 <= res["rho_min"] and res["rho_max"] <= 1.5 + 1e-9  # ‖A u‖ / ‖u‖ in [1.2, 1.5]


def test_noise_is_undecided():
    """Independent states: steps of about equal size (rho near 1) but cosine near -1/2 and q near 1."""
    for seed in range(20):
        res = LP.classify_trajectory(np.random.default_rng(seed).normal(size=(7, 4, 16)))
        assert res["label"] == "undecided", (seed, res)
        assert -0.9 < res["cos_min"] < 0 and res["q2"] > 0.5


def test_short_stopped_and_scaled_trajectories():
    rng = np.random.default_rng(9)
    short = LP.classify_trajectory(rng.normal(size=(3, 8)))
    assert short["label"] == "undecided" and short["reason"].startswith("too short")
    still = np.repeat(rng.normal(size=(1, 8)), 6, axis=0)
    assert LP.classify_trajectory(still)["label"] == "fixed point"
    assert LP.classify_trajectory(still)["reason"].startswith("stopped")
    # every number is unchanged by scaling and shifting: the norm of h cannot decide the class
    h0, c = rng.normal(size=8), rng.normal(size=8)
    drift = np.stack([h0 + i * c for i in range(7)])
    cyc = np.stack([(h0, c)[i % 2] for i in range(7)])
    for traj in (drift, cyc, _iterate(0.5 * np.eye(8), c, h0, 7), _iterate(1.6 * np.eye(8), c, h0, 7)):
        a, b = LP.classify_trajectory(traj), LP.classify_trajectory(1e3 * traj + 50.0)
        assert a["label"] == b["label"] and a["period"] == b["period"]
        for key in ("rho", "rho_min", "rho_max", "cos_min", "q2", "q3"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9)


def test_classify_cases_labels_each_case_and_shares_count_them():
    rng = np.random.default_rng(10)
    n, T = 8, 3
    h0, c = rng.normal(size=(T, H)), rng.normal(size=(T, H))
    drift = np.stack([h0 + i * c for i in range(n)])
    cyc = np.stack([(h0, c)[i % 2] for i in range(n)])
    noise = rng.normal(size=(n, T, H))
    fix = np.stack([c + 0.5 ** i * h0 for i in range(n)])
    traj = np.stack([drift, cyc, noise, fix, drift], axis=1)   # (n, B = 5, T, H)
    df = LP.classify_cases(traj)
    assert list(df["case"]) == [0, 1, 2, 3, 4]
    assert list(df["label"]) == ["drift", "cycle", "undecided", "fixed point", "drift"]
    assert "steps" not in df.columns and df.loc[1, "period"] == 2
    shares = LP.label_shares(df["label"])
    assert list(shares) == list(LP.LABELS) and shares["drift"] == pytest.approx(0.4)
    assert shares["diverging"] == 0.0 and sum(shares.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        LP.label_shares([])


def test_model_trajectory_is_encoder_output_then_every_application():
    m = _model("s5", 2, 3)
    x = _x(n=5)
    traj = LP.model_trajectory(m, x, batch_size=2)               # three batches, the last one short
    assert traj.shape == (1 + 6, 5, 12, H)
    np.testing.assert_allclose(traj[0], m.encoder(x), atol=1e-5)
    np.testing.assert_allclose(traj[1:], m.iterates(x), atol=1e-5)
    assert LP.model_trajectory(m, x, loops=4).shape[0] == 1 + 8
