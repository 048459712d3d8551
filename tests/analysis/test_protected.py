"""Protected areas: WDPA reading through the alias table, wdpar-style cleaning, dissolving.

All polygons are constructed here; no WDPA data is used or shipped.
"""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely

from flyway import schema as S
from flyway.analysis.protected import (ProtectedAreaParams, clean_protected_areas, dissolve_protected_areas,
                                       equal_area_crs, read_protected_areas)
from flyway.errors import ConfigError, InputError


def wdpa(rows: list[dict], new_schema: bool = False) -> gpd.GeoDataFrame:
    """A WDPA-shaped table; ``new_schema`` uses the November-2025 field names."""
    base = dict(WDPAID=0, NAME="x", DESIG_ENG="Nature Reserve", IUCN_CAT="II", STATUS="Designated",
                STATUS_YR=2000, ISO3="KOR", REP_AREA=0.0, GIS_AREA=0.0)
    base.update({"PRNT_ISO3": "KOR", "REALM": "Terrestrial", "SITE_TYPE": "PA"} if new_schema
                else {"PARENT_ISO3": "KOR", "MARINE": "0", "PA_DEF": "1"})
    recs = [{**base, **{k: v for k, v in r.items() if k != "geometry"}} for r in rows]
    return gpd.GeoDataFrame(recs, geometry=[r["geometry"] for r in rows], crs="EPSG:4326")


BOX = shapely.box(126.0, 37.0, 126.2, 37.2)


def test_status_and_mab_filters_follow_wdpar():
    pas = wdpa([
        dict(WDPAID=1, STATUS="Designated", geometry=BOX),
        dict(WDPAID=2, STATUS="Proposed", geometry=BOX),
        dict(WDPAID=3, STATUS="Not Reported", geometry=BOX),
        dict(WDPAID=4, STATUS="Adopted", geometry=BOX),
        dict(WDPAID=5, STATUS="Inscribed", geometry=BOX),
        dict(WDPAID=6, STATUS="Established", geometry=BOX),
        dict(WDPAID=7, DESIG_ENG="UNESCO-MAB Biosphere Reserve", geometry=BOX),
    ])
    clean = clean_protected_areas(read_protected_areas(pas))
    assert sorted(clean[S.PA_ID]) == ["1", "5", "6"]


def test_point_record_becomes_circle_of_reported_area():
    pas = wdpa([dict(WDPAID=9, REP_AREA=10.0, geometry=shapely.Point(126.5, 37.5))])
    clean = clean_protected_areas(pas)
    assert clean[S.AREA_KM2].iloc[0] == pytest.approx(10.0, rel=1e-6)
    # measured independently in an equal-area projection centred elsewhere
    area = clean.to_crs("EPSG:6933").area.iloc[0] / 1e6
    assert area == pytest.approx(10.0, rel=0.005)
    centre = clean.geometry.iloc[0].centroid
    assert (centre.x, centre.y) == pytest.approx((126.5, 37.5), abs=1e-4)
    radius = pyproj.Geod(ellps="WGS84").inv(126.5, 37.5, *shapely.get_coordinates(clean.geometry.iloc[0])[0])[2]
    assert radius == pytest.approx(np.sqrt(10e6 / np.pi), rel=0.01)


def test_point_without_reported_area_is_dropped_and_missing_rep_area_column_is_an_error():
    pas = wdpa([dict(WDPAID=1, REP_AREA=np.nan, geometry=shapely.Point(126.5, 37.5)),
                dict(WDPAID=2, REP_AREA=0.0, geometry=shapely.Point(126.6, 37.5)),
                dict(WDPAID=3, geometry=BOX)])
    assert clean_protected_areas(pas)[S.PA_ID].tolist() == ["3"]
    with pytest.raises(InputError, match="REP_AREA"):
        read_protected_areas(pas.drop(columns=["REP_AREA"]))


def test_old_and_new_field_names_give_the_same_table():
    rows = [dict(WDPAID=1, NAME="Han River Estuary", geometry=BOX)]
    old = read_protected_areas(wdpa(rows, new_schema=False))
    new = read_protected_areas(wdpa(rows, new_schema=True))
    cols = [S.PA_ID, S.PA_NAME, S.PARENT_ISO3, S.REALM, S.SITE_TYPE, S.STATUS_YEAR]
    assert old[cols].astype(str).equals(new[cols].astype(str))
    assert old[S.REALM].iloc[0] == "Terrestrial" and old[S.SITE_TYPE].iloc[0] == "PA"


def test_marine_and_pa_def_codes_are_translated():
    pas = wdpa([dict(WDPAID=1, MARINE="2", PA_DEF="0", geometry=BOX)])
    got = read_protected_areas(pas)
    assert got[S.REALM].iloc[0] == "Marine" and got[S.SITE_TYPE].iloc[0] == "OECM"


