"""The store shell of QC and stops: flags written back, stops/ written with provenance, CLI on a real cluster."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import flyway
from flyway import schema as S
from flyway.analysis.runner import run_qc, run_stops
from flyway.cli import app
from flyway.store import Store
from tests.analysis.test_parallel import cluster  # noqa: F401  (fixture: real scheduler + 2 workers)
from tests.conftest import movebank_frame, write_movebank

runner = CliRunner()


@pytest.fixture
def sim_store(tmp_path):
    sim = flyway.write_simulation(tmp_path / "sim", n_individuals=6, days=120, seed=5)
    store = tmp_path / "store"
    flyway.ingest([sim["fixes"]], store=store, reference=sim["reference"])
    return store


def test_qc_writes_flags_back_without_losing_a_fix(tmp_path):
    frame = movebank_frame(n_individuals=2, n_fixes=30)
    frame.loc[5, "gps:hdop"] = 9.0                     # hdop above 5
    frame.loc[7, "gps:satellite-count"] = 2            # fewer than 4 satellites
    frame.loc[10, "location-lat"] += 3.0               # a 330 km jump in an hour: speed spike
    store = tmp_path / "s"
    flyway.ingest([write_movebank(tmp_path / "f.csv", frame)], store=store)
    before = flyway.read_fixes(store)
    res = run_qc(store)
    after = flyway.read_fixes(store)
    assert len(after) == len(before) == 60
    assert res.counts["hdop"] == 1 and res.counts["few_satellites"] == 1 and res.counts["speed"] >= 1
    flags = after.set_index(S.SOURCE_LINE)[S.QC_FLAGS]
    assert flags[7] & S.QCFlag.HDOP and flags[9] & S.QCFlag.FEW_SATELLITES and flags[12] & S.QCFlag.SPEED
    pd.testing.assert_frame_equal(after.drop(columns=[S.QC_FLAGS, S.BATCH_ID]),
                                  before.drop(columns=[S.QC_FLAGS, S.BATCH_ID]))
    # one current part file per individual; the superseded ones are gone from disk (DuckDB/geopandas globs)
    st = Store(store)
    assert len(st.fix_files()) == 2 and len(list((store / "fixes").rglob("*.parquet"))) == 2
    assert run_qc(store).individuals_changed == 0  # idempotent: nothing rewritten


def test_stops_table_has_schema_and_provenance(sim_store):
    stops = run_stops(sim_store)
    back = flyway.read_stops(sim_store)
    assert list(back.columns) == S.STOPS.names and len(back) == len(stops) > 10
    assert back[S.COUNTRY].notna().mean() > 0.9
    meta = json.loads(pq.read_schema(sim_store / "stops" / "stops.parquet").metadata[b"flyway"])
    assert meta["parameters"]["method"] == "flyway" and meta["parameters"]["max_diameter_m"] == 2000.0
    assert meta["ledger"]["batches"] == 1
    geo = json.loads(pq.read_schema(sim_store / "stops" / "stops.parquet").metadata[b"geo"])
    assert geo["columns"][S.GEOMETRY]["geometry_types"] == ["Point"]


@pytest.mark.slow
def test_cli_stops_on_real_cluster_equals_in_process(sim_store, cluster):  # noqa: F811
    r = runner.invoke(app, ["stops", "--store", str(sim_store), "--in-process", "--json"])
    assert r.exit_code == 0, r.output
    local = flyway.read_stops(sim_store)
    r = runner.invoke(app, ["stops", "--store", str(sim_store), "--scheduler", cluster, "--json"])
    assert r.exit_code == 0, r.output
    remote = flyway.read_stops(sim_store)
    pd.testing.assert_frame_equal(local, remote)
    assert json.loads(r.stdout)["stops"] == len(local)


def test_cli_qc_prints_counts(sim_store):
    r = runner.invoke(app, ["qc", "--store", str(sim_store), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["fixes"] == len(flyway.read_fixes(sim_store))
    assert data["counts"]["clean"] + sum(1 for _ in []) <= data["fixes"]
    flags = flyway.read_fixes(sim_store)[S.QC_FLAGS].to_numpy()
    assert int((flags == 0).sum()) == data["counts"]["clean"]
    assert np.any(flags & S.QCFlag.OUTSIDE_DEPLOYMENT)  # the simulator switches tags on before deployment


def test_store_without_any_stop_writes_an_empty_stops_table(tmp_path):
    frame = movebank_frame(n_individuals=1, n_fixes=10)  # 10 hours of wandering: no 24 h stop
    store = tmp_path / "s"
    flyway.ingest([write_movebank(tmp_path / "f.csv", frame)], store=store)
    stops = run_stops(store)
    assert len(stops) == 0
    back = flyway.read_stops(store)
    assert list(back.columns) == S.STOPS.names and len(back) == 0
