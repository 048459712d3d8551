"""Alert rules (known answers), the deduplicated log, and delivery to real SMTP and HTTP servers on 127.0.0.1."""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flyway import alerts as A
from flyway import schema as S
from flyway.errors import ConfigError
from flyway.nightly import nightly
from flyway.nightly_config import NightlyConfig, load_config
from flyway.notify import EmailConfig, WebhookConfig, read_alerts, read_pending
from tests.conftest import movebank_frame


def track(ind: str, times: pd.DatetimeIndex, lon, lat, species: str = "Grus monacha", flags=None) -> pd.DataFrame:
    n = len(times)
    return pd.DataFrame({S.INDIVIDUAL_ID: ind, S.SPECIES: species, S.TIMESTAMP: times.tz_localize("UTC"),
                         S.LON: np.broadcast_to(lon, n).astype(float), S.LAT: np.broadcast_to(lat, n).astype(float),
                         S.QC_FLAGS: np.zeros(n, np.uint32) if flags is None else np.asarray(flags, np.uint32)})


NO_BREEDING: dict = {}


# ------------------------------------------------------------------------------------ rules
def test_tag_summaries_median_interval_and_last_clean_fix():
    t = pd.DatetimeIndex(["2024-03-01 00:00", "2024-03-01 01:00", "2024-03-01 03:00", "2024-03-01 04:00"])
    fixes = track("a", t, [1.0, 2.0, 3.0, 4.0], 40.0, flags=[0, 0, 0, 8])
    tags = A.tag_summaries(fixes)
    row = tags.iloc[0]
    assert row["n_fixes"] == 4 and row["n_flagged"] == 1
    assert row["median_interval_s"] == 3600.0  # diffs 1 h, 2 h, 1 h
    assert row[S.LON] == 3.0  # last clean fix, not the flagged one
    assert row["last_time"] == pd.Timestamp("2024-03-01 04:00", tz="UTC")


def test_silent_tag_uses_k_times_interval_and_the_minimum():
    hourly = track("hourly", pd.date_range("2024-03-01", periods=48, freq="h"), 120.0, 35.0)
    daily = track("daily", pd.date_range("2024-02-01", periods=30, freq="24h"), 121.0, 35.0)
    tags = A.tag_summaries(pd.concat([daily, hourly], ignore_index=True))
    p = A.AlertParams()
    # 30 h after the hourly tag's last fix: beyond 24 h (3 x 1 h is less than the 24 h minimum)
    ref = pd.Timestamp("2024-03-02 23:00", tz="UTC") + pd.Timedelta(hours=30)
    out = A.silent_tags(tags, ref, p)
    assert set(out[S.INDIVIDUAL_ID]) == {"hourly", "daily"}
    # the daily tag (last fix 2024-03-01 00:00) is silent only after 3 x 24 h; the hourly one after 24 h
    daily_last = pd.Timestamp("2024-03-01 00:00", tz="UTC")
    assert A.silent_tags(tags, daily_last + pd.Timedelta(hours=70), p).empty  # 23 h and 70 h
    assert list(A.silent_tags(tags, daily_last + pd.Timedelta(hours=71.5), p)[S.INDIVIDUAL_ID]) == ["hourly"]
    # same silence, same id (raised once across nights)
    assert list(A.silent_tags(tags, ref + pd.Timedelta(days=3), p)[S.ALERT_ID]) == list(out[S.ALERT_ID])


