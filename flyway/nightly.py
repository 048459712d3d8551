"""``flyway nightly``: inbox to store to derived tables to alerts, once a night, unattended.

One run::

    lock ─ settle ─ ingest (one batch) ─ move files ─ QC + stops of changed birds
         ─ sites ─ coverage ─ exposure ─ alerts ─ state ─ deliver ─ run record

* Only one nightly run per store at a time (an OS file lock, released by the
  kernel when its holder dies, so a ``kill -9`` never blocks later nights;
  on object storage a lock object that expires when its holder stops
  renewing it, :mod:`flyway.objectstore`); each stage also takes the store's
  write lock while it writes. The inbox is always a local folder.
* Files move to ``processed/`` or ``failed/`` only after the ingest batch has
  committed; a crash before the move leaves them in the inbox, and the
  ledger's content hashes make the next run move them without ingesting
  them again.
* Derived tables are recomputed for the individuals with new fixes only
  (:mod:`flyway.incremental` explains why that equals a full recompute).
* Exit codes: :data:`EXIT_OK` (0) every file processed, :data:`EXIT_SOME_FAILED`
  (4) some files were rejected and moved to ``failed/`` (the rest were
  processed), 75 another run holds the store (:class:`StoreLockedError`),
  other :class:`FlywayError` codes for bad configuration or store.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import flyway
from flyway import alerts as A
from flyway import schema as S
from flyway.errors import StoreLockedError
from flyway.inbox import FAILED_DIR, PROCESSED_DIR, InboxFile, move_file, settled_files
from flyway.incremental import (TAG_COLUMNS, NightlyState, Plan, params_key, plan, read_state, read_stored_stops,
                                update_stops, write_state)
from flyway.nightly_config import NightlyConfig, load_config
from flyway.notify import channels, deliver_pending, record_alerts
from flyway.runrecord import (STATUS_ERROR, STATUS_OK, STATUS_PARTIAL, STATUS_RUNNING, measure, new_run_id,
                              process_peak_mb, write_run_record)
from flyway.refresh import refresh_outputs
from flyway.store import Store

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_SOME_FAILED = 4  # same as `flyway ingest` with rejected files
EXIT_LOCKED = StoreLockedError.exit_code  # 75
NIGHTLY_LOCK_DIR = "_nightly"
FAULT_ENV = "FLYWAY_FAULT"  # crash-safety tests: kill -9 at a named point (shared with ingest)


@dataclass
class NightlyResult:
    """The run record of one nightly run (also written to ``STORE/_runs/<run_id>.json``)."""

    record: dict[str, Any]
    exit_code: int = EXIT_OK
    alerts: pd.DataFrame = field(default_factory=A.empty_alerts)

    @property
    def run_id(self) -> str:
        return self.record["run_id"]


def _fault(point: str) -> None:
    if os.environ.get(FAULT_ENV) == point:
        os.kill(os.getpid(), 9)


def _utc(value: Any) -> pd.Timestamp | None:
    if value is None:
        return None
    ts = pd.Timestamp(dt.datetime.now(dt.timezone.utc) if value == "now" else value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def nightly(store: str | os.PathLike[str], inbox: str | os.PathLike[str], *,
            config: NightlyConfig | str | os.PathLike[str] | None = None, scheduler: str | None = None,
            client: Any = None, now: Any = None, dry_run: bool = False) -> NightlyResult:
    """Run the nightly job once: ingest the inbox, update derived tables, raise alerts.

    Parameters
    ----------
    store : path or URL
        The store folder (created by the first run), or ``s3://bucket/prefix``.
    inbox : path
        Folder the tag files arrive in; ``processed/`` and ``failed/`` are made in it.
    config : NightlyConfig or path to a TOML file, optional
        See :mod:`flyway.nightly_config`.
    scheduler : str, optional
        Dask scheduler address for the stop stage (default ``DASK_SCHEDULER_ADDRESS``,
        else this process). Workers must see the store's folder (for an ``s3://``
        store: the same endpoint and credential environment variables).
    client : distributed.Client, optional
        An existing client (wins over ``scheduler``).
    now : str or datetime, optional
        Reference time for silent tags and QC's future-timestamp flag, so that
        history can be replayed; ``"now"`` is the current time. Default: the
        newest fix in the store for silence, the current time for QC.
    dry_run : bool
        List the files that would be ingested or moved and touch nothing.

    Returns
    -------
    NightlyResult
        ``record`` (the run record), ``exit_code`` and the new ``alerts``.

    Raises
    ------
    StoreLockedError
        Another nightly run holds the store (exit code 75).

    Examples
    --------
    >>> res = flyway.nightly("birds/", "inbox/", config="nightly.toml")  # doctest: +SKIP
    >>> res.exit_code, res.record["counts"]  # doctest: +SKIP
    """
    cfg = config if isinstance(config, NightlyConfig) else load_config(config)
    st, inbox = Store(store), Path(inbox)
    ref_now = _utc(now)
    if dry_run:
        return _dry_run(st, inbox, cfg)
    try:
        with Store(st.path / NIGHTLY_LOCK_DIR).lock("nightly"):
            return _run(st, inbox, cfg, scheduler, client, ref_now)
    except StoreLockedError as exc:
        if "nightly run" in str(exc):
            raise StoreLockedError(f"{st.path}: another nightly run is active ({str(exc).split('locked by ')[-1]})") \
                from None
        raise


def _run(st: Store, inbox: Path, cfg: NightlyConfig, scheduler, client, now) -> NightlyResult:
    started = dt.datetime.now(dt.timezone.utc)
    stages: dict[str, dict[str, float]] = {}
    record: dict[str, Any] = {
        "run_id": new_run_id(started), "status": STATUS_RUNNING, "started": started.isoformat(), "ended": None,
        "store": str(st.path), "inbox": str(inbox), "flyway_version": flyway.__version__,
        "parameters": {**cfg.as_record(), "now": now.isoformat() if now is not None else None,
                       "scheduler": scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")},
        "files": [], "counts": {}, "stages": stages, "alerts": [], "delivery": {},
    }
    write_run_record(st.path, record)
    result = NightlyResult(record)
    try:
        _steps(st, inbox, cfg, scheduler, client, now, record, result)
    except BaseException as exc:
        record.update(status=STATUS_ERROR, error=f"{type(exc).__name__}: {exc}",
                      exit_code=getattr(exc, "exit_code", 1))
        raise
    finally:
        ended = dt.datetime.now(dt.timezone.utc)
        record.update(ended=ended.isoformat(), seconds=round((ended - started).total_seconds(), 3),
                      process_peak_rss_mb=round(process_peak_mb(), 1))
        write_run_record(st.path, record)
    return result


def _steps(st, inbox, cfg: NightlyConfig, scheduler, client, now, record, result: NightlyResult) -> None:
    stages, counts = record["stages"], record["counts"]
    with measure(stages, "settle"):
        files = settled_files(inbox, cfg.settle_s)
    log.info("run %s: %d complete file(s) in %s", record["run_id"], len(files), inbox)
    with measure(stages, "ingest"):
        reports = _ingest(files, st, cfg, now) if files else {}
    _fault("after_ingest")
    chans = channels(cfg.email, cfg.webhook)
    # failed_file alerts go into the log before any file moves: a crash after the move must not lose them
    rejected = [(f.name, ",".join(r.sha256 for r in reports[f.name] if r.sha256), _reason(reports[f.name]))
                for f in files if _reason(reports.get(f.name, [])) is not None]
    fresh = [record_alerts(st.path, A.failed_files(rejected, record["started"]), record["run_id"], chans)]
    with measure(stages, "move"):
        record["files"] = _move(files, reports, inbox)
    failed = [f for f in record["files"] if f["status"] == "failed"]
    counts.update(files_processed=len(record["files"]) - len(failed), files_failed=len(failed),
                  rows_kept=sum(f["rows_kept"] for f in record["files"]),
                  rows_quarantined=sum(f["rows_quarantined"] for f in record["files"]))
    state = read_state(st)
    if st.exists() and st.committed_batches():
        work = plan(st, state, params_key(cfg.analysis_params()))
        alerts = _analyse(st, cfg, work, state, scheduler, client, now, record)
        with measure(stages, "alerts"):
            fresh.append(record_alerts(st.path, alerts, record["run_id"], chans))
        if cfg.maps_dir is not None:
            with measure(stages, "maps"):
                record["outputs"] = refresh_outputs(st, cfg.maps_dir, self_contained=cfg.maps_self_contained,
                                                    public_report=cfg.maps_public_report)
    fresh = pd.concat([a for a in fresh if len(a)] or [A.empty_alerts()], ignore_index=True)
    _fault("after_alerts")
    if st.exists() and st.committed_batches():
        write_state(st, state)
    _fault("after_state")
    with measure(stages, "deliver"):
        record["delivery"] = deliver_pending(st.path, cfg.email, cfg.webhook)
    counts["alerts"] = len(fresh)
    counts["alerts_by_kind"] = fresh[S.ALERT_KIND].value_counts().to_dict() if len(fresh) else {}
    record["alerts"] = list(fresh[S.ALERT_ID]) if len(fresh) else []
    result.alerts = fresh
    result.exit_code = EXIT_SOME_FAILED if failed else EXIT_OK
    record.update(status=STATUS_PARTIAL if failed else STATUS_OK, exit_code=result.exit_code)
    log.info("run %s: %d file(s) processed, %d failed, %d new alert(s)", record["run_id"],
             counts["files_processed"], len(failed), len(fresh))


# ----------------------------------------------------------------------------------- ingest
def _ingest(files: list[InboxFile], st: Store, cfg: NightlyConfig, now) -> dict[str, list]:
    """Ingest the files as one batch; file name -> its FileReports (one per archive member).

    Should the batch fail for a reason no file was blamed for (a bug, not bad
    input), the files are retried one by one so a single bad file cannot block
    every later night; a file that still fails is reported as rejected.
    """
    from flyway.ingest.pipeline import FileReport, ingest

    kw = dict(reference=cfg.reference, format=cfg.format, tz=cfg.tz, now=now.to_pydatetime() if now is not None else None)
    try:
        reports = ingest([f.path for f in files], st.path, **kw).files
    except (StoreLockedError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - isolate the file that breaks the batch
        log.error("ingest of the batch failed (%s: %s); retrying file by file", type(exc).__name__, exc)
        reports = []
        for f in files:
            try:
                reports.extend(ingest([f.path], st.path, **kw).files)
            except (StoreLockedError, KeyboardInterrupt, MemoryError):
                raise
            except Exception as one:  # noqa: BLE001
                log.error("%s: %s: %s", f.name, type(one).__name__, one)
                reports.append(FileReport(file=f.name, status="rejected", message=f"internal error: {one}"))
    by_file: dict[str, list] = {}
    for r in reports:
        by_file.setdefault(r.file.split("!", 1)[0], []).append(r)
    return by_file


def _reason(reps: list) -> str | None:
    """Why an inbox file is rejected (any member rejected), or None."""
    rejected = [r for r in reps if r.status == "rejected"]
    if not rejected:
        return None
    reason = "; ".join(r.message for r in rejected)
    if len(rejected) < len(reps):
        reason += f" (the other {len(reps) - len(rejected)} member(s) were ingested)"
    return reason


def _move(files: list[InboxFile], reports: dict[str, list], inbox: Path) -> list[dict[str, Any]]:
    out = []
    for k, f in enumerate(files):
        reps = reports.get(f.name)
        if not reps:
            log.warning("%s: no ingest report, left in the inbox", f.name)
            continue
        reason = _reason(reps)
        target = move_file(f.path, inbox / (FAILED_DIR if reason else PROCESSED_DIR), reason)
        if k == 0:
            _fault("after_first_move")
        (log.error if reason else log.info)("%s -> %s%s", f.name, target.relative_to(inbox),
                                            f": {reason}" if reason else "")
        out.append({"name": f.name, "status": "failed" if reason else "processed",
                    "moved_to": str(target.relative_to(inbox)),
                    "sha256": ",".join(r.sha256 for r in reps if r.sha256), "message": reason or "",
                    "ingest": sorted({r.status for r in reps}), "rows_kept": sum(r.rows_kept for r in reps),
                    "rows_quarantined": sum(r.rows_quarantined for r in reps)})
    return out


# --------------------------------------------------------------------------------- analyses
def _analyse(st: Store, cfg: NightlyConfig, work: Plan, state: NightlyState, scheduler, client, now,
             record: dict[str, Any]) -> pd.DataFrame:
    """QC, stops, sites, coverage, exposure for the plan; alerts; ``state`` is updated in place.

    Birds in ``work.tails`` take the tail path (:mod:`flyway.tail`) unless it
    sends them back; every other changed bird is recomputed over its whole track.
    """
    from flyway.analysis.parallel import resolve_client
    from flyway.analysis.runner import run_qc
    from flyway.tail import read_windows, tail_qc, window_fixes
    from flyway.tail_tables import tail_stops

    stages, counts = record["stages"], record["counts"]
    ids = work.individuals
    counts["individuals_changed"] = len(ids) if ids is not None else "all"
    stop_opts = cfg.stop_options()
    out: list[pd.DataFrame] = []
    batches = set(work.batches)
    tail = None
    if not work.nothing:
        with measure(stages, "qc"):
            old_stops = read_stored_stops(st)
            old_frame = old_stops.to_pandas()
            w = read_windows(st, work.tails, set(work.new_batches), old_frame, st.snapshot()) if work.tails else None
            if w is not None:
                tq = tail_qc(st, w, _utc("now") if now is None else now, stop_opts.get("species_config"))
                if tq.batch_id:
                    batches.add(tq.batch_id)
            whole = _whole(ids, w)
            if whole is None or whole:
                qc = run_qc(st, now=now, species_config=stop_opts.get("species_config"), individuals_only=whole)
                if qc.batch_id:
                    batches.add(qc.batch_id)
        _fault("after_qc")
        with measure(stages, "stops"), resolve_client(client, scheduler) as c:
            tail_rows = None
            if w is not None:
                fixes_w = window_fixes(w, tq)
                tail_rows, bounds = tail_stops(st, w, fixes_w, old_frame, state.gap_bounds, stop_opts)
                state.gap_bounds.update(bounds)
                tail = (w, fixes_w)
            upd = update_stops(st, _whole(ids, w), stop_opts, client=c, tail=tail_rows,
                               tail_birds=w.birds if w is not None else [], old=old_stops)
        counts.update(stops_added=upd.added, stops_changed=upd.changed, stops_removed=upd.removed,
                      stops=len(upd.stops), individuals_tail=len(w.birds) if w is not None else 0,
                      individuals_windowed=w.windowed if w is not None else 0,
                      individuals_tail_fallback=sorted(w.fallback) if w is not None else [],
                      individuals_whole=_whole(ids, w) or [])
        _fault("after_stops")
    before = state.tags  # the previous night's tags: what a "new" stop is
    with measure(stages, "tags"):
        out.append(_tag_alerts(st, cfg, ids, state, now, work.nothing, tail))
    if not work.nothing:
        tracked = state.tags.groupby(S.SPECIES)[S.INDIVIDUAL_ID].nunique().to_dict() if len(state.tags) else None
        out.extend(_site_stages(st, cfg, upd, before, tracked, stages, counts))
        _fault("after_sites")
    state.batches, state.params_key = batches, params_key(cfg.analysis_params())
    return pd.concat([a for a in out if len(a)] or [A.empty_alerts()], ignore_index=True)


def _whole(ids: list[str] | None, w) -> list[str] | None:
    """The changed birds to recompute over their whole track (None: every bird): all but the tail
    birds of the windows ``w`` (None when there are none) that did not fall back."""
    if ids is None or w is None:
        return ids
    return [i for i in ids if i not in w.since or i in w.fallback]


def _site_stages(st: Store, cfg: NightlyConfig, upd, before: pd.DataFrame, tracked, stages,
                 counts) -> list[pd.DataFrame]:
    """Sites, coverage and exposure from the updated stops; alerts on the night's new stops.

    ``before`` are the previous night's tag summaries, ``tracked`` the birds per species.
    """
    from flyway.analysis.site_runner import run_coverage, run_exposure, run_sites
    from flyway.analysis.sites import SiteParams, assign_sites

    if upd.stops.empty:
        log.info("no stops in the store yet: sites, coverage and exposure skipped")
        return []
    params = SiteParams(eps_m=cfg.site_eps_km * 1000.0, buffer_m=cfg.site_buffer_km * 1000.0)
    with measure(stages, "sites"):
        sites = run_sites(st, params, tracked=tracked)
    counts["sites"] = len(sites)
    new_stops = _new_stops(upd.recomputed, before)
    out = []
    if cfg.protected_areas is not None:
        with measure(stages, "coverage"):
            cov = run_coverage(st, cfg.protected_areas)
        site_of = pd.Series(assign_sites(upd.stops, params).to_numpy(), index=upd.stops[S.STOP_ID].to_numpy())
        out.append(A.unprotected_stops(new_stops, site_of, pd.DataFrame(cov.sites), cfg.alerts))
    if cfg.infrastructure:
        with measure(stages, "exposure"):
            exp = run_exposure(st, [str(p) for p in cfg.infrastructure])
        out.append(A.near_infrastructure(new_stops, exp.stop_exposure, cfg.alerts))
    return out


def _new_stops(recomputed: pd.DataFrame, tags: pd.DataFrame) -> pd.DataFrame:
    """Stops that reach past the individual's last fix of the previous night (or all of a new bird)."""
    if recomputed.empty:
        return recomputed
    before = tags.set_index(S.INDIVIDUAL_ID)["last_time"] if len(tags) else pd.Series(dtype=object)
    prev = pd.to_datetime(recomputed[S.INDIVIDUAL_ID].map(before), utc=True)
    end = pd.to_datetime(recomputed[S.END_TIME], utc=True)
    return recomputed[(prev.isna() | (end > prev)).to_numpy()]


