"""The flyway store: a folder (or object-storage prefix) of hive-partitioned GeoParquet with a ledger.

Layout (DESIGN.md, "The store")::

    STORE/
      fixes/species_slug=<slug>/individual_slug=<slug>/part-<batch>.parquet
      stops/ sites/ coverage/ ...      derived tables, rebuildable
      _ledger.parquet                  one row per ingested file (committed last)
      _quarantine/<batch>.parquet      rejected rows and values, with reasons
      _reference.parquet               deployments (reference data) seen so far
      _staging/<batch>/                work area of a running ingest (a local temp folder
                                       when the store is on object storage)

Commit protocol: part files are written as ``*.tmp``, fsynced and renamed;
the ledger row of the batch is then committed by an atomic replace of
``_ledger.parquet``. Readers take only part files whose batch is in the
ledger; a writer starts by deleting files of uncommitted batches. So a
``kill -9`` at any moment leaves the committed store as before or after.

A store given as a URL (``s3://bucket/prefix``, any fsspec URL) has the same
layout; there every file is one PUT, the ledger PUT is conditional on the
ledger the writer's lock saw, and the lock is an object with a heartbeat
(:mod:`flyway.objectstore`; the store's operations there are in
:mod:`flyway.store_remote`).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import unicodedata
import uuid
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from flyway import objectstore
from flyway import schema as S
from flyway.errors import StoreError, StoreLockedError
from flyway.geoparquet import atomic_write_bytes, atomic_write_table, with_geo_metadata

FIXES_DIR = "fixes"
LEDGER_FILE = "_ledger.parquet"
QUARANTINE_DIR = "_quarantine"
REFERENCE_FILE = "_reference.parquet"
STAGING_DIR = "_staging"
LOCK_FILE = ".flyway.lock"
LOCK_INFO_FILE = ".flyway.lock.json"
PART_PREFIX = "part-"
SPECIES_KEY = "species_slug"  # not "species": a hive key may not shadow a file column
INDIVIDUAL_KEY = "individual_slug"

STATUS_COMMITTED = "committed"
STATUS_REJECTED = "rejected"

LEDGER_SCHEMA = pa.schema(
    [
        ("sha256", pa.string()),
        ("source_file", pa.string()),
        ("size_bytes", pa.int64()),
        ("batch_id", pa.string()),
        ("status", pa.string()),
        ("format", pa.string()),
        ("rows_read", pa.int64()),
        ("rows_kept", pa.int64()),
        ("rows_quarantined", pa.int64()),
        ("rows_duplicate", pa.int64()),
        ("individuals", pa.int64()),
        ("part_files", pa.list_(pa.string())),
        ("replaces", pa.list_(pa.string())),  # part files this batch supersedes (qc, compaction)
        ("message", pa.string()),
        ("ingested_at", S.TIMESTAMP_TYPE),
        ("flyway_version", pa.string()),
    ]
)

_SLUG_BAD = re.compile(r"[^A-Za-z0-9_]+")


def slug(value: str, max_len: int = 40) -> str:
    """A safe, bounded, collision-free folder name for any id.

    ASCII letters, digits and ``_`` from the id (others become ``-``), at most
    ``max_len`` of them, then ``-`` and 10 hex digits of the id's SHA-1, so two
    different ids never share a folder and no id can escape the store
    (``../x``, ``a/b``, ``CON``, 5,000-character names all become harmless).
    """
    text = unicodedata.normalize("NFKD", str(value)).encode("ascii", "ignore").decode()
    base = _SLUG_BAD.sub("-", text).strip("-")[:max_len].strip("-") or "x"
    digest = hashlib.sha1(str(value).encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{base}-{digest}"


def new_batch_id(now: dt.datetime | None = None) -> str:
    """A sortable, unique batch id: UTC time then random hex."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:10]}"


