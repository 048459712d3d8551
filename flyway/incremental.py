"""What changed since the last nightly run, and the stops of only those individuals.

The nightly state (``STORE/_nightly/state.json``) lists the committed ledger
batches the derived tables reflect, a fingerprint of the parameters they
were computed with, and per-tag summaries for the alerts. A batch committed
since then — by the nightly ingest, a manual ``flyway ingest``, or a run
killed before it finished — names part files, whose folders name the
individuals to recompute. The state is written last, so a crash anywhere
leaves it behind the tables and the next run simply recomputes those
individuals again (recomputing is idempotent).

Two ways to recompute a changed individual, both giving exactly the rows a
full recompute gives:

* from the end of its track (:mod:`flyway.tail`), when every new fix follows
  its previous newest one and only ingest batches touched it — the usual
  night: a window from its third-to-last stop, so a stop spanning two nights
  stays one stop and an open stop is extended, not duplicated;
* over its whole track otherwise (late or back-filled fixes, rewritten QC
  flags, a window that cannot prove its result exact, a new bird): stop
  detection, QC (speed between neighbours, duplicate timestamps) and the
  gap threshold (a multiple of the median sampling interval) are computed
  per individual, so recomputing it from its first fix gives the full run's
  rows by construction.

Individuals without new fixes keep rows a full run would reproduce unchanged.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from flyway import schema as S
from flyway.geoparquet import atomic_write_bytes, read_parquet
from flyway.store import INDIVIDUAL_KEY, PART_PREFIX, STATUS_COMMITTED, Store, read_optional, write_derived

log = logging.getLogger(__name__)

STATE_DIR = "_nightly"
STATE_FILE = "state.json"
TAG_COLUMNS = [S.INDIVIDUAL_ID, S.SPECIES, "n_fixes", "n_flagged", "last_time", S.LON, S.LAT, "median_interval_s"]


@dataclass
class NightlyState:
    """What the derived tables and the alert summaries reflect."""

    batches: set[str] = field(default_factory=set)
    params_key: str | None = None
    tags: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=TAG_COLUMNS))
    countries: dict[str, list[str]] = field(default_factory=dict)
    #: per bird, an upper bound (ns) of the median interval between its clean fixes (see flyway.tail)
    gap_bounds: dict[str, float] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.params_key is None


def state_path(store: Store) -> Path:
    return store.path / STATE_DIR / STATE_FILE


def read_state(store: Store) -> NightlyState:
    """The last committed nightly state (empty when there is none or it is unreadable)."""
    try:
        raw = json.loads(state_path(store).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return NightlyState()
    tags = pd.DataFrame(raw.get("tags", []), columns=TAG_COLUMNS)
    tags["last_time"] = pd.to_datetime(tags["last_time"], utc=True)
    bounds = {k: (float(v) if v is not None else float("nan")) for k, v in raw.get("gap_bounds", {}).items()}
    return NightlyState(set(raw.get("batches", [])), raw.get("params_key"), tags, raw.get("countries", {}), bounds)


def write_state(store: Store, state: NightlyState) -> None:
    tags = state.tags.copy()
    tags["last_time"] = pd.to_datetime(tags["last_time"], utc=True).map(lambda t: t.isoformat())
    data = {"batches": sorted(state.batches), "params_key": state.params_key,
            "tags": json.loads(tags.to_json(orient="records", double_precision=15)), "countries": state.countries,
            "gap_bounds": {k: (None if v != v else v) for k, v in sorted(state.gap_bounds.items())}}
    atomic_write_bytes(state_path(store), json.dumps(data, indent=1).encode())


def params_key(params: dict[str, Any]) -> str:
    """A fingerprint of the parameters the derived tables depend on."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Plan:
    """Individuals to recompute (``None``: all) and the batches that plan covers.

    ``tails`` maps the individuals whose new fixes all follow their previous
    newest fix (``since``) to that time: :mod:`flyway.tail` recomputes them
    from the end of their track. ``new_batches`` are the batches the state
    did not reflect.
    """

    individuals: list[str] | None
    batches: frozenset[str]
    tails: dict[str, pd.Timestamp] = field(default_factory=dict)
    new_batches: frozenset[str] = frozenset()

    @property
    def nothing(self) -> bool:
        return self.individuals is not None and not self.individuals


def plan(store: Store, state: NightlyState, key: str) -> Plan:
    """Which individuals received fixes (or rewritten flags) in batches the state does not reflect."""
    from flyway.geoparquet import read_metadata_many
    from flyway.store import part_facts

    led = store.read_ledger()
    led = led.filter(pc.equal(led.column("status"), STATUS_COMMITTED))
    committed = frozenset(led.column("batch_id").to_pylist())
    if state.empty or state.params_key != key:
        why = "no earlier nightly state" if state.empty else "parameters changed"
        log.info("recomputing every individual (%s)", why)
        return Plan(None, committed)
    new = committed - state.batches
    by_folder: dict[Path, list[tuple[Path, bool]]] = {}
    for batch, parts, replaces in zip(led.column("batch_id").to_pylist(), led.column("part_files").to_pylist(),
                                      led.column("replaces").to_pylist()):
        if batch in new:
            for p in parts or []:  # a rewrite (QC, compaction) may change old rows: never a tail
                by_folder.setdefault((store.path / p).parent, []).append((store.path / p, not replaces))
    replaced = store.snapshot()[1] if by_folder else set()
    live = [(folder, [(f, appended) for f, appended in parts if store.relative(f) not in replaced])
            for folder, parts in by_folder.items()]
    live = [(folder, parts) for folder, parts in live if parts]
    it = iter(read_metadata_many([f for _, parts in live for f, _ in parts]))
    since_of = dict(zip(state.tags[S.INDIVIDUAL_ID], pd.to_datetime(state.tags["last_time"], utc=True))) \
        if len(state.tags) else {}
    individuals, tails = set(), {}
    for folder, parts in live:
        facts = [part_facts(next(it)) for _ in parts]  # (species, individual, first time, last time)
        ind = next((f[1] for f in facts if f[1] is not None), None) or _individual_of(folder)
        if ind is None:
            continue
        individuals.add(ind)
        first = [f[2] for f in facts]
        since = since_of.get(ind)
        if since is not None and not pd.isna(since) and all(a for _, a in parts) and \
                all(t is not None and _utc(t) > since for t in first):
            tails[ind] = since
    for folder in by_folder:  # a folder whose new parts were all superseded since: recompute its bird
        if folder not in {f for f, _ in live}:
            ind = _individual_of(folder)
            if ind is not None:
                individuals.add(ind)
    return Plan(sorted(individuals), committed, tails, frozenset(new))


