"""Pass 2 of ingest: deduplicate the staged rows and write one part file per individual.

Pass 1 (:mod:`flyway.ingest.staging`) leaves the accepted rows in memory or
in a few bucket files. Pass 2 takes one bucket at a time, groups it by bird,
and for a few birds at a time removes fixes already in the store or repeated
in the batch, flags duplicate timestamps, and writes ``part-<batch>.parquet``
per individual (tmp, then rename; one ``sync`` for all of them) while the
next birds are deduplicated. Nothing becomes visible to readers until the
ledger commits the batch.
"""
from __future__ import annotations

import collections
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flyway import schema as S
from flyway.geoparquet import atomic_write, constant_strings, points_wkb
from flyway.ingest import quarantine as Q
from flyway.ingest.staging import read_staged
from flyway.store import PART_PREFIX, Store, fixes_geo_table

_ROWS_PER_RANGE = 1 << 17  # pass 2 deduplicates this many rows (whole birds) before handing them to the writers
# dictionary-encode only the repetitive text columns: numbers and WKB gain nothing from it and
# writing them as dictionaries costs half the write time
_DICTIONARY = [c.name for c in S.FIXES.columns if pa.types.is_string(c.type)]
# min/max statistics where readers filter (time, space, ids); the rest would only cost write time
_STATISTICS = [S.SPECIES, S.INDIVIDUAL_ID, S.TIMESTAMP, S.LON, S.LAT, S.EVENT_ID, S.QC_FLAGS, S.BATCH_ID]


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


def finalize(store: Store, batch_id: str, buckets: list[list[Path | pa.Table]], fsync: bool = True) -> FinalizeResult:
    """Pass 2: dedup against the store and write the part files of the batch (one bucket at a time).

    ``buckets`` is what :meth:`~flyway.ingest.staging.Stager.close` returns.
    Individuals are independent, so their part files are written on all
    cores (Parquet encoding and compression release the GIL) while this
    thread deduplicates the next birds of the bucket (:data:`_ROWS_PER_RANGE`
    rows at a time, which also bounds the stored fixes read at once); at most
    two buckets are held at once.
    """
    res = FinalizeResult()
    snapshot = store.snapshot()
    in_flight: collections.deque = collections.deque()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for paths in buckets:
            table = pa.concat_tables([read_staged(p) for p in paths])
            if table.num_rows == 0:
                continue
            order, bird = _bird_order(table)
            # a few birds at a time, so their part files are being written while the next are deduplicated
            for rows, codes in _bird_ranges(table, bird, order, _ROWS_PER_RANGE):
                rows, keep = _dedup_bucket(store, rows, snapshot, res, codes)
                birds = _bird_rows(rows, codes, keep)
                if not birds:
                    continue
                in_flight.append([pool.submit(_write_bird, store, batch_id, part, kept) for part, kept in birds])
                res.rows_kept += int(keep.sum())
                res.individuals += len(birds)
                _count_by_file(res.kept_by_file, rows.column(S.SOURCE_FILE), keep)
                while len(in_flight) > 1:
                    res.part_files.extend(f.result() for f in in_flight.popleft())
        while in_flight:
            res.part_files.extend(f.result() for f in in_flight.popleft())
    if fsync and res.part_files and not store.is_remote:  # an object is durable once its PUT returns
        # one flush of everything written (data and renames) instead of two fsyncs per part
        # file; the ledger commit that makes them visible comes after this returns
        os.sync()
    return res


def _bird_codes(table: pa.Table) -> np.ndarray:
    """One integer per (species, individual) pair, from the two columns' dictionary codes (no string joins).

    Codes rise with the individual's first appearance, so rows already
    grouped by bird (one species per individual) have non-decreasing codes.
    """
    individual = _codes(table.column(S.INDIVIDUAL_ID)).astype(np.int64)
    species = _codes(table.column(S.SPECIES)).astype(np.int64)
    n_species = int(species.max()) + 1 if len(species) else 1
    return individual * n_species + species


def _bird_order(table: pa.Table) -> tuple[np.ndarray | None, np.ndarray]:
    """The row order that puts each bird's rows together in time order (ties keep staged file/line order).

    Returns that order, or None when the rows already are so (the usual
    Movebank export: one pass checks), and the bird codes in that order. The
    sort is a stable one on integer keys, much cheaper than on the id strings.
    """
    bird = _bird_codes(table)
    t = _i64(table.column(S.TIMESTAMP))
    step = bird[1:] - bird[:-1]
    if np.all((step > 0) | ((step == 0) & (t[1:] >= t[:-1]))):
        return None, bird
    order = np.lexsort((t, bird))
    return order, bird[order]


