"""The nightly tail path (flyway.tail) gives exactly what a whole-track recompute gives."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flyway
from flyway import schema as S
from flyway.nightly import EXIT_OK, nightly
from flyway.nightly_config import NightlyConfig
from flyway.tail import gap_dt_hi

IND, TS, LON = "individual-local-identifier", "timestamp", "location-long"
NIGHTS = 15


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from flyway.simulate import write_simulation

    return write_simulation(tmp_path_factory.mktemp("sim"), n_individuals=10, days=150, seed=5)


def nights(frame: pd.DataFrame) -> tuple[list[pd.DataFrame], str, str]:
    """The CSV cut into nights by time, with two twists.

    * bird A: a third of its rows of night 4 arrive on night 7, after newer
      ones (not a tail: they precede its newest fix);
    * bird B: from its last fix of night 9 on, it is 8 degrees further east,
      so that fix looks like a speed spike on night 9 and is accepted once
      night 10 continues from there (the old flags change: whole track).
    """
    t = pd.to_datetime(frame[TS])
    edges = pd.date_range(t.min(), t.max() + pd.Timedelta(seconds=1), periods=NIGHTS + 1)
    night = pd.Series(pd.cut(t, edges, labels=False, right=False, include_lowest=True), index=frame.index).astype(int)
    birds = sorted(frame[IND].unique())
    a, b = birds[1], birds[2]
    mine_a = np.flatnonzero(((frame[IND] == a) & (night == 4)).to_numpy())
    night.iloc[mine_a[: len(mine_a) // 3]] = 7
    last_b = t[(frame[IND] == b) & (night == 9)].max()
    frame = frame.copy()
    jump = (frame[IND] == b) & (t >= last_b)
    frame.loc[jump, LON] = (frame.loc[jump, LON].astype(float) + 8.0).map(lambda v: f"{v:.6f}")
    return [frame[night == k] for k in range(NIGHTS)], a, b


def test_tail_nights_equal_whole_recompute(tmp_path, sim):
    frame = pd.read_csv(sim["fixes"], dtype=str, keep_default_na=False)
    parts, bird_a, bird_b = nights(frame)
    cfg = NightlyConfig(settle_s=0, reference=sim["reference"])
    inbox, store = tmp_path / "inbox", tmp_path / "nightly"
    inbox.mkdir()
    records = []
    for k, part in enumerate(parts):
        part.to_csv(inbox / f"night-{k:02d}.csv", index=False)
        res = nightly(store, inbox, config=cfg)
        assert res.exit_code == EXIT_OK
        records.append(res.record["counts"])
    full_inbox = tmp_path / "full_inbox"
    full_inbox.mkdir()
    pd.concat(parts).to_csv(full_inbox / "all.csv", index=False)
    assert nightly(tmp_path / "full", full_inbox, config=cfg).exit_code == EXIT_OK

    # the tail path was taken, from real windows, and left for the two twisted birds
    assert sum(c.get("individuals_windowed", 0) for c in records) >= 30
    assert bird_a in records[7]["individuals_whole"]
    assert bird_b in records[10]["individuals_tail_fallback"] and bird_b in records[10]["individuals_whole"]
    assert bird_b not in records[11]["individuals_whole"]
    # ... and every derived table equals the full recompute
    stops = flyway.read_stops(tmp_path / "full")
    assert len(stops) >= 40
    pd.testing.assert_frame_equal(flyway.read_stops(store), stops)
    pd.testing.assert_frame_equal(flyway.read_sites(store), flyway.read_sites(tmp_path / "full"))
    key = [S.INDIVIDUAL_ID, S.TIMESTAMP, S.EVENT_ID]
    inc = flyway.read_fixes(store).sort_values(key, ignore_index=True)
    ref = flyway.read_fixes(tmp_path / "full").sort_values(key, ignore_index=True)
    assert (inc[S.QC_FLAGS].to_numpy() == ref[S.QC_FLAGS].to_numpy()).all()
    assert ((ref[S.QC_FLAGS].to_numpy() & int(S.QCFlag.SPEED)) != 0).sum() >= 1
    tags = [_state(p)["tags"] for p in (store, tmp_path / "full")]
    pd.testing.assert_frame_equal(*(pd.DataFrame(t).sort_values(S.INDIVIDUAL_ID, ignore_index=True) for t in tags))
    assert _state(store)["countries"] == _state(tmp_path / "full")["countries"]


def _state(store: Path) -> dict:
    return json.loads((store / "_nightly" / "state.json").read_text())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 10_000), min_size=0, max_size=40), st.lists(st.integers(1, 10_000), min_size=1,
                                                                              max_size=40))
def test_upper_median_of_a_union_is_bounded_by_the_parts(a, b):
    def hi(values):
        t = np.cumsum([0, *values]).astype(np.int64)
        return gap_dt_hi(np.array(["x"] * len(t), dtype=object), t, np.ones(len(t), bool)).get("x", np.nan)

    whole = hi(a + b)
    assert whole == np.sort(np.array(a + b))[len(a + b) // 2]
    assert whole >= np.median(a + b)
    parts = [hi(v) for v in (a, b) if v]
    assert whole <= max(parts)
