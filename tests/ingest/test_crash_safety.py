"""kill -9 during ingest: the store is always exactly before or after the batch.

A child process ingests a batch; the parent kills it with SIGKILL at random
moments (and at each named fault point). After every kill the store must be
readable and hold either the fixes from before the batch or those after it,
never a mix; re-running the ingest must then finish with no duplicate and no
lost fix.
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
import pytest

import flyway
from flyway import schema as S
from flyway.ingest.pipeline import FAULT_ENV
from tests.conftest import REPO, movebank_frame, write_movebank

KEY = [S.INDIVIDUAL_ID, S.TIMESTAMP, S.LON, S.LAT]
FAULT_POINTS = ["after_cleanup", "after_stage", "after_parts", "after_quarantine", "after_commit"]
RANDOM_KILLS = 20

CHILD = """
import sys
import flyway
print("ready", flush=True)
flyway.ingest(sys.argv[2:], store=sys.argv[1], block_size=1 << 16)
print("done", flush=True)
"""


def _keys(store: Path) -> pd.DataFrame:
    df = flyway.read_fixes(store, columns=KEY)
    return df.sort_values(KEY).reset_index(drop=True)


def _spawn(store: Path, files: list[Path], fault: str | None = None) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    return subprocess.Popen([sys.executable, "-c", CHILD, str(store), *map(str, files)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    before_file = write_movebank(root / "old.csv", movebank_frame(n_individuals=6, n_fixes=400, seed=1))
    frame = movebank_frame(n_individuals=12, n_fixes=1500, seed=2, start="2024-03-10", first_event_id=10_000)
    new_files = [write_movebank(root / "new1.csv", frame.iloc[: len(frame) // 2]),
                 write_movebank(root / "new2.csv", frame.iloc[len(frame) // 2 - 500:])]  # 500 rows overlap
    base = root / "base"
    flyway.ingest([before_file], store=base)
    after = root / "after"
    shutil.copytree(base, after)
    t0 = time.monotonic()
    proc = _spawn(after, new_files)
    assert proc.stdout.readline().strip() == "ready"
    t_ready = time.monotonic()
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    return {"root": root, "base": base, "new": new_files, "before": _keys(base), "after": _keys(after),
            "ingest_seconds": time.monotonic() - t_ready, "total_seconds": time.monotonic() - t0}


def _check_state(store: Path, sc) -> str:
    now = _keys(store)  # must be readable
    flyway.store_info(store)
    if now.equals(sc["before"]):
        return "before"
    if now.equals(sc["after"]):
        return "after"
    raise AssertionError(f"store holds {len(now)} fixes: neither before ({len(sc['before'])}) "
                         f"nor after ({len(sc['after'])}) the batch")


def _rerun_and_check(store: Path, sc) -> None:
    flyway.ingest(sc["new"], store=store, block_size=1 << 16)
    now = _keys(store)
    assert not now.duplicated().any()
    assert now.equals(sc["after"])


def test_batch_adds_fixes(scenario):
    assert len(scenario["after"]) == len(scenario["before"]) + 12 * 1500


@pytest.mark.parametrize("fault", FAULT_POINTS)
def test_kill_at_each_fault_point(scenario, fault, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(scenario["base"], store)
    proc = _spawn(store, scenario["new"], fault=fault)
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    state = _check_state(store, scenario)
    assert state == ("after" if fault == "after_commit" else "before")
    _rerun_and_check(store, scenario)


def test_kill_at_random_moments(scenario, tmp_path):
    rng = random.Random(20261125)
    span = scenario["ingest_seconds"]
    states = []
    for i in range(RANDOM_KILLS):
        store = tmp_path / f"store{i}"
        shutil.copytree(scenario["base"], store)
        proc = _spawn(store, scenario["new"])
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, span * 1.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        states.append(_check_state(store, scenario))
        _rerun_and_check(store, scenario)
        shutil.rmtree(store)
    # the kills must have landed on both sides of the commit at least once
    assert "before" in states, states
    print(f"random kills: {states.count('before')} before, {states.count('after')} after the commit "
          f"(ingest {span:.2f}s)")
