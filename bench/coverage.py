"""Benchmark: sites, protected-area coverage and infrastructure exposure at scale (synthetic).

    .venv/bin/python bench/coverage.py [--stops 100000] [--facilities 100000] [--fixes 1000000]

Each stage prints its wall time, the process's peak RSS so far, and the ratio
against the obvious peer in the same run:

* sites      vs scikit-learn ``DBSCAN(metric="haversine")`` on the same stops
               (clustering only; ours adds polygons and statistics);
* coverage   vs geopandas ``overlay`` of the sites with the dissolved
               protected areas (area fraction only; ours adds which areas,
               fixes and the per species/season/country table);
* exposure   vs geopandas ``sjoin_nearest`` in an equal-area projection
               (nearest only, projected distances; ours is geodesic and adds
               the buffer counts).
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

# this file is named like the `coverage` package that numba probes for; keep bench/ off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from sklearn.cluster import DBSCAN

from flyway import schema as S
from flyway.analysis._geodesy import EARTH_RADIUS_M
from flyway.analysis.coverage import coverage
from flyway.analysis.infrastructure import ExposureParams, proximity
from flyway.analysis.protected import clean_protected_areas, equal_area_crs
from flyway.analysis.sites import SiteParams, find_sites

SPECIES = ("Platalea minor", "Grus monacha", "Antigone vipio")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(label: str, fn):
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    print(f"{label:<44s} {dt:8.2f} s   peak RSS {peak_rss_mb():7.0f} MB", flush=True)
    return out, dt


def synthetic_stops(n: int, rng: np.random.Generator) -> pd.DataFrame:
    centres = np.column_stack([rng.uniform(105, 145, 3000), rng.uniform(25, 55, 3000)])
    pick = rng.integers(0, len(centres), n)
    lat = centres[pick, 1] + np.degrees(rng.normal(0, 3000, n) / EARTH_RADIUS_M)
    lon = centres[pick, 0] + np.degrees(rng.normal(0, 3000, n) / EARTH_RADIUS_M) / np.cos(np.radians(lat))
    start = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.uniform(0, 365, n), unit="D")
    dur = rng.uniform(24, 24 * 30, n)
    return pd.DataFrame({
        S.INDIVIDUAL_ID: [f"bird{i}" for i in rng.integers(0, 600, n)], S.SPECIES: rng.choice(SPECIES, n),
        S.STOP_ID: [f"s{i}" for i in range(n)], S.START_TIME: start,
        S.END_TIME: start + pd.to_timedelta(dur, unit="h"), S.DURATION_H: dur, S.LON: lon, S.LAT: lat,
        S.RADIUS_M: 800.0, S.N_FIXES: rng.integers(5, 200, n), S.KIND: S.KIND_STOPOVER,
        S.SEASON: rng.choice(["2024-spring", "2024-autumn"], n), S.COUNTRY: "CHN"})


def synthetic_protected_areas(rng: np.random.Generator, n: int = 3000) -> gpd.GeoDataFrame:
    cx, cy = rng.uniform(105, 145, n), rng.uniform(25, 55, n)
    w = rng.uniform(0.02, 0.3, n)
    polys = shapely.box(cx - w, cy - w / 2, cx + w, cy + w / 2)
    pts = shapely.points(rng.uniform(105, 145, n // 5), rng.uniform(25, 55, n // 5))
    geoms = np.r_[polys, pts]
    m = len(geoms)
    return gpd.GeoDataFrame({
        "WDPAID": np.arange(m), "NAME": [f"PA {i}" for i in range(m)],
        "DESIG_ENG": rng.choice(["Nature Reserve", "Ramsar Site, Wetland of International Importance",
                                 "UNESCO-MAB Biosphere Reserve"], m, p=[0.8, 0.15, 0.05]),
        "IUCN_CAT": "IV", "STATUS": rng.choice(["Designated", "Proposed"], m, p=[0.9, 0.1]),
        "STATUS_YR": rng.integers(1980, 2024, m), "ISO3": "CHN", "REP_AREA": rng.uniform(1, 200, m),
    }, geometry=geoms, crs="EPSG:4326")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stops", type=int, default=100_000)
    ap.add_argument("--facilities", type=int, default=100_000)
    ap.add_argument("--fixes", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    stops = synthetic_stops(args.stops, rng)
    print(f"{args.stops:,} stops, {args.facilities:,} facilities, {args.fixes:,} fixes; "
          f"baseline peak RSS {peak_rss_mb():.0f} MB")

    params = SiteParams(eps_m=10_000.0)
    sites, t_ours = timed("find_sites (flyway)", lambda: find_sites(stops, params))
    print(f"  -> {len(sites):,} sites")

    def sklearn_dbscan():
        for sp in SPECIES:
            sub = stops[stops[S.SPECIES] == sp]
            X = np.radians(sub[[S.LAT, S.LON]].to_numpy())
            DBSCAN(eps=params.eps_m / EARTH_RADIUS_M, min_samples=1, metric="haversine",
                   algorithm="ball_tree").fit(X)
    _, t_peer = timed("  peer: sklearn DBSCAN haversine (labels only)", sklearn_dbscan)
    print(f"  ratio flyway / peer = {t_ours / t_peer:.2f}")

    raw = synthetic_protected_areas(rng)
    pas, _ = timed(f"clean_protected_areas ({len(raw):,} records)", lambda: clean_protected_areas(raw))
    pick = rng.integers(0, len(stops), args.fixes)
    fixes = pd.DataFrame({S.SPECIES: stops[S.SPECIES].to_numpy()[pick],
                          S.LON: stops[S.LON].to_numpy()[pick] + rng.normal(0, 0.005, args.fixes),
                          S.LAT: stops[S.LAT].to_numpy()[pick] + rng.normal(0, 0.005, args.fixes)})
    cov, t_ours = timed("coverage (flyway, stops only)", lambda: coverage(sites, pas, stops=stops))
    _, t_fix = timed(f"coverage (flyway, + {args.fixes:,} fixes)", lambda: coverage(sites, pas, stops=stops,
                                                                                    fixes=fixes))
    print(f"  -> mean protected_fraction {cov.sites[S.PROTECTED_FRACTION].mean():.3f}, "
          f"{len(cov.gaps):,} gaps; top gap {cov.gaps[S.UNPROTECTED_BIRD_DAYS].iloc[0]:.1f} unprotected bird-days")

    def overlay_peer():
        crs = equal_area_crs(sites[S.LON].to_numpy(), sites[S.LAT].to_numpy())
        s = sites[[S.SITE_ID, S.GEOMETRY]].to_crs(crs)
        union = gpd.GeoDataFrame(geometry=[shapely.union_all(pas.to_crs(crs).geometry.to_numpy())], crs=crs)
        inter = gpd.overlay(s, union.explode(index_parts=False), how="intersection")
        return inter.assign(a=inter.area).groupby(S.SITE_ID)["a"].sum() / s.set_index(S.SITE_ID).area
    _, t_peer = timed("  peer: geopandas overlay with dissolved PAs", overlay_peer)
    print(f"  ratio flyway / peer = {t_ours / t_peer:.2f}")

    fac_centres = rng.integers(0, len(stops), args.facilities)
    fac = gpd.GeoDataFrame({
        S.FACILITY_ID: [f"f{i}" for i in range(args.facilities)], S.FACILITY_NAME: "turbine",
        S.FACILITY_KIND: rng.choice(["wind_turbine", "power_tower"], args.facilities), S.FACILITY_SOURCE: "wind",
    }, geometry=shapely.points(stops[S.LON].to_numpy()[fac_centres] + rng.normal(0, 0.1, args.facilities),
                               stops[S.LAT].to_numpy()[fac_centres] + rng.normal(0, 0.1, args.facilities)),
        crs="EPSG:4326")
    lon, lat = stops[S.LON].to_numpy(), stops[S.LAT].to_numpy()
    prox, t_ours = timed("exposure: proximity, 2 kinds, 1/5/10 km counts",
                         lambda: proximity(lon, lat, fac, ExposureParams()))
    print(f"  -> median nearest {prox[S.DISTANCE_KM].median():.2f} km, "
          f"mean within 5 km {prox['n_within_5km'].mean():.1f}")

    def sjoin_peer():
        crs = equal_area_crs(lon, lat)
        pts = gpd.GeoDataFrame(geometry=shapely.points(lon, lat), crs="EPSG:4326").to_crs(crs)
        out = []
        for kind, sub in fac.groupby(S.FACILITY_KIND):
            out.append(gpd.sjoin_nearest(pts, sub.to_crs(crs), distance_col="d"))
        return out
    _, t_peer = timed("  peer: geopandas sjoin_nearest (projected)", sjoin_peer)
    print(f"  ratio flyway / peer = {t_ours / t_peer:.2f}")


if __name__ == "__main__":
    main()