def batch_of_part(name: str) -> str | None:
    """Batch id encoded in a part file name ``part-<batch>[-<k>].parquet``."""
    if not name.startswith(PART_PREFIX) or not name.endswith(".parquet"):
        return None
    stem = name[len(PART_PREFIX): -len(".parquet")]
    # batch ids are "<YYYYmmddTHHMMSS>-<10 hex>"; an optional "-<k>" follows
    return "-".join(stem.split("-")[:2])


@dataclass(frozen=True)
class Store:
    """A flyway store: a local folder, or a URL such as ``s3://bucket/prefix``.

    Cheap to construct; touches nothing until used. ``path`` is a
    :class:`~pathlib.Path` for a local store and a ``upath.UPath`` for a URL
    (see :mod:`flyway.objectstore` for the environment variables that give
    the endpoint and credentials).
    """

    path: Path

    def __init__(self, path: str | os.PathLike[str] | Store) -> None:
        object.__setattr__(self, "path", path.path if isinstance(path, Store) else objectstore.store_path(path))

    @property
    def is_remote(self) -> bool:
        """Whether the store is on object storage (no shared disk, no rename)."""
        return objectstore.is_remote(self.path)

    @property
    def url(self) -> str:
        """Where the store is, as a string another process or a dask worker can open (absolute)."""
        return str(self.path) if self.is_remote else str(self.path.resolve())

    def relative(self, path: Any) -> str:
        """A path inside the store as the ledger keeps it (POSIX, relative to the store)."""
        return objectstore.relative(path, self.path) if self.is_remote else str(Path(path).relative_to(self.path))

    # -- paths -------------------------------------------------------------
    @property
    def fixes_dir(self) -> Path:
        return self.path / FIXES_DIR

    @property
    def ledger_path(self) -> Path:
        return self.path / LEDGER_FILE

    @property
    def quarantine_dir(self) -> Path:
        return self.path / QUARANTINE_DIR

    @property
    def reference_path(self) -> Path:
        return self.path / REFERENCE_FILE

    def staging_dir(self, batch_id: str) -> Path:
        """Work area of a running ingest: in the store, or in a local temp folder for a remote store."""
        return self._staging_root() / batch_id

    def _staging_root(self) -> Path:
        if not self.is_remote:
            return self.path / STAGING_DIR
        key = hashlib.sha1(str(self.path).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"flyway-staging-{key}"

    def partition_dir(self, species: str, individual_id: str) -> Path:
        return self.fixes_dir / f"{SPECIES_KEY}={slug(species)}" / f"{INDIVIDUAL_KEY}={slug(individual_id)}"

    def exists(self) -> bool:
        return self.ledger_path.exists() or self.fixes_dir.exists()

    def require(self) -> None:
        with objectstore.reachable(self.path) if self.is_remote else nullcontext():
            found = self.path.is_dir()
        if not found:
            raise StoreError(f"{self.path}: no such store (run `flyway ingest FILE --store {self.path}` first)")

    # -- locking -----------------------------------------------------------
    @contextmanager
    def lock(self, purpose: str = "write", timeout: float = 0) -> Iterator[None]:
        """Hold the store's write lock (an OS file lock: freed when the holder dies).

        Raises :class:`StoreLockedError` naming the holder when another live
        process has it. The holder's host, PID, start time and purpose are kept
        in ``.flyway.lock.json`` for that message. On object storage the lock
        is the object ``.flyway.lock`` (:class:`flyway.objectstore.ObjectLock`):
        a holder killed with ``kill -9`` blocks others until its lock expires.
        """
        if self.is_remote:
            with objectstore.ObjectLock(self.path / LOCK_FILE, purpose, timeout) as held:
                held.ledger_etag = remote.fence(self) if held.took_over else objectstore.etag_of(self.ledger_path)
                yield
            return
        self.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path / LOCK_FILE))
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise StoreLockedError(f"{self.path}: store is locked by {self._lock_holder()}") from None
        try:
            info = {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started": dt.datetime.now(dt.timezone.utc).isoformat(),
                "purpose": purpose,
            }
            atomic_write_bytes(self.path / LOCK_INFO_FILE, json.dumps(info).encode())
            yield
        finally:
            try:
                (self.path / LOCK_INFO_FILE).unlink()
            except FileNotFoundError:
                pass
            lock.release()

    def _lock_holder(self) -> str:
        try:
            info = json.loads((self.path / LOCK_INFO_FILE).read_text())
            return f"{info['purpose']} run, pid {info['pid']} on {info['host']} since {info['started']}"
        except (OSError, ValueError, KeyError):
            return "another flyway process"

    # -- ledger ------------------------------------------------------------
    def read_ledger(self) -> pa.Table:
        if self.is_remote:
            return remote.read_ledger(self)[0]
        if not self.ledger_path.exists():
            return LEDGER_SCHEMA.empty_table()
        try:
            table = pq.read_table(self.ledger_path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise StoreError(f"{self.ledger_path}: ledger unreadable ({exc})") from exc
        return conform_ledger(table)

    def committed_rows(self) -> pa.Table:
        """Ledger rows of committed batches (ingested files and rewrites)."""
        led = self.read_ledger()
        return led.filter(pc.equal(led.column("status"), STATUS_COMMITTED))

    def committed_batches(self) -> set[str]:
        return set(self.committed_rows().column("batch_id").to_pylist())

    def committed_hashes(self) -> set[str]:
        return {h for h in self.committed_rows().column("sha256").to_pylist() if h}

    def replaced_parts(self) -> set[str]:
        """Part files (relative paths) superseded by a committed rewrite."""
        return self.snapshot()[1]

    def commit_rewrite(self, batch_id: str, purpose: str, new_parts: list[str], replaced: list[str],
                       message: str = "") -> None:
        """Commit part files that supersede others (QC flags, compaction), then delete the old ones.

        Call while holding the write lock, after the new part files are in
        place. Until this commit readers see the old files; after it the new.
        """
        import flyway

        self.append_ledger([{
            "sha256": "", "source_file": f"<{purpose}>", "size_bytes": None, "batch_id": batch_id,
            "status": STATUS_COMMITTED, "format": purpose, "rows_read": None, "rows_kept": None,
            "rows_quarantined": None, "rows_duplicate": None, "individuals": None, "part_files": new_parts,
            "replaces": replaced, "message": message, "ingested_at": dt.datetime.now(dt.timezone.utc),
            "flyway_version": flyway.__version__,
        }])
        self._delete_replaced()

    def _delete_replaced(self) -> int:
        if self.is_remote:
            return remote.delete_replaced(self)
        removed = 0
        for rel in self.replaced_parts():
            f = self.path / rel
            if f.exists():
                f.unlink()
                removed += 1
        return removed

    def append_ledger(self, rows: Sequence[dict[str, Any]]) -> None:
        """Commit ledger rows: atomic replace of ``_ledger.parquet`` (the commit point).

        On object storage: one PUT of the whole new ledger, conditional on the
        ledger being the one this writer's lock saw (:meth:`lock`), else on the
        one just read; :class:`StoreLockedError` when another writer changed it.
        """
        new = pa.Table.from_pylist(list(rows), schema=LEDGER_SCHEMA)
        if self.is_remote:
            remote.commit(self, new)
            return
        table = pa.concat_tables([self.read_ledger().cast(LEDGER_SCHEMA), new])
        meta = {b"flyway": json.dumps({"table": "ledger"}).encode()}
        atomic_write_table(self.ledger_path, table.replace_schema_metadata(meta))

    # -- recovery ----------------------------------------------------------
    def remove_uncommitted(self) -> int:
        """Delete part and quarantine files of batches that never committed, and temp files.

        Call only while holding the write lock. Returns the number of files removed.
        """
        if self.is_remote:
            return remote.remove_uncommitted(self)
        committed = self.committed_batches()
        removed = 0
        # os.walk: one listing per folder and no stat per file (Path.rglob + is_file took 4x as long)
        for folder, _, names in os.walk(self.fixes_dir):
            for name in names:
                batch = batch_of_part(name)
                if name.endswith(".tmp") or (batch is not None and batch not in committed):
                    os.unlink(os.path.join(folder, name))
                    removed += 1
        if self.quarantine_dir.exists():
            for f in self.quarantine_dir.iterdir():
                if f.name.endswith(".tmp") or (f.suffix == ".parquet" and f.stem not in committed):
                    f.unlink()
                    removed += 1
        for f in self.path.glob("*.tmp"):
            f.unlink()
            removed += 1
        shutil.rmtree(self.path / STAGING_DIR, ignore_errors=True)
        return removed + self._delete_replaced()

    # -- reading fixes -----------------------------------------------------
    def snapshot(self) -> tuple[set[str], set[str]]:
        """(committed batch ids, replaced part files): what readers may see, from one ledger read."""
        led = self.committed_rows()
        replaced = {p for lst in led.column("replaces").to_pylist() if lst for p in lst}
        return set(led.column("batch_id").to_pylist()), replaced

    def fix_files(self, species: Iterable[str] | None = None, individuals: Iterable[str] | None = None,
                  snapshot: tuple[set[str], set[str]] | None = None) -> list[Path]:
        """Committed, current fixes part files, optionally only some species / individuals.

        ``snapshot`` (from :meth:`snapshot`) may be passed in to save
        re-reading the ledger in a loop.
        """
        if self.is_remote:
            return remote.fix_files(self, species, individuals, snapshot)
        if not self.fixes_dir.exists():
            return []
        committed, replaced = self.snapshot() if snapshot is None else snapshot
        sp_dirs = (
            [self.fixes_dir / f"{SPECIES_KEY}={slug(s)}" for s in _as_list(species)]
            if species is not None
            else sorted(self.fixes_dir.glob(f"{SPECIES_KEY}=*"))
        )
        files: list[Path] = []
        ind_names = (sorted(f"{INDIVIDUAL_KEY}={slug(i)}" for i in set(_as_list(individuals)))
                     if individuals is not None else None)
        for sp in sp_dirs:
            # named individuals: look their folders up directly (no listing of every bird)
            ind_dirs = ([sp / n for n in ind_names if (sp / n).is_dir()] if ind_names is not None
                        else sorted(sp.glob(f"{INDIVIDUAL_KEY}=*")))
            for ind in ind_dirs:
                files.extend(
                    f for f in sorted(ind.glob(f"{PART_PREFIX}*.parquet"))
                    if batch_of_part(f.name) in committed and str(f.relative_to(self.path)) not in replaced
                )
        return files

    def file_sizes(self, files: Sequence[Any]) -> list[int]:
        """Bytes of each of ``files`` (from one listing on object storage)."""
        if self.is_remote:
            return remote.file_sizes(self, files)
        return [Path(f).stat().st_size for f in files]

    def scan_fixes(self, species=None, individuals=None, start=None, end=None,
                   columns: Sequence[str] | None = None,
                   snapshot: tuple[set[str], set[str]] | None = None) -> pa.Table:
        """Committed fixes as an Arrow table (fixes schema), filtered."""
        files = self.fix_files(species, individuals, snapshot)
        cols = list(columns) if columns is not None else S.FIXES.names
        if not files:
            return S.FIXES.arrow_schema().empty_table().select(cols)
        expr = None
        if individuals is not None:
            expr = ds.field(S.INDIVIDUAL_ID).isin(_as_list(individuals))
        if species is not None:
            e = ds.field(S.SPECIES).isin(_as_list(species))
            expr = e if expr is None else expr & e
        if start is not None:
            e = ds.field(S.TIMESTAMP) >= pa.scalar(_utc(start), S.TIMESTAMP_TYPE)
            expr = e if expr is None else expr & e
        if end is not None:
            e = ds.field(S.TIMESTAMP) <= pa.scalar(_utc(end), S.TIMESTAMP_TYPE)
            expr = e if expr is None else expr & e
        return sort_fixes(self.read_parts(files, cols, expr))

    def read_parts(self, files: Sequence[Any], columns: Sequence[str],
                   where: ds.Expression | None = None) -> pa.Table:
        """The rows of the given part files (from :meth:`fix_files`) matching ``where``, in file order."""
        if self.is_remote:
            return remote.read_parts(files, list(columns), where)
        dataset = ds.dataset([str(f) for f in files], format="parquet", schema=S.FIXES.arrow_schema())
        return dataset.to_table(columns=list(columns), filter=where)

    def write_reference(self, table: pa.Table) -> None:
        atomic_write_table(self.reference_path, table)

    def read_reference(self) -> pa.Table | None:
        return read_optional(self.reference_path)

    def read_quarantine(self) -> pa.Table:
        committed = self.committed_batches()
        if self.is_remote:
            tables = remote.read_quarantine(self, committed)
        else:
            files = [f for f in sorted(self.quarantine_dir.glob("*.parquet")) if f.stem in committed] \
                if self.quarantine_dir.exists() else []
            tables = [pq.read_table(f) for f in files]
        if not tables:
            from flyway.ingest.quarantine import QUARANTINE_SCHEMA

            return QUARANTINE_SCHEMA.empty_table()
        return pa.concat_tables(tables)


def sort_fixes(table: pa.Table) -> pa.Table:
    """Rows by individual, then time; ties keep their order (a stable sort on integer keys, which is
    quicker than one on the text of the ids). Columns it needs but lacks are left out of the key."""
    keys = [c for c in (S.INDIVIDUAL_ID, S.TIMESTAMP) if c in table.column_names]
    if table.num_rows == 0 or not keys:
        return table
    key: dict[str, Any] = {}
    if S.INDIVIDUAL_ID in keys:
        codes = pc.dictionary_encode(table.column(S.INDIVIDUAL_ID)).combine_chunks()
        rank = pc.rank(codes.dictionary, sort_keys="ascending", tiebreaker="first")
        key["b"] = pc.take(rank, codes.indices)
    if S.TIMESTAMP in keys:
        key["t"] = table.column(S.TIMESTAMP)
    key["r"] = pa.array(range(table.num_rows), pa.int64())
    return table.take(pc.sort_indices(pa.table(key), sort_keys=[(k, "ascending") for k in key]))


def read_optional(path: Any) -> pa.Table | None:
    """A Parquet file of the store, or ``None`` when it is not there (one GET on object storage)."""
    if objectstore.is_remote(path):
        data, _ = objectstore.get_object(path)
        return None if data is None else pq.read_table(pa.BufferReader(data))
    return pq.read_table(path) if path.exists() else None


def conform_ledger(table: pa.Table) -> pa.Table:
    """A ledger table with every column of :data:`LEDGER_SCHEMA` (older ledgers lack some)."""
    for fld in LEDGER_SCHEMA:  # ledgers written before a column existed
        if fld.name not in table.column_names:
            table = table.append_column(fld, pa.nulls(table.num_rows, fld.type))
    return table.select(LEDGER_SCHEMA.names).cast(LEDGER_SCHEMA)


def _as_list(values: Iterable[str] | str) -> list[str]:
    return [values] if isinstance(values, str) else list(values)


def _utc(value: Any) -> dt.datetime:
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def read_fixes(store: str | os.PathLike[str] | Store, species: str | Iterable[str] | None = None,
               individuals: str | Iterable[str] | None = None, start: Any = None, end: Any = None,
               columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read committed fixes from a store as a DataFrame with the fixes schema.

    Parameters
    ----------
    store : path or Store
        The store folder.
    species, individuals : str or list of str, optional
        Keep only these species (scientific names) / individual ids.
    start, end : str or datetime, optional
        Keep fixes with ``start <= timestamp <= end`` (naive values are UTC).
    columns : list of str, optional
        Subset of the fixes columns to read.

    Returns
    -------
    pandas.DataFrame
        One row per fix, sorted by individual and time; ``timestamp`` is
        tz-aware UTC. Half-written batches (after a crash) are never returned.

    Examples
    --------
    >>> fixes = flyway.read_fixes("birds/", species="Grus monacha")  # doctest: +SKIP
    """
    st = store if isinstance(store, Store) else Store(store)
    st.require()
    table = st.scan_fixes(species, individuals, start, end, columns)
    return table.to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get)


def fixes_geo_table(table: pa.Table, batch_id: str) -> pa.Table:
    """Attach GeoParquet metadata (bbox, CRS, provenance) to a fixes table."""
    from flyway.geoparquet import lonlat_bbox

    lon = table.column(S.LON).to_numpy()
    lat = table.column(S.LAT).to_numpy()
    return with_geo_metadata(table, S.GEOMETRY, ["Point"], {"table": "fixes", "batch_id": batch_id},
                             lonlat_bbox(lon, lat))


def ledger_state(store: Store) -> dict[str, Any]:
    """Which committed data a derived table was computed from."""
    batches = sorted(store.committed_batches())
    digest = hashlib.sha256("\n".join(batches).encode()).hexdigest()[:16]
    return {"batches": len(batches), "batches_sha256": digest, "last_batch": batches[-1] if batches else None}


def write_derived(store: str | os.PathLike[str] | Store, name: str, table: pa.Table,
                  params: dict[str, Any] | None = None, geometry_types: list[str] | None = None,
                  folder: str | None = None) -> Path:
    """Atomically write a derived table (stops, sites, ...) as ``STORE/<folder or name>/<name>.parquet``.

    The flyway version, the parameters and the ledger state it was computed
    from go into the file's metadata. With a ``geometry`` column the file is
    GeoParquet 1.1.
    """
    from flyway.geoparquet import lonlat_bbox

    st = store if isinstance(store, Store) else Store(store)
    meta = {"table": name, "parameters": params or {}, "ledger": ledger_state(st)}
    if S.GEOMETRY in table.column_names:
        bbox = None
        if S.LON in table.column_names and table.num_rows:
            bbox = lonlat_bbox(table.column(S.LON).to_numpy(), table.column(S.LAT).to_numpy())
        table = with_geo_metadata(table, S.GEOMETRY, geometry_types or [], meta, bbox)
    else:
        table = table.replace_schema_metadata({b"flyway": json.dumps(meta, default=str).encode()})
    return atomic_write_table(st.path / (folder or name) / f"{name}.parquet", table)


def read_derived(store: str | os.PathLike[str] | Store, name: str, folder: str | None = None) -> pd.DataFrame:
    """Read a derived table written by :func:`write_derived` (empty if never written)."""
    st = store if isinstance(store, Store) else Store(store)
    path = st.path / (folder or name) / f"{name}.parquet"
    table = read_optional(path)
    if table is None:
        contract = S.TABLES.get(name)
        if contract is None:
            raise StoreError(f"{path}: no {name} table in the store")
        return contract.empty().to_pandas()
    return table.to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get)


def part_facts(md: pq.FileMetaData) -> tuple[str | None, str | None, str | None, str | None]:
    """Species, individual and time span of a part file from its footer statistics (``None`` where absent)."""
    names = md.schema.names
    i_sp, i_ind, i_t = names.index(S.SPECIES), names.index(S.INDIVIDUAL_ID), names.index(S.TIMESTAMP)
    sp = ind = None
    t0 = t1 = None
    for rg in range(md.num_row_groups):
        g = md.row_group(rg)
        st_sp, st_ind, st_t = g.column(i_sp).statistics, g.column(i_ind).statistics, g.column(i_t).statistics
        if st_sp is not None and st_sp.has_min_max:
            sp = st_sp.min
        if st_ind is not None and st_ind.has_min_max:
            ind = st_ind.min
        if st_t is not None and st_t.has_min_max:
            lo, hi = str(st_t.min), str(st_t.max)
            t0 = lo if t0 is None else min(t0, lo)
            t1 = hi if t1 is None else max(t1, hi)
    return sp, ind, t0, t1


from flyway import store_remote as remote  # noqa: E402  (it builds on the names above)
