"""Run records of the nightly job: ``STORE/_runs/<run-id>.json``, one per run.

A record is written when a run starts (``status = "running"``) and replaced
when it ends, so a run killed half-way is visible afterwards as a record
that never finished. Each stage carries its wall time and the peak resident
memory of the process while it ran (sampled by a background thread with
psutil), besides the process's lifetime peak from ``getrusage``.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import resource
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from flyway.geoparquet import atomic_write_bytes
from flyway.objectstore import store_path

RUNS_DIR = "_runs"
STATUS_RUNNING = "running"
STATUS_OK = "ok"
STATUS_PARTIAL = "partial"  # some files failed, the rest were processed
STATUS_ERROR = "error"
_SAMPLE_S = 0.02


def new_run_id(now: dt.datetime | None = None) -> str:
    """A sortable, unique run id: UTC time then random hex."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"


def _rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def process_peak_mb() -> float:
    """Peak resident memory of this process so far (MiB), from getrusage."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024.0


@contextmanager
def measure(stages: dict[str, dict[str, float]], name: str) -> Iterator[None]:
    """Record ``seconds`` and ``peak_rss_mb`` of the block under ``stages[name]``."""
    peak = [_rss_bytes()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(_SAMPLE_S):
            peak[0] = max(peak[0], _rss_bytes())

    thread = threading.Thread(target=sample, name=f"flyway-rss-{name}", daemon=True)
    thread.start()
    tic = time.perf_counter()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        peak[0] = max(peak[0], _rss_bytes())
        stages[name] = {"seconds": round(time.perf_counter() - tic, 4), "peak_rss_mb": round(peak[0] / (1 << 20), 1)}


def runs_dir(store: str | os.PathLike[str]) -> Path:
    """``STORE/_runs`` (a ``UPath`` for a store on object storage)."""
    return store_path(store) / RUNS_DIR


def write_run_record(store: str | os.PathLike[str], record: dict[str, Any]) -> Path:
    """Write (or replace) ``STORE/_runs/<run_id>.json`` atomically."""
    path = runs_dir(store) / f"{record['run_id']}.json"
    atomic_write_bytes(path, (json.dumps(record, indent=2, default=str, sort_keys=False) + "\n").encode())
    return path


def read_run_records(store: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every run record of a store, oldest first (unreadable files are skipped)."""
    folder = runs_dir(store)
    out = []
    for f in sorted(folder.glob("*.json"), key=str) if folder.is_dir() else []:
        try:
            out.append(json.loads(f.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return sorted(out, key=lambda r: (str(r.get("started")), str(r.get("run_id"))))  # ids of one second


def list_runs(store: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per nightly run: id, status, start, seconds, files, rows, stops, alerts, exit code.

    Parameters
    ----------
    store : path
        The store folder.

    Returns
    -------
    pandas.DataFrame
        Oldest run first. A run that was killed shows ``status = "running"``
        and no end time.

    Examples
    --------
    >>> flyway.list_runs("birds/").tail(7)  # doctest: +SKIP
    """
    rows = []
    for r in read_run_records(store):
        counts = r.get("counts", {})
        rows.append({
            "run_id": r.get("run_id"), "status": r.get("status"), "started": r.get("started"),
            "ended": r.get("ended"), "seconds": r.get("seconds"),
            "files_processed": counts.get("files_processed", 0), "files_failed": counts.get("files_failed", 0),
            "rows_kept": counts.get("rows_kept", 0), "individuals": counts.get("individuals_changed", 0),
            "stops_added": counts.get("stops_added", 0), "stops_changed": counts.get("stops_changed", 0),
            "alerts": counts.get("alerts", 0), "exit_code": r.get("exit_code"),
        })
    cols = ["run_id", "status", "started", "ended", "seconds", "files_processed", "files_failed", "rows_kept",
            "individuals", "stops_added", "stops_changed", "alerts", "exit_code"]
    return pd.DataFrame(rows, columns=cols)