def _tag_alerts(st: Store, cfg: NightlyConfig, ids: list[str] | None, state: NightlyState, now,
                nothing_new: bool, tail=None) -> pd.DataFrame:
    """Tag summaries and the alerts on them; ``tail`` = (windows, window fixes) of the tail birds."""
    from flyway.analysis.params import load_species_config
    from flyway.analysis.runner import group_individuals, individuals
    from flyway.tail import whole_bounds
    from flyway.tail_tables import tail_tags

    out = []
    before = state.tags
    if not nothing_new:
        cols = [S.INDIVIDUAL_ID, S.SPECIES, S.TIMESTAMP, S.LON, S.LAT, S.QC_FLAGS]
        species_cfg = load_species_config(cfg.species_config)
        summaries = []

        def alerts_of(fixes: pd.DataFrame, tags: pd.DataFrame, fresh: pd.DataFrame | None = None) -> None:
            windows = {sp: species_cfg.seasons(sp).window_md("breeding_window") for sp in tags[S.SPECIES].unique()}
            out.append(A.possible_mortality(fixes, cfg.alerts, windows))
            out.append(A.qc_spikes(before, tags, cfg.alerts))
            out.append(A.country_alerts(fixes if fresh is None else fresh, before, state.countries))
            summaries.append(tags)

        whole = ids
        if tail is not None:
            w, fixes_w = tail
            tags, need_whole = tail_tags(w, fixes_w, before, cfg.alerts)
            if len(tags):
                mine = fixes_w[fixes_w[S.INDIVIDUAL_ID].isin(tags[S.INDIVIDUAL_ID])]
                since = pd.to_datetime(mine[S.INDIVIDUAL_ID].map(w.since), utc=True)
                alerts_of(mine, tags, mine[(mine[S.TIMESTAMP] > since).to_numpy()])
            done = set(tags[S.INDIVIDUAL_ID])
            whole = [i for i in ids if i not in done]
        snap = st.snapshot()
        opts = cfg.stop_options()
        for group in group_individuals(individuals(st, only=whole)):  # memory bounded by the group size
            fixes = st.scan_fixes(individuals=group, columns=cols, snapshot=snap).to_pandas()
            alerts_of(fixes, A.tag_summaries(fixes))
            state.gap_bounds.update(whole_bounds(fixes, opts))
        tags = pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame(columns=TAG_COLUMNS)
        keep = before[~before[S.INDIVIDUAL_ID].isin(tags[S.INDIVIDUAL_ID])] if len(before) else before
        state.tags = pd.concat([t for t in (keep, tags) if len(t)] or [tags], ignore_index=True)
    if len(state.tags):
        ref = now if now is not None else pd.to_datetime(state.tags["last_time"], utc=True).max()
        out.append(A.silent_tags(state.tags, ref, cfg.alerts))
    return pd.concat([a for a in out if len(a)] or [A.empty_alerts()], ignore_index=True)


