"""Pass 2's dedup: drop fixes already in the store or repeated in the batch.

A fix is a duplicate when its (individual, timestamp, longitude, latitude)
is already stored or occurred earlier in the batch; a different fix reusing
an individual's event id is quarantined; fixes of one individual sharing a
time at different positions are all kept and flagged.

Only stored fixes that *could* collide with the new ones are read: a stored
fix can only be a duplicate of a new fix of the same individual at the same
time, or share its event id. So the footers of the individuals' part files
(min/max time and event id per file) rule out every file outside the new
fixes' span, and of the files read only the rows inside it are kept. A
nightly file of one day against a store of years reads (almost) nothing but
footers: the cost follows the new data, not the store.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flyway import schema as S
from flyway.geoparquet import read_metadata_many
from flyway.ingest import quarantine as Q
from flyway.store import Store, sort_fixes

if TYPE_CHECKING:
    from flyway.ingest.writer import FinalizeResult

_KEY_COLUMNS = [S.INDIVIDUAL_ID, S.TIMESTAMP, S.LON, S.LAT, S.EVENT_ID]
_I64_MIN, _I64_MAX = np.iinfo(np.int64).min, np.iinfo(np.int64).max


def dedup_bucket(store: Store, new: pa.Table, snapshot, res: FinalizeResult,
                 bird: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    """Drop fixes already stored or repeated; quarantine reused event ids; flag shared timestamps.

    Parameters
    ----------
    store : Store
        The store (its committed fixes as of ``snapshot`` count as stored).
    new : pyarrow.Table
        Staged rows sorted by bird and time, so "first" means earliest in
        the file.
    snapshot : tuple
        :meth:`flyway.store.Store.snapshot` taken at the start of the batch.
    res : FinalizeResult
        Receives duplicate counts and quarantine records.
    bird : numpy.ndarray
        One code per row of ``new``, equal for the rows of one bird.

    Returns
    -------
    (pyarrow.Table, numpy.ndarray)
        ``new`` with its QC flags updated, and the mask of its rows to keep.
    """
    old = stored_candidates(store, new, snapshot, bird)
    if old.num_rows == 0:  # nothing stored near these fixes: a numpy pass over sorted rows
        keep, flags = _dedup_sorted_masks(new, res, bird)
    else:
        keep, flags = _dedup_against_masks(new, old, res)
    return _with_flags(new, flags), keep


def stored_candidates(store: Store, new: pa.Table, snapshot, bird: np.ndarray | None = None) -> pa.Table:
    """The committed fixes that could collide with ``new``: same individual, and a time or an event id
    inside that individual's span in ``new``.

    Part files whose footer statistics put them outside every span are not
    read (a file without those statistics is). Returns the key columns
    (individual, time, position, event id), sorted by individual and time.
    ``bird`` (as in :func:`dedup_bucket`) saves encoding the ids again.
    """
    starts = _run_starts(value_codes(new.column(S.INDIVIDUAL_ID)) if bird is None else bird)
    ids = pc.unique(new.column(S.INDIVIDUAL_ID).take(pa.array(starts))).to_pylist()
    files = store.fix_files(individuals=ids, snapshot=snapshot)
    if files:  # (the first data of these birds needs no spans)
        spans = _Spans.of(new, starts)
        files = [f for f, md in zip(files, read_metadata_many(files)) if spans.may_hold(md)]
    if not files:
        return S.FIXES.arrow_schema().empty_table().select(_KEY_COLUMNS)
    old = store.read_parts(files, _KEY_COLUMNS)
    near = spans.near(old)
    if not near.all():
        old = old.filter(pa.array(near))
    return sort_fixes(old)


class _Spans:
    """Per individual of a batch: the first and last time, and the smallest and largest event id."""

    def __init__(self, ids: list[str], t: np.ndarray, e: np.ndarray) -> None:
        self.ids = ids
        self.index = {i: k for k, i in enumerate(ids)}
        self.t, self.e = t, e  # (n_ids, 2) int64: [lo, hi]; an id with no event ids has lo > hi

    @classmethod
    def of(cls, new: pa.Table, starts: np.ndarray | None = None) -> _Spans:
        """The spans of ``new``'s individuals; ``starts`` (first rows of runs of one bird, from
        :func:`_run_starts`) saves encoding the ids."""
        if new.num_rows == 0:
            return cls([], np.zeros((0, 2), np.int64), np.zeros((0, 2), np.int64))
        if starts is None:
            starts = _run_starts(value_codes(new.column(S.INDIVIDUAL_ID)))
        enc = pc.dictionary_encode(new.column(S.INDIVIDUAL_ID).take(pa.array(starts))).combine_chunks()
        run_of = enc.indices.to_numpy(zero_copy_only=False)  # an individual may have several runs
        n = len(enc.dictionary)
        t = i64(new.column(S.TIMESTAMP))
        events = new.column(S.EVENT_ID)
        valid = pc.is_valid(events).to_numpy(zero_copy_only=False)
        e = events.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        t_span = _span(run_of, np.minimum.reduceat(t, starts), np.maximum.reduceat(t, starts), n)
        e_span = _span(run_of, np.minimum.reduceat(np.where(valid, e, _I64_MAX), starts),
                       np.maximum.reduceat(np.where(valid, e, _I64_MIN), starts), n)
        return cls(enc.dictionary.to_pylist(), t_span, e_span)

    def may_hold(self, md: pq.FileMetaData) -> bool:
        """Whether a part file (by its footer) may hold a fix inside a span; unknown -> True."""
        names = md.schema.names
        ids = _column_range(md, names.index(S.INDIVIDUAL_ID))
        if ids is None or ids[0] != ids[1]:
            return True  # not one known individual (files are per individual; be safe)
        k = self.index.get(ids[0])
        if k is None:
            return False
        return (_overlaps(_column_range(md, names.index(S.TIMESTAMP), raw=True), self.t[k])
                or _overlaps(_column_range(md, names.index(S.EVENT_ID), raw=True), self.e[k]))

    def near(self, old: pa.Table) -> np.ndarray:
        """Mask of the rows of ``old`` inside their individual's spans."""
        k = pc.index_in(old.column(S.INDIVIDUAL_ID), value_set=pa.array(self.ids, pa.string()))
        known = pc.is_valid(k).to_numpy(zero_copy_only=False)
        k = k.fill_null(0).to_numpy(zero_copy_only=False)
        t = i64(old.column(S.TIMESTAMP))
        e_valid = pc.is_valid(old.column(S.EVENT_ID)).to_numpy(zero_copy_only=False)
        e = old.column(S.EVENT_ID).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        in_t = (t >= self.t[k, 0]) & (t <= self.t[k, 1])
        in_e = e_valid & (e >= self.e[k, 0]) & (e <= self.e[k, 1])
        return known & (in_t | in_e)


