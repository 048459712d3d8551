"""Stage accepted rows on disk, then write one part file per individual.

Pass 1 (streaming) appends each parsed batch to a few *bucket* files in
``STORE/_staging/<batch>/`` (an individual always lands in the same bucket),
so memory holds one CSV block at a time. Pass 2 reads one bucket at a time,
removes fixes already in the store or repeated in the batch, flags duplicate
timestamps, and writes ``part-<batch>.parquet`` per individual (tmp, then
rename; one ``sync`` for all of them). Nothing becomes visible to readers until
the ledger commits the batch.
"""
from __future__ import annotations

import collections
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
from flyway.geoparquet import constant_strings, points_wkb
from flyway.ingest import quarantine as Q
from flyway.store import PART_PREFIX, Store, fixes_geo_table

BUCKET_TARGET_BYTES = 32 << 20  # ~ one bucket per 32 MB of CSV: bounds pass-2 memory
MAX_BUCKETS = 256
_STAGED = [c for c in S.FIXES.names if c not in (S.GEOMETRY, S.BATCH_ID)]
# dictionary-encode only the repetitive text columns: numbers and WKB gain nothing from it and
# writing them as dictionaries costs half the write time
_DICTIONARY = [c.name for c in S.FIXES.columns if pa.types.is_string(c.type)]
# min/max statistics where readers filter (time, space, ids); the rest would only cost write time
_STATISTICS = [S.SPECIES, S.INDIVIDUAL_ID, S.TIMESTAMP, S.LON, S.LAT, S.EVENT_ID, S.QC_FLAGS, S.BATCH_ID]


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
    """Pass 1: append batches to bucket files by individual.

    Each source writes its own files (``tag``), so a source that is rejected
    or re-read part-way through can be discarded without touching the others.
    """

    def __init__(self, store: Store, batch_id: str, n_buckets: int) -> None:
        self.dir = store.staging_dir(batch_id)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n_buckets = n_buckets
        full = S.FIXES.arrow_schema()
        self.schema = pa.schema([full.field(c) for c in _STAGED])
        self._writers: dict[tuple[int, str], pa.ipc.RecordBatchFileWriter] = {}
        self._closed: dict[tuple[int, str], Path] = {}

    def _path(self, bucket: int, tag: str) -> Path:
        return self.dir / f"bucket-{bucket:03d}-{tag}.arrow"

    def split(self, table: pa.Table) -> list[tuple[int, pa.Table]]:
        """The rows of ``table`` per bucket, in the staged schema (pure: safe on any thread)."""
        if table.num_rows == 0:
            return []
        for name in _STAGED:
            if name not in table.column_names:
                table = table.append_column(self.schema.field(name), pa.nulls(table.num_rows, self.schema.field(name).type))
        table = table.select(_STAGED).cast(self.schema)
        enc = pc.dictionary_encode(table.column(S.INDIVIDUAL_ID)).combine_chunks()
        ids = enc.dictionary.to_pylist()
        bucket_of_id = np.array([_bucket(i, self.n_buckets) for i in ids], dtype=np.int64)
        if np.all(bucket_of_id == bucket_of_id[0]):
            return [(int(bucket_of_id[0]), table)]  # the whole batch goes to one bucket: no copy
        buckets = bucket_of_id[enc.indices.to_numpy(zero_copy_only=False)]
        order = np.argsort(buckets, kind="stable")
        bounds = np.flatnonzero(np.diff(buckets[order])) + 1
        return [(int(buckets[chunk[0]]), table.take(pa.array(chunk, pa.int64())))
                for chunk in np.split(order, bounds)]

    def write(self, parts: list[tuple[int, pa.Table]], tag: str) -> None:
        """Append the output of :meth:`split` to the bucket files of ``tag`` (one thread at a time)."""
        for bucket, part in parts:
            key = (bucket, tag)
            writer = self._writers.get(key)
            if writer is None:
                # Arrow IPC, uncompressed: staging is written once and read once, so speed beats size
                writer = pa.ipc.new_file(str(self._path(*key)), self.schema)
                self._writers[key] = writer
            writer.write_table(part)

    def add(self, table: pa.Table, tag: str) -> None:
        self.write(self.split(table), tag)

    def discard(self, tag: str) -> None:
        """Forget everything staged under ``tag``."""
        for key in [k for k in self._writers if k[1] == tag]:
            self._writers.pop(key).close()
            self._path(*key).unlink(missing_ok=True)

    def close(self) -> list[list[Path]]:
        """Close all files; returns the staged files grouped by bucket (one group per bucket)."""
        groups: dict[int, list[Path]] = {}
        for (bucket, tag), writer in sorted(self._writers.items()):
            writer.close()
            groups.setdefault(bucket, []).append(self._path(bucket, tag))
        self._writers.clear()
        return [groups[b] for b in sorted(groups)]


