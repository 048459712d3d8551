"""Shared fixtures: the real-data folder (skipped when absent) and small Movebank files built in code."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

MOVEBANK_HEADER = [
    "event-id", "visible", "timestamp", "location-long", "location-lat", "gps:hdop", "gps:satellite-count",
    "height-above-ellipsoid", "sensor-type", "individual-taxon-canonical-name", "tag-local-identifier",
    "individual-local-identifier", "study-name",
]


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


def movebank_frame(n_individuals: int = 3, n_fixes: int = 50, seed: int = 0, start: str = "2024-03-01",
                   species: str = "Grus monacha", first_event_id: int = 1) -> pd.DataFrame:
    """A small, valid Movebank-format table: birds wandering near Cheorwon, hourly fixes."""
    rng = np.random.default_rng(seed)
    n = n_individuals * n_fixes
    ind = np.repeat([f"GM{i:03d}" for i in range(n_individuals)], n_fixes)
    t = pd.Timestamp(start) + pd.to_timedelta(np.tile(np.arange(n_fixes), n_individuals), unit="h")
    lon = 127.2 + np.cumsum(rng.normal(0, 0.01, n))
    lat = 38.2 + np.cumsum(rng.normal(0, 0.01, n))
    return pd.DataFrame({
        "event-id": np.arange(first_event_id, first_event_id + n),
        "visible": "true",
        "timestamp": t.strftime("%Y-%m-%d %H:%M:%S.000"),
        "location-long": np.round(lon, 6),
        "location-lat": np.round(lat, 6),
        "gps:hdop": np.round(rng.uniform(0.8, 3, n), 1),
        "gps:satellite-count": rng.integers(4, 12, n),
        "height-above-ellipsoid": np.round(rng.normal(50, 10, n), 1),
        "sensor-type": "gps",
        "individual-taxon-canonical-name": species,
        "tag-local-identifier": np.char.add("T", ind.astype(str)),
        "individual-local-identifier": ind,
        "study-name": "flyway test study",
    })[MOVEBANK_HEADER]


def write_movebank(path: Path, frame: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def movebank_csv(tmp_path: Path):
    """Factory: ``movebank_csv(name, **movebank_frame kwargs) -> Path``."""

    def make(name: str = "tags.csv", **kwargs) -> Path:
        return write_movebank(tmp_path / name, movebank_frame(**kwargs))

    return make


def simulated_store(root: Path, n_individuals: int, days: int, seed: int) -> Path:
    """simulate -> ingest -> QC -> stops: a store of the project's own synthetic flyway under ``root``."""
    from flyway.analysis.runner import run_qc, run_stops
    from flyway.ingest.pipeline import ingest
    from flyway.simulate import write_simulation

    paths = write_simulation(root / "sim", n_individuals=n_individuals, days=days, seed=seed)
    store = root / "store"
    ingest([paths["fixes"]], store, reference=paths["reference"])
    run_qc(store)
    run_stops(store)
    return store
