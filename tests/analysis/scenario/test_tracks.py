"""Exposure from tracks: transits, time inside, heights, crossings, scaling, bootstrap, far-facility error."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flyway import schema as S
from flyway.analysis.scenario.config import parse_scenario
from flyway.analysis.scenario.distributions import AlignedDraws
from flyway.analysis.scenario.run import run_scenarios
from flyway.analysis.scenario.track_segments import solar_elevation_deg, stationary_mask
from flyway.analysis.scenario.tracks import TrackExposure, TrackParams, resample_counts
from flyway.errors import ConfigError, InputError
from flyway.geo import haversine_m

GM, WNC = "Grus monacha", "Antigone vipio"
LAT = 36.19
SQUARE = [[128.40, 36.18], [128.42, 36.18], [128.42, 36.20], [128.40, 36.20], [128.40, 36.18]]
T0 = pd.Timestamp("2024-03-10 03:00", tz="UTC")  # about noon at 128 deg E
HUB, RADIUS = 100.0, 60.0


def _farm(fid="A", footprint=SQUARE, **extra):
    fac = {"id": fid, "kind": "wind_farm", "footprint": footprint, "turbines": 10, "rotor_radius_m": RADIUS,
           "hub_height_m": HUB, "max_chord_m": 4, "rpm": 10, "pitch_deg": 10, "operational_share": [0.85] * 12,
           "exposure": {GM: {"density_km2": [0.1] * 12}}}
    fac.update(extra)
    return fac


def _line(fid="L", lon=128.43):
    return {"id": fid, "kind": "power_line", "line": [[lon, 36.17], [lon, 36.21]], "wire_low_m": 18,
            "wire_top_m": 32, "exposure": {GM: {"crossings_day": 10, "crossings_night": 1}}}


def _config(*facilities, replicates=50, **run):
    raw = {"title": "t", "run": {"replicates": replicates, "seed": 3, "horizon_years": 5, "output_years": [5], **run},
           "facility": list(facilities), "scenario": [{"name": "all", "facilities": [f["id"] for f in facilities]}]}
    return parse_scenario(raw, source="plan.toml")


def _fixes(ind, lon, lat, minutes, species=GM, alt=np.nan, t0=T0):
    n = len(minutes)
    return pd.DataFrame({S.INDIVIDUAL_ID: ind, S.SPECIES: species,
                         S.TIMESTAMP: t0 + pd.to_timedelta(np.asarray(minutes, float), unit="min"),
                         S.LON: np.broadcast_to(lon, n).astype(float), S.LAT: np.broadcast_to(lat, n).astype(float),
                         S.ALTITUDE_M: np.broadcast_to(alt, n).astype(float), S.QC_FLAGS: np.zeros(n, np.uint32)})


def _flight(ind, species=GM, alt=np.nan, t0=T0, lat=LAT):
    """Due east across the square, one fix a minute, 0.0025 deg (225 m) apart: 3.75 m/s."""
    lon = 128.3875 + 0.0025 * np.arange(16)  # 128.3875 .. 128.425
    return _fixes(ind, lon, lat, np.arange(16), species, alt, t0)


def _stops(ind, start, end):
    return pd.DataFrame({S.INDIVIDUAL_ID: [ind], S.START_TIME: [start], S.END_TIME: [end]})


def _prepared(fixes, stops, cfg, replicates=None, seed=1, **kw):
    tr = TrackExposure(fixes, stops, **kw)
    tr.prepare(cfg, replicates or cfg.run.replicates, np.random.SeedSequence(seed))
    return tr


def _row(tr, fid, species=GM):
    t = tr.table()
    return t[(t[S.FACILITY_ID] == fid) & (t[S.SPECIES] == species)].iloc[0]


def test_straight_flight_through_square_gives_one_transit_and_the_time_inside():
    fixes = _flight("b1")
    cfg = _config(_farm())
    tr = _prepared(fixes, None, cfg)
    row = _row(tr, "A")
    assert row[S.TRACKED_TRANSITS] == 1 and row[S.TRACKED_BIRDS_EXPOSED] == 1
    # independent: width of the square along the flight (haversine) over the ground speed of the bird
    speed_ms = haversine_m(128.3875, LAT, 128.425, LAT) / (15 * 60)
    expected_s = haversine_m(128.40, LAT, 128.42, LAT) / speed_ms
    assert row[S.TRACKED_FLIGHT_H_INSIDE] * 3600 == pytest.approx(expected_s, rel=2e-3)
    # all tracked time is this flight: density = N x (time inside / tracked time) / area, in March only
    pop = cfg.species[GM].scalar("initial_population")
    assert row[f"{S.DENSITY_KM2}_03"] == pytest.approx(pop * expected_s / (15 * 60) / row[S.AREA_KM2], rel=2e-3)
    assert row[f"{S.DENSITY_KM2}_04"] == 0
    exp = tr.wind_farm(cfg.facilities["A"], GM)
    assert exp["source"] == "tracks" and all(isinstance(d, AlignedDraws) for d in exp["density_km2"])


def test_fixes_with_qc_flags_are_left_out_and_bad_parameters_are_one_line():
    fixes = _flight("b1")
    clean = _row(_prepared(fixes, None, _config(_farm())), "A")
    outlier = fixes.iloc[[7]].assign(**{S.LAT: 37.5, S.QC_FLAGS: np.uint32(S.QCFlag.SPEED)})
    outlier[S.TIMESTAMP] += pd.Timedelta(seconds=30)  # a flagged fix between two good ones, 150 km north
    with_outlier = pd.concat([fixes, outlier], ignore_index=True)
    row = _row(_prepared(with_outlier, None, _config(_farm())), "A")
    assert row[S.TRACKED_TRANSITS] == 1
    assert row[S.TRACKED_FLIGHT_H_INSIDE] == pytest.approx(clean[S.TRACKED_FLIGHT_H_INSIDE])
    with pytest.raises(ConfigError, match=r"^vertical_error_m = -1.0: expected a number >= 0$"):
        TrackParams(vertical_error_m=-1.0)
    with pytest.raises(InputError, match="no clean fixes"):
        _prepared(fixes.assign(**{S.QC_FLAGS: np.uint32(1)}), None, _config(_farm()))


def test_bird_standing_in_a_stop_inside_the_footprint_is_not_flying():
    rng = np.random.default_rng(0)
    n = 200  # two days of fixes every 15 min, hopping up to ~300 m inside the footprint
    standing = _fixes("b1", 128.41 + rng.uniform(-0.003, 0.003, n), 36.19 + rng.uniform(-0.003, 0.003, n),
                      np.arange(n) * 15.0, alt=45.0)
    other = _flight("w1", species=WNC, t0=T0 + pd.Timedelta(days=10))
    fixes = pd.concat([standing, other], ignore_index=True)
    stops = _stops("b1", T0, T0 + pd.Timedelta(minutes=15 * (n - 1)))
    cfg = _config(_farm())
    params = TrackParams(min_flight_speed_ms=0.0)  # only the stop tells standing from flying here
    tr = _prepared(fixes, stops, cfg, params=params)
    row = _row(tr, "A")
    assert row[S.TRACKED_TRANSITS] == 0 and row[S.TRACKED_FLIGHT_H_INSIDE] == 0
    # the hooded crane has typed-in densities: they are used, and the table says so
    exp = tr.wind_farm(cfg.facilities["A"], GM)
    assert exp["source"] == "typed-in (0 tracked transits)" and exp["density_km2"] == [0.1] * 12
    # the same fixes without the stop would have been flights
    loose = _prepared(fixes, None, cfg, params=params)
    assert _row(loose, "A")[S.TRACKED_TRANSITS] > 0
    # a tracked species with no typed-in exposure that crossed gets exposure from tracks, not None
    assert tr.wind_farm(cfg.facilities["A"], WNC)["source"] == "tracks"


def test_tracked_species_that_never_came_near_gets_zero_exposure_from_tracks():
    far_route = _flight("w1", species=WNC, lat=36.30)  # 12 km north of the footprint
    fixes = pd.concat([_flight("b1"), far_route], ignore_index=True)
    cfg = _config(_farm())
    tr = _prepared(fixes, None, cfg)
    exp = tr.wind_farm(cfg.facilities["A"], WNC)
    assert exp is not None and exp["source"] == "tracks"
    assert "0 tracked transits" in exp["note"]
    assert all(np.all(d.values == 0) for d in exp["density_km2"])


def _with_ground(fixes, ground_alt=40.0, n=30):
    """Stationary fixes (in a stop) 3 km south of the footprint at ``ground_alt`` metres, a day later."""
    t1 = T0 + pd.Timedelta(days=1)
    alts = ground_alt + np.linspace(-5, 5, n)
    roost = _fixes("g1", 128.41, 36.155, np.arange(n) * 30.0, alt=alts, t0=t1)
    far = _fixes("g1", 128.41, 36.40, 5000 + np.arange(n) * 30.0, alt=1000.0, t0=t1)  # 23 km away: ignored
    stops = pd.concat([_stops("g1", t1, t1 + pd.Timedelta(minutes=30 * (n - 1))),
                       _stops("g1", t1 + pd.Timedelta(minutes=5000), t1 + pd.Timedelta(minutes=5000 + 30 * (n - 1)))])
    return pd.concat([fixes, roost, far], ignore_index=True), stops


@pytest.mark.parametrize("height_m, share", [(HUB, 1.0), (HUB + RADIUS + 50, 0.0), (HUB - RADIUS - 30, 0.0)])
def test_altitude_above_or_below_the_rotor_band_changes_the_rotor_share(height_m, share):
    fixes, stops = _with_ground(pd.concat([_flight(f"b{i}", alt=40.0 + height_m) for i in range(6)]))
    cfg = _config(_farm())
    tr = _prepared(fixes, stops, cfg, params=TrackParams(vertical_error_m=0.0))
    row = _row(tr, "A")
    assert row[S.GROUND_LEVEL_M] == pytest.approx(40.0)  # median of the nearby stationary fixes only
    assert row[S.HEIGHT_SOURCE] == "tracks"
    assert row[S.ROTOR_HEIGHT_SHARE] == pytest.approx(share)
    overrides = tr.wind_farm(cfg.facilities["A"], GM)["species_overrides"]
    assert np.all(overrides["rotor_height_share"].values == pytest.approx(share))
    assert overrides["nocturnal_activity"].mean == 0  # night flights are in the tracked densities already


def test_vertical_error_blurs_the_rotor_share_and_without_ground_the_species_table_is_used():
    fixes, stops = _with_ground(pd.concat([_flight(f"b{i}", alt=40.0 + HUB + RADIUS) for i in range(6)]))
    cfg = _config(_farm())
    at_edge = _row(_prepared(fixes, stops, cfg, params=TrackParams(vertical_error_m=15.0)), "A")
    assert at_edge[S.ROTOR_HEIGHT_SHARE] == pytest.approx(0.5, abs=1e-6)  # at the rotor top: half inside
    no_ground = _row(_prepared(fixes, None, cfg), "A")  # no stops: no stationary fix, no ground level
    assert no_ground[S.HEIGHT_SOURCE] == "species table"
    assert no_ground[S.ROTOR_HEIGHT_SHARE] == pytest.approx(cfg.species[GM].scalar("rotor_height_share"))


def test_power_line_crossed_once_at_the_right_time_day_and_night():
    # 10-minute segment from 128.426 to 128.436: the line at 128.43 is 40 % along it
    day = _fixes("d1", [128.426, 128.436], LAT, [0, 10], alt=70.0)
    night = _fixes("n1", [128.426, 128.436], LAT, [0, 10], alt=70.0, t0=T0 + pd.Timedelta(hours=12))
    fixes = pd.concat([day, night], ignore_index=True)
    cfg = _config(_farm(), _line())
    tr = _prepared(fixes, None, cfg)
    cr = tr.tables.crossings
    assert cr["time_s"].size == 2
    first = np.argsort(cr["time_s"])
    assert cr["time_s"][first[0]] == pytest.approx((T0 + pd.Timedelta(minutes=4)).timestamp(), abs=1.0)
    assert cr["night"][first].tolist() == [False, True]
    assert cr["altitude_m"][first[0]] == pytest.approx(70.0)
    row = _row(tr, "L")
    assert row[S.TRACKED_CROSSINGS] == 2 and row[S.TRACKED_BIRDS_EXPOSED] == 2
    # per year: N x crossings per tracked second x seconds in March (all tracked time is in March)
    pop = cfg.species[GM].scalar("initial_population")
    per_year = pop * 1 / (2 * 600.0) * 31 * 86400
    exp = tr.power_line(cfg.facilities["L"], GM)
    assert exp["crossings_day"].mean == pytest.approx(per_year, rel=0.3)  # bootstrap of two birds
    assert row[S.CROSSINGS_PER_YEAR] == pytest.approx(2 * per_year, rel=1e-6)
    assert exp["wire_height_share_day"] == 1.0  # no ground level: every crossing at wire height
    assert row[S.HEIGHT_SOURCE].startswith("none")


def test_wire_height_share_from_altitude_and_vertical_error():
    birds = [_fixes(f"c{i}", [128.426, 128.436], LAT, [0, 10], alt=40.0 + 25.0, t0=T0 + pd.Timedelta(days=i))
             for i in range(6)]
    fixes, stops = _with_ground(pd.concat(birds))
    cfg = _config(_line())
    tr = _prepared(fixes, stops, cfg, params=TrackParams(vertical_error_m=10.0))
    row = _row(tr, "L")
    half_span = cfg.species[GM].scalar("wingspan_m") / 2
    from scipy.stats import norm
    expected = norm.cdf((32 + half_span - 25) / 10) - norm.cdf((18 - half_span - 25) / 10)
    assert row[S.WIRE_HEIGHT_SHARE] == pytest.approx(expected, rel=1e-9)


def _many_birds(n=20, seed=0):
    """``n`` birds: a third fly through A only, a third through B only, the rest through neither."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        lat = [LAT, 36.25, 36.30][i % 3]  # B's square is at 36.24-36.26
        k = rng.integers(1, 4)
        for j in range(k):  # 1-3 flights each: birds differ
            frames.append(_flight(f"b{i:02d}", lat=lat, t0=T0 + pd.Timedelta(days=int(rng.integers(0, 15)), hours=j)))
        frames.append(_fixes(f"b{i:02d}", 128.5, 36.3, [0, 600], t0=T0 + pd.Timedelta(days=16)))
    return pd.concat(frames, ignore_index=True)


