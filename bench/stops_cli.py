"""Benchmark: ``flyway stops`` on a store, as a user runs it (issue 4: 10M fixes under 4 GB).

Builds (or reuses) a store of N simulated fixes with ``flyway ingest``, then runs
``flyway stops --store STORE`` on the default local dask cluster and with
``--in-process``, timing each and sampling the summed RSS of the whole process
tree (CLI + scheduler + workers) every 0.1 s for the peak.

    .venv/bin/python bench/stops_cli.py --fixes 1e7
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
FLYWAY = [sys.executable, "-m", "flyway.cli"]


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run(args: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak tree RSS (MB) and stdout of one CLI run."""
    t = time.perf_counter()
    proc = subprocess.Popen(FLYWAY + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(ps))
        time.sleep(0.1)
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"flyway {' '.join(args)} failed: {err}")
    return time.perf_counter() - t, peak / 2**20, out


def build_store(n_fixes: int) -> Path:
    sys.path.insert(0, str(HERE))
    from ingest import make_csv  # bench/ingest.py: cached simulator CSV of that size

    csv = make_csv(n_fixes)
    store = csv.parent / "store"
    if not (store / "_ledger.parquet").exists():
        t, rss, _ = run(["ingest", str(csv), "--store", str(store), "--quiet"])
        print(f"  ingested {csv.stat().st_size / 1e6:.0f} MB in {t:.1f}s (peak {rss:.0f} MB)")
    return store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixes", type=float, default=1e7)
    args = ap.parse_args()
    store = build_store(int(args.fixes))
    import flyway

    n = flyway.store_info(store).fixes
    results = {"fixes": n, "load_average_1min": round(__import__("os").getloadavg()[0], 2)}
    for label, extra in (("local_cluster", []), ("in_process", ["--in-process"])):
        t, rss, out = run(["stops", "--store", str(store), "--json"] + extra)
        results[label] = {"seconds": round(t, 1), "fixes_per_s": round(n / t), "peak_rss_mb": round(rss),
                          "stops": json.loads(out)["stops"]}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
