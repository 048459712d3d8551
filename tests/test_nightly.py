"""The nightly run: complete files only, exactly-once moves, incremental equals full, records, CLI, dask."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import flyway
from flyway import schema as S
from flyway.cli import app
from flyway.inbox import move_file, settled_files
from flyway.nightly import EXIT_OK, EXIT_SOME_FAILED, nightly
from flyway.nightly_config import NightlyConfig
from flyway.runrecord import list_runs
from tests.conftest import movebank_frame

FAST = NightlyConfig(settle_s=0)


def drop(inbox: Path, name: str, frame: pd.DataFrame) -> Path:
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from flyway.simulate import write_simulation

    return write_simulation(tmp_path_factory.mktemp("sim"), n_individuals=6, days=60, seed=11)


def slices(fixes_csv: Path, n: int) -> list[pd.DataFrame]:
    """The Movebank CSV cut into ``n`` nights by time; bird 0's rows of odd nights arrive a night late."""
    frame = pd.read_csv(fixes_csv, dtype=str, keep_default_na=False)
    t = pd.to_datetime(frame["timestamp"])
    edges = pd.date_range(t.min(), t.max() + pd.Timedelta(seconds=1), periods=n + 1)
    night = pd.Series(pd.cut(t, edges, labels=False, right=False, include_lowest=True), index=frame.index).astype(int)
    late = (frame["individual-local-identifier"] == sorted(frame["individual-local-identifier"].unique())[0]) & \
        (night % 2 == 1) & (night < n - 1)
    night[late] += 1
    return [frame[night == k] for k in range(n)]


def test_incremental_equals_full(tmp_path, sim):
    cfg = NightlyConfig(settle_s=0, reference=sim["reference"])
    full_inbox = tmp_path / "full_inbox"
    full_inbox.mkdir()
    (full_inbox / "all.csv").write_bytes(sim["fixes"].read_bytes())
    full = nightly(tmp_path / "full", full_inbox, config=cfg)
    assert full.exit_code == EXIT_OK

    inbox, store = tmp_path / "inbox", tmp_path / "nightly"
    changed = []
    for k, part in enumerate(slices(sim["fixes"], 30)):
        drop(inbox, f"night-{k:02d}.csv", part)
        res = nightly(store, inbox, config=cfg)
        assert res.exit_code == EXIT_OK, res.record["files"]
        changed.append(res.record["counts"].get("individuals_changed"))
    assert changed[0] == "all" and min(c for c in changed[1:] if c != "all") < 6  # really incremental
    inc_stops, full_stops = flyway.read_stops(store), flyway.read_stops(tmp_path / "full")
    assert len(full_stops) >= 10 and (full_stops[S.DURATION_H] > 48).sum() >= 3  # stops spanning nights
    pd.testing.assert_frame_equal(inc_stops, full_stops)
    sites = flyway.read_sites(tmp_path / "full")
    assert len(sites) >= 3
    pd.testing.assert_frame_equal(flyway.read_sites(store), sites)
    # ... and a full recompute through the stage functions agrees too
    from flyway.analysis.runner import run_stops

    direct = run_stops(tmp_path / "full", write=False)
    assert list(direct[S.STOP_ID]) == list(full_stops[S.STOP_ID])
    assert len(list((inbox / "processed").iterdir())) == 30 and not list(inbox.glob("*.csv"))


def test_only_complete_files_are_taken(tmp_path):
    inbox = tmp_path / "inbox"
    drop(inbox, "done.csv", movebank_frame(n_individuals=1, n_fixes=5))
    for name in (".hidden.csv", "upload.csv.part", "upload2.csv.tmp"):
        (inbox / name).write_text("event-id\n")
    growing = inbox / "growing.csv"
    growing.write_text("event-id,timestamp\n")
    stop = threading.Event()

    def writer() -> None:
        k = 0
        while not stop.is_set():
            with open(growing, "a") as fh:
                fh.write(f"{k},2024-01-01\n")
            k += 1
            time.sleep(0.02)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        names = [f.name for f in settled_files(inbox, settle_s=0.3)]
    finally:
        stop.set()
        thread.join()
    assert names == ["done.csv"]
    assert [f.name for f in settled_files(inbox, settle_s=0.05)] == ["done.csv", "growing.csv"]


def test_files_end_once_never_twice_ingested_never_overwritten(tmp_path):
    inbox, store = tmp_path / "inbox", tmp_path / "store"
    frame = movebank_frame(n_individuals=2, n_fixes=30)
    drop(inbox, "tags.csv", frame)
    drop(inbox, "copy.csv", frame)  # same content under another name, same night
    (inbox / "empty.csv").write_bytes(b"")
    res = nightly(store, inbox, config=FAST)
    assert res.exit_code == EXIT_SOME_FAILED
    assert {f["name"]: f["ingest"] for f in res.record["files"]} == {
        "copy.csv": ["committed"], "empty.csv": ["rejected"], "tags.csv": ["skipped"]}
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == ["copy.csv", "tags.csv"]
    assert sorted(p.name for p in (inbox / "failed").iterdir()) == ["empty.csv", "empty.csv.reason.txt"]
    assert "empty" in (inbox / "failed" / "empty.csv.reason.txt").read_text()
    # the same content again, same name: moved beside the first (suffix), not ingested again
    drop(inbox, "tags.csv", frame)
    res2 = nightly(store, inbox, config=FAST)
    assert res2.exit_code == EXIT_OK and res2.record["files"][0]["ingest"] == ["skipped"]
    assert res2.record["counts"]["rows_kept"] == 0
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == ["copy.csv", "tags.1.csv", "tags.csv"]
    assert len(flyway.read_fixes(store)) == 60


