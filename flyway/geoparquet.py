"""GeoParquet 1.1 helpers: WKB points from arrays, the ``geo`` metadata, atomic writes.

Files written here are plain GeoParquet 1.1 (WKB encoding, CRS stated as
EPSG:4326 PROJJSON, ``bbox`` per file) so geopandas, GDAL
and DuckDB read them without flyway.
"""
from __future__ import annotations

import functools
import json
import os
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import flyway

GEOPARQUET_VERSION = "1.1.0"
FLYWAY_METADATA_KEY = b"flyway"

_WKB_POINT_DTYPE = np.dtype([("order", "u1"), ("type", "<u4"), ("x", "<f8"), ("y", "<f8")])


def points_wkb(lon: np.ndarray, lat: np.ndarray) -> pa.BinaryArray:
    """Little-endian WKB points from coordinate arrays, without a Python loop.

    Each point is 21 bytes: byte order (1), geometry type (1 = Point), x, y.
    """
    lon = np.asarray(lon, dtype="f8")
    lat = np.asarray(lat, dtype="f8")
    n = lon.shape[0]
    rec = np.empty(n, dtype=_WKB_POINT_DTYPE)
    rec["order"] = 1
    rec["type"] = 1
    rec["x"] = lon
    rec["y"] = lat
    offsets = np.arange(0, 21 * (n + 1), 21, dtype=np.int32)
    return pa.BinaryArray.from_buffers(
        pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(rec.tobytes())]
    )


def geo_metadata(
    table: pa.Table, geometry_column: str, geometry_types: list[str], bbox: list[float] | None
) -> dict[str, Any]:
    """The GeoParquet 1.1 ``geo`` metadata for ``table``'s geometry column."""
    col: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": geometry_types,
        "crs": crs_wgs84(),
    }
    if bbox is not None:
        col["bbox"] = bbox
    return {"version": GEOPARQUET_VERSION, "primary_column": geometry_column, "columns": {geometry_column: col}}


@functools.lru_cache(maxsize=1)
def crs_wgs84() -> dict[str, Any]:
    """EPSG:4326 as PROJJSON (GeoParquet keeps x = longitude, y = latitude); written so readers that
    do not apply the spec's default still get the right CRS."""
    from pyproj import CRS

    return CRS.from_epsg(4326).to_json_dict()


def with_geo_metadata(
    table: pa.Table,
    geometry_column: str,
    geometry_types: list[str],
    flyway_meta: dict[str, Any] | None = None,
    bbox: list[float] | None = None,
) -> pa.Table:
    """Attach ``geo`` (and optionally ``flyway`` provenance) metadata to the schema."""
    geo = geo_metadata(table, geometry_column, geometry_types, bbox)
    meta = dict(table.schema.metadata or {})
    meta[b"geo"] = json.dumps(geo).encode()
    prov = {"flyway_version": flyway.__version__}
    prov.update(flyway_meta or {})
    meta[FLYWAY_METADATA_KEY] = json.dumps(prov, default=str).encode()
    return table.replace_schema_metadata(meta)


def lonlat_bbox(lon: np.ndarray, lat: np.ndarray) -> list[float] | None:
    if len(lon) == 0:
        return None
    return [float(np.min(lon)), float(np.min(lat)), float(np.max(lon)), float(np.max(lat))]


def constant_strings(value: str, n: int) -> pa.Array:
    """``n`` copies of ``value`` as an Arrow string array, without a Python loop."""
    return pa.array([value], pa.string()).take(pa.array(np.zeros(n, dtype=np.int64)))


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (after a rename) to disk; no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    """Make ``path`` either absent/old or complete: write a temp file beside it, fsync, rename, fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)
    return path


def atomic_write_table(path: Path, table: pa.Table, *, compression: str = "zstd",
                       row_group_size: int = 128_000) -> Path:
    """Write ``table`` as Parquet to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda fh: pq.write_table(table, fh, compression=compression,
                                                        row_group_size=row_group_size))


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda fh: fh.write(data))


def read_flyway_metadata(path: Path) -> dict[str, Any]:
    """The provenance dict flyway wrote into a Parquet file (empty if none)."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(FLYWAY_METADATA_KEY)
    return json.loads(raw) if raw else {}