def _run_starts(codes: np.ndarray) -> np.ndarray:
    """First row of each run of equal ``codes``."""
    return np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]])) if len(codes) else np.zeros(0, np.int64)


def _span(owner: np.ndarray, lo: np.ndarray, hi: np.ndarray, n: int) -> np.ndarray:
    """[min of ``lo``, max of ``hi``] per owner (``n`` owners); an owner without values gets [MAX, MIN]."""
    out = np.empty((n, 2), dtype=np.int64)
    out[:, 0], out[:, 1] = _I64_MAX, _I64_MIN
    np.minimum.at(out[:, 0], owner, lo)
    np.maximum.at(out[:, 1], owner, hi)
    return out


def _column_range(md: pq.FileMetaData, i: int, raw: bool = False):
    """(min, max) of column ``i`` over a file's row groups from its statistics.

    ``None`` when some row group has no statistics (unknown); ``()`` when the
    column holds only nulls. ``raw`` gives the physical values (int64 for a
    timestamp: microseconds, the store's unit).
    """
    lo = hi = None
    for g in range(md.num_row_groups):
        col = md.row_group(g).column(i)
        st = col.statistics
        if st is None:
            return None
        if not st.has_min_max:
            if st.has_null_count and st.null_count == col.num_values:
                continue  # only nulls in this row group
            return None
        a, b = (st.min_raw, st.max_raw) if raw else (st.min, st.max)
        lo = a if lo is None or a < lo else lo
        hi = b if hi is None or b > hi else hi
    return () if lo is None else (lo, hi)


