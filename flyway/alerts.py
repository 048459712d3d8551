"""What needs attention after a night's data: the alert rules, as pure functions over tables.

Every rule returns an alerts frame (columns ``flyway.schema.ALERT_FIELDS``
without ``run_id``) whose ``alert_id`` is a hash of what the alert is about
(the tag and the first fix of its silence, the stop id, the country ...), so
the same situation seen again on a later night — or by a run repeated after
a crash — has the same id and is raised once (:mod:`flyway.notify` keeps the
log and drops ids already in it).

Rules (parameters in :class:`AlertParams`):

* ``silent_tag`` — no fix for longer than ``silent_factor`` x the tag's
  usual fix interval (median of its last 50 intervals), and at least ``silent_min_h`` hours, before the
  reference time (``--now`` or the newest fix in the store);
* ``possible_mortality`` — the latest clean fixes all lie within
  ``mortality_radius_m`` (haversine) of the last one for longer than the
  species' ``mortality_h``, and the last fix is outside its breeding window;
* ``unprotected_stop`` — a new stop at a site whose ``protected_fraction``
  is below ``unprotected_below``;
* ``near_infrastructure`` — a new stop within ``infrastructure_km`` of an
  energy facility;
* ``new_country`` — an individual's clean fixes reach a country for the first
  time (the country where its track starts is not an alert);
* ``qc_spike`` — the share of flagged fixes among a tag's new fixes exceeds
  its earlier share by ``qc_spike_jump`` (and is at least twice it), with at
  least ``qc_spike_min_fixes`` new fixes;
* ``failed_file`` — an inbox file was rejected.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from flyway import schema as S
from flyway.errors import ConfigError
from flyway.geo import haversine_m

SILENT_TAG = "silent_tag"
POSSIBLE_MORTALITY = "possible_mortality"
UNPROTECTED_STOP = "unprotected_stop"
NEAR_INFRASTRUCTURE = "near_infrastructure"
NEW_COUNTRY = "new_country"
QC_SPIKE = "qc_spike"
FAILED_FILE = "failed_file"
#: the usual fix interval of a tag is the median of its last this many intervals
USUAL_INTERVALS = 50
ALERT_KINDS = (SILENT_TAG, POSSIBLE_MORTALITY, UNPROTECTED_STOP, NEAR_INFRASTRUCTURE, NEW_COUNTRY, QC_SPIKE,
               FAILED_FILE)
ALERT_COLUMNS = [c for c in S.ALERT_FIELDS if c != S.RUN_ID]


@dataclass(frozen=True)
class AlertParams:
    """Thresholds of the alert rules (see the module docstring)."""

    silent_factor: float = 3.0
    silent_min_h: float = 24.0
    mortality_radius_m: float = 50.0
    mortality_h: float = 24.0
    mortality_h_by_species: Mapping[str, float] = field(default_factory=dict)
    unprotected_below: float = 0.5
    infrastructure_km: float = 5.0
    qc_spike_min_fixes: int = 20
    qc_spike_jump: float = 0.2

    def __post_init__(self) -> None:
        for name in ("silent_factor", "silent_min_h", "mortality_radius_m", "mortality_h", "infrastructure_km"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"alerts.{name} = {v!r} is not allowed; expected a number > 0")
        for name in ("unprotected_below", "qc_spike_jump"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ConfigError(f"alerts.{name} = {v!r} is not allowed; expected a fraction in [0, 1]")
        if not isinstance(self.qc_spike_min_fixes, int) or self.qc_spike_min_fixes < 1:
            raise ConfigError(f"alerts.qc_spike_min_fixes = {self.qc_spike_min_fixes!r}; expected an integer >= 1")
        for sp, h in dict(self.mortality_h_by_species).items():
            if not isinstance(h, (int, float)) or not math.isfinite(h) or h <= 0:
                raise ConfigError(f"alerts.mortality_h_by_species[{sp!r}] = {h!r}; expected hours > 0")
        object.__setattr__(self, "mortality_h_by_species", dict(self.mortality_h_by_species))

    def mortality_hours(self, species: str) -> float:
        return float(self.mortality_h_by_species.get(species, self.mortality_h))


def alert_id(kind: str, key: str) -> str:
    """The stable id of an alert: its kind and 16 hex digits of SHA-256 of what it is about."""
    return f"{kind}-{hashlib.sha256(f'{kind}|{key}'.encode()).hexdigest()[:16]}"


def empty_alerts() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in ALERT_COLUMNS})


def _alerts(kind: str, keys: Sequence[str], ind, species, time, lon, lat, messages: Sequence[str]) -> pd.DataFrame:
    if len(keys) == 0:
        return empty_alerts()
    t = pd.to_datetime(pd.Series(np.asarray(time)), utc=True)
    return pd.DataFrame({
        S.ALERT_ID: [alert_id(kind, k) for k in keys], S.ALERT_KIND: kind,
        S.INDIVIDUAL_ID: np.asarray(ind, dtype=object), S.SPECIES: np.asarray(species, dtype=object),
        S.TIME: t.dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(dtype=object),
        S.LON: np.asarray(lon, dtype=float), S.LAT: np.asarray(lat, dtype=float),
        S.ALERT_MESSAGE: list(messages),
    })[ALERT_COLUMNS]


def _groups(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start offsets of runs of equal ids (rows sorted by id) and the group of every row."""
    if len(ids) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.concatenate([[0], np.flatnonzero(ids[1:] != ids[:-1]) + 1])
    return starts, np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(ids))))


