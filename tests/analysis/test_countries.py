"""Countries: packaged Natural Earth outlines, country of a point, transboundary tables."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from flyway import schema as S
from flyway.analysis.countries import (connectivity_matrix, country_of, iso3_of_name, load_countries,
                                       migratory_connectivity, transboundary_summary)
from flyway.errors import ConfigError, InputError

from tests.analysis.test_sites import make_stops

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "boundaries"


def test_packaged_file_is_small_valid_and_attributed():
    data = resources.files("flyway") / "data"
    geojson = data / "ne_countries_ne_asia.geojson"
    assert len(geojson.read_bytes()) < 300_000
    assert "Natural Earth" in (data / "NE_SOURCE.md").read_text()
    countries = load_countries()
    assert countries.geometry.is_valid.all()
    assert {"CHN", "PRK", "KOR", "RUS", "MNG", "JPN", "TWN"} <= set(countries[S.COUNTRY])
    assert not countries[S.COUNTRY].isin(["-99"]).any()


def test_country_of_cities_coast_antimeridian_and_open_sea():
    lon = [126.98, 116.40, 139.69, 125.75, 106.92, 131.89, -179.13, 150.0, 126.55]
    lat = [37.57, 39.90, 35.69, 39.03, 47.92, 43.12, 66.30, 30.0, 37.45]
    got = country_of(np.array(lon), np.array(lat))
    # Seoul, Beijing, Tokyo, Pyongyang, Ulaanbaatar, Vladivostok, Egvenkinot, Pacific, Incheon tidal flats (~11 km off the 1:50m coast)
    assert got.tolist() == ["KOR", "CHN", "JPN", "PRK", "MNG", "RUS", "RUS", None, "KOR"]
    strict = country_of(np.array([126.55]), np.array([37.45]), max_distance_km=0)
    assert strict.tolist() == [None]  # just offshore at 1:50m
    with pytest.raises(ConfigError):
        country_of(np.array([0.0]), np.array([0.0]), max_distance_km=-1)


@pytest.mark.realdata
def test_user_boundaries_natural_earth_world_file():
    path = DATA / "ne_110m_admin_0_countries.shp"
    if not path.exists():
        pytest.skip("shared data absent")
    got = country_of(np.array([2.35, -74.0, 126.98]), np.array([48.86, 40.7, 37.57]), path)
    assert got.tolist() == ["FRA", "USA", "KOR"]
    with pytest.raises(InputError, match="ISO3"):
        load_countries(gpd.read_file(path)[["NAME", "geometry"]])


def test_iso3_of_name():
    names = ["China", "Republic of Korea", "DPR Korea", "Russia", "Mongolia", "Japan", "KOR", "Atlantis", None]
    assert iso3_of_name(names).tolist() == ["CHN", "KOR", "PRK", "RUS", "MNG", "JPN", "KOR", None, None]


def _crane_stops() -> pd.DataFrame:
    # b1: breeds RUS, winters JPN; b2: breeds RUS (most days) + short MNG breeding stop, winters KOR;
    # b3: breeds RUS, winters JPN; b4: only a wintering stop in CHN (country from coordinates)
    rows = [("b1", "breeding", "RUS", 24 * 90, "2024-summer"), ("b1", "stopover", "CHN", 24 * 5, "2024-autumn"),
            ("b1", "wintering", "JPN", 24 * 120, "2024-winter"), ("b2", "breeding", "RUS", 24 * 60, "2024-summer"),
            ("b2", "breeding", "MNG", 24 * 10, "2024-summer"), ("b2", "wintering", "KOR", 24 * 100, "2024-winter"),
            ("b3", "breeding", "RUS", 24 * 80, "2024-summer"), ("b3", "wintering", "JPN", 24 * 90, "2024-winter"),
            ("b4", "wintering", None, 24 * 30, "2024-winter")]
    stops = make_stops([116.4] * len(rows), [39.9] * len(rows), [r[0] for r in rows],
                       duration_h=[float(r[3]) for r in rows])
    stops[S.KIND] = [r[1] for r in rows]
    stops[S.COUNTRY] = [r[2] for r in rows]
    stops[S.SEASON] = [r[4] for r in rows]
    return stops


def test_transboundary_summary_counts_and_fills_missing_countries():
    out = transboundary_summary(_crane_stops())
    assert out[S.N_STOPS].sum() == 9
    assert out[S.BIRD_DAYS].sum() == pytest.approx((90 + 5 + 120 + 60 + 10 + 100 + 80 + 90 + 30))
    rus = out[(out[S.COUNTRY] == "RUS")].iloc[0]
    assert (rus[S.N_STOPS], rus[S.N_INDIVIDUALS], rus[S.BIRD_DAYS]) == (3, 3, 230.0)
    assert out.loc[out[S.COUNTRY] == "CHN", S.N_STOPS].sum() == 2  # b4's stop looked up in Beijing


def test_connectivity_matrix_counts_individuals():
    stops = _crane_stops()
    long = migratory_connectivity(stops)
    assert long[S.N_INDIVIDUALS].sum() == 4
    matrix = connectivity_matrix(stops, "Grus monacha")
    assert matrix.loc["RUS", "JPN"] == 2 and matrix.loc["RUS", "KOR"] == 1
    assert "MNG" not in matrix.index  # b2's main breeding country is RUS
    assert matrix.to_numpy().sum() == 3  # b4 has no breeding country
    assert connectivity_matrix(stops, "Platalea minor").empty
