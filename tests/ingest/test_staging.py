"""Staging and pass 2 give one answer however the rows travel.

Pass 1 holds rows in memory up to a budget and spills to bucket files past
it; pass 2 orders each bucket by bird (a check when the export is already
grouped, a sort when it is not) and deduplicates a range of birds at a time.
Every way through must store the same fixes, quarantine the same rows and
count the same duplicates.
"""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flyway
from flyway import schema as S
from flyway.ingest import parse as P
from flyway.ingest import quarantine as Q
from flyway.ingest import staging as STG
from flyway.ingest import dedup as D
from flyway.ingest import writer as W
from flyway.ingest.hugepages import huge_pages_disabled, no_huge_pages
from flyway.store import Store
from tests.conftest import movebank_frame, write_movebank

ORDER = [S.INDIVIDUAL_ID, S.TIMESTAMP, S.SOURCE_FILE, S.SOURCE_LINE]


def _inputs(folder):
    """Two files of interleaved birds (rows in time order, not grouped), with repeats, a fix moved at the
    same time (duplicate timestamp), a reused event id, and a second file overlapping the first."""
    birds = movebank_frame(n_individuals=5, n_fixes=300, seed=3)
    birds = birds.sort_values(["timestamp", "individual-local-identifier"], kind="mergesort")
    moved = birds.iloc[[200]].assign(**{"location-long": birds.iloc[200]["location-long"] + 0.5,
                                        "event-id": 99_999})
    reused = birds.iloc[[250]].assign(**{"timestamp": "2024-06-01 00:00:00.000"})
    first = pd.concat([birds.iloc[:700], birds.iloc[100:130], moved, reused, birds.iloc[700:]])
    second = pd.concat([birds.iloc[1200:], movebank_frame(n_individuals=3, n_fixes=200, seed=4,
                                                          start="2024-05-01", first_event_id=50_000)])
    return [write_movebank(folder / "first.csv", first), write_movebank(folder / "second.csv", second)]


def _ingest(store, files, monkeypatch, memory_bytes=None, rows_per_range=None, input_size_known=True):
    """Ingest ``files``; returns the stored fixes, the quarantine, the per-file counts and how staging went."""
    modes = []
    real_spill, real_init = STG.Stager._spill, STG.Stager.__init__

    def init(self, *args, input_bytes=None, **kwargs):
        real_init(self, *args, input_bytes=input_bytes if input_size_known else None, **kwargs)
        modes.append("spilled from the start" if self.spilled else "held")

    monkeypatch.setattr(STG.Stager, "__init__", init)
    monkeypatch.setattr(STG.Stager, "_spill", lambda self: (modes.append("spilled part-way"), real_spill(self))[1])
    if memory_bytes is not None:
        monkeypatch.setattr(STG, "STAGING_MEMORY_BYTES", memory_bytes)
    if rows_per_range is not None:
        monkeypatch.setattr(W, "_ROWS_PER_RANGE", rows_per_range)
    report = flyway.ingest(files, store=store, block_size=1 << 14)
    monkeypatch.undo()
    fixes = flyway.read_fixes(store).drop(columns=[S.BATCH_ID]).sort_values(ORDER).reset_index(drop=True)
    quar = Store(store).read_quarantine().to_pandas().drop(columns=[S.BATCH_ID])
    quar = quar.sort_values([S.SOURCE_FILE, S.Q_LINE, S.Q_REASON]).reset_index(drop=True)
    counts = [(f.file, f.rows_read, f.rows_kept, f.rows_quarantined, f.rows_duplicate) for f in report.files]
    return fixes, quar, counts, modes


def test_held_spilled_and_half_spilled_staging_store_the_same(tmp_path, monkeypatch):
    files = _inputs(tmp_path)
    held = _ingest(tmp_path / "held", files, monkeypatch)
    spilled = _ingest(tmp_path / "spilled", files, monkeypatch, memory_bytes=100_000)  # files are ~280 kB
    half = _ingest(tmp_path / "half", files, monkeypatch, memory_bytes=100_000, input_size_known=False)
    assert (held[3], spilled[3], half[3]) == (["held"], ["spilled from the start"], ["held", "spilled part-way"])
    fixes, quar, counts, _ = held
    assert len(fixes) > 1000 and not fixes.duplicated([S.INDIVIDUAL_ID, S.TIMESTAMP, S.LON, S.LAT]).any()
    assert ((fixes[S.QC_FLAGS].to_numpy() & int(S.QCFlag.DUPLICATE_TIMESTAMP)) != 0).sum() == 2
    assert (quar[S.Q_REASON] == Q.DUPLICATE_EVENT_ID).sum() == 1
    assert sum(c[4] for c in counts) == 30 + 300  # repeats in the first file, overlap of the second
    for other in (spilled, half):
        pd.testing.assert_frame_equal(other[0], fixes)
        pd.testing.assert_frame_equal(other[1], quar)
        assert other[2] == counts


def test_small_ranges_against_stored_fixes_store_the_same(tmp_path, monkeypatch):
    """The second file repeats stored fixes: dedup against the store, a few birds at a time or all at once."""
    first, second = _inputs(tmp_path)
    results = []
    for name, rows in (("whole", None), ("ranges", 150)):
        store = tmp_path / name
        _ingest(store, [first], monkeypatch)
        results.append(_ingest(store, [second], monkeypatch, rows_per_range=rows))
    (fixes, quar, counts, _), (fixes2, quar2, counts2, _) = results
    pd.testing.assert_frame_equal(fixes2, fixes)
    pd.testing.assert_frame_equal(quar2, quar)
    assert counts2 == counts and counts[0][4] == 300