# ------------------------------------------------------------------------------------------ tags
def tag_summaries(fixes: pd.DataFrame) -> pd.DataFrame:
    """Per individual: fixes, flagged fixes, last fix, usual fix interval (s).

    ``fixes`` are sorted by individual and time (as the store returns them).
    The last position is that of the last clean fix (the last fix when none
    is clean). The usual interval is the median of the last
    :data:`USUAL_INTERVALS` intervals: the tag's current duty cycle, which
    tags change with season and battery.
    """
    cols = [S.INDIVIDUAL_ID, S.SPECIES, "n_fixes", "n_flagged", "last_time", S.LON, S.LAT, "median_interval_s"]
    if len(fixes) == 0:
        return pd.DataFrame(columns=cols)
    ids = fixes[S.INDIVIDUAL_ID].to_numpy(dtype=object)
    starts, grp = _groups(ids)
    ends = np.append(starts[1:], len(ids))
    t = fixes[S.TIMESTAMP].to_numpy(dtype="datetime64[us]").astype(np.int64)
    flagged = fixes[S.QC_FLAGS].to_numpy() != 0
    row = np.arange(len(ids))
    last_clean = np.maximum.reduceat(np.where(flagged, -1, row), starts)
    last_pos = np.where(last_clean >= starts, last_clean, ends - 1)
    # median interval: sort the within-bird differences per bird, take the middle one(s)
    d = np.diff(t).astype(float)
    same = (grp[1:] == grp[:-1]) & (row[1:] >= ends[grp[1:]] - USUAL_INTERVALS)
    dg, dv = grp[1:][same], d[same]
    order = np.lexsort((dv, dg))
    dg, dv = dg[order], dv[order]
    counts = np.bincount(dg, minlength=len(starts))
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    lo = first + np.maximum(counts - 1, 0) // 2
    hi = first + counts // 2
    safe = counts > 0
    med = np.full(len(starts), np.nan)
    med[safe] = (dv[lo[safe]] + dv[np.minimum(hi[safe], len(dv) - 1)]) / 2e6
    return pd.DataFrame({
        S.INDIVIDUAL_ID: ids[starts], S.SPECIES: fixes[S.SPECIES].to_numpy(dtype=object)[starts],
        "n_fixes": ends - starts, "n_flagged": np.add.reduceat(flagged.astype(np.int64), starts),
        "last_time": pd.to_datetime(t[ends - 1], unit="us", utc=True),
        S.LON: fixes[S.LON].to_numpy(float)[last_pos], S.LAT: fixes[S.LAT].to_numpy(float)[last_pos],
        "median_interval_s": med,
    })[cols]


