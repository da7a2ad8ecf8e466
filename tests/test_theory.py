"""Numerical checks of lib.theory against closed forms (chapter "Depth and memory in linear SSMs").

Simulations run in JAX float32, closed forms in NumPy float64; every tolerance below is the measured
error with a margin of about 3-10x (the measured values are in the comments).
"""
import numpy as np
import pytest

from lib import theory as th

LAMS = (0.5, 0.9)
KS = (1, 2, 3, 4)


def _ones(K):
    return np.ones(K), np.ones(K)


@pytest.mark.parametrize("lam", LAMS)
@pytest.mark.parametrize("K", KS)
def test_variance_identical_layers_matches_impulse_energy_and_2f1(lam, K):
    h = th.impulse_response(np.full(K, lam), *_ones(K), 2000)[-1]
    closed = th.variance_identical_layers(lam, K)
    # float32 simulation, summed in float64: measured max rel. error 2.2e-6 (λ = 0.9, K = 4)
    assert abs(th.variance_from_impulse(h) / closed - 1) < 2e-5
    assert abs(th.variance_identical_layers_2f1(lam, K) / closed - 1) < 1e-12
    # the impulse response is negative binomial: C(n+K-1, K-1) λ^n
    nb = th.negative_binomial_impulse(lam, K, 2000)
    assert np.max(np.abs(h - nb)) / np.max(nb) < 1e-5


@pytest.mark.parametrize("lam", LAMS)
def test_variance_k1_k2_formulas(lam):
    assert th.variance_identical_layers(lam, 1) == pytest.approx(1 / (1 - lam**2), rel=1e-14)
    assert th.variance_identical_layers(lam, 2) == pytest.approx((1 + lam**2) / (1 - lam**2) ** 3,
                                                                 rel=1e-14)


def test_variance_white_noise_simulation():
    """Long white-noise runs: sample variance of every layer's state vs the closed form."""
    import jax

    u = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (64, 6000)))
    for lam in LAMS:
        y = np.asarray(th.deep_scalar_ssm(u, np.full(4, lam), *_ones(4)))
        sim = np.mean(y[:, :, 2000:].astype(np.float64) ** 2, axis=(1, 2))
        closed = np.array([th.variance_identical_layers(lam, K) for K in KS])
        rel = np.abs(sim / closed - 1)
        # measured max rel. error: λ=0.5 0.34% (K=4), λ=0.9 1.9% (K=4: correlation time ~70 steps)
        assert rel.max() < (0.02 if lam == 0.5 else 0.08), rel


def test_acf_layer2_closed_form():
    import jax

    lam, sigma = 0.8, 1.5
    lags = np.arange(0, 15)
    closed = th.acf_closed_form_layer2(lam, sigma, lags)
    # exact: impulse response of one layer (float32) -> ACF; measured max rel. error 4.5e-7
    h = th.impulse_response(np.array([lam]), *_ones(1), 400)[-1]
    assert np.max(np.abs(th.acf_from_impulse(h, lags, sigma) / closed - 1)) < 1e-5
    # empirical ACF of a simulated white-noise run; measured max |err| / R(0) = 0.0055
    u = sigma * np.asarray(jax.random.normal(jax.random.PRNGKey(1), (32, 8000)))
    y = np.asarray(th.deep_scalar_ssm(u, np.array([lam]), *_ones(1))[0])
    emp = th.empirical_acf(y, lags, burn_in=200).mean(axis=0)
    assert np.max(np.abs(emp - closed)) / closed[0] < 0.03
    # symmetric in Δ
    assert np.allclose(th.acf_closed_form_layer2(lam, sigma, -lags), closed)


