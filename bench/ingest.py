"""Benchmark: Movebank CSV -> store, against a bare ``pyarrow.csv.read_csv`` of the same file.

Usage::

    python bench/ingest.py                 # 1M and 10M fixes
    python bench/ingest.py --fixes 1e6     # one size

For each size the simulator writes a Movebank CSV (cached in bench/out/),
then, each in a fresh process so peak RSS is its own:

* ``pyarrow.csv.read_csv`` of the file (multi-threaded, type inference): the
  ceiling for "reading a CSV" on this machine;
* ``flyway.ingest`` of the file into an empty store (parse, validate,
  quarantine, dedup, GeoParquet part files, ledger commit).

Each is run ``--repeats`` times, interleaved, and the best time of each is
kept (the bare read uses both cores and swings most when the machine is
shared). Prints fixes/s for both, their ratio (target: flyway >= 1/3 of the
bare read), peak RSS (target: does not grow with file size), and the CPU
seconds of each (median; steadier than wall time on a shared machine).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
FIXES_PER_BIRD_YEAR = 4_100  # the simulator's mean at 1-4 h intervals, minus gaps (measured)

# each child prints: rows, seconds, CPU seconds (user + system, all threads) of the timed call, peak RSS (kB)
BARE = """
import resource, sys, time, pyarrow.csv as pcsv
cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
t, c = time.perf_counter(), cpu(); table = pcsv.read_csv(sys.argv[1]); dt, dc = time.perf_counter() - t, cpu() - c
print(table.num_rows, dt, dc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
FLYWAY = """
import resource, sys, time, flyway
cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
t, c = time.perf_counter(), cpu(); r = flyway.ingest([sys.argv[1]], store=sys.argv[2])
dt, dc = time.perf_counter() - t, cpu() - c
rows = r.rows_kept + r.rows_quarantined + sum(f.rows_duplicate for f in r.files)
print(rows, dt, dc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def make_csv(n_fixes: int) -> Path:
    from flyway.simulate import write_simulation

    birds = max(1, round(n_fixes / FIXES_PER_BIRD_YEAR))
    folder = OUT / f"sim-{birds}"
    path = folder / "flyway_sim.csv"
    if not path.exists():
        t = time.perf_counter()
        write_simulation(folder, n_individuals=birds, days=365, seed=1)
        print(f"  simulated {birds} birds -> {path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - t:.1f}s")
    return path


def run_child(code: str, *args: str) -> tuple[int, float, float, float]:
    """Run a measurement in a fresh process; returns rows, seconds, CPU seconds, its own peak RSS (MB)."""
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    rows, seconds, cpu_seconds, peak_kb = proc.stdout.split()[-4:]
    return int(rows), float(seconds), float(cpu_seconds), int(peak_kb) / 1024


def bench(n_fixes: int, repeats: int = 3) -> dict:
    path = make_csv(n_fixes)
    store = OUT / "store"
    shutil.rmtree(store, ignore_errors=True)
    bare, fly = [], []
    for _ in range(repeats):  # interleaved, best of each: the machine is shared and noisy
        bare.append(run_child(BARE, str(path)))
        fly.append(run_child(FLYWAY, str(path), str(store)))
        shutil.rmtree(store, ignore_errors=True)
    rows_bare, t_bare, _, _ = min(bare, key=lambda r: r[1])
    rows_fly, t_fly, _, _ = min(fly, key=lambda r: r[1])
    rss_bare, rss_fly = max(r[3] for r in bare), max(r[3] for r in fly)
    cpu_bare, cpu_fly = (sorted(r[2] for r in runs)[len(runs) // 2] for runs in (bare, fly))
    res = {
        "fixes": rows_bare, "csv_mb": round(path.stat().st_size / 1e6, 1),
        "bare_read_fixes_per_s": round(rows_bare / t_bare), "bare_read_s": round(t_bare, 2),
        "flyway_fixes_per_s": round(rows_fly / t_fly), "flyway_s": round(t_fly, 2),
        "ratio_flyway_to_bare": round((rows_fly / t_fly) / (rows_bare / t_bare), 3),
        "peak_rss_bare_mb": round(rss_bare), "peak_rss_flyway_mb": round(rss_fly), "repeats": repeats,
        # CPU seconds (median of the runs) move less than wall time when the machine is shared
        "bare_read_cpu_s": round(cpu_bare, 2), "flyway_cpu_s": round(cpu_fly, 2),
        "flyway_seconds_all_runs": [round(r[1], 2) for r in fly],
        "bare_seconds_all_runs": [round(r[1], 2) for r in bare],
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    assert rows_fly == rows_bare, (rows_fly, rows_bare)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixes", type=float, action="append", help="sizes (default 1e6 and 1e7)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each, best time kept (default 3)")
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    results = []
    for n in sorted(args.fixes or [1e6, 1e7]):
        print(f"== {n:,.0f} fixes")
        r = bench(int(n), args.repeats)
        results.append(r)
        print(json.dumps(r, indent=2))
    print("fixes       CSV MB  bare fixes/s  flyway fixes/s  ratio  peak RSS bare / flyway (MB)")
    for r in results:
        print(f"{r['fixes']:>10,}  {r['csv_mb']:>6}  {r['bare_read_fixes_per_s']:>12,}  {r['flyway_fixes_per_s']:>14,}"
              f"  {r['ratio_flyway_to_bare']:>5}  {r['peak_rss_bare_mb']} / {r['peak_rss_flyway_mb']}")


if __name__ == "__main__":
    main()
