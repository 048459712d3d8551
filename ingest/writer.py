"""Pass 2 of ingest: deduplicate the staged rows and write one part file per individual.

Pass 1 (:mod:`flyway.ingest.staging`) leaves the accepted rows in memory or
in a few bucket files. Pass 2 takes one bucket at a time, groups it by bird,
and for a few birds at a time removes fixes already in the store or repeated
in the batch (:mod:`flyway.ingest.dedup`), flags duplicate timestamps, and
writes ``part-<batch>.parquet`` per individual (:mod:`flyway.ingest.parts`:
tmp, then rename; one ``sync`` for all of them) while the next birds are
deduplicated. Nothing becomes visible to readers until the
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
import pyarrow as pa

from flyway import schema as S
from flyway.geoparquet import sync_paths
from flyway.ingest.dedup import count_by_file, dedup_bucket, i64, value_codes
from flyway.ingest.parts import PartWriter
from flyway.ingest.staging import read_staged
from flyway.store import Store

_ROWS_PER_RANGE = 1 << 17  # pass 2 deduplicates this many rows (whole birds) before handing them to the writers
_MAX_KEPT_RUNS = 16  # a bird's kept rows in at most this many runs are written as slices, not copied


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
        # the writer's one-off set-up (CRS metadata: imports pyproj) runs while the first bucket is grouped
        part_writer = pool.submit(PartWriter, store, batch_id)
        for paths in buckets:
            table = pa.concat_tables([read_staged(p) for p in paths])
            if table.num_rows == 0:
                continue
            order, bird = _bird_order(table)
            # a few birds at a time, so their part files are being written while the next are deduplicated
            for rows, codes in _bird_ranges(table, bird, order, _ROWS_PER_RANGE):
                rows, keep = dedup_bucket(store, rows, snapshot, res, codes)
                birds = _bird_rows(rows, codes, keep)
                if not birds:
                    continue
                in_flight.append([pool.submit(_write_bird, part_writer.result(), part, kept) for part, kept in birds])
                res.rows_kept += int(keep.sum())
                res.individuals += len(birds)
                count_by_file(res.kept_by_file, rows.column(S.SOURCE_FILE), keep)
                while len(in_flight) > 1:
                    res.part_files.extend(f.result() for f in in_flight.popleft())
        while in_flight:
            res.part_files.extend(f.result() for f in in_flight.popleft())
    if fsync and res.part_files and not store.is_remote:  # an object is durable once its PUT returns
        # the part files and their folders flushed together (not os.sync, which waits for whatever
        # else the machine wrote); the ledger commit that makes them visible comes after this returns
        sync_paths([store.path / p for p in res.part_files])
    return res


def _bird_codes(table: pa.Table) -> np.ndarray:
    """One integer per (species, individual) pair, from the two columns' dictionary codes (no string joins).

    Codes rise with the individual's first appearance, so rows already
    grouped by bird (one species per individual) have non-decreasing codes.
    """
    individual = value_codes(table.column(S.INDIVIDUAL_ID)).astype(np.int64)
    species = value_codes(table.column(S.SPECIES)).astype(np.int64)
    n_species = int(species.max()) + 1 if len(species) else 1
    return individual * n_species + species


def _bird_order(table: pa.Table) -> tuple[np.ndarray | None, np.ndarray]:
    """The row order that puts each bird's rows together in time order (ties keep staged file/line order).

    Returns that order, or None when the rows already are so (the usual
    Movebank export: one pass checks), and the bird codes in that order. The
    sort is a stable one on integer keys, much cheaper than on the id strings.
    """
    bird = _bird_codes(table)
    t = i64(table.column(S.TIMESTAMP))
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


def _write_bird(writer: PartWriter, rows: pa.Table, kept: np.ndarray | None) -> str:
    """Drop the rows not ``kept`` (on the writer thread) and write the bird's part file."""
    return writer.write(_kept_rows(rows, kept))


def _kept_rows(rows: pa.Table, kept: np.ndarray | None) -> pa.Table:
    """The rows of ``rows`` to keep (``None``: all).

    A few dropped rows (the usual duplicates) leave a few runs of kept rows:
    those are zero-copy slices, cheaper than copying the whole table in a
    filter; a mask with many runs is filtered.
    """
    if kept is None:
        return rows
    edges = np.flatnonzero(np.diff(np.concatenate(([0], kept.view(np.int8), [0]))))
    starts, ends = edges[0::2].tolist(), edges[1::2].tolist()
    if not starts or len(starts) > _MAX_KEPT_RUNS:
        return rows.filter(pa.array(kept))
    return pa.concat_tables([rows.slice(a, b - a) for a, b in zip(starts, ends)])