@st.composite
def _staged(draw):
    n = draw(st.integers(1, 60))
    ids = draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=n, max_size=n))
    species = draw(st.lists(st.sampled_from(["Grus monacha", "Platalea minor"]), min_size=n, max_size=n))
    t = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    if draw(st.booleans()):  # an export already grouped by bird and in time order
        frame = pd.DataFrame({"i": ids, "s": species, "t": t}).sort_values(["i", "s", "t"], kind="mergesort")
        ids, species, t = frame["i"].tolist(), frame["s"].tolist(), frame["t"].tolist()
    return pa.table({
        S.INDIVIDUAL_ID: pa.chunked_array([ids[: n // 2], ids[n // 2:]], pa.string()),
        S.SPECIES: pa.array(species),
        S.TIMESTAMP: pa.array(np.array(t, dtype="datetime64[h]").astype("datetime64[us]")).cast(S.TIMESTAMP_TYPE),
        S.SOURCE_LINE: pa.array(np.arange(n) + 2),
    })


@settings(max_examples=200, deadline=None)
@given(_staged(), st.integers(1, 20))
def test_bird_order_and_ranges_group_each_bird_in_time_order(table, rows_per_range):
    order, bird = W._bird_order(table)
    ranges = list(W._bird_ranges(table, bird, order, rows_per_range))
    rows = pa.concat_tables([r for r, _ in ranges])
    codes = np.concatenate([c for _, c in ranges])
    got = pd.DataFrame({"i": rows.column(S.INDIVIDUAL_ID).to_pylist(), "s": rows.column(S.SPECIES).to_pylist(),
                        "t": rows.column(S.TIMESTAMP).to_pylist(), "line": rows.column(S.SOURCE_LINE).to_pylist()})
    # every row once; each bird's rows together, in time order, ties in file order
    assert sorted(got["line"]) == list(range(2, table.num_rows + 2))
    runs = (got[["i", "s"]] != got[["i", "s"]].shift()).any(axis=1).cumsum()
    assert runs.groupby([got["i"], got["s"]]).nunique().max() == 1
    for _, bird_rows in got.groupby(runs):
        assert bird_rows.sort_values(["t", "line"]).index.tolist() == bird_rows.index.tolist()
    # the codes name the birds; ranges end between birds and hold at most the target plus one bird
    assert got.groupby(codes)[["i", "s"]].nunique().max().max() == 1
    assert got.groupby(["i", "s"]).apply(lambda g: len(set(codes[g.index]))).max() == 1
    for (r1, c1), (r2, c2) in zip(ranges, ranges[1:]):
        assert c1[-1] != c2[0]
    biggest = got.groupby(["i", "s"]).size().max()
    assert all(r.num_rows <= rows_per_range + biggest for r, _ in ranges)
    if order is None:  # already grouped: zero-copy slices of the staged rows
        assert got["line"].tolist() == list(range(2, table.num_rows + 2))


@st.composite
def _events(draw):
    n = draw(st.integers(1, 50))
    codes = np.sort(np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))))
    if draw(st.booleans()):  # ids rising within each individual: the usual export
        events = [int(c) * 1000 + i for i, c in enumerate(codes)]
    else:
        events = draw(st.lists(st.one_of(st.none(), st.integers(0, 6)), min_size=n, max_size=n))
    candidates = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    return codes.astype(np.int64), pa.array(events, pa.int64()), candidates


@settings(max_examples=300, deadline=None)
@given(_events())
def test_event_id_repeats_are_the_later_rows_of_an_individual_reusing_an_id(case):
    codes, events, candidates = case
    e = events.to_pylist()
    expected = np.zeros(len(codes), dtype=bool)
    for i in range(len(codes)):
        expected[i] = candidates[i] and e[i] is not None and any(
            candidates[j] and codes[j] == codes[i] and e[j] == e[i] for j in range(i))
    chunked = pa.chunked_array([events.slice(0, len(e) // 2), events.slice(len(e) // 2)])
    assert D._event_id_repeats(codes, chunked, candidates).tolist() == expected.tolist()


def test_clean_text_keeps_the_readers_array_when_nothing_changes():
    clean = pa.array(["GM001", None, "GM002"])
    assert P._clean_str(clean, 3) is clean
    messy = pa.array([" GM001", "  ", "GM002\t"])
    assert P._clean_str(messy, 3).to_pylist() == ["GM001", None, "GM002"]
    ids, ctrl = P._clean_ids(pa.array(["GM\x01", "GM002", None, "GM\x01"]), 4)
    assert ctrl.tolist() == [True, False, False, True] and ids.to_pylist()[1] == "GM002"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_THP_DISABLE) is Linux only")
def test_huge_pages_are_off_inside_and_restored_after():
    before = huge_pages_disabled()
    if before is None:
        pytest.skip("prctl unavailable")
    assert before is False  # the test process starts with the kernel default
    with no_huge_pages():
        assert huge_pages_disabled() is True
        with no_huge_pages():  # nested (another ingest on another thread): leaves it to the outer one
            assert huge_pages_disabled() is True
        assert huge_pages_disabled() is True
    assert huge_pages_disabled() is False
