"""The store shell of the QC and stop stages: read fixes, call the cores, write results.

The cores (:mod:`flyway.analysis.qc`, :mod:`flyway.analysis.stops`) never
touch the filesystem; this module does nothing but move data between them
and the store. Work is cut into groups of whole individuals so memory stays
bounded by the group size, not by the store, and groups run on a dask
cluster when one is given (each task opens the store from its path or URL
and reads its own individuals, so workers need the store's folder or, for
``s3://`` stores, only the same environment variables for the endpoint).
"""
from __future__ import annotations

import logging
import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from flyway import schema as S
from flyway.analysis.countries import country_of
from flyway.analysis.parallel import resolve_client
from flyway.analysis.qc import flag_counts, qc_flags
from flyway.analysis.stops import detect_stops, stop_params, stops_table
from flyway.compact import write_rewrite_part
from flyway.geoparquet import read_metadata_many, read_parquet, sync_paths
from flyway.store import Store, new_batch_id, part_facts, sort_fixes, write_derived

log = logging.getLogger(__name__)

GROUP_FIXES = 1_000_000  # fixes per task: bounds memory per worker
STOP_COLUMNS = [S.INDIVIDUAL_ID, S.SPECIES, S.TIMESTAMP, S.LON, S.LAT, S.QC_FLAGS, S.LIFE_STAGE]
QC_INPUT = [S.INDIVIDUAL_ID, S.SPECIES, S.TIMESTAMP, S.LON, S.LAT, S.HDOP, S.SATELLITES, S.QC_FLAGS]


@dataclass(frozen=True)
class Individual:
    species: str
    individual_id: str
    fixes: int


def individuals(store: Store, species: Iterable[str] | None = None,
                only: Iterable[str] | None = None) -> list[Individual]:
    """Individuals of a store with their fix counts, from Parquet footers."""
    snap = store.snapshot()
    by_folder: dict[Any, list] = {}
    files = store.fix_files(species, only, snapshot=snap)
    footers = dict(zip(files, read_metadata_many(files)))  # concurrent on object storage
    for f in files:
        by_folder.setdefault(f.parent, []).append(f)
    out = []
    for files in by_folder.values():
        sp, ind, _, _ = part_facts(footers[files[0]])
        if sp is None or ind is None:  # statistics absent (e.g. very long ids): read one row
            first = read_parquet(files[0], columns=[S.SPECIES, S.INDIVIDUAL_ID]).slice(0, 1).to_pylist()
            if not first:
                continue
            sp, ind = first[0][S.SPECIES], first[0][S.INDIVIDUAL_ID]
        out.append(Individual(sp, ind, sum(footers[f].num_rows for f in files)))
    return sorted(out, key=lambda i: (i.species, i.individual_id))


def group_individuals(inds: Sequence[Individual], max_fixes: int = GROUP_FIXES) -> list[list[str]]:
    """Consecutive groups of whole individuals with at most ``max_fixes`` fixes each (or one bird)."""
    groups: list[list[str]] = []
    current: list[str] = []
    size = 0
    for ind in inds:
        if current and size + ind.fixes > max_fixes:
            groups.append(current)
            current, size = [], 0
        current.append(ind.individual_id)
        size += ind.fixes
    if current:
        groups.append(current)
    return groups


# ------------------------------------------------------------------------------------------ QC
@dataclass
class QCResult:
    """Counts per flag over the whole store, and how many part files were rewritten."""

    counts: dict[str, int] = field(default_factory=dict)
    fixes: int = 0
    individuals_changed: int = 0
    batch_id: str | None = None


def run_qc(store: str | os.PathLike[str] | Store, now: Any = None, species_config=None,
           individuals_only: Iterable[str] | None = None, lock: bool = True) -> QCResult:
    """Recompute QC flags of every fix and write them back into the store.

    Flags of an individual are rewritten (a new part file that supersedes its
    old ones, committed through the ledger) only when they changed, so a
    re-run on unchanged data writes nothing. Crash-safe like ingest. Takes
    the store's write lock unless ``lock=False`` (the caller holds it).
    """
    st = store if isinstance(store, Store) else Store(store)
    st.require()
    result = QCResult()
    total = np.zeros(0, np.uint32)
    with st.lock("qc") if lock else nullcontext():
        st.remove_uncommitted()
        snap = st.snapshot()
        batch_id = new_batch_id()
        new_parts: list[str] = []
        replaced: list[str] = []
        for group in group_individuals(individuals(st, only=individuals_only)):
            table = st.scan_fixes(individuals=group, snapshot=snap)  # sorted by individual and time
            flags = qc_flags(table.select(QC_INPUT).to_pandas(), now=now, species_config=species_config)
            total = np.concatenate([total, flags])
            old = table.column(S.QC_FLAGS).to_numpy()
            ids = table.column(S.INDIVIDUAL_ID).to_numpy(zero_copy_only=False)
            table = table.set_column(table.schema.get_field_index(S.QC_FLAGS), S.QC_FLAGS, pa.array(flags, pa.uint32()))
            starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, np.int64)
            ends = np.append(starts[1:], len(ids))
            changed = np.add.reduceat((old != flags).astype(np.int64), starts) > 0 if len(ids) else []
            for a, z, differs in zip(starts, ends, changed):
                if not differs:
                    continue
                ind = ids[a]
                new_parts.append(write_rewrite_part(st, batch_id, table.slice(a, z - a), fsync=False))
                replaced.extend(st.relative(f) for f in st.fix_files(individuals=[ind], snapshot=snap))
                result.individuals_changed += 1
        if new_parts:
            if not st.is_remote:
                sync_paths([st.path / p for p in new_parts])  # every new part durable before the commit names it
            st.commit_rewrite(batch_id, "qc", new_parts, replaced, message=f"now={now}")
            result.batch_id = batch_id
    result.counts = flag_counts(total)
    result.fixes = int(total.size)
    return result


