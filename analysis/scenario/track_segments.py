"""Flight segments from GPS tracks: the first stage of exposure from the tracks (issue 9 item 4).

A *segment* joins two consecutive fixes of one individual (sorted by time).
It counts towards the time the bird was tracked when the fixes are at most
``max_gap_h`` apart, and it is a *flight* when, in addition, not both ends lie
inside a stop of the bird (birds standing at a roost or foraging site are
not flying) and the bird covered at least ``min_flight_speed_ms`` on average.

Kernels take plain arrays (seconds since 1970 UTC, degrees, metres) and are
vectorised over all fixes of a chunk of whole individuals.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from flyway import schema as S
from flyway.analysis.params import StopParams
from flyway.errors import ConfigError
from flyway.geo import haversine_m

__all__ = ["TrackParams", "FixArrays", "fix_arrays", "stationary_mask", "segment_table", "solar_elevation_deg",
           "month_index", "SUNRISE_ELEVATION_DEG"]

# the Sun's centre at -0.833 deg (refraction + semi-diameter) = sunrise / sunset, as in Band's day length
SUNRISE_ELEVATION_DEG = -0.8333
_KEY_SHIFT = np.int64(2 ** 33)  # seconds per individual block of the stop-interval keys (272 years)
_KEY_EPOCH_S = -2_208_988_800  # 1900-01-01 UTC: keys stay positive for fixes from 1900 to 2172


@dataclass(frozen=True)
class TrackParams:
    """Parameters of exposure from tracks.

    Attributes
    ----------
    max_gap_h
        Consecutive fixes further apart than this are not joined: the bird's
        path in between is unknown (default 6 h).
    min_flight_speed_ms
        A segment slower than this on average (distance / time) is a bird on
        the ground moving between fixes (walking, foraging, GPS scatter), not
        a flight (default 1 m/s; cranes and spoonbills fly at 10-20 m/s).
    ground_radius_km
        Stationary fixes (inside stops) within this distance of a facility
        give the local ground level: their median GPS altitude (default 10 km).
    min_ground_fixes
        Fewer stationary fixes with an altitude than this near a facility: no
        ground level, heights fall back to the species table (default 10).
    min_height_samples
        Fewer in-flight passages with a height than this for a facility and
        species: the rotor-height (wire-height) share falls back to the
        species table (default 5).
    vertical_error_m
        Standard deviation of the GPS altitude error (m). The probability of
        being inside the rotor or wire band is ``Φ((top − h)/σ) − Φ((low − h)/σ)``.
        Default 15 m, typical of GPS tags on large birds (reference note §B2
        leaves σ_z to the tag; set it from the tag maker or a calibration).
    far_km
        A facility further than this from every tracked fix is an error
        (coordinates swapped or mistyped), default 50 km.
    """

    max_gap_h: float = 6.0
    min_flight_speed_ms: float = 1.0
    ground_radius_km: float = 10.0
    min_ground_fixes: int = 10
    min_height_samples: int = 5
    vertical_error_m: float = 15.0
    far_km: float = 50.0

    def __post_init__(self) -> None:
        for name in ("max_gap_h", "ground_radius_km", "far_km"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"{name} = {v!r}: expected a positive number")
        for name in ("min_flight_speed_ms", "vertical_error_m"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v >= 0 and math.isfinite(v)):
                raise ConfigError(f"{name} = {v!r}: expected a number >= 0")
        for name in ("min_ground_fixes", "min_height_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} = {v!r}: expected a whole number >= 1")


@dataclass(frozen=True)
class FixArrays:
    """Clean fixes of whole individuals, sorted by (individual, time).

    ``individual`` holds integer codes (an index into the caller's table of
    individuals), ``time_s`` seconds since 1970 UTC, ``altitude_m`` NaN where
    unknown, ``stationary`` True for fixes inside a stop of their bird.
    """

    individual: np.ndarray
    time_s: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    altitude_m: np.ndarray
    stationary: np.ndarray

    def __len__(self) -> int:
        return int(self.individual.size)


def _seconds(values) -> np.ndarray:
    """Seconds since 1970 UTC (float); NaN for missing times."""
    ts = pd.to_datetime(pd.Series(values), utc=True)
    out = ts.dt.tz_localize(None).to_numpy("datetime64[us]").astype(np.int64) / 1e6
    return np.where(ts.isna().to_numpy(), np.nan, out)


def stationary_mask(individual, time_s, stop_individual, stop_start_s, stop_end_s) -> np.ndarray:
    """True for fixes that fall inside a stop ``[start, end]`` of the same individual.

    Vectorised: one key per (individual, second) and a binary search among
    the stops' starts; overlapping stops are handled by a running maximum of
    their ends.
    """
    if len(stop_individual) == 0 or len(individual) == 0:
        return np.zeros(len(individual), bool)
    key = np.asarray(individual, np.int64) * _KEY_SHIFT + (np.floor(time_s) - _KEY_EPOCH_S).astype(np.int64)
    s_ind = np.asarray(stop_individual, np.int64) * _KEY_SHIFT
    start = s_ind + (np.floor(stop_start_s) - _KEY_EPOCH_S).astype(np.int64)
    end = s_ind + (np.ceil(stop_end_s) - _KEY_EPOCH_S).astype(np.int64)
    order = np.argsort(start, kind="stable")
    start, end = start[order], np.maximum.accumulate(end[order])
    pos = np.searchsorted(start, key, side="right") - 1
    return (pos >= 0) & (key <= end[np.maximum(pos, 0)])


def fix_arrays(fixes: pd.DataFrame, stops: pd.DataFrame | None, codes: pd.Index) -> FixArrays:
    """Arrays of the clean fixes of ``fixes`` (schema columns) for the exposure kernels.

    Fixes with a QC flag the stops stage ignores are dropped (flags mark, they
    never delete; the stop detector leaves them out the same way), as are
    fixes without a position or time and repeated timestamps of one bird.

    Parameters
    ----------
    fixes
        ``individual_id``, ``timestamp``, ``lon``, ``lat``; ``altitude_m`` and
        ``qc_flags`` when present.
    stops
        The stops table (``individual_id``, ``start_time``, ``end_time``) or None.
    codes
        Index of individual ids; a fix's code is its id's position.
    """
    ids = fixes[S.INDIVIDUAL_ID].astype(str).to_numpy()
    ind = codes.get_indexer(ids).astype(np.int64)
    t = _seconds(fixes[S.TIMESTAMP])
    lon = pd.to_numeric(fixes[S.LON], errors="coerce").to_numpy(float)
    lat = pd.to_numeric(fixes[S.LAT], errors="coerce").to_numpy(float)
    alt = (pd.to_numeric(fixes[S.ALTITUDE_M], errors="coerce").to_numpy(float) if S.ALTITUDE_M in fixes.columns
           else np.full(len(fixes), np.nan))
    ok = (ind >= 0) & np.isfinite(t) & np.isfinite(lon) & np.isfinite(lat)
    if S.QC_FLAGS in fixes.columns:
        flags = fixes[S.QC_FLAGS].fillna(0).to_numpy().astype(np.uint32)
        ok &= (flags & np.uint32(StopParams().ignore_flags)) == 0
    ind, t, lon, lat, alt = ind[ok], t[ok], lon[ok], lat[ok], alt[ok]
    order = np.lexsort((t, ind))
    ind, t, lon, lat, alt = ind[order], t[order], lon[order], lat[order], alt[order]
    keep = np.ones(ind.size, bool)
    keep[1:] = (ind[1:] != ind[:-1]) | (t[1:] != t[:-1])
    ind, t, lon, lat, alt = ind[keep], t[keep], lon[keep], lat[keep], alt[keep]
    if stops is not None and len(stops):
        s_ind = codes.get_indexer(stops[S.INDIVIDUAL_ID].astype(str).to_numpy())
        mine = s_ind >= 0
        stationary = stationary_mask(ind, t, s_ind[mine], _seconds(stops[S.START_TIME])[mine],
                                     _seconds(stops[S.END_TIME])[mine])
    else:
        stationary = np.zeros(ind.size, bool)
    return FixArrays(ind, t, lon, lat, alt, stationary)


def segment_table(fx: FixArrays, params: TrackParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segments between consecutive fixes: which are tracked time, which are flights.

    Returns
    -------
    start : ndarray of int64
        Index of the first fix of every tracked segment (the second is ``start + 1``).
    dt_s : ndarray of float
        Duration of each tracked segment (s).
    flight : ndarray of bool
        The segment is a flight: not both ends stationary, and the bird moved
        at ``min_flight_speed_ms`` or faster on average.
    """
    n = len(fx)
    if n < 2:
        return np.empty(0, np.int64), np.empty(0), np.empty(0, bool)
    dt = np.diff(fx.time_s)
    tracked = (fx.individual[1:] == fx.individual[:-1]) & (dt > 0) & (dt <= params.max_gap_h * 3600.0)
    start = np.flatnonzero(tracked)
    dt = dt[start]
    dist = haversine_m(fx.lon[start], fx.lat[start], fx.lon[start + 1], fx.lat[start + 1])
    flight = ~(fx.stationary[start] & fx.stationary[start + 1]) & (dist >= params.min_flight_speed_ms * dt)
    flight &= dist > 0
    return start, dt, flight


