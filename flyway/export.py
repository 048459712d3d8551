"""Export fixes for GIS users and spreadsheets: CSV and GeoPackage.

Both stream one individual at a time, so memory stays bounded. Text cells
that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``,
``@``, tab or carriage return) are prefixed with ``'`` in CSV (OWASP CSV
injection advice); the store itself keeps the original text.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from flyway import schema as S
from flyway.errors import InputError
from flyway.geoparquet import atomic_write_bytes, read_parquet
from flyway.store import Store

_FORMULA_RE = r"^[=+\-@\t\r]"  # what a spreadsheet would run as a formula (OWASP CSV injection)


def escape_formulas(arr: pa.Array) -> pa.Array:
    """Prefix ``'`` to strings a spreadsheet would evaluate as a formula."""
    risky = pc.fill_null(pc.match_substring_regex(arr, _FORMULA_RE), False)
    return pc.if_else(risky, pc.binary_join_element_wise("'", arr, ""), arr)


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells are safe to open in a spreadsheet (see :func:`escape_formulas`)."""
    frame = frame.copy()
    for c in frame.columns:
        if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c]):
            s = frame[c].astype("string")
            risky = s.str.match(_FORMULA_RE).fillna(False)
            frame[c] = s.where(~risky, "'" + s)
    return frame


def write_safe_csv(frame: pd.DataFrame, path) -> Path:
    """Write ``frame`` as a spreadsheet-safe CSV (:func:`csv_safe`), atomically, to a local path or the store."""
    return atomic_write_bytes(path, csv_safe(frame).to_csv(index=False).encode("utf-8"))


def export_fixes(store: str | os.PathLike[str] | Store, out: str | os.PathLike[str],
                 species=None, individuals=None, start=None, end=None) -> int:
    """Write committed fixes to ``out`` (``.csv``, ``.csv.gz`` or ``.gpkg``, a local file); returns rows written."""
    st = store if isinstance(store, Store) else Store(store)
    st.require()
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]+:/", str(out)):  # s3://..., or s3:/... after a Path
        raise InputError("exports are written to a local file; expected a local path, not a URL", file=str(out))
    out = Path(out)
    name = out.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return _export_csv(st, out, species, individuals, start, end)
    if name.endswith(".gpkg"):
        return _export_gpkg(st, out, species, individuals, start, end)
    raise InputError("unknown export format; expected a name ending in .csv, .csv.gz or .gpkg", file=out.name)


def _individual_tables(st: Store, species, individuals, start, end):
    files = st.fix_files(species, individuals)
    folders = sorted({f.parent for f in files})
    for folder in folders:
        ids = [f for f in files if f.parent == folder]
        ind = read_parquet(ids[0], columns=[S.INDIVIDUAL_ID]).column(0)[0].as_py()
        table = st.scan_fixes(species, [ind], start, end)
        if table.num_rows:
            yield table


def _export_csv(st: Store, out: Path, species, individuals, start, end) -> int:
    cols = [c for c in S.FIXES.names if c != S.GEOMETRY]
    schema = S.FIXES.arrow_schema()
    tmp = out.with_name(out.name + ".tmp")
    rows = 0
    sink = pa.CompressedOutputStream(str(tmp), "gzip") if out.name.lower().endswith(".gz") else pa.OSFile(str(tmp), "wb")
    with sink:
        writer = None
        for table in _individual_tables(st, species, individuals, start, end):
            table = table.select(cols)
            for name in cols:
                if pa.types.is_string(schema.field(name).type):
                    table = table.set_column(table.schema.get_field_index(name), name,
                                             escape_formulas(table.column(name)))
            if writer is None:
                writer = pcsv.CSVWriter(sink, table.schema)
            writer.write_table(table)
            rows += table.num_rows
        if writer is None:
            pcsv.write_csv(S.FIXES.arrow_schema().empty_table().select(cols), sink)
        else:
            writer.close()
    os.replace(tmp, out)
    return rows


def _export_gpkg(st: Store, out: Path, species, individuals, start, end) -> int:
    import geopandas as gpd
    import shapely

    tmp = out.with_name(out.name + ".tmp.gpkg")
    if tmp.exists():
        tmp.unlink()
    rows = 0
    for table in _individual_tables(st, species, individuals, start, end):
        df = table.drop_columns([S.GEOMETRY]).to_pandas()
        geom = shapely.from_wkb(table.column(S.GEOMETRY).to_numpy(zero_copy_only=False))
        df[S.TIMESTAMP] = df[S.TIMESTAMP].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        gdf = gpd.GeoDataFrame(df, geometry=geom, crs=S.CRS)
        gdf.to_file(tmp, layer="fixes", driver="GPKG", engine="pyogrio", append=rows > 0)
        rows += len(gdf)
    if rows == 0:
        raise InputError("nothing to export: no fixes match", file=str(st.path))
    os.replace(tmp, out)
    return rows
