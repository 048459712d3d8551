"""The nightly tail path: QC, stops and tag summaries of a bird from the end of its track only.

Most nights a tag sends fixes that all follow the ones already in the store.
For such a bird (:func:`flyway.incremental.plan` decides) the nightly run
reads the end of its track (from the end of its third-to-last stop, and at
least :data:`LOOKBACK` before its previous newest fix) and its new part
files, and gets exactly the rows a recompute over the whole track would give:

QC
    Every flag but the speed test is a property of the fix (or of fixes
    with the same timestamp, which old and new never share). The speed
    test walks the usable fixes keeping the last accepted one; appending
    fixes can change only the decision at the last old usable fix, so the
    walk restarts at the accepted fix ``L`` before it, taken as accepted
    (``accepted_first``). The recomputed flags of the old rows in the window
    are compared with the stored ones; any difference, a future-timestamp
    flag at the end of the old track, or no such ``L`` sends the bird to the
    whole-track path. Only the bird's new part files are rewritten.
Stops
    The detector (:mod:`flyway.analysis._stop_kernels`) is causal; right
    after it closes a stop its state is that of a fresh start, and a stop
    that did not merge with the one before starts a fresh merge chain. The
    third-to-last stored stop and every stop before it are final: two
    stops follow it, so the raw stops it is made of, and the one after its
    merge chain, all end before the new data. So the stops before and
    including it are kept and the detector restarts at the first fix after
    it. The gap threshold ``max(gap_max, gap_factor x median interval)``
    depends on the whole track; the window uses ``gap_max`` when an upper
    bound of the median proves ``gap_factor x median <= gap_max`` before
    and after the night (the upper median of a union is at most the larger
    of the parts' upper medians, so the bound is carried in the nightly
    state); otherwise the bird takes the whole-track path. Season labels
    are recomputed over the bird's whole stop list (the kept stops' kinds
    are final and kept).
Tag summaries
    Counts add up; the usual interval is that of the last
    :data:`flyway.alerts.USUAL_INTERVALS` intervals; possible mortality
    needs the clean fixes since the last one farther than the radius, read
    whole when the window holds none.

Stops and tag summaries are in :mod:`flyway.tail_tables`. The tests compare
both paths on simulated nights (``tests/test_tail.py``)
and on 30 nightly slices against one full run (``tests/test_nightly.py``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from flyway import schema as S
from flyway.geoparquet import sync_paths
from flyway.store import Store, batch_of_part, sort_fixes

log = logging.getLogger(__name__)

#: the window reaches at least this far back before a bird's previous newest fix
LOOKBACK = pd.Timedelta(days=14)
#: the stored stops up to and including the ``KEEP_BACK``-th from the end are kept
KEEP_BACK = 3
F = S.QCFlag


def gap_dt_hi(ids: np.ndarray, t_ns: np.ndarray, ok: np.ndarray) -> dict[str, float]:
    """Upper median (ns) of the intervals between the distinct ``ok`` times of each individual.

    Rows sorted by individual and time. The stop detector's gap threshold is
    ``max(gap_max, gap_factor x median)`` of these intervals; the median is at
    most the upper median.
    """
    ids, t = ids[ok], t_ns[ok]
    if len(t) == 0:
        return {}
    keep = np.ones(len(t), bool)
    keep[1:] = (ids[1:] != ids[:-1]) | (t[1:] != t[:-1])
    ids, t = ids[keep], t[keep]
    same = ids[1:] == ids[:-1]
    d_ids, d = ids[1:][same], np.diff(t)[same]
    out = {i: np.nan for i in pd.unique(ids)}
    if len(d) == 0:
        return out
    codes, uniq = pd.factorize(d_ids, sort=True)
    order = np.lexsort((d, codes))
    codes, d = codes[order], d[order]
    counts = np.bincount(codes, minlength=len(uniq))
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    hi = d[first + counts // 2].astype(float)
    out.update(zip(uniq, hi))
    return out


def stop_rows(fixes: pd.DataFrame, stop_options: Mapping[str, Any]) -> tuple[np.ndarray, dict, np.ndarray]:
    """The rows stop detection uses (finite position, no flag its species ignores; as
    :func:`flyway.analysis.stops.prepare_fixes`), the stop parameters per species, and each row's species."""
    from flyway.analysis.params import load_species_config

    opts = dict(stop_options)
    cfg = opts.pop("species_config", None) or load_species_config()
    method = opts.pop("method", "flyway")
    max_diameter, min_duration = opts.pop("max_diameter", 2000.0), opts.pop("min_duration", "24h")
    sp_code, sp_names = pd.factorize(fixes[S.SPECIES].fillna("").to_numpy(dtype=object))
    params = {sp: cfg.stops(sp or None, method=method, max_diameter_m=max_diameter, min_duration=min_duration,
                            **opts) for sp in sp_names}
    ignore = np.array([params[sp].ignore_flags for sp in sp_names], dtype=np.uint32)[sp_code]
    flags = fixes[S.QC_FLAGS].fillna(0).to_numpy().astype(np.uint32)
    ok = np.isfinite(fixes[S.LON].to_numpy(float)) & np.isfinite(fixes[S.LAT].to_numpy(float)) & ((flags & ignore) == 0)
    species = np.asarray(sp_names, dtype=object)[sp_code] if len(sp_code) else np.zeros(0, dtype=object)
    return ok, params, species


