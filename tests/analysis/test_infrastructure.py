"""Infrastructure: GPPD and OSM readers, geodesic proximity, exposure tables."""
from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
from hypothesis import given, settings, strategies as st
import shapely

from flyway import schema as S
from flyway.analysis.infrastructure import (POWER_LINE, POWER_PLANT, WIND_TURBINE, ExposureParams, exposure,
                                            proximity, read_infrastructure, read_osm_power, read_power_plants)
from flyway.analysis.sites import SiteParams, find_sites
from flyway.errors import ConfigError, InputError

from tests.analysis.test_sites import make_stops

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "infrastructure"
GEOD = pyproj.Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def gppd() -> gpd.GeoDataFrame:
    path = DATA / "power_plants_ne_asia.csv"
    if not path.exists():
        pytest.skip("shared data absent")
    return read_power_plants(path)


def facilities(points, kind=WIND_TURBINE) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({S.FACILITY_ID: [f"f{i}" for i in range(len(points))], S.FACILITY_NAME: "t",
                             S.FACILITY_KIND: kind, S.FACILITY_SOURCE: "wind", S.CAPACITY_MW: 2.0,
                             S.COUNTRY: None}, geometry=list(points), crs=4326)


@pytest.mark.realdata
def test_gppd_counts(gppd):
    assert len(gppd) == 4038
    assert gppd[S.COUNTRY].value_counts().to_dict() == {"CHN": 3041, "RUS": 505, "JPN": 329, "KOR": 128,
                                                         "PRK": 31, "MNG": 4}
    fuel = gppd[S.FACILITY_SOURCE].value_counts()
    assert (fuel["wind"], fuel["solar"], fuel["hydro"]) == (857, 285, 1158)
    assert (gppd[S.FACILITY_KIND] == POWER_PLANT).all()
    assert gppd[S.FACILITY_ID].str.startswith("WRI").all()


@pytest.mark.realdata
def test_wri_country_files_missing_and_swapped_coordinates():
    path = DATA / "power_plants_ne_asia_wri_country_files.csv"
    if not path.exists():
        pytest.skip("shared data absent")
    plants = read_power_plants(path)
    assert plants.attrs["n_without_coordinates"] == 342
    assert plants.attrs["invalid_coordinate_lines"] == [475]  # latitude 166.02: lat/lon swapped
    assert len(plants) == 4586 - 342 - 1
    assert set(plants[S.COUNTRY].dropna()) == {"CHN", "RUS", "JPN", "KOR", "PRK", "MNG"}
    assert "natural gas" not in set(plants[S.FACILITY_SOURCE]) and "gas" in set(plants[S.FACILITY_SOURCE])
    with pytest.raises(InputError, match=r":475: .*latitude"):
        read_power_plants(path, strict=True)


@pytest.mark.realdata
def test_distances_are_geodesic_and_nearest_is_the_true_nearest(gppd):
    rng = np.random.default_rng(5)
    lon = rng.uniform(100, 150, 300)
    lat = rng.uniform(20, 60, 300)
    prox = proximity(lon, lat, gppd, ExposureParams(buffers_km=(5, 50)))
    plant_lon, plant_lat = gppd.geometry.x.to_numpy(), gppd.geometry.y.to_numpy()
    brute = np.array([GEOD.inv(np.full(len(gppd), x), np.full(len(gppd), y), plant_lon, plant_lat)[2]
                      for x, y in zip(lon, lat)]) / 1000.0
    got = prox.sort_index()
    assert np.allclose(got[S.DISTANCE_KM].to_numpy(), brute.min(axis=1), rtol=0.005)
    assert np.allclose(got[S.DISTANCE_KM].to_numpy(), brute.min(axis=1), rtol=1e-9)
    assert np.array_equal(got["n_within_50km"].to_numpy(), (brute <= 50).sum(axis=1))
    assert np.array_equal(got["n_within_5km"].to_numpy(), (brute <= 5).sum(axis=1))


@pytest.mark.realdata
def test_antimeridian_plant_is_found_from_the_other_side(gppd):
    egv = gppd.loc[gppd.geometry.x < -170]
    assert len(egv) == 1
    x, y = egv.geometry.x.iloc[0], egv.geometry.y.iloc[0]
    prox = proximity(np.array([179.9]), np.array([y]), gppd)
    expected = GEOD.inv(179.9, y, x, y)[2] / 1000.0
    assert prox[S.DISTANCE_KM].iloc[0] == pytest.approx(expected, rel=1e-9)
    assert prox[S.FACILITY_ID].iloc[0] == egv[S.FACILITY_ID].iloc[0]
    assert expected < 60