# --------------------------------------------------------------------------------------- stops
def _stops_task(store_url: str, group: list[str], snapshot: tuple[set[str], set[str]],
                kwargs: dict[str, Any], boundaries=None) -> pd.DataFrame:
    """Pure function of its inputs: the stops of some individuals of a store snapshot, with countries.

    Takes the store as a string (absolute path or URL) and opens it itself,
    so a dask worker on another host needs no shared disk for an ``s3://`` store.
    """
    st = Store(store_url)
    if group and isinstance(group[0], tuple):  # part files (store-relative paths), whole birds
        files = [st.path / rel for _, rel in group]
        frame = sort_fixes(st.read_parts(files, STOP_COLUMNS)).to_pandas()
    else:
        frame = st.scan_fixes(individuals=group, columns=STOP_COLUMNS, snapshot=snapshot).to_pandas()
    stops = detect_stops(frame, **kwargs)
    if len(stops):
        stops[S.COUNTRY] = country_of(stops[S.LON].to_numpy(), stops[S.LAT].to_numpy(), boundaries)
    return stops


def _file_groups(st: Store, snapshot, n_groups: int) -> list[list[tuple[int, str]]]:
    """The store's current part files in about ``n_groups`` groups of whole birds (folders), by bytes.

    Items are ``(group key, store-relative path)`` so a task knows it got files, not individual ids.
    """
    files = st.fix_files(snapshot=snapshot)
    if not files:
        return []
    sizes = st.file_sizes(files)
    folders: dict[Any, list[tuple[Any, int]]] = {}
    for f, size in zip(files, sizes):
        folders.setdefault(f.parent, []).append((f, size))
    limit = sum(sizes) / max(1, n_groups)
    groups: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    used = 0
    for members in folders.values():
        weight = sum(size for _, size in members)
        if current and used + weight > limit:
            groups.append(current)
            current, used = [], 0
        current.extend((len(groups), st.relative(f)) for f, _ in members)
        used += weight
    if current:
        groups.append(current)
    return groups


def run_stops(store: str | os.PathLike[str] | Store, method: str = "flyway", max_diameter: float = 2000.0,
              min_duration: Any = "24h", *, client: Any = None, scheduler: str | None = None,
              individuals_only: Iterable[str] | None = None, boundaries=None, write: bool = True,
              progress: Callable[[int, int], None] | None = None, lock: bool = True,
              **options: Any) -> pd.DataFrame:
    """Detect stops for the whole store (or some individuals) and write ``stops/``.

    Runs on ``client`` / ``scheduler`` / ``DASK_SCHEDULER_ADDRESS`` when given,
    otherwise in this process. The country of each stop comes from Natural
    Earth outlines (or ``boundaries``). The table is written atomically with
    the effective parameters and the ledger state in its metadata.
    """
    st = store if isinstance(store, Store) else Store(store)
    st.require()
    snap = st.snapshot()
    kwargs = dict(method=method, max_diameter=max_diameter, min_duration=min_duration, **options)
    task = partial(_stops_task, st.url, snapshot=snap, kwargs=kwargs, boundaries=boundaries)
    frames: list[pd.DataFrame] = []
    with resolve_client(client, scheduler) as c:
        if c is not None and individuals_only is None:
            # every bird on a cluster: groups of part files from one listing (no footer reads on the
            # client while the workers wait), balanced by bytes, many per worker thread
            threads = max(1, sum(c.nthreads().values()))
            groups = _file_groups(st, snap, 16 * threads)
        elif c is not None:
            inds = individuals(st, only=individuals_only)
            total = sum(i.fixes for i in inds)
            threads = max(1, sum(c.nthreads().values()))
            groups = group_individuals(inds, max(50_000, min(GROUP_FIXES, total // (16 * threads) + 1)))
        else:
            groups = group_individuals(individuals(st, only=individuals_only))
        if c is None:
            for i, g in enumerate(groups):
                frames.append(task(g))
                if progress:
                    progress(i + 1, len(groups))
        else:
            log.info("stops: %d groups on %s", len(groups), c.scheduler.address)
            frames = c.gather(c.map(task, groups, pure=True))
    frames = [f for f in frames if len(f)]
    stops = pd.concat(frames, ignore_index=True) if frames else S.STOPS.empty().to_pandas()
    stops = stops.sort_values([S.INDIVIDUAL_ID, S.START_TIME], kind="mergesort", ignore_index=True)
    if write:
        params = stop_params(method, max_diameter, min_duration, **options).as_metadata()
        with st.lock("stops") if lock else nullcontext():
            write_derived(st, S.STOPS.name, stops_table(stops), params=params, geometry_types=["Point"])
    return stops


def stops_summary(stops: pd.DataFrame) -> pd.DataFrame:
    """Per species: birds, stops, stopovers and the median stopover length (days)."""
    if stops.empty:
        return pd.DataFrame(columns=["species", "birds", "stops", "stopovers", "median_stopover_days"])
    stopover = stops[S.KIND] == S.KIND_STOPOVER
    g = stops.groupby(S.SPECIES)
    out = pd.DataFrame({
        "birds": g[S.INDIVIDUAL_ID].nunique(),
        "stops": g.size(),
        "stopovers": stopover.groupby(stops[S.SPECIES]).sum(),
        "median_stopover_days": stops[stopover].groupby(S.SPECIES)[S.DURATION_H].median() / 24.0,
    }).reset_index()
    return out