def _overlaps(file_range, span: np.ndarray) -> bool:
    """Whether a file's (min, max) (``None``: unknown, ``()``: no values) meets ``span`` [lo, hi]."""
    if file_range is None:
        return True
    if not file_range or span[0] > span[1]:
        return False
    return bool(file_range[0] <= span[1] and file_range[1] >= span[0])


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
    """The general case of :func:`dedup_bucket`: hash (individual, time, position) over old and new rows."""
    return _apply_dedup(new, *_dedup_against_masks(new, old, res))


def _dedup_against_masks(new: pa.Table, old: pa.Table, res: FinalizeResult) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`_dedup_against` as (rows of ``new`` to keep, their QC flags or None when unchanged)."""
    n_old = old.num_rows
    both = pa.concat_tables([old, new.select(old.column_names).cast(old.schema)])
    keys = pd.DataFrame({
        "i": value_codes(both.column(S.INDIVIDUAL_ID)),
        "t": i64(both.column(S.TIMESTAMP)),
        "x": both.column(S.LON).to_numpy(),
        "y": both.column(S.LAT).to_numpy(),
    })
    dup = keys.duplicated(keep="first").to_numpy()
    res.rows_duplicate += int(dup[n_old:].sum())
    if dup[n_old:].any():
        count_by_file(res.duplicate_by_file, new.column(S.SOURCE_FILE).filter(pa.array(dup[n_old:])))
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
    """:func:`dedup_bucket` for rows with nothing stored near them, without hashing every row.

    ``new`` is sorted by individual and time, so rows sharing (individual,
    time) are neighbours: only those runs (rare) need a closer look.
    """
    return _apply_dedup(new, *_dedup_sorted_masks(new, res, codes))


def _dedup_sorted_masks(new: pa.Table, res: FinalizeResult,
                        codes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`_dedup_sorted` as (rows of ``new`` to keep, their QC flags or None when unchanged)."""
    n = new.num_rows
    if codes is None:
        codes = value_codes(new.column(S.INDIVIDUAL_ID)).astype(np.int64)
    t = i64(new.column(S.TIMESTAMP))
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
        count_by_file(res.duplicate_by_file, new.column(S.SOURCE_FILE).filter(pa.array(dup)))
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


def value_codes(arr) -> np.ndarray:
    """Each row's index into the distinct values of ``arr`` (numbered in order of first appearance)."""
    enc = pc.dictionary_encode(arr)
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.combine_chunks() if enc.num_chunks != 1 else enc.chunk(0)
    return enc.indices.to_numpy(zero_copy_only=False)


def count_by_file(counts: dict[str, int], source_files: pa.Array, keep: np.ndarray | None = None) -> None:
    """Add the rows per source file (only those to ``keep``, when given) to ``counts``."""
    for item in pc.value_counts(source_files).to_pylist():
        counts[item["values"]] = counts.get(item["values"], 0) + item["counts"]
    if keep is not None and not keep.all():  # few rows go: count them off rather than filter all
        for item in pc.value_counts(source_files.filter(pa.array(~keep))).to_pylist():
            counts[item["values"]] -= item["counts"]


def i64(arr) -> np.ndarray:
    return arr.cast(pa.int64()).to_numpy(zero_copy_only=False) if len(arr) else np.array([], dtype=np.int64)


def _opt_i64(arr) -> np.ndarray:
    return np.asarray(arr.to_pandas().astype("Float64").to_numpy(dtype="f8", na_value=np.nan))


def _row_text(table: pa.Table) -> pa.Array:
    """Readable text of stored-form rows (for quarantine records of pass 2)."""
    cols = [pc.fill_null(table.column(c).cast(pa.string()), "") for c in
            (S.INDIVIDUAL_ID, S.TIMESTAMP, S.LON, S.LAT, S.EVENT_ID)]
    return pc.binary_join_element_wise(*cols, ",").combine_chunks()
