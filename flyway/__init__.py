"""flyway: GPS telemetry of migratory birds to stopovers, protection gaps and energy exposure.

The user-facing functions are re-exported here (DESIGN.md, "Python API")::

    import flyway
    flyway.ingest(["tags.csv.gz"], store="birds/", reference="reference.csv")
    fixes = flyway.read_fixes("birds/", species="Grus monacha")

See README.md for a tour.
"""
from __future__ import annotations

from pathlib import Path as _Path

__version__ = "0.1.0"

# Running from a source checkout (no install): the sub-packages live in sibling
# folders (ingest/, analysis/, maps/) mapped by [tool.setuptools.package-dir].
# Adding the checkout root to this package's search path makes
# ``import flyway.ingest`` find ``<root>/ingest`` exactly as an install would.
_root = _Path(__file__).resolve().parent.parent
if not (_Path(__file__).parent / "ingest").is_dir() and (_root / "ingest" / "__init__.py").is_file():
    __path__.append(str(_root))  # type: ignore[name-defined]
del _root

from flyway import ingest  # noqa: E402  (callable sub-package: flyway.ingest(paths, store=...))
from flyway.errors import ConfigError, FlywayError, InputError, SchemaError, StoreError  # noqa: E402
from flyway.export import export_fixes  # noqa: E402
from flyway.info import store_info  # noqa: E402
from flyway.store import read_derived, read_fixes  # noqa: E402

# Analysis functions are imported on first use (numba, dask and scikit-learn
# are slow to import and most commands need only some of them).
_LAZY = {
    "detect_stops": "flyway.analysis.stops",
    "qc_flags": "flyway.analysis.qc",
    "run_qc": "flyway.analysis.runner",
    "run_stops": "flyway.analysis.runner",
    "detect_stops_parallel": "flyway.analysis.parallel",
    "truth_recovery": "flyway.analysis.accuracy",
    "simulate_flyway": "flyway.simulate",
    "nightly": "flyway.nightly",
    "NightlyConfig": "flyway.nightly_config",
    "list_runs": "flyway.runrecord",
    "read_alerts": "flyway.notify",
    "AlertParams": "flyway.alerts",
    "gap_map": "flyway.maps.gap_map",
    "MapParams": "flyway.maps.gap_map",
    "bird_map": "flyway.maps.bird_map",
    "save_map": "flyway.maps.offline",
    "report": "flyway.maps.report",
    "PublicParams": "flyway.maps.public",
    "find_sites": "flyway.analysis.sites",
    "coverage": "flyway.analysis.coverage",
    "exposure": "flyway.analysis.infrastructure",
    "read_protected_areas": "flyway.analysis.protected",
    "clean_protected_areas": "flyway.analysis.protected",
    "read_infrastructure": "flyway.analysis.infrastructure",
    "transboundary_summary": "flyway.analysis.countries",
    "connectivity_matrix": "flyway.analysis.countries",
    "use_intensity": "flyway.analysis.grid",
    "annotate": "flyway.analysis.grid",
    "write_netcdf": "flyway.analysis.grid",
    "run_sites": "flyway.analysis.site_runner",
    "run_coverage": "flyway.analysis.site_runner",
    "run_exposure": "flyway.analysis.site_runner",
    "transit_probability": "flyway.analysis.scenario",
    "band_collisions": "flyway.analysis.scenario",
    "lambda_max": "flyway.analysis.scenario",
    "pbr": "flyway.analysis.scenario",
    "run_scenarios": "flyway.analysis.scenario",
    "TrackExposure": "flyway.analysis.scenario",
    "TrackParams": "flyway.analysis.scenario",
    "breeding_proximity": "flyway.analysis.scenario.proximity",
    "proximity_from_store": "flyway.analysis.scenario.proximity",
    "sensitivity_grid": "flyway.analysis.scenario.sensitivity",
    "sensitivity_from_store": "flyway.analysis.scenario.sensitivity",
    "StandardTurbine": "flyway.analysis.scenario.sensitivity",
    "read_site_list": "flyway.analysis.scenario.breeding_sites",
    "write_simulation": "flyway.simulate",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flyway' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def read_stops(store) -> "pandas.DataFrame":  # noqa: F821
    """The committed stops table of a store (``flyway stops`` writes it), schema columns."""
    return read_derived(store, "stops")


def read_sites(store) -> "pandas.DataFrame":  # noqa: F821
    """The committed sites table of a store, schema columns."""
    return read_derived(store, "sites")


__all__ = [
    "ConfigError", "FlywayError", "InputError", "SchemaError", "StoreError",
    "export_fixes", "ingest", "read_derived", "read_fixes", "read_sites", "read_stops", "store_info",
    *_LAZY,
]