def test_acf_recursion_matches_impulse_acf():
    """The one-layer ACF recursion applied K times to white noise = ACF of the K-layer response."""
    lam = np.array([0.7, 0.5, 0.85])
    b, c = np.array([1.0, 0.5, 2.0]), np.array([1.2, 1.0, 0.8])
    L = 400
    white = np.zeros(L + 1)
    white[0] = 1.0
    R = th.acf_through_layers(white, lam, b, c)
    h = th.impulse_response(lam, b, c, 2000)
    for k in range(3):
        ref = th.acf_from_impulse(h[k], np.arange(60))
        assert np.max(np.abs(R[k + 1, :60] - ref)) / ref[0] < 1e-5  # measured 1.6e-7
    # correlation time grows with depth (the ACF broadens)
    assert np.all(np.diff(th.correlation_time(R)) > 0)


def test_state_variance_lemma_exponential_input():
    lam, rho = 0.9, 0.6
    R = rho ** np.arange(400)
    assert th.state_variance_from_acf(lam, R) == pytest.approx(th.state_variance_exp_acf(lam, rho),
                                                               rel=1e-12)
    # layer 2 of two identical layers: input ACF λ^|Δ|/(1-λ²) -> Var_2 = (1+λ²)/(1-λ²)³
    v2 = th.state_variance_exp_acf(lam, lam, R0=1 / (1 - lam**2))
    assert v2 == pytest.approx(th.variance_identical_layers(lam, 2), rel=1e-12)


@pytest.mark.parametrize("lam", [[0.9], [0.5, 0.5], [0.9, 0.5, 0.2], [0.95, 0.8, 0.8, 0.3]])
def test_dc_group_delay_equals_centre_of_mass(lam):
    lam = np.array(lam)
    h = th.impulse_response(lam, *_ones(len(lam)), 3000)[-1]
    tau0 = th.dc_group_delay(lam)
    assert th.group_delay(lam, 0.0) == pytest.approx(tau0, rel=1e-12)
    # float32 impulse response; measured max rel. error 3.2e-7
    assert th.centre_of_mass(h) == pytest.approx(tau0, rel=1e-5)


@pytest.mark.parametrize("lam", [np.array([0.9, 0.5]), np.array([0.8 * np.exp(0.5j), 0.6]),
                                 np.array([0.95, 0.95, 0.95])])
def test_group_delay_is_minus_phase_derivative(lam):
    omega = np.linspace(-np.pi, np.pi, 40001)
    phase = np.unwrap(np.angle(th.frequency_response(lam, np.ones(len(lam)), np.ones(len(lam)),
                                                     omega)))
    numeric = -np.gradient(phase, omega)
    at = np.array([-2.5, -1.0, -0.3, 0.0, 0.1, 0.7, 2.0, 3.0])
    num_at = np.interp(at, omega, numeric)
    exact = th.group_delay(lam, at)
    # central differences, dω = 1.6e-4; measured max abs error 7.1e-6, 3.2e-7 and 1.8e-4 (the last
    # for three layers at 0.95, whose delay peaks at 57 at ω = 0)
    assert np.max(np.abs(num_at - exact)) < 1e-5 * max(1.0, np.max(np.abs(exact)))


def test_group_delay_modes_matches_chain():
    lam = np.array([0.9, 0.6, 0.3])
    b, c = np.array([1.0, 0.5, 2.0]), np.array([1.2, 1.0, 0.8])
    omega = np.linspace(-3, 3, 13)
    r = th.residues(lam, b, c)
    assert np.allclose(th.group_delay_modes(r, lam, omega), th.group_delay(lam, omega), atol=1e-9)