SQUARE_B = [[128.40, 36.24], [128.42, 36.24], [128.42, 36.26], [128.40, 36.26], [128.40, 36.24]]


def test_bootstrap_mean_is_near_the_point_estimate_and_population_scales_density():
    cfg = _config(_farm(), replicates=4000)
    fixes = _many_birds()
    tr = _prepared(fixes, None, cfg)
    point = _row(tr, "A")[f"{S.DENSITY_KM2}_03"]
    draws = tr.wind_farm(cfg.facilities["A"], GM)["density_km2"][2].values  # Band input, March
    h_ratio = draws.mean() / point  # Band input = 24-h density x 24 h x 31 d / day hours
    from flyway.analysis.scenario.band import day_hours
    day, _ = day_hours(cfg.facilities["A"].params.latitude)
    assert h_ratio == pytest.approx(24 * 31 / day[2], rel=0.05)  # bootstrap mean within 5 % of the point
    doubled = _prepared(fixes, None, cfg, population={GM: 2 * cfg.species[GM].scalar("initial_population")})
    np.testing.assert_allclose(doubled.wind_farm(cfg.facilities["A"], GM)["density_km2"][2].values, 2 * draws)
    assert _row(doubled, "A")[f"{S.DENSITY_KM2}_03"] == pytest.approx(2 * point)


