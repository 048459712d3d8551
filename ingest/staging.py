"""Pass 1 of ingest: stage the accepted rows until the whole batch has been read.

Rows are held in memory, in file order, up to a budget
(:data:`STAGING_MEMORY_BYTES`): a file of up to ~250 MB of CSV is never
written twice. Past the budget everything goes to a few *bucket* files in
``STORE/_staging/<batch>/`` (Arrow IPC; an individual always lands in the
same bucket), so memory stays bounded however large the input. Pass 2
(:func:`flyway.ingest.writer.finalize`) takes the staged rows a bucket at a
time.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flyway import schema as S
from flyway.store import Store

BUCKET_TARGET_BYTES = 32 << 20  # ~ one bucket per 32 MB of CSV: bounds pass-2 memory
MAX_BUCKETS = 256
# Rows a batch holds in memory before staging spills to bucket files on disk: a file up to
# ~250 MB of CSV is never written twice, and larger input still runs in bounded memory.
STAGING_MEMORY_BYTES = 256 << 20
_STAGED = [c for c in S.FIXES.names if c not in (S.GEOMETRY, S.BATCH_ID)]


def bucket_count(total_bytes: int) -> int:
    """How many bucket files staging spills ``total_bytes`` of input into (used only past the memory budget)."""
    return int(min(MAX_BUCKETS, max(1, -(-total_bytes // BUCKET_TARGET_BYTES))))


class Stager:
    """Pass 1: hold accepted rows in memory, or spill them to bucket files by individual.

    Rows are held in memory, in file order, up to ``memory_bytes``: a batch
    that stays below that never touches the disk and pass 2 takes it as one
    bucket. Past it, everything is split into ``n_buckets`` bucket files (an
    individual always lands in the same bucket) and later rows go straight
    there, so memory stays bounded however large the input. ``input_bytes``
    (the batch's CSV size, when known) above the budget spills from the start.

    Each source stages under its own ``tag``, so a source that is rejected
    or re-read part-way through can be discarded without touching the others.
    """

    def __init__(self, store: Store, batch_id: str, n_buckets: int, memory_bytes: int | None = None,
                 input_bytes: int | None = None) -> None:
        self.dir = store.staging_dir(batch_id)
        self.n_buckets = n_buckets
        self.memory_bytes = STAGING_MEMORY_BYTES if memory_bytes is None else memory_bytes
        full = S.FIXES.arrow_schema()
        self.schema = pa.schema([full.field(c) for c in _STAGED])
        self._held: dict[str, list[pa.Table]] = {}
        self._held_bytes = 0
        # once True, rows go to bucket files (read by the parse threads: only ever set). Input known to be
        # larger than the budget goes there from the start (staged rows take about as much as their CSV).
        self.spilled = input_bytes is not None and input_bytes > self.memory_bytes
        self._writers: dict[tuple[int, str], pa.ipc.RecordBatchFileWriter] = {}

    def _path(self, bucket: int, tag: str) -> Path:
        return self.dir / f"bucket-{bucket:03d}-{tag}.arrow"

    def conform(self, table: pa.Table) -> pa.Table:
        """``table`` in the staged schema (pure: safe on any thread)."""
        for name in _STAGED:
            if name not in table.column_names:
                field = self.schema.field(name)
                table = table.append_column(field, pa.nulls(table.num_rows, field.type))
        return table.select(_STAGED).cast(self.schema)

    def prepare(self, table: pa.Table) -> list[tuple[int | None, pa.Table]]:
        """What :meth:`write` takes: the rows whole (bucket ``None``) while staging is in memory, else per bucket.

        Safe on any thread: it only reads whether staging has spilled, and
        :meth:`write` accepts either form whatever happened since.
        """
        if table.num_rows == 0:
            return []
        return self.split(table) if self.spilled else [(None, self.conform(table))]

    def split(self, table: pa.Table) -> list[tuple[int, pa.Table]]:
        """The rows of ``table`` per bucket, in the staged schema (pure: safe on any thread)."""
        if table.num_rows == 0:
            return []
        table = self.conform(table)
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

    def write(self, parts: list[tuple[int | None, pa.Table]], tag: str) -> None:
        """Stage the output of :meth:`prepare` or :meth:`split` under ``tag`` (one thread at a time)."""
        for bucket, part in parts:
            if bucket is not None:
                self._append(bucket, tag, part)
            elif self.spilled:
                for b, rows in self.split(part):
                    self._append(b, tag, rows)
            else:
                self._held.setdefault(tag, []).append(part)
                self._held_bytes += part.get_total_buffer_size()
        if self._held_bytes > self.memory_bytes:
            self._spill()

    def _append(self, bucket: int, tag: str, rows: pa.Table) -> None:
        key = (bucket, tag)
        writer = self._writers.get(key)
        if writer is None:
            # Arrow IPC, uncompressed: staging is written once and read once, so speed beats size
            self.dir.mkdir(parents=True, exist_ok=True)
            writer = pa.ipc.new_file(str(self._path(*key)), self.schema)
            self._writers[key] = writer
        writer.write_table(rows)

    def _spill(self) -> None:
        """Move the held rows to bucket files, one table at a time so memory falls as it goes."""
        self.spilled = True
        while self._held:
            tag, tables = next(iter(self._held.items()))
            while tables:
                for bucket, rows in self.split(tables.pop(0)):
                    self._append(bucket, tag, rows)
            del self._held[tag]
        self._held_bytes = 0

    def add(self, table: pa.Table, tag: str) -> None:
        self.write(self.prepare(table), tag)

    def discard(self, tag: str) -> None:
        """Forget everything staged under ``tag``."""
        for table in self._held.pop(tag, []):
            self._held_bytes -= table.get_total_buffer_size()
        for key in [k for k in self._writers if k[1] == tag]:
            self._writers.pop(key).close()
            self._path(*key).unlink(missing_ok=True)

    def close(self) -> list[list[Path | pa.Table]]:
        """Close all files; returns the staged rows grouped by bucket (one group per bucket).

        A group lists bucket files, or, when staging never spilled, holds the
        rows themselves (every source's tables in tag and file order).
        """
        if self._held:
            held = [table for tag in sorted(self._held) for table in self._held[tag]]
            self._held.clear()
            self._held_bytes = 0
            return [held]
        groups: dict[int, list[Path]] = {}
        for (bucket, tag), writer in sorted(self._writers.items()):
            writer.close()
            groups.setdefault(bucket, []).append(self._path(bucket, tag))
        self._writers.clear()
        return [groups[b] for b in sorted(groups)]


def _bucket(individual_id: str, n: int) -> int:
    return int.from_bytes(hashlib.blake2b(individual_id.encode("utf-8", "surrogatepass"), digest_size=4).digest(),
                          "little") % n


def read_staged(path: Path | pa.Table) -> pa.Table:
    """The rows of one staged group member: a bucket file, or a table held in memory."""
    if isinstance(path, pa.Table):  # held in memory: staging never spilled
        return path
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()
