"""The alert log and its delivery by e-mail (SMTP) and webhook (HTTP POST of JSON).

State lives in the store, under ``STORE/_alerts/``:

* ``alerts.jsonl`` — every alert ever raised, one JSON object per line with
  the fields of ``flyway.schema.ALERT_FIELDS``. An alert whose id is already
  in it is not appended again (deduplication across nights and across a
  run repeated after a crash);
* ``pending.json`` — per delivery channel, ids not yet delivered. A failed
  delivery leaves them pending for the next night and never fails the run.

On object storage (no append) the log is read, extended and written back
as one PUT conditional on the ETag that was read, retried if another
writer got there first.

Order on each run: the new ids are added to ``pending.json`` first, then
appended to ``alerts.jsonl``, then delivered; a crash in between delivers an
alert at least once (never zero times).

Secrets (SMTP password, webhook token) come from environment variables
named in the config, never from the config file itself.
"""
from __future__ import annotations

import json
import logging
import os
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from flyway import objectstore
from flyway import schema as S
from flyway.errors import ConfigError
from flyway.geoparquet import atomic_write_bytes, fsync_dir

log = logging.getLogger(__name__)

ALERTS_DIR = "_alerts"
ALERTS_FILE = "alerts.jsonl"
PENDING_FILE = "pending.json"
EMAIL = "email"
WEBHOOK = "webhook"


@dataclass(frozen=True)
class EmailConfig:
    """SMTP delivery: ``[alerts.email]`` of the nightly config."""

    host: str
    sender: str
    to: tuple[str, ...]
    port: int = 25
    starttls: bool = False
    ssl: bool = False
    username_env: str | None = None
    password_env: str | None = None
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.host or not self.sender or not self.to:
            raise ConfigError("[alerts.email] needs host, sender and at least one address in to")
        if not 0 < int(self.port) < 65536:
            raise ConfigError(f"[alerts.email] port = {self.port!r}; expected 1..65535")
        object.__setattr__(self, "to", tuple(self.to))


@dataclass(frozen=True)
class WebhookConfig:
    """HTTP delivery: ``[alerts.webhook]``; the token goes in ``Authorization: Bearer``."""

    url: str
    token_env: str | None = None
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not str(self.url).startswith(("http://", "https://")):
            raise ConfigError(f"[alerts.webhook] url = {self.url!r}; expected an http:// or https:// address")


def alerts_path(store: str | os.PathLike[str]) -> Path:
    return objectstore.store_path(store) / ALERTS_DIR / ALERTS_FILE


def read_alerts(store: str | os.PathLike[str]) -> pd.DataFrame:
    """Every alert of a store's log, oldest first (a line cut short by a crash is skipped).

    Parameters
    ----------
    store : path
        The store folder.

    Returns
    -------
    pandas.DataFrame
        Columns ``flyway.schema.ALERT_FIELDS``.
    """
    rows = _read_log(alerts_path(store))
    return pd.DataFrame(rows, columns=list(S.ALERT_FIELDS))


def _read_log(path: Path) -> list[dict[str, Any]]:
    if objectstore.is_remote(path):
        lines = (objectstore.get_object(path)[0] or b"").decode("utf-8", errors="replace").split("\n")
        return _parse_log(lines)
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as fh:
        return _parse_log(fh)


def _parse_log(lines) -> list[dict[str, Any]]:
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line cut short by a crash; the alert is raised again and appended whole
    return rows


