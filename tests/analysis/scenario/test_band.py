"""Band (2012) model: the published worked example, stochastic layer, monotonicity."""
from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flyway import schema as S
from flyway.analysis.scenario import band
from flyway.analysis.scenario.band_stochastic import migrant_collision_draws, stochastic_band
from flyway.errors import ConfigError

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "scenario"


@pytest.fixture(scope="module")
def worked_example():
    path = DATA / "band2012_gannet_worked_example.toml"
    if not path.is_file():
        pytest.skip("shared/data/scenario is not available")
    cfg = tomllib.loads(path.read_text())
    sp = dict(cfg["species"])
    sp.pop("name")
    fhd = np.loadtxt(DATA / sp["flight_height_distribution"], delimiter=",", skiprows=1)
    sp["flight_height_distribution"] = fhd[:, 1]
    return sp, dict(cfg["wind_farm"]), cfg["expected"]


def test_day_hours_at_54_6_north_january():
    # stochLAB test-DayLength.R: lat 54.6, January
    day, night = band.day_hours(54.6)
    assert day[0] == pytest.approx(245.39297, abs=1e-5)
    assert night[0] == pytest.approx(498.60703, abs=1e-5)
    np.testing.assert_allclose(day + night, 24 * np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]))


def test_migrant_flux_known_answer():
    # stochLAB test-get_mig_flux_factor.R
    assert band.migrant_flux(10_000, 100, 120, 51) == pytest.approx(3695.9914, abs=1e-4)


@pytest.mark.realdata
def test_worked_example_intermediates(worked_example):
    sp, wf, exp = worked_example
    assert band.transit_probability(sp, wf) == pytest.approx(exp["transit_probability"], rel=1e-9)
    from flyway.analysis.scenario.params import SpeciesParams, WindFarmParams
    s, w = SpeciesParams.from_mapping(sp), WindFarmParams.from_mapping(wf)
    dr = band.draws_at_means(s, w)
    flux = band.flux_factor(dr.flight_speed_ms, dr.density_km2, dr.rotor_radius_m, w.turbines, w.latitude,
                            dr.nocturnal_activity)
    assert flux[0, 0] == pytest.approx(exp["flux_jan"], rel=1e-9)
    d_y = band.fhd_on_rotor(dr.fhd, dr.hub_height_m, dr.rotor_radius_m, w.tidal_offset_m)
    assert band.rotor_height_share_from_fhd(d_y)[0] == pytest.approx(exp["rotor_height_share_from_distribution"], rel=1e-6)
    pbar = band.transit_probability(sp, wf)
    lac = band.large_array_factor(w.turbines, dr.rotor_radius_m, w.width_km, pbar, dr.operational_share.mean(),
                                  dr.avoidance_basic)
    assert lac[0] == pytest.approx(exp["large_array_correction"], rel=1e-9)


@pytest.mark.realdata
@pytest.mark.parametrize("option", [1, 2, 3])
def test_worked_example_every_month(worked_example, option):
    sp, wf, exp = worked_example
    got = band.band_collisions(sp, wf, option)
    np.testing.assert_allclose(got, exp[f"collisions_option{option}"], rtol=1e-6, atol=0)


@pytest.mark.realdata
@pytest.mark.parametrize("option", [1, 2, 3])
def test_stochastic_with_zero_sd_equals_deterministic_exactly(worked_example, option):
    sp, wf, _ = worked_example
    draws = stochastic_band(sp, wf, option, draws=7, seed=3).draws
    det = band.band_collisions(sp, wf, option)
    assert np.array_equal(draws, np.broadcast_to(det, draws.shape))


@pytest.mark.realdata
def test_stochastic_mean_within_monte_carlo_error(worked_example):
    # density, nocturnal activity and the rotor-height share enter option 1 linearly
    sp, wf, _ = worked_example
    sp = dict(sp, density_km2={"mean": sp["density_km2"], "sd": [0.15 * d for d in sp["density_km2"]]},
              nocturnal_activity={"mean": 0.5, "sd": 0.1}, rotor_height_share={"mean": 0.0828, "sd": 0.01})
    n = 20_000
    res = stochastic_band(sp, wf, 1, draws=n, seed=11)
    det = band.band_collisions(sp, wf, 1).sum()
    se = res.annual.std(ddof=1) / np.sqrt(n)
    assert abs(res.annual.mean() - det) < 4 * se
    assert res.annual.std() > 0


