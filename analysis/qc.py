"""QC flags of fixes: a uint32 bitmask per fix (``flyway.schema.QCFlag``), never deletions.

Recomputed here on every run: impossible coordinates, null island, duplicate
timestamp, speed above the species maximum, HDOP above the maximum, too few
satellites, timestamp in the future. Kept from the input (set by the ingest):
outside deployment, Movebank outlier, sentinel value, unknown time-zone offset.

Speeds are haversine distance over time between consecutive usable fixes of an
individual. A fix is a speed outlier when the speed from the last accepted fix
to it *and* from it to the next usable fix both exceed the maximum (a spike);
at the first fix, when the speed to the next exceeds it while the next fix is
consistent with the one after; at the last, when the speed from the last
accepted fix exceeds it.
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Collection

import numpy as np
import pandas as pd
from numba import njit

from flyway import schema as S
from flyway.analysis._geodesy import haversine_m
from flyway.analysis.params import SpeciesConfig, load_species_config

log = logging.getLogger(__name__)

F = S.QCFlag
#: flags the ingest sets and QC keeps
KEPT_FLAGS = int(F.OUTSIDE_DEPLOYMENT | F.MOVEBANK_OUTLIER | F.SENTINEL_VALUE | F.UNKNOWN_TIMEZONE_OFFSET)
#: fixes with these flags take no part in the speed test
_NOT_FOR_SPEED = int(F.IMPOSSIBLE_COORDINATES | F.NULL_ISLAND | F.DUPLICATE_TIMESTAMP
                     | F.FUTURE_TIMESTAMP) | KEPT_FLAGS


@njit(cache=True)
def _speed_outliers(t_ns, lon, lat, offsets, usable, max_speed, first_accepted):
    """Boolean speed-outlier mask over arrays sorted by (individual, time).

    ``first_accepted[s]``: segment ``s`` starts at a fix already accepted (the
    end of a track whose earlier part is not in the arrays), which becomes
    the last accepted fix without being tested again.
    """
    n = t_ns.shape[0]
    out = np.zeros(n, np.bool_)
    idx = np.empty(n, np.int64)
    for s in range(offsets.shape[0] - 1):
        m = 0
        for j in range(offsets[s], offsets[s + 1]):
            if usable[j]:
                idx[m] = j
                m += 1
        if m < 2:
            continue
        vmax = max_speed[idx[0]]
        last = -1
        q0 = 0
        if first_accepted[s]:
            last = idx[0]
            q0 = 1
        for q in range(q0, m):
            i = idx[q]
            if q + 1 < m:
                nxt = idx[q + 1]
                dt = (t_ns[nxt] - t_ns[i]) * 1e-9
                v_next = haversine_m(lon[i], lat[i], lon[nxt], lat[nxt]) / dt if dt > 0 else 0.0
            else:
                v_next = -1.0
            if last < 0:
                if v_next > vmax and q + 2 < m:
                    a, b = idx[q + 1], idx[q + 2]
                    dt2 = (t_ns[b] - t_ns[a]) * 1e-9
                    v2 = haversine_m(lon[a], lat[a], lon[b], lat[b]) / dt2 if dt2 > 0 else 0.0
                    if v2 <= vmax:
                        out[i] = True
                        continue
                last = i
                continue
            dt = (t_ns[i] - t_ns[last]) * 1e-9
            v_prev = haversine_m(lon[last], lat[last], lon[i], lat[i]) / dt if dt > 0 else 0.0
            if v_prev > vmax and (v_next > vmax or v_next < 0):
                out[i] = True
            else:
                last = i
    return out


def compute_flags(individual: np.ndarray, t_ns: np.ndarray, lon: np.ndarray, lat: np.ndarray,
                  hdop: np.ndarray, satellites: np.ndarray, previous: np.ndarray, max_speed_ms: np.ndarray,
                  max_hdop: np.ndarray, min_satellites: np.ndarray, now_ns: int,
                  accepted_first: Collection[Any] = ()) -> np.ndarray:
    """QC bitmask of every fix (the pure core; arrays in any row order).

    Parameters
    ----------
    individual : ndarray
        Individual identifier of each fix (any hashable dtype).
    t_ns : int64 ndarray
        UTC time in nanoseconds since the epoch.
    lon, lat : float64 ndarray
        Degrees; NaN when missing.
    hdop, satellites : float64 ndarray
        NaN when unknown (never flagged then).
    previous : uint32 ndarray
        Flags set so far; only the ingest's flags (``KEPT_FLAGS``) survive.
    max_speed_ms, max_hdop, min_satellites : float64 ndarray
        Per-fix thresholds (from the fix's species).
    now_ns : int
        Fixes later than this are in the future.
    accepted_first : collection of individual ids, optional
        Individuals whose arrays hold only the end of their track, starting
        at a fix the speed test accepted before: it is taken as accepted
        (so the flags equal those of the whole track; see
        :mod:`flyway.tail`).

    Returns
    -------
    uint32 ndarray
    """
    n = len(t_ns)
    flags = (np.asarray(previous, dtype=np.uint32) & np.uint32(KEPT_FLAGS)).copy()
    finite = np.isfinite(lon) & np.isfinite(lat)
    bad = ~finite | (np.abs(lat) > 90) | (np.abs(lon) > 180)
    flags[bad] |= np.uint32(F.IMPOSSIBLE_COORDINATES)
    flags[finite & (np.abs(lon) < 1e-7) & (np.abs(lat) < 1e-7)] |= np.uint32(F.NULL_ISLAND)
    with np.errstate(invalid="ignore"):
        flags[hdop > max_hdop] |= np.uint32(F.HDOP)
        flags[satellites < min_satellites] |= np.uint32(F.FEW_SATELLITES)
    flags[t_ns > now_ns] |= np.uint32(F.FUTURE_TIMESTAMP)

    # duplicates: keep the lowest HDOP, then the first row, of each (individual, time)
    ind_code, uniques = pd.factorize(pd.Series(individual), sort=True)
    hdop_key = np.where(np.isfinite(hdop), hdop, np.inf)
    order = np.lexsort((np.arange(n), hdop_key, t_ns, ind_code))
    ic, tt = ind_code[order], t_ns[order]
    dup_sorted = np.zeros(n, bool)
    dup_sorted[1:] = (ic[1:] == ic[:-1]) & (tt[1:] == tt[:-1])
    flags[order[dup_sorted]] |= np.uint32(F.DUPLICATE_TIMESTAMP)

    usable = ((flags[order] & np.uint32(_NOT_FOR_SPEED)) == 0) & ~bad[order]
    change = np.flatnonzero(ic[1:] != ic[:-1]) + 1
    offsets = np.concatenate([[0], change, [n]]).astype(np.int64) if n else np.zeros(1, np.int64)
    first_ok = np.isin(np.asarray(uniques, dtype=object), np.asarray(list(accepted_first), dtype=object))
    speed = _speed_outliers(tt.astype(np.int64), np.nan_to_num(lon[order]), np.nan_to_num(lat[order]),
                            offsets, usable, np.asarray(max_speed_ms, float)[order], first_ok)
    flags[order[speed]] |= np.uint32(F.SPEED)
    return flags


def _column(fixes: pd.DataFrame, name: str) -> np.ndarray:
    if name not in fixes.columns:
        return np.full(len(fixes), np.nan)
    return pd.to_numeric(fixes[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def qc_flags(fixes: pd.DataFrame, now: pd.Timestamp | str | None = None,
             species_config: SpeciesConfig | None = None, accepted_first: Collection[Any] = ()) -> np.ndarray:
    """QC bitmask for every row of ``fixes`` (aligned with its rows).

    Parameters
    ----------
    fixes : pandas.DataFrame
        ``individual_id``, ``timestamp``, ``lon``, ``lat``; ``hdop``,
        ``satellites``, ``species`` and ``qc_flags`` when present.
    now : Timestamp or str, optional
        Reference time for future timestamps (default: the current time).
    species_config : SpeciesConfig, optional
        Per-species thresholds (default: the shipped TOML).
    accepted_first : collection of individual ids, optional
        See :func:`compute_flags`.

    Returns
    -------
    numpy.ndarray of uint32
    """
    cfg = species_config or load_species_config()
    now_ts = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    if now_ts.tzinfo is None:
        now_ts = now_ts.tz_localize("UTC")
    species = (fixes[S.SPECIES] if S.SPECIES in fixes.columns else pd.Series("", index=fixes.index))
    species = species.fillna("").astype(str).to_numpy()
    n = len(fixes)
    vmax, hmax, smin = np.empty(n), np.empty(n), np.empty(n)
    for name in pd.unique(species):
        p = cfg.qc(name or None)
        sel = species == name
        vmax[sel], hmax[sel], smin[sel] = p.max_speed_ms, p.max_hdop, p.min_satellites
    t = pd.to_datetime(fixes[S.TIMESTAMP], utc=True)
    t_ns = t.dt.tz_localize(None).astype("datetime64[ns]").to_numpy().view(np.int64)
    previous = (fixes[S.QC_FLAGS].fillna(0).to_numpy().astype(np.uint32) if S.QC_FLAGS in fixes.columns
                else np.zeros(n, np.uint32))
    flags = compute_flags(fixes[S.INDIVIDUAL_ID].astype(str).to_numpy(), t_ns, _column(fixes, S.LON),
                          _column(fixes, S.LAT), _column(fixes, S.HDOP), _column(fixes, S.SATELLITES),
                          previous, vmax, hmax, smin, int(now_ts.value), accepted_first)
    log.info("QC: %d of %d fixes flagged", int((flags != 0).sum()), n)
    return flags


def flag_counts(flags: np.ndarray) -> dict[str, int]:
    """Number of fixes carrying each flag (lower-case names), plus ``clean``."""
    flags = np.asarray(flags, dtype=np.uint32)
    counts = Counter({f.name.lower(): int(((flags & np.uint32(f)) != 0).sum()) for f in F})
    counts["clean"] = int((flags == 0).sum())
    return dict(counts)