def _bucket(individual_id: str, n: int) -> int:
    return int.from_bytes(hashlib.blake2b(individual_id.encode("utf-8", "surrogatepass"), digest_size=4).digest(),
                          "little") % n


def finalize(store: Store, batch_id: str, buckets: list[list[Path]], fsync: bool = True) -> FinalizeResult:
    """Pass 2: dedup against the store and write the part files of the batch (one bucket at a time).

    Individuals are independent, so their part files are written on all cores
    (Parquet encoding and compression release the GIL) while this thread
    prepares the next bucket; at most two buckets are held at once.
    """
    res = FinalizeResult()
    snapshot = store.snapshot()
    in_flight: collections.deque = collections.deque()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for paths in buckets:
            table = pa.concat_tables([_read_staged(p) for p in paths])
            if table.num_rows == 0:
                continue
            table, bird = _group_by_bird(table)
            table = _dedup_bucket(store, table, snapshot, res, bird)
            if table.num_rows == 0:
                continue
            if table.num_rows != len(bird):  # rows were dropped: number the birds again
                bird = _bird_codes(table)
            change = np.flatnonzero(bird[1:] != bird[:-1]) + 1
            starts = np.concatenate([[0], change])
            ends = np.concatenate([change, [table.num_rows]])
            in_flight.append([pool.submit(_write_part, store, batch_id, table.slice(a, b - a))
                              for a, b in zip(starts, ends)])
            res.rows_kept += table.num_rows
            res.individuals += len(starts)
            _count_by_file(res.kept_by_file, table.column(S.SOURCE_FILE))
            while len(in_flight) > 1:
                res.part_files.extend(f.result() for f in in_flight.popleft())
        while in_flight:
            res.part_files.extend(f.result() for f in in_flight.popleft())
    if fsync and res.part_files:
        # one flush of everything written (data and renames) instead of two fsyncs per part
        # file; the ledger commit that makes them visible comes after this returns
        os.sync()
    return res


def _bird_codes(table: pa.Table) -> np.ndarray:
    """One integer per (species, individual) pair, numbered in order of first appearance."""
    key = pc.binary_join_element_wise(table.column(S.SPECIES), table.column(S.INDIVIDUAL_ID), "\x1f")
    return _codes(key).astype(np.int64)


