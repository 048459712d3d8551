"""Benchmark: movingpandas' TrajectoryStopDetector vs flyway's method="movingpandas" and method="flyway".

Same simulated input (flyway.simulate, hourly to 4-hourly fixes) in the same run,
at 10k, 100k and 1M fixes, and flyway alone at 10M. Each size runs in a fresh
subprocess so that its peak RSS is its own. movingpandas is timed only while a
run is predicted to finish within --mp-limit seconds; above that its time is
extrapolated from its measured throughput (and marked so).

    .venv/bin/python bench/stops.py [--sizes 10000 100000 1000000 10000000]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd

from flyway import schema as S

FIXES_PER_BIRD_YEAR = 4400  # simulate_flyway's mean with its default duty cycles


def simulated_fixes(n_fixes: int, seed: int = 1, chunk_birds: int = 200) -> pd.DataFrame:
    """Simulated fixes, generated in chunks of birds so the generator's peak memory stays small."""
    from flyway.simulate import simulate_flyway

    birds = max(1, int(round(n_fixes / FIXES_PER_BIRD_YEAR)))
    parts = []
    for k, first in enumerate(range(0, birds, chunk_birds)):
        f = simulate_flyway(n_individuals=min(chunk_birds, birds - first), days=365, seed=seed + k).fixes
        parts.append(pd.DataFrame({
            S.INDIVIDUAL_ID: (f"c{k}-" + f["individual-local-identifier"].astype(str)).astype("category"),
            S.SPECIES: f["individual-taxon-canonical-name"].astype(str).astype("category"),
            S.TIMESTAMP: pd.to_datetime(f["timestamp"], utc=True),
            S.LON: f["location-long"].astype(float), S.LAT: f["location-lat"].astype(float)}))
        del f
    out = pd.concat(parts, ignore_index=True)
    out[S.INDIVIDUAL_ID] = out[S.INDIVIDUAL_ID].astype(str)
    out[S.SPECIES] = out[S.SPECIES].astype(str)
    return out.iloc[:n_fixes] if len(out) > n_fixes else out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_movingpandas(fixes: pd.DataFrame) -> tuple[float, int]:
    import geopandas as gpd
    import movingpandas as mpd

    tic = time.perf_counter()
    gdf = gpd.GeoDataFrame(fixes[[S.INDIVIDUAL_ID, S.TIMESTAMP]],
                           geometry=gpd.points_from_xy(fixes[S.LON], fixes[S.LAT]), crs=4326)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tc = mpd.TrajectoryCollection(gdf, traj_id_col=S.INDIVIDUAL_ID, t=S.TIMESTAMP)
        n = len(mpd.TrajectoryStopDetector(tc).get_stop_time_ranges(2000.0, pd.Timedelta("24h")))
    return time.perf_counter() - tic, n


def one(n_fixes: int, methods: list[str]) -> dict:
    from flyway.analysis.stops import detect_stops

    detect_stops(simulated_fixes(3000, seed=99), method="flyway")  # compile / load the numba cache
    detect_stops(simulated_fixes(3000, seed=99), method="movingpandas")
    fixes = simulated_fixes(n_fixes)
    out = {"fixes": len(fixes), "individuals": int(fixes[S.INDIVIDUAL_ID].nunique())}
    for method in methods:
        if method == "mp-detector":
            secs, n = run_movingpandas(fixes)
        else:
            tic = time.perf_counter()
            n = len(detect_stops(fixes, method=method, max_diameter=2000.0, min_duration="24h"))
            secs = time.perf_counter() - tic
        out[method] = {"seconds": secs, "stops": n, "fixes_per_s": len(fixes) / secs}
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 10_000_000])
    ap.add_argument("--mp-limit", type=float, default=300.0, help="seconds movingpandas may take per size")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--methods", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.methods)))
        return
    mp_rate = None
    print(f"{'fixes':>10} {'method':>13} {'seconds':>9} {'fixes/s':>11} {'stops':>6} {'speed-up':>9} {'peak RSS':>9}")
    for size in args.sizes:
        methods = ["movingpandas", "flyway"]
        predicted = size / mp_rate if mp_rate else 0.0
        run_mp = size <= 1_000_000 and predicted <= args.mp_limit
        if run_mp:
            methods.insert(0, "mp-detector")
        if size > 1_000_000:
            methods = ["flyway"]
        res = json.loads(subprocess.run([sys.executable, __file__, "--one", str(size), "--methods", *methods],
                                        check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        if run_mp:
            mp_rate = res["mp-detector"]["fixes_per_s"]
        base = res["mp-detector"]["fixes_per_s"] if run_mp else mp_rate
        for m in (["mp-detector"] if not run_mp and mp_rate and size <= 1_000_000 else []) + methods:
            if m == "mp-detector" and not run_mp:
                print(f"{res['fixes']:>10} {m:>13} {res['fixes'] / mp_rate:>9.1f} {mp_rate:>11.0f} {'-':>6} "
                      f"{'1.0':>9} {'-':>9}  (extrapolated from the measured movingpandas throughput)")
                continue
            r = res[m]
            ratio = f"{r['fixes_per_s'] / base:.0f}x" if base else "-"
            print(f"{res['fixes']:>10} {m:>13} {r['seconds']:>9.2f} {r['fixes_per_s']:>11.0f} {r['stops']:>6} "
                  f"{ratio:>9} {res['peak_rss_mb']:>7.0f}MB")
        sys.stdout.flush()


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
