"""kill -9 of nightly runs: one run at a time, dead holders do not block, and a killed run changes nothing for the worse.

Each kill runs the nightly job in a child process and SIGKILLs it at a named
point (``FLYWAY_FAULT``: inside ingest, between the batch commit and the
moves, between stages, before the state) or at a random moment; the next
run must complete, every inbox file must end exactly once in processed/ or
failed/, no file may be ingested twice, and the derived tables and alert log
must equal those of an uninterrupted run.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

import flyway
from flyway.cli import app
from flyway.errors import StoreLockedError
from flyway.nightly import nightly
from flyway.nightly_config import NightlyConfig
from flyway.notify import read_alerts
from flyway.store import Store

REPO = Path(__file__).resolve().parents[1]
NOW = "2024-03-05"
RUN = ("import sys; from flyway.nightly import nightly; from flyway.nightly_config import NightlyConfig; "
       "r = nightly(sys.argv[1], sys.argv[2], config=NightlyConfig(settle_s=0, reference=sys.argv[3]), "
       f"now='{NOW}'); sys.exit(r.exit_code)")
FAULT_POINTS = ["after_cleanup", "after_stage", "after_parts", "after_commit",  # inside ingest
                "after_ingest", "after_first_move", "after_qc", "after_stops", "after_sites", "after_alerts",
                "after_state"]
RANDOM_KILLS = 10


def child(store: Path, inbox: Path, reference: Path, fault: str | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("FLYWAY_FAULT", None)
    if fault:
        env["FLYWAY_FAULT"] = fault
    return subprocess.Popen([sys.executable, "-c", RUN, str(store), str(inbox), str(reference)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    """Three nights of a simulated flyway and one broken file, as an inbox to copy."""
    from flyway.simulate import write_simulation

    base = tmp_path_factory.mktemp("crash")
    sim = write_simulation(base / "sim", n_individuals=5, days=40, seed=21)
    frame = pd.read_csv(sim["fixes"], dtype=str, keep_default_na=False)
    inbox = base / "inbox"
    inbox.mkdir()
    t = pd.to_datetime(frame["timestamp"])
    cuts = t.quantile([0.4, 0.8]).tolist()
    for k, mask in enumerate([t < cuts[0], (t >= cuts[0]) & (t < cuts[1]), t >= cuts[1]]):
        frame[mask.to_numpy()].to_csv(inbox / f"night-{k}.csv", index=False)
    (inbox / "broken.csv").write_text("no,usable\ncolumns,here\n")
    return inbox, sim["reference"]


def outcome(store: Path, inbox: Path) -> dict:
    led = Store(store).read_ledger()
    committed = led.filter(pc.equal(led.column("status"), "committed")).column("sha256").to_pylist()
    hashes = [h for h in committed if h]
    return {
        "stops": flyway.read_stops(store), "sites": flyway.read_sites(store),
        "fixes": len(flyway.read_fixes(store)), "alerts": set(read_alerts(store)["alert_id"]),
        "left": sorted(p.name for p in inbox.glob("*.csv")),
        "processed": sorted(p.name for p in (inbox / "processed").iterdir()) if (inbox / "processed").exists() else [],
        "failed": sorted(p.name for p in (inbox / "failed").iterdir()) if (inbox / "failed").exists() else [],
        "hashes_unique": len(hashes) == len(set(hashes)),
    }


@pytest.mark.slow
def test_kill9_at_many_points_then_next_run_converges(tmp_path, nights):
    src_inbox, reference = nights
    names = sorted(p.name for p in src_inbox.iterdir())

    def fresh(tag: str) -> tuple[Path, Path]:
        inbox = tmp_path / tag / "inbox"
        shutil.copytree(src_inbox, inbox)
        return tmp_path / tag / "store", inbox

    store, inbox = fresh("clean")
    tic = time.perf_counter()
    proc = child(store, inbox, reference)
    assert proc.wait(timeout=300) == 4, proc.stderr.read().decode()[-2000:]
    duration = time.perf_counter() - tic
    expected = outcome(store, inbox)
    assert expected["left"] == [] and expected["failed"] == ["broken.csv", "broken.csv.reason.txt"]
    assert len(expected["stops"]) > 0 and len(expected["sites"]) > 0 and expected["hashes_unique"]

    rng = random.Random(8)
    # one random moment in each tenth of an uninterrupted run: import, ingest, QC, stops, sites, alerts, state
    moments = [(k + rng.random()) / RANDOM_KILLS * duration for k in range(RANDOM_KILLS)]
    kills = [(p, None) for p in FAULT_POINTS] + [(None, t) for t in moments]
    killed = 0
    for i, (point, delay) in enumerate(kills):
        store, inbox = fresh(f"kill{i}")
        proc = child(store, inbox, reference, fault=point)
        if delay is not None:
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=300)
        killed += code == -signal.SIGKILL
        if point is not None:
            assert code == -signal.SIGKILL, f"{point}: exited {code} without reaching its fault point"
        res = nightly(store, inbox, config=NightlyConfig(settle_s=0, reference=reference), now=NOW)
        assert res.exit_code in (0, 4)
        got = outcome(store, inbox)
        where = f"kill at {point or f'{delay:.2f} s'}"
        assert got["left"] == [], where
        moved = [n for n in got["processed"] + got["failed"] if not n.endswith(".reason.txt")]
        assert sorted(moved) == names, where  # each file exactly once, no suffixed second copy
        assert got["failed"] == expected["failed"] and got["hashes_unique"], where
        assert got["fixes"] == expected["fixes"] and got["alerts"] == expected["alerts"], where
        pd.testing.assert_frame_equal(got["stops"], expected["stops"], obj=where)
        pd.testing.assert_frame_equal(got["sites"], expected["sites"], obj=where)
    # every named point plus most random moments (a random moment past the end of a run just lets it finish)
    assert killed >= len(FAULT_POINTS) + RANDOM_KILLS // 2


def test_one_run_at_a_time_and_a_dead_holder_does_not_block(tmp_path):
    store, inbox = tmp_path / "store", tmp_path / "inbox"
    inbox.mkdir()
    hold = ("import sys, time; from flyway.store import Store\n"
            "with Store(sys.argv[1]).lock('nightly'):\n    print('held', flush=True); time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(store / "_nightly")], cwd=REPO,
                              stdout=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert holder.stdout.readline().strip() == b"held"
        with pytest.raises(StoreLockedError, match=f"another nightly run is active.*pid {holder.pid}"):
            nightly(store, inbox, config=NightlyConfig(settle_s=0))
        res = CliRunner().invoke(app, ["nightly", "--store", str(store), "--inbox", str(inbox)])
        assert res.exit_code == 75 and "another nightly run" in res.output
    finally:
        holder.send_signal(signal.SIGKILL)  # power loss: no clean-up runs
        holder.wait()
    assert (store / "_nightly" / ".flyway.lock.json").exists()  # stale holder info is left behind ...
    assert nightly(store, inbox, config=NightlyConfig(settle_s=0)).exit_code == 0  # ... and does not block
