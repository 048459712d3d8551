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

__all__ = [
    "ConfigError", "FlywayError", "InputError", "SchemaError", "StoreError",
    "export_fixes", "ingest", "read_derived", "read_fixes", "store_info",
]