def whole_bounds(fixes: pd.DataFrame, stop_options: Mapping[str, Any]) -> dict[str, float]:
    """:func:`gap_dt_hi` of whole tracks (rows sorted by individual and time), with each species' ignored flags."""
    from flyway.analysis.stops import _utc_ns

    if len(fixes) == 0 or stop_options.get("method", "flyway") != "flyway":
        return {}
    ok, _, _ = stop_rows(fixes, stop_options)
    return gap_dt_hi(fixes[S.INDIVIDUAL_ID].to_numpy(dtype=object), _utc_ns(fixes[S.TIMESTAMP]), ok)


@dataclass
class Windows:
    """The end of each tail bird's track (old rows from its window start) and its new rows."""

    old: pd.DataFrame                 # stored rows at or after each bird's window start
    new: pa.Table                     # every column of the bird's new part files
    new_files: dict[str, list[Any]]   # bird -> its new part files (rewritten by QC when flags change)
    start: dict[str, pd.Timestamp]    # bird -> window start (NaT: whole track)
    stop_after: dict[str, pd.Timestamp]  # bird -> the stops are recomputed from fixes after this (NaT: all)
    since: dict[str, pd.Timestamp]
    fallback: set[str] = field(default_factory=set)

    @property
    def birds(self) -> list[str]:
        return sorted(b for b in self.since if b not in self.fallback)

    @property
    def windowed(self) -> int:
        """Tail birds read from a window (not from their first fix)."""
        return sum(1 for b in self.birds if not pd.isna(self.start[b]))


def read_windows(st: Store, since: Mapping[str, pd.Timestamp], new_batches: set[str],
                 old_stops: pd.DataFrame, snapshot) -> Windows:
    """Read the tail of every bird in ``since`` (bird -> its previous newest fix)."""
    birds = sorted(since)
    files = st.fix_files(individuals=birds, snapshot=snapshot)
    by_bird = _files_by_bird(st, files)
    new_files = {b: [f for f in fs if batch_of_part(f.name) in new_batches] for b, fs in by_bird.items()}
    old_files = [f for fs in by_bird.values() for f in fs if batch_of_part(f.name) not in new_batches]
    stop_after, start = {}, {}
    stops = old_stops[old_stops[S.INDIVIDUAL_ID].isin(birds)].sort_values([S.INDIVIDUAL_ID, S.START_TIME],
                                                                         kind="mergesort")
    back = stops.groupby(S.INDIVIDUAL_ID, sort=False).cumcount(ascending=False).to_numpy()
    nth = stops[back == KEEP_BACK - 1]  # each bird's third-to-last stop
    last_kept = dict(zip(nth[S.INDIVIDUAL_ID], pd.to_datetime(nth[S.END_TIME], utc=True)))
    for b in birds:
        s0 = last_kept.get(b, pd.NaT)
        stop_after[b] = s0
        start[b] = pd.NaT if pd.isna(s0) else min(s0, since[b] - LOOKBACK)
    old = _read_old(st, old_files, start)
    new_list = [f for b in birds for f in new_files.get(b, [])]
    new = _read_table(st, new_list, S.FIXES.names)
    return Windows(old, new, new_files, start, stop_after, dict(since))


def _files_by_bird(st: Store, files: list[Any]) -> dict[str, list[Any]]:
    """Part files per individual id (one folder is one bird; the id from the footer statistics)."""
    from flyway.geoparquet import read_metadata_many
    from flyway.store import part_facts

    folders: dict[Any, list[Any]] = {}
    for f in files:
        folders.setdefault(f.parent, []).append(f)
    firsts = [fs[0] for fs in folders.values()]
    out: dict[str, list[Any]] = {}
    for fs, md in zip(folders.values(), read_metadata_many(firsts)):
        ind = part_facts(md)[1]
        if ind is None:
            ind = _read_table(st, fs[:1], [S.INDIVIDUAL_ID]).column(0)[0].as_py()
        out[ind] = sorted(fs, key=lambda p: p.name)
    return out


