"""Movebank-shaped tables of the simulator and their CSV writer.

The event table uses the Movebank attribute names of a "Movebank format" CSV
export (``FIXES[...].movebank`` and the ``MB_*`` names in :mod:`flyway.schema`);
the reference table uses Movebank reference-data names. CSVs are written by
pyarrow in one pass: header unquoted, strings quoted, numbers and booleans
(``true``/``false``) bare, timestamps ``yyyy-MM-dd HH:mm:ss.SSS`` in UTC with
no zone suffix, as Movebank writes them.
"""
from __future__ import annotations

import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from flyway import schema as S

# Truth-only column names (not part of any flyway table contract).
ISSUE = "issue"
IMMATURE_SUMMERING = "immature_summering"
SENSOR_GPS = "gps"
TAG_SERIAL_BASE = 192_000  # tag-local-identifier: a vendor-like serial number
GZIP_LEVEL = 1  # fast; the CSV still shrinks about 6-fold
GZIP_SLICE_ROWS = 500_000


def _mb(column: str) -> str:
    return S.FIXES[column].movebank


EVENT_COLUMNS = (
    _mb(S.EVENT_ID), S.MB_VISIBLE, _mb(S.TIMESTAMP), _mb(S.LON), _mb(S.LAT), _mb(S.HDOP),
    _mb(S.SATELLITES), _mb(S.ALTITUDE_M), _mb(S.GROUND_SPEED_MS), S.MB_HEADING, _mb(S.SENSOR_TYPE),
    _mb(S.SPECIES), _mb(S.TAG_ID), _mb(S.INDIVIDUAL_ID), _mb(S.STUDY),
    S.MB_IMPORT_MARKED_OUTLIER, S.MB_MANUALLY_MARKED_OUTLIER,
)
REFERENCE_COLUMNS = (
    S.MB_REF_TAG_ID, S.MB_REF_ANIMAL_ID, S.MB_REF_ANIMAL_TAXON, S.MB_REF_DEPLOY_ON, S.MB_REF_DEPLOY_OFF,
    _mb(S.SEX), _mb(S.LIFE_STAGE), S.MB_REF_STUDY_SITE,
)


def utc_ms(epoch_s: np.ndarray) -> pd.Series:
    """Epoch seconds as UTC timestamps of millisecond resolution (Movebank's precision)."""
    ms = (np.asarray(epoch_s, dtype=np.int64) * 1000).astype("datetime64[ms]")
    return pd.Series(ms).dt.tz_localize("UTC")


def tag_ids(n: int) -> np.ndarray:
    """tag-local-identifier of birds 0..n-1."""
    return np.array([str(TAG_SERIAL_BASE + i) for i in range(n)])


def _categorical(codes: np.ndarray, values) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=pd.Index(list(values), dtype=object))


