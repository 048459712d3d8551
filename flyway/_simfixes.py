"""Vectorised fix generation of the simulator: times, positions, GPS noise, imperfections.

Every function works on the fixes of all birds at once (one array per
attribute, sorted by bird then time). A fix finds its schedule segment by a
single ``searchsorted`` over keys ``bird * span + time``; positions, noise and
planted errors are then pure array arithmetic. Distances are spherical
(haversine / great circles on the mean-radius sphere).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flyway._simroutes import EARTH_RADIUS_M, bearing_deg, destination, from_xyz, slerp, to_xyz

HOUR_S = 3600
# QC's default species speed maximum (DESIGN.md, QC flags). A planted speed outlier is
# displaced 2-4 times this speed times the fix interval, so that both speeds into and
# out of it exceed the maximum whatever the duty cycle (1-4 h): hundreds of km.
OUTLIER_REFERENCE_SPEED_MS = 40.0
OUTLIER_SPEED_FACTOR = (2.0, 4.0)
UERE_M = 4.0  # GPS range error: horizontal error sd per axis = UERE * hdop (5-20 m at hdop 1-3)
ROOST_SD_M = 25.0  # night fixes scatter this much around the roost
NIGHT_HOURS = (18.0, 6.0)  # local solar time at roost
TIME_TO_FIX_S = 90  # a fix is timestamped 0-90 s after its scheduled time
LOW_SAT_HDOP = (6.0, 20.0)  # planted poor fixes: 3 satellites and hdop above QC's 5
LOW_SAT_COUNT = 3
STATION_DISTANCE_M = (2_000.0, 8_000.0)  # field station (tag on before / after deployment)


def fix_times(intervals_s: np.ndarray, t_start: int, t_end: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Scheduled fix times of every bird (duty cycle ``intervals_s[bird]``).

    Each tag starts at a random quarter hour within its first interval and
    stamps each fix 0-90 s after its schedule (time to fix).

    Returns
    -------
    bird, t : numpy.ndarray
        int64 bird index and epoch seconds, sorted by bird then time.
    """
    n_birds = len(intervals_s)
    first = t_start + rng.integers(0, intervals_s // 900, size=n_birds) * 900
    counts = np.maximum((t_end - TIME_TO_FIX_S - first) // intervals_s + 1, 0)
    bird = np.repeat(np.arange(n_birds), counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    k = np.arange(counts.sum()) - np.repeat(starts, counts)
    t = first[bird] + k * intervals_s[bird] + rng.integers(0, TIME_TO_FIX_S + 1, size=len(k))
    return bird, t


def gap_windows(first: np.ndarray, last: np.ndarray, per_year: float, days: tuple[float, float],
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Silent periods of each tag: Poisson(``per_year`` per year) gaps of ``days`` length.

    Gaps lie inside each bird's first and last fix, never overlap and are
    shorter than half the bird's track (a gap drawn longer is dropped). Returns
    ``bird, start, end`` (int64 arrays, epoch seconds), sorted by bird then start.
    """
    out_b, out_0, out_1 = [], [], []
    for b, (lo, hi) in enumerate(zip(first, last)):
        n = rng.poisson(per_year * (hi - lo) / (365.25 * 86_400))
        length = (rng.uniform(*days, size=n) * 86_400).astype(np.int64)
        length = length[length < (hi - lo) // 2]  # a gap never silences most of a short track
        n = len(length)
        start = np.sort(lo + (rng.uniform(size=n) * np.maximum(hi - lo - length, 0)).astype(np.int64))
        end = start + length
        keep = np.ones(n, bool)
        keep[1:] = start[1:] >= np.maximum.accumulate(end)[:-1]
        out_b.append(np.full(keep.sum(), b))
        out_0.append(start[keep])
        out_1.append(end[keep])
    cat = (lambda xs: np.concatenate(xs).astype(np.int64) if xs else np.zeros(0, np.int64))
    return cat(out_b), cat(out_0), cat(out_1)


def in_windows(bird: np.ndarray, t: np.ndarray, w_bird: np.ndarray, w_start: np.ndarray,
               w_end: np.ndarray, span: float) -> np.ndarray:
    """True where (bird, t) falls in a window [start, end) of the same bird."""
    if not len(w_bird):
        return np.zeros(len(t), bool)
    key = bird * span + t
    w_key = w_bird * span + w_start
    i = np.searchsorted(w_key, key, side="right") - 1
    ok = i >= 0
    i = np.maximum(i, 0)
    return ok & (w_bird[i] == bird) & (t < w_end[i])


def locate(seg: dict[str, np.ndarray], bird: np.ndarray, t: np.ndarray, span: float,
           base: float) -> np.ndarray:
    """Index of the schedule segment each fix falls in (segments sorted by bird, t0)."""
    seg_key = seg["bird"] * span + (seg["t0"] - base)
    return np.searchsorted(seg_key, bird * span + (t - base), side="right") - 1


@dataclass(frozen=True)
class Track:
    """Attributes of the fixes (one array each, aligned)."""

    lon: np.ndarray
    lat: np.ndarray
    altitude: np.ndarray
    ground_speed: np.ndarray
    heading: np.ndarray
    hdop: np.ndarray
    satellites: np.ndarray


def observed_positions(seg: dict[str, np.ndarray], s: np.ndarray, t: np.ndarray, low_sat: np.ndarray,
                       rng: np.random.Generator) -> Track:
    """Fixes as a tag records them: the bird's position plus GPS error.

    In flight the bird moves along the segment's great circle at its ground
    speed. At a stop it is at its roost (``ROOST_SD_M`` scatter) at night and
    anywhere in a disc of the segment's radius by day (local solar time).
    Horizontal error has sd ``UERE_M * hdop`` per axis; fixes in ``low_sat``
    (bool mask) have 3 satellites and hdop 6-20.
    """
    n = len(t)
    moving = seg["moving"][s]
    lon = seg["lon0"][s]  # stop centre; replaced below for flight fixes
    lat = seg["lat0"][s]
    alt = seg["ground"][s]
    speed = np.abs(rng.standard_normal(n, dtype=np.float32)) * np.float32(0.3)  # walking at a stop
    heading = rng.random(n, dtype=np.float32) * np.float32(360.0)

    m = np.flatnonzero(moving)
    sm = s[m]
    frac = (t[m] - seg["t0"][sm]) / (seg["t1"][sm] - seg["t0"][sm])
    a = to_xyz(seg["lon0"][sm], seg["lat0"][sm])
    b = to_xyz(seg["lon1"][sm], seg["lat1"][sm])
    lon[m], lat[m] = from_xyz(slerp(a, b, np.clip(frac, 0.0, 1.0)))
    heading[m] = (bearing_deg(lon[m], lat[m], seg["lon1"][sm], seg["lat1"][sm])
                  + rng.normal(0.0, 5.0, size=len(m))) % 360.0
    speed[m] = seg["speed"][sm] * (1.0 + rng.normal(0.0, 0.05, size=len(m)))
    alt[m] = seg["size"][sm] + rng.normal(0.0, 30.0, size=len(m))

    # Offsets from the stop centre (zero in flight): roost by night, day range by day.
    hour = ((t + lon * 240.0) % 86_400) * (1 / 3600.0)
    night = (hour >= NIGHT_HOURS[0]) | (hour < NIGHT_HOURS[1])
    radius = np.where(moving, 0.0, seg["size"][s]).astype(np.float32)
    radius *= np.sqrt(rng.random(n, dtype=np.float32))
    theta = rng.random(n, dtype=np.float32) * np.float32(2 * np.pi)
    roost = np.where(moving, 0.0, ROOST_SD_M).astype(np.float32)
    dx = np.where(night, rng.standard_normal(n, dtype=np.float32) * roost, radius * np.cos(theta))
    dy = np.where(night, rng.standard_normal(n, dtype=np.float32) * roost, radius * np.sin(theta))

    z = rng.standard_normal(n, dtype=np.float32)
    hdop = np.clip(np.exp(np.float32(np.log(1.1)) + np.float32(0.35) * z), 0.5, 4.5)  # median 1.1
    z = rng.standard_normal(n, dtype=np.float32)
    sats = np.clip(np.rint(13.0 - 2.0 * hdop + np.float32(1.5) * z), 4, 16).astype(np.int16)
    hdop[low_sat] = rng.uniform(*LOW_SAT_HDOP, size=int(low_sat.sum()))
    sats[low_sat] = LOW_SAT_COUNT
    sd = (UERE_M * hdop).astype(np.float32)
    dx += rng.standard_normal(n, dtype=np.float32) * sd
    dy += rng.standard_normal(n, dtype=np.float32) * sd
    alt = alt + rng.standard_normal(n, dtype=np.float32) * (1.5 * sd)
    lon, lat = offset_m(lon, lat, dx, dy)
    return Track(lon, lat, alt, speed, heading, hdop, sats)


def offset_m(lon, lat, dx, dy):
    """Shift points by small east/north offsets in metres (local tangent plane)."""
    dlat = dy * (180.0 / np.pi / EARTH_RADIUS_M)
    coslat = np.cos(np.radians(lat).astype(np.float32))
    dlon = dx * (180.0 / np.pi / EARTH_RADIUS_M) / coslat
    return lon + dlon, lat + dlat


def displace_outliers(track: Track, idx: np.ndarray, interval_s: np.ndarray,
                      rng: np.random.Generator) -> Track:
    """Move the fixes ``idx`` far enough in a random direction to be speed outliers."""
    lon, lat = track.lon.copy(), track.lat.copy()
    dist = rng.uniform(*OUTLIER_SPEED_FACTOR, size=len(idx)) * OUTLIER_REFERENCE_SPEED_MS * interval_s
    lon[idx], lat[idx] = destination(lon[idx], lat[idx], rng.uniform(0, 360, size=len(idx)), dist)
    return Track(lon, lat, track.altitude, track.ground_speed, track.heading, track.hdop, track.satellites)


def pick(candidates: np.ndarray, rate: float, rng: np.random.Generator, spaced: bool = False) -> np.ndarray:
    """A random, sorted subset of ``candidates`` (each kept with probability ``rate``).

    ``spaced=True`` drops picks next to another pick, so that no two planted
    outliers are consecutive fixes.
    """
    k = int(rng.binomial(len(candidates), rate)) if len(candidates) else 0
    idx = np.sort(candidates[rng.choice(len(candidates), size=k, replace=False)]) if k else candidates[:0]
    if spaced and len(idx) > 1:
        keep = np.ones(len(idx), bool)
        keep[1:] = np.diff(idx) > 1
        idx = idx[keep]
    return idx


def place_at_station(track: Track, idx: np.ndarray, anchor: np.ndarray, rng: np.random.Generator) -> Track:
    """Fixes of a tag lying at a field station 2-8 km from the bird's position at ``anchor``.

    ``idx`` and ``anchor`` are aligned: each fix in ``idx`` is placed at the
    station of its anchor fix (the first or last fix taken on the bird).
    """
    lon, lat = track.lon.copy(), track.lat.copy()
    speed = track.ground_speed.copy()
    anchors, inverse = np.unique(anchor, return_inverse=True)
    st_lon, st_lat = destination(track.lon[anchors], track.lat[anchors], rng.uniform(0, 360, len(anchors)),
                                 rng.uniform(*STATION_DISTANCE_M, size=len(anchors)))
    sd = UERE_M * track.hdop[idx]
    lon[idx], lat[idx] = offset_m(st_lon[inverse], st_lat[inverse],
                                  rng.normal(size=len(idx)) * sd, rng.normal(size=len(idx)) * sd)
    speed[idx] = 0.0
    return Track(lon, lat, track.altitude, speed, track.heading, track.hdop, track.satellites)
