"""Stage accepted rows on disk, then write one part file per individual.

Pass 1 (streaming) appends each parsed batch to a few *bucket* files in
``STORE/_staging/<batch>/`` (an individual always lands in the same bucket),
so memory holds one CSV block at a time. Pass 2 reads one bucket at a time,
removes fixes already in the store or repeated in the batch, flags duplicate
timestamps, and writes ``part-<batch>.parquet`` per individual (tmp, fsync,
rename). Nothing becomes visible to readers until the ledger commits the batch.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flyway import schema as S
from flyway.geoparquet import fsync_dir, points_wkb
from flyway.ingest import quarantine as Q
from flyway.store import PART_PREFIX, Store, fixes_geo_table

BUCKET_TARGET_BYTES = 64 << 20  # ~ one bucket per 64 MB of CSV: bounds pass-2 memory
MAX_BUCKETS = 256
_STAGED = [c for c in S.FIXES.names if c not in (S.GEOMETRY, S.BATCH_ID)]


def bucket_count(total_bytes: int) -> int:
    return int(min(MAX_BUCKETS, max(1, -(-total_bytes // BUCKET_TARGET_BYTES))))


@dataclass
class FinalizeResult:
    part_files: list[str] = field(default_factory=list)
    rows_kept: int = 0
    rows_duplicate: int = 0
    individuals: int = 0
    quarantine: list[pa.Table] = field(default_factory=list)
    # per source file: kept and duplicate counts
    kept_by_file: dict[str, int] = field(default_factory=dict)
    duplicate_by_file: dict[str, int] = field(default_factory=dict)

    def merge(self, other: FinalizeResult) -> None:
        self.part_files.extend(other.part_files)
        self.rows_kept += other.rows_kept
        self.rows_duplicate += other.rows_duplicate
        self.individuals += other.individuals
        self.quarantine.extend(other.quarantine)
        for mine, theirs in ((self.kept_by_file, other.kept_by_file),
                             (self.duplicate_by_file, other.duplicate_by_file)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v


class Stager:
    """Pass 1: append batches to bucket files by individual."""

    def __init__(self, store: Store, batch_id: str, n_buckets: int) -> None:
        self.dir = store.staging_dir(batch_id)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n_buckets = n_buckets
        full = S.FIXES.arrow_schema()
        self.schema = pa.schema([full.field(c) for c in _STAGED])
        self._writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
        self.rejected: set[str] = set()

    def forget(self, source_file: str) -> None:
        """Drop what a file staged so far (it was rejected part-way through)."""
        self.rejected.add(source_file)

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        for name in _STAGED:
            if name not in table.column_names:
                table = table.append_column(self.schema.field(name), pa.nulls(table.num_rows, self.schema.field(name).type))
        table = table.select(_STAGED).cast(self.schema)
        enc = pc.dictionary_encode(table.column(S.INDIVIDUAL_ID)).combine_chunks()
        ids = enc.dictionary.to_pylist()
        bucket_of_id = np.array([_bucket(i, self.n_buckets) for i in ids], dtype=np.int64)
        buckets = bucket_of_id[enc.indices.to_numpy(zero_copy_only=False)]
        order = np.argsort(buckets, kind="stable")
        sorted_b = buckets[order]
        bounds = np.flatnonzero(np.diff(sorted_b)) + 1
        for chunk in np.split(order, bounds):
            b = int(buckets[chunk[0]])
            part = table.take(pa.array(chunk, pa.int64()))
            writer = self._writers.get(b)
            if writer is None:
                # Arrow IPC, uncompressed: staging is written once and read once, so speed beats size
                writer = pa.ipc.new_file(str(self.dir / f"bucket-{b:03d}.arrow"), self.schema)
                self._writers[b] = writer
            writer.write_table(part)

    def close(self) -> list[Path]:
        for w in self._writers.values():
            w.close()
        return [self.dir / f"bucket-{b:03d}.arrow" for b in sorted(self._writers)]


def _bucket(individual_id: str, n: int) -> int:
    return int.from_bytes(hashlib.blake2b(individual_id.encode("utf-8", "surrogatepass"), digest_size=4).digest(),
                          "little") % n


def finalize(store: Store, batch_id: str, bucket_files: list[Path], exclude: set[str] = frozenset(),
             fsync: bool = True) -> FinalizeResult:
    """Pass 2: dedup against the store and write the part files of the batch.

    Rows staged by files in ``exclude`` (rejected part-way through) are left out.
    """
    res = FinalizeResult()
    snapshot = store.snapshot()
    for path in bucket_files:
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_file(source).read_all()
        if exclude:
            table = table.filter(pc.invert(pc.is_in(table.column(S.SOURCE_FILE), pa.array(sorted(exclude)))))
        if table.num_rows == 0:
            continue
        table = table.sort_by([(S.SPECIES, "ascending"), (S.INDIVIDUAL_ID, "ascending"),
                               (S.TIMESTAMP, "ascending"), (S.SOURCE_FILE, "ascending"),
                               (S.SOURCE_LINE, "ascending")])
        sp = table.column(S.SPECIES).to_numpy(zero_copy_only=False)
        ind = table.column(S.INDIVIDUAL_ID).to_numpy(zero_copy_only=False)
        change = np.flatnonzero((sp[1:] != sp[:-1]) | (ind[1:] != ind[:-1])) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [table.num_rows]])
        # individuals are independent: write them on all cores (Arrow and
        # Parquet release the GIL); partial results are merged in order
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            parts = pool.map(lambda ab: _finalize_individual(store, batch_id, table.slice(ab[0], ab[1] - ab[0]),
                                                             fsync, snapshot), zip(starts, ends))
            for part in parts:
                res.merge(part)
    return res


def _finalize_individual(store: Store, batch_id: str, new: pa.Table, fsync: bool,
                         snapshot: tuple[set[str], set[str]]) -> FinalizeResult:
    res = FinalizeResult()
    species = new.column(S.SPECIES)[0].as_py()
    individual = new.column(S.INDIVIDUAL_ID)[0].as_py()
    old = store.scan_fixes(individuals=[individual], columns=[S.TIMESTAMP, S.LON, S.LAT, S.EVENT_ID],
                           snapshot=snapshot)
    n_old, n_new = old.num_rows, new.num_rows
    keys = pd.DataFrame({
        "t": np.concatenate([_i64(old.column(S.TIMESTAMP)), _i64(new.column(S.TIMESTAMP))]),
        "x": np.concatenate([old.column(S.LON).to_numpy(), new.column(S.LON).to_numpy()]),
        "y": np.concatenate([old.column(S.LAT).to_numpy(), new.column(S.LAT).to_numpy()]),
    })
    dup = keys.duplicated(keep="first").to_numpy()[n_old:]
    files = new.column(S.SOURCE_FILE).to_numpy(zero_copy_only=False)
    if dup.any():
        _count_by_file(res.duplicate_by_file, new.column(S.SOURCE_FILE).filter(pa.array(dup)))
    res.rows_duplicate += int(dup.sum())

    # duplicate event ids (different fix, same id): quarantine the later one
    ev = pd.Series(np.concatenate([_opt_i64(old.column(S.EVENT_ID)), _opt_i64(new.column(S.EVENT_ID))]))
    ev_keep = np.concatenate([np.ones(n_old, dtype=bool), ~dup])
    ev_dup = np.zeros(n_old + n_new, dtype=bool)
    ev_valid = ev.notna().to_numpy() & ev_keep
    ev_dup[ev_valid] = ev[ev_valid].duplicated(keep="first").to_numpy()
    ev_dup = ev_dup[n_old:]
    if ev_dup.any():
        rows = np.flatnonzero(ev_dup)
        for f in np.unique(files[rows]):
            sel = rows[files[rows] == f]
            res.quarantine.append(Q.records(
                str(f), new.column(S.SOURCE_LINE).to_numpy()[sel], S.EVENT_ID, Q.DUPLICATE_EVENT_ID,
                "event id already used by another fix of this individual",
                new.column(S.EVENT_ID).take(pa.array(sel)), Q.ROW,
                _row_text(new.take(pa.array(sel)))))
    keep = ~dup & ~ev_dup
    new = new.filter(pa.array(keep))
    if new.num_rows == 0:
        return res
    # same time, different position: keep both, flag both (QC decides later)
    t_all = pd.Series(np.concatenate([_i64(old.column(S.TIMESTAMP)), _i64(new.column(S.TIMESTAMP))]))
    same_t = t_all.duplicated(keep=False).to_numpy()[n_old:]
    flags = new.column(S.QC_FLAGS).to_numpy().copy()
    flags[same_t] |= np.uint32(S.QCFlag.DUPLICATE_TIMESTAMP)
    new = new.set_column(new.schema.get_field_index(S.QC_FLAGS), S.QC_FLAGS, pa.array(flags, pa.uint32()))
    _write_part(store, batch_id, species, individual, new, res, fsync)
    _count_by_file(res.kept_by_file, new.column(S.SOURCE_FILE))
    return res


def _count_by_file(counts: dict[str, int], source_files: pa.Array) -> None:
    for item in pc.value_counts(source_files).to_pylist():
        counts[item["values"]] = counts.get(item["values"], 0) + item["counts"]


def _write_part(store: Store, batch_id: str, species: str, individual: str, rows: pa.Table,
                res: FinalizeResult, fsync: bool) -> None:
    n = rows.num_rows
    rows = rows.append_column(S.GEOMETRY, points_wkb(rows.column(S.LON).to_numpy(), rows.column(S.LAT).to_numpy()))
    rows = rows.append_column(S.BATCH_ID, pa.array(np.full(n, batch_id, dtype=object), pa.string()))
    table = fixes_geo_table(S.FIXES.conform(rows), batch_id)
    folder = store.partition_dir(species, individual)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{PART_PREFIX}{batch_id}.parquet"
    tmp = final.with_name(final.name + ".tmp")
    with open(tmp, "wb") as fh:
        pq.write_table(table, fh, compression="zstd", row_group_size=128_000)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, final)
    if fsync:
        fsync_dir(folder)
    res.part_files.append(str(final.relative_to(store.path)))
    res.rows_kept += n
    res.individuals += 1


def _i64(arr) -> np.ndarray:
    return arr.cast(pa.int64()).to_numpy(zero_copy_only=False) if len(arr) else np.array([], dtype=np.int64)


def _opt_i64(arr) -> np.ndarray:
    return np.asarray(arr.to_pandas().astype("Float64").to_numpy(dtype="f8", na_value=np.nan))


def _row_text(table: pa.Table) -> pa.Array:
    """Readable text of stored-form rows (for quarantine records of pass 2)."""
    cols = [pc.fill_null(table.column(c).cast(pa.string()), "") for c in
            (S.INDIVIDUAL_ID, S.TIMESTAMP, S.LON, S.LAT, S.EVENT_ID)]
    return pc.binary_join_element_wise(*cols, ",").combine_chunks()