def test_summary_labels_are_the_quantiles_they_claim():
    sp = dict(body_length_m=1.0, wingspan_m=1.8, flight_speed_ms=15.0, rotor_height_share=0.2,
              density_km2={"mean": [1.0] * 12, "sd": [0.3] * 12})
    wf = dict(turbines=10, latitude=36, width_km=2, rotor_radius_m=60, hub_height_m=100, max_chord_m=4, rpm=10,
              pitch_deg=10, operational_share=[0.9] * 12)
    res = stochastic_band(sp, wf, 1, draws=4000, seed=5)
    table = res.summary()
    assert list(table.columns) == [S.MEAN, S.SD, S.Q2_5, S.Q25, S.MEDIAN, S.Q75, S.Q97_5]
    assert S.Q97_5 == "q97.5" and S.Q2_5 == "q2.5"  # the label is the quantile it holds
    assert table.loc["year", S.Q97_5] == pytest.approx(np.quantile(res.annual, 0.975))
    assert table.loc["year", S.MEDIAN] == pytest.approx(np.median(res.annual))


def test_migrant_model_is_option_one_with_front_flux():
    sp = dict(body_length_m=1.0, wingspan_m=1.8, flight_speed_ms=15.0, rotor_height_share=0.2, avoidance_basic=0.98)
    wf = dict(turbines=100, latitude=36, width_km=51, rotor_radius_m=120, hub_height_m=150, max_chord_m=5, rpm=10,
              pitch_deg=15, operational_share=[0.8] * 12, large_array_correction=False)
    names, draws = migrant_collision_draws(sp, wf, {"autumn": 10_000}, draws=3, seed=1)
    expected = 3695.9913571644624 * 0.2 * band.transit_probability(sp, wf) * 0.8 * 0.02
    assert names == ["autumn"]
    np.testing.assert_allclose(draws[:, 0], expected, rtol=1e-12)


_BASE_SP = dict(body_length_m=1.0, wingspan_m=1.8, flight_speed_ms=15.0, flight="flapping", rotor_height_share=0.2,
                flight_height_distribution=np.r_[np.zeros(20), np.full(200, 0.004)], density_km2=[1.0] * 12)
_BASE_WF = dict(turbines=30, latitude=36, width_km=3, rotor_radius_m=60, hub_height_m=100, max_chord_m=4, rpm=10,
                pitch_deg=10, operational_share=[0.9] * 12)


@settings(max_examples=40, deadline=None)
@given(a1=st.floats(0.5, 0.999), a2=st.floats(0.5, 0.999), option=st.sampled_from([1, 2, 3]))
def test_collisions_fall_as_avoidance_rises(a1, a2, option):
    lo, hi = sorted((a1, a2))
    c_lo = band.band_collisions(dict(_BASE_SP, avoidance_basic=lo, avoidance_extended=lo), _BASE_WF, option).sum()
    c_hi = band.band_collisions(dict(_BASE_SP, avoidance_basic=hi, avoidance_extended=hi), _BASE_WF, option).sum()
    assert c_hi <= c_lo * (1 + 1e-12)


@settings(max_examples=40, deadline=None)
@given(t1=st.integers(1, 400), t2=st.integers(1, 400), option=st.sampled_from([1, 2, 3]))
def test_collisions_rise_with_turbines(t1, t2, option):
    lo, hi = sorted((t1, t2))
    c_lo = band.band_collisions(_BASE_SP, dict(_BASE_WF, turbines=lo), option).sum()
    c_hi = band.band_collisions(_BASE_SP, dict(_BASE_WF, turbines=hi), option).sum()
    assert c_hi >= c_lo * (1 - 1e-12)


@settings(max_examples=40, deadline=None)
@given(r1=st.floats(3.0, 20.0), r2=st.floats(3.0, 20.0), option=st.sampled_from([1, 2, 3]))
def test_collisions_rise_with_rotor_speed(r1, r2, option):
    lo, hi = sorted((r1, r2))
    c_lo = band.band_collisions(_BASE_SP, dict(_BASE_WF, rpm=lo), option).sum()
    c_hi = band.band_collisions(_BASE_SP, dict(_BASE_WF, rpm=hi), option).sum()
    assert c_hi >= c_lo * (1 - 1e-12)


def test_plain_dict_errors_name_the_key():
    with pytest.raises(ConfigError, match="rotor_radius_m"):
        band.band_collisions(_BASE_SP, dict(_BASE_WF, rotor_radius_m=-5), 1)
    with pytest.raises(ConfigError, match="density_km2"):
        band.band_collisions(dict(_BASE_SP, density_km2=[1.0] * 11), _BASE_WF, 1)
    with pytest.raises(ConfigError, match="flight"):
        band.band_collisions(dict(_BASE_SP, flight="hovering"), _BASE_WF, 1)
