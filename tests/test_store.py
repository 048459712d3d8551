"""The store: GeoParquet readable by geopandas and DuckDB, ledger, idempotence, reads, export."""
from __future__ import annotations

import json

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import shapely

import flyway
from flyway import schema as S
from flyway.store import Store, slug
from tests.conftest import movebank_frame, write_movebank


@pytest.fixture
def store_with_data(tmp_path, movebank_csv):
    store = tmp_path / "store"
    flyway.ingest([movebank_csv("a.csv", n_individuals=3, n_fixes=40)], store=store)
    return store


def test_part_files_are_geoparquet_1_1(store_with_data):
    files = Store(store_with_data).fix_files()
    assert len(files) == 3
    for f in files:
        meta = pq.read_schema(f).metadata
        geo = json.loads(meta[b"geo"])
        assert geo["version"] == "1.1.0"
        assert geo["primary_column"] == S.GEOMETRY
        col = geo["columns"][S.GEOMETRY]
        assert col["encoding"] == "WKB" and col["geometry_types"] == ["Point"]
        assert col["crs"]["id"]["code"] == 4326
        t = pq.read_table(f)
        lon, lat = t.column(S.LON).to_numpy(), t.column(S.LAT).to_numpy()
        assert col["bbox"] == [lon.min(), lat.min(), lon.max(), lat.max()]
        flyway_meta = json.loads(meta[b"flyway"])
        assert flyway_meta["flyway_version"] == flyway.__version__


def test_geopandas_reads_store_and_geometry_matches_columns(store_with_data):
    gdf = gpd.read_parquet(store_with_data / "fixes")
    assert len(gdf) == 120
    assert gdf.crs.to_epsg() == 4326
    np.testing.assert_array_equal(shapely.get_x(gdf.geometry.values), gdf[S.LON].to_numpy())
    np.testing.assert_array_equal(shapely.get_y(gdf.geometry.values), gdf[S.LAT].to_numpy())


def test_duckdb_reads_store_with_hive_partitioning(store_with_data):
    glob = str(store_with_data / "fixes" / "**" / "*.parquet")
    rows = duckdb.sql(
        f"select {S.INDIVIDUAL_ID}, count(*), min({S.TIMESTAMP}) from read_parquet('{glob}', hive_partitioning=true) "
        f"group by 1 order by 1").fetchall()
    assert [r[0] for r in rows] == ["GM000", "GM001", "GM002"]
    assert all(r[1] == 40 for r in rows)
    cols = duckdb.sql(f"select * from read_parquet('{glob}', hive_partitioning=true) limit 1").columns
    assert "species_slug" in cols and "individual_slug" in cols and S.SPECIES in cols


def test_read_fixes_schema_and_filters(store_with_data):
    df = flyway.read_fixes(store_with_data)
    assert list(df.columns) == S.FIXES.names
    assert str(df[S.TIMESTAMP].dt.tz) == "UTC"
    assert df[S.QC_FLAGS].eq(0).all()
    one = flyway.read_fixes(store_with_data, individuals="GM001", start="2024-03-01 10:00", end="2024-03-01 19:00")
    assert one[S.INDIVIDUAL_ID].unique().tolist() == ["GM001"]
    assert len(one) == 10
    assert flyway.read_fixes(store_with_data, species="Platalea minor").empty
    assert one[S.TIMESTAMP].is_monotonic_increasing


def test_same_file_twice_adds_nothing(store_with_data, movebank_csv):
    again = flyway.ingest([movebank_csv("a.csv", n_individuals=3, n_fixes=40)], store=store_with_data)
    assert [f.status for f in again.files] == ["skipped"]
    assert len(flyway.read_fixes(store_with_data)) == 120


def test_overlapping_files_add_no_duplicate_fixes(tmp_path):
    frame = movebank_frame(n_individuals=2, n_fixes=60)
    a = write_movebank(tmp_path / "a.csv", frame.iloc[:80])
    b = write_movebank(tmp_path / "b.csv", frame.iloc[40:])  # rows 40-79 in both files
    store = tmp_path / "store"
    flyway.ingest([a], store=store)
    rep = flyway.ingest([b], store=store)
    assert rep.files[0].rows_duplicate == 40
    assert rep.files[0].rows_kept == 40
    df = flyway.read_fixes(store)
    assert len(df) == 120
    assert not df.duplicated([S.INDIVIDUAL_ID, S.TIMESTAMP, S.LON, S.LAT]).any()


