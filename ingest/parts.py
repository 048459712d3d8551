"""The last step of ingest's pass 2: one individual's new fixes -> ``part-<batch>.parquet``.

A batch writes one part file per individual, hundreds per ingest, each only
a few thousand rows: the per-file fixed costs dominate, not the rows. So
everything that is the same for every file of a batch (schema, GeoParquet and
provenance metadata, the ``batch_id`` column, the Parquet options) is built
once by :class:`PartWriter`, and each file is encoded by Arrow straight into
a native file (no Python file object in the write path, so the GIL is free
while it encodes and the writer threads really run side by side).

Parquet options (:data:`PART_WRITE_OPTIONS`), chosen on the part files of the
1M-fix benchmark (about 4,500 fixes per file):

* zstd only where it shrinks much (coordinates, WKB, altitude, speed): each
  compressed column chunk costs a compression context, whatever its size;
* dictionaries for the text columns (a few distinct values per bird) and for
  hdop, satellite count and QC flags (a handful of values: a few bits per
  row, smaller than zstd of the plain values);
* ``DELTA_BINARY_PACKED`` for the rising integers (time, event id, line:
  a few bits per row), ``BYTE_STREAM_SPLIT`` for longitude, latitude and
  altitude (zstd then finds the repeated high bytes);
* min/max statistics only where readers filter or read footers
  (:func:`flyway.store.part_facts`, dataset filters on species, individual,
  time and position).

Together: 1.7 instead of 2.1 ms of CPU and 163 instead of 191 kB per file,
against zstd on every column and dictionaries for the text columns only. The
files stay plain GeoParquet 1.1: pyarrow, geopandas and DuckDB read them
back value for value (``tests/ingest/test_parts.py``).
"""
from __future__ import annotations

import json
import os
import threading
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import flyway
from flyway import schema as S
from flyway.errors import SchemaError
from flyway.geoparquet import atomic_write_bytes, geo_metadata, lonlat_bbox, points_wkb
from flyway.store import PART_PREFIX, Store

# zstd where it pays: coordinates, WKB and the continuous floats
_ZSTD_COLUMNS = (S.LON, S.LAT, S.GEOMETRY, S.ALTITUDE_M, S.GROUND_SPEED_MS)
# few distinct values: a dictionary of a handful of entries beats zstd of the plain values
_DICTIONARY_COLUMNS = [c.name for c in S.FIXES.columns if pa.types.is_string(c.type)] + [S.HDOP, S.SATELLITES,
                                                                                          S.QC_FLAGS]
_DELTA = "DELTA_BINARY_PACKED"
_SPLIT = "BYTE_STREAM_SPLIT"
PART_WRITE_OPTIONS: dict[str, Any] = {
    "compression": {c: ("zstd" if c in _ZSTD_COLUMNS else "none") for c in S.FIXES.names},
    "use_dictionary": _DICTIONARY_COLUMNS,
    "column_encoding": {S.TIMESTAMP: _DELTA, S.EVENT_ID: _DELTA, S.SOURCE_LINE: _DELTA,
                        S.LON: _SPLIT, S.LAT: _SPLIT, S.ALTITUDE_M: _SPLIT},
    # min/max statistics where readers filter (time, space, ids); the rest would only cost write time
    "write_statistics": [S.SPECIES, S.INDIVIDUAL_ID, S.TIMESTAMP, S.LON, S.LAT, S.EVENT_ID, S.QC_FLAGS,
                         S.BATCH_ID],
    "row_group_size": 128_000,
}
_STAGED = [c for c in S.FIXES.names if c not in (S.GEOMETRY, S.BATCH_ID)]  # what pass 1 stages
_REQUIRED = [i for i, c in enumerate(S.FIXES.columns) if not c.nullable]
_BBOX_MARK = "__flyway_bbox__"