def test_deep_equals_wide_and_diagonal():
    import jax

    lam = np.array([0.9, 0.7, 0.5, 0.3])
    b = np.array([1.0, 0.5, 2.0, 1.2])
    c = np.array([0.8, 1.5, 0.7, 1.1])
    w = th.wide_equivalent(lam, b, c)
    assert np.allclose(np.sort(np.linalg.eigvals(w.A).real), np.sort(lam), atol=1e-12)
    assert np.allclose(np.diag(w.A), lam) and np.allclose(np.triu(w.A, 1), 0)
    assert np.allclose(w.B, b[0] * np.cumprod(np.r_[1.0, b[1:] * c[:-1]]))
    u = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (500,)))
    y = np.asarray(th.deep_scalar_ssm(u, lam, b, c)[-1])
    y_wide = np.asarray(th.wide_ssm(u, w.A, w.B, w.C))
    y_diag = np.asarray(th.diagonal_ssm(u, w.Lambda.astype(np.float32),
                                        w.B_tilde.astype(np.float32), w.C_tilde.astype(np.float32)))
    scale = np.max(np.abs(y))
    # float32; measured max abs diff / max|y|: wide 2.0e-7, diagonal 4.6e-7
    assert np.max(np.abs(y - y_wide)) / scale < 1e-5
    assert np.max(np.abs(y - y_diag)) / scale < 1e-5
    # in float64 the three are the same linear map: compare impulse responses exactly
    n = np.arange(200)
    h_diag = (w.B_tilde * w.C_tilde) @ (w.Lambda[:, None] ** n[None, :])
    h_wide = np.array([w.C @ np.linalg.matrix_power(w.A, k) @ w.B for k in range(200)])
    assert np.max(np.abs(h_diag - h_wide)) < 1e-12 * np.max(np.abs(h_wide)) * 100


def test_residues_blow_up_as_eigenvalues_approach():
    gaps = np.array([0.2, 0.1, 0.05, 0.02, 0.01, 0.005])
    for K in (2, 3, 4):
        big = []
        for d in gaps:
            lam = 0.9 - d * np.arange(K)
            r = th.residues(lam, np.ones(K), np.ones(K))
            w = th.wide_equivalent(lam, np.ones(K), np.ones(K))
            assert np.allclose(w.B_tilde * w.C_tilde, r, rtol=1e-6)
            assert np.sum(r) == pytest.approx(1.0)  # h(0) = Π b c = 1
            big.append(np.max(np.abs(r)))
        big = np.array(big)
        assert np.all(np.diff(big) > 0)  # monotone growth as the gap shrinks
        slope = np.polyfit(np.log(gaps[-3:]), np.log(big[-3:]), 1)[0]
        assert slope == pytest.approx(-(K - 1), abs=0.05)  # |r| ~ δ^-(K-1)


def test_matched_student_lambda():
    assert th.matched_student_lambda(0.99, 2) == pytest.approx(0.980198, abs=1e-6)
    for K in (1, 2, 3, 6):
        lp = th.matched_student_lambda(0.99, K)
        assert th.dc_group_delay(np.full(K, lp)) == pytest.approx(th.dc_group_delay([0.99]))


@pytest.mark.slow
def test_student_fit_k2():
    """Teacher λ* = 0.99, T = 300, 800 Adam steps. Measured:

    untied, sampled loss (seeds 0, 1): loss 0.63 -> 4.7e-4 / 6.1e-4, learned λ = (0.98989, 0.154) and
    (0.98987, 0.175): one layer takes the teacher's λ, the other shrinks towards a pass-through.
    The delay-matched λ' = 0.9802 is *not* what training finds. Tied (looped) student, expected loss:
    λ = 0.965872 = the best common λ (λ_eq = 0.965872, ``best_equal_lambda``) < λ' < λ*.
    """
    teacher = th.make_teacher(0.99)
    out = th.fit_student(teacher, 2, steps=800, lr=0.03, seed=[0, 1], T=300, batch=16,
                         lam_init=(0.5, 0.95))
    first, last = out["loss"][:, :10].mean(), out["loss"][:, -50:].mean()
    assert last < 0.01 * first
    lam = out["lam"][:, -1]
    assert np.all(lam <= 0.99 + 1e-4)
    assert np.all(np.min(lam, axis=1) < 0.5)
    assert np.all(np.max(lam, axis=1) > 0.98)

    tied = th.fit_student(teacher, 2, steps=800, lr=0.03, seed=0, T=300, lam_init=(0.5, 0.95),
                          loss="expected", tied=True)
    lam_eq, _ = th.best_equal_lambda(teacher, 2, T=300)
    lt = tied["lam"][-1]
    assert lt[0] == lt[1]
    assert abs(lt[0] - lam_eq) < 1e-3
    assert lt[0] < th.matched_student_lambda(0.99, 2) < 0.99