def test_partition_names_are_slugs_never_raw_text():
    for raw in ["../../etc/passwd", "a/b", "CON", "x" * 5000, "<script>alert(1)</script>", "鶴 1", ""]:
        s = slug(raw)
        assert "/" not in s and ".." not in s and len(s) <= 51
        assert all(c.isascii() and (c.isalnum() or c in "-_") for c in s)
    assert slug("a/b") != slug("a-b")  # the hash keeps different ids apart


def test_hostile_ids_stay_inside_the_store(tmp_path):
    frame = movebank_frame(n_individuals=1, n_fixes=5)
    frame["individual-local-identifier"] = "../../escape<img src=x onerror=alert(1)>"
    store = tmp_path / "store"
    flyway.ingest([write_movebank(tmp_path / "evil.csv", frame)], store=store)
    files = Store(store).fix_files()
    assert len(files) == 1 and store.resolve() in files[0].resolve().parents
    assert not (tmp_path / "escape").exists()
    df = flyway.read_fixes(store)
    assert df[S.INDIVIDUAL_ID].iloc[0] == "../../escape<img src=x onerror=alert(1)>"


def test_store_info_counts(store_with_data):
    info = flyway.store_info(store_with_data)
    assert info.individuals == 3 and info.fixes == 120
    assert info.species[0].species == "Grus monacha"
    assert info.first.startswith("2024-03-01 00:00:00") and info.last.startswith("2024-03-02 15:00:00")
    assert info.files_ingested == 1 and info.quarantined_rows == 0


def test_export_csv_escapes_formulas_and_gpkg_roundtrips(tmp_path):
    frame = movebank_frame(n_individuals=1, n_fixes=4)
    frame["individual-local-identifier"] = "=HYPERLINK(\"http://x\",\"y\")"
    frame["study-name"] = "@SUM(1+1)"
    store = tmp_path / "store"
    flyway.ingest([write_movebank(tmp_path / "f.csv", frame)], store=store)
    out = tmp_path / "out.csv"
    assert flyway.export_fixes(store, out) == 4
    back = pd.read_csv(out)
    assert back[S.INDIVIDUAL_ID].iloc[0] == "'=HYPERLINK(\"http://x\",\"y\")"
    assert back[S.STUDY].iloc[0] == "'@SUM(1+1)"
    assert (back[S.LON] < 180).all()  # numbers untouched
    gpkg = tmp_path / "out.gpkg"
    assert flyway.export_fixes(store, gpkg) == 4
    g = gpd.read_file(gpkg)
    assert len(g) == 4 and g.crs.to_epsg() == 4326
    assert g[S.INDIVIDUAL_ID].iloc[0] == "=HYPERLINK(\"http://x\",\"y\")"  # GIS keeps the text as is


def test_uncommitted_files_are_invisible_and_removed(store_with_data):
    st = Store(store_with_data)
    stray = st.partition_dir("Grus monacha", "GM000") / "part-20990101T000000-deadbeef00.parquet"
    stray.write_bytes(b"not parquet, not committed")
    assert len(flyway.read_fixes(store_with_data)) == 120
    with st.lock():
        assert st.remove_uncommitted() == 1
    assert not stray.exists()


def test_second_writer_gets_a_clear_lock_error(store_with_data):
    st = Store(store_with_data)
    with st.lock("ingest"):
        with pytest.raises(flyway.StoreError, match="locked by ingest run, pid"):
            flyway.ingest([], store=store_with_data)


def test_compact_merges_part_files_without_changing_fixes(tmp_path):
    from flyway.compact import compact

    frame = movebank_frame(n_individuals=2, n_fixes=60)
    store = tmp_path / "store"
    for k in range(3):  # three batches -> three part files per bird
        part = frame.groupby("individual-local-identifier").nth(list(range(20 * k, 20 * k + 20)))
        flyway.ingest([write_movebank(tmp_path / f"n{k}.csv", part)], store=store)
    before = flyway.read_fixes(store).drop(columns=[S.BATCH_ID])
    st = Store(store)
    assert len(st.fix_files()) == 6
    res = compact(store)
    assert (res.individuals, res.files_before, res.files_after) == (2, 6, 2)
    assert len(list((store / "fixes").rglob("*.parquet"))) == 2  # old files are gone from disk too
    after = flyway.read_fixes(store).drop(columns=[S.BATCH_ID])
    pd.testing.assert_frame_equal(before, after)
    assert compact(store).individuals == 0  # nothing left to merge
    assert flyway.store_info(store).fixes == 120