def test_filters_year_iucn_designation_site_type():
    pas = wdpa([
        dict(WDPAID=1, STATUS_YR=1990, IUCN_CAT="Ia", geometry=BOX),
        dict(WDPAID=2, STATUS_YR=2010, IUCN_CAT="IV", geometry=BOX),
        dict(WDPAID=3, STATUS_YR=0, IUCN_CAT="Not Reported", geometry=BOX,
             DESIG_ENG="Ramsar Site, Wetland of International Importance"),
        dict(WDPAID=4, STATUS_YR=2000, PA_DEF="0", geometry=BOX),
    ])
    ids = lambda p: sorted(clean_protected_areas(pas, p)[S.PA_ID])  # noqa: E731
    assert ids(ProtectedAreaParams(status_year_max=2005)) == ["1", "4"]
    assert ids(ProtectedAreaParams(status_year_max=2005, include_unknown_year=True)) == ["1", "3", "4"]
    assert ids(ProtectedAreaParams(iucn_categories=("Ia", "IV"))) == ["1", "2"]
    assert ids(ProtectedAreaParams(designations=("ramsar site, wetland of international importance",))) == ["3"]
    assert ids(ProtectedAreaParams(site_types=("PA",))) == ["1", "2", "3"]
    assert clean_protected_areas(pas)[S.STATUS_YEAR].isna().sum() == 1  # 0 = unknown


def test_invalid_bowtie_is_repaired_to_its_two_triangles():
    bowtie = shapely.Polygon([(126.0, 37.0), (126.2, 37.2), (126.2, 37.0), (126.0, 37.2)])
    assert not bowtie.is_valid
    clean = clean_protected_areas(wdpa([dict(WDPAID=1, geometry=bowtie)]))
    assert clean.geometry.is_valid.all()
    box_area = clean_protected_areas(wdpa([dict(WDPAID=2, geometry=BOX)]))[S.AREA_KM2].iloc[0]
    assert clean[S.AREA_KM2].iloc[0] == pytest.approx(box_area / 2, rel=0.01)


def test_overlapping_areas_are_dissolved_before_measuring():
    a = shapely.box(126.0, 37.0, 126.2, 37.2)
    b = shapely.box(126.1, 37.0, 126.3, 37.2)
    clean = clean_protected_areas(wdpa([dict(WDPAID=1, geometry=a), dict(WDPAID=2, geometry=b)]))
    single = clean[S.AREA_KM2].iloc[0]
    total = dissolve_protected_areas(clean)[S.AREA_KM2].iloc[0]
    assert total == pytest.approx(1.5 * single, rel=0.01)  # not 2 x single
    by_country = dissolve_protected_areas(clean, by=S.ISO3)
    assert by_country[S.AREA_KM2].iloc[0] == pytest.approx(total, rel=1e-9)


def test_any_named_polygons_count_as_designated():
    gdf = gpd.GeoDataFrame({"name": ["Mudflat A", "Mudflat B"]}, geometry=[BOX, BOX.buffer(0.1)], crs=4326)
    clean = clean_protected_areas(gdf)
    assert clean[S.PA_NAME].tolist() == ["Mudflat A", "Mudflat B"]
    assert clean[S.PA_ID].tolist() == ["1", "2"]
    with pytest.raises(InputError, match="name"):
        read_protected_areas(gdf.rename(columns={"name": "label"}))
    assert read_protected_areas(gdf.rename(columns={"name": "label"}), name_column="label")[S.PA_NAME].iloc[1] \
        == "Mudflat B"


def test_wdpa_without_status_is_rejected():
    with pytest.raises(InputError, match="STATUS"):
        read_protected_areas(wdpa([dict(WDPAID=1, geometry=BOX)]).drop(columns=["STATUS"]))


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson", ".parquet", ".shp"])
def test_reads_files_of_each_format(tmp_path, suffix):
    pas = wdpa([dict(WDPAID=1, NAME="Suncheon Bay", geometry=BOX), dict(WDPAID=2, STATUS="Proposed", geometry=BOX)],
               new_schema=True)
    path = tmp_path / f"wdpa{suffix}"
    pas.to_parquet(path) if suffix == ".parquet" else pas.to_file(path)
    clean = clean_protected_areas(path)
    assert clean[S.PA_NAME].tolist() == ["Suncheon Bay"]
    with pytest.raises(InputError, match="not found"):
        read_protected_areas(tmp_path / "missing.gpkg")


def test_point_circle_across_the_antimeridian_stays_one_polygon():
    clean = clean_protected_areas(wdpa([dict(WDPAID=1, REP_AREA=50.0, geometry=shapely.Point(179.99, 66.0))]))
    minx, _, maxx, _ = clean.geometry.iloc[0].bounds
    assert maxx - minx < 1.0 and maxx > 180.0
    assert clean[S.AREA_KM2].iloc[0] == pytest.approx(50.0, rel=1e-6)


def test_equal_area_crs_is_laea_on_the_data():
    crs = equal_area_crs(np.array([179.0, -179.0]), np.array([60.0, 62.0]))
    op = crs.coordinate_operation
    assert op.method_name.startswith("Lambert Azimuthal Equal Area")
    lon0 = next(p.value for p in op.params if "longitude" in p.name.lower())
    assert abs(lon0) == pytest.approx(180.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(iucn_categories=("VII",)), "unknown"), (dict(status_year_max=15), "year"),
    (dict(keep_status="Designated"), "keep_status"), (dict(min_area_m2=-1.0), "min_area"),
])
def test_params_are_validated(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ProtectedAreaParams(**kwargs)
