"""Proximity of proposed facilities to breeding sites: distances, breeding-season time shares, site lists."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyproj
import pytest

from flyway import schema as S
from flyway.analysis.scenario.config import parse_scenario
from flyway.analysis.scenario.breeding_sites import SITE_SOURCE, breeding_sites, read_site_list
from flyway.analysis.scenario.proximity import (SHARE_BREEDING_TIME_WITHIN_KM, breeding_proximity, fix_time_weights_s,
                                                proximity_from_store, write_proximity)
from flyway.errors import ConfigError, InputError
from flyway.geo import EARTH_RADIUS_M, haversine_m
from tests.conftest import simulated_store

GM = "Grus monacha"
LON0, LAT0 = 128.0, 45.0
KM_PER_DEG_LON = math.pi * EARTH_RADIUS_M / 180 / 1000 * math.cos(math.radians(LAT0))
SHARED_SITES = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "sites" / "flagship_sites.csv"
PACKAGED_SITES = Path(__file__).resolve().parents[3] / "flyway" / "data" / "flagship_sites.csv"
FARM = {"turbines": 1, "rotor_radius_m": 60, "hub_height_m": 100, "max_chord_m": 4, "rpm": 10, "pitch_deg": 10,
        "operational_share": [0.85] * 12}


def _config(*facilities):
    raw = {"title": "t", "facility": list(facilities),
           "scenario": [{"name": "all", "facilities": [f["id"] for f in facilities]}]}
    return parse_scenario(raw, source="plan.toml")


def _turbine(fid="T", lon=LON0, lat=LAT0):
    return {"id": fid, "kind": "wind_farm", "turbine_lon_lat": [[lon, lat]], **FARM}


def _footprint(fid="F", lon=LON0, lat=LAT0, half=0.05):
    ring = [[lon - half, lat - half], [lon + half, lat - half], [lon + half, lat + half], [lon - half, lat + half],
            [lon - half, lat - half]]
    return {"id": fid, "kind": "wind_farm", "footprint": ring, **FARM}


def _sites(rows):
    return pd.DataFrame(rows, columns=["site", "country", "lat", "lon", "species", "role"])


def _east(km):
    """Longitude ``km`` east of LON0 along the parallel LAT0 (mean sphere)."""
    return LON0 + km / KM_PER_DEG_LON


# --------------------------------------------------------------------------- distances
def test_distance_of_a_point_facility_to_a_site_is_the_geodesic_distance():
    site_lon, site_lat = 128.3, 45.2
    prox = breeding_proximity(_config(_turbine()), sites=_sites([["Lake", "RUS", site_lat, site_lon, GM, "breeding"]]))
    row = prox.distances.iloc[0]
    by_hand_km = haversine_m(LON0, LAT0, site_lon, site_lat) / 1000.0  # ~33 km on the mean sphere
    assert row[S.DISTANCE_KM] == pytest.approx(by_hand_km, rel=5e-3)
    geodesic_km = pyproj.Geod(ellps="WGS84").inv(LON0, LAT0, site_lon, site_lat)[2] / 1000.0
    assert row[S.DISTANCE_KM] == pytest.approx(geodesic_km, rel=1e-9)
    assert (row[S.FACILITY_ID], row[S.SITE_ID], row[S.SPECIES], row[SITE_SOURCE]) == ("T", "Lake", GM, "site list")


def test_a_footprint_containing_the_site_is_at_distance_zero_and_edges_count_outside():
    sites = _sites([["inside", "RUS", LAT0 + 0.01, LON0 + 0.02, GM, "breeding"],
                    ["north", "RUS", LAT0 + 0.15, LON0, GM, "breeding"]])
    prox = breeding_proximity(_config(_footprint()), sites=sites)
    d = prox.distances.set_index(S.SITE_ID)[S.DISTANCE_KM]
    assert d["inside"] == 0.0
    # due north of the polygon's top edge (lat 45.05): 0.10 degree of latitude
    edge_km = pyproj.Geod(ellps="WGS84").inv(LON0, LAT0 + 0.05, LON0, LAT0 + 0.15)[2] / 1000.0
    assert d["north"] == pytest.approx(edge_km, rel=1e-6)
    assert list(prox.distances[S.SITE_ID]) == ["inside", "north"]  # sorted by distance within the facility


def test_power_line_distance_is_to_the_nearest_point_of_the_line():
    line = {"id": "L", "kind": "power_line", "line": [[LON0, LAT0 - 0.2], [LON0, LAT0 + 0.2]], "wire_low_m": 10,
            "wire_top_m": 30}
    prox = breeding_proximity(_config(line), sites=_sites([["W", "RUS", LAT0, _east(8.0), GM, "breeding"]]))
    assert prox.distances[S.DISTANCE_KM].iloc[0] == pytest.approx(8.0, rel=5e-3)
    assert prox.distances[S.FACILITY_KIND].iloc[0] == "power_line"


def test_only_breeding_rows_of_a_site_list_and_one_row_per_facility_and_site():
    sites = _sites([["A", "KOR", 36.0, 128.0, GM, "breeding"], ["B", "KOR", 36.5, 128.0, GM, "stopover"],
                    ["C", "JPN", 32.0, 130.0, GM, "Breeding"]])
    prox = breeding_proximity(_config(_turbine("T1"), _turbine("T2", lon=129.0)), sites=sites)
    assert len(prox.distances) == 4
    assert set(prox.distances[S.SITE_ID]) == {"A", "C"}


def test_breeding_sites_from_stops_cluster_per_species_and_the_sites_table_wins():
    stops = pd.DataFrame({
        S.INDIVIDUAL_ID: ["b1", "b2", "b3", "b4"], S.SPECIES: [GM, GM, GM, "Platalea minor"],
        S.STOP_ID: ["s1", "s2", "s3", "s4"],
        S.START_TIME: pd.to_datetime(["2024-05-01"] * 4, utc=True),
        S.END_TIME: pd.to_datetime(["2024-07-01"] * 4, utc=True),
        S.DURATION_H: [61 * 24.0] * 4, S.LON: [128.0, 128.02, 131.0, 128.0], S.LAT: [45.0, 45.01, 47.0, 45.0],
        S.RADIUS_M: [500.0] * 4, S.N_FIXES: [100] * 4,
        S.KIND: [S.KIND_BREEDING, S.KIND_BREEDING, S.KIND_WINTERING, S.KIND_BREEDING], S.COUNTRY: ["RUS"] * 4})
    sites = breeding_sites(stops=stops)
    assert sorted(sites[S.SPECIES]) == [GM, "Platalea minor"]  # b1 and b2 are one crane site; b3 winters
    crane = sites[sites[S.SPECIES] == GM].iloc[0]
    assert crane[S.N_INDIVIDUALS] == 2 and crane[SITE_SOURCE] == "stops"
    table = pd.DataFrame({S.SITE_ID: ["site-1", "site-2"], S.SPECIES: [GM, GM], S.LON: [128.0, 130.0],
                          S.LAT: [45.0, 46.0], S.N_INDIVIDUALS: [3, 4], S.KINDS: ["stopover;breeding", "wintering"],
                          S.COUNTRIES: ["RUS", "CHN"]})
    from_table = breeding_sites(stops=stops, site_table=table)
    assert list(from_table[S.SITE_ID]) == ["site-1"] and from_table[SITE_SOURCE].iloc[0] == "sites table"


# --------------------------------------------------------------------------- site lists
def _write(tmp_path, text):
    path = tmp_path / "sites.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_bad_site_list_rows_name_the_file_line_and_column(tmp_path):
    header = "site,country,lat,lon,species,role,source\n"
    good = 'Lake,RUS,45.0,128.0,Grus monacha,breeding,"a, b"\n'
    path = _write(tmp_path, header + good + "Bog,RUS,95.2,128.0,Grus monacha,breeding,x\n")
    with pytest.raises(InputError) as err:
        read_site_list(path)
    assert str(err.value) == f"{path}:3: lat = '95.2': expected degrees within [-90, 90]"
    path = _write(tmp_path, header + good + "Bog,RUS,45,east,Grus monacha,breeding,x\n")
    with pytest.raises(InputError, match=r"sites\.csv:3: lon = 'east': expected degrees within \[-180, 180\]"):
        read_site_list(path)
    path = _write(tmp_path, header + good + good + "Bog,RUS,45,128,Grus monacha,nesting,x\n")
    with pytest.raises(InputError, match=r"sites\.csv:4: role = 'nesting': expected one of breeding, wintering"):
        read_site_list(path)
    path = _write(tmp_path, header + ",RUS,45,128,Grus monacha,breeding,x\n")
    with pytest.raises(InputError, match=r"sites\.csv:2: site is empty"):
        read_site_list(path)
    path = _write(tmp_path, "site,country,lat,species,role\nLake,RUS,45,Grus monacha,breeding\n")
    with pytest.raises(InputError, match=r"sites\.csv: missing column lon; expected columns site,country,lat,lon"):
        read_site_list(path)
    path = _write(tmp_path, header + "Lake,RUS,45,128\n")
    with pytest.raises(InputError, match=r"sites\.csv:2: 4 fields, expected 7"):
        read_site_list(path)
    with pytest.raises(InputError, match="site list not found"):
        read_site_list(tmp_path / "missing.csv")


def test_a_quoted_field_with_a_newline_keeps_line_numbers_right(tmp_path):
    path = _write(tmp_path, "site,country,lat,lon,species,role,source\n"
                            'Lake,RUS,45,128,Grus monacha,breeding,"two\nlines"\n'
                            "Bog,RUS,-91,128,Grus monacha,breeding,x\n")
    with pytest.raises(InputError, match=r"sites\.csv:4: lat = '-91'"):
        read_site_list(path)


def test_packaged_flagship_sites_read_cleanly():
    sites = read_site_list(PACKAGED_SITES)
    assert len(sites) == 46 and (sites["role"] == "breeding").sum() == 12
    assert sites["lat"].between(-90, 90).all() and sites["lon"].between(-180, 180).all()


@pytest.mark.skipif(not SHARED_SITES.exists(), reason="shared data folder absent")
def test_shared_flagship_sites_give_one_distance_per_breeding_site():
    prox = breeding_proximity(_config(_turbine(lon=128.41, lat=36.19)), sites=SHARED_SITES)
    assert len(prox.distances) == 12
    assert prox.distances[S.DISTANCE_KM].is_monotonic_increasing
    assert prox.distances[S.DISTANCE_KM].min() > 100  # no flagship breeding site within 100 km of the Nakdong


# --------------------------------------------------------------------------- time shares
def test_fix_weights_are_half_intervals_capped():
    ind = np.array([0, 0, 0, 0, 1, 1])
    t_h = np.array([0.0, 1.0, 11.0, 12.0, 0.0, 2.0])
    w = fix_time_weights_s(ind, t_h * 3600, 6 * 3600.0) / 3600
    np.testing.assert_allclose(w, [0.5, 0.5 + 3.0, 3.0 + 0.5, 0.5, 1.0, 1.0])


def _fixes(ind, times, lons, lat=LAT0, species=GM, flags=None):
    n = len(times)
    return pd.DataFrame({S.INDIVIDUAL_ID: ind, S.SPECIES: species, S.TIMESTAMP: pd.to_datetime(times, utc=True),
                         S.LON: np.asarray(lons, float), S.LAT: np.full(n, lat),
                         S.QC_FLAGS: np.zeros(n, np.uint32) if flags is None else np.asarray(flags, np.uint32)})


def test_breeding_time_shares_are_exact_on_a_hand_built_track():
    t0 = pd.Timestamp("2024-06-01 00:00", tz="UTC")
    hours = [0, 1, 2, 3, 13, 13.5, 14]  # 3 h -> 13 h: a 10-h gap, capped at 6 h
    km = [0.5, 3.0, 7.0, 15.0, 30.0, 0.2, 0.5]
    flags = [0, 0, 0, 0, 0, int(S.QCFlag.SPEED), 0]  # the flagged fix is dropped
    bird = _fixes("b1", [t0 + pd.Timedelta(hours=h) for h in hours], [_east(k) for k in km], flags=flags)
    # a second crane at the turbine, but in January: outside the breeding window
    winter = _fixes("b2", pd.date_range("2024-01-05", periods=5, freq="1h", tz="UTC"), [LON0] * 5)
    # a spoonbill at the turbine in June: its own species row
    spoonbill = _fixes("s1", pd.date_range("2024-06-05", periods=3, freq="2h", tz="UTC"), [_east(0.1)] * 3,
                       species="Platalea minor")
    prox = breeding_proximity(_config(_turbine()), fixes=pd.concat([bird, winter, spoonbill], ignore_index=True))
    shares = prox.time_shares.set_index(S.SPECIES)
    crane = shares.loc[GM]
    # weights (h): 0.5, 1, 1, 0.5+3, 3+0.5, 0.5 (the flagged 13.5-h fix is gone) -> 10 h
    assert crane[S.TRACKED_BIRD_DAYS] == pytest.approx(10 / 24)
    assert crane[S.TRACKED_INDIVIDUALS] == 1
    expected = {1: 1.0 / 10, 5: 2.0 / 10, 10: 3.0 / 10, 20: 6.5 / 10}
    for r, share in expected.items():
        assert crane[SHARE_BREEDING_TIME_WITHIN_KM.format(km=r)] == pytest.approx(share, abs=1e-12)
    assert shares.loc["Platalea minor", SHARE_BREEDING_TIME_WITHIN_KM.format(km=1)] == 1.0
    from flyway.analysis.params import load_species_config

    window = load_species_config().seasons(GM).breeding_window  # hooded crane: 05-01..08-31
    assert crane["breeding_window"] == f"{window[0]}..{window[1]}"


def test_shares_inside_a_footprint_are_one_and_species_without_breeding_fixes_are_nan():
    june = _fixes("b1", pd.date_range("2024-06-01", periods=4, freq="1h", tz="UTC"), [LON0 + 0.01] * 4)
    march = _fixes("b2", pd.date_range("2024-03-01", periods=4, freq="1h", tz="UTC"), [LON0] * 4,
                   species="Antigone vipio")
    prox = breeding_proximity(_config(_footprint()), fixes=pd.concat([june, march]))
    s = prox.time_shares.set_index(S.SPECIES)
    assert all(s.loc[GM, SHARE_BREEDING_TIME_WITHIN_KM.format(km=r)] == 1.0 for r in (1, 5, 10, 20))
    assert np.isnan(s.loc["Antigone vipio", SHARE_BREEDING_TIME_WITHIN_KM.format(km=1)])
    assert s.loc["Antigone vipio", S.TRACKED_BIRD_DAYS] == 0


def test_bad_arguments_raise_one_clear_line():
    with pytest.raises(ConfigError, match=r"distances_km = \[0, 5\]: expected buffers in km within \(0, 500\]"):
        breeding_proximity(_config(_turbine()), distances_km=[0, 5])
    with pytest.raises(ConfigError, match="max_gap_h = -1"):
        breeding_proximity(_config(_turbine()), max_gap_h=-1)
    with pytest.raises(ConfigError, match="fixes: missing column timestamp"):
        breeding_proximity(_config(_turbine()), fixes=pd.DataFrame({S.INDIVIDUAL_ID: ["a"], S.SPECIES: [GM]}))


# --------------------------------------------------------------------------- the store shell
@pytest.fixture(scope="module")
def sim_store(tmp_path_factory):
    return simulated_store(tmp_path_factory.mktemp("proxstore"), n_individuals=6, days=365, seed=3)


def test_proximity_from_store_matches_the_core_and_shares_grow_with_distance(sim_store, tmp_path):
    import flyway

    stops = flyway.read_stops(sim_store)
    bred = stops[stops[S.KIND] == S.KIND_BREEDING].iloc[0]
    facility = _turbine("near", lon=float(bred[S.LON]) + 0.03, lat=float(bred[S.LAT]))
    cfg = _config(facility, _footprint("far", lon=150.0, lat=10.0))
    prox = proximity_from_store(sim_store, cfg, sites_csv=PACKAGED_SITES)
    assert set(prox.distances[SITE_SOURCE]) == {"stops", "site list"}  # no sites table in this store
    near = prox.distances[(prox.distances[S.FACILITY_ID] == "near") & (prox.distances[SITE_SOURCE] == "stops")]
    assert near[S.DISTANCE_KM].min() < 10
    core = breeding_proximity(cfg, stops=stops, fixes=flyway.read_fixes(sim_store), sites=PACKAGED_SITES)
    pd.testing.assert_frame_equal(prox.time_shares, core.time_shares)
    pd.testing.assert_frame_equal(prox.distances, core.distances)
    cols = [SHARE_BREEDING_TIME_WITHIN_KM.format(km=r) for r in (1, 5, 10, 20)]
    shares = prox.time_shares.set_index([S.FACILITY_ID, S.SPECIES])[cols]
    assert (np.diff(shares.to_numpy(), axis=1) >= 0).all()  # monotone in the buffer
    assert shares.loc[("near", bred[S.SPECIES])].iloc[-1] > 0.1
    assert (shares.loc["far"].to_numpy() == 0).all()
    paths = write_proximity(prox, tmp_path)
    back = pd.read_csv(paths["breeding_time_shares"])
    assert list(back.columns) == list(prox.time_shares.columns) and len(back) == len(prox.time_shares)
    assert pd.read_csv(paths["breeding_distances"])[S.DISTANCE_KM].tolist() == pytest.approx(
        prox.distances[S.DISTANCE_KM].tolist())


def test_a_store_with_a_sites_table_uses_its_breeding_sites(sim_store, tmp_path):
    import shutil

    import flyway
    from flyway.analysis.site_runner import run_sites

    store = tmp_path / "store"
    shutil.copytree(sim_store, store)
    run_sites(store)
    sites = flyway.read_sites(store)
    bred = sites[sites[S.KINDS].str.contains(S.KIND_BREEDING)]
    prox = proximity_from_store(store, _config(_turbine()))
    assert set(prox.distances[SITE_SOURCE]) == {"sites table"}
    assert sorted(prox.distances[S.SITE_ID]) == sorted(bred[S.SITE_ID])  # the ids of the gap map
