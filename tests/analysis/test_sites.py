"""Sites: clustering across individuals, polygons, use statistics, stable ids."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from sklearn.cluster import DBSCAN

from flyway import schema as S
from flyway.analysis import sites as sites_mod
from flyway.analysis._geodesy import EARTH_RADIUS_M
from flyway.analysis.sites import SiteParams, assign_sites, find_sites
from flyway.errors import ConfigError, InputError


def make_stops(lon, lat, individuals=None, species="Grus monacha", duration_h=48.0, **extra) -> pd.DataFrame:
    n = len(lon)
    individuals = individuals if individuals is not None else [f"bird{i}" for i in range(n)]
    frame = pd.DataFrame({
        S.INDIVIDUAL_ID: individuals, S.SPECIES: species, S.STOP_ID: [f"s{i}" for i in range(n)],
        S.LON: np.asarray(lon, float), S.LAT: np.asarray(lat, float), S.DURATION_H: duration_h,
        S.RADIUS_M: 300.0, S.N_FIXES: 10, S.KIND: S.KIND_STOPOVER, S.SEASON: "2024-spring", S.COUNTRY: "KOR",
    })
    for k, v in extra.items():
        frame[k] = v
    return frame


def _offset(lon0, lat0, east_m, north_m):
    lat = lat0 + np.degrees(np.asarray(north_m) / EARTH_RADIUS_M)
    lon = lon0 + np.degrees(np.asarray(east_m) / (EARTH_RADIUS_M * np.cos(np.radians(lat0))))
    return lon, lat


def test_three_places_three_sites_with_use_statistics():
    # Han river estuary (4 stops of 3 birds), Yancheng (2 stops, 2 birds), Izumi (1 stop)
    lon = [126.60, 126.61, 126.62, 126.60, 120.50, 120.51, 130.20]
    lat = [37.70, 37.70, 37.71, 37.69, 33.60, 33.60, 32.10]
    inds = ["a", "b", "c", "a", "a", "d", "e"]
    stops = make_stops(lon, lat, inds, duration_h=[24, 48, 72, 24, 96, 24, 240])
    sites = find_sites(stops)
    assert len(sites) == 3
    assert list(sites.columns) == S.SITES.names + [S.AREA_KM2]
    top = sites.iloc[0]  # sorted by bird-days: Izumi 10 d, then Han (7 d), then Yancheng (5 d)
    assert top[S.BIRD_DAYS] == pytest.approx(10.0)
    han = sites.loc[sites[S.N_STOPS] == 4].iloc[0]
    assert han[S.N_INDIVIDUALS] == 3
    assert han[S.SHARE_OF_TRACKED] == pytest.approx(3 / 5)
    assert han[S.BIRD_DAYS] == pytest.approx(7.0)
    assert han[S.SEASONS] == "2024-spring" and han[S.KINDS] == S.KIND_STOPOVER and han[S.COUNTRIES] == "KOR"
    assert np.isnan(han[S.PROTECTED_FRACTION])
    # every member stop lies inside its site polygon
    import shapely
    poly = han.geometry
    assert all(poly.contains(shapely.Point(x, y)) for x, y in zip(lon[:4], lat[:4]))


def test_share_of_tracked_uses_given_population_and_rejects_too_small():
    stops = make_stops([126.6, 126.6], [37.7, 37.7], ["a", "b"])
    assert find_sites(stops, n_tracked={"Grus monacha": 8})[S.SHARE_OF_TRACKED].iloc[0] == pytest.approx(0.25)
    with pytest.raises(ConfigError, match="less than"):
        find_sites(stops, n_tracked={"Grus monacha": 1})


def test_single_stop_site_is_a_circle_of_the_buffer():
    stops = make_stops([126.6], [37.7])
    site = find_sites(stops, SiteParams(buffer_m=3000.0)).iloc[0]
    assert site[S.AREA_KM2] == pytest.approx(np.pi * 9.0, rel=0.01)  # 16-segment quadrants: 0.3 % low
    # the polygon's extent in lon/lat matches 3 km on the ground
    minx, miny, maxx, maxy = site.geometry.bounds
    assert (maxy - miny) * np.radians(1) * EARTH_RADIUS_M == pytest.approx(6000.0, rel=0.01)
    assert (maxx - minx) * np.radians(1) * EARTH_RADIUS_M * np.cos(np.radians(37.7)) == pytest.approx(6000, rel=0.01)


def test_ids_are_stable_under_row_order_and_change_with_membership():
    rng = np.random.default_rng(3)
    lon, lat = _offset(121.0, 31.0, rng.normal(0, 3000, 60), rng.normal(0, 3000, 60))
    lon = np.r_[lon, lon + 2.0]
    lat = np.r_[lat, lat]
    stops = make_stops(lon, lat, [f"b{i % 7}" for i in range(120)])
    a = find_sites(stops)
    b = find_sites(stops.sample(frac=1.0, random_state=9))
    assert a[S.SITE_ID].tolist() == b[S.SITE_ID].tolist()
    assert a[S.SITE_ID].str.fullmatch(r"site-[0-9a-f]{16}").all()
    c = find_sites(stops.iloc[1:])
    assert set(c[S.SITE_ID]) != set(a[S.SITE_ID])


def test_per_species_parameters():
    lon, lat = _offset(126.0, 37.0, [0.0, 8000.0], [0.0, 0.0])  # 8 km apart
    both = pd.concat([make_stops(lon, lat, species="Platalea minor"),
                      make_stops(lon, lat, species="Grus monacha").assign(**{S.STOP_ID: ["t0", "t1"]})])
    params = {"Platalea minor": SiteParams(eps_m=5000.0), "*": SiteParams(eps_m=10_000.0)}
    sites = find_sites(both, params)
    assert sites.groupby(S.SPECIES).size().to_dict() == {"Grus monacha": 1, "Platalea minor": 2}


def test_antimeridian_neighbours_form_one_site():
    stops = make_stops([179.99, -179.99], [66.0, 66.0])  # ~1.8 km apart across 180
    sites = find_sites(stops)
    assert len(sites) == 1
    assert abs(sites[S.LON].iloc[0]) == pytest.approx(180.0, abs=0.01)
    assert sites.geometry.iloc[0].is_valid


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all((a[:, None] == a[None, :]) == (b[:, None] == b[None, :])))


@pytest.mark.parametrize("dense", [0, 10**9], ids=["through-cells", "point-pairs"])
@pytest.mark.parametrize("min_samples", [1, 3])
def test_core_clusters_match_scikit_learn_dbscan(min_samples, dense, monkeypatch):
    monkeypatch.setattr(sites_mod, "_QUERY_CHUNK", 7)  # many chunks: exercises the label folding
    monkeypatch.setattr(sites_mod, "_DENSE", dense)  # both ways of linking
    rng = np.random.default_rng(min_samples)
    centres = rng.uniform([125, 33], [127, 38], size=(12, 2))
    pick = rng.integers(0, 12, 150)
    lon = centres[pick, 0] + rng.normal(0, 0.05, 150)
    lat = centres[pick, 1] + rng.normal(0, 0.05, 150)
    X = np.radians(np.column_stack([lat, lon]))
    eps = 6000.0 / EARTH_RADIUS_M
    ours = sites_mod._dbscan_haversine(X, eps, min_samples)
    ref = DBSCAN(eps=eps, min_samples=min_samples, metric="haversine", algorithm="ball_tree").fit(X)
    core = np.zeros(150, dtype=bool)
    core[ref.core_sample_indices_] = True
    assert _same_partition(ours[core], ref.labels_[core])
    assert np.array_equal(ours == -1, ref.labels_ == -1)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(126.0, 126.5), st.floats(37.0, 37.3)), min_size=1, max_size=40),
       st.sampled_from([0, 10**9]))
def test_single_linkage_equals_dbscan_min_samples_1(points, dense):
    X = np.radians(np.array([(la, lo) for lo, la in points]))
    eps = 4000.0 / EARTH_RADIUS_M
    ref = DBSCAN(eps=eps, min_samples=1, metric="haversine", algorithm="ball_tree").fit_predict(X)
    old, sites_mod._DENSE = sites_mod._DENSE, dense
    try:
        assert _same_partition(sites_mod._dbscan_haversine(X, eps, 1), ref)
    finally:
        sites_mod._DENSE = old


def test_noise_stops_get_no_site_with_min_samples():
    lon, lat = _offset(126.0, 37.0, [0, 100, 200, 50_000], [0, 0, 0, 0])
    stops = make_stops(lon, lat)
    ids = assign_sites(stops, SiteParams(min_samples=2))
    assert ids.isna().tolist() == [False, False, False, True]
    assert len(find_sites(stops, SiteParams(min_samples=2))) == 1


def test_hdbscan_option_finds_two_dense_groups():
    rng = np.random.default_rng(0)
    a = _offset(126.0, 37.0, rng.normal(0, 500, 30), rng.normal(0, 500, 30))
    b = _offset(127.0, 37.0, rng.normal(0, 500, 30), rng.normal(0, 500, 30))
    stops = make_stops(np.r_[a[0], b[0]], np.r_[a[1], b[1]])
    sites = find_sites(stops, SiteParams(method="hdbscan", min_cluster_size=5, min_samples=3, eps_m=2000))
    assert len(sites) == 2 and sites[S.N_STOPS].sum() <= 60


def test_empty_and_bad_input():
    empty = make_stops([], [])
    out = find_sites(empty)
    assert len(out) == 0 and list(out.columns) == S.SITES.names + [S.AREA_KM2]
    with pytest.raises(InputError, match="lacks column"):
        find_sites(empty.drop(columns=[S.DURATION_H]))
    with pytest.raises(InputError, match="not a valid WGS84"):
        find_sites(make_stops([200.0], [37.0]))


@pytest.mark.parametrize("kwargs, match", [
    (dict(eps_m=0), "eps_m"), (dict(min_samples=0), "min_samples"), (dict(buffer_m=-1), "buffer_m"),
    (dict(method="kmeans"), "method"), (dict(min_cluster_size=1), "min_cluster_size"),
])
def test_site_params_are_validated(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SiteParams(**kwargs)
