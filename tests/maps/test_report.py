"""Planner report: page, downloads, charts, data dictionary, public generalisation."""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from flyway import schema as S
from flyway.errors import SchemaError
from flyway.maps.public import PublicParams
from flyway.maps.report import build_report, data_dictionary, report

from .conftest import PAYLOADS


@pytest.fixture(scope="module")
def built(tables, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    cov = tables["coverage"]
    index = build_report(out, stops=tables["stops"], sites=tables["sites"], gaps=tables["gaps"],
                         coverage_by_group=cov.by_group)
    return out, index


def test_report_files(built):
    out, index = built
    names = {p.name for p in out.iterdir()}
    for f in ("index.html", "stops.csv", "sites.csv", "sites.geojson", "gaps.csv", "by_country.csv",
              "connectivity.csv", "coverage_by_group.csv", "data_dictionary.csv", "stopover_durations.png",
              "use_per_country.png", "coverage_by_season.png"):
        assert f in names, f
    page = index.read_text()
    for heading in ("Per species", "Per country, species and season", "Share of use inside protected areas",
                    "Top unprotected sites", "Sites closest to energy infrastructure", "Migratory connectivity",
                    "Data dictionary", "Public export"):
        assert heading in page, heading
    for png in ("stopover_durations.png", "use_per_country.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(gpd.read_file(out / "sites.geojson")) == len(pd.read_csv(out / "sites.csv"))


def test_every_exported_column_is_in_the_dictionary(built):
    out, _ = built
    dictionary = pd.read_csv(out / "data_dictionary.csv")
    described = set(zip(dictionary["file"], dictionary["column"]))
    for csv in out.glob("*.csv"):
        if csv.stem == "data_dictionary":
            continue
        for column in pd.read_csv(csv, nrows=1).columns:
            assert (csv.stem, column) in described, (csv.name, column)
    assert dictionary["description"].notna().all()


def test_dictionary_refuses_undescribed_columns():
    with pytest.raises(SchemaError, match="mystery"):
        data_dictionary({"stops": pd.DataFrame({"mystery": [1]})})


def test_public_report_generalises_breeding_locations(built, tables):
    out, _ = built
    stops = tables["stops"]
    exported = pd.read_csv(out / "stops.csv")
    breeding = (stops[S.KIND] == S.KIND_BREEDING).to_numpy()
    assert breeding.any()
    assert not np.allclose(exported.loc[breeding, S.LON].to_numpy(), stops.loc[breeding, S.LON].to_numpy())
    assert np.allclose(exported.loc[~breeding, S.LON].to_numpy(), stops.loc[~breeding, S.LON].to_numpy())


def test_exact_report_says_so(tables, tmp_path):
    index = build_report(tmp_path, stops=tables["stops"], public=None)
    assert "Exact locations" in index.read_text()
    exported = pd.read_csv(tmp_path / "stops.csv")
    assert np.allclose(exported[S.LON].to_numpy(), tables["stops"][S.LON].to_numpy())


def test_report_escapes_names(payload_tables, tmp_path):
    t = payload_tables
    index = build_report(tmp_path, stops=t["stops"], sites=t["sites"], gaps=t["gaps"],
                         coverage_by_group=t["coverage"].by_group, public=PublicParams())
    page = index.read_text()
    for payload in PAYLOADS:
        assert payload not in page
    assert "&lt;script&gt;" in page
    # spreadsheet formula injection is neutralised in the downloads
    sites = t["sites"].copy()
    sites[S.PROTECTED_BY] = "=HYPERLINK(\"http://x\")"
    build_report(tmp_path / "f", stops=t["stops"], sites=sites, public=None)
    assert pd.read_csv(tmp_path / "f" / "sites.csv")[S.PROTECTED_BY].str.startswith("'=").all()


def test_report_from_store(demo_store, tmp_path):
    index = report(demo_store, tmp_path)
    assert (tmp_path / "map.html").stat().st_size > 10_000
    assert "map.html" in index.read_text()
