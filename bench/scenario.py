"""Benchmark of the scenario models against the R peers' measured throughput (issue 9).

Peers, measured on this kind of machine (2 cores), quoted in the issue:
  stochLAB stoch_crm, option 3: ~1,100 draws/s (5,000 draws in 4.6 s)
  Natural England PVA tool:     ~3,900 replicate-scenario-years/s (1,000 x 50 x 4 in 52 s)
Targets: >= 100x each (>= 110,000 draws/s; >= 390,000 replicate-scenario-years/s), same model content:
every Band parameter uncertain, environmental AND demographic stochasticity.

Exposure from tracks (issue 9 item 10): 10M fixes against 100 wind farms and 1,000 km of lines (20 x 50 km),
with the bootstrap of individuals for every facility and species; time, fixes/s and peak RSS.

Run:  .venv/bin/python bench/scenario.py [--draws 100000] [--replicates 10000] [--years 50] [--exposure-fixes 10000000]
"""
from __future__ import annotations

import argparse
import os
import resource
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import psutil
import shapely

from flyway import schema as S
from flyway.analysis.scenario.band_stochastic import stochastic_band
from flyway.analysis.scenario.config import parse_scenario
from flyway.analysis.scenario.population import Impact, project
from flyway.analysis.scenario.powerline import count_crossings
from flyway.analysis.scenario.species import load_species_table
from flyway.analysis.scenario.track_segments import FixArrays
from flyway.analysis.scenario.tracks import TrackExposure

STOCHLAB_DRAWS_PER_S = 5000 / 4.6
NEPVA_RSY_PER_S = 1000 * 50 * 4 / 52
FHD_CSV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "scenario" / "gannet_flight_height_distribution.csv"


def _gannet():
    """Band (2012) worked example with an sd on every parameter (stochLAB-style inputs)."""
    dens = [0.05, 0.47, 1.49, 1.4, 0.88, 1.04, 0.57, 1.8, 2.79, 0.83, 0.5, 0.12]
    if FHD_CSV.is_file():
        fhd = np.loadtxt(FHD_CSV, delimiter=",", skiprows=1)[:, 1]
    else:  # same shape of distribution without the shared data
        fhd = np.exp(-np.arange(157) / 12.0)
        fhd /= fhd.sum()
    boot = np.vstack([np.roll(fhd, k) for k in range(-5, 6)])  # 11 bootstrap flight-height distributions
    sp = dict(body_length_m={"mean": 0.94, "sd": 0.0325}, wingspan_m={"mean": 1.72, "sd": 0.0375},
              flight_speed_ms={"mean": 14.9, "sd": 1.5}, flight="gliding",
              nocturnal_activity={"mean": 0.5, "sd": 0.1}, avoidance_basic={"mean": 0.96, "sd": 0.01},
              avoidance_extended={"mean": 0.96, "sd": 0.01}, rotor_height_share={"mean": 0.0828, "sd": 0.01},
              flight_height_distribution=boot, density_km2={"mean": dens, "sd": [0.2 * d for d in dens]})
    wf = dict(turbines=200, latitude=55.8, width_km=7.8, rotor_radius_m={"mean": 57.5, "sd": 2.0},
              hub_height_m={"mean": 80.0, "sd": 2.0}, tidal_offset_m=2.5, blades=3,
              max_chord_m={"mean": 4.21, "sd": 0.2}, pitch_deg={"mean": 15.0, "sd": 2.0}, rpm={"mean": 9.9, "sd": 1.0},
              operational_share={"mean": [0.846, 0.846, 0.846, 0.773, 0.655, 0.638, 0.646, 0.718, 0.736, 0.790,
                                          0.818, 0.846], "sd": 0.02})
    return sp, wf


def _measure(fn, repeat: int = 1):
    """Best wall time of ``repeat`` untraced calls (the machine may be shared), then peak traced memory."""
    dt = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        dt = min(dt, time.perf_counter() - t0)
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, dt, peak / 2 ** 20


def bench_band(draws: int) -> None:
    sp, wf = _gannet()
    t0 = time.perf_counter()
    stochastic_band(sp, wf, 3, draws=10, seed=0)  # compile / load the numba kernel
    warm = time.perf_counter() - t0
    res, dt, peak = _measure(lambda: stochastic_band(sp, wf, 3, draws=draws, seed=1), repeat=3)
    rate = draws / dt
    print(f"Band option 3, {draws:,} draws x 12 months (every parameter uncertain): {dt:.2f} s (best of 3) "
          f"(first call incl. kernel load {warm:.2f} s)")
    print(f"  throughput {rate:,.0f} draws/s; peak traced memory {peak:,.0f} MiB; "
          f"ratio vs stochLAB ({STOCHLAB_DRAWS_PER_S:,.0f}/s): {rate / STOCHLAB_DRAWS_PER_S:,.0f}x "
          f"(target >= 100x: {'met' if rate >= 100 * STOCHLAB_DRAWS_PER_S else 'NOT met'})")
    print(f"  annual collisions: mean {res.annual.mean():.1f}, 95 % interval "
          f"{np.quantile(res.annual, 0.025):.1f}-{np.quantile(res.annual, 0.975):.1f}")


