"""What is in a store: individuals, species, fixes, time span, quarantine, ledger.

Read from Parquet footers (row counts, min/max statistics) and the ledger,
so it costs one footer per part file, not a scan of the fixes.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from flyway import schema as S
from flyway.geoparquet import read_metadata, read_metadata_many, read_parquet
from flyway.ingest import quarantine as Q
from flyway.store import STATUS_COMMITTED, STATUS_REJECTED, Store, part_facts


@dataclass
class SpeciesInfo:
    species: str
    individuals: int = 0
    fixes: int = 0
    first: str | None = None
    last: str | None = None


@dataclass
class StoreInfo:
    """Summary of a store (see :func:`store_info`)."""

    store: str
    individuals: int = 0
    species: list[SpeciesInfo] = field(default_factory=list)
    fixes: int = 0
    first: str | None = None
    last: str | None = None
    files_ingested: int = 0
    files_rejected: int = 0
    batches: int = 0
    quarantined_rows: int = 0
    quarantined_values: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    part_files: int = 0
    size_bytes: int = 0
    derived: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def store_info(store: str | os.PathLike[str] | Store) -> StoreInfo:
    """Summarise a store without reading its fixes.

    Returns
    -------
    StoreInfo
        Individuals, species (with fixes and time span each), fixes, time
        span, ingested / rejected files, quarantined rows and values by
        reason, part files, bytes on disk, rows of derived tables.
    """
    st = store if isinstance(store, Store) else Store(store)
    st.require()
    info = StoreInfo(store=str(st.path))
    per_species: dict[str, SpeciesInfo] = {}
    individuals: set[str] = set()
    files = st.fix_files()
    for f, md, size in zip(files, read_metadata_many(files), st.file_sizes(files)):
        sp, ind, t0, t1 = part_facts(md)
        if sp is None or ind is None:  # statistics absent (e.g. very long ids): read one row
            first = read_parquet(f, columns=[S.SPECIES, S.INDIVIDUAL_ID]).slice(0, 1).to_pylist()[0]
            sp, ind = first[S.SPECIES], first[S.INDIVIDUAL_ID]
        s = per_species.setdefault(sp, SpeciesInfo(species=sp))
        if ind not in individuals:
            individuals.add(ind)
            s.individuals += 1
        s.fixes += md.num_rows
        s.first = min(filter(None, [s.first, t0]), default=None)
        s.last = max(filter(None, [s.last, t1]), default=None)
        info.part_files += 1
        info.size_bytes += size
    info.species = sorted(per_species.values(), key=lambda s: s.species)
    info.individuals = len(individuals)
    info.fixes = sum(s.fixes for s in info.species)
    info.first = min((s.first for s in info.species if s.first), default=None)
    info.last = max((s.last for s in info.species if s.last), default=None)
    led = st.read_ledger().to_pandas()
    if len(led):
        info.files_ingested = int((led["status"] == STATUS_COMMITTED).sum())
        info.files_rejected = int((led["status"] == STATUS_REJECTED).sum())
        info.batches = int(led.loc[led["status"] == STATUS_COMMITTED, "batch_id"].nunique())
    q = st.read_quarantine()
    if q.num_rows:
        actions = q.column("action").to_pylist()
        info.quarantined_rows = actions.count(Q.ROW)
        info.quarantined_values = actions.count(Q.VALUE)
        info.quarantine_reasons = Q.summarise(q)
    for name in S.TABLES:
        path = st.path / name / f"{name}.parquet"
        if name != S.FIXES.name and path.exists():
            info.derived[name] = read_metadata(path).num_rows
    return info
