"""Dedup: the numpy path over sorted rows equals the general hash-based one; against the store, reading only
the part files whose footers allow a collision changes nothing."""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flyway import schema as S
from flyway.ingest import dedup as D
from flyway.ingest import quarantine as Q
from flyway.ingest.dedup import _dedup_against, _dedup_sorted
from flyway.ingest.pipeline import ingest
from flyway.ingest.writer import FinalizeResult
from flyway.store import Store, batch_of_part, read_fixes
from tests.conftest import movebank_frame, write_movebank

KEY_COLS = [S.INDIVIDUAL_ID, S.TIMESTAMP, S.LON, S.LAT, S.EVENT_ID]


def _table(rows) -> pa.Table:
    df = pd.DataFrame(rows, columns=["ind", "t", "x", "ev"])
    df = df.sort_values(["ind", "t"], kind="mergesort").reset_index(drop=True)
    return pa.table({
        S.INDIVIDUAL_ID: pa.array(df["ind"].astype(str)),
        S.TIMESTAMP: pa.array(pd.to_datetime(df["t"], unit="h", utc=True)),
        S.LON: pa.array(df["x"].astype(float)), S.LAT: pa.array(np.zeros(len(df))),
        S.EVENT_ID: pa.array(df["ev"], pa.int64()),
        S.SOURCE_FILE: pa.array(["f.csv"] * len(df)), S.SOURCE_LINE: pa.array(np.arange(2, len(df) + 2)),
        S.QC_FLAGS: pa.array(np.zeros(len(df), np.uint32)),
    })


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 6), st.integers(0, 2),
                          st.one_of(st.none(), st.integers(0, 8))), min_size=1, max_size=40))
def test_sorted_fast_path_equals_general_path(rows):
    new = _table(rows)
    empty = new.select(KEY_COLS).slice(0, 0)
    r1, r2 = FinalizeResult(), FinalizeResult()
    fast = _dedup_sorted(new, r1)
    general = _dedup_against(new, empty, r2)
    assert fast.equals(general)
    assert r1.rows_duplicate == r2.rows_duplicate
    q1 = pa.concat_tables(r1.quarantine).column("line").to_pylist() if r1.quarantine else []
    q2 = pa.concat_tables(r2.quarantine).column("line").to_pylist() if r2.quarantine else []
    assert sorted(q1) == sorted(q2)


# ============================================================ dedup against the store: only what could collide
NOW = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
MB = {c: S.FIXES[c].movebank for c in (S.EVENT_ID, S.TIMESTAMP, S.LON, S.INDIVIDUAL_ID)}


def _store_of_two_batches(tmp_path: Path) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """Three birds: March fixes in one batch, April fixes in the next (two part files per bird)."""
    march = movebank_frame(n_individuals=3, n_fixes=200, start="2024-03-01", first_event_id=1)
    april = movebank_frame(n_individuals=3, n_fixes=200, start="2024-04-01", first_event_id=1000, seed=1)
    store = tmp_path / "store"
    for name, frame in (("march.csv", march), ("april.csv", april)):
        ingest([write_movebank(tmp_path / name, frame)], store, now=NOW)
    return store, march, april


def _overlapping(march: pd.DataFrame, april: pd.DataFrame) -> pd.DataFrame:
    """April fixes again (duplicates), some moved (same time, other place: kept and flagged), new fixes
    reusing April's and March's event ids (quarantined; March is far from the file's times, so only its
    event ids tie it to the file), and fresh fixes later in April."""
    again = april.groupby(MB[S.INDIVIDUAL_ID]).tail(50)
    moved = again.iloc[::10].copy()
    moved[MB[S.LON]] = moved[MB[S.LON]] + 0.01
    moved[MB[S.EVENT_ID]] = moved[MB[S.EVENT_ID]] + 100_000  # a new fix at a stored fix's time
    reused = pd.concat([again.iloc[5::10], march.iloc[::40]])
    reused[MB[S.TIMESTAMP]] = (pd.Timestamp("2024-04-25") + pd.to_timedelta(np.arange(len(reused)), unit="min")
                               ).strftime("%Y-%m-%d %H:%M:%S.000")
    fresh = movebank_frame(n_individuals=3, n_fixes=20, start="2024-04-20", first_event_id=9000, seed=2)
    return pd.concat([again, moved, reused, fresh]).sample(frac=1.0, random_state=0)


def test_night_ingest_reads_only_the_part_files_near_its_fixes(tmp_path, monkeypatch):
    store, _, april = _store_of_two_batches(tmp_path)
    april_batch = Store(store).read_ledger().column("batch_id")[1].as_py()
    read: list[str] = []
    real = Store.read_parts

    def spy(self, files, columns, where=None):
        read.extend(str(f) for f in files)
        return real(self, files, columns, where)

    monkeypatch.setattr(Store, "read_parts", spy)
    night = pd.concat([april.groupby(MB[S.INDIVIDUAL_ID]).tail(50),
                       movebank_frame(n_individuals=3, n_fixes=20, start="2024-04-20", first_event_id=9000, seed=2)])
    report = ingest([write_movebank(tmp_path / "night.csv", night)], store, now=NOW)
    assert report.rows_kept == 60 and sum(f.rows_duplicate for f in report.files) == 150
    assert len(read) == 3 and all(batch_of_part(Path(f).name) == april_batch for f in read)


