"""The command line end to end: simulate -> ingest -> store info -> export, exit codes, error lines."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from flyway.cli import EXIT_PARTIAL, app
from flyway.store import Store
from tests.conftest import REPO, movebank_frame, write_movebank

runner = CliRunner()


def flyway(*args: str):
    return runner.invoke(app, list(args))


def test_simulate_ingest_info_export(tmp_path):
    sim = tmp_path / "sim"
    r = flyway("simulate", "--out", str(sim), "--individuals", "4", "--days", "60", "--seed", "3")
    assert r.exit_code == 0, r.output
    store = tmp_path / "store"
    r = flyway("ingest", str(sim / "flyway_sim.csv"), "--store", str(store), "--reference", str(sim / "reference.csv"))
    assert r.exit_code == 0, r.output
    r = flyway("store", "info", "--store", str(store), "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["individuals"] == 4 and info["fixes"] > 1000
    truth_ids = set(pd.read_csv(sim / "reference.csv")["animal-id"])
    assert info["individuals"] == len(truth_ids)
    out = tmp_path / "fixes.csv"
    r = flyway("store", "export", "--store", str(store), "--out", str(out))
    assert r.exit_code == 0, r.output
    assert len(pd.read_csv(out)) == info["fixes"]


def test_rejected_file_gives_one_line_and_partial_exit_code(tmp_path):
    good = write_movebank(tmp_path / "good.csv", movebank_frame(n_individuals=1, n_fixes=5))
    bad = tmp_path / "bad.csv.gz"
    bad.write_text("this is not gzip")
    r = flyway("ingest", str(good), str(bad), "--store", str(tmp_path / "s"))
    assert r.exit_code == EXIT_PARTIAL
    assert "flyway: rejected: bad.csv.gz: not a gzip file" in r.stderr
    r = flyway("ingest", str(bad), "--store", str(tmp_path / "s2"))
    assert r.exit_code == 2


def test_store_info_on_missing_store_is_one_clear_line(tmp_path):
    r = flyway("store", "info", "--store", str(tmp_path / "nope"))
    assert r.exit_code == 3
    assert r.stderr.strip().count("\n") == 0 and "no such store" in r.stderr


def test_locked_store_exit_code(tmp_path):
    good = write_movebank(tmp_path / "good.csv", movebank_frame(n_individuals=1, n_fixes=5))
    st = Store(tmp_path / "s")
    with st.lock("nightly"):
        r = flyway("ingest", str(good), "--store", str(st.path))
    assert r.exit_code == 75 and "locked by nightly run" in r.stderr


@pytest.mark.slow
def test_demo_runs_as_a_user_would(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "flyway.cli", "demo", "--out", str(tmp_path / "demo"),
                           "--individuals", "6", "--days", "120"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "ingested batch" in proc.stdout and "demo finished" in proc.stdout


@pytest.mark.slow
def test_end_to_end_simulate_to_exposure(tmp_path):
    """simulate -> ingest -> qc -> stops -> sites -> coverage -> exposure, all through the CLI."""
    from flyway.demo_layers import write_demo_layers

    sim, store = tmp_path / "sim", tmp_path / "store"
    steps = [
        ["simulate", "--out", str(sim), "--individuals", "6", "--days", "200", "--seed", "11"],
        ["ingest", str(sim / "flyway_sim.csv"), "--store", str(store), "--reference", str(sim / "reference.csv")],
        ["qc", "--store", str(store)],
        ["stops", "--store", str(store), "--in-process"],
        ["sites", "--store", str(store)],
    ]
    for args in steps:
        r = flyway(*args)
        assert r.exit_code == 0, (args, r.output)
    layers = write_demo_layers(tmp_path / "layers")
    r = flyway("coverage", "--store", str(store), "--protected-areas", str(layers["protected_areas"]), "--json")
    assert r.exit_code == 0, r.output
    cov = json.loads(r.stdout)
    assert cov["sites"] > 5 and all(0 <= g["protected_fraction"] < 0.5 for g in cov["gaps"])
    r = flyway("exposure", "--store", str(store), "--infrastructure", str(layers["infrastructure"]))
    assert r.exit_code == 0, r.output
    import geopandas as gpd

    sites = gpd.read_parquet(store / "sites" / "sites.parquet")
    assert sites.geom_type.isin(["Polygon", "MultiPolygon"]).all() and sites.crs.to_epsg() == 4326
    assert sites["protected_fraction"].notna().all() and sites["nearest_infrastructure_km"].notna().all()
    for name in ("coverage/gaps.csv", "coverage/coverage_by_group.csv", "exposure/site_exposure.csv"):
        assert (store / name).stat().st_size > 0
    r = flyway("store", "info", "--store", str(store), "--json")
    assert json.loads(r.stdout)["derived"] == {"stops": len(flyway_read_stops(store)), "sites": len(sites)}


def flyway_read_stops(store):
    import flyway as fw

    return fw.read_stops(store)