def silent_tags(tags: pd.DataFrame, reference_time: Any, params: AlertParams) -> pd.DataFrame:
    """``silent_tag`` alerts: tags quiet for longer than K x their usual interval (and the minimum)."""
    if len(tags) == 0:
        return empty_alerts()
    ref = pd.Timestamp(reference_time)
    ref = ref.tz_localize("UTC") if ref.tzinfo is None else ref.tz_convert("UTC")
    last = pd.to_datetime(tags["last_time"], utc=True)
    quiet_h = ((ref - last).dt.total_seconds() / 3600.0).to_numpy()
    usual_h = tags["median_interval_s"].astype(float).fillna(0).to_numpy() / 3600.0
    limit_h = np.maximum(params.silent_factor * usual_h, params.silent_min_h)
    hit = quiet_h > limit_h
    t = tags[hit]
    msgs = [f"tag of {i} ({s}) silent for {q:.0f} h since {lt:%Y-%m-%d %H:%M} UTC (usual interval {u:.1f} h)"
            for i, s, q, lt, u in zip(t[S.INDIVIDUAL_ID], t[S.SPECIES], quiet_h[hit], last[hit], usual_h[hit])]
    keys = [f"{i}|{lt.isoformat()}" for i, lt in zip(t[S.INDIVIDUAL_ID], last[hit])]
    return _alerts(SILENT_TAG, keys, t[S.INDIVIDUAL_ID], t[S.SPECIES], last[hit], t[S.LON], t[S.LAT], msgs)


def possible_mortality(fixes: pd.DataFrame, params: AlertParams, breeding_windows: Mapping[str, Any]) -> pd.DataFrame:
    """``possible_mortality`` alerts from clean fixes sorted by individual and time.

    ``breeding_windows`` maps species to ``((month, day), (month, day))``
    (:meth:`SeasonParams.window_md`); a species missing from it has none.
    """
    from flyway.analysis.seasons import in_window

    clean = fixes[fixes[S.QC_FLAGS].to_numpy() == 0] if len(fixes) else fixes
    if len(clean) == 0:
        return empty_alerts()
    ids = clean[S.INDIVIDUAL_ID].to_numpy(dtype=object)
    starts, grp = _groups(ids)
    ends = np.append(starts[1:], len(ids))
    lon, lat = clean[S.LON].to_numpy(float), clean[S.LAT].to_numpy(float)
    t = clean[S.TIMESTAMP].to_numpy(dtype="datetime64[us]")
    last = ends - 1
    far = haversine_m(lon, lat, lon[last][grp], lat[last][grp]) > params.mortality_radius_m
    last_far = np.maximum.reduceat(np.where(far, np.arange(len(ids)), -1), starts)
    first_still = np.where(last_far >= starts, last_far + 1, starts)
    hours = (t[last] - t[first_still]).astype("timedelta64[s]").astype(float) / 3600.0
    species = clean[S.SPECIES].to_numpy(dtype=object)[starts]
    limit = np.array([params.mortality_hours(s) for s in species])
    last_ts = pd.to_datetime(t[last]).tz_localize("UTC")
    md = (last_ts.month * 100 + last_ts.day).to_numpy()
    breeding = np.array([bool(in_window(md[k:k + 1], breeding_windows[s])[0]) if s in breeding_windows else False
                         for k, s in enumerate(species)], dtype=bool)
    hit = (hours > limit) & ~breeding
    since = pd.to_datetime(t[first_still][hit]).tz_localize("UTC")
    msgs = [f"{i} ({s}) has not moved more than {params.mortality_radius_m:g} m for {h:.0f} h "
            f"(since {a:%Y-%m-%d %H:%M} UTC): possible mortality or tag loss"
            for i, s, h, a in zip(ids[starts][hit], species[hit], hours[hit], since)]
    keys = [f"{i}|{a.isoformat()}" for i, a in zip(ids[starts][hit], since)]
    return _alerts(POSSIBLE_MORTALITY, keys, ids[starts][hit], species[hit], last_ts[hit], lon[last][hit],
                   lat[last][hit], msgs)


def country_entries(fixes: pd.DataFrame, countries: np.ndarray) -> pd.DataFrame:
    """First clean fix of every (individual, country): individual, species, country, time, lon, lat.

    ``countries`` is the ISO3 code of every row of ``fixes`` (None outside
    every country); rows are sorted by individual and time.
    """
    keep = (fixes[S.QC_FLAGS].to_numpy() == 0) & pd.notna(countries)
    fx = fixes[keep]
    frame = pd.DataFrame({S.INDIVIDUAL_ID: fx[S.INDIVIDUAL_ID].to_numpy(dtype=object),
                          S.SPECIES: fx[S.SPECIES].to_numpy(dtype=object), S.COUNTRY: np.asarray(countries)[keep],
                          S.TIME: pd.to_datetime(fx[S.TIMESTAMP], utc=True).reset_index(drop=True),
                          S.LON: fx[S.LON].to_numpy(float), S.LAT: fx[S.LAT].to_numpy(float)})
    return frame.drop_duplicates([S.INDIVIDUAL_ID, S.COUNTRY], keep="first").reset_index(drop=True)