def test_fixes_far_from_everything_stored_read_no_fix(tmp_path, monkeypatch):
    store, _, _ = _store_of_two_batches(tmp_path)
    monkeypatch.setattr(Store, "read_parts", lambda *a, **k: pytest.fail("no stored fix can collide"))
    later = movebank_frame(n_individuals=3, n_fixes=30, start="2024-06-01", first_event_id=50_000, seed=4)
    report = ingest([write_movebank(tmp_path / "june.csv", later)], store, now=NOW)
    assert report.rows_kept == 90


def _everything_stored(store: Store, new: pa.Table, snapshot, bird=None) -> pa.Table:
    """What dedup read before it pruned by footers: every stored fix of the batch's individuals."""
    ids = pc.unique(new.column(S.INDIVIDUAL_ID)).to_pylist()
    return store.scan_fixes(individuals=ids, columns=KEY_COLS, snapshot=snapshot)


def _stored_state(store: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    fixes = read_fixes(store).drop(columns=[S.BATCH_ID])
    fixes = fixes.sort_values([S.INDIVIDUAL_ID, S.TIMESTAMP, S.SOURCE_FILE, S.SOURCE_LINE]).reset_index(drop=True)
    quarantine = Store(store).read_quarantine().to_pandas().drop(columns=[S.BATCH_ID])
    return fixes, quarantine.sort_values(list(quarantine.columns)).reset_index(drop=True)


def test_pruned_dedup_keeps_exactly_what_dedup_against_every_stored_fix_keeps(tmp_path, monkeypatch):
    base, march, april = _store_of_two_batches(tmp_path)
    night = write_movebank(tmp_path / "night.csv", _overlapping(march, april))
    results = []
    for name, candidates in (("pruned", D.stored_candidates), ("everything", _everything_stored)):
        store = tmp_path / name
        shutil.copytree(base, store)
        monkeypatch.setattr(D, "stored_candidates", candidates)
        report = ingest([night], store, now=NOW)
        fr = report.files[0]
        results.append(((fr.rows_kept, fr.rows_duplicate, fr.rows_quarantined, fr.quarantine_reasons),
                        _stored_state(store)))
    (counts_a, (fixes_a, q_a)), (counts_b, (fixes_b, q_b)) = results
    assert counts_a == counts_b
    kept, duplicate, quarantined, reasons = counts_a
    assert duplicate == 150 and kept > 0 and reasons.get(Q.DUPLICATE_EVENT_ID) == quarantined == 15 + 15
    pd.testing.assert_frame_equal(fixes_a, fixes_b)
    pd.testing.assert_frame_equal(q_a, q_b)
    flagged = (fixes_a[S.QC_FLAGS] & int(S.QCFlag.DUPLICATE_TIMESTAMP)) > 0
    assert flagged.any()


def _footer(tmp_path: Path, rows: pa.Table, **options) -> pq.FileMetaData:
    path = tmp_path / "part.parquet"
    pq.write_table(rows, path, **options)
    return pq.read_metadata(path)


def test_footer_pruning_reads_files_without_statistics_and_skips_files_outside_the_spans(tmp_path):
    new = pa.table({
        S.INDIVIDUAL_ID: pa.array(["a", "a", "b"]),
        S.TIMESTAMP: pa.array(pd.to_datetime(["2024-04-10", "2024-04-11", "2024-04-10"], utc=True),
                              S.TIMESTAMP_TYPE),
        S.EVENT_ID: pa.array([500, 501, None], pa.int64()),
    })
    spans = D._Spans.of(new)

    def stored(ind: str, day: str, event: int | None) -> pa.Table:
        return pa.table({S.INDIVIDUAL_ID: pa.array([ind]),
                         S.TIMESTAMP: pa.array(pd.to_datetime([day], utc=True), S.TIMESTAMP_TYPE),
                         S.EVENT_ID: pa.array([event], pa.int64())})

    assert not spans.may_hold(_footer(tmp_path, stored("a", "2024-03-01", 7)))
    assert spans.may_hold(_footer(tmp_path, stored("a", "2024-04-10 12:00", 7)))  # inside a's time span
    assert spans.may_hold(_footer(tmp_path, stored("a", "2024-03-01", 501)))  # reuses one of a's event ids
    assert not spans.may_hold(_footer(tmp_path, stored("b", "2024-03-01", 501)))  # b brings no event ids
    assert not spans.may_hold(_footer(tmp_path, stored("c", "2024-04-10", 500)))  # not an individual of the batch
    assert not spans.may_hold(_footer(tmp_path, stored("a", "2024-03-01", None)))  # event ids all null
    assert spans.may_hold(_footer(tmp_path, stored("a", "2024-03-01", 7), write_statistics=False))
    assert spans.may_hold(_footer(tmp_path, stored("a", "2024-03-01", 7), write_statistics=[S.INDIVIDUAL_ID]))
