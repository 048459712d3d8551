"""Benchmark of the nightly run (issue 8): incremental night vs full recompute, 1 vs 2 dask workers.

    .venv/bin/python bench/nightly.py                 # 10M simulated fixes
    .venv/bin/python bench/nightly.py --fixes 1e6     # quick run

In one run, on one store:

1. a simulated flyway of about N fixes; 10 % of the birds keep their latest
   fixes (1 % of all fixes) back for the "new night";
2. the first nightly run ingests the 99 % and computes everything (reported);
3. the measured night: the 1 % file lands in the inbox, ``flyway.nightly`` runs
   (ingest, QC and stops of the changed birds, sites, alerts);
4. the full recompute on the same final store (nightly state removed, so QC,
   stops, sites and alerts run for every bird) — and its stops must equal the
   incremental ones;
5. the stop stage (``run_stops``) on a LocalCluster of 1 and of 2 single-thread
   workers.

Targets (issue 8): night <= 5 % of the full recompute; 2 workers >= 1.7x one on
the stop stage; peak memory < 4 GB.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import flyway
from flyway.incremental import state_path
from flyway.nightly import nightly
from flyway.nightly_config import NightlyConfig

FIXES_PER_BIRD_YEAR = 4300  # simulator: duty cycles 1-4 h (12.5 fixes/day) less silent gaps


def build(work: Path, n_fixes: int, seed: int) -> tuple[Path, Path, Path, int]:
    from flyway.simulate import simulate_flyway
    from flyway._simwrite import write_csv

    n_ind = max(10, int(round(n_fixes / FIXES_PER_BIRD_YEAR)))
    tic = time.perf_counter()
    sim = simulate_flyway(n_individuals=n_ind, days=365, seed=seed)
    fixes = sim.fixes
    ind_col, ts_col = "individual-local-identifier", "timestamp"
    birds = np.array(sorted(fixes[ind_col].unique()))
    rng = np.random.default_rng(seed)
    chosen = set(rng.choice(birds, size=max(1, len(birds) // 10), replace=False))
    t = pd.to_datetime(fixes[ts_col])
    mine = fixes[ind_col].isin(chosen).to_numpy()
    # the latest 10 % of each chosen bird's fixes: 1 % of all fixes over 10 % of the birds
    rank = t.groupby(fixes[ind_col]).rank(pct=True, method="first").to_numpy()
    new = mine & (rank > 0.9)
    base_csv, new_csv = work / "base.csv", work / "night.csv"
    write_csv(fixes[~new], base_csv, False)
    write_csv(fixes[new], new_csv, False)
    ref = write_csv(sim.reference, work / "reference.csv", False)
    print(f"simulated {len(fixes):,} fixes of {n_ind} birds in {time.perf_counter() - tic:.1f} s; "
          f"new night: {int(new.sum()):,} fixes ({new.mean():.2%}) of {len(chosen)} birds", flush=True)
    return base_csv, new_csv, ref, len(fixes)


def stop_stage(store: Path, workers: int) -> float:
    from distributed import Client, LocalCluster

    from flyway.analysis.runner import run_stops

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        run_stops(store, write=False, client=client, individuals_only=[])  # start-up, imports
        client.run(lambda: __import__("flyway.analysis.stops"))
        tic = time.perf_counter()
        run_stops(store, write=False, client=client)
        return time.perf_counter() - tic


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fixes", type=float, default=1e7)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", type=Path, default=None, help="Working folder (default: a temporary one).")
    ap.add_argument("--json", type=Path, default=None, help="Write the numbers here too.")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    work = args.work or Path(tempfile.mkdtemp(prefix="flyway-bench-nightly-"))
    work.mkdir(parents=True, exist_ok=True)
    base_csv, new_csv, ref, n_total = build(work, int(args.fixes), args.seed)
    store, inbox = work / "store", work / "inbox"
    shutil.rmtree(store, ignore_errors=True)
    inbox.mkdir(exist_ok=True)
    cfg = NightlyConfig(settle_s=0, reference=ref)

    shutil.move(base_csv, inbox / base_csv.name)
    first = nightly(store, inbox, config=cfg)
    print(f"first run (ingest 99 % + everything): {first.record['seconds']:.1f} s", flush=True)

    shutil.move(new_csv, inbox / new_csv.name)
    night = nightly(store, inbox, config=cfg)
    inc_stops = flyway.read_stops(store)
    print(f"nightly run (+1 %): {night.record['seconds']:.2f} s  stages "
          + ", ".join(f"{k} {v['seconds']:.2f}" for k, v in night.record["stages"].items()), flush=True)

    state_path(flyway.store.Store(store)).unlink()
    full = nightly(store, inbox, config=cfg)
    pd.testing.assert_frame_equal(flyway.read_stops(store), inc_stops)
    print(f"full recompute: {full.record['seconds']:.2f} s  stages "
          + ", ".join(f"{k} {v['seconds']:.2f}" for k, v in full.record["stages"].items()), flush=True)

    one = stop_stage(store, 1)
    two = stop_stage(store, 2)
    peak = max(r.record["process_peak_rss_mb"] for r in (first, night, full))
    result = {
        "fixes": n_total, "night_fixes": night.record["counts"]["rows_kept"],
        "first_run_s": first.record["seconds"], "night_s": night.record["seconds"],
        "full_recompute_s": full.record["seconds"], "night_over_full": night.record["seconds"] / full.record["seconds"],
        "stops_1_worker_s": one, "stops_2_workers_s": two, "speedup_2_over_1": one / two,
        "peak_rss_mb": peak, "night_stages": night.record["stages"], "full_stages": full.record["stages"],
    }
    print(f"\nnight / full recompute = {result['night_over_full']:.1%}  (target <= 5 %)")
    print(f"stop stage: 1 worker {one:.2f} s, 2 workers {two:.2f} s, speed-up {one / two:.2f}x  (target >= 1.7x)")
    print(f"peak memory of the nightly process: {peak:.0f} MB  (target < 4096 MB)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