# ----------------------------------------------------------------------------------- dry run
def _dry_run(st: Store, inbox: Path, cfg: NightlyConfig) -> NightlyResult:
    """What a run would do: files to ingest or just move, and the individuals to recompute."""
    from flyway.errors import InputError
    from flyway.ingest.sources import open_sources

    known = st.committed_hashes() if st.exists() else set()
    files = []
    for f in settled_files(inbox, cfg.settle_s):
        try:
            hashes = [s.sha256 for s in open_sources(f.path)]
            action = "move to processed/ (already ingested)" if set(hashes) <= known else "ingest"
        except InputError as exc:
            action = f"ingest (will be rejected: {exc})"
        files.append({"name": f.name, "size_bytes": f.size, "action": action})
    record: dict[str, Any] = {"run_id": None, "dry_run": True, "store": str(st.path), "inbox": str(inbox),
                              "files": files, "parameters": cfg.as_record()}
    if st.exists() and st.committed_batches():
        work = plan(st, read_state(st), params_key(cfg.analysis_params()))
        record["individuals_to_recompute"] = "all" if work.individuals is None else work.individuals
    for f in files:
        log.info("dry run: %s: %s", f["name"], f["action"])
    return NightlyResult(record)


class _CallableModule(types.ModuleType):
    """``flyway.nightly`` is this module and the function (``flyway.nightly(store, inbox)``)."""

    def __call__(self, *args, **kwargs) -> NightlyResult:
        return nightly(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
