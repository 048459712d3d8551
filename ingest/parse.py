"""Parse one batch of raw CSV strings into fixes columns, with per-row verdicts.

The core of ingest, vectorised over the batch (pyarrow compute, numpy; pandas
only on the slow path of a column that holds bad values). Input: a record
batch of strings (as read by ``pyarrow.csv`` with every column typed string),
the resolved column indices and the mapping. Output: the accepted rows as a
fixes-schema table (without ``batch_id``), and quarantine records.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from flyway import schema as S
from flyway.errors import InputError
from flyway.geoparquet import constant_strings
from flyway.ingest import quarantine as Q
from flyway.ingest.mapping import MARKED_VALID, OUTLIER_COLUMNS, VISIBLE, Mapping, normalise_header

_OFFSET_RE = r"(Z|z|[+-]\d\d(:?\d\d)?)$"
_CONTROL_RE = r"[\x00-\x1f\x7f]"
SENTINEL_ALTITUDE_M = 9000.0  # |altitude| >= 9000 m is a logger sentinel (-9999, 99999), not a bird
NULL_ISLAND_DEG = 1e-6
# Times before the GPS epoch (1980-01-06) are logger clock resets (the Unix
# epoch 1970-01-01, or the GPS epoch itself), never the time of a fix.
EARLIEST_FIX_TIME = dt.datetime(1980, 1, 6, 0, 0, 1, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class ParseContext:
    """Everything a batch parse needs that does not change within a file."""

    file: str
    mapping: Mapping
    header: list[str]
    index: dict[str, int]  # fixes column -> source column index
    timezone: str | None   # effective zone for naive times (mapping or --tz)
    species: str | None    # --species fallback
    study: str             # fallback study name


def parse_batch(batch: pa.RecordBatch, lines: np.ndarray, ctx: ParseContext,
                check_file: bool) -> tuple[pa.Table, pa.Table]:
    """Convert one batch. Returns (accepted fixes without batch_id, quarantine).

    ``lines`` holds the physical line number of each row. With ``check_file``
    (the first batch), problems that affect every row (swapped or
    decimal-comma coordinates, zone-less times) reject the whole file instead
    of quarantining each row.
    """
    n = batch.num_rows
    qparts: list[pa.Table] = []
    drop = np.zeros(n, dtype=bool)

    def col(field: str) -> pa.Array | None:
        i = ctx.index.get(field)
        return batch.column(i) if i is not None else None

    def quarantine_rows(mask: np.ndarray, column: str, reason: str, detail: str,
                        values: pa.Array | None, action: str = Q.ROW) -> None:
        mask = mask & ~drop  # a row already quarantined whole keeps its raw text; no value records
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            return
        idx = pa.array(rows, pa.int64())
        vals = values.take(idx) if values is not None else None
        raw = Q.raw_rows(batch, rows, ctx.mapping.delimiter)
        qparts.append(Q.records(ctx.file, lines[rows], column, reason, detail, vals, action, raw))
        if action == Q.ROW:
            drop[rows] = True

    # -- rows that are not fixes (empty lines, mapping filter, repeated header lines) -
    empty = np.ones(n, dtype=bool)
    for column in batch.columns:  # the reader makes empty cells null; stop at the first filled column
        empty &= _isnull(column)
        if not empty.any():
            break
    quarantine_rows(empty, "", Q.EMPTY_ROW, "empty line (every cell blank)", None)
    if ctx.mapping.filter_column is not None:
        fi = ctx.mapping.column_index(ctx.header, ctx.mapping.filter_column)
        if fi is not None:
            keep = pc.is_in(batch.column(fi), pa.array(list(ctx.mapping.filter_keep))).to_numpy(zero_copy_only=False)
            quarantine_rows(~keep, ctx.mapping.filter_column, Q.FILTERED_RECORD,
                            f"{ctx.mapping.filter_column} not in {list(ctx.mapping.filter_keep)}",
                            batch.column(fi))
    ts_raw = col(S.TIMESTAMP)
    if ts_raw is not None:
        repeated = _eq(ts_raw, ctx.header[ctx.index[S.TIMESTAMP]])
        quarantine_rows(repeated, ctx.header[ctx.index[S.TIMESTAMP]], Q.REPEATED_HEADER,
                        "header line repeated inside the file", None)

    # -- identifiers ---------------------------------------------------------------
    ind, ctrl = _clean_ids(col(S.INDIVIDUAL_ID), n)
    ind_name = _src(ctx, S.INDIVIDUAL_ID)
    quarantine_rows(_isnull(ind), ind_name, Q.MISSING_INDIVIDUAL, "no individual id", ind)
    quarantine_rows(ctrl, ind_name, Q.BAD_IDENTIFIER, "individual id contains control characters", ind)

    # -- coordinates -----------------------------------------------------------------
    lon, lon_bad = _to_float(col(S.LON), ctx.mapping.decimal, n)
    lat, lat_bad = _to_float(col(S.LAT), ctx.mapping.decimal, n)
    if check_file:
        _check_coordinates_file(ctx, col(S.LON), col(S.LAT), lon, lat, lon_bad, lat_bad)
    lon_name, lat_name = _src(ctx, S.LON), _src(ctx, S.LAT)
    no_loc = np.isnan(lon) & ~lon_bad | np.isnan(lat) & ~lat_bad
    quarantine_rows(no_loc, f"{lon_name}/{lat_name}", Q.NON_LOCATION_RECORD,
                    "no coordinates (sensor-only or failed fix)", None)
    quarantine_rows(lat_bad, lat_name, Q.BAD_COORDINATE, "not a number", col(S.LAT))
    quarantine_rows(lon_bad, lon_name, Q.BAD_COORDINATE, "not a number", col(S.LON))
    with np.errstate(invalid="ignore"):
        quarantine_rows(~(np.abs(lat) <= 90) & ~np.isnan(lat), lat_name, Q.LAT_OUT_OF_RANGE,
                        "outside [-90, 90]", col(S.LAT))
        quarantine_rows(~(np.abs(lon) <= 180) & ~np.isnan(lon), lon_name, Q.LON_OUT_OF_RANGE,
                        "outside [-180, 180]", col(S.LON))
        quarantine_rows((np.abs(lon) < NULL_ISLAND_DEG) & (np.abs(lat) < NULL_ISLAND_DEG), f"{lon_name}/{lat_name}",
                        Q.NULL_ISLAND, "position (0, 0) is a failed fix", None)

    # -- time --------------------------------------------------------------------------
    ts_name = _src(ctx, S.TIMESTAMP)
    ts, ts_missing, ts_bad, ts_ambiguous = _to_utc(ts_raw, ctx, check_file)
    quarantine_rows(ts_missing, ts_name, Q.MISSING_TIMESTAMP, "no timestamp", None)
    quarantine_rows(ts_bad, ts_name, Q.BAD_TIMESTAMP, _ts_expectation(ctx), ts_raw)
    quarantine_rows(ts_ambiguous, ts_name, Q.AMBIGUOUS_LOCAL_TIME,
                    f"local time is ambiguous or does not exist in {ctx.timezone}", ts_raw)
    early = pc.fill_null(pc.less(ts, pa.scalar(EARLIEST_FIX_TIME, S.TIMESTAMP_TYPE)), False)
    quarantine_rows(early.to_numpy(zero_copy_only=False), ts_name, Q.EPOCH_DEFAULT,
                    "time before the GPS epoch 1980-01-06: a logger clock reset, not a fix time", ts_raw)

    # -- optional values (never cost the row; bad values nulled and kept in quarantine) -
    flags = np.zeros(n, dtype=np.uint32)
    alt, alt_bad = _to_float(col(S.ALTITUDE_M), ctx.mapping.decimal, n)
    quarantine_rows(alt_bad, _src(ctx, S.ALTITUDE_M), Q.BAD_VALUE, "not a number", col(S.ALTITUDE_M), Q.VALUE)
    alt = alt * ctx.mapping.altitude_factor
    with np.errstate(invalid="ignore"):
        sentinel = np.abs(alt) >= SENTINEL_ALTITUDE_M
    quarantine_rows(sentinel, _src(ctx, S.ALTITUDE_M), Q.SENTINEL_VALUE, "logger sentinel altitude",
                    col(S.ALTITUDE_M), Q.VALUE)
    alt[sentinel] = np.nan
    flags[sentinel] |= np.uint32(S.QCFlag.SENTINEL_VALUE)
    hdop, hdop_bad = _to_float(col(S.HDOP), ctx.mapping.decimal, n)
    quarantine_rows(hdop_bad, _src(ctx, S.HDOP), Q.BAD_VALUE, "not a number", col(S.HDOP), Q.VALUE)
    sats, sats_bad = _to_float(col(S.SATELLITES), ctx.mapping.decimal, n)
    with np.errstate(invalid="ignore"):
        sats_bad |= ~np.isnan(sats) & ((sats != np.round(sats)) | (sats < 0) | (sats > 1000))
    quarantine_rows(sats_bad, _src(ctx, S.SATELLITES), Q.BAD_VALUE, "not a whole number 0-1000",
                    col(S.SATELLITES), Q.VALUE)
    sats = np.where(sats_bad, np.nan, sats)
    speed, speed_bad = _to_float(col(S.GROUND_SPEED_MS), ctx.mapping.decimal, n)
    quarantine_rows(speed_bad, _src(ctx, S.GROUND_SPEED_MS), Q.BAD_VALUE, "not a number",
                    col(S.GROUND_SPEED_MS), Q.VALUE)
    speed = speed * ctx.mapping.speed_factor
    event, event_bad = _to_int64(col(S.EVENT_ID), n)
    quarantine_rows(event_bad, _src(ctx, S.EVENT_ID), Q.BAD_VALUE, "not an integer", col(S.EVENT_ID), Q.VALUE)

    if ctx.mapping.movebank_outliers:
        flags[_movebank_outlier(batch, ctx.header)] |= np.uint32(S.QCFlag.MOVEBANK_OUTLIER)

    species = _fill(_clean_str(col(S.SPECIES), n, _species_name), ctx.mapping.constants.get(S.SPECIES) or ctx.species)
    study = _fill(_clean_str(col(S.STUDY), n), ctx.mapping.constants.get(S.STUDY) or ctx.study)
    sensor = _fill(_clean_str(col(S.SENSOR_TYPE), n, pc.utf8_lower), ctx.mapping.constants.get(S.SENSOR_TYPE, "gps"))
    out = {
        S.STUDY: study,
        S.INDIVIDUAL_ID: ind,
        S.TAG_ID: _clean_str(col(S.TAG_ID), n),
        S.SPECIES: species,
        S.TIMESTAMP: ts,
        S.LON: pa.array(lon),
        S.LAT: pa.array(lat),
        S.ALTITUDE_M: _f32(alt),
        S.HDOP: _f32(hdop),
        S.SATELLITES: pa.array(sats, pa.float64(), from_pandas=True).cast(pa.int16()),
        S.GROUND_SPEED_MS: _f32(speed),
        S.SENSOR_TYPE: sensor,
        S.EVENT_ID: event,
        S.ARGOS_LC: _clean_str(col(S.ARGOS_LC), n, pc.utf8_upper),
        S.SOURCE_FILE: constant_strings(ctx.file, n),
        S.SOURCE_LINE: pa.array(lines.astype(np.int64)),
        S.QC_FLAGS: pa.array(flags, pa.uint32()),
    }
    fixes = pa.table(out)
    if drop.any():  # one filter of the whole table, only when some rows went to the quarantine
        fixes = fixes.filter(pa.array(~drop))
    quar = pa.concat_tables(qparts) if qparts else Q.empty()
    return fixes, quar


# -------------------------------------------------------------------- helpers
def _src(ctx: ParseContext, field: str) -> str:
    i = ctx.index.get(field)
    return ctx.header[i] if i is not None else field


def _eq(arr: pa.Array, value: str) -> np.ndarray:
    return pc.fill_null(pc.equal(arr, value), False).to_numpy(zero_copy_only=False)


def _isnull(arr: pa.Array) -> np.ndarray:
    return arr.is_null().to_numpy(zero_copy_only=False)


def _clean_str(arr: pa.Array | None, n: int, transform=None) -> pa.Array:
    """Trimmed text, empty -> null, optionally transformed; computed once per distinct value.

    Ids, species and study names repeat a handful of values over millions of
    rows, so the string work runs on the dictionary, not on every row.
    """
    if arr is None:
        return pa.nulls(n, pa.string())
    enc, values = _cleaned_dictionary(arr, transform)
    return _expand(arr, enc, values)


def _clean_ids(arr: pa.Array | None, n: int) -> tuple[pa.Array, np.ndarray]:
    """Individual ids as :func:`_clean_str` makes them, and a mask of ids holding control characters."""
    if arr is None:
        return pa.nulls(n, pa.string()), np.zeros(n, dtype=bool)
    enc, values = _cleaned_dictionary(arr)
    bad = pc.fill_null(pc.match_substring_regex(values, _CONTROL_RE), False)
    ctrl = (pc.fill_null(bad.take(enc.indices), False).to_numpy(zero_copy_only=False) if pc.any(bad).as_py()
            else np.zeros(n, dtype=bool))
    return _expand(arr, enc, values), ctrl


def _cleaned_dictionary(arr: pa.Array, transform=None) -> tuple[pa.DictionaryArray, pa.Array]:
    """``arr`` dictionary-encoded, and its distinct values trimmed, empty -> null, optionally transformed."""
    enc = pc.dictionary_encode(arr)
    values = pc.utf8_trim_whitespace(enc.dictionary)
    values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
    return enc, (transform(values) if transform is not None else values)


def _expand(arr: pa.Array, enc: pa.DictionaryArray, values: pa.Array) -> pa.Array:
    """Each row's cleaned value: ``arr`` itself when cleaning changed nothing (the usual case, no copy)."""
    return arr if values.equals(enc.dictionary) else values.take(enc.indices)


