"""Rewriting a bird's part files: one current file per bird, committed through the ledger.

Used by QC (new flags) and by ``flyway store compact``: nightly ingests add
one small part file per bird per night, and readers pay per file. A rewrite
writes ``part-<new batch>.parquet`` beside the old files, then commits a
ledger row that lists the files it replaces (readers switch at that atomic
commit) and deletes the old ones. A crash before the commit leaves only an
uncommitted file, removed by the next writer; after it, only files readers
already ignore.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import pyarrow as pa

from flyway import schema as S
from flyway.geoparquet import atomic_write_table, constant_strings, read_parquet
from flyway.store import PART_PREFIX, Store, fixes_geo_table, new_batch_id


def write_rewrite_part(st: Store, batch_id: str, rows: pa.Table, fsync: bool = True) -> str:
    """Write one individual's rows as ``part-<batch>.parquet`` (tmp, fsync, rename; one PUT on object
    storage); returns its store path. ``fsync=False``: the caller syncs every part before committing."""
    species = rows.column(S.SPECIES)[0].as_py()
    ind = rows.column(S.INDIVIDUAL_ID)[0].as_py()
    rows = rows.set_column(rows.schema.get_field_index(S.BATCH_ID), S.BATCH_ID,
                           constant_strings(batch_id, rows.num_rows))
    path = st.partition_dir(species, ind) / f"{PART_PREFIX}{batch_id}.parquet"
    atomic_write_table(path, fixes_geo_table(S.FIXES.conform(rows.select(S.FIXES.names)), batch_id), fsync=fsync)
    return st.relative(path)


@dataclass
class CompactResult:
    individuals: int = 0
    files_before: int = 0
    files_after: int = 0
    batch_id: str | None = None


def compact(store: str | os.PathLike[str] | Store, min_files: int = 2) -> CompactResult:
    """Merge each bird's current part files into one (birds with at least ``min_files`` files).

    The fixes do not change (same rows, sorted by time); only the files do.
    """
    st = store if isinstance(store, Store) else Store(store)
    st.require()
    res = CompactResult()
    with st.lock("compact"):
        st.remove_uncommitted()
        snap = st.snapshot()
        by_folder: dict = {}
        for f in st.fix_files(snapshot=snap):
            by_folder.setdefault(f.parent, []).append(f)
        res.files_before = sum(len(v) for v in by_folder.values())
        batch_id = new_batch_id()
        new_parts: list[str] = []
        replaced: list[str] = []
        for files in by_folder.values():
            if len(files) < min_files:
                continue
            table = pa.concat_tables([read_parquet(f, schema=S.FIXES.arrow_schema()) for f in files])
            table = table.sort_by([(S.TIMESTAMP, "ascending"), (S.SOURCE_FILE, "ascending"),
                                   (S.SOURCE_LINE, "ascending")])
            new_parts.append(write_rewrite_part(st, batch_id, table))
            replaced.extend(st.relative(f) for f in files)
            res.individuals += 1
        if new_parts:
            st.commit_rewrite(batch_id, "compact", new_parts, replaced)
            res.batch_id = batch_id
        res.files_after = res.files_before - len(replaced) + len(new_parts)
    return res
