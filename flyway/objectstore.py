"""Stores on object storage (``s3://bucket/prefix``, or any fsspec URL): paths, single PUTs, the lock.

Object stores have no rename, so there the store commits without one:

* a part file has a unique name (it carries the batch id) and is written
  with one PUT, so it exists whole or not at all; until the ledger names its
  batch no reader looks at it, and the next writer deletes it if it never
  got there;
* the ledger is written last, as one PUT of the whole new ledger object
  (readers see the old object or the new one), and that PUT is conditional:
  ``If-Match`` the ETag of the ledger as it was when the writer took the lock
  (:func:`put_if`), so a writer whose lock was taken over while it stalled
  can never overwrite a newer ledger;
* the write lock (:class:`ObjectLock`) is an object created with
  ``If-None-Match: *``, holding host, PID, start time and an expiry that the
  holder pushes forward every quarter of ``FLYWAY_LOCK_STALE_S`` seconds
  (default 120). A holder killed with ``kill -9`` stops renewing, and once the
  expiry has passed the next writer takes the lock over with a PUT
  ``If-Match`` the dead holder's ETag.

Local paths never come here: they keep OS file locks and ``os.replace``.
S3 conditional writes need botocore >= 1.35.20 and a server that honours
them (AWS S3 does; so does moto >= 5.0.16). A server that ignores them is
detected when a lock is first taken, and then — as on filesystems other than
S3 — flyway warns once and relies on the lock alone. Expiry compares the
holder's clock with the taker's: hosts sharing a store keep NTP time (a skew
far below ``FLYWAY_LOCK_STALE_S``).

Endpoint and credentials come from the environment as botocore and s3fs read
them, never from a flyway file: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` (and
``~/.aws/config``), ``AWS_REGION`` / ``AWS_DEFAULT_REGION``,
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` for S3-compatible servers,
and fsspec's ``FSSPEC_S3_<OPTION>`` (e.g. ``FSSPEC_S3_ENDPOINT_URL``).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Any, Iterator

from flyway.errors import FlywayError, StoreError, StoreLockedError

log = logging.getLogger(__name__)

STALE_ENV = "FLYWAY_LOCK_STALE_S"
DEFAULT_STALE_S = 120.0
_LOCAL_PROTOCOLS = ("", "file", "local")
_PRECONDITION_CODES = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")
_unconditional_warned: set[str] = set()
_conditional_ok: dict[int, bool] = {}
_held: dict[str, ObjectLock] = {}
_held_guard = threading.Lock()


# ----------------------------------------------------------------------------------- paths
def store_path(value: Any) -> Any:
    """A store location as a local :class:`~pathlib.Path` or, for a URL, a ``upath.UPath``.

    ``file://`` URLs are local paths. A URL whose ``//`` a ``Path`` has
    collapsed (``s3:/bucket/prefix``, from a CLI option typed as a path) is
    restored. Remote paths list without fsspec's listing cache, so every
    reader sees what other processes committed.
    """
    if isinstance(value, PurePath):
        text = value.as_posix()
        protocol = text.split(":/", 1)[0] if ":/" in text and "://" not in text else ""
        if not protocol or protocol in _LOCAL_PROTOCOLS or not _known_protocol(protocol):
            return Path(value)
        value = f"{protocol}://{text.split(':/', 1)[1].lstrip('/')}"
    if is_remote(value):
        return value
    if hasattr(value, "protocol") and hasattr(value, "fs"):  # a local UPath
        return Path(value.path)
    text = os.fspath(value) if not isinstance(value, str) else value
    if "://" not in text:
        return Path(text)
    protocol, rest = text.split("://", 1)
    if protocol in _LOCAL_PROTOCOLS:
        return Path(rest)
    try:
        from upath import UPath
    except ImportError:
        raise StoreError(f"{text}: a store on object storage needs the optional dependencies: "
                         "pip install 'flyway-telemetry[s3]'") from None
    try:
        return UPath(text.rstrip("/"), use_listings_cache=False)
    except (ImportError, ValueError) as exc:
        raise StoreError(f"{text}: cannot open this store URL ({exc}); for s3:// install "
                         "'flyway-telemetry[s3]'") from None


def _known_protocol(protocol: str) -> bool:
    try:
        import fsspec
    except ImportError:
        return False
    return protocol in fsspec.available_protocols()


@contextmanager
def reachable(path: Any) -> Iterator[None]:
    """Turn a failure to reach the object store (endpoint, credentials, bucket) into one :class:`StoreError` line."""
    try:
        yield
    except FlywayError:
        raise
    except Exception as exc:  # botocore's errors are not OSErrors: catch what the client raises
        raise StoreError(f"{path}: cannot use the object store ({type(exc).__name__}: {exc}); its endpoint and "
                         "credentials come from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY "
                         "or AWS_PROFILE") from exc


def is_remote(path: Any) -> bool:
    """Whether ``path`` lives on a non-local fsspec filesystem (an object store)."""
    return not isinstance(path, PurePath) and hasattr(path, "fs") and \
        getattr(path, "protocol", "") not in _LOCAL_PROTOCOLS


def relative(path: Any, root: Any) -> str:
    """``path`` relative to ``root`` as a POSIX string (the form the ledger keeps)."""
    return PurePath(str(path.relative_to(root))).as_posix()


def find(folder: Any) -> dict[str, int]:
    """Every object under ``folder``: relative POSIX name -> size in bytes (one paginated listing)."""
    fs, base = folder.fs, folder.path.rstrip("/")
    try:
        found = fs.find(base, detail=True)
    except FileNotFoundError:
        return {}
    return {name[len(base) + 1:]: int(info.get("size") or 0) for name, info in found.items()
            if name.startswith(base + "/") and info.get("type", "file") == "file"}


def delete(paths: list[Any]) -> int:
    """Delete objects (batched: S3 deletes up to 1,000 per request); returns how many were asked for."""
    if not paths:
        return 0
    fs = paths[0].fs
    try:
        fs.rm([p.path for p in paths])
    except FileNotFoundError:  # already gone (a concurrent clean-up): nothing left to do
        pass
    return len(paths)


# ------------------------------------------------------------------------------- plain I/O
def get_object(path: Any) -> tuple[bytes | None, str | None]:
    """Content and ETag of an object from one GET (``(None, None)`` when absent; ETag ``None`` off S3)."""
    fs = path.fs
    if _is_s3(fs):
        from fsspec.asyn import sync

        bucket, key, _ = fs.split_path(path.path)
        try:
            return sync(fs.loop, _s3_get, fs, bucket, key)
        except FileNotFoundError:
            return None, None
    try:
        return fs.cat_file(path.path), None
    except FileNotFoundError:
        return None, None


def get_many(paths: list[Any], max_concurrency: int = 32, tail_bytes: int | None = None) -> list[bytes]:
    """Contents of many objects (or their last ``tail_bytes``), fetched concurrently: one GET each on S3."""
    if not paths:
        return []
    fs = paths[0].fs
    rng = {"Range": f"bytes=-{int(tail_bytes)}"} if tail_bytes else {}
    if _is_s3(fs):
        import asyncio

        from fsspec.asyn import sync

        async def fetch_all() -> list[bytes]:
            gate = asyncio.Semaphore(max_concurrency)

            async def one(path: Any) -> bytes:
                bucket, key, _ = fs.split_path(path.path)
                async with gate:
                    return (await _s3_get(fs, bucket, key, **rng))[0]

            return await asyncio.gather(*(one(p) for p in paths))

        return sync(fs.loop, fetch_all)
    if tail_bytes:
        return [fs.tail(p.path, int(tail_bytes)) for p in paths]
    blobs = fs.cat([p.path for p in paths])
    return [blobs[p.path] for p in paths]


async def _s3_get(fs: Any, bucket: str, key: str, **kwargs: str) -> tuple[bytes, str]:
    resp = await fs._call_s3("get_object", Bucket=bucket, Key=key, **kwargs)
    try:
        return await resp["Body"].read(), resp["ETag"]
    finally:
        resp["Body"].close()


def etag_of(path: Any) -> str | None:
    """ETag of an object from one HEAD (``None`` when absent or off S3)."""
    try:
        return path.fs.info(path.path).get("ETag")
    except FileNotFoundError:
        return None


def put_object(path: Any, data: bytes) -> None:
    """Write an object with one PUT (multipart above 100 MB, still visible only when complete)."""
    path.fs.pipe_file(path.path, data)


class ConditionFailed(Exception):
    """A conditional PUT found the object changed (or, for a create, already there)."""


def put_if(path: Any, data: bytes, etag: str | None) -> str | None:
    """One PUT that succeeds only while the object still has ``etag`` (``None``: while it does not exist).

    Returns the new ETag (``None`` where the filesystem has no ETags).
    Raises :class:`ConditionFailed` when the condition does not hold. Without
    conditional writes the PUT is unconditional (warned once).
    """
    fs = path.fs
    if _is_s3(fs) and _conditional_ok.get(id(fs), True):
        bucket, key, _ = fs.split_path(path.path)
        cond = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            out = fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, **cond)
        except OSError as exc:
            if _precondition_failed(exc):
                raise ConditionFailed(str(path)) from exc
            raise
        fs.invalidate_cache(path.path)
        return out.get("ETag")
    if etag is None and not _is_s3(fs):
        try:
            with fs.open(path.path, "xb") as fh:  # exclusive create where the filesystem has it
                fh.write(data)
            return None
        except FileExistsError as exc:
            raise ConditionFailed(str(path)) from exc
        except (ValueError, NotImplementedError):
            pass
    _warn_unconditional(fs)
    put_object(path, data)
    return None


def delete_if(path: Any, etag: str | None) -> bool:
    """Delete an object only while it has ``etag``; False when it changed (someone else's now)."""
    fs = path.fs
    if _is_s3(fs) and etag and _conditional_ok.get(id(fs), True):
        bucket, key, _ = fs.split_path(path.path)
        try:
            fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=etag)
            fs.invalidate_cache(path.path)
            return True
        except OSError as exc:
            if _precondition_failed(exc):
                return False
            if isinstance(exc, FileNotFoundError):
                return False
            # servers without conditional deletes: fall through to compare-then-delete
    _, current = get_object(path)
    if etag is not None and current is not None and current != etag:
        return False
    try:
        fs.rm_file(path.path)
    except FileNotFoundError:
        return False
    return True


