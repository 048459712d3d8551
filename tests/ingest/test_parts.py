"""Part files: the stored form a batch writes per individual (flyway.ingest.parts)."""
from __future__ import annotations

import json

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flyway import schema as S
from flyway.errors import SchemaError
from flyway.geoparquet import constant_strings, points_wkb
from flyway.ingest.parts import PART_WRITE_OPTIONS, PartWriter
from flyway.ingest.staging import Stager
from flyway.ingest.writer import _kept_rows
from flyway.store import Store, fixes_geo_table, new_batch_id, part_facts

BIRD, SPECIES = "WNC-0016", "Antigone vipio"


def staged_rows(n: int, seed: int = 0, first_event: int = 30_000_000_000) -> pa.Table:
    """``n`` fixes of one bird in the staged form (what pass 1 hands to pass 2)."""
    rng = np.random.default_rng(seed)
    t = pd.Timestamp("2024-11-25", tz="UTC") + pd.to_timedelta(np.arange(n) * 3600 + rng.integers(0, 60, n), unit="s")
    hdop = rng.choice([0.7, 1.1, 1.4, np.nan], n)
    rows = pa.table({
        S.STUDY: pa.array(["flyway test study"] * n),
        S.INDIVIDUAL_ID: pa.array([BIRD] * n),
        S.TAG_ID: pa.array(["192015"] * n),
        S.SPECIES: pa.array([SPECIES] * n),
        S.TIMESTAMP: pa.array(t, S.TIMESTAMP_TYPE),
        S.LON: pa.array(np.round(128.69 + np.cumsum(rng.normal(0, 1e-3, n)), 7)),
        S.LAT: pa.array(np.round(35.30 + np.cumsum(rng.normal(0, 1e-3, n)), 7)),
        S.ALTITUDE_M: pa.array(rng.normal(30, 10, n), pa.float32()),
        S.HDOP: pa.array(hdop, pa.float32(), from_pandas=True),
        S.SATELLITES: pa.array(rng.integers(4, 14, n), pa.int16()),
        S.GROUND_SPEED_MS: pa.array(rng.uniform(0, 20, n), pa.float32()),
        S.SENSOR_TYPE: pa.array(["gps"] * n),
        S.EVENT_ID: pa.array(first_event + np.arange(n), pa.int64()),
        S.SOURCE_FILE: pa.array(["night.csv"] * n),
        S.SOURCE_LINE: pa.array(np.arange(2, n + 2), pa.int64()),
        S.QC_FLAGS: pa.array(np.where(np.arange(n) % 7 == 0, 4, 0), pa.uint32()),
    })
    store = Store("unused")
    return Stager(store, "b", 1).conform(rows)


def reference_table(rows: pa.Table, batch_id: str) -> pa.Table:
    """The stored form as the store's own helpers build it (contract conform + fixes_geo_table)."""
    n = rows.num_rows
    full = rows.append_column(S.GEOMETRY, points_wkb(rows.column(S.LON).to_numpy(), rows.column(S.LAT).to_numpy()))
    full = full.append_column(S.BATCH_ID, constant_strings(batch_id, n))
    return fixes_geo_table(S.FIXES.conform(full), batch_id)


@pytest.mark.parametrize("n", [1, 5, 3000])
def test_part_table_is_the_contract_with_the_store_metadata(tmp_path, n):
    batch = new_batch_id()
    rows = staged_rows(n)
    table = PartWriter(Store(tmp_path / "store"), batch).table(rows)
    expected = reference_table(rows, batch)
    assert table.equals(expected)
    assert table.schema.equals(expected.schema, check_metadata=True)
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["columns"][S.GEOMETRY]["bbox"] == pytest.approx(
        [min(rows.column(S.LON).to_pylist()), min(rows.column(S.LAT).to_pylist()),
         max(rows.column(S.LON).to_pylist()), max(rows.column(S.LAT).to_pylist())])