def _read_table(st: Store, files: list[Any], columns: list[str], expr=None, sort: bool = True) -> pa.Table:
    if not files:
        return S.FIXES.arrow_schema().empty_table().select(columns)
    table = st.read_parts(files, columns, expr)
    return sort_fixes(table) if sort else table


OLD_COLUMNS = [S.INDIVIDUAL_ID, S.SPECIES, S.TIMESTAMP, S.LON, S.LAT, S.HDOP, S.SATELLITES, S.QC_FLAGS,
               S.LIFE_STAGE]


def _read_old(st: Store, files: list[Any], start: Mapping[str, pd.Timestamp]) -> pd.DataFrame:
    """Stored rows of each bird at or after its window start (all rows where the start is NaT)."""
    finite = [t for t in start.values() if not pd.isna(t)]
    expr = None
    if finite and len(finite) == len(start):
        expr = ds.field(S.TIMESTAMP) >= pa.scalar(min(finite).to_pydatetime(), S.TIMESTAMP_TYPE)
    table = _read_table(st, files, OLD_COLUMNS, expr, sort=False)
    birds = sorted(start)
    lows = pa.array([start[b].value // 1000 if not pd.isna(start[b]) else np.iinfo(np.int64).min for b in birds],
                    pa.int64())
    code = pc.index_in(table.column(S.INDIVIDUAL_ID), value_set=pa.array(birds, pa.string()))
    low = pc.take(lows, code)
    t_us = pc.cast(table.column(S.TIMESTAMP), pa.int64())
    table = sort_fixes(table.filter(pc.greater_equal(t_us, low)))
    frame = table.to_pandas()
    return _objects(frame)


def _objects(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as numpy object arrays, converted once rather than by every later step."""
    for c in (S.INDIVIDUAL_ID, S.SPECIES, S.LIFE_STAGE):
        frame[c] = pd.Series(frame[c].to_numpy(dtype=object), index=frame.index, dtype=object)
    return frame


# ------------------------------------------------------------------------------------------- QC
@dataclass
class TailQC:
    batch_id: str | None = None
    rewritten: int = 0
    flags_new: pd.Series | None = None  # uint32 flags of ``Windows.new`` rows (aligned)


def tail_qc(st: Store, w: Windows, now: pd.Timestamp, species_config=None, lock: bool = True) -> TailQC:
    """QC flags of the new rows of every tail bird; their part files rewritten when the flags differ.

    Birds whose old rows' flags would change, or whose walk cannot restart
    (see the module docstring), are added to ``w.fallback``.
    """
    from contextlib import nullcontext

    from flyway.analysis.qc import _NOT_FOR_SPEED, qc_flags
    from flyway.compact import write_rewrite_part
    from flyway.store import new_batch_id

    old, new = w.old, w.new
    new_df = _objects(new.select(OLD_COLUMNS).to_pandas())
    o_ids = old[S.INDIVIDUAL_ID].to_numpy(dtype=object)
    o_flags = old[S.QC_FLAGS].fillna(0).to_numpy().astype(np.uint32)
    lon, lat = old[S.LON].to_numpy(float), old[S.LAT].to_numpy(float)
    bad = ~(np.isfinite(lon) & np.isfinite(lat)) | (np.abs(lat) > 90) | (np.abs(lon) > 180)
    usable = ((o_flags & np.uint32(_NOT_FOR_SPEED)) == 0) & ~bad
    accepted = usable & ((o_flags & np.uint32(F.SPEED)) == 0)
    t_old = old[S.TIMESTAMP].to_numpy(dtype="datetime64[us]")
    bounds = id_runs(o_ids)
    first_row: dict[str, int] = {}
    accepted_first = []
    for b in w.birds:
        a, z = bounds.get(b, (0, 0))
        whole = pd.isna(w.start[b])
        if z > a and (o_flags[z - 1] & np.uint32(F.FUTURE_TIMESTAMP)):
            w.fallback.add(b)  # the old end was in the future then: its flags may change now
            continue
        if whole:
            first_row[b] = a
            continue
        u = np.flatnonzero(usable[a:z])
        if len(u) < 3 or now < w.since[b]:
            w.fallback.add(b)
            continue
        acc = np.flatnonzero(accepted[a:a + u[-1]])  # accepted usable fixes before the last usable one
        acc = acc[acc > u[0]]  # ... that are not the window's first usable fix (the first-fix rule)
        if len(acc) == 0:
            w.fallback.add(b)
            continue
        first_row[b] = a + int(acc[-1])
        accepted_first.append(b)
    keep_old = np.zeros(len(old), bool)
    for b, r in first_row.items():
        keep_old[r:bounds.get(b, (0, 0))[1]] = True
    new_ok = new_df[S.INDIVIDUAL_ID].isin(list(first_row)).to_numpy()
    frame = pd.concat([old[keep_old], new_df[new_ok]], ignore_index=True)
    flags = qc_flags(frame, now=now, species_config=species_config, accepted_first=accepted_first)
    n_old = int(keep_old.sum())
    stored_old = frame[S.QC_FLAGS].fillna(0).to_numpy().astype(np.uint32)[:n_old]
    changed = frame[S.INDIVIDUAL_ID].to_numpy(dtype=object)[:n_old][flags[:n_old] != stored_old]
    w.fallback.update(changed.tolist())
    out = TailQC(flags_new=pd.Series(new_df[S.QC_FLAGS].fillna(0).to_numpy().astype(np.uint32)))
    new_flags = out.flags_new.to_numpy().copy()
    new_flags[new_ok] = flags[n_old:]
    out.flags_new = pd.Series(new_flags)
    stored_new = new_df[S.QC_FLAGS].fillna(0).to_numpy().astype(np.uint32)
    n_ids = new_df[S.INDIVIDUAL_ID].to_numpy(dtype=object)
    differs = (new_flags != stored_new) & new_ok
    to_write = [b for b in pd.unique(n_ids[differs]) if b not in w.fallback]
    if not to_write:
        return out
    table = new.set_column(new.schema.get_field_index(S.QC_FLAGS), S.QC_FLAGS, pa.array(new_flags, pa.uint32()))
    n_bounds = id_runs(n_ids)
    batch_id = new_batch_id()
    with st.lock("qc") if lock else nullcontext():
        parts, replaced = [], []
        for b in to_write:
            a, z = n_bounds[b]
            parts.append(write_rewrite_part(st, batch_id, table.slice(a, z - a), fsync=False))
            replaced.extend(st.relative(f) for f in w.new_files[b])
        if not st.is_remote:
            sync_paths([st.path / p for p in parts])  # every part durable before the commit names them
        st.commit_rewrite(batch_id, "qc", parts, replaced, message=f"now={now.isoformat()} (tail)")
    out.batch_id, out.rewritten = batch_id, len(to_write)
    return out


def row_values(codes: np.ndarray, names, values: Mapping[str, int], default: int) -> np.ndarray:
    """int64 ``values[id]`` of every row (``default`` for ids not in it), exact (no float detour).

    ``codes, names = pd.factorize(ids)``.
    """
    table = np.array([values.get(n, default) for n in names], dtype=np.int64)
    return table[codes] if len(codes) else np.zeros(0, np.int64)


def id_runs(ids: np.ndarray) -> dict[Any, tuple[int, int]]:
    """``id -> (first row, end row)`` of runs of equal ids (rows sorted by id)."""
    if len(ids) == 0:
        return {}
    starts = np.concatenate([[0], np.flatnonzero(ids[1:] != ids[:-1]) + 1])
    ends = np.append(starts[1:], len(ids))
    return {ids[a]: (int(a), int(z)) for a, z in zip(starts, ends)}


def window_fixes(w: Windows, qc: TailQC) -> pd.DataFrame:
    """Old window rows and new rows (with tonight's flags) of the tail birds, sorted by bird and time."""
    new_df = w.new.select(OLD_COLUMNS).to_pandas()
    new_df[S.QC_FLAGS] = qc.flags_new.to_numpy()
    new_df = _objects(new_df)
    birds = w.birds
    frame = pd.concat([w.old[w.old[S.INDIVIDUAL_ID].isin(birds)], new_df[new_df[S.INDIVIDUAL_ID].isin(birds)]],
                      ignore_index=True)
    # each part is sorted by bird and time and a bird's new rows follow its old ones: a stable sort by bird
    code = pd.factorize(frame[S.INDIVIDUAL_ID], sort=True)[0]
    return frame.take(np.argsort(code, kind="stable")).reset_index(drop=True)