def bench_population(replicates: int, years: int) -> None:
    table = load_species_table()
    names = ["Platalea minor", "Grus monacha", "Antigone vipio"]
    def run():
        rng = np.random.default_rng(0)
        finals = []
        for k, name in enumerate(names):
            dem = table[name].demography()
            deaths = rng.gamma(2.0, 10.0, replicates)  # one collision draw per replicate
            impacts = [Impact(deaths), Impact(deaths * 3), Impact(0.01, mode="rate")]
            out = project(dem, impacts, years=years, replicates=replicates, seed=k)
            finals.append(out[:, :, -1, :].sum(axis=2))
        return finals

    finals, dt, peak = _measure(run, repeat=2)
    rsy = replicates * years * 4 * len(names)
    rate = rsy / dt
    print(f"Population: {replicates:,} replicates x {years} years x (baseline + 3 scenarios) x {len(names)} species "
          f"= {rsy:,} replicate-scenario-years: {dt:.2f} s (best of 2)")
    print(f"  throughput {rate:,.0f} replicate-scenario-years/s; peak traced memory {peak:,.0f} MiB; "
          f"ratio vs NE PVA ({NEPVA_RSY_PER_S:,.0f}/s): {rate / NEPVA_RSY_PER_S:,.0f}x "
          f"(target >= 100x: {'met' if rate >= 100 * NEPVA_RSY_PER_S else 'NOT met'})")
    ok = all(np.all(f[1:] <= f[0]) for f in finals)
    print(f"  (environmental + demographic noise, common random numbers; impacted <= baseline in every replicate: {ok})")


def bench_crossings(segments: int) -> None:
    rng = np.random.default_rng(3)
    lon0 = rng.uniform(120, 130, segments)
    lat0 = rng.uniform(30, 40, segments)
    lon1 = lon0 + rng.normal(0, 0.02, segments)
    lat1 = lat0 + rng.normal(0, 0.02, segments)
    # 20 lines of 50 km each (about 1,000 km), zig-zag every 2 km
    lines = []
    for i in range(20):
        x = 121 + 0.4 * i + np.linspace(0, 0.55, 26)
        y = 31 + 0.4 * i + 0.01 * (np.arange(26) % 2)
        lines.append(np.c_[x, y])
    geom = shapely.multilinestrings(lines)
    (seg, _), dt, peak = _measure(lambda: count_crossings(lon0, lat0, lon1, lat1, geom))
    print(f"Line crossings: {segments:,} flight segments vs ~1,000 km of lines: {dt:.2f} s "
          f"({segments / dt:,.0f} segments/s, {seg.size:,} crossings); peak traced memory {peak:,.0f} MiB")


_BIRDS_PER_CHUNK = 100
_FIXES_PER_BIRD = 10_000  # hourly fixes, ~14 months


def _bird_chunk(first: int, birds: int) -> FixArrays:
    """Hourly fixes of some birds: stationary spells (GPS jitter ~20 m) and flights (~15 km/h net), NE Asia."""
    rng = np.random.default_rng(first)
    n = birds * _FIXES_PER_BIRD
    ind = np.repeat(np.arange(first, first + birds), _FIXES_PER_BIRD)
    flying = rng.random(n) < 0.15  # the step into the fix was a flight
    step = np.where(flying[:, None], rng.normal(0, 0.15, (n, 2)), rng.normal(0, 0.0002, (n, 2)))
    step[::_FIXES_PER_BIRD] = np.column_stack([rng.uniform(121, 129, birds), rng.uniform(31, 39, birds)])
    xy = np.cumsum(step.reshape(birds, _FIXES_PER_BIRD, 2), axis=1).reshape(n, 2)
    t = (1.704e9 + np.tile(np.arange(_FIXES_PER_BIRD) * 3600.0, birds)
         + np.repeat(rng.uniform(0, 3600, birds), _FIXES_PER_BIRD))
    stationary = ~flying & ~np.r_[flying[1:], False]
    alt = np.where(stationary, rng.normal(50, 10, n), 50 + np.abs(rng.normal(150, 120, n)))
    return FixArrays(ind, t, xy[:, 0], xy[:, 1], alt, stationary)