def _bird_ranges(table: pa.Table, bird: np.ndarray, order: np.ndarray | None,
                 rows_per_range: int) -> Iterator[tuple[pa.Table, np.ndarray]]:
    """The rows of ``table`` in bird ``order`` (see :func:`_bird_order`), cut between birds into ranges of
    about ``rows_per_range`` rows, with their bird codes.

    Ranges are zero-copy slices when the rows already are in order, else
    taken one range at a time (so at most a range is copied at once).
    """
    n = len(bird)
    starts = np.flatnonzero(np.concatenate([[True], bird[1:] != bird[:-1]])) if n else np.zeros(0, dtype=np.int64)
    at = np.searchsorted(starts, np.arange(rows_per_range, n, rows_per_range))
    bounds = np.unique(np.concatenate([[0], starts[at[at < len(starts)]], [n]])).tolist()
    for a, b in zip(bounds[:-1], bounds[1:]):
        rows = table.slice(a, b - a) if order is None else table.take(pa.array(order[a:b]))
        yield rows, bird[a:b]


def _bird_rows(table: pa.Table, bird: np.ndarray, keep: np.ndarray) -> list[tuple[pa.Table, np.ndarray | None]]:
    """Each bird's rows of a grouped table (zero-copy slices) with the mask of those to keep (None: all).

    Birds none of whose rows are kept are left out.
    """
    change = np.flatnonzero(bird[1:] != bird[:-1]) + 1
    starts = np.concatenate([[0], change]).astype(np.int64)
    ends = np.concatenate([change, [len(bird)]]).astype(np.int64)
    dropped = np.add.reduceat(~keep, starts) if len(bird) else np.zeros(0, dtype=np.int64)
    return [(table.slice(a, b - a), keep[a:b] if n else None)
            for a, b, n in zip(starts.tolist(), ends.tolist(), dropped.tolist()) if n < b - a]


def _write_bird(store: Store, batch_id: str, rows: pa.Table, kept: np.ndarray | None) -> str:
    """Drop the rows not ``kept`` (on the writer thread: this copies) and write the bird's part file."""
    return _write_part(store, batch_id, rows if kept is None else rows.filter(pa.array(kept)))


def _dedup_bucket(store: Store, new: pa.Table, snapshot, res: FinalizeResult,
                  bird: np.ndarray | None = None) -> tuple[pa.Table, np.ndarray]:
    """Drop fixes already stored or repeated; quarantine reused event ids; flag shared timestamps.

    Vectorised over many individuals at once; ``new`` is sorted by
    individual and time, so "first" means earliest in the file. Returns
    ``new`` with its QC flags updated and the mask of its rows to keep.
    """
    if bird is None:
        bird = _bird_codes(new)
    first_rows = np.flatnonzero(np.concatenate([[True], bird[1:] != bird[:-1]]))  # every bird starts a run
    ids = pc.unique(new.column(S.INDIVIDUAL_ID).take(pa.array(first_rows))).to_pylist()
    old = store.scan_fixes(individuals=ids, columns=[S.INDIVIDUAL_ID, S.TIMESTAMP, S.LON, S.LAT, S.EVENT_ID],
                           snapshot=snapshot)
    if old.num_rows == 0:  # first data of these birds: a numpy pass over sorted rows
        keep, flags = _dedup_sorted_masks(new, res, bird)
    else:
        keep, flags = _dedup_against_masks(new, old, res)
    return _with_flags(new, flags), keep


def _qc_flags(table: pa.Table) -> np.ndarray:
    return table.column(S.QC_FLAGS).to_numpy().copy()


def _with_flags(table: pa.Table, flags: np.ndarray | None) -> pa.Table:
    """``table`` with ``flags`` as its QC flags (unchanged when None)."""
    if flags is None:
        return table
    return table.set_column(table.schema.get_field_index(S.QC_FLAGS), S.QC_FLAGS, pa.array(flags, pa.uint32()))


def _apply_dedup(new: pa.Table, keep: np.ndarray, flags: np.ndarray | None) -> pa.Table:
    """``new`` with ``flags`` as its QC flags (when given), then only the rows to ``keep``."""
    new = _with_flags(new, flags)
    return new if keep.all() else new.filter(pa.array(keep))


def _dedup_against(new: pa.Table, old: pa.Table, res: FinalizeResult) -> pa.Table:
    """The general case of :func:`_dedup_bucket`: hash (individual, time, position) over old and new rows."""
    return _apply_dedup(new, *_dedup_against_masks(new, old, res))


