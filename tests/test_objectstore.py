"""A store on object storage: ``s3://`` through fsspec/s3fs against a moto server on 127.0.0.1.

The server runs in its own process on a free port; the endpoint and dummy
credentials reach flyway (and every child process and dask worker) only
through the environment, as they would on a cluster. Checked: ingest, read
back, ``store info``, QC, stops (also on dask workers that open the URL
themselves), nightly runs with coverage, exposure, alerts and maps — each
equal to the same work on a local store; parts are real GeoParquet; kill -9
during part uploads, just before and just after the ledger PUT and at random
moments leaves the store as before or after the batch, and the re-run
completes without duplicates; a second writer meets the lock; a killed
holder's lock is taken over once stale; a stalled writer's ledger commit is
refused after another writer took over.
"""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

pytest.importorskip("s3fs")
pytest.importorskip("upath")
pytest.importorskip("moto.server")

import flyway  # noqa: E402
from flyway import objectstore  # noqa: E402
from flyway import schema as S  # noqa: E402
from flyway.cli import app  # noqa: E402
from flyway.errors import InputError, StoreError, StoreLockedError  # noqa: E402
from flyway.store import LEDGER_FILE, LOCK_FILE, Store, batch_of_part  # noqa: E402
from tests.conftest import REPO, movebank_frame, write_movebank  # noqa: E402

BUCKET = "flyway-test"
KEY = [S.INDIVIDUAL_ID, S.TIMESTAMP, S.LON, S.LAT]
FLYWAY_CLI = [sys.executable, "-c", "from flyway.cli import main; main()"]
CHILD_STALE_S = "1.0"  # lock expiry of the child processes: a killed holder is stale one second later


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def endpoint():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("moto server did not start")
            time.sleep(0.1)
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "FSSPEC_S3_ENDPOINT_URL", objectstore.STALE_ENV):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ENDPOINT_URL", url)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        import boto3

        boto3.client("s3", endpoint_url=url).create_bucket(Bucket=BUCKET)
        yield url
    proc.kill()
    proc.wait()


@pytest.fixture
def url(endpoint, request) -> str:
    """A fresh prefix of the bucket per test."""
    return f"s3://{BUCKET}/{request.node.name.replace('[', '-').replace(']', '')}"


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from flyway.simulate import write_simulation

    return write_simulation(tmp_path_factory.mktemp("sim"), n_individuals=6, days=40, seed=3)


@pytest.fixture(scope="module")
def ingested(endpoint, sim, tmp_path_factory):
    """The simulation ingested into an S3 store and into a local one (read-only for the tests using it)."""
    local = tmp_path_factory.mktemp("local") / "store"
    remote = f"s3://{BUCKET}/shared"
    for store in (local, remote):
        flyway.ingest([sim["fixes"]], store=store, reference=sim["reference"])
    return {"local": local, "remote": remote}


def _fs():
    import s3fs

    return s3fs.S3FileSystem(use_listings_cache=False)


def _keys(store) -> pd.DataFrame:
    return flyway.read_fixes(store, columns=KEY).sort_values(KEY).reset_index(drop=True)


def _no_batch(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[S.BATCH_ID])


