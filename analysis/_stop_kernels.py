"""Numba kernels of stop detection over sorted arrays with segment offsets.

All kernels take one flat set of arrays for every individual, sorted by
(individual, time), and an ``offsets`` array: segment ``s`` is
``[offsets[s], offsets[s + 1])``. A segment is one trajectory for movingpandas
compatibility, or one gap-free piece of a trajectory for the flyway method.
Times are int64 microseconds, coordinates degrees, distances metres.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from flyway.analysis._geodesy import (
    convex_hull_cw,
    geodesic_lt,
    haversine_m,
    hull_diagonal_lt,
    inside_hull,
)


@njit(cache=True)
def _dq_push_min(dq, head, tail, vals, k):
    while tail > head and vals[dq[tail - 1]] >= vals[k]:
        tail -= 1
    dq[tail] = k
    return tail + 1


@njit(cache=True)
def _dq_push_max(dq, head, tail, vals, k):
    while tail > head and vals[dq[tail - 1]] <= vals[k]:
        tail -= 1
    dq[tail] = k
    return tail + 1


@njit(cache=True)
def _dq_front(dq, head, tail, w0):
    while head < tail and dq[head] < w0:
        head += 1
    return head


@njit(cache=True)
def movingpandas_stops(t, x, y, offsets, max_diameter, min_duration):
    """movingpandas ``TrajectoryStopDetector._process_traj`` on every segment.

    Reproduces its state machine step by step: the window is trimmed to the
    last ``min_duration`` (keeping at least two fixes) while not stopped; it is
    stopped when the geodesic diagonal of its bounding box is below
    ``1.5 * max_diameter`` and the geodesic diagonal of its minimum-area rotated
    rectangle is below ``max_diameter``; a stop ends (at the fix before the
    first one that breaks it) when it lasted ``>= min_duration``; a stop still
    open at the end of the segment is kept if it lasted ``>= min_duration``.

    Instead of growing a geometry, the bounding box is kept with monotonic
    deques and, while stopped, the convex hull is updated only when a new fix
    falls outside it (a fix inside the hull changes neither box nor rectangle).

    Returns
    -------
    (starts, ends) : int64 arrays of first and last fix index of each stop.
    """
    n = t.shape[0]
    starts = np.empty(n, np.int64)
    ends = np.empty(n, np.int64)
    n_stops = 0
    dq_minx = np.empty(n + 1, np.int64)
    dq_maxx = np.empty(n + 1, np.int64)
    dq_miny = np.empty(n + 1, np.int64)
    dq_maxy = np.empty(n + 1, np.int64)
    hx = np.empty(n + 2)
    hy = np.empty(n + 2)
    bbox_limit = max_diameter * 1.5
    for s in range(offsets.shape[0] - 1):
        a = offsets[s]
        b = offsets[s + 1]
        if b - a < 2:
            continue
        w0 = a
        hd_minx = hd_maxx = hd_miny = hd_maxy = 0
        tl_minx = tl_maxx = tl_miny = tl_maxy = 0
        h = 0
        hull_ok = False  # hull (hx, hy, h) is that of the window [w0, k - 1]
        is_stopped = False
        prev_stopped = False
        for k in range(a, b):
            tl_minx = _dq_push_min(dq_minx, hd_minx, tl_minx, x, k)
            tl_maxx = _dq_push_max(dq_maxx, hd_maxx, tl_maxx, x, k)
            tl_miny = _dq_push_min(dq_miny, hd_miny, tl_miny, y, k)
            tl_maxy = _dq_push_max(dq_maxy, hd_maxy, tl_maxy, y, k)
            if not is_stopped:
                f = w0
                while k - f + 1 > 2 and t[k] - t[f] >= min_duration:
                    f += 1
                if f != w0:
                    w0 = f
                    hull_ok = False
            hd_minx = _dq_front(dq_minx, hd_minx, tl_minx, w0)
            hd_maxx = _dq_front(dq_maxx, hd_maxx, tl_maxx, w0)
            hd_miny = _dq_front(dq_miny, hd_miny, tl_miny, w0)
            hd_maxy = _dq_front(dq_maxy, hd_maxy, tl_maxy, w0)
            size = k - w0 + 1
            was_stopped = is_stopped
            is_stopped = False
            if size > 1:
                if was_stopped and hull_ok and h >= 3 and inside_hull(hx, hy, h, x[k], y[k]):
                    # same hull, same box, same rectangle: still stopped
                    is_stopped = True
                else:
                    hull_prev_ok = hull_ok
                    minx = x[dq_minx[hd_minx]]
                    maxx = x[dq_maxx[hd_maxx]]
                    miny = y[dq_miny[hd_miny]]
                    maxy = y[dq_maxy[hd_maxy]]
                    hull_ok = False
                    if geodesic_lt(miny, minx, maxy, maxx, bbox_limit):
                        if size == 2:
                            is_stopped = geodesic_lt(y[w0], x[w0], y[k], x[k], max_diameter)
                        else:
                            if was_stopped and hull_prev_ok and h >= 3:
                                # hull of (old hull vertices + new fix)
                                px = np.empty(h + 1)
                                py = np.empty(h + 1)
                                px[:h] = hx[:h]
                                py[:h] = hy[:h]
                                px[h] = x[k]
                                py[h] = y[k]
                            else:
                                px = x[w0:k + 1].copy()
                                py = y[w0:k + 1].copy()
                            h = convex_hull_cw(px, py, hx, hy)
                            hull_ok = True
                            is_stopped = hull_diagonal_lt(hx, hy, h, max_diameter)
            if not is_stopped and prev_stopped and size > 1:
                if t[k - 1] - t[w0] >= min_duration:
                    starts[n_stops] = w0
                    ends[n_stops] = k - 1
                    n_stops += 1
                    w0 = k
                    hull_ok = False
                    h = 0
            prev_stopped = is_stopped
        if is_stopped and t[b - 1] - t[w0] >= min_duration:
            starts[n_stops] = w0
            ends[n_stops] = b - 1
            n_stops += 1
    return starts[:n_stops], ends[:n_stops]


@njit(cache=True)
def stop_summaries(t, x, y, starts, ends):
    """Centroid (median lon/lat), radius (max haversine from it) and fix count of each stop.

    Longitudes are unwrapped around the stop's first fix before the median, so a
    stop astride the antimeridian gets a sensible centroid.
    """
    m = starts.shape[0]
    lon = np.empty(m)
    lat = np.empty(m)
    radius = np.empty(m)
    count = np.empty(m, np.int64)
    for i in range(m):
        a = starts[i]
        b = ends[i] + 1
        ref = x[a]
        xs = np.empty(b - a)
        for j in range(a, b):
            xs[j - a] = ((x[j] - ref + 180.0) % 360.0) - 180.0 + ref
        cx = np.median(xs)
        cy = np.median(y[a:b])
        r = 0.0
        for j in range(a, b):
            r = max(r, haversine_m(cx, cy, xs[j - a], y[j]))
        lon[i] = ((cx + 180.0) % 360.0) - 180.0
        lat[i] = cy
        radius[i] = r
        count[i] = b - a
    return lon, lat, radius, count


@njit(cache=True)
def merge_stops(t, x, y, seg_ind, starts, ends, merge_distance, merge_time):
    """Merge consecutive stops closer than a distance and a time.

    Two stops merge when they lie in the same segment (``seg_ind`` gives the
    segment code of each fix: one individual, or one gap-free piece), the second starts no later than
    ``merge_time`` after the first ends, and their median centres lie less than
    ``merge_distance`` metres apart (haversine). Chains merge transitively; the
    merged stop spans the first start to the last end.
    """
    m = starts.shape[0]
    out_s = np.empty(m, np.int64)
    out_e = np.empty(m, np.int64)
    if m == 0:
        return out_s, out_e
    lon, lat, _, _ = stop_summaries(t, x, y, starts, ends)
    k = 0
    out_s[0] = starts[0]
    out_e[0] = ends[0]
    last_lon = lon[0]
    last_lat = lat[0]
    for i in range(1, m):
        same_segment = seg_ind[starts[i]] == seg_ind[out_e[k]]
        close_t = t[starts[i]] - t[out_e[k]] <= merge_time
        close_d = haversine_m(last_lon, last_lat, lon[i], lat[i]) < merge_distance
        if same_segment and close_t and close_d:
            out_e[k] = ends[i]
            mlon, mlat, _, _ = stop_summaries(t, x, y, out_s[k:k + 1], out_e[k:k + 1])
            last_lon = mlon[0]
            last_lat = mlat[0]
        else:
            k += 1
            out_s[k] = starts[i]
            out_e[k] = ends[i]
            last_lon = lon[i]
            last_lat = lat[i]
    return out_s[:k + 1], out_e[:k + 1]


@njit(cache=True)
def gap_limits(t, ind_offsets, gap_factor, gap_min):
    """Gap threshold of every individual: ``max(gap_min, gap_factor * median dt)`` (ns)."""
    m = ind_offsets.shape[0] - 1
    out = np.empty(m)
    for s in range(m):
        a = ind_offsets[s]
        b = ind_offsets[s + 1]
        if b - a < 2:
            out[s] = float(gap_min)
        else:
            out[s] = max(float(gap_min), gap_factor * float(np.median(np.diff(t[a:b]))))
    return out


@njit(cache=True)
def gap_offsets(t, ind_offsets, limits):
    """Split each individual at gaps: ``dt > limits[individual]`` (see :func:`gap_limits`).

    Returns the offsets of the gap-free segments (every individual boundary is
    also a segment boundary).
    """
    n = t.shape[0]
    out = np.empty(n + 1, np.int64)
    m = 0
    for s in range(ind_offsets.shape[0] - 1):
        a = ind_offsets[s]
        b = ind_offsets[s + 1]
        out[m] = a
        m += 1
        limit = limits[s]
        for j in range(a + 1, b):
            if float(t[j] - t[j - 1]) > limit:
                out[m] = j
                m += 1
    out[m] = n
    return out[:m + 1]