def _clean(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    return value


def record_alerts(store: str | os.PathLike[str], alerts: pd.DataFrame, run_id: str,
                  channels: Sequence[str] = ()) -> pd.DataFrame:
    """Append alerts not yet in the log; mark them pending for ``channels``; return those appended."""
    path = alerts_path(store)
    known = {r.get(S.ALERT_ID) for r in _read_log(path)}
    fresh = alerts[~alerts[S.ALERT_ID].isin(known)].drop_duplicates(S.ALERT_ID).assign(**{S.RUN_ID: run_id})
    if fresh.empty:
        return fresh
    if channels:
        pending = read_pending(store)
        for ch in channels:
            pending[ch] = sorted(set(pending.get(ch, [])) | set(fresh[S.ALERT_ID]))
        _write_pending(store, pending)
    lines = "".join(json.dumps({k: _clean(v) for k, v in rec.items()}, default=str) + "\n"
                    for rec in fresh[list(S.ALERT_FIELDS)].to_dict(orient="records"))
    if objectstore.is_remote(path):
        _append_object(path, lines.encode("utf-8"))
        return fresh
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as fh:
        if fh.tell() and not _ends_with_newline(path):
            fh.write(b"\n")  # the previous run died mid-line
        fh.write(lines.encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())
    fsync_dir(path.parent)
    return fresh


def _append_object(path: Any, data: bytes) -> None:
    """Append to an object: read it, add ``data``, one PUT conditional on what was read (retried on a race)."""
    while True:
        old, etag = objectstore.get_object(path)
        old = old or b""
        body = old + (b"\n" if old and not old.endswith(b"\n") else b"") + data
        if not objectstore.supports_etags(path):
            objectstore.put_object(path, body)
            return
        try:
            objectstore.put_if(path, body, etag)
            return
        except objectstore.ConditionFailed:
            continue


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def read_pending(store: str | os.PathLike[str]) -> dict[str, list[str]]:
    path = objectstore.store_path(store) / ALERTS_DIR / PENDING_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_pending(store: str | os.PathLike[str], pending: dict[str, list[str]]) -> None:
    path = objectstore.store_path(store) / ALERTS_DIR / PENDING_FILE
    atomic_write_bytes(path, json.dumps(pending, indent=1).encode())


def _secret(env: str | None, what: str) -> str | None:
    if env is None:
        return None
    value = os.environ.get(env)
    if value is None:
        raise ConfigError(f"{what}: environment variable {env} is not set")
    return value


def send_email(cfg: EmailConfig, alerts: list[dict[str, Any]], store: str) -> None:
    """One message listing the alerts (plain text, JSON attached)."""
    kinds = sorted({a[S.ALERT_KIND] for a in alerts})
    msg = EmailMessage()
    msg["Subject"] = f"flyway: {len(alerts)} alert(s) ({', '.join(kinds)})"
    msg["From"] = cfg.sender
    msg["To"] = ", ".join(cfg.to)
    body = [f"{a[S.ALERT_KIND]}: {a[S.ALERT_MESSAGE]}" for a in alerts]
    msg.set_content(f"flyway nightly, store {store}\n\n" + "\n".join(body) + "\n")
    msg.add_attachment(json.dumps(alerts, indent=1, default=str).encode(), maintype="application",
                       subtype="json", filename="alerts.json")
    user, password = _secret(cfg.username_env, "[alerts.email] username"), _secret(cfg.password_env,
                                                                                  "[alerts.email] password")
    smtp_cls = smtplib.SMTP_SSL if cfg.ssl else smtplib.SMTP
    with smtp_cls(cfg.host, int(cfg.port), timeout=cfg.timeout_s) as smtp:
        if cfg.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if user is not None and password is not None:
            smtp.login(user, password)
        smtp.send_message(msg)


def post_webhook(cfg: WebhookConfig, alerts: list[dict[str, Any]], store: str) -> None:
    """POST ``{"store": ..., "alerts": [...]}`` as JSON; any non-2xx answer is a failure."""
    data = json.dumps({"store": store, "alerts": alerts}, default=str).encode()
    req = urllib.request.Request(cfg.url, data=data, method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "flyway-nightly"})
    token = _secret(cfg.token_env, "[alerts.webhook] token")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=cfg.timeout_s) as resp:  # noqa: S310 (URL from the user's config)
        if not 200 <= resp.status < 300:
            raise urllib.error.HTTPError(cfg.url, resp.status, "webhook refused the alerts", resp.headers, None)


def deliver_pending(store: str | os.PathLike[str], email: EmailConfig | None = None,
                    webhook: WebhookConfig | None = None) -> dict[str, Any]:
    """Send every pending alert on each configured channel; failures stay pending.

    Returns per channel ``{"sent": n}`` or ``{"error": "...", "pending": n}``.
    Never raises for a delivery problem (the run must not fail because the
    mail server is down); the error is logged and retried next night.
    """
    pending = read_pending(store)
    by_id = {r[S.ALERT_ID]: r for r in _read_log(alerts_path(store))}
    out: dict[str, Any] = {}
    for name, cfg, send in ((EMAIL, email, send_email), (WEBHOOK, webhook, post_webhook)):
        ids = [i for i in pending.get(name, []) if i in by_id]
        if cfg is None or not ids:
            continue
        try:
            send(cfg, [by_id[i] for i in ids], str(store))
        except (OSError, smtplib.SMTPException, ConfigError, urllib.error.URLError) as exc:
            log.warning("alert delivery by %s failed (%d alert(s) kept for the next run): %s", name, len(ids), exc)
            out[name] = {"error": str(exc), "pending": len(ids)}
            continue
        log.info("delivered %d alert(s) by %s", len(ids), name)
        out[name] = {"sent": len(ids)}
        pending[name] = sorted(set(read_pending(store).get(name, [])) - set(ids))
        _write_pending(store, pending)
    return out


def channels(email: EmailConfig | None, webhook: WebhookConfig | None) -> list[str]:
    return [name for name, cfg in ((EMAIL, email), (WEBHOOK, webhook)) if cfg is not None]


def parse_delivery(table: dict[str, Any], source: str) -> tuple[EmailConfig | None, WebhookConfig | None]:
    """``[alerts.email]`` and ``[alerts.webhook]`` of a config; secrets in the file are refused."""
    for section in (EMAIL, WEBHOOK):
        for key in ("password", "token", "secret", "username"):
            if key in table.get(section, {}):
                raise ConfigError(f"[alerts.{section}] {key}: secrets are read from environment variables; "
                                  f"name one with {key}_env instead", file=source)
    email = webhook = None
    try:
        if EMAIL in table:
            email = EmailConfig(**{k: (tuple(v) if k == "to" else v) for k, v in table[EMAIL].items()})
        if WEBHOOK in table:
            webhook = WebhookConfig(**table[WEBHOOK])
    except TypeError as exc:
        raise ConfigError(f"[alerts.email|webhook]: {exc}", file=source) from exc
    return email, webhook