def _species_name(values: pa.Array) -> pa.Array:
    """'grus  monacha ' -> 'Grus monacha' (single spaces, genus capitalised)."""
    return pc.utf8_capitalize(pc.replace_substring_regex(values, r"\s+", " "))


def _fill(arr: pa.Array, value: str | None) -> pa.Array:
    return pc.fill_null(arr, value) if value is not None else arr


def _f32(values: np.ndarray) -> pa.Array:
    return pa.array(values, pa.float64(), from_pandas=True).cast(pa.float32())


def _to_float(arr: pa.Array | None, decimal: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Floats (NaN where empty) and a mask of cells that are not numbers."""
    if arr is None:
        return np.full(n, np.nan), np.zeros(n, dtype=bool)
    if decimal == ",":
        arr = pc.replace_substring(arr, ",", ".")
    out = _cast_float(arr)
    if out is None:  # clean numbers cast directly; whitespace is trimmed only when that fails
        arr = pc.utf8_trim_whitespace(arr)
        out = _cast_float(arr)
    if out is not None:
        return out, np.zeros(len(out), dtype=bool)
    s = pd.Series(arr.to_pandas(), dtype=object)
    num = pd.to_numeric(s, errors="coerce").to_numpy(dtype="f8", na_value=np.nan)
    bad = np.isnan(num) & s.notna().to_numpy() & (s.fillna("") != "").to_numpy()
    return num, bad


def _cast_float(arr: pa.Array) -> np.ndarray | None:
    """``arr`` as floats (NaN where null), or None when some cell is not a number.

    The result may be a read-only view of Arrow memory: callers derive new
    arrays from it rather than write into it.
    """
    try:
        return arr.cast(pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _to_int64(arr: pa.Array | None, n: int) -> tuple[pa.Array, np.ndarray]:
    if arr is None:
        return pa.nulls(n, pa.int64()), np.zeros(n, dtype=bool)
    try:
        return arr.cast(pa.int64()), np.zeros(len(arr), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        s = pd.Series(arr.to_pandas(), dtype=object)
        num = pd.to_numeric(s, errors="coerce")
        whole = num.notna() & (num == num.round())
        bad = (s.notna() & ~whole).to_numpy()
        vals = pa.array(num.where(whole).astype("Int64"), pa.int64())
        return vals, bad


def _movebank_outlier(batch: pa.RecordBatch, header: list[str]) -> np.ndarray:
    """move2's mt_movebank_visible: ``visible`` if present, else no outlier column true."""
    keys = {normalise_header(h): i for i, h in enumerate(header)}
    n = batch.num_rows
    vis = keys.get(normalise_header(VISIBLE))
    if vis is not None:
        return _eq(pc.utf8_lower(batch.column(vis)), "false")
    out = np.zeros(n, dtype=bool)
    for name in OUTLIER_COLUMNS:
        i = keys.get(normalise_header(name))
        if i is not None:
            out |= _eq(pc.utf8_lower(batch.column(i)), "true")
    valid = keys.get(normalise_header(MARKED_VALID))
    if valid is not None:
        out &= ~_eq(pc.utf8_lower(batch.column(valid)), "true")
    return out


def _ts_expectation(ctx: ParseContext) -> str:
    if ctx.mapping.timestamp_format:
        return f"expected format {ctx.mapping.timestamp_format}"
    return "expected ISO 8601, e.g. 2024-03-01 06:00:00.000"


def _to_utc(arr: pa.Array | None, ctx: ParseContext, check_file: bool):
    """UTC timestamps and masks (missing, unparseable, ambiguous local time)."""
    n = len(arr)
    missing = _isnull(arr)
    if ctx.mapping.timestamp_format:
        naive = pc.strptime(arr, format=ctx.mapping.timestamp_format, unit="us", error_is_null=True)
        has_offset = np.zeros(n, dtype=bool)
        utc_vals = None
    else:
        try:
            naive = arr.cast(pa.timestamp("us"))
            has_offset = np.zeros(n, dtype=bool)
            utc_vals = None
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            s = pd.Series(arr.to_pandas(), dtype=object)
            has_offset = pc.fill_null(pc.match_substring_regex(pc.utf8_trim_whitespace(arr), _OFFSET_RE),
                                      False).to_numpy(zero_copy_only=False)
            parsed_naive = pd.to_datetime(s.where(~has_offset), format="ISO8601", errors="coerce")
            naive = pa.array(parsed_naive.to_numpy(dtype="datetime64[us]"), pa.timestamp("us"))
            utc_vals = pd.to_datetime(s.where(has_offset), format="ISO8601", errors="coerce", utc=True)
    naive_ok = ~_isnull(naive)
    n_naive = int(np.count_nonzero(naive_ok & ~has_offset))
    if check_file and has_offset.any() and n_naive:
        raise InputError(f"{_src(ctx, S.TIMESTAMP)} mixes times with a UTC offset and times without one; "
                         "expected one convention for the whole file", file=ctx.file)
    if ctx.timezone is None and n_naive:
        raise InputError(
            f"{_src(ctx, S.TIMESTAMP)} has times without a time zone (e.g. {_first_valid(arr, naive_ok)!r}) "
            "and the format declares none; give --tz ZONE (e.g. --tz Asia/Shanghai or --tz UTC) "
            "or timezone = \"...\" in the column mapping. flyway never guesses a time zone.",
            file=ctx.file)
    ambiguous = np.zeros(n, dtype=bool)
    if ctx.timezone in (None, "UTC", "Etc/UTC"):
        utc = naive.cast(S.TIMESTAMP_TYPE)  # naive values are UTC: a zero-copy relabel
    else:
        local = pd.Series(naive.to_numpy(zero_copy_only=False)).dt.tz_localize(
            ctx.timezone, ambiguous="NaT", nonexistent="NaT")
        ambiguous = local.isna().to_numpy() & naive_ok
        utc = pa.array(local.dt.tz_convert("UTC"), S.TIMESTAMP_TYPE)
    utc = utc.cast(S.TIMESTAMP_TYPE)
    if utc_vals is not None and has_offset.any():
        off = pa.array(utc_vals, S.TIMESTAMP_TYPE)
        utc = pc.if_else(pa.array(has_offset), off, utc)
    parsed = ~_isnull(utc) | ambiguous
    bad = ~parsed & ~missing
    if check_file and n and bad.all():
        raise InputError(f"{_src(ctx, S.TIMESTAMP)} = {_first_valid(arr, ~missing)!r} cannot be read as a time; "
                         f"{_ts_expectation(ctx)} (declare timestamp_format in a column mapping)",
                         file=ctx.file, line=None)
    return utc, missing, bad, ambiguous


def _first_valid(arr: pa.Array, mask: np.ndarray) -> str:
    idx = np.flatnonzero(mask)
    return str(arr[int(idx[0])].as_py()) if idx.size else ""


def _check_coordinates_file(ctx: ParseContext, lon_raw, lat_raw, lon, lat, lon_bad, lat_bad) -> None:
    """Reject files whose coordinates are wrong as a whole, rather than quarantine every row."""
    n = len(lon)
    if n == 0:
        return
    comma = pc.fill_null(pc.match_substring_regex(lat_raw, r"^\s*-?\d+,\d+\s*$"), False).to_numpy(
        zero_copy_only=False)
    if lat_bad.mean() > 0.5 and comma[lat_bad].mean() > 0.9:
        raise InputError(
            f"{_src(ctx, S.LAT)} = {_first_valid(lat_raw, comma)!r} uses a decimal comma; expected a decimal "
            "point, or a column mapping with decimal = \",\" and delimiter = \";\"", file=ctx.file)
    for raw, bad, field in ((lat_raw, lat_bad, S.LAT), (lon_raw, lon_bad, S.LON)):
        if bad.mean() > 0.5:  # e.g. degrees-minutes text (37°24'N, NMEA 3724.123N) in the whole file
            raise InputError(
                f"{_src(ctx, field)} = {_first_valid(raw, bad)!r} is not a number in {bad.mean():.0%} of rows; "
                "expected decimal degrees (e.g. 31.2085)", file=ctx.file)
    valid = ~np.isnan(lon) & ~np.isnan(lat)
    if valid.sum() >= 3:
        with np.errstate(invalid="ignore"):
            swapped = (np.abs(lat[valid]) > 90) & (np.abs(lon[valid]) <= 90)
        if swapped.mean() > 0.5:
            raise InputError(
                f"{_src(ctx, S.LAT)} holds values above 90 in {swapped.mean():.0%} of rows "
                f"(e.g. {_first_valid(lat_raw, valid)!r}) while {_src(ctx, S.LON)} stays within ±90: "
                "latitude and longitude columns look swapped", file=ctx.file)
