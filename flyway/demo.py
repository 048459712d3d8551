"""``flyway demo``: the embedded default run, needing no downloads.

Simulates a flyway of the three flagship species, ingests it into a store and
prints what is there; later stages (stops, coverage, maps) join as they land.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from flyway.info import store_info
from flyway.ingest.pipeline import ingest
from flyway.simulate import write_simulation


def run_demo(out_dir: str | os.PathLike[str], n_individuals: int = 30, days: int = 365, seed: int = 0,
             echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Simulate -> ingest -> summarise. Returns paths and the figures printed."""
    out_dir = Path(out_dir)
    sim_dir = out_dir / "simulated"
    store = out_dir / "store"
    paths = write_simulation(sim_dir, n_individuals=n_individuals, days=days, seed=seed)
    echo(f"simulated {n_individuals} birds over {days} days -> {paths['fixes']}")
    report = ingest([paths["fixes"]], store, reference=paths["reference"])
    echo(f"ingested batch {report.batch_id}: {report.rows_kept} fixes kept, "
         f"{report.rows_quarantined} rows quarantined, "
         f"{sum(f.rows_duplicate for f in report.files)} duplicate rows dropped")
    for f in report.files:
        for reason, n in f.quarantine_reasons.items():
            echo(f"  quarantine {reason}: {n}")
    info = store_info(store)
    for s in info.species:
        echo(f"  {s.species}: {s.individuals} birds, {s.fixes} fixes, {s.first} .. {s.last}")
    return {"store": str(store), "simulation": {k: str(v) for k, v in paths.items()},
            "ingest": report.to_dict(), "info": info.to_dict()}