def test_distance_to_a_power_line_matches_a_densely_sampled_geodesic():
    line = shapely.LineString([(126.0, 37.0), (126.5, 37.4), (127.2, 37.45)])
    fac = facilities([line], kind=POWER_LINE)
    lon = np.array([126.2, 126.9, 127.5, 125.8, 126.5])
    lat = np.array([37.3, 37.2, 37.6, 36.8, 37.4])
    got = proximity(lon, lat, fac, ExposureParams(buffers_km=(1, 10, 30))).sort_index()
    dense = shapely.get_coordinates(shapely.segmentize(line, 0.0002))
    for i in range(len(lon)):
        d = GEOD.inv(np.full(len(dense), lon[i]), np.full(len(dense), lat[i]), dense[:, 0], dense[:, 1])[2].min()
        assert got[S.DISTANCE_KM].iloc[i] == pytest.approx(d / 1000.0, rel=0.005, abs=0.005)
    assert got["n_within_1km"].iloc[4] == 1  # on a vertex
    assert got[S.DISTANCE_KM].iloc[4] == pytest.approx(0.0, abs=1e-6)


def test_inside_a_wind_farm_polygon_is_distance_zero():
    farm = shapely.box(121.0, 31.0, 121.1, 31.1)
    fac = facilities([farm], kind=POWER_PLANT)
    got = proximity(np.array([121.05, 121.2]), np.array([31.05, 31.05]), fac).sort_index()
    assert got[S.DISTANCE_KM].iloc[0] == 0.0
    assert got[S.DISTANCE_KM].iloc[1] == pytest.approx(GEOD.inv(121.2, 31.05, 121.1, 31.05)[2] / 1000, rel=1e-3)


def test_counts_per_buffer_and_per_kind():
    # turbines 0.5, 3 and 8 km north of the point; a line 2 km south
    geod_fwd = lambda d: GEOD.fwd(126.0, 37.0, 0.0, d)[:2]  # noqa: E731
    fac = pd.concat([facilities([shapely.Point(*geod_fwd(d)) for d in (500, 3000, 8000)]),
                     facilities([shapely.LineString([(125.9, 36.982), (126.1, 36.982)])], kind=POWER_LINE)])
    fac[S.FACILITY_ID] = ["t1", "t2", "t3", "l1"]
    got = proximity(np.array([126.0]), np.array([37.0]), gpd.GeoDataFrame(fac, crs=4326)).set_index(S.FACILITY_KIND)
    assert got.loc[WIND_TURBINE, ["n_within_1km", "n_within_5km", "n_within_10km"]].tolist() == [1, 2, 3]
    assert got.loc[WIND_TURBINE, S.DISTANCE_KM] == pytest.approx(0.5, rel=1e-6)
    assert got.loc[POWER_LINE, ["n_within_1km", "n_within_5km"]].tolist() == [0, 1]
    assert got.loc[POWER_LINE, S.DISTANCE_KM] == pytest.approx(GEOD.inv(126, 37, 126, 36.982)[2] / 1000, rel=1e-3)


def test_osm_reader_tag_columns_and_other_tags(tmp_path):
    features = [
        {"type": "Feature", "properties": {"@id": "node/1", "power": "generator", "generator:source": "wind",
                                           "generator:output:electricity": "2.5 MW"},
         "geometry": {"type": "Point", "coordinates": [126.1, 37.1]}},
        {"type": "Feature", "properties": {"@id": "way/2", "power": "line", "voltage": "154000"},
         "geometry": {"type": "LineString", "coordinates": [[126.0, 37.0], [126.2, 37.0]]}},
        {"type": "Feature", "properties": {"@id": "node/3", "power": "tower"},
         "geometry": {"type": "Point", "coordinates": [126.0, 37.0]}},
        {"type": "Feature", "properties": {"@id": "node/4", "amenity": "bench"},
         "geometry": {"type": "Point", "coordinates": [126.0, 37.0]}},
    ]
    path = tmp_path / "power.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    got = read_osm_power(path)
    assert got[S.FACILITY_KIND].tolist() == [WIND_TURBINE, POWER_LINE, "power_tower"]
    assert got[S.CAPACITY_MW].iloc[0] == 2.5
    gdal_style = gpd.GeoDataFrame({"osm_id": ["1"], "other_tags": ['"power"=>"generator","generator:source"=>"wind"']},
                                  geometry=[shapely.Point(126, 37)], crs=4326)
    assert read_osm_power(gdal_style)[S.FACILITY_KIND].tolist() == [WIND_TURBINE]
    both = read_infrastructure([path, path])
    assert len(both) == 6
    with pytest.raises(InputError, match="power"):
        read_osm_power(gpd.GeoDataFrame({"x": [1]}, geometry=[shapely.Point(0, 0)], crs=4326))