def _dedup_against_masks(new: pa.Table, old: pa.Table, res: FinalizeResult) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`_dedup_against` as (rows of ``new`` to keep, their QC flags or None when unchanged)."""
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
    # same time, different position: keep both, flag both (QC decides later)
    sel = keep | keep_old
    same_t = keys[sel][["i", "t"]].duplicated(keep=False).to_numpy()[n_old:]
    keep = keep[n_old:]
    if not same_t.any():
        return keep, None
    flags = _qc_flags(new)
    flags[np.flatnonzero(keep)[same_t]] |= np.uint32(S.QCFlag.DUPLICATE_TIMESTAMP)
    return keep, flags


def _dedup_sorted(new: pa.Table, res: FinalizeResult, codes: np.ndarray | None = None) -> pa.Table:
    """:func:`_dedup_bucket` for rows with nothing stored before them, without hashing every row.

    ``new`` is sorted by individual and time, so rows sharing (individual,
    time) are neighbours: only those runs (rare) need a closer look.
    """
    return _apply_dedup(new, *_dedup_sorted_masks(new, res, codes))


def _dedup_sorted_masks(new: pa.Table, res: FinalizeResult,
                        codes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`_dedup_sorted` as (rows of ``new`` to keep, their QC flags or None when unchanged)."""
    n = new.num_rows
    if codes is None:
        codes = _codes(new.column(S.INDIVIDUAL_ID)).astype(np.int64)
    t = _i64(new.column(S.TIMESTAMP))
    same_prev = (codes[1:] == codes[:-1]) & (t[1:] == t[:-1])
    dup = np.zeros(n, dtype=bool)
    in_run = None
    if same_prev.any():
        in_run = np.zeros(n, dtype=bool)
        in_run[1:] |= same_prev
        in_run[:-1] |= same_prev
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
    if in_run is None:
        return keep, None
    kept = np.flatnonzero(keep)  # same time, different position: keep both, flag both
    k_same = (codes[kept][1:] == codes[kept][:-1]) & (t[kept][1:] == t[kept][:-1])
    mark = np.zeros(kept.size, dtype=bool)
    mark[1:] |= k_same
    mark[:-1] |= k_same
    if not mark.any():
        return keep, None
    flags = _qc_flags(new)
    flags[kept[mark]] |= np.uint32(S.QCFlag.DUPLICATE_TIMESTAMP)
    return keep, flags


def _event_id_repeats(codes: np.ndarray, events, candidates: np.ndarray) -> np.ndarray:
    """Rows whose (individual, event id) already occurred earlier among ``candidates``."""
    ev = events.combine_chunks() if isinstance(events, pa.ChunkedArray) else events
    valid = candidates if ev.null_count == 0 else pc.is_valid(ev).to_numpy(zero_copy_only=False) & candidates
    out = np.zeros(len(codes), dtype=bool)
    if not valid.any():
        return out
    e = ev.fill_null(0).to_numpy(zero_copy_only=False)
    whole = bool(valid.all())
    c_v, e_v = (codes, e) if whole else (codes[valid], e[valid])
    # grouped rows whose ids rise strictly within each individual cannot repeat one (the usual export)
    step = c_v[1:] - c_v[:-1]
    if np.all((step > 0) | ((step == 0) & (e_v[1:] > e_v[:-1]))):
        return out
    rows = np.arange(len(codes)) if whole else np.flatnonzero(valid)
    order = np.lexsort((rows, e_v, c_v))  # by individual, event id, then row: the first stays
    c_s, e_s = c_v[order], e_v[order]
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
    """Each row's index into the distinct values of ``arr`` (numbered in order of first appearance)."""
    enc = pc.dictionary_encode(arr)
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.combine_chunks() if enc.num_chunks != 1 else enc.chunk(0)
    return enc.indices.to_numpy(zero_copy_only=False)


def _count_by_file(counts: dict[str, int], source_files: pa.Array, keep: np.ndarray | None = None) -> None:
    """Add the rows per source file (only those to ``keep``, when given) to ``counts``."""
    for item in pc.value_counts(source_files).to_pylist():
        counts[item["values"]] = counts.get(item["values"], 0) + item["counts"]
    if keep is not None and not keep.all():  # few rows go: count them off rather than filter all
        for item in pc.value_counts(source_files.filter(pa.array(~keep))).to_pylist():
            counts[item["values"]] -= item["counts"]


def _write_part(store: Store, batch_id: str, rows: pa.Table) -> str:
    """Write one individual's new fixes as ``part-<batch>.parquet`` (tmp, rename; one PUT on object
    storage); returns its store path."""
    species = rows.column(S.SPECIES)[0].as_py()
    individual = rows.column(S.INDIVIDUAL_ID)[0].as_py()
    n = rows.num_rows
    rows = rows.append_column(S.GEOMETRY, points_wkb(rows.column(S.LON).to_numpy(), rows.column(S.LAT).to_numpy()))
    rows = rows.append_column(S.BATCH_ID, constant_strings(batch_id, n))
    table = fixes_geo_table(S.FIXES.conform(rows), batch_id)
    final = store.partition_dir(species, individual) / f"{PART_PREFIX}{batch_id}.parquet"
    atomic_write(final, lambda fh: pq.write_table(table, fh, compression="zstd", row_group_size=128_000,
                                                  use_dictionary=_DICTIONARY, write_statistics=_STATISTICS),
                 fsync=False)  # finalize syncs all parts at once
    return store.relative(final)


def _i64(arr) -> np.ndarray:
    return arr.cast(pa.int64()).to_numpy(zero_copy_only=False) if len(arr) else np.array([], dtype=np.int64)


def _opt_i64(arr) -> np.ndarray:
    return np.asarray(arr.to_pandas().astype("Float64").to_numpy(dtype="f8", na_value=np.nan))


def _row_text(table: pa.Table) -> pa.Array:
    """Readable text of stored-form rows (for quarantine records of pass 2)."""
    cols = [pc.fill_null(table.column(c).cast(pa.string()), "") for c in
            (S.INDIVIDUAL_ID, S.TIMESTAMP, S.LON, S.LAT, S.EVENT_ID)]
    return pc.binary_join_element_wise(*cols, ",").combine_chunks()
