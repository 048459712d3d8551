"""What changed since the last nightly run, and the stops of only those individuals.

The nightly state (``STORE/_nightly/state.json``) lists the committed ledger
batches the derived tables reflect, a fingerprint of the parameters they
were computed with, and per-tag summaries for the alerts. A batch committed
since then — by the nightly ingest, a manual ``flyway ingest``, or a run
killed before it finished — names part files, whose folders name the
individuals to recompute. The state is written last, so a crash anywhere
leaves it behind the tables and the next run simply recomputes those
individuals again (recomputing is idempotent).

Why no look-back window: stop detection, QC (speed between neighbours,
duplicate timestamps) and the gap threshold (a multiple of the median
sampling interval) are all computed per individual over its whole track.
Recomputing a changed individual from its first fix therefore gives exactly
the rows a full recompute gives — a stop spanning two nights stays one stop
and an open stop is extended, by construction — and the individuals without
new fixes keep rows a full run would reproduce unchanged. A window starting
at an earlier stop would be cheaper for birds tracked for years, but the
median interval and the season labels depend on the whole track, so a
window could only approximate the full run.
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
    return NightlyState(set(raw.get("batches", [])), raw.get("params_key"), tags, raw.get("countries", {}))


def write_state(store: Store, state: NightlyState) -> None:
    tags = state.tags.copy()
    tags["last_time"] = pd.to_datetime(tags["last_time"], utc=True).map(lambda t: t.isoformat())
    data = {"batches": sorted(state.batches), "params_key": state.params_key,
            "tags": json.loads(tags.to_json(orient="records")), "countries": state.countries}
    atomic_write_bytes(state_path(store), json.dumps(data, indent=1).encode())


def params_key(params: dict[str, Any]) -> str:
    """A fingerprint of the parameters the derived tables depend on."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Plan:
    """Individuals to recompute (``None``: all) and the batches that plan covers."""

    individuals: list[str] | None
    batches: frozenset[str]

    @property
    def nothing(self) -> bool:
        return self.individuals is not None and not self.individuals


def plan(store: Store, state: NightlyState, key: str) -> Plan:
    """Which individuals received fixes (or rewritten flags) in batches the state does not reflect."""
    led = store.read_ledger()
    led = led.filter(pc.equal(led.column("status"), STATUS_COMMITTED))
    committed = frozenset(led.column("batch_id").to_pylist())
    if state.empty or state.params_key != key:
        why = "no earlier nightly state" if state.empty else "parameters changed"
        log.info("recomputing every individual (%s)", why)
        return Plan(None, committed)
    new = committed - state.batches
    folders: set[Path] = set()
    for batch, parts in zip(led.column("batch_id").to_pylist(), led.column("part_files").to_pylist()):
        if batch in new:
            folders.update((store.path / p).parent for p in parts or [])
    return Plan(sorted(_individual_of(f) for f in folders if _individual_of(f) is not None), committed)


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


def update_stops(store: Store, individuals: list[str] | None, stop_options: dict[str, Any],
                 client: Any = None) -> StopsUpdate:
    """Recompute the stops of ``individuals`` (all when None) and write the merged stops table.

    The rows of every other individual are kept as stored; the result is
    sorted as :func:`flyway.analysis.runner.run_stops` sorts it, so it equals
    a full recompute row for row.
    """
    from flyway.analysis.runner import run_stops
    from flyway.analysis.stops import stop_params, stops_table

    new = run_stops(store, individuals_only=individuals, write=False, client=client, **stop_options)
    # (stops_table cannot convert run_stops' empty frame: its geometry column is float)
    new_table = stops_table(new) if len(new) else S.STOPS.empty()
    old = read_optional(_stops_file(store))
    old = S.STOPS.conform(old.select(S.STOPS.names)) if old is not None else S.STOPS.empty()
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