def test_exposure_of_sites_stops_and_individuals():
    stops = make_stops([126.0, 126.0, 127.0], [37.0, 37.0, 37.0], ["a", "b", "a"])
    stops[S.KIND] = [S.KIND_BREEDING, S.KIND_BREEDING, S.KIND_STOPOVER]
    stops[S.N_FIXES] = [10, 30, 20]
    sites = find_sites(stops, SiteParams(buffer_m=4000.0))
    turbine = GEOD.fwd(126.0, 37.0, 90.0, 3000.0)[:2]  # 3 km east of the first site: inside its polygon
    fac = facilities([shapely.Point(*turbine)])
    res = exposure(fac, sites=sites, stops=stops, params=ExposureParams(buffers_km=(1, 5)))
    near = res.sites.set_index(S.LON, drop=False).sort_index()[S.NEAREST_INFRASTRUCTURE_KM]
    assert near.iloc[0] == pytest.approx(3.0, rel=1e-6)
    assert near.iloc[1] == pytest.approx(GEOD.inv(127.0, 37.0, *turbine)[2] / 1000, rel=1e-9)
    site_x = res.site_exposure.set_index(S.SITE_ID)
    west, east = (sites.loc[sites[S.LON] < 126.5, S.SITE_ID].iloc[0], sites.loc[sites[S.LON] > 126.5, S.SITE_ID].iloc[0])
    assert (site_x.loc[west, S.N_INSIDE], site_x.loc[east, S.N_INSIDE]) == (1, 0)
    ind = res.individual_exposure.set_index(S.INDIVIDUAL_ID)
    # bird a: 10 fixes at 3 km, 20 fixes ~86 km away -> 1/3 of its fixes within 5 km
    assert ind.loc["a", "share_fixes_within_5km"] == pytest.approx(10 / 30)
    assert ind.loc["a", "share_fixes_within_1km"] == 0.0
    assert ind.loc["b", S.DISTANCE_KM] == pytest.approx(3.0, rel=1e-6)
    assert len(res.breeding_exposure) == 1
    assert res.breeding_exposure[S.KINDS].iloc[0] == S.KIND_BREEDING
    fixes = pd.DataFrame({S.INDIVIDUAL_ID: ["a"] * 4, S.LON: [126.0, 126.0, 127.0, turbine[0]],
                          S.LAT: [37.0, 37.0, 37.0, turbine[1]]})
    res = exposure(fac, stops=stops, fixes=fixes, params=ExposureParams(buffers_km=(1, 5)))
    row = res.individual_exposure.set_index(S.INDIVIDUAL_ID).loc["a"]
    assert (row["share_fixes_within_1km"], row["share_fixes_within_5km"]) == (0.25, 0.75)


def test_exposure_params_are_validated():
    with pytest.raises(ConfigError, match="buffers_km"):
        ExposureParams(buffers_km=(0,))
    with pytest.raises(ConfigError, match="by"):
        ExposureParams(by="colour")
    assert ExposureParams(buffers_km=(10, 1, 1)).buffers_km == (1.0, 10.0)


@settings(max_examples=25, deadline=None)
@given(lon=st.floats(-180, 180), lat=st.floats(-70, 70), seed=st.integers(0, 2**16))
def test_counts_at_the_buffer_edge_are_geodesic_counts(lon, lat, seed):
    """Facilities within +-0.5 % of the radius, where sphere and ellipsoid disagree, are counted exactly."""
    rng = np.random.default_rng(seed)
    n = 40
    dist = 5000.0 * (1 + rng.uniform(-0.005, 0.005, n))
    x, y, _ = GEOD.fwd(np.full(n, lon), np.full(n, lat), rng.uniform(0, 360, n), dist)
    fac = facilities(shapely.points(x, y))
    got = proximity(np.array([lon]), np.array([lat]), fac, ExposureParams(buffers_km=(5,)))
    true = GEOD.inv(np.full(n, lon), np.full(n, lat), x, y)[2]
    assert got["n_within_5km"].iloc[0] == int((true <= 5000.0).sum())
    assert got[S.DISTANCE_KM].iloc[0] == pytest.approx(true.min() / 1000.0, rel=1e-9)
