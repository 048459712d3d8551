"""Stops on a real dask cluster (scheduler + two worker processes) equal the single-process result."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from flyway import schema as S
from flyway.analysis.parallel import ENV_SCHEDULER, detect_stops_parallel, partition_individuals
from flyway.analysis.stops import detect_stops
from tests.analysis.test_stops import stop_move_stop

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def many_birds(n: int = 8) -> pd.DataFrame:
    return pd.concat([stop_move_stop(i).assign(**{S.INDIVIDUAL_ID: f"bird-{i}"}) for i in range(n)],
                     ignore_index=True)


def test_partition_keeps_individuals_whole():
    fixes = many_birds(5)
    parts = partition_individuals(fixes, 3)
    assert len(parts) == 3 and sum(len(p) for p in parts) == len(fixes)
    seen = [set(p[S.INDIVIDUAL_ID]) for p in parts]
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1:])


def test_without_cluster_runs_in_process(monkeypatch):
    monkeypatch.delenv(ENV_SCHEDULER, raising=False)
    fixes = many_birds(3)
    pd.testing.assert_frame_equal(detect_stops_parallel(fixes), detect_stops(fixes))


@pytest.fixture
def cluster(tmp_path):
    if not (BIN / "dask").exists():
        pytest.skip("dask CLI not installed")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)]
    for i in range(2):
        procs.append(subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--nworkers", "1",
                                       "--no-dashboard", "--local-directory", str(tmp_path / f"w{i}")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
    try:
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.mark.slow
def test_real_cluster_equals_single_process(cluster, monkeypatch):
    from distributed import Client

    fixes = many_birds(8)
    single = detect_stops(fixes)
    for method in ("flyway", "movingpandas"):
        # through an address, as `--scheduler` / DASK_SCHEDULER_ADDRESS give it
        monkeypatch.setenv(ENV_SCHEDULER, cluster)
        by_env = detect_stops_parallel(fixes, method=method)
        pd.testing.assert_frame_equal(by_env, detect_stops(fixes, method=method))
    monkeypatch.delenv(ENV_SCHEDULER)
    with Client(cluster) as client:  # the caller's client is used and left open
        by_client = detect_stops_parallel(fixes, client=client, n_partitions=4)
        assert client.status == "running"
        assert len(client.nthreads()) == 2
    pd.testing.assert_frame_equal(by_client, single)