def test_replicate_k_uses_the_same_resample_at_every_facility():
    # one bird flies through both A and B; every other bird through neither
    frames = [_fixes("both", 128.41, [36.17, 36.27], [0, 60], t0=T0)]  # due north through A and B
    frames += [_fixes(f"o{i}", 128.6, [36.17, 36.27], [0, 60], t0=T0 + pd.Timedelta(days=i)) for i in range(9)]
    cfg = _config(_farm(), _farm("B", SQUARE_B), replicates=500)
    tr = _prepared(pd.concat(frames, ignore_index=True), None, cfg)
    a = tr.wind_farm(cfg.facilities["A"], GM)["density_km2"][2].values
    b = tr.wind_farm(cfg.facilities["B"], GM)["density_km2"][2].values
    assert 0 < (a > 0).sum() < a.size  # some resamples miss the bird
    np.testing.assert_array_equal(a > 0, b > 0)  # ... the same ones at both farms
    ratio = a[a > 0] / b[a > 0]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)


def test_resample_counts_are_a_bootstrap():
    w = resample_counts(1000, 7, np.random.SeedSequence(1))
    assert w.shape == (1000, 7) and np.all(w.sum(axis=1) == 7)
    assert w.mean() == pytest.approx(1.0) and 0.8 < w.var() < 1.0  # multinomial: var = 1 - 1/7
    np.testing.assert_array_equal(w, resample_counts(1000, 7, np.random.SeedSequence(1)))


