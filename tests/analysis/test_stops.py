"""Stop detection, method="flyway": output contract, properties (hypothesis), accuracy on planted truth."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flyway import schema as S
from flyway.analysis.accuracy import truth_recovery
from flyway.analysis.params import StopParams
from flyway.analysis.qc import qc_flags
from flyway.analysis.stops import detect_stops, stops_table
from flyway.errors import ConfigError, InputError


def track(n: int = 200, step_s: int = 3600, start: str = "2024-03-01", ind: str = "b1", lon: float = 127.0,
          lat: float = 38.0, jitter_deg: float = 0.002, seed: int = 0, species: str = "Grus monacha") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = pd.Timestamp(start, tz="UTC") + pd.to_timedelta(np.arange(n) * step_s, unit="s")
    return pd.DataFrame({S.INDIVIDUAL_ID: ind, S.SPECIES: species, S.TIMESTAMP: t,
                         S.LON: lon + rng.uniform(-jitter_deg, jitter_deg, n),
                         S.LAT: lat + rng.uniform(-jitter_deg, jitter_deg, n)})


def stop_move_stop(seed: int = 0) -> pd.DataFrame:
    """Three days at A, a day flying 300 km north, three days at B (hourly fixes)."""
    a = track(72, lon=127.0, lat=35.0, seed=seed)
    rng = np.random.default_rng(seed + 1)
    fly = track(24, start=str(a[S.TIMESTAMP].iloc[-1].tz_localize(None) + pd.Timedelta("1h")), seed=seed)
    fly[S.LAT] = np.linspace(35.1, 37.6, 24) + rng.normal(0, 0.01, 24)
    b = track(72, start=str(fly[S.TIMESTAMP].iloc[-1].tz_localize(None) + pd.Timedelta("1h")), lon=127.0,
              lat=37.7, seed=seed + 2)
    return pd.concat([a, fly, b], ignore_index=True)


def sim_fixes(sim) -> pd.DataFrame:
    """The simulator's Movebank table as flyway fixes, with the ingest's flags set from truth."""
    f, ref = sim.fixes, sim.reference.set_index("animal-id")
    out = pd.DataFrame({
        S.INDIVIDUAL_ID: f["individual-local-identifier"].astype(str),
        S.SPECIES: f["individual-taxon-canonical-name"].astype(str),
        S.TIMESTAMP: pd.to_datetime(f["timestamp"], utc=True),
        S.LON: f["location-long"].astype(float), S.LAT: f["location-lat"].astype(float),
        S.HDOP: f["gps:hdop"].astype(float), S.SATELLITES: f["gps:satellite-count"].astype(float)})
    out[S.LIFE_STAGE] = out[S.INDIVIDUAL_ID].map(ref["animal-life-stage"])
    flags = np.zeros(len(f), np.uint32)
    marked = (f["import-marked-outlier"].astype(bool) | f["manually-marked-outlier"].astype(bool)).to_numpy()
    flags[marked] |= np.uint32(S.QCFlag.MOVEBANK_OUTLIER)
    on = pd.to_datetime(out[S.INDIVIDUAL_ID].map(ref["deploy-on-date"]), utc=True)
    off = pd.to_datetime(out[S.INDIVIDUAL_ID].map(ref["deploy-off-date"]), utc=True)
    flags[((out[S.TIMESTAMP] < on) | (out[S.TIMESTAMP] > off)).to_numpy()] |= np.uint32(S.QCFlag.OUTSIDE_DEPLOYMENT)
    out[S.QC_FLAGS] = flags
    return out


def recall_precision(truth: pd.DataFrame, stops: pd.DataFrame, within_m: float = 5000.0) -> tuple[float, float]:
    """Issue 4 item 6: a stop is found when a detected stop overlaps it in time and lies within 5 km."""
    rec = truth_recovery(stops, truth, within_m)
    return rec.recall, rec.precision


def test_two_stops_and_contract():
    fixes = stop_move_stop()
    stops = detect_stops(fixes)
    assert len(stops) == 2
    assert list(stops.columns) == S.STOPS.names
    assert stops[S.LAT].iloc[0] == pytest.approx(35.0, abs=0.01)
    assert stops[S.LAT].iloc[1] == pytest.approx(37.7, abs=0.01)
    assert (stops[S.N_FIXES] >= 60).all() and (stops[S.RADIUS_M] < 500).all()
    assert stops[S.STOP_ID].iloc[0] == "b1_2024-03-01T00:00:00.000000Z"
    table = stops_table(stops)
    assert table.schema.equals(S.STOPS.arrow_schema())
    assert stops[S.KIND].tolist() == [S.KIND_STOPOVER, S.KIND_STOPOVER]
    assert stops[S.SEASON].tolist() == ["2024-spring", "2024-spring"]


def test_stable_ids_and_naive_utc_input():
    fixes = stop_move_stop()
    naive = fixes.assign(**{S.TIMESTAMP: fixes[S.TIMESTAMP].dt.tz_localize(None)})
    a, b = detect_stops(fixes), detect_stops(naive)
    assert a[S.STOP_ID].tolist() == b[S.STOP_ID].tolist()
    pd.testing.assert_frame_equal(a, b)


def test_missing_columns_and_bad_params():
    with pytest.raises(InputError, match="lat"):
        detect_stops(track().drop(columns=[S.LAT]))
    with pytest.raises(ConfigError, match="max_diameter_m"):
        detect_stops(track(), max_diameter=-5)
    with pytest.raises(ConfigError, match="min_duration"):
        StopParams(min_duration="soon")
    with pytest.raises(ConfigError, match="method"):
        detect_stops(track(), method="kmeans")


def test_qc_flagged_fixes_are_ignored():
    fixes = track(96)
    fixes.loc[40, S.LAT] += 1.0  # a 110 km spike in the middle of the stop
    assert len(detect_stops(fixes, method="movingpandas")) == 2  # the spike breaks the stop
    fixes[S.QC_FLAGS] = qc_flags(fixes, now="2030-01-01")
    assert fixes[S.QC_FLAGS].iloc[40] & S.QCFlag.SPEED
    stops = detect_stops(fixes)
    assert len(stops) == 1 and stops[S.N_FIXES].iloc[0] == 95


def test_gap_splits_and_merge_joins():
    a = track(48)
    b = track(48, start="2024-03-06")  # 3 days of silence at the same place
    fixes = pd.concat([a, b], ignore_index=True)
    assert len(detect_stops(fixes, method="movingpandas")) == 1  # spans the gap
    stops = detect_stops(fixes)
    assert len(stops) == 2
    assert (stops[S.START_TIME].iloc[1] - stops[S.END_TIME].iloc[0]) > pd.Timedelta("72h")
    # a short excursion of 10 km splits a stop; merging (20 km, 24 h) joins it again
    c = track(60)
    c.loc[30:33, S.LON] += 0.12
    assert len(detect_stops(c, merge_distance_m=0.0, min_duration="12h")) == 2
    assert len(detect_stops(c, min_duration="12h")) == 1


def test_min_fixes():
    fixes = track(5, step_s=8 * 3600)  # five fixes over 32 h
    assert len(detect_stops(fixes, min_fixes=5)) == 1
    assert len(detect_stops(fixes, min_fixes=6)) == 0


# ---------------------------------------------------------------- properties
settings_ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings_
@given(n=st.integers(30, 200), step=st.integers(600, 6 * 3600), jitter=st.floats(0.0, 0.004))
def test_bird_that_never_moves_has_one_stop(n, step, jitter):
    fixes = track(n, step_s=step, jitter_deg=jitter)
    span = pd.Timedelta(seconds=step * (n - 1))
    stops = detect_stops(fixes, min_duration="24h")
    assert len(stops) == (1 if span >= pd.Timedelta("24h") else 0)
    if len(stops):
        assert stops[S.N_FIXES].iloc[0] == n


@settings_
@given(n=st.integers(10, 200), step=st.integers(600, 4 * 3600), factor=st.floats(1.05, 50.0),
       bearing=st.floats(0, 359))
def test_bird_always_moving_fast_has_none(n, step, factor, bearing):
    speed = 2000.0 / 86400.0 * factor * 2  # well above max_diameter / min_duration
    d = speed * step * np.arange(n)
    rad = np.radians(bearing)
    fixes = track(n, step_s=step, jitter_deg=0.0)
    fixes[S.LAT] = 38.0 + d * np.cos(rad) / 111_320.0
    fixes[S.LON] = 127.0 + d * np.sin(rad) / (111_320.0 * np.cos(np.radians(fixes[S.LAT])))
    for method in ("flyway", "movingpandas"):
        assert len(detect_stops(fixes, method=method)) == 0


@settings_
@given(seed=st.integers(0, 10_000))
def test_row_order_does_not_matter(seed):
    fixes = pd.concat([stop_move_stop(seed), stop_move_stop(seed + 1).assign(**{S.INDIVIDUAL_ID: "b2"})],
                      ignore_index=True)
    shuffled = fixes.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    for method in ("flyway", "movingpandas"):
        pd.testing.assert_frame_equal(detect_stops(fixes, method=method), detect_stops(shuffled, method=method))


@settings_
@given(gap_h=st.integers(25, 400), cut=st.integers(10, 90), seed=st.integers(0, 1000))
def test_no_stop_spans_a_gap(gap_h, cut, seed):
    fixes = track(100, seed=seed)
    fixes.loc[cut:, S.TIMESTAMP] += pd.Timedelta(hours=gap_h)
    gap_start, gap_end = fixes[S.TIMESTAMP].iloc[cut - 1], fixes[S.TIMESTAMP].iloc[cut]
    stops = detect_stops(fixes, merge_time=f"{gap_h + 48}h")  # merging must not bridge it either
    assert not ((stops[S.START_TIME] <= gap_start) & (stops[S.END_TIME] >= gap_end)).any()


# ---------------------------------------------------------------- planted truth
@pytest.fixture(scope="module")
def simulation():
    simulate = pytest.importorskip("flyway.simulate")
    return simulate.simulate_flyway(n_individuals=24, days=365, seed=11)


def test_recall_and_precision_on_planted_stops(simulation):
    fixes = sim_fixes(simulation)
    fixes[S.QC_FLAGS] = qc_flags(fixes, now="2030-01-01")
    stops = detect_stops(fixes)
    recall, precision = recall_precision(simulation.truth, stops)
    print(f"planted {len(simulation.truth)}, detected {len(stops)}: recall {recall:.3f}, precision {precision:.3f}")
    assert recall >= 0.95 and precision >= 0.95
    # immature birds summering away from breeding grounds are never labelled breeding
    summering = simulation.truth[simulation.truth["immature_summering"]]
    for row in summering.itertuples():
        overlap = stops[(stops[S.INDIVIDUAL_ID] == row.individual_id) & (stops[S.START_TIME] <= row.end_time)
                        & (stops[S.END_TIME] >= row.start_time)]
        assert (overlap[S.KIND] != S.KIND_BREEDING).all()
