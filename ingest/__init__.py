"""Readers, validation, quarantine and the store writer (``flyway.ingest``).

``flyway.ingest`` is both this sub-package and the function users call
(``flyway.ingest(["tags.csv"], store="birds/")``, DESIGN.md "Python API"):
the module is callable and forwards to :func:`flyway.ingest.pipeline.ingest`.
"""
from __future__ import annotations

import sys
import types


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from flyway.ingest.pipeline import ingest

        return ingest(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
