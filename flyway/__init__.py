"""flyway: GPS telemetry of migratory birds to stopovers, protection gaps and energy exposure.

The user-facing functions are re-exported here; see README.md for a tour.
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