# ----------------------------------------------------------------------------- ingest, read, info
def test_ingest_reads_back_equal_to_a_local_store(ingested, sim, url, tmp_path):
    remote, local = ingested["remote"], ingested["local"]
    pd.testing.assert_frame_equal(_no_batch(flyway.read_fixes(remote)), _no_batch(flyway.read_fixes(local)))
    one = flyway.read_fixes(remote, individuals=flyway.read_fixes(local)[S.INDIVIDUAL_ID].iloc[0],
                            start="2024-01-01", columns=KEY)
    assert 0 < len(one) < len(flyway.read_fixes(local))
    assert Store(remote).is_remote and not Store(local).is_remote
    assert not Store(remote)._staging_root().exists()  # staging stayed on local disk and was removed
    # the same through the CLI, the URL passing through typer intact
    res = CliRunner().invoke(app, ["ingest", str(sim["fixes"]), "--store", url, "--reference", str(sim["reference"]),
                                   "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["store"] == url
    pd.testing.assert_frame_equal(_no_batch(flyway.read_fixes(url)), _no_batch(flyway.read_fixes(local)))
    again = flyway.ingest([sim["fixes"]], store=url)  # idempotent through the S3 ledger
    assert [f.status for f in again.files] == ["skipped"]
    with pytest.raises(InputError, match="local file"):
        flyway.export_fixes(url, f"s3://{BUCKET}/out.csv")
    out = tmp_path / "fixes.csv"
    assert flyway.export_fixes(url, out) == len(flyway.read_fixes(local))


def test_store_info_cli_equals_local(ingested, sim):
    infos = []
    for store in (ingested["remote"], str(ingested["local"])):
        res = CliRunner().invoke(app, ["store", "info", "--store", store, "--json"])
        assert res.exit_code == 0, res.output
        infos.append(json.loads(res.stdout))
    remote, local = infos
    assert remote["store"] == ingested["remote"]
    for key in ("individuals", "fixes", "first", "last", "species", "files_ingested", "batches", "part_files",
                "quarantined_rows"):
        assert remote[key] == local[key], key
    assert remote["fixes"] == len(flyway.read_fixes(ingested["local"])) and remote["size_bytes"] > 0
    # fsspec's own variable for the endpoint works as well as botocore's (in a clean child process)
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    env["FSSPEC_S3_ENDPOINT_URL"] = os.environ["AWS_ENDPOINT_URL"]
    out = subprocess.run([*FLYWAY_CLI, "store", "info", "--store", ingested["remote"], "--json"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["fixes"] == local["fixes"]


def test_parts_on_s3_are_geoparquet(ingested):
    import geopandas as gpd
    import shapely

    fs = _fs()
    parts = fs.glob(f"{ingested['remote'][5:]}/fixes/**/part-*.parquet")
    assert len(parts) == len(Store(ingested["local"]).fix_files()) > 0
    with fs.open(parts[0], "rb") as fh:
        meta = pq.read_schema(fh).metadata
    geo = json.loads(meta[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == S.GEOMETRY
    col = geo["columns"][S.GEOMETRY]
    assert col["encoding"] == "WKB" and col["crs"]["id"]["code"] == 4326 and len(col["bbox"]) == 4
    gdf = gpd.read_parquet(parts[0], filesystem=fs)
    assert gdf.crs.to_epsg() == 4326 and len(gdf) > 0
    assert (shapely.get_x(gdf.geometry.values) == gdf[S.LON].to_numpy()).all()
    assert fs.exists(f"{ingested['remote'][5:]}/{LEDGER_FILE}")
    assert not fs.exists(f"{ingested['remote'][5:]}/{LOCK_FILE}")  # released


# ------------------------------------------------------------------------- analyses and nightly
def test_qc_stops_on_dask_workers_equal_local(endpoint, sim, url, tmp_path):
    from distributed import Client, LocalCluster

    from flyway.analysis.runner import run_qc, run_stops

    local = tmp_path / "local"
    for store in (local, url):
        flyway.ingest([sim["fixes"]], store=store, reference=sim["reference"])
        assert run_qc(store).individuals_changed > 0
    pd.testing.assert_frame_equal(_no_batch(flyway.read_fixes(url)), _no_batch(flyway.read_fixes(local)))
    run_stops(local)
    # worker processes get the URL string and open the store themselves: no shared disk
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        run_stops(url, client=client)
    stops = flyway.read_stops(url)
    assert len(stops) > 0
    pd.testing.assert_frame_equal(stops, flyway.read_stops(local))


def _nightly_toml(path: Path, sim, layers, maps: Path | None = None) -> Path:
    maps_section = f'[maps]\nout = "{maps}"\nself_contained = false\n' if maps is not None else ""
    path.write_text(f"""
[nightly]
settle_s = 0
reference = "{sim['reference']}"

[coverage]
protected_areas = "{layers['protected_areas']}"

[exposure]
infrastructure = ["{layers['infrastructure']}"]

[alerts]
unprotected_below = 1.0
infrastructure_km = 500.0

{maps_section}""", encoding="utf-8")
    return path


def test_nightly_on_s3_equals_local(endpoint, sim, url, tmp_path):
    from flyway.demo_layers import write_demo_layers
    from flyway.nightly import nightly
    from flyway.nightly_config import load_config
    from flyway.notify import read_alerts
    from flyway.runrecord import list_runs
    from tests.test_nightly import slices

    layers = write_demo_layers(tmp_path / "layers", seed=3)
    nights = slices(sim["fixes"], 3)
    stores = {"local": tmp_path / "local", "s3": url}
    for name, store in stores.items():
        inbox = tmp_path / f"inbox-{name}"
        inbox.mkdir()
        config = _nightly_toml(tmp_path / f"{name}.toml", sim, layers)
        for k, part in enumerate(nights):
            part.to_csv(inbox / f"night-{k}.csv", index=False)
            if name == "s3" and k == len(nights) - 1:  # the last night through the CLI, maps refreshed
                config = _nightly_toml(tmp_path / "last.toml", sim, layers, maps=tmp_path / "maps")
                res = CliRunner().invoke(app, ["nightly", "--store", store, "--inbox", str(inbox),
                                               "--config", str(config), "--now", "2024-05-01", "--json"])
                assert res.exit_code == 0, res.output
            else:
                assert nightly(store, inbox, config=load_config(config), now="2024-05-01").exit_code == 0
        assert len(list((inbox / "processed").iterdir())) == len(nights)
    local, s3 = stores["local"], stores["s3"]
    pd.testing.assert_frame_equal(flyway.read_stops(s3), flyway.read_stops(local))
    pd.testing.assert_frame_equal(flyway.read_sites(s3), flyway.read_sites(local))
    for folder, name in (("coverage", "gaps"), ("exposure", "stop_exposure")):
        pd.testing.assert_frame_equal(flyway.read_derived(s3, name, folder=folder),
                                      flyway.read_derived(local, name, folder=folder))
    fs = _fs()
    assert fs.cat_file(f"{url[5:]}/coverage/gaps.csv") == (local / "coverage" / "gaps.csv").read_bytes()
    alerts_s3, alerts_local = read_alerts(s3), read_alerts(local)
    assert len(alerts_s3) > 0 and alerts_s3[S.ALERT_ID].is_unique
    assert sorted(alerts_s3[S.ALERT_ID]) == sorted(alerts_local[S.ALERT_ID])
    runs = list_runs(s3)
    assert list(runs["status"]) == ["ok"] * len(nights) and runs["rows_kept"].sum() == len(flyway.read_fixes(local))
    assert (tmp_path / "maps" / "gap_map.html").stat().st_size > 0  # maps from an S3 store, to a local folder
    assert (tmp_path / "maps" / "report" / "index.html").is_file()
    # compaction rewrites through the S3 ledger like QC does; the fixes stay those of the local store
    from flyway.compact import compact

    files_before = len(Store(s3).fix_files())
    res = compact(s3)
    assert res.individuals > 0 and len(Store(s3).fix_files()) == res.files_after < files_before
    compact(local)
    pd.testing.assert_frame_equal(_no_batch(flyway.read_fixes(s3)), _no_batch(flyway.read_fixes(local)))


# ---------------------------------------------------------------------------------- crash safety
CHILD = r"""
import os, signal, sys, threading
import flyway
from flyway import objectstore as O

mode, n, store, files = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
real_put, real_put_if = O.put_object, O.put_if
parts = [0]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def put_object(path, data):
    if "/fixes/" in str(path):
        parts[0] += 1
        if mode == "after_parts" and parts[0] > n:
            die()  # n parts uploaded, the next one never starts
        if mode == "during_part" and parts[0] == n:
            threading.Timer(0.002, die).start()  # the kill lands while this PUT is on the wire
    return real_put(path, data)

def put_if(path, data, etag):
    if str(path).endswith("_ledger.parquet") and mode == "before_ledger":
        die()
    out = real_put_if(path, data, etag)
    if str(path).endswith("_ledger.parquet") and mode == "after_ledger":
        die()
    return out

O.put_object, O.put_if = put_object, put_if
print("ready", flush=True)
flyway.ingest(files, store=store, block_size=1 << 16)
print("done", flush=True)
"""


def _spawn(mode: str, n: int, store: str, files: list[Path]) -> subprocess.Popen:
    env = dict(os.environ, **{objectstore.STALE_ENV: CHILD_STALE_S})
    return subprocess.Popen([sys.executable, "-c", CHILD, mode, str(n), store, *map(str, files)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _ingest_when_lock_is_free(store: str, files: list[Path]) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            flyway.ingest(files, store=store)
            return
        except StoreLockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module")
def crash(endpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    old = write_movebank(root / "old.csv", movebank_frame(n_individuals=4, n_fixes=300, seed=1))
    frame = movebank_frame(n_individuals=10, n_fixes=600, seed=2, start="2024-03-10", first_event_id=10_000)
    new = [write_movebank(root / "new1.csv", frame.iloc[: len(frame) // 2]),
           write_movebank(root / "new2.csv", frame.iloc[len(frame) // 2 - 300:])]  # 300 rows overlap
    base = f"s3://{BUCKET}/crash-base"
    flyway.ingest([old], store=base)
    after = root / "after"
    flyway.ingest([old], store=after)
    flyway.ingest(new, store=after)
    return {"base": base, "new": new, "before": _keys(base), "after": _keys(after), "cases": 0}


def _kill_case(crash, mode: str, n: int = 0, kill_after_s: float | None = None) -> str:
    """Run the batch in a child on a copy of the base store, killed as ``mode`` says; check; re-run; check."""
    crash["cases"] += 1
    store = f"s3://{BUCKET}/crash-{crash['cases']}"
    _fs().copy(crash["base"][5:], store[5:], recursive=True)
    proc = _spawn(mode, n, store, crash["new"])
    assert proc.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    if kill_after_s is not None:
        time.sleep(kill_after_s)
        proc.send_signal(signal.SIGKILL)
    code = proc.wait(timeout=120)
    if mode == "none" and kill_after_s is None:
        assert code == 0, proc.stderr.read()
        crash["seconds"] = time.monotonic() - t0
    now = _keys(store)  # readable after the kill
    flyway.store_info(store)
    state = "before" if now.equals(crash["before"]) else "after" if now.equals(crash["after"]) else "mixed"
    assert state != "mixed", f"{mode}: the store holds part of the batch"
    if mode != "none":
        assert code == -signal.SIGKILL, proc.stderr.read()
    _ingest_when_lock_is_free(store, crash["new"])  # the killed holder's lock expires; the re-run completes
    again = _keys(store)
    assert again.equals(crash["after"]) and not again.duplicated().any()
    st = Store(store)
    committed = st.committed_batches()
    assert {batch_of_part(k.rsplit("/", 1)[-1]) for k in objectstore.find(st.fixes_dir)} <= committed  # no orphans
    return state


@pytest.mark.parametrize("mode,n,expected", [("after_parts", 4, "before"), ("during_part", 3, "before"),
                                             ("before_ledger", 0, "before"), ("after_ledger", 0, "after")])
def test_kill_during_upload_or_ledger_put(crash, mode, n, expected):
    assert _kill_case(crash, mode, n) == expected


def test_kill_at_random_moments(crash):
    assert _kill_case(crash, "none") == "after"  # an uninterrupted run, for its duration
    rng = random.Random(8)
    states = [_kill_case(crash, "none", kill_after_s=rng.uniform(0.0, crash["seconds"])) for _ in range(3)]
    print("random kills:", states, "of a", round(crash["seconds"], 2), "s batch")
    assert set(states) <= {"before", "after"}


# ----------------------------------------------------------------------------------------- locks
def test_second_writer_meets_the_lock(endpoint, url, tmp_path):
    f = write_movebank(tmp_path / "a.csv", movebank_frame(n_individuals=2, n_fixes=30))
    st = Store(url)
    with st.lock("compact"):
        res = CliRunner().invoke(app, ["ingest", str(f), "--store", url])
        assert res.exit_code == StoreLockedError.exit_code == 75
        assert f"locked by compact run, pid {os.getpid()}" in res.output
        with pytest.raises(StoreLockedError):
            with st.lock("qc", timeout=0.3):
                pass
    assert flyway.ingest([f], store=url).rows_kept == 60


def test_stale_lock_of_a_killed_holder_is_taken_over(endpoint, url, caplog):
    child = ("import sys, time\nfrom flyway.store import Store\n"
             "with Store(sys.argv[1]).lock('ingest'):\n    print('held', flush=True)\n    time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", child, url], cwd=REPO, text=True, stdout=subprocess.PIPE,
                            env=dict(os.environ, **{objectstore.STALE_ENV: "3"}))
    assert proc.stdout.readline().strip() == "held"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with pytest.raises(StoreLockedError, match=f"ingest run, pid {proc.pid}"):
        with Store(url).lock("qc"):
            pass
    with Store(url).lock("qc", timeout=10):  # waits out the expiry, then takes the lock over
        lock = objectstore.held(Store(url).path / LOCK_FILE)
        assert lock is not None and lock.took_over
    assert "took over a stale lock" in caplog.text
    assert not _fs().exists(f"{url[5:]}/{LOCK_FILE}")


def test_ledger_commit_of_a_stalled_writer_is_refused(endpoint, url, tmp_path, monkeypatch):
    from flyway.compact import write_rewrite_part
    from flyway.store import new_batch_id

    f = write_movebank(tmp_path / "a.csv", movebank_frame(n_individuals=2, n_fixes=30))
    flyway.ingest([f], store=url)
    before = flyway.read_fixes(url)
    monkeypatch.setenv(objectstore.STALE_ENV, "1")
    st = Store(url)
    stalled = st.lock("qc")
    stalled.__enter__()
    batch = new_batch_id()
    mine = st.fix_files()[0]
    part = write_rewrite_part(st, batch, st.scan_fixes(individuals=[before[S.INDIVIDUAL_ID].iloc[0]]))
    lock = objectstore.held(st.path / LOCK_FILE)
    lock._stop.set()  # the writer stalls after uploading its part: no more heartbeats
    lock._beat.join()
    time.sleep(1.3)
    # another writer takes the expired lock over, cleans up, and commits nothing of its own
    other = subprocess.run([*FLYWAY_CLI, "store", "compact", "--store", url], cwd=REPO,
                           capture_output=True, text=True, timeout=120)
    assert other.returncode == 0, other.stderr
    assert not _fs().exists(f"{url[5:]}/{part}")  # the stalled writer's part was an orphan
    with pytest.raises(StoreLockedError, match="another writer took the store over"):
        st.commit_rewrite(batch, "qc", [part], [st.relative(mine)])
    stalled.__exit__(None, None, None)
    assert batch not in st.committed_batches()
    pd.testing.assert_frame_equal(flyway.read_fixes(url), before)  # no ledger names a missing part
    # without a lock the commit is a compare-and-swap on the ledger just read
    etag = objectstore.etag_of(st.ledger_path)
    st.append_ledger([{"sha256": "", "source_file": "<test>", "batch_id": new_batch_id(), "status": "committed",
                       "part_files": [], "replaces": []}])
    assert objectstore.etag_of(st.ledger_path) != etag and len(st.committed_batches()) == 2


def test_missing_store_or_bucket_is_one_clear_line(endpoint, url, tmp_path):
    with pytest.raises(StoreError, match="no such store"):
        flyway.read_fixes(url)
    f = write_movebank(tmp_path / "a.csv", movebank_frame(n_individuals=1, n_fixes=10))
    res = CliRunner().invoke(app, ["ingest", str(f), "--store", "s3://no-such-bucket-flyway/x"])
    assert res.exit_code == StoreError.exit_code == 3
    assert "s3://no-such-bucket-flyway/x: cannot use the object store" in res.output
    assert "AWS_ENDPOINT_URL" in res.output and "Traceback" not in res.output


def test_server_ignoring_conditional_writes_falls_back_to_the_lock(endpoint, url, tmp_path, monkeypatch, caplog):
    import s3fs

    real = s3fs.S3FileSystem.call_s3

    def ignoring(self, method, *args, **kwargs):  # an S3 clone that drops If-Match / If-None-Match
        kwargs.pop("IfMatch", None)
        kwargs.pop("IfNoneMatch", None)
        return real(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "call_s3", ignoring)
    monkeypatch.setattr(objectstore, "_conditional_ok", {})
    f = write_movebank(tmp_path / "a.csv", movebank_frame(n_individuals=2, n_fixes=30))
    flyway.ingest([f], store=url)
    assert "ignores conditional writes" in caplog.text
    assert not objectstore.supports_etags(Store(url).ledger_path)
    assert len(flyway.read_fixes(url)) == 60 and not _fs().exists(f"{url[5:]}/{LOCK_FILE}")


# ----------------------------------------------------------------------------- other filesystems
def test_any_fsspec_url_and_bad_settings(tmp_path, monkeypatch, caplog):
    f = write_movebank(tmp_path / "a.csv", movebank_frame(n_individuals=3, n_fixes=40))
    mem = "memory://flyway-test/store"
    flyway.ingest([f], store=mem)
    flyway.ingest([f], store=tmp_path / "local")
    pd.testing.assert_frame_equal(_no_batch(flyway.read_fixes(mem)), _no_batch(flyway.read_fixes(tmp_path / "local")))
    with Store(mem).lock("qc"):
        with pytest.raises(StoreLockedError, match="locked by qc run"):
            with Store(mem).lock("ingest"):
                pass
    # without ETags the lock renews in place and a stale one is taken over by delete + exclusive create
    monkeypatch.setenv(objectstore.STALE_ENV, "0.2")
    with Store(mem).lock("qc"):
        time.sleep(0.35)  # several renewals
        lock = objectstore.held(Store(mem).path / LOCK_FILE)
        assert not lock.lost and not lock.took_over
    stale = objectstore.ObjectLock(Store(mem).path / LOCK_FILE, "ingest", stale_s=0.2)
    stale.acquire()
    stale._stop.set()  # its holder dies: no more renewals
    stale._beat.join()
    time.sleep(0.3)
    with Store(mem).lock("qc", timeout=2):
        assert objectstore.held(Store(mem).path / LOCK_FILE).took_over
    monkeypatch.delenv(objectstore.STALE_ENV)
    assert str(Store(Path("s3:/bucket/prefix")).path) == "s3://bucket/prefix"  # a URL mangled by Path survives
    assert not Store("file:///tmp/x").is_remote
    monkeypatch.setenv(objectstore.STALE_ENV, "soon")
    with pytest.raises(StoreError, match="FLYWAY_LOCK_STALE_S = 'soon'"):
        with Store(mem).lock("qc"):
            pass
