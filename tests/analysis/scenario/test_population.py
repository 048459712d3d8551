"""Leslie projection, matched counterfactuals, PBR and λ_max."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flyway import schema as S
from flyway.analysis.scenario.metrics import counterfactual_metrics
from flyway.analysis.scenario.pbr import lambda_max, n_min, pbr
from flyway.analysis.scenario.population import (Demography, Impact, dominant_eigenvalue, leslie_matrix, project,
                                                  stable_age_distribution)
from flyway.errors import ConfigError

CRANE = dict(adult_survival={"mean": 0.93, "sd": 0.02}, juvenile_survival={"mean": 0.52, "sd": 0.08},
             age_first_breeding=4, productivity={"mean": 0.55, "sd": 0.14}, initial_population=3000)


def test_lambda_max_by_hand():
    # 3λ² − 5.6λ + 2.4 = 0 has roots 1.2 and 2/3
    assert lambda_max(0.8, 3) == pytest.approx(1.2, abs=1e-12)
    s, a = 0.93, 4
    lam = lambda_max(s, a)
    # (λ − 1) T = 1 with T = a + s/(λ − s)
    assert (lam - 1) * (a + s / (lam - s)) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError):
        lambda_max(1.2, 3)


def test_pbr_by_hand():
    assert n_min(1000, 0.0) == pytest.approx(1000)
    cv = 0.3
    nmin = 1000 / np.exp(0.8416212335729143 * np.sqrt(np.log(1 + cv ** 2)))
    assert pbr(1000, cv, 0.2, 0.5) == pytest.approx(nmin * 0.5 * 0.2 * 0.5, rel=1e-12)
    with pytest.raises(ValueError):
        pbr(1000, 0.1, 0.2, 0.0)


def test_leslie_matrix_of_eolpop_example():
    # eolpop tests/test_build_Leslie.R; λ = 1.0832308 (reference note KA9)
    a = leslie_matrix([0.5, 0.7, 0.8, 0.95], [0, 0, 0.05, 0.55])
    np.testing.assert_allclose(a[0], [0, 0.035, 0.44, 0.5225])
    assert dominant_eigenvalue(a) == pytest.approx(1.0832308, abs=1e-7)


@settings(max_examples=30, deadline=None)
@given(s=st.lists(st.floats(0.05, 0.99), min_size=2, max_size=7), f=st.floats(0.05, 3.0), h=st.floats(0.0, 0.5))
def test_survival_times_one_minus_h_scales_lambda(s, f, h):
    fec = np.zeros(len(s))
    fec[-1] = f
    a = leslie_matrix(s, fec)
    lam = dominant_eigenvalue(a)
    assert lam == pytest.approx(float(np.max(np.abs(np.linalg.eigvals(a)))), rel=1e-9)
    lam_h = dominant_eigenvalue(leslie_matrix(np.asarray(s) * (1 - h), fec))
    assert lam_h == pytest.approx(lam * (1 - h), rel=1e-9)


def test_leslie_lambda_matches_numpy_and_deterministic_projection():
    dem = Demography.from_mapping(CRANE)
    a = leslie_matrix(dem.mean_survival(), dem.mean_fecundity())
    lam = dominant_eigenvalue(a)
    out = project(dem, years=60, replicates=1, demographic=False, environmental=False, seed=0)
    totals = out[0, 0].sum(axis=1)
    # started at the stable age distribution: grows by exactly λ per year
    np.testing.assert_allclose(totals[1:] / totals[:-1], lam, rtol=1e-9)
    n0 = dem.initial_population * stable_age_distribution(a)
    np.testing.assert_allclose(out[0, 0, 7], np.linalg.matrix_power(a, 7) @ n0, rtol=1e-9)


def test_zero_impact_gives_cps_and_cgr_of_exactly_one_in_every_replicate():
    out = project(CRANE, [Impact(0.0), Impact(0.0, mode="rate")], years=30, replicates=500, seed=4)
    totals = out.sum(axis=3)
    assert np.array_equal(totals[1], totals[0]) and np.array_equal(totals[2], totals[0])
    met = counterfactual_metrics(totals, [10, 25, 30], quasi_extinction=10)
    for col in (S.CPS_MEDIAN, S.CPS_Q2_5, S.CPS_Q97_5, S.CGR_MEDIAN, S.CGR_Q2_5, S.CGR_Q97_5):
        assert (met[col] == 1.0).all(), col


def test_impacted_never_exceeds_baseline_without_density_dependence():
    deaths = np.random.default_rng(0).gamma(2.0, 10.0, 800)
    out = project(CRANE, [Impact(deaths), Impact(0.02, mode="rate"), Impact(5.0, ages=(False,) * 4 + (True,))],
                  years=40, replicates=800, seed=9)
    totals = out.sum(axis=3)
    for j in (1, 2, 3):
        assert np.all(totals[j] <= totals[0])
        assert np.any(totals[j] < totals[0])


def test_adding_a_scenario_does_not_change_the_others():
    a = project(CRANE, [Impact(10.0)], years=20, replicates=200, seed=5)
    b = project(CRANE, [Impact(10.0), Impact(50.0)], years=20, replicates=200, seed=5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert np.any(b[2] < b[0])


def test_result_does_not_depend_on_threads():
    imps = [Impact(20.0), Impact(60.0), Impact(0.01, mode="rate")]
    one = project(CRANE, imps, years=15, replicates=300, seed=8, workers=1)
    two = project(CRANE, imps, years=15, replicates=300, seed=8, workers=2)
    assert np.array_equal(one, two)


def test_stochastic_mean_matches_deterministic_within_mc_error():
    dem = Demography.from_mapping(dict(CRANE, initial_population=500))
    n = 4000
    out = project(dem, years=15, replicates=n, seed=21, environmental=False)
    det = project(dem, years=15, replicates=1, seed=0, demographic=False, environmental=False)[0, 0, -1].sum()
    totals = out[0, :, -1].sum(axis=1)
    se = totals.std(ddof=1) / np.sqrt(n)
    assert abs(totals.mean() - det) < 4 * se + 1.0  # +1: the integer start vector


def test_density_dependence_caps_growth():
    free = project(CRANE, years=40, replicates=200, seed=2).sum(axis=3)[0, :, -1]
    capped = project(dict(CRANE, carrying_capacity=3500, theta=2.0), years=40, replicates=200, seed=2).sum(axis=3)[0, :, -1]
    assert np.median(capped) < np.median(free)
    assert np.median(capped) < 2.0 * 3500


def test_metrics_by_hand():
    totals = np.array([[[100, 100, 80]], [[100, 90, 40]]], float)  # 2 scenarios, 1 replicate, 3 years
    m = counterfactual_metrics(totals, [2], quasi_extinction=50, names=["baseline", "x"]).set_index(S.SCENARIO)
    assert m.loc["x", S.CPS_MEDIAN] == pytest.approx(0.5)
    assert m.loc["x", S.CGR_MEDIAN] == pytest.approx((0.4 ** 0.5) / (0.8 ** 0.5))
    assert m.loc["x", S.P_DECLINE_50] == 1.0 and m.loc["baseline", S.P_DECLINE_50] == 0.0
    assert m.loc["x", S.P_QUASI_EXTINCTION] == 1.0


def test_bad_demography_names_the_key():
    with pytest.raises(ConfigError, match="age_first_breeding"):
        Demography.from_mapping(dict(CRANE, age_first_breeding=2.5))
    with pytest.raises(ConfigError, match="adult_survival"):
        Demography.from_mapping(dict(CRANE, adult_survival={"mean": 1.3, "sd": 0.0}))
    with pytest.raises(ConfigError, match="sd"):
        Demography.from_mapping(dict(CRANE, adult_survival={"mean": 0.93, "sd": 0.5}))
