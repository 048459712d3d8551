"""The store's work on object storage: the ledger's conditional commit, listings, clean-up, reads.

:class:`flyway.store.Store` hands its work here when it was opened from a
URL (``s3://bucket/prefix``). Same layout, same rules as on a disk — readers
see only part files the ledger names, a writer first removes what never got
committed — but without renames: each file is one PUT, and the ledger, the
commit point, is one PUT of the whole new ledger conditional on the ETag the
writer's lock saw (:mod:`flyway.objectstore` has the primitives and the lock).
"""
from __future__ import annotations

import io
import json
import shutil
import uuid
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from flyway import objectstore
from flyway import schema as S
from flyway.errors import StoreError, StoreLockedError
from flyway.store import (FIXES_DIR, INDIVIDUAL_KEY, LEDGER_SCHEMA, LOCK_FILE, PART_PREFIX, QUARANTINE_DIR,
                          SPECIES_KEY, Store, _as_list, batch_of_part, conform_ledger, new_batch_id, slug)


# ------------------------------------------------------------------------------------ ledger
def read_ledger(st: Store) -> tuple[pa.Table, str | None, dict[str, Any]]:
    """The ledger, its ETag and its flyway metadata, from one GET (empty ledger, ``None`` when absent)."""
    data, etag = objectstore.get_object(st.ledger_path)
    if data is None:
        return LEDGER_SCHEMA.empty_table(), None, {}
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (OSError, pa.ArrowInvalid) as exc:
        raise StoreError(f"{st.ledger_path}: ledger unreadable ({exc})") from exc
    meta = json.loads((table.schema.metadata or {}).get(b"flyway", b"{}"))
    return conform_ledger(table), etag, meta


def _ledger_bytes(table: pa.Table, **meta: str) -> bytes:
    buf = io.BytesIO()
    info = {"table": "ledger", **meta}
    pq.write_table(table.replace_schema_metadata({b"flyway": json.dumps(info).encode()}), buf, compression="zstd")
    return buf.getvalue()


def _put_ledger(st: Store, table: pa.Table, etag: str | None, **meta: str) -> str | None:
    """One PUT of the whole ledger, ``If-Match: etag`` (``None``: only if there is none); returns the new ETag.

    Raises :class:`objectstore.ConditionFailed` when another writer changed
    the ledger. A PUT whose first attempt landed but whose answer was lost is
    retried by botocore and then fails its condition: the commit token in the
    object tells that case from a real conflict.
    """
    token = uuid.uuid4().hex
    try:
        return objectstore.put_if(st.ledger_path, _ledger_bytes(table, commit=token, **meta), etag)
    except objectstore.ConditionFailed:
        _, now_etag, now_meta = read_ledger(st)
        if now_meta.get("commit") == token:
            return now_etag
        raise


def commit(st: Store, new: pa.Table) -> None:
    """Append ledger rows: the commit point, refused (:class:`StoreLockedError`) if another writer intervened.

    Under the store lock the PUT is conditional on the ledger the lock saw
    when it was taken (so a writer whose lock expired and was taken over
    cannot commit); without the lock, on the ledger just read.
    """
    lock = objectstore.held(st.path / LOCK_FILE)
    old, etag, _ = read_ledger(st)
    cas = objectstore.supports_etags(st.ledger_path)
    batches = ", ".join(sorted(set(new.column("batch_id").to_pylist())))
    refused = (f"{st.path}: batch {batches} not committed: another writer took the store over "
               "(this writer's lock had expired); its part files are removed by the next write")
    if lock is not None and (lock.lost or (cas and etag != lock.ledger_etag)):
        raise StoreLockedError(refused)
    table = pa.concat_tables([old, new])
    if not cas:
        objectstore.put_object(st.ledger_path, _ledger_bytes(table))
        return
    try:
        new_etag = _put_ledger(st, table, etag)
    except objectstore.ConditionFailed:
        raise StoreLockedError(refused) from None
    if lock is not None:
        lock.ledger_etag = new_etag