def movebank_fixes(p, track, bird: np.ndarray, t: np.ndarray, event_id: np.ndarray, species_of: np.ndarray,
                   ids: np.ndarray, import_marked: np.ndarray, manually_marked: np.ndarray,
                   duplicates: np.ndarray) -> pd.DataFrame:
    """The event table: one row per fix, each of ``duplicates`` written twice in a row.

    Coordinates are rounded to 1e-7 degree, hdop to 0.1, heights to 0.1 m,
    speeds and headings to 0.01, as tags report them. Text columns are
    categoricals (few distinct values, millions of rows).
    """
    n_fix = len(t)
    repeat = np.ones(n_fix, np.int64)
    repeat[duplicates] = 2
    order = np.repeat(np.arange(n_fix), repeat)
    imp = np.zeros(n_fix, bool)
    imp[import_marked] = True
    man = np.zeros(n_fix, bool)
    man[manually_marked] = True
    b = bird[order].astype(np.int32)
    one = np.zeros(len(order), np.int8)
    numeric = {
        _mb(S.EVENT_ID): event_id[order], S.MB_VISIBLE: ~(imp | man)[order],
        _mb(S.LON): np.round(track.lon, 7)[order], _mb(S.LAT): np.round(track.lat, 7)[order],
        _mb(S.HDOP): np.round(track.hdop.astype(np.float64), 1)[order], _mb(S.SATELLITES): track.satellites[order],
        _mb(S.ALTITUDE_M): np.round(track.altitude.astype(np.float64), 1)[order],
        _mb(S.GROUND_SPEED_MS): np.round(track.ground_speed.astype(np.float64), 2)[order],
        S.MB_HEADING: (np.round(track.heading.astype(np.float64), 2) % 360.0)[order],
        S.MB_IMPORT_MARKED_OUTLIER: imp[order], S.MB_MANUALLY_MARKED_OUTLIER: man[order],
    }
    # Through Arrow with split blocks: pandas' own constructor would copy every column
    # into consolidated blocks, which costs more than generating them.
    df = pa.table(numeric).to_pandas(split_blocks=True)
    df[_mb(S.TIMESTAMP)] = utc_ms(t[order])
    df[_mb(S.SENSOR_TYPE)] = _categorical(one, [SENSOR_GPS])
    df[_mb(S.SPECIES)] = _categorical(species_of[b], p.species)
    df[_mb(S.TAG_ID)] = _categorical(b, tag_ids(len(ids)))
    df[_mb(S.INDIVIDUAL_ID)] = _categorical(b, ids)
    df[_mb(S.STUDY)] = _categorical(one, [p.study_name])
    return df[list(EVENT_COLUMNS)]


def reference_table(ids: np.ndarray, species: np.ndarray, stages, stage_of: np.ndarray, sexes,
                    sex_of: np.ndarray, deploy_on: np.ndarray, deploy_off: np.ndarray,
                    study_site: np.ndarray) -> pd.DataFrame:
    """Movebank reference data: one deployment per tag (times in epoch seconds)."""
    values = (tag_ids(len(ids)), ids, species, utc_ms(deploy_on), utc_ms(deploy_off),
              np.array(sexes)[sex_of], np.array(stages)[stage_of], study_site)
    return pd.DataFrame(dict(zip(REFERENCE_COLUMNS, values)))


def write_csv(df: pd.DataFrame, path: Path, compress: bool = False) -> Path:
    """Write ``df`` as a Movebank-style CSV, atomically (temporary name, fsync, rename).

    Timestamp columns are written in UTC to the millisecond, without a zone suffix.
    With ``compress=True`` the file is gzip-compressed (``path`` should end in ``.gz``).
    """
    table = pa.Table.from_pandas(df, preserve_index=False)
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(pa.timestamp("ms"), safe=False))
    tmp = path.with_name(path.name + ".tmp")
    header = (",".join(table.column_names) + "\n").encode("utf-8")
    options = pacsv.WriteOptions(include_header=False, batch_size=1 << 16)
    if compress:
        with open(tmp, "wb") as fh:
            _write_gzip(fh, header, table, options)
    else:
        with pa.OSFile(str(tmp), "wb") as sink:
            sink.write(header)
            pacsv.write_csv(table, sink, write_options=options)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def _write_gzip(fh, header: bytes, table: pa.Table, options: pacsv.WriteOptions) -> None:
    """Gzip (level 1, mtime 0: same bytes every run) the CSV of ``table`` in slices.

    Formatting a slice and deflating the previous one overlap on two threads
    (both release the GIL).
    """
    deflate = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # wbits 31: gzip wrapper
    fh.write(deflate.compress(header))

    def csv_bytes(start: int) -> bytes:
        buf = pa.BufferOutputStream()
        pacsv.write_csv(table.slice(start, GZIP_SLICE_ROWS), buf, write_options=options)
        return buf.getvalue().to_pybytes()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for start in range(0, table.num_rows, GZIP_SLICE_ROWS):
            chunk = csv_bytes(start)
            if pending is not None:
                fh.write(pending.result())
            pending = pool.submit(deflate.compress, chunk)
        if pending is not None:
            fh.write(pending.result())
    fh.write(deflate.flush())
