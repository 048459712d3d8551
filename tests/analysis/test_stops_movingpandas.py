"""method="movingpandas" against movingpandas itself: same stops, same start and end timestamps.

The match rate printed per data set is the share of stops (union of both
results) found identically by both; the tests require 100 %.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import MultiPoint

from flyway import schema as S
from flyway.analysis._geodesy import convex_hull_cw, geodesic_m, mrr_corners
from flyway.analysis.stops import detect_stops
from tests.analysis.test_stops import sim_fixes, stop_move_stop

mpd = pytest.importorskip("movingpandas")
gpd = pytest.importorskip("geopandas")
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def movingpandas_stops(fixes: pd.DataFrame, max_diameter: float, min_duration: str) -> set[tuple]:
    gdf = gpd.GeoDataFrame(fixes[[S.INDIVIDUAL_ID, S.TIMESTAMP]].copy(),
                           geometry=gpd.points_from_xy(fixes[S.LON], fixes[S.LAT]), crs=4326)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tc = mpd.TrajectoryCollection(gdf, traj_id_col=S.INDIVIDUAL_ID, t=S.TIMESTAMP)
        segs = mpd.TrajectoryStopDetector(tc).get_stop_segments(max_diameter=max_diameter,
                                                                min_duration=pd.Timedelta(min_duration))
    return {(str(s.parent.id), pd.Timestamp(s.get_start_time()), pd.Timestamp(s.get_end_time()), len(s.df))
            for s in segs}


def ours(fixes: pd.DataFrame, max_diameter: float, min_duration: str) -> set[tuple]:
    st = detect_stops(fixes, method="movingpandas", max_diameter=max_diameter, min_duration=min_duration)
    return {(i, a.tz_localize(None), b.tz_localize(None), n) for i, a, b, n in
            zip(st[S.INDIVIDUAL_ID], st[S.START_TIME], st[S.END_TIME], st[S.N_FIXES])}


def assert_same(fixes, label, cases):
    for max_diameter, min_duration in cases:
        ref, got = movingpandas_stops(fixes, max_diameter, min_duration), ours(fixes, max_diameter, min_duration)
        union = ref | got
        rate = len(ref & got) / len(union) if union else 1.0
        print(f"{label} d={max_diameter} t={min_duration}: movingpandas {len(ref)}, flyway {len(got)}, "
              f"match rate {rate:.4f}")
        assert got == ref, sorted(ref ^ got)[:5]


def test_minimum_area_rectangle_matches_geos():
    rng = np.random.default_rng(5)
    for trial in range(300):
        n = int(rng.integers(3, 40))
        xs = np.round(rng.normal(127, 0.01, n), 3 + trial % 3)  # rounding makes ties
        ys = np.round(rng.normal(37, 0.01, n), 3 + trial % 3)
        hx, hy = np.empty(n + 1), np.empty(n + 1)
        h = convex_hull_cw(xs, ys, hx, hy)
        if h < 3:
            continue
        x, y = shapely.oriented_envelope(MultiPoint(np.c_[xs, ys])).exterior.coords.xy
        c0x, c0y, c2x, c2y = mrr_corners(hx, hy, h)
        assert np.allclose([c0x, c0y, c2x, c2y], [x[0], y[0], x[2], y[2]], rtol=0, atol=1e-11)


def test_geodesic_matches_geopy():
    from geopy.distance import distance

    rng = np.random.default_rng(2)
    for _ in range(300):
        lat, lon = rng.uniform(-70, 75), rng.uniform(-180, 180)
        lat2, lon2 = lat + rng.normal(0, 0.05), lon + rng.normal(0, 0.05)
        assert geodesic_m(lat, lon, lat2, lon2) == pytest.approx(distance((lat, lon), (lat2, lon2)).meters,
                                                                 abs=1e-5)


def test_synthetic_tracks():
    fixes = pd.concat([stop_move_stop(s).assign(**{S.INDIVIDUAL_ID: f"b{s}"}) for s in range(4)],
                      ignore_index=True)
    rng = np.random.default_rng(0)
    fixes[S.LON] += rng.normal(0, 0.004, len(fixes))  # noisier stops: many stop/no-stop switches
    assert_same(fixes, "synthetic", [(2000.0, "24h"), (1000.0, "3h"), (500.0, "1h"), (3000.0, "6h")])


def test_simulated_flyway():
    simulate = pytest.importorskip("flyway.simulate")
    fixes = sim_fixes(simulate.simulate_flyway(n_individuals=4, days=120, seed=5))
    assert_same(fixes, "simulated", [(2000.0, "24h"), (500.0, "2h")])


def read_movebank(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path, low_memory=False)
    raw = raw[raw["location-long"].notna() & raw["location-lat"].notna()]
    return pd.DataFrame({S.INDIVIDUAL_ID: raw["individual-local-identifier"].astype(str),
                         S.TIMESTAMP: pd.to_datetime(raw["timestamp"], utc=True),
                         S.LON: raw["location-long"].astype(float), S.LAT: raw["location-lat"].astype(float)})


@pytest.mark.slow
def test_real_barnacle_geese():
    path = SHARED / "telemetry" / "barnacle-geese-greenland" / "barnacle_geese_greenland.csv"
    if not path.is_file():
        pytest.skip("real telemetry absent")
    assert_same(read_movebank(path), "barnacle geese", [(2000.0, "24h"), (10000.0, "12h")])


def test_real_icarus_cuckoos_and_snipe():
    path = SHARED / "telemetry" / "mongolia-cuckoos-snipe-icarus" / "icarus_mongolia_cuckoos_nymba.csv"
    if not path.is_file():
        pytest.skip("real telemetry absent")
    assert_same(read_movebank(path), "ICARUS", [(2000.0, "24h"), (30000.0, "48h")])