def test_part_file_reads_back_the_same_in_pyarrow_geopandas_and_duckdb(tmp_path):
    store = Store(tmp_path / "store")
    batch = new_batch_id()
    rows = staged_rows(2500, seed=3)
    rel = PartWriter(store, batch).write(rows)
    path = store.path / rel
    assert path.parent == store.partition_dir(SPECIES, BIRD)
    assert not list(path.parent.glob("*.tmp"))
    back = pq.read_table(path)
    assert back.equals(reference_table(rows, batch))
    md = pq.read_metadata(path)
    assert part_facts(md)[:2] == (SPECIES, BIRD)
    encodings = {md.row_group(0).column(i).path_in_schema: md.row_group(0).column(i).encodings
                 for i in range(md.num_columns)}
    assert "BYTE_STREAM_SPLIT" in encodings[S.LON] and "DELTA_BINARY_PACKED" in encodings[S.TIMESTAMP]
    gdf = gpd.read_parquet(path)
    assert gdf.crs.to_epsg() == 4326
    np.testing.assert_array_equal(gdf.geometry.x.to_numpy(), rows.column(S.LON).to_numpy())
    got = duckdb.sql(f"select {S.LON}, {S.LAT}, epoch_us({S.TIMESTAMP}), {S.EVENT_ID}, {S.SOURCE_LINE}, "
                     f"{S.ALTITUDE_M}, {S.HDOP}, {S.QC_FLAGS} from read_parquet('{path}')").fetchnumpy()
    np.testing.assert_array_equal(got[S.LON], rows.column(S.LON).to_numpy())
    np.testing.assert_array_equal(got[S.LAT], rows.column(S.LAT).to_numpy())
    np.testing.assert_array_equal(list(got.values())[2], rows.column(S.TIMESTAMP).cast(pa.int64()).to_numpy())
    np.testing.assert_array_equal(got[S.EVENT_ID], rows.column(S.EVENT_ID).to_numpy())
    np.testing.assert_array_equal(got[S.SOURCE_LINE], rows.column(S.SOURCE_LINE).to_numpy())
    np.testing.assert_array_equal(got[S.ALTITUDE_M], rows.column(S.ALTITUDE_M).to_numpy())
    np.testing.assert_array_equal(np.asarray(got[S.HDOP].filled(np.nan)),
                                  rows.column(S.HDOP).to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(got[S.QC_FLAGS], rows.column(S.QC_FLAGS).to_numpy())


def test_write_options_name_only_fixes_columns():
    names = set(S.FIXES.names)
    assert set(PART_WRITE_OPTIONS["compression"]) == names
    for key in ("use_dictionary", "write_statistics"):
        assert set(PART_WRITE_OPTIONS[key]) <= names
    assert set(PART_WRITE_OPTIONS["column_encoding"]) <= names
    # columns whose footer statistics the store reads (part_facts) keep them
    assert {S.SPECIES, S.INDIVIDUAL_ID, S.TIMESTAMP, S.EVENT_ID} <= set(PART_WRITE_OPTIONS["write_statistics"])


def test_rows_in_another_order_and_types_are_conformed(tmp_path):
    batch = new_batch_id()
    rows = staged_rows(40)
    shuffled = rows.select(list(reversed(rows.column_names)))
    shuffled = shuffled.set_column(shuffled.schema.get_field_index(S.SATELLITES), S.SATELLITES,
                                   shuffled.column(S.SATELLITES).cast(pa.int32()))
    assert PartWriter(Store(tmp_path), batch).table(shuffled).equals(reference_table(rows, batch))


def test_missing_column_or_required_value_is_a_schema_error(tmp_path):
    writer = PartWriter(Store(tmp_path), new_batch_id())
    rows = staged_rows(10)
    with pytest.raises(SchemaError, match=S.SOURCE_LINE):
        writer.table(rows.drop_columns([S.SOURCE_LINE]))
    ts = rows.column(S.TIMESTAMP).to_pylist()
    ts[3] = None
    broken = rows.set_column(rows.schema.get_field_index(S.TIMESTAMP), rows.schema.field(S.TIMESTAMP),
                             pa.array(ts, S.TIMESTAMP_TYPE))
    with pytest.raises(SchemaError, match=S.TIMESTAMP):
        writer.table(broken)


def test_batch_id_column_serves_small_and_large_birds(tmp_path):
    batch = new_batch_id()
    writer = PartWriter(Store(tmp_path), batch)
    for n in (3, 5000, 2, 1500):
        column = writer.table(staged_rows(n)).column(S.BATCH_ID)
        assert column.to_pylist() == [batch] * n


@settings(max_examples=100, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=80))
def test_kept_rows_are_the_rows_a_filter_keeps(mask):
    kept = np.array(mask, dtype=bool)
    table = pa.table({"row": np.arange(kept.size), "text": [f"r{i}" for i in range(kept.size)]})
    got = _kept_rows(table, kept)
    assert got.to_pydict() == table.filter(pa.array(kept)).to_pydict()
    assert _kept_rows(table, None) is table
