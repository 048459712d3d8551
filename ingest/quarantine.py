"""The quarantine: every row (or value) ingest did not accept, with where and why.

Nothing is dropped silently. A quarantined *row* is kept here whole (its raw
text); a quarantined *value* (e.g. ``gps:hdop = "n/a"``) is nulled in the
store and its original text kept here. Reason codes are stable strings.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flyway import schema as S
from flyway.geoparquet import constant_strings

ROW = "row"        # the whole row was not stored
VALUE = "value"    # the row was stored; this value was nulled

# reason codes
BAD_FIELD_COUNT = "bad_field_count"
MISSING_TIMESTAMP = "missing_timestamp"
BAD_TIMESTAMP = "bad_timestamp"
AMBIGUOUS_LOCAL_TIME = "ambiguous_local_time"
MISSING_INDIVIDUAL = "missing_individual"
BAD_IDENTIFIER = "bad_identifier"
MISSING_SPECIES = "missing_species"
BAD_COORDINATE = "bad_coordinate"
LAT_OUT_OF_RANGE = "lat_out_of_range"
LON_OUT_OF_RANGE = "lon_out_of_range"
NULL_ISLAND = "null_island"
NON_LOCATION_RECORD = "non_location_record"
FILTERED_RECORD = "filtered_record"
DUPLICATE_EVENT_ID = "duplicate_event_id"
BAD_VALUE = "bad_value"
SENTINEL_VALUE = "sentinel_value"
REPEATED_HEADER = "repeated_header"
EMPTY_ROW = "empty_row"
EPOCH_DEFAULT = "epoch_default"

QUARANTINE_SCHEMA = pa.schema(
    [
        (S.SOURCE_FILE, pa.string()),
        (S.Q_LINE, pa.int64()),
        (S.Q_COLUMN, pa.string()),
        (S.Q_REASON, pa.string()),
        (S.Q_DETAIL, pa.string()),
        (S.Q_VALUE, pa.string()),
        (S.Q_ACTION, pa.string()),
        (S.Q_RAW, pa.string()),
        (S.BATCH_ID, pa.string()),
    ]
)


def records(source_file: str, lines: np.ndarray, column: str, reason: str, detail: str,
            values: pa.Array | None, action: str, raw: pa.Array | None) -> pa.Table:
    """Quarantine records for the rows at ``lines`` (vectorised; no loop per row)."""
    n = len(lines)
    const = lambda v: constant_strings(v, n)  # noqa: E731
    vals = values.cast(pa.string()) if values is not None else pa.nulls(n, pa.string())
    raw_arr = raw if raw is not None else pa.nulls(n, pa.string())
    return pa.Table.from_arrays(
        [const(source_file), pa.array(np.asarray(lines, dtype=np.int64)), const(column), const(reason),
         const(detail), vals, const(action), raw_arr, pa.nulls(n, pa.string())],
        schema=QUARANTINE_SCHEMA,
    )


def raw_rows(batch: pa.RecordBatch | pa.Table, rows: np.ndarray, delimiter: str) -> pa.Array:
    """The original text of some rows, rebuilt from the string columns."""
    taken = batch.take(pa.array(rows, pa.int64()))
    cols = [pc.fill_null(c, "") for c in taken.columns]
    if not cols:
        return pa.nulls(len(rows), pa.string())
    if len(cols) == 1:
        return cols[0].combine_chunks() if hasattr(cols[0], "combine_chunks") else cols[0]
    out = pc.binary_join_element_wise(*cols, delimiter)
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


def empty() -> pa.Table:
    return QUARANTINE_SCHEMA.empty_table()


def with_batch(table: pa.Table, batch_id: str) -> pa.Table:
    idx = table.schema.get_field_index(S.BATCH_ID)
    return table.set_column(idx, S.BATCH_ID, pa.array([batch_id] * table.num_rows, pa.string()))


def summarise(table: pa.Table) -> dict[str, int]:
    """Counts per reason code."""
    if table.num_rows == 0:
        return {}
    counts = pc.value_counts(table.column(S.Q_REASON)).to_pylist()
    return {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: -c["counts"])}
