"""GeoParquet 1.1 helpers: WKB points from arrays, the ``geo`` metadata, atomic writes and reads.

Files written here are plain GeoParquet 1.1 (WKB encoding, CRS stated as
EPSG:4326 PROJJSON, ``bbox`` per file) so geopandas, GDAL
and DuckDB read them without flyway.

Paths are local :class:`~pathlib.Path` objects or, for a store on object
storage, ``upath.UPath`` objects (:mod:`flyway.objectstore`); writes and
reads here work on both (one PUT / GET for an object, temp file and rename
on a disk).
"""
from __future__ import annotations

import functools
import io
import json
import os
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import flyway
from flyway import objectstore

GEOPARQUET_VERSION = "1.1.0"
_FOOTER_GUESS_BYTES = 1 << 16
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


def sync_paths(paths: Sequence[Any], threads: int = 8) -> None:
    """Make files written with ``fsync=False`` durable: fsync each, then each folder (the renames).

    Only these files are flushed (``os.sync`` would wait for everything any
    process wrote), several at once so the disk sees them together.
    """
    from concurrent.futures import ThreadPoolExecutor

    def flush(path: Any) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    files = [Path(p) for p in paths]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        list(pool.map(flush, files))
        list(pool.map(fsync_dir, sorted({f.parent for f in files})))


def atomic_write(path: Path, write: Callable[[BinaryIO], None], *, fsync: bool = True) -> Path:
    """Make ``path`` either absent/old or complete.

    On a disk: write a temp file beside it, fsync (unless ``fsync=False``:
    the caller syncs many files at once), rename, fsync the folder. On object
    storage: one PUT of the whole content (an object is never seen half
    written).
    """
    if objectstore.is_remote(path):
        buf = io.BytesIO()
        write(buf)
        objectstore.put_object(path, buf.getvalue())
        return path
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    if fsync:
        fsync_dir(path.parent)
    return path


def atomic_write_table(path: Path, table: pa.Table, *, compression: str = "zstd",
                       row_group_size: int = 128_000, fsync: bool = True) -> Path:
    """Write ``table`` as Parquet to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda fh: pq.write_table(table, fh, compression=compression,
                                                        row_group_size=row_group_size), fsync=fsync)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda fh: fh.write(data))


def read_parquet(path: Path, **kwargs: Any) -> pa.Table:
    """``pyarrow.parquet.read_table`` of a local file or an object (one GET of the whole object)."""
    if objectstore.is_remote(path):
        return pq.read_table(pa.BufferReader(path.fs.cat_file(path.path)), **kwargs)
    return pq.read_table(path, **kwargs)


def read_metadata(path: Path) -> pq.FileMetaData:
    """The Parquet footer of a local file or an object (ranged reads: the footer only)."""
    if objectstore.is_remote(path):
        with path.fs.open(path.path, "rb", cache_type="bytes", block_size=1 << 16) as fh:
            return pq.read_metadata(fh)
    return pq.read_metadata(path)


def read_metadata_many(paths: list[Path]) -> list[pq.FileMetaData]:
    """:func:`read_metadata` of many files.

    Objects are read concurrently, each with one GET of its last 64 KiB
    (where a Parquet footer of a part file fits; a larger footer is fetched
    on its own): latency, not bandwidth, bounds listing a store's footers.
    """
    if not paths or not objectstore.is_remote(paths[0]):
        return [pq.read_metadata(p) for p in paths]
    tails = objectstore.get_many(list(paths), tail_bytes=_FOOTER_GUESS_BYTES)
    out = []
    for path, tail in zip(paths, tails):
        footer = int.from_bytes(tail[-8:-4], "little") if len(tail) >= 12 and tail[-4:] == b"PAR1" else -1
        out.append(pq.read_metadata(pa.BufferReader(tail)) if 0 <= footer <= len(tail) - 8 else read_metadata(path))
    return out


def read_flyway_metadata(path: Path) -> dict[str, Any]:
    """The provenance dict flyway wrote into a Parquet file (empty if none)."""
    schema = read_metadata(path).schema.to_arrow_schema() if objectstore.is_remote(path) else pq.read_schema(path)
    meta = schema.metadata or {}
    raw = meta.get(FLYWAY_METADATA_KEY)
    return json.loads(raw) if raw else {}
