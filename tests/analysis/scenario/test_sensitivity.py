"""Collision-sensitivity grid: binning of flight time, scaling, Band per unit density, CF and NetCDF."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flyway import schema as S
from flyway.analysis.grid import cf_problems, read_netcdf, write_netcdf
from flyway.analysis.scenario.band import band_collisions, day_hours
from flyway.analysis.scenario.distributions import Fixed
from flyway.analysis.scenario.sensitivity import (CELL_AREA_KM2, EXPECTED_COLLISIONS, EXPECTED_COLLISIONS_MONTH,
                                                  FLIGHT_TIME_H, StandardTurbine, sensitivity_from_store,
                                                  sensitivity_grid)
from flyway.analysis.scenario.species import load_species_table
from flyway.errors import ConfigError
from flyway.geo import EARTH_RADIUS_M
from tests.conftest import simulated_store

GM = "Grus monacha"
BOUNDS = (128.0, 36.0, 128.5, 36.5)
DLAT = 5.0 / (math.pi * EARTH_RADIUS_M / 180 / 1000)  # 5 km of latitude
DLON = DLAT / math.cos(math.radians(36.25))  # 5 km of longitude at the grid's mid-latitude
OCT = 9
DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _fixes(ind, times, lons, lats, species=GM):
    n = len(times)
    return pd.DataFrame({S.INDIVIDUAL_ID: ind, S.SPECIES: species, S.TIMESTAMP: pd.to_datetime(times, utc=True),
                         S.LON: np.asarray(lons, float), S.LAT: np.asarray(lats, float),
                         S.QC_FLAGS: np.zeros(n, np.uint32)})


def _cell(ix, iy):
    """Edges of cell (ix, iy) of the grid over BOUNDS."""
    return BOUNDS[0] + ix * DLON, BOUNDS[0] + (ix + 1) * DLON, BOUNDS[1] + iy * DLAT, BOUNDS[1] + (iy + 1) * DLAT


def _one_flight(t0="2024-10-10 02:00", hours_on_ground=10):
    """A flight inside cell (3, 4) of 500 s, then the bird stands at the end point (same position)."""
    x0, x1, y0, y1 = _cell(3, 4)
    a = (x0 + 0.2 * (x1 - x0), y0 + 0.2 * (y1 - y0))
    b = (x0 + 0.8 * (x1 - x0), y0 + 0.7 * (y1 - y0))
    t0 = pd.Timestamp(t0, tz="UTC")
    times = [t0, t0 + pd.Timedelta(seconds=500)] + [t0 + pd.Timedelta(seconds=500) + pd.Timedelta(hours=h)
                                                     for h in range(1, hours_on_ground + 1)]
    lons = [a[0], b[0]] + [b[0]] * hours_on_ground
    lats = [a[1], b[1]] + [b[1]] * hours_on_ground
    return _fixes("b1", times, lons, lats), a, b


def test_one_flight_in_one_cell_matches_a_hand_computation_with_band():
    fixes, a, b = _one_flight()
    ds = sensitivity_grid(fixes, None, bounds=BOUNDS, cell_km=5.0)
    table = load_species_table()
    population = table[GM].scalar("initial_population")
    tracked_s = 500.0 + 10 * 3600.0
    lat_lo, lat_hi = BOUNDS[1] + 4 * DLAT, BOUNDS[1] + 5 * DLAT
    area_km2 = (EARTH_RADIUS_M / 1000) ** 2 * math.radians(DLON) * (math.sin(math.radians(lat_hi))
                                                                     - math.sin(math.radians(lat_lo)))
    density = population * 500.0 / tracked_s / area_km2  # birds in flight per km2, 24-h mean, October
    cell = dict(species=GM, lat=ds[S.LAT][4], lon=ds[S.LON][3])
    assert float(ds[CELL_AREA_KM2][4]) == pytest.approx(area_km2, rel=1e-12)
    assert float(ds[FLIGHT_TIME_H].sel(cell).isel(time=OCT)) == pytest.approx(500 / 3600, rel=1e-6)
    assert float(ds[S.DENSITY_KM2].sel(cell).isel(time=OCT)) == pytest.approx(density, rel=1e-6)
    # Band input: the daytime-equivalent density at the cell's own latitude, nocturnal activity 0
    lat = 0.5 * (lat_lo + lat_hi)
    h_day, _ = day_hours(lat)
    band_density = np.zeros(12)
    band_density[OCT] = density * 24 * DAYS[OCT] / h_day[OCT]
    turbine = StandardTurbine()
    by_hand = band_collisions(table[GM].band(density_km2=list(band_density), nocturnal_activity=Fixed(0.0)),
                              turbine.wind_farm(lat), option=1)
    assert by_hand[OCT] > 0 and np.count_nonzero(by_hand) == 1
    assert float(ds[EXPECTED_COLLISIONS_MONTH].sel(cell).isel(time=OCT)) == pytest.approx(by_hand[OCT], rel=1e-5)
    assert float(ds[EXPECTED_COLLISIONS].sel(cell)) == pytest.approx(by_hand.sum(), rel=1e-5)
    # every other cell, and every month but October, is exactly 0
    coll = ds[EXPECTED_COLLISIONS].sel(species=GM).to_numpy()
    assert np.count_nonzero(coll) == 1 and coll[4, 3] > 0
    assert np.count_nonzero(ds[EXPECTED_COLLISIONS_MONTH].to_numpy()) == 1
    assert float(ds[S.TRACKED_BIRD_DAYS].sel(species=GM).isel(time=OCT)) == pytest.approx(tracked_s / 86400)
    assert ds.attrs["turbine_rotor_radius_m"] == 68.0 and ds.attrs["band_option"] == 1


def test_the_per_unit_density_coefficient_does_not_depend_on_latitude():
    table, turbine = load_species_table(), StandardTurbine()
    out = []
    for lat in (25.0, 45.0, 60.0):
        h_day, _ = day_hours(lat)
        sp = table[GM].band(density_km2=list(24 * DAYS / h_day), nocturnal_activity=Fixed(0.0))
        out.append(band_collisions(sp, turbine.wind_farm(lat), option=1))
    np.testing.assert_allclose(out[0], out[1], rtol=1e-12)
    np.testing.assert_allclose(out[0], out[2], rtol=1e-12)


def test_a_flight_across_two_cells_splits_its_time_by_length():
    x0, _, y0, y1 = _cell(2, 3)
    y = 0.5 * (y0 + y1)
    start = x0 + 0.5 * DLON  # half a cell in cell 2, then a full cell 3, then half of cell 4
    end = x0 + 2.5 * DLON
    t0 = pd.Timestamp("2024-04-02 04:00", tz="UTC")
    fixes = _fixes("b1", [t0, t0 + pd.Timedelta(seconds=1000)], [start, end], [y, y])
    ds = sensitivity_grid(fixes, None, bounds=BOUNDS)
    h = ds[FLIGHT_TIME_H].sel(species=GM).isel(time=3, lat=3).to_numpy() * 3600
    np.testing.assert_allclose(h[2:5], [250.0, 500.0, 250.0], rtol=1e-6)
    assert h.sum() == pytest.approx(1000.0, rel=1e-6)


def test_stationary_birds_and_segments_inside_stops_are_not_flights():
    fixes, a, b = _one_flight()
    stop = pd.DataFrame({S.INDIVIDUAL_ID: ["b1"], S.START_TIME: [fixes[S.TIMESTAMP].min()],
                         S.END_TIME: [fixes[S.TIMESTAMP].max()]})
    ds = sensitivity_grid(fixes, stop, bounds=BOUNDS)
    assert float(ds[EXPECTED_COLLISIONS].sum()) == 0.0 and float(ds[FLIGHT_TIME_H].sum()) == 0.0
    assert float(ds[S.TRACKED_BIRD_DAYS].sum()) > 0  # the time still counts as tracked


def test_a_second_bird_on_the_ground_halves_the_density():
    fixes, a, b = _one_flight()
    ground = fixes.copy()
    ground[S.INDIVIDUAL_ID] = "b2"
    ground[S.LON], ground[S.LAT] = a[0], a[1]  # same times, never moves
    one = sensitivity_grid(fixes, None, bounds=BOUNDS)
    two = sensitivity_grid(pd.concat([fixes, ground]), None, bounds=BOUNDS)
    np.testing.assert_allclose(two[EXPECTED_COLLISIONS].to_numpy(), one[EXPECTED_COLLISIONS].to_numpy() / 2, rtol=1e-6)


def test_cf_attributes_and_a_netcdf_round_trip(tmp_path):
    fixes, _, _ = _one_flight()
    ds = sensitivity_grid(fixes, None, bounds=BOUNDS)
    assert cf_problems(ds) == []
    assert ds[EXPECTED_COLLISIONS].attrs["units"] == "year-1"
    assert ds[S.TIME].attrs["climatology"] == "climatology_bounds"
    path = write_netcdf(ds, tmp_path / "sensitivity.nc")
    back = read_netcdf(path)
    assert cf_problems(back) == []
    for name in (EXPECTED_COLLISIONS, EXPECTED_COLLISIONS_MONTH, S.DENSITY_KM2, FLIGHT_TIME_H, S.TRACKED_BIRD_DAYS):
        np.testing.assert_array_equal(back[name].to_numpy(), ds[name].to_numpy())
    assert list(back[S.SPECIES].to_numpy()) == [GM]
    np.testing.assert_array_equal(back[S.TIME].to_numpy(), ds[S.TIME].to_numpy())
    np.testing.assert_array_equal(back["climatology_bounds"].to_numpy(), ds["climatology_bounds"].to_numpy())
    assert back.attrs["turbine_hub_height_m"] == 110.0


def test_default_bounds_cover_the_fixes_and_species_without_parameters_are_left_out():
    fixes, _, _ = _one_flight()
    tiger = _fixes("t1", pd.date_range("2024-10-10", periods=3, freq="1h", tz="UTC"), [131.0, 131.1, 131.2],
                   [43.0] * 3, species="Panthera tigris altaica")
    ds = sensitivity_grid(pd.concat([fixes, tiger]), None)
    assert list(ds[S.SPECIES].to_numpy()) == [GM]
    assert float(ds[S.LAT].min()) < fixes[S.LAT].min() and float(ds[S.LAT].max()) > fixes[S.LAT].max()
    assert float(ds[FLIGHT_TIME_H].sum()) * 3600 == pytest.approx(500.0, rel=1e-6)
    with pytest.raises(ConfigError, match="no tracked species has Band parameters"):
        sensitivity_grid(tiger, None)


def test_bad_arguments_raise_one_clear_line():
    fixes, _, _ = _one_flight()
    with pytest.raises(ConfigError, match=r"cell_km = 0: expected a cell size in km within \[0.1, 500\]"):
        sensitivity_grid(fixes, None, cell_km=0)
    with pytest.raises(ConfigError, match=r"bounds = \(1, 2, 0, 3\): expected \(lon_min"):
        sensitivity_grid(fixes, None, bounds=(1, 2, 0, 3))
    with pytest.raises(ConfigError, match="expected a larger cell_km or smaller bounds"):
        sensitivity_grid(fixes, None, cell_km=0.1, bounds=(100.0, 20.0, 140.0, 60.0))
    with pytest.raises(ConfigError, match=r"turbine\.hub_height_m = 50.0: expected at least rotor_radius_m"):
        StandardTurbine(hub_height_m=50.0)
    with pytest.raises(ConfigError, match="species 'Platalea minor': .*flight_height_distribution"):
        sensitivity_grid(_one_flight()[0].assign(**{S.SPECIES: "Platalea minor"}), None, bounds=BOUNDS, option=3)


@pytest.fixture(scope="module")
def sim_store(tmp_path_factory):
    return simulated_store(tmp_path_factory.mktemp("sensstore"), n_individuals=4, days=240, seed=5)


def test_store_grid_keeps_all_flight_time_and_matches_the_core(sim_store):
    import flyway
    from flyway.analysis.scenario.track_segments import TrackParams, fix_arrays, segment_table

    fixes, stops = flyway.read_fixes(sim_store), flyway.read_stops(sim_store)
    ds = sensitivity_from_store(sim_store, cell_km=10.0, chunk_fixes=3_000)  # several chunks
    core = sensitivity_grid(fixes, stops, cell_km=10.0)
    np.testing.assert_allclose(ds[EXPECTED_COLLISIONS].to_numpy(), core[EXPECTED_COLLISIONS].to_numpy(), rtol=1e-5)
    assert cf_problems(ds) == []
    # the grid holds every second of flight of the tracked birds (default bounds: nothing falls outside)
    codes = pd.Index(sorted(fixes[S.INDIVIDUAL_ID].astype(str).unique()))
    start, dt_s, flight = segment_table(fix_arrays(fixes, stops, codes), TrackParams())
    assert float(ds[FLIGHT_TIME_H].sum(dtype=np.float64)) * 3600 == pytest.approx(dt_s[flight].sum(), rel=1e-5)
    assert float(ds[S.TRACKED_BIRD_DAYS].sum()) * 86400 == pytest.approx(dt_s.sum(), rel=1e-9)
    assert (ds[EXPECTED_COLLISIONS] >= 0).all() and float(ds[EXPECTED_COLLISIONS].max()) > 0
    # a crane that never flew in a cell has no collisions there
    flown = ds[FLIGHT_TIME_H].sum(S.TIME) > 0
    assert bool(((ds[EXPECTED_COLLISIONS] > 0) <= flown).all())


def test_store_without_stops_is_an_error(tmp_path):
    from flyway.errors import StoreError
    from flyway.ingest.pipeline import ingest
    from flyway.simulate import write_simulation

    paths = write_simulation(tmp_path / "sim", n_individuals=1, days=5, seed=1)
    ingest([paths["fixes"]], tmp_path / "store", reference=paths["reference"])
    with pytest.raises(StoreError, match="no stops table"):
        sensitivity_from_store(tmp_path / "store")


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_crossing_split_matches_a_fine_subdivision(seed):
    """Random flights in every direction: each cell's time equals that of 2,000 equal pieces per segment."""
    from flyway.analysis.scenario.flight_grid import CellGrid, FlightTime
    from flyway.analysis.scenario.track_segments import FixArrays, TrackParams

    rng = np.random.default_rng(seed)
    n = 12
    grid = CellGrid.build(5.0, BOUNDS)
    lon = rng.uniform(128.02, 128.48, n)
    lat = rng.uniform(36.02, 36.48, n)
    time_s = np.cumsum(rng.uniform(600, 3600, n))
    fx = FixArrays(np.zeros(n, np.int64), time_s, lon, lat, np.full(n, np.nan), np.zeros(n, bool))
    sums = FlightTime(1, grid)
    sums.add(fx, np.zeros(1, np.int64), TrackParams(min_flight_speed_ms=0.0))
    got = sums.flight_s.sum(axis=(0, 1))
    k = 2000
    frac = (np.arange(k) + 0.5) / k
    plon = (lon[:-1, None] + frac * np.diff(lon)[:, None]).ravel()
    plat = (lat[:-1, None] + frac * np.diff(lat)[:, None]).ravel()
    ix = np.floor((plon - grid.lon0) / grid.dlon).astype(int)
    iy = np.floor((plat - grid.lat0) / grid.dlat).astype(int)
    fine = np.bincount(iy * grid.nx + ix, weights=np.repeat(np.diff(time_s) / k, k), minlength=grid.cells)
    assert got.sum() == pytest.approx(time_s[-1] - time_s[0], rel=1e-12)
    # each piece of the fine subdivision misplaces at most half its time at each cell edge it straddles
    np.testing.assert_allclose(got, fine, rtol=0, atol=(time_s[-1] - time_s[0]) / k)