def test_facility_far_outside_the_data_is_one_clear_line():
    far = _farm("F", [[10.0, 50.0], [10.02, 50.0], [10.02, 50.02], [10.0, 50.02], [10.0, 50.0]])
    cfg = _config(_farm(), far)
    with pytest.raises(ConfigError) as err:
        _prepared(_flight("b1"), None, cfg)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith('plan.toml: facility "F": footprint lies about')
    assert "km from the nearest tracked fix; expected within 50 km of the tracks (lon/lat swapped?)" in msg
    km = float(msg.split("lies about ")[1].split(" km")[0].replace(",", ""))
    assert km == pytest.approx(haversine_m(10.02, 50.0, 128.3875, LAT) / 1e3, rel=0.02)


def test_run_scenarios_with_tracks_carries_the_source_and_counts_into_the_collisions_table():
    fixes, stops = _with_ground(_many_birds())
    cfg = _config(_farm(), _line(), replicates=200)
    res = run_scenarios(cfg, TrackExposure(fixes, stops))
    coll = res.collisions.set_index(S.FACILITY_ID)
    assert coll.loc["A", S.EXPOSURE_SOURCE] == "tracks" and coll.loc["A", S.TRACKED_TRANSITS] > 0
    assert coll.loc["A", S.COLLISIONS_MEAN] > 0
    assert coll.loc["L", S.EXPOSURE_SOURCE] == "typed-in (0 tracked crossings)"  # nobody reaches 128.43
    typed = run_scenarios(cfg)
    assert (typed.collisions[S.EXPOSURE_SOURCE] == "typed-in").all()
    assert typed.collisions[S.TRACKED_TRANSITS].isna().all()