def test_possible_mortality_known_answer():
    t = pd.date_range("2024-10-01", periods=60, freq="h")
    rng = np.random.default_rng(0)
    # moves until hour 20, then jitters by ~10 m for 39 h
    lon = np.where(np.arange(60) < 20, 120.0 + np.arange(60) * 0.01, 120.2 + rng.normal(0, 0.00005, 60))
    dead = track("dead", t, lon, 35.0)
    moving = track("moving", t, 120.0 + np.arange(60) * 0.01, 35.0)
    p = A.AlertParams(mortality_radius_m=50.0, mortality_h=24.0)
    out = A.possible_mortality(pd.concat([dead, moving], ignore_index=True), p, NO_BREEDING)
    assert list(out[S.INDIVIDUAL_ID]) == ["dead"]
    assert "39 h" in out[S.ALERT_MESSAGE].iloc[0]
    # a longer per-species threshold silences it; so does the breeding window
    longer = A.AlertParams(mortality_h_by_species={"Grus monacha": 48.0})
    assert A.possible_mortality(dead, longer, NO_BREEDING).empty
    assert A.possible_mortality(dead, p, {"Grus monacha": ((9, 1), (10, 31))}).empty


def test_new_country_skips_the_first_country_and_known_ones():
    entries = pd.DataFrame({S.INDIVIDUAL_ID: ["a", "a", "b"], S.SPECIES: "Grus monacha",
                            S.COUNTRY: ["CHN", "KOR", "RUS"], S.TIME: pd.to_datetime(["2024-01-01"] * 3, utc=True),
                            S.LON: [117.0, 127.0, 131.0], S.LAT: [30.0, 37.0, 43.0]})
    out = A.new_countries(entries, {})
    assert list(zip(out[S.INDIVIDUAL_ID], out[S.ALERT_MESSAGE].str.contains("KOR"))) == [("a", True)]
    out = A.new_countries(entries, {"b": ["CHN"]})  # b is known and had not been in RUS
    assert set(out[S.INDIVIDUAL_ID]) == {"a", "b"}


def test_qc_spike_needs_a_jump_over_enough_new_fixes():
    t = pd.date_range("2024-03-01", periods=100, freq="h")
    before = A.tag_summaries(track("a", t[:50], 120.0, 35.0, flags=[0] * 48 + [8] * 2))
    after = A.tag_summaries(track("a", t, 120.0, 35.0, flags=[0] * 48 + [8] * 2 + [8] * 30 + [0] * 20))
    out = A.qc_spikes(before, after, A.AlertParams(qc_spike_min_fixes=20))
    assert len(out) == 1 and "60% of 50 new fixes" in out[S.ALERT_MESSAGE].iloc[0]
    assert A.qc_spikes(before, after, A.AlertParams(qc_spike_min_fixes=51)).empty


def test_params_are_validated_with_clear_messages(tmp_path):
    with pytest.raises(ConfigError, match="mortality_radius_m = -1"):
        A.AlertParams(mortality_radius_m=-1)
    cfg = tmp_path / "n.toml"
    cfg.write_text('[alerts.email]\nhost = "x"\nsender = "a@b"\nto = ["c@d"]\npassword = "hunter2"\n')
    with pytest.raises(ConfigError, match="environment variables"):
        load_config(cfg)
    cfg.write_text("[alerts]\nsilent_factr = 3\n")
    with pytest.raises(ConfigError, match="silent_factr"):
        load_config(cfg)


# ------------------------------------------------------------------------------ servers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server():
    aiosmtpd = pytest.importorskip("aiosmtpd.controller")
    from aiosmtpd.smtp import AuthResult, LoginPassword

    received: list = []
    logins: list = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                             "data": envelope.content.decode("utf-8", "replace"), "authenticated": session.authenticated})
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"ops" and auth_data.password == b"s3cret"
        logins.append(auth_data.login)
        return AuthResult(success=ok)

    port = free_port()
    ctl = aiosmtpd.Controller(Handler(), hostname="127.0.0.1", port=port, authenticator=authenticator,
                             auth_require_tls=False)
    ctl.start()
    try:
        yield port, received, logins
    finally:
        ctl.stop()