def _utc(value: str) -> pd.Timestamp:
    t = pd.Timestamp(value)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _individual_of(folder: Path) -> str | None:
    """The individual id of a fixes partition folder (from any of its part files)."""
    if not folder.name.startswith(f"{INDIVIDUAL_KEY}="):
        return None
    for part in sorted(folder.glob(f"{PART_PREFIX}*.parquet")):
        try:
            ids = read_parquet(part, columns=[S.INDIVIDUAL_ID]).column(S.INDIVIDUAL_ID)
        except (OSError, pa.ArrowInvalid):
            continue
        if len(ids):
            return ids[0].as_py()
    return None


@dataclass
class StopsUpdate:
    """The stops table after the update and how the recomputed individuals' stops changed."""

    stops: pd.DataFrame
    recomputed: pd.DataFrame
    added: int = 0
    changed: int = 0
    removed: int = 0


def _stops_file(store: Store) -> Path:
    return store.path / S.STOPS.name / f"{S.STOPS.name}.parquet"


def read_stored_stops(store: Store) -> pa.Table:
    """The stops table as stored (empty when there is none)."""
    old = read_optional(_stops_file(store))
    return S.STOPS.conform(old.select(S.STOPS.names)) if old is not None else S.STOPS.empty()


def update_stops(store: Store, individuals: list[str] | None, stop_options: dict[str, Any],
                 client: Any = None, tail: pd.DataFrame | None = None, tail_birds: list[str] = (),
                 old: pa.Table | None = None) -> StopsUpdate:
    """Recompute the stops of ``individuals`` (all when None) and write the merged stops table.

    ``tail`` holds every stop of further individuals, ``tail_birds``,
    computed already (:func:`flyway.tail.tail_stops`); ``old`` the stored table when read
    already. The rows of every other individual are kept as stored; the
    result is sorted as :func:`flyway.analysis.runner.run_stops` sorts it, so
    it equals a full recompute row for row.
    """
    from flyway.analysis.runner import run_stops
    from flyway.analysis.stops import stop_params, stops_table

    new = run_stops(store, individuals_only=individuals, write=False, client=client, **stop_options) \
        if individuals is None or individuals else S.STOPS.empty().to_pandas()
    if tail is not None and len(tail):
        new = pd.concat([x for x in (new, tail) if len(x)], ignore_index=True)
    if tail_birds and individuals is not None:
        individuals = sorted(set(individuals) | set(tail_birds))
    # (stops_table cannot convert run_stops' empty frame: its geometry column is float)
    new_table = stops_table(new) if len(new) else S.STOPS.empty()
    old = old if old is not None else read_stored_stops(store)
    if individuals is None:
        merged, before = new_table, old
    else:
        mine = pc.is_in(old.column(S.INDIVIDUAL_ID), pa.array(individuals, pa.string()))
        before = old.filter(mine)
        merged = pa.concat_tables([old.filter(pc.invert(mine)), new_table])
    merged = merged.sort_by([(S.INDIVIDUAL_ID, "ascending"), (S.START_TIME, "ascending")])
    options = dict(stop_options)
    params = stop_params(options.pop("method", "flyway"), options.pop("max_diameter", 2000.0),
                         options.pop("min_duration", "24h"), **options).as_metadata()
    with store.lock("stops"):
        write_derived(store, S.STOPS.name, merged, params=params, geometry_types=["Point"])
    added, changed, removed = _diff(before.to_pandas(), new)
    log.info("stops: %d individual(s) recomputed, %d added, %d changed, %d removed, %d in total",
             len(individuals) if individuals is not None else new[S.INDIVIDUAL_ID].nunique(), added, changed,
             removed, merged.num_rows)
    return StopsUpdate(merged.to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get), new, added, changed,
                       removed)


def _diff(before: pd.DataFrame, after: pd.DataFrame) -> tuple[int, int, int]:
    """Stops added, changed (same id, other end or fix count) and removed."""
    cols = [S.STOP_ID, S.END_TIME, S.N_FIXES, S.KIND]
    b = before[cols].set_index(S.STOP_ID)
    a = after[cols].set_index(S.STOP_ID)
    common = a.index.intersection(b.index)
    a_c = a.loc[common]
    b_c = b.loc[common]
    differs = (pd.to_datetime(a_c[S.END_TIME], utc=True) != pd.to_datetime(b_c[S.END_TIME], utc=True)) | \
        (a_c[S.N_FIXES].astype("int64") != b_c[S.N_FIXES].astype("int64")) | \
        (a_c[S.KIND].astype(str) != b_c[S.KIND].astype(str))
    return (int((~a.index.isin(b.index)).sum()), int(differs.sum()), int((~b.index.isin(a.index)).sum()))