def new_countries(entries: pd.DataFrame, seen: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """``new_country`` alerts: countries an individual reached that ``seen`` does not list for it.

    An individual unknown to ``seen`` starts in the country of its first entry
    (no alert for that one).
    """
    if len(entries) == 0:
        return empty_alerts()
    first = ~entries.duplicated(S.INDIVIDUAL_ID, keep="first").to_numpy()
    known = np.array([ind in seen for ind in entries[S.INDIVIDUAL_ID]], dtype=bool)
    already = np.array([c in seen.get(i, ()) for i, c in zip(entries[S.INDIVIDUAL_ID], entries[S.COUNTRY])],
                       dtype=bool)
    e = entries[~already & (known | ~first)]
    time = pd.to_datetime(e[S.TIME], utc=True)
    msgs = [f"{i} ({s}) entered {c} for the first time on {t:%Y-%m-%d %H:%M} UTC"
            for i, s, c, t in zip(e[S.INDIVIDUAL_ID], e[S.SPECIES], e[S.COUNTRY], time)]
    keys = [f"{i}|{c}" for i, c in zip(e[S.INDIVIDUAL_ID], e[S.COUNTRY])]
    return _alerts(NEW_COUNTRY, keys, e[S.INDIVIDUAL_ID], e[S.SPECIES], time, e[S.LON], e[S.LAT], msgs)


def country_alerts(fixes: pd.DataFrame, before: pd.DataFrame, seen: dict[str, list[str]]) -> pd.DataFrame:
    """``new_country`` alerts from the fixes after each bird's previous last fix; ``seen`` is updated.

    ``before`` holds the tag summaries of the previous night. Countries are
    looked up once per 0.01 degree cell (about 1 km), not per fix.
    """
    from flyway.analysis.countries import country_of

    prev = fixes[S.INDIVIDUAL_ID].map(before.set_index(S.INDIVIDUAL_ID)["last_time"]) if len(before) else None
    fresh = fixes if prev is None else fixes[(prev.isna() | (fixes[S.TIMESTAMP] > pd.to_datetime(prev, utc=True)))
                                             .to_numpy()]
    fresh = fresh[fresh[S.QC_FLAGS].to_numpy() == 0]
    if fresh.empty:
        return empty_alerts()
    cells = np.round(np.column_stack([fresh[S.LON].to_numpy(float), fresh[S.LAT].to_numpy(float)]) * 100)
    _, first, inverse = np.unique(cells, axis=0, return_index=True, return_inverse=True)
    iso = country_of(fresh[S.LON].to_numpy(float)[first], fresh[S.LAT].to_numpy(float)[first])
    entries = country_entries(fresh, iso[inverse.ravel()])
    alerts = new_countries(entries, seen)
    for ind, iso3 in zip(entries[S.INDIVIDUAL_ID], entries[S.COUNTRY]):
        known = seen.setdefault(ind, [])
        if iso3 not in known:
            known.append(iso3)
    return alerts


def qc_spikes(before: pd.DataFrame, after: pd.DataFrame, params: AlertParams) -> pd.DataFrame:
    """``qc_spike`` alerts: tag summaries (:func:`tag_summaries`) before and after the night's data."""
    if len(after) == 0 or len(before) == 0:
        return empty_alerts()
    m = after.merge(before[[S.INDIVIDUAL_ID, "n_fixes", "n_flagged"]], on=S.INDIVIDUAL_ID, suffixes=("", "_before"))
    new_n = (m["n_fixes"] - m["n_fixes_before"]).to_numpy()
    new_flagged = (m["n_flagged"] - m["n_flagged_before"]).to_numpy()
    old_share = (m["n_flagged_before"] / m["n_fixes_before"].clip(lower=1)).to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        new_share = np.where(new_n > 0, new_flagged / np.maximum(new_n, 1), 0.0)
    hit = (new_n >= params.qc_spike_min_fixes) & (new_share >= old_share + params.qc_spike_jump) & \
          (new_share >= 2 * old_share)
    e = m[hit]
    msgs = [f"{i} ({s}): {ns:.0%} of {n} new fixes flagged by QC, against {os_:.0%} before"
            for i, s, ns, n, os_ in zip(e[S.INDIVIDUAL_ID], e[S.SPECIES], new_share[hit], new_n[hit], old_share[hit])]
    keys = [f"{i}|{n}" for i, n in zip(e[S.INDIVIDUAL_ID], e["n_fixes"])]
    return _alerts(QC_SPIKE, keys, e[S.INDIVIDUAL_ID], e[S.SPECIES], e["last_time"], e[S.LON], e[S.LAT], msgs)


# ---------------------------------------------------------------------------------------- stops
def unprotected_stops(new_stops: pd.DataFrame, site_of_stop: pd.Series, sites: pd.DataFrame,
                      params: AlertParams) -> pd.DataFrame:
    """``unprotected_stop`` alerts: new stops at sites with ``protected_fraction`` below the threshold.

    ``site_of_stop`` maps stop ids to site ids (missing for stops in no site).
    """
    if len(new_stops) == 0 or S.PROTECTED_FRACTION not in sites:
        return empty_alerts()
    site = new_stops[S.STOP_ID].map(site_of_stop)
    frac = site.map(sites.set_index(S.SITE_ID)[S.PROTECTED_FRACTION]).astype(float)
    hit = (frac < params.unprotected_below).to_numpy()
    e = new_stops[hit]
    msgs = [f"{i} ({s}) stopped at site {site_id}, {f:.0%} protected, from {a:%Y-%m-%d} ({k})"
            for i, s, site_id, f, a, k in zip(e[S.INDIVIDUAL_ID], e[S.SPECIES], site[hit], frac[hit],
                                              pd.to_datetime(e[S.START_TIME], utc=True), e[S.KIND])]
    return _alerts(UNPROTECTED_STOP, list(e[S.STOP_ID]), e[S.INDIVIDUAL_ID], e[S.SPECIES], e[S.START_TIME],
                   e[S.LON], e[S.LAT], msgs)


def near_infrastructure(new_stops: pd.DataFrame, stop_exposure: pd.DataFrame | None,
                        params: AlertParams) -> pd.DataFrame:
    """``near_infrastructure`` alerts: new stops within ``infrastructure_km`` of a facility."""
    if len(new_stops) == 0 or stop_exposure is None or len(stop_exposure) == 0:
        return empty_alerts()
    x = stop_exposure.sort_values(S.DISTANCE_KM, kind="mergesort").drop_duplicates(S.STOP_ID)
    x = x[x[S.DISTANCE_KM] <= params.infrastructure_km].set_index(S.STOP_ID)
    e = new_stops[new_stops[S.STOP_ID].isin(x.index)]
    near = x.loc[e[S.STOP_ID]]
    names = near[S.FACILITY_NAME] if S.FACILITY_NAME in near else pd.Series("", index=near.index)
    msgs = [f"{i} ({s}) stopped {d:.1f} km from {n or f}, from {a:%Y-%m-%d}"
            for i, s, d, n, f, a in zip(e[S.INDIVIDUAL_ID], e[S.SPECIES], near[S.DISTANCE_KM], names.fillna(""),
                                        near.get(S.FACILITY_ID, names), pd.to_datetime(e[S.START_TIME], utc=True))]
    return _alerts(NEAR_INFRASTRUCTURE, list(e[S.STOP_ID]), e[S.INDIVIDUAL_ID], e[S.SPECIES], e[S.START_TIME],
                   e[S.LON], e[S.LAT], msgs)


def failed_files(failures: Sequence[tuple[str, str, str]], time: Any) -> pd.DataFrame:
    """``failed_file`` alerts from ``(file name, sha256 or "", reason)`` of rejected inbox files."""
    keys = [f"{name}|{sha}" for name, sha, _ in failures]
    msgs = [f"{name} rejected: {reason}" for name, _, reason in failures]
    n = len(failures)
    return _alerts(FAILED_FILE, keys, [None] * n, [None] * n, [time] * n, [np.nan] * n, [np.nan] * n, msgs)