def supports_etags(path: Any) -> bool:
    """Whether writes to ``path`` can be conditional on an ETag (S3 with conditional writes)."""
    return _is_s3(path.fs) and _conditional_ok.get(id(path.fs), True)


def _is_s3(fs: Any) -> bool:
    return hasattr(fs, "call_s3") and hasattr(fs, "split_path")


def _precondition_failed(exc: BaseException) -> bool:
    if isinstance(exc, FileExistsError):
        return True
    cause = getattr(exc, "__cause__", None)
    err = getattr(cause, "response", {}).get("Error", {}) if cause is not None else {}
    status = str(getattr(cause, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return str(err.get("Code", "")) in _PRECONDITION_CODES or status in ("409", "412")


def _warn_unconditional(fs: Any) -> None:
    name = type(fs).__name__
    if name not in _unconditional_warned:
        _unconditional_warned.add(name)
        log.warning("%s has no conditional writes: the store relies on its lock alone; "
                    "run one writer at a time", name)


def _probe_conditional(path: Any, data: bytes) -> None:
    """Once per filesystem: does the server refuse a create over an existing object? (some S3 clones ignore it)."""
    fs = path.fs
    if not _is_s3(fs) or id(fs) in _conditional_ok:
        return
    bucket, key, _ = fs.split_path(path.path)
    try:
        fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
    except OSError as exc:
        _conditional_ok[id(fs)] = _precondition_failed(exc)
        if _conditional_ok[id(fs)]:
            return
        raise
    _conditional_ok[id(fs)] = False
    log.warning("%s ignores conditional writes (If-None-Match): two writers at the same moment are "
                "not excluded; run one writer at a time", getattr(fs, "endpoint_url", None) or str(path))


# ------------------------------------------------------------------------------------ lock
def stale_seconds() -> float:
    """Seconds a lock lives without renewal (``FLYWAY_LOCK_STALE_S``, default 120)."""
    raw = os.environ.get(STALE_ENV)
    if raw is None:
        return DEFAULT_STALE_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise StoreError(f"{STALE_ENV} = {raw!r}: expected a number of seconds > 0")
    return value


def held(path: Any) -> ObjectLock | None:
    """The :class:`ObjectLock` on ``path`` this process holds, if any."""
    with _held_guard:
        lock = _held.get(str(path))
    return lock if lock is not None and lock.pid == os.getpid() else None


class ObjectLock:
    """A store's write lock on object storage: one object, created conditionally, renewed by a heartbeat.

    Parameters
    ----------
    path : UPath
        The lock object (``STORE/.flyway.lock``).
    purpose : str
        What the holder does (``ingest``, ``qc`` ...), for the message others get.
    timeout_s : float
        How long to wait for a live holder before :class:`StoreLockedError`.
    stale_s : float, optional
        Lifetime without renewal (default :func:`stale_seconds`); renewed every ``stale_s / 4``.

    Attributes
    ----------
    ledger_etag : str or None
        ETag of the store's ledger as the holder last saw or wrote it; the
        ledger commit is conditional on it (set by :class:`flyway.store.Store`).
    """

    def __init__(self, path: Any, purpose: str = "write", timeout_s: float = 0.0,
                 stale_s: float | None = None) -> None:
        self.path, self.purpose, self.timeout_s = path, purpose, float(timeout_s)
        self.stale_s = stale_seconds() if stale_s is None else float(stale_s)
        self.token = uuid.uuid4().hex
        self.pid = os.getpid()
        self.started = _now()
        self.etag: str | None = None
        self.ledger_etag: str | None = None
        self.lost = False
        self.took_over = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _body(self) -> bytes:
        now = _now()
        return json.dumps({
            "host": socket.gethostname(), "pid": self.pid, "started": self.started.isoformat(),
            "purpose": self.purpose, "token": self.token, "heartbeat": now.isoformat(),
            "expires": (now + dt.timedelta(seconds=self.stale_s)).isoformat(),
        }).encode()

    def acquire(self) -> ObjectLock:
        with reachable(_store_of(self.path)):
            return self._acquire()

    def _acquire(self) -> ObjectLock:
        deadline = time.monotonic() + self.timeout_s
        while True:
            body = self._body()
            try:
                self.etag = put_if(self.path, body, None)
            except ConditionFailed:
                pass
            else:
                try:
                    _probe_conditional(self.path, body)
                except BaseException:
                    delete_if(self.path, self.etag)
                    raise
                break
            data, etag = get_object(self.path)
            if data is None:
                time.sleep(0.01)
                continue  # released between our create and our read: try again
            holder = _holder(data)
            if holder is None or _expired(holder):
                try:
                    self.etag = _replace(self.path, body, etag)
                except ConditionFailed:
                    time.sleep(0.01)
                    continue  # someone else took it over or released it first
                log.warning("%s: took over a stale lock (%s)", self.path, _describe(holder))
                self.took_over = True
                break
            if time.monotonic() >= deadline:
                raise StoreLockedError(f"{_store_of(self.path)}: store is locked by {_describe(holder)}")
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        with _held_guard:
            _held[str(self.path)] = self
        self._beat = threading.Thread(target=self._heartbeat, name="flyway-lock-heartbeat", daemon=True)
        self._beat.start()
        return self

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.stale_s / 4.0):
            try:
                if _is_s3(self.path.fs):
                    self.etag = put_if(self.path, self._body(), self.etag)
                else:  # no ETags to condition on: renew in place
                    put_object(self.path, self._body())
            except ConditionFailed:
                self.lost = True
                log.error("%s: lost the store lock (it expired and another writer took it over); "
                          "this writer's commit will be refused", self.path)
                return
            except Exception as exc:  # noqa: BLE001 - a network blip: the next beat retries well inside the expiry
                log.warning("%s: lock renewal failed (%s); retrying", self.path, exc)

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        with _held_guard:
            if _held.get(str(self.path)) is self:
                del _held[str(self.path)]
        if not self.lost and not delete_if(self.path, self.etag):
            log.warning("%s: the lock had been taken over before release", self.path)

    def __enter__(self) -> ObjectLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _replace(path: Any, data: bytes, etag: str | None) -> str | None:
    """Replace the object last seen with ``etag``: one conditional PUT on S3, else delete then exclusive create."""
    if _is_s3(path.fs):
        return put_if(path, data, etag)
    try:
        path.fs.rm_file(path.path)
    except FileNotFoundError:
        pass
    return put_if(path, data, None)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _holder(data: bytes) -> dict[str, Any] | None:
    try:
        info = json.loads(data)
        dt.datetime.fromisoformat(info["expires"])
        return info
    except (ValueError, KeyError, TypeError):
        return None  # not a lock flyway wrote: treat it as expired


def _expired(info: dict[str, Any]) -> bool:
    return dt.datetime.fromisoformat(info["expires"]) < _now()


def _describe(info: dict[str, Any] | None) -> str:
    if info is None:
        return "an unreadable lock object"
    return (f"{info.get('purpose')} run, pid {info.get('pid')} on {info.get('host')} since {info.get('started')} "
            f"(lock expires {info.get('expires')} unless renewed)")


def _store_of(lock_path: Any) -> str:
    return str(lock_path.parent)