def test_move_finishes_an_interrupted_move_without_a_copy(tmp_path):
    src = tmp_path / "inbox" / "a.csv"
    src.parent.mkdir()
    src.write_text("x\n")
    done = tmp_path / "inbox" / "processed"
    done.mkdir()
    os.link(src, done / "a.csv")  # a crash between link and unlink
    target = move_file(src, done)
    assert target == done / "a.csv" and not src.exists() and list(done.iterdir()) == [target]


def test_run_record_and_runs_listing(tmp_path):
    inbox, store = tmp_path / "inbox", tmp_path / "store"
    drop(inbox, "a.csv", movebank_frame(n_individuals=2, n_fixes=80))
    res = nightly(store, inbox, config=FAST, now="2024-03-10")
    rec = json.loads((store / "_runs" / f"{res.run_id}.json").read_text())
    assert rec["status"] == "ok" and rec["exit_code"] == 0 and rec["flyway_version"] == flyway.__version__
    assert rec["counts"]["files_processed"] == 1 and rec["counts"]["rows_kept"] == 160
    for stage in ("ingest", "qc", "stops", "alerts"):
        assert rec["stages"][stage]["seconds"] >= 0 and rec["stages"][stage]["peak_rss_mb"] > 10
    assert rec["parameters"]["now"].startswith("2024-03-10") and rec["ended"] >= rec["started"]
    nightly(store, inbox, config=FAST)
    runs = list_runs(store)
    assert list(runs["status"]) == ["ok", "ok"] and list(runs["rows_kept"]) == [160, 0]


def test_cli_exit_codes_json_dry_run_and_runs(tmp_path):
    runner = CliRunner()
    inbox, store = tmp_path / "inbox", tmp_path / "store"
    drop(inbox, "a.csv", movebank_frame(n_individuals=1, n_fixes=20))
    (inbox / "bad.csv").write_text("just one column\n1\n")
    cfg = tmp_path / "n.toml"
    cfg.write_text("[nightly]\nsettle_s = 0\n")
    dry = runner.invoke(app, ["nightly", "--store", str(store), "--inbox", str(inbox), "--config", str(cfg),
                              "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert {f["name"] for f in json.loads(dry.stdout)["files"]} == {"a.csv", "bad.csv"}
    assert not store.exists() and not (inbox / "processed").exists()  # touched nothing
    res = runner.invoke(app, ["nightly", "--store", str(store), "--inbox", str(inbox), "--config", str(cfg), "--json"])
    assert res.exit_code == EXIT_SOME_FAILED
    assert json.loads(res.stdout)["counts"]["files_failed"] == 1
    again = runner.invoke(app, ["nightly", "--store", str(store), "--inbox", str(inbox), "--config", str(cfg)])
    assert again.exit_code == 0
    listed = runner.invoke(app, ["runs", "--store", str(store), "--json"])
    assert [r["exit_code"] for r in json.loads(listed.stdout)] == [4, 0]
    bad_cfg = tmp_path / "bad.toml"
    bad_cfg.write_text("[nightly]\nsettle = 0\n")
    res = runner.invoke(app, ["nightly", "--store", str(store), "--inbox", str(inbox), "--config", str(bad_cfg)])
    assert res.exit_code == 2 and "settle" in res.output


@pytest.mark.slow
def test_stop_stage_on_a_dask_cluster_equals_local(tmp_path, sim, cluster):
    address = cluster
    cfg = NightlyConfig(settle_s=0, reference=sim["reference"])
    for name, kw in (("local", {}), ("dask", {"scheduler": address})):
        inbox = tmp_path / f"inbox-{name}"
        inbox.mkdir()
        (inbox / "all.csv").write_bytes(sim["fixes"].read_bytes())
        res = nightly(tmp_path / name, inbox, config=cfg, **kw)
        assert res.exit_code == 0
    assert res.record["parameters"]["scheduler"] == address
    pd.testing.assert_frame_equal(flyway.read_stops(tmp_path / "dask"), flyway.read_stops(tmp_path / "local"))
    pd.testing.assert_frame_equal(flyway.read_sites(tmp_path / "dask"), flyway.read_sites(tmp_path / "local"))


from tests.analysis.test_parallel import cluster  # noqa: E402,F401  (real scheduler + 2 worker processes)


def test_maps_and_report_are_refreshed_when_configured(tmp_path, sim):
    cfg = NightlyConfig(settle_s=0, maps_dir=tmp_path / "www")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    drop(inbox, "all.csv", pd.read_csv(sim["fixes"]))
    res = nightly(tmp_path / "store", inbox, config=cfg)
    assert res.exit_code == EXIT_OK
    gap = tmp_path / "www" / "gap_map.html"
    assert gap.stat().st_size > 100_000 and "leaflet" in gap.read_text().lower()
    assert (tmp_path / "www" / "report" / "index.html").exists()
    assert res.record["outputs"]["gap_map"] == str(gap)
    assert "maps" in res.record["stages"]