def month_index(time_s) -> np.ndarray:
    """Calendar month (0 = January … 11 = December, UTC) of times in seconds since 1970."""
    t = (np.asarray(time_s, float) * 1e6).astype("datetime64[us]")
    return (t.astype("datetime64[M]").astype(np.int64) % 12).astype(np.int64)


def solar_elevation_deg(time_s, lon, lat) -> np.ndarray:
    """Elevation of the Sun's centre (degrees) at times (s since 1970 UTC) and places (degrees).

    Low-precision almanac formulas (Astronomical Almanac, "Sun" section;
    about 0.01 deg, 1950-2050), vectorised over arrays. Night is an
    elevation below :data:`SUNRISE_ELEVATION_DEG`.
    """
    d = np.asarray(time_s, float) / 86400.0 - 10957.5  # days since J2000.0 (2000-01-01 12:00 UTC)
    g = np.radians((357.529 + 0.98560028 * d) % 360)
    q = (280.459 + 0.98564736 * d) % 360
    ecl_lon = np.radians(q + 1.915 * np.sin(g) + 0.020 * np.sin(2 * g))
    eps = np.radians(23.439 - 0.00000036 * d)
    ra = np.arctan2(np.cos(eps) * np.sin(ecl_lon), np.cos(ecl_lon))
    dec = np.arcsin(np.sin(eps) * np.sin(ecl_lon))
    gmst_deg = (280.46061837 + 360.98564736629 * d) % 360
    hour_angle = np.radians(gmst_deg + np.asarray(lon, float)) - ra
    phi = np.radians(np.asarray(lat, float))
    sin_el = np.sin(phi) * np.sin(dec) + np.cos(phi) * np.cos(dec) * np.cos(hour_angle)
    return np.degrees(np.arcsin(np.clip(sin_el, -1.0, 1.0)))
