"""Refresh the shareable outputs after a nightly run: the gap map and the planner report.

Kept apart from :mod:`flyway.nightly` so the run itself stays readable; a
failure here is logged and recorded in the run record, never fatal: the data
the maps draw is already committed and the next night tries again.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from flyway.store import Store

log = logging.getLogger(__name__)
GAP_MAP_FILE = "gap_map.html"
REPORT_DIR = "report"


def refresh_outputs(store: Store, out_dir: Path, *, self_contained: bool = True,
                    public_report: bool = True) -> dict[str, Any]:
    """Write ``out_dir/gap_map.html`` and ``out_dir/report/`` from the store; returns paths or the error.

    ``out_dir`` is a local folder, also when the store is on object storage.
    """
    from flyway.maps.gap_map import gap_map
    from flyway.maps.offline import save_map
    from flyway.maps.report import report

    if re.match(r"[A-Za-z][A-Za-z0-9+.-]+:/", str(out_dir)):
        msg = f"maps_dir = {out_dir}: maps and the report are written to a local folder; expected a local path"
        log.error("%s", msg)
        return {"error": msg}
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        gap = save_map(gap_map(store.path, self_contained=self_contained), out_dir / GAP_MAP_FILE,
                       self_contained=self_contained)
        page = report(store.path, out_dir / REPORT_DIR, public=public_report, self_contained=self_contained)
    except Exception as exc:  # noqa: BLE001 - outputs must not fail a night whose data is committed
        log.error("refreshing maps and report in %s failed: %s: %s", out_dir, type(exc).__name__, exc)
        return {"error": f"{type(exc).__name__}: {exc}"}
    log.info("maps and report refreshed in %s", out_dir)
    return {"gap_map": str(gap), "report": str(page)}