class PartWriter:
    """Writes the part files of one batch (safe to call from many threads at once).

    Parameters
    ----------
    store : Store
        The store the batch goes into.
    batch_id : str
        The batch; every file is ``part-<batch_id>.parquet`` in its
        individual's partition folder and carries the id in its rows and
        metadata.
    """

    def __init__(self, store: Store, batch_id: str) -> None:
        self.store = store
        self.batch_id = batch_id
        self._schema = S.FIXES.arrow_schema()
        self._staged_schema = pa.schema([self._schema.field(c) for c in _STAGED])
        self._staged_types = self._staged_schema.types
        self._staged_at = {c: i for i, c in enumerate(_STAGED)}
        # the same bytes flyway.store.fixes_geo_table writes, with only the bbox left to fill in per file
        geo = geo_metadata(self._schema.empty_table(), S.GEOMETRY, ["Point"], [_BBOX_MARK])
        self._geo_head, self._geo_tail = json.dumps(geo).split(json.dumps([_BBOX_MARK]))
        prov = {"flyway_version": flyway.__version__, "table": "fixes", "batch_id": batch_id}
        self._flyway_meta = json.dumps(prov, default=str).encode()
        self._batch_column = pa.array([], pa.string())
        self._lock = threading.Lock()

    def write(self, rows: pa.Table) -> str:
        """Write one individual's fixes (at least one; staged columns, in time order) as its part file.

        Returns the file's path in the store, as the ledger keeps it.

        On a disk the file is written as ``*.tmp`` and renamed, not fsynced:
        the caller flushes all the parts of the batch at once before the
        ledger commits them. On object storage it is one PUT.
        """
        species = rows.column(S.SPECIES)[0].as_py()
        individual = rows.column(S.INDIVIDUAL_ID)[0].as_py()
        table = self.table(rows)
        final = self.store.partition_dir(species, individual) / f"{PART_PREFIX}{self.batch_id}.parquet"
        if self.store.is_remote:
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, **PART_WRITE_OPTIONS)
            atomic_write_bytes(final, sink.getvalue().to_pybytes())
        else:
            _write_local(final, table)
        return self.store.relative(final)

    def table(self, rows: pa.Table) -> pa.Table:
        """The stored form of ``rows``: fixes schema, geometry, batch id, GeoParquet metadata."""
        lon = rows.column(S.LON).to_numpy()
        lat = rows.column(S.LAT).to_numpy()
        n = rows.num_rows
        if rows.column_names != _STAGED or rows.schema.types != self._staged_types:
            missing = [c for c in _STAGED if c not in rows.column_names]
            if missing:
                raise SchemaError(f"fixes table: missing column(s) {', '.join(missing)}")
            rows = rows.select(_STAGED).cast(self._staged_schema)
        columns: list[Any] = [rows.column(self._staged_at[c]) if c in self._staged_at else None
                              for c in S.FIXES.names]
        columns[S.FIXES.names.index(S.GEOMETRY)] = points_wkb(lon, lat)
        columns[S.FIXES.names.index(S.BATCH_ID)] = self._batch_ids(n)
        for i in _REQUIRED:
            if columns[i].null_count:
                raise SchemaError(f"fixes table: column {S.FIXES.names[i]} has {columns[i].null_count} null(s); "
                                  "it is required")
        geo = f"{self._geo_head}{json.dumps(lonlat_bbox(lon, lat))}{self._geo_tail}".encode()
        schema = self._schema.with_metadata({b"geo": geo, b"flyway": self._flyway_meta})
        return pa.Table.from_arrays(columns, schema=schema)

    def _batch_ids(self, n: int) -> pa.Array:
        """``n`` copies of the batch id: slices of one array, grown (rarely) under a lock."""
        column = self._batch_column
        if len(column) < n:
            with self._lock:
                if len(self._batch_column) < n:
                    size = max(n, 2 * len(self._batch_column), 1024)
                    data = self.batch_id.encode()
                    offsets = np.arange(0, len(data) * (size + 1), len(data), dtype=np.int32)
                    self._batch_column = pa.StringArray.from_buffers(
                        size, pa.py_buffer(offsets), pa.py_buffer(data * size))
                column = self._batch_column
        return column.slice(0, n)


def _write_local(final, table: pa.Table) -> None:
    """``table`` to ``final`` by a temp file and a rename (no fsync: see :meth:`PartWriter.write`)."""
    os.makedirs(final.parent, exist_ok=True)
    tmp = f"{final}.tmp"  # one writer per batch, one file per individual and batch: the name is ours
    try:
        with pa.OSFile(tmp, "wb") as sink:
            pq.write_table(table, sink, **PART_WRITE_OPTIONS)
        os.replace(tmp, final)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