def fence(st: Store) -> str | None:
    """After taking over an expired lock: give the ledger a new ETag, so the old holder's commit fails.

    The old holder may be stalled rather than dead; its part files are about
    to be removed as uncommitted, so its ledger PUT (conditional on the ETag
    it saw) must never succeed later. Returns the ETag the new holder commits
    against. A store with neither ledger nor fixes has nothing to fence.
    """
    if not objectstore.supports_etags(st.ledger_path):
        return None
    while True:
        table, etag, _ = read_ledger(st)
        if etag is None and not st.fixes_dir.exists():
            return None
        try:
            return _put_ledger(st, table, etag, fence=new_batch_id())
        except objectstore.ConditionFailed:
            continue  # the old holder committed just now: fence the ledger it wrote


# ------------------------------------------------------------------------ listings, clean-up
def listing(st: Store, folder: str) -> dict[str, int]:
    """Objects under ``folder`` of the store: store-relative name -> bytes (one paginated LIST)."""
    return {f"{folder}/{rel}": size for rel, size in objectstore.find(st.path / folder).items()}


def delete_replaced(st: Store) -> int:
    """Delete part files a committed rewrite superseded; returns how many."""
    present = listing(st, FIXES_DIR)
    return objectstore.delete([st.path / rel for rel in sorted(st.replaced_parts()) if rel in present])


def remove_uncommitted(st: Store) -> int:
    """Delete part and quarantine files of batches that never committed (call under the store lock)."""
    committed = st.committed_batches()
    doomed = []
    for rel in listing(st, FIXES_DIR):
        name = rel.rsplit("/", 1)[-1]
        batch = batch_of_part(name)
        if name.endswith(".tmp") or (batch is not None and batch not in committed):
            doomed.append(rel)
    for rel in listing(st, QUARANTINE_DIR):
        name = rel[len(QUARANTINE_DIR) + 1:]
        if "/" not in name and (name.endswith(".tmp") or
                                (name.endswith(".parquet") and name[: -len(".parquet")] not in committed)):
            doomed.append(rel)
    removed = objectstore.delete([st.path / rel for rel in doomed])
    shutil.rmtree(st._staging_root(), ignore_errors=True)  # this host's work area of dead ingests
    return removed + delete_replaced(st)


# ------------------------------------------------------------------------------------ reading
def fix_files(st: Store, species, individuals, snapshot) -> list[Any]:
    """:meth:`Store.fix_files` here: one listing of the fixes prefix (or of each named species)."""
    committed, replaced = st.snapshot() if snapshot is None else snapshot
    folders = ([f"{FIXES_DIR}/{SPECIES_KEY}={slug(s)}" for s in sorted(set(_as_list(species)))]
               if species is not None else [FIXES_DIR])
    wanted = {f"{INDIVIDUAL_KEY}={slug(i)}" for i in _as_list(individuals)} if individuals is not None else None
    found = []
    for folder in folders:
        for rel in listing(st, folder):
            parts = rel.split("/")
            if (len(parts) == 4 and parts[1].startswith(f"{SPECIES_KEY}=")
                    and parts[2].startswith(f"{INDIVIDUAL_KEY}=") and parts[3].startswith(PART_PREFIX)
                    and parts[3].endswith(".parquet") and (wanted is None or parts[2] in wanted)
                    and batch_of_part(parts[3]) in committed and rel not in replaced):
                found.append(parts)
    return [st.path.joinpath(*parts) for parts in sorted(found)]  # the order of the local listing


def file_sizes(st: Store, files: Sequence[Any]) -> list[int]:
    sizes = listing(st, FIXES_DIR)
    return [sizes.get(st.relative(f), 0) for f in files]


def read_parts(files: Sequence[Any], columns: list[str], expr) -> pa.Table:
    """Fixes of part files: one concurrent GET each (a pyarrow dataset would HEAD every file first, in turn)."""
    schema = S.FIXES.arrow_schema()
    return pa.concat_tables([pq.read_table(pa.BufferReader(blob), schema=schema, columns=columns, filters=expr)
                             for blob in objectstore.get_many(list(files))])


def read_quarantine(st: Store, committed: set[str]) -> list[pa.Table]:
    names = sorted(rel.rsplit("/", 1)[-1] for rel in listing(st, QUARANTINE_DIR))
    files = [st.quarantine_dir / n for n in names if n.endswith(".parquet") and n[: -len(".parquet")] in committed]
    return [pq.read_table(pa.BufferReader(blob)) for blob in objectstore.get_many(files)]