def _exposure_config(seed: int = 5) -> dict:
    """100 wind farms (half footprints 3-6 km, half 5 x 4 turbine grids) and 20 zig-zag lines of about 50 km."""
    rng = np.random.default_rng(seed)
    species = ["Platalea minor", "Grus monacha", "Antigone vipio"]
    turbine = dict(rotor_radius_m=60.0, hub_height_m=100.0, max_chord_m=4.0, rpm={"mean": 10.0, "sd": 1.0},
                   pitch_deg=10.0, operational_share=[0.85] * 12)
    facs = []
    for i in range(100):
        x, y = rng.uniform(121, 129), rng.uniform(31, 39)
        fac = {"id": f"W{i:03d}", "kind": "wind_farm", **turbine,
               "exposure": {species[i % 3]: {"density_km2": [0.1] * 12}}}
        if i % 2:
            d = rng.uniform(0.015, 0.03)
            fac.update(footprint=[[x - d, y - d], [x + d, y - d], [x + d, y + d], [x - d, y + d], [x - d, y - d]],
                       turbines=20)
        else:
            gx, gy = np.meshgrid(x + 0.0055 * np.arange(5), y + 0.0045 * np.arange(4))
            fac["turbine_lon_lat"] = np.column_stack([gx.ravel(), gy.ravel()]).tolist()
        facs.append(fac)
    for i in range(20):
        x, y = rng.uniform(121, 128), rng.uniform(31, 38)
        line = np.column_stack([x + np.linspace(0, 0.52, 26), y + 0.005 * (np.arange(26) % 2)])  # ~50 km
        facs.append({"id": f"L{i:02d}", "kind": "power_line", "line": line.tolist(), "wire_low_m": 18.0,
                     "wire_top_m": 32.0, "exposure": {species[i % 3]: {"crossings_day": 100, "crossings_night": 10}}})
    return {"title": "bench", "run": {"replicates": 1000}, "facility": facs,
            "scenario": [{"name": "all", "facilities": [f["id"] for f in facs]}]}


class _PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 20 ms)."""

    def __enter__(self):
        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self.before = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def bench_exposure(fixes: int) -> None:
    birds = max(1, fixes // _FIXES_PER_BIRD)
    species = np.array(["Platalea minor", "Grus monacha", "Antigone vipio"])[np.arange(birds) % 3]

    generating = [0.0]  # time spent making the synthetic fixes, inside the pass

    def chunks():
        for first in range(0, birds, _BIRDS_PER_CHUNK):
            t0 = time.perf_counter()
            chunk = _bird_chunk(first, min(_BIRDS_PER_CHUNK, birds - first))
            generating[0] += time.perf_counter() - t0
            yield chunk

    cfg = parse_scenario(_exposure_config())
    n_rep = cfg.run.replicates
    tracks = TrackExposure.from_chunks([f"B{i:05d}" for i in range(birds)], species, chunks)
    with _PeakRSS() as mem:
        t0 = time.perf_counter()
        tracks.prepare(cfg, n_rep, np.random.SeedSequence(1))
        total = time.perf_counter() - t0 - generating[0]
    t0 = time.perf_counter()
    tracks.prepare(cfg, n_rep, np.random.SeedSequence(2))  # the pass is cached: scaling + bootstrap only
    scaling = time.perf_counter() - t0
    table = tracks.table()
    n_fix, segments = tracks.tables.fixes, tracks.tables.flight_segments
    farms = table[table[S.TRACKED_TRANSITS].notna()]
    lines = table[table[S.TRACKED_CROSSINGS].notna()]
    km = sum(cfg.facilities[f].length_km for f in lines[S.FACILITY_ID].unique())
    print(f"Exposure from tracks: {n_fix:,} fixes of {birds:,} birds ({segments:,} flight segments) "
          f"vs 100 wind farms + 20 lines ({km:,.0f} km), {n_rep:,} bootstrap replicates x 3 species: {total:.1f} s "
          f"(not counting {generating[0]:.1f} s spent generating the synthetic fixes, chunk by chunk)")
    print(f"  throughput {n_fix / total:,.0f} fixes/s; pass over the tracks {total - scaling:.1f} s, "
          f"scaling + bootstrap of 360 facility x species {scaling:.2f} s; peak RSS {mem.peak / 2 ** 20:,.0f} MiB "
          f"(+{(mem.peak - mem.before) / 2 ** 20:,.0f} MiB over the {mem.before / 2 ** 20:,.0f} MiB before)")
    print(f"  tracked: {int(farms[S.TRACKED_TRANSITS].sum()):,} transits through footprints "
          f"({(farms.groupby(S.FACILITY_ID)[S.TRACKED_TRANSITS].sum() > 0).sum()} of 100 farms reached), "
          f"{int(lines[S.TRACKED_CROSSINGS].sum()):,} line crossings")


def main() -> None:
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores; other work on the machine slows every number)")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=100_000)
    ap.add_argument("--replicates", type=int, default=10_000)
    ap.add_argument("--years", type=int, default=50)
    ap.add_argument("--segments", type=int, default=1_000_000)
    ap.add_argument("--exposure-fixes", type=int, default=10_000_000)
    a = ap.parse_args()
    bench_band(a.draws)
    bench_population(a.replicates, a.years)
    bench_crossings(a.segments)
    bench_exposure(a.exposure_fixes)
    print(f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