def _group_by_bird(table: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """Rows of each bird together, in time order (ties keep staged file/line order), and the bird codes.

    A stable sort on integer keys: much cheaper than sorting by the id strings.
    """
    bird = _bird_codes(table)
    t = _i64(table.column(S.TIMESTAMP))
    order = np.lexsort((t, bird))
    if np.all(order[1:] > order[:-1]):
        return table, bird  # already grouped and in time order (the usual Movebank export)
    return table.take(pa.array(order)), bird[order]


def _read_staged(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def _dedup_bucket(store: Store, new: pa.Table, snapshot, res: FinalizeResult,
                  bird: np.ndarray | None = None) -> pa.Table:
    """Drop fixes already stored or repeated; quarantine reused event ids; flag shared timestamps.

    Vectorised over the whole bucket (many individuals at once); ``new`` is
    sorted by individual and time, so "first" means earliest in the file.
    """
    ids = pc.unique(new.column(S.INDIVIDUAL_ID)).to_pylist()
    old = store.scan_fixes(individuals=ids, columns=[S.INDIVIDUAL_ID, S.TIMESTAMP, S.LON, S.LAT, S.EVENT_ID],
                           snapshot=snapshot)
    if old.num_rows == 0:
        return _dedup_sorted(new, res, bird)  # first data of these birds: a numpy pass over sorted rows
    return _dedup_against(new, old, res)


def _dedup_against(new: pa.Table, old: pa.Table, res: FinalizeResult) -> pa.Table:
    """The general case of :func:`_dedup_bucket`: hash (individual, time, position) over old and new rows."""
    n_old = old.num_rows
    both = pa.concat_tables([old, new.select(old.column_names).cast(old.schema)])
    keys = pd.DataFrame({
        "i": _codes(both.column(S.INDIVIDUAL_ID)),
        "t": _i64(both.column(S.TIMESTAMP)),
        "x": both.column(S.LON).to_numpy(),
        "y": both.column(S.LAT).to_numpy(),
    })
    dup = keys.duplicated(keep="first").to_numpy()
    res.rows_duplicate += int(dup[n_old:].sum())
    if dup[n_old:].any():
        _count_by_file(res.duplicate_by_file, new.column(S.SOURCE_FILE).filter(pa.array(dup[n_old:])))
    # duplicate event ids (a different fix with the same id): quarantine the later one
    ev = pd.DataFrame({"i": keys["i"], "e": _opt_i64(both.column(S.EVENT_ID))})
    ev_valid = ev["e"].notna().to_numpy() & ~dup
    ev_dup = np.zeros(len(ev), dtype=bool)
    ev_dup[ev_valid] = ev[ev_valid].duplicated(keep="first").to_numpy()
    ev_dup = ev_dup[n_old:]
    if ev_dup.any():
        _quarantine_event_ids(new, np.flatnonzero(ev_dup), res)
    keep = ~dup & np.concatenate([np.zeros(n_old, dtype=bool), ~ev_dup])
    keep_old = np.concatenate([np.ones(n_old, dtype=bool), np.zeros(len(keep) - n_old, dtype=bool)])
    new = new.filter(pa.array(keep[n_old:]))
    # same time, different position: keep both, flag both (QC decides later)
    sel = keep | keep_old
    same_t = keys[sel][["i", "t"]].duplicated(keep=False).to_numpy()[n_old:]
    flags = new.column(S.QC_FLAGS).to_numpy().copy()
    flags[same_t] |= np.uint32(S.QCFlag.DUPLICATE_TIMESTAMP)
    return new.set_column(new.schema.get_field_index(S.QC_FLAGS), S.QC_FLAGS, pa.array(flags, pa.uint32()))


def _dedup_sorted(new: pa.Table, res: FinalizeResult, codes: np.ndarray | None = None) -> pa.Table:
    """:func:`_dedup_bucket` for rows with nothing stored before them, without hashing every row.

    ``new`` is sorted by individual and time, so rows sharing (individual,
    time) are neighbours: only those runs (rare) need a closer look.
    """
    n = new.num_rows
    if codes is None:
        codes = _codes(new.column(S.INDIVIDUAL_ID)).astype(np.int64)
    t = _i64(new.column(S.TIMESTAMP))
    same_prev = (codes[1:] == codes[:-1]) & (t[1:] == t[:-1])
    in_run = np.zeros(n, dtype=bool)
    in_run[1:] |= same_prev
    in_run[:-1] |= same_prev
    dup = np.zeros(n, dtype=bool)
    if in_run.any():
        idx = np.flatnonzero(in_run)
        sub = pd.DataFrame({"i": codes[idx], "t": t[idx], "x": new.column(S.LON).to_numpy()[idx],
                            "y": new.column(S.LAT).to_numpy()[idx]})
        dup[idx] = sub.duplicated(keep="first").to_numpy()
    if dup.any():
        res.rows_duplicate += int(dup.sum())
        _count_by_file(res.duplicate_by_file, new.column(S.SOURCE_FILE).filter(pa.array(dup)))
    ev_dup = _event_id_repeats(codes, new.column(S.EVENT_ID), ~dup)
    if ev_dup.any():
        _quarantine_event_ids(new, np.flatnonzero(ev_dup), res)
    keep = ~dup & ~ev_dup
    flags = new.column(S.QC_FLAGS).to_numpy().copy()
    kept = np.flatnonzero(keep)
    if in_run.any() and kept.size > 1:  # same time, different position: keep both, flag both
        k_same = (codes[kept][1:] == codes[kept][:-1]) & (t[kept][1:] == t[kept][:-1])
        mark = np.zeros(kept.size, dtype=bool)
        mark[1:] |= k_same
        mark[:-1] |= k_same
        flags[kept[mark]] |= np.uint32(S.QCFlag.DUPLICATE_TIMESTAMP)
    new = new.set_column(new.schema.get_field_index(S.QC_FLAGS), S.QC_FLAGS, pa.array(flags, pa.uint32()))
    return new.filter(pa.array(keep)) if not keep.all() else new


def _event_id_repeats(codes: np.ndarray, events, candidates: np.ndarray) -> np.ndarray:
    """Rows whose (individual, event id) already occurred earlier among ``candidates``."""
    ev = events.combine_chunks() if isinstance(events, pa.ChunkedArray) else events
    valid = pc.is_valid(ev).to_numpy(zero_copy_only=False) & candidates
    out = np.zeros(len(codes), dtype=bool)
    if not valid.any():
        return out
    rows = np.flatnonzero(valid)
    e = ev.fill_null(0).to_numpy(zero_copy_only=False)[rows]
    order = np.lexsort((rows, e, codes[rows]))  # by individual, event id, then row: the first stays
    c_s, e_s = codes[rows][order], e[order]
    again = np.zeros(rows.size, dtype=bool)
    again[1:] = (c_s[1:] == c_s[:-1]) & (e_s[1:] == e_s[:-1])
    out[rows[order][again]] = True
    return out


def _quarantine_event_ids(new: pa.Table, rows: np.ndarray, res: FinalizeResult) -> None:
    files = new.column(S.SOURCE_FILE).to_numpy(zero_copy_only=False)
    for f in np.unique(files[rows]):
        sel = rows[files[rows] == f]
        res.quarantine.append(Q.records(
            str(f), new.column(S.SOURCE_LINE).to_numpy()[sel], S.EVENT_ID, Q.DUPLICATE_EVENT_ID,
            "event id already used by another fix of this individual",
            new.column(S.EVENT_ID).take(pa.array(sel)), Q.ROW, _row_text(new.take(pa.array(sel)))))


def _codes(arr) -> np.ndarray:
    enc = pc.dictionary_encode(arr).combine_chunks() if isinstance(arr, pa.ChunkedArray) else pc.dictionary_encode(arr)
    return enc.indices.to_numpy(zero_copy_only=False)


def _count_by_file(counts: dict[str, int], source_files: pa.Array) -> None:
    for item in pc.value_counts(source_files).to_pylist():
        counts[item["values"]] = counts.get(item["values"], 0) + item["counts"]


def _write_part(store: Store, batch_id: str, rows: pa.Table) -> str:
    """Write one individual's new fixes as ``part-<batch>.parquet`` (tmp, rename); returns its store path."""
    species = rows.column(S.SPECIES)[0].as_py()
    individual = rows.column(S.INDIVIDUAL_ID)[0].as_py()
    n = rows.num_rows
    rows = rows.append_column(S.GEOMETRY, points_wkb(rows.column(S.LON).to_numpy(), rows.column(S.LAT).to_numpy()))
    rows = rows.append_column(S.BATCH_ID, constant_strings(batch_id, n))
    table = fixes_geo_table(S.FIXES.conform(rows), batch_id)
    folder = store.partition_dir(species, individual)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{PART_PREFIX}{batch_id}.parquet"
    tmp = final.with_name(final.name + ".tmp")
    with open(tmp, "wb") as fh:
        pq.write_table(table, fh, compression="zstd", row_group_size=128_000, use_dictionary=_DICTIONARY,
                       write_statistics=_STATISTICS)
    os.replace(tmp, final)
    return str(final.relative_to(store.path))


def _i64(arr) -> np.ndarray:
    return arr.cast(pa.int64()).to_numpy(zero_copy_only=False) if len(arr) else np.array([], dtype=np.int64)


def _opt_i64(arr) -> np.ndarray:
    return np.asarray(arr.to_pandas().astype("Float64").to_numpy(dtype="f8", na_value=np.nan))


def _row_text(table: pa.Table) -> pa.Array:
    """Readable text of stored-form rows (for quarantine records of pass 2)."""
    cols = [pc.fill_null(table.column(c).cast(pa.string()), "") for c in
            (S.INDIVIDUAL_ID, S.TIMESTAMP, S.LON, S.LAT, S.EVENT_ID)]
    return pc.binary_join_element_wise(*cols, ",").combine_chunks()