def test_band_option_2_uses_the_tracked_flight_heights():
    fixes, stops = _with_ground(pd.concat([_flight(f"b{i}", alt=40.0 + HUB) for i in range(6)]))
    cfg = _config(_farm(), band_option=2, replicates=20)
    tr = TrackExposure(fixes, stops, params=TrackParams(vertical_error_m=5.0))
    res = run_scenarios(cfg, tr)
    fhd = tr.wind_farm(cfg.facilities["A"], GM)["species_overrides"]["flight_height_distribution"].samples[0]
    assert fhd.sum() == pytest.approx(1.0, abs=1e-6) and abs(np.argmax(fhd) - HUB) <= 1
    assert res.collisions[S.COLLISIONS_MEAN].iloc[0] > 0


def test_stationary_mask_handles_overlaps_and_individuals():
    ind = np.array([0, 0, 0, 0, 1, 1])
    t = np.array([0, 10, 20, 30, 10, 20], float) + 1.7e9
    mask = stationary_mask(ind, t, [0, 0, 1], np.array([5, 8, 100]) + 1.7e9, np.array([25, 12, 200]) + 1.7e9)
    assert mask.tolist() == [False, True, True, False, False, False]


def test_solar_elevation_noon_and_midnight():
    noon = pd.Timestamp("2024-06-21 03:32", tz="UTC").timestamp()  # local solar noon at 127 deg E
    assert solar_elevation_deg(noon, 127.0, 37.57) == pytest.approx(90 - 37.57 + 23.44, abs=0.2)
    assert solar_elevation_deg(noon + 12 * 3600, 127.0, 37.57) < -20


def test_aligned_draws_return_their_values_in_order():
    d = AlignedDraws(np.array([3.0, 1.0, 2.0]))
    np.testing.assert_array_equal(d.sample(np.random.default_rng(0), 3), [3.0, 1.0, 2.0])
    assert d.mean == pytest.approx(2.0)
    with pytest.raises(ValueError, match="one per replicate"):
        d.sample(np.random.default_rng(0), 4)
    with pytest.raises(ConfigError):
        AlignedDraws(np.array([np.nan]))
