"""The store shell of sites / coverage / exposure: tables written where readers expect them."""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

import flyway
from flyway import schema as S
from flyway.analysis.runner import run_stops
from flyway.analysis.site_runner import read_sites_gdf, run_coverage, run_exposure, run_sites
from tests.conftest import movebank_frame, write_movebank


@pytest.fixture
def store(tmp_path):
    """Two birds that each sit three days at one of two spots 100 km apart (hourly fixes)."""
    frames = []
    for k, (lon, lat) in enumerate([(127.0, 38.0), (128.0, 38.5)]):
        f = movebank_frame(n_individuals=1, n_fixes=72, seed=k, first_event_id=1 + 1000 * k)
        rng = np.random.default_rng(k)
        f["location-long"] = lon + rng.normal(0, 0.001, len(f))
        f["location-lat"] = lat + rng.normal(0, 0.001, len(f))
        f["individual-local-identifier"] = f"bird-{k}"
        frames.append(f)
    path = write_movebank(tmp_path / "f.csv", pd.concat(frames, ignore_index=True))
    st = tmp_path / "store"
    flyway.ingest([path], store=st)
    run_stops(st)
    return st


def test_sites_are_geoparquet_polygons_with_use(store):
    sites = run_sites(store)
    assert len(sites) == 2
    back = gpd.read_parquet(store / "sites" / "sites.parquet")
    assert set(back[S.SITE_ID]) == set(sites[S.SITE_ID])
    assert (back[S.SHARE_OF_TRACKED] == 0.5).all()  # each site used by one of the two tracked birds
    assert back.geom_type.isin(["Polygon", "MultiPolygon"]).all()
    assert read_sites_gdf(store)[S.BIRD_DAYS].round(2).tolist() == pytest.approx([71 / 24] * 2, abs=0.01)


def test_coverage_known_answer_and_csv_escaping(store, tmp_path):
    run_sites(store)
    reserve = shapely.box(126.8, 37.8, 127.2, 38.2)  # covers all of the first site, none of the second
    pas = gpd.GeoDataFrame({"WDPAID": [1], "NAME": ["=HYPERLINK(\"x\")"], "STATUS": ["Designated"],
                            "DESIG_ENG": ["Nature Reserve"], "IUCN_CAT": ["IV"], "STATUS_YR": [2001],
                            "REP_AREA": [1000.0], "ISO3": ["KOR"], "MARINE": ["0"]},
                           geometry=[reserve], crs="EPSG:4326")
    path = tmp_path / "pa.gpkg"
    pas.to_file(path, driver="GPKG")
    result = run_coverage(store, path)
    fractions = sorted(read_sites_gdf(store)[S.PROTECTED_FRACTION].round(3))
    assert fractions == [0.0, 1.0]
    assert len(result.gaps) == 1
    text = (store / "coverage" / "sites.csv").read_text()
    assert "'=HYPERLINK" in text and "\n=HYPERLINK" not in text and ",=HYPERLINK" not in text


def test_exposure_distance_to_a_turbine(store, tmp_path):
    run_sites(store)
    turbine = gpd.GeoDataFrame({"power": ["generator"], "generator:source": ["wind"], "name": ["T1"]},
                               geometry=[shapely.Point(127.0, 38.1)], crs="EPSG:4326")
    path = tmp_path / "t.geojson"
    turbine.to_file(path, driver="GeoJSON")
    run_exposure(store, [path])
    sites = read_sites_gdf(store).sort_values(S.LON)
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    expected = [geod.inv(lon, lat, 127.0, 38.1)[2] / 1000 for lon, lat in zip(sites[S.LON], sites[S.LAT])]
    np.testing.assert_allclose(sites[S.NEAREST_INFRASTRUCTURE_KM], expected, rtol=0.005)
    assert (store / "exposure" / "stop_exposure.parquet").exists()