@pytest.fixture
def webhook_server():
    posts: list = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server API)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            posts.append({"auth": self.headers.get("Authorization"), "json": json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", posts
    finally:
        server.shutdown()
        server.server_close()


def drop(inbox: Path, name: str, frame: pd.DataFrame) -> Path:
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    frame.to_csv(path, index=False)
    return path


def test_alerts_delivered_by_smtp_and_webhook_once_and_retried(tmp_path, smtp_server, webhook_server, monkeypatch):
    port, mails, logins = smtp_server
    url, posts = webhook_server
    monkeypatch.setenv("T_SMTP_USER", "ops")
    monkeypatch.setenv("T_SMTP_PASS", "s3cret")
    monkeypatch.setenv("T_HOOK_TOKEN", "tok-123")
    email = EmailConfig(host="127.0.0.1", port=port, sender="flyway@test", to=("team@test",),
                        username_env="T_SMTP_USER", password_env="T_SMTP_PASS", timeout_s=5)
    down = WebhookConfig(url=f"http://127.0.0.1:{free_port()}/hook", token_env="T_HOOK_TOKEN", timeout_s=2)
    store, inbox = tmp_path / "store", tmp_path / "inbox"
    drop(inbox, "gm.csv", movebank_frame(n_individuals=2, n_fixes=60))
    (inbox / "broken.csv").write_text("nonsense\n")
    cfg = NightlyConfig(settle_s=0, email=email, webhook=down)
    res = nightly(store, inbox, config=cfg, now="2024-03-20")  # webhook down: the run still succeeds
    assert res.exit_code == 4  # broken.csv failed
    kinds = set(res.alerts[S.ALERT_KIND])
    assert {"failed_file", "silent_tag"} <= kinds
    assert len(mails) == 1 and "failed_file" in mails[0]["data"] and mails[0]["to"] == ["team@test"]
    assert mails[0]["authenticated"] and logins == [b"ops"]  # credentials from the environment
    assert res.record["delivery"]["webhook"]["pending"] == len(res.alerts)
    assert set(read_pending(store)["webhook"]) == set(res.alerts[S.ALERT_ID])
    # next night: the webhook is up; the same situation raises nothing new, pending alerts are delivered
    cfg2 = NightlyConfig(settle_s=0, email=email, webhook=WebhookConfig(url=url, token_env="T_HOOK_TOKEN"))
    res2 = nightly(store, inbox, config=cfg2, now="2024-03-21")
    assert res2.alerts.empty and len(mails) == 1
    assert len(posts) == 1 and posts[0]["auth"] == "Bearer tok-123"
    assert {a[S.ALERT_ID] for a in posts[0]["json"]["alerts"]} == set(res.alerts[S.ALERT_ID])
    assert read_pending(store)["webhook"] == []
    log = read_alerts(store)
    assert log[S.ALERT_ID].is_unique and list(log.columns) == list(S.ALERT_FIELDS)


def test_unprotected_stop_and_near_infrastructure_when_configured(tmp_path):
    from flyway.demo_layers import write_demo_layers
    from flyway.simulate import write_simulation

    sim = write_simulation(tmp_path / "sim", n_individuals=4, days=40, seed=5)
    layers = write_demo_layers(tmp_path / "layers", seed=5)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    sim["fixes"].rename(inbox / sim["fixes"].name)
    cfg = NightlyConfig(settle_s=0, reference=sim["reference"], protected_areas=layers["protected_areas"],
                        infrastructure=(layers["infrastructure"],),
                        alerts=A.AlertParams(unprotected_below=1.0, infrastructure_km=500.0))
    res = nightly(tmp_path / "store", inbox, config=cfg)
    kinds = res.alerts[S.ALERT_KIND].value_counts()
    assert kinds.get("unprotected_stop", 0) > 0 and kinds.get("near_infrastructure", 0) > 0
    stops = pd.read_parquet(tmp_path / "store" / "stops" / "stops.parquet")
    assert set(res.alerts.loc[res.alerts[S.ALERT_KIND] == "unprotected_stop", S.INDIVIDUAL_ID]) <= \
        set(stops[S.INDIVIDUAL_ID])
    # none of it again on a second night without new data
    assert nightly(tmp_path / "store", inbox, config=cfg).alerts.empty
