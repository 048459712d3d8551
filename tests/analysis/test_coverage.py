"""Coverage and gaps with hand-built geometry whose answers are known."""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from flyway import schema as S
from flyway.analysis.coverage import CoverageParams, coverage
from flyway.analysis.protected import clean_protected_areas
from flyway.analysis.sites import SiteParams, find_sites
from flyway.errors import ConfigError

from tests.analysis.test_protected import wdpa
from tests.analysis.test_sites import make_stops

LON0, LAT0 = 126.5, 37.5


def one_site(buffer_m: float = 3000.0) -> gpd.GeoDataFrame:
    stops = make_stops([LON0], [LAT0], duration_h=240.0)
    return find_sites(stops, SiteParams(buffer_m=buffer_m))


def east_half_reserve(**kw) -> dict:
    # everything east of the site's centre meridian
    return dict(geometry=shapely.box(LON0, LAT0 - 1.0, LON0 + 1.0, LAT0 + 1.0), **kw)


def test_site_half_inside_a_square_reserve_is_half_protected():
    res = coverage(one_site(), wdpa([east_half_reserve(WDPAID=11, NAME="East")]))
    site = res.sites.iloc[0]
    assert site[S.PROTECTED_FRACTION] == pytest.approx(0.5, abs=0.01)
    assert site[S.PROTECTED_BY] == "East (11)"


def test_equal_area_crs_choice_does_not_change_the_answer():
    res = coverage(one_site(), wdpa([east_half_reserve(WDPAID=11)]), params=CoverageParams(crs="EPSG:6933"))
    assert res.sites[S.PROTECTED_FRACTION].iloc[0] == pytest.approx(0.5, abs=0.01)


def test_overlapping_reserves_are_not_double_counted():
    pas = wdpa([east_half_reserve(WDPAID=1, NAME="Big"),
                dict(WDPAID=2, NAME="Inner", geometry=shapely.box(LON0, LAT0 - 0.5, LON0 + 0.5, LAT0 + 0.5))])
    site = coverage(one_site(), pas).sites.iloc[0]
    assert site[S.PROTECTED_FRACTION] == pytest.approx(0.5, abs=0.01)
    assert set(site[S.PROTECTED_BY].split(";")) == {"Big (1)", "Inner (2)"}


def test_two_disjoint_quarters_add_up():
    pas = wdpa([dict(WDPAID=1, geometry=shapely.box(LON0, LAT0, LON0 + 1, LAT0 + 1)),
                dict(WDPAID=2, geometry=shapely.box(LON0 - 1, LAT0 - 1, LON0, LAT0))])
    assert coverage(one_site(), pas).sites[S.PROTECTED_FRACTION].iloc[0] == pytest.approx(0.5, abs=0.01)


def test_proposed_reserve_does_not_count():
    res = coverage(one_site(), wdpa([east_half_reserve(WDPAID=1, STATUS="Proposed")]))
    assert res.sites[S.PROTECTED_FRACTION].iloc[0] == 0.0
    assert res.sites[S.PROTECTED_BY].isna().all()
    assert len(res.protected_areas) == 0


def test_cleaned_table_is_used_as_is_and_a_file_is_read(tmp_path):
    pas = wdpa([east_half_reserve(WDPAID=1)])
    cleaned = clean_protected_areas(pas)
    assert coverage(one_site(), cleaned).sites[S.PROTECTED_FRACTION].iloc[0] == pytest.approx(0.5, abs=0.01)
    path = tmp_path / "wdpa.geojson"
    pas.to_file(path)
    assert coverage(one_site(), path).sites[S.PROTECTED_FRACTION].iloc[0] == pytest.approx(0.5, abs=0.01)


def test_bird_days_by_species_season_country_and_fix_fractions():
    # 3 stops east (inside), 1 west (outside) of the reserve edge, all within one site
    east, west = LON0 + 0.01, LON0 - 0.01
    stops = make_stops([east, east, east, west], [LAT0] * 4, ["a", "b", "c", "d"],
                       duration_h=[24.0, 48.0, 24.0, 96.0])
    stops[S.SEASON] = ["2024-spring", "2024-spring", "2024-autumn", "2024-spring"]
    stops[S.N_FIXES] = [10, 10, 10, 30]
    sites = find_sites(stops)
    pas = wdpa([east_half_reserve(WDPAID=1)])
    res = coverage(sites, pas, stops=stops)
    table = res.by_group.set_index(S.SEASON)
    assert table.loc["2024-spring", S.BIRD_DAYS] == pytest.approx(7.0)
    assert table.loc["2024-spring", S.PROTECTED_BIRD_DAYS] == pytest.approx(3.0)
    assert table.loc["2024-spring", S.PROTECTED_SHARE] == pytest.approx(3 / 7)
    assert table.loc["2024-autumn", S.PROTECTED_SHARE] == pytest.approx(1.0)
    assert table[S.N_STOPS].sum() == 4
    # stop centroids weighted by fixes: 30 of 60 fixes inside
    assert res.sites[S.PROTECTED_FIX_FRACTION].iloc[0] == pytest.approx(0.5)
    # with fixes: 3 of 4 inside; a fix of another species inside the site is not counted
    fixes = pd.DataFrame({S.SPECIES: ["Grus monacha"] * 4 + ["Platalea minor"],
                          S.LON: [east, east, east, west, west], S.LAT: [LAT0] * 5})
    res = coverage(sites, pas, stops=stops, fixes=fixes)
    assert res.sites[S.PROTECTED_FIX_FRACTION].iloc[0] == pytest.approx(0.75)


def test_gaps_are_ranked_by_unprotected_bird_days(tmp_path):
    # three sites: protected, half protected with much use, unprotected with little use
    lon = [126.0, 127.0, 128.0]
    stops = make_stops(lon, [LAT0] * 3, duration_h=[24 * 50, 24 * 40, 24 * 10])
    sites = find_sites(stops)
    pas = wdpa([dict(WDPAID=1, NAME="=HYPERLINK(\"x\")", geometry=shapely.box(125.5, 37.0, 126.5, 38.0)),
                dict(WDPAID=2, geometry=shapely.box(127.0, 37.0, 127.5, 38.0))])
    res = coverage(sites, pas, params=CoverageParams(gap_max_protected=0.6))
    assert res.gaps[S.GAP_RANK].tolist() == [1, 2]
    assert res.gaps[S.UNPROTECTED_BIRD_DAYS].tolist() == pytest.approx([20.0, 10.0], rel=0.02)
    assert res.gaps[S.LON].round(1).tolist() == [127.0, 128.0]
    paths = res.to_csv(tmp_path)
    assert [p.name for p in paths] == ["sites.csv", "coverage_by_group.csv", "gaps.csv"]
    text = (tmp_path / "sites.csv").read_text()
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text


def test_params_are_validated():
    with pytest.raises(ConfigError, match="gap_max_protected"):
        CoverageParams(gap_max_protected=0.0)
    with pytest.raises(ConfigError, match="projected"):
        CoverageParams(crs="EPSG:4326")
