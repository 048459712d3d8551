"""Packaging: the sub-package mapping works from a wheel and from the repo root without install."""
from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO


def test_import_from_repo_root_without_install():
    # drop the editable-install finder so only the checkout on sys.path can satisfy the import
    code = (
        "import sys\n"
        "sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
        "sys.path = [p for p in sys.path if '__editable__' not in p]\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "import flyway.ingest.pipeline, flyway.ingest.mapping\n"
        "print(flyway.__file__, flyway.ingest.__file__)\n"
        "m = flyway.ingest.mapping.load_mapping('movebank')\n"
        "print(m.name)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr
    flyway_file, ingest_file = proc.stdout.split()[:2]
    assert flyway_file == str(REPO / "flyway" / "__init__.py")
    assert ingest_file == str(REPO / "ingest" / "__init__.py")
    assert proc.stdout.split()[-1] == "movebank"


@pytest.mark.slow
def test_wheel_maps_folders_onto_subpackages(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and "No module named" in proc.stderr:
        pytest.skip(f"cannot build a wheel here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    wheel = next(tmp_path.glob("flyway_telemetry-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ["flyway/__init__.py", "flyway/ingest/pipeline.py", "flyway/ingest/mappings/movebank.toml",
                   "flyway/ingest/mappings/ornitela.toml", "flyway/analysis/__init__.py", "flyway/maps/__init__.py",
                   "flyway/data/flagship_sites.csv"]:
        assert needed in names, needed
    assert not any(n.startswith(("ingest/", "analysis/", "tests/")) for n in names)
