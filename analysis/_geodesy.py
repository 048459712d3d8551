"""Compiled geometry for stop detection: distances, convex hull, minimum-area rectangle.

Everything here is a numba kernel over plain floats/arrays in degrees (lon = x,
lat = y) and metres.

* :func:`haversine_m` -- great-circle distance on a sphere of radius 6,371,008.8 m
  (the IUGG mean radius); used for short hops (speeds, stop radii, merging).
* :func:`geodesic_m` -- WGS84 ellipsoidal distance by Vincenty's inverse formula.
  It agrees with Karney's algorithm (geographiclib, which geopy and hence
  movingpandas use) to well under a millimetre at stop scales.
  :func:`geodesic_lt` decides ``distance < threshold`` and, when the Vincenty
  value lies within a micrometre-per-metre band around the threshold, asks
  geopy itself (through ``numba.objmode``) so that the decision is the one
  movingpandas makes.
* :func:`mrr_diagonal_m` -- the minimum-area rotated rectangle of a point set,
  computed exactly as GEOS 3.12+ ``MinimumAreaRectangle`` does (convex hull, CW
  from the lowest-then-leftmost vertex, rotating calipers, first minimum wins,
  corners from ``Rectangle::createFromSidePts``), then the WGS84 length of the
  diagonal from corner 0 to corner 2, as movingpandas' ``mrr_diagonal`` measures.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, objmode

from flyway.geo import EARTH_RADIUS_M  # one radius for the kernels and the array helpers

_WGS84_A = 6378137.0
_WGS84_F = 1.0 / 298.257223563
_WGS84_B = _WGS84_A * (1.0 - _WGS84_F)
#: relative half-width of the band where geopy decides instead of Vincenty
EXACT_BAND = 1e-6


def _geopy_distance(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """geopy's geodesic distance in metres (what movingpandas uses); NaN without geopy."""
    try:
        from geopy.distance import distance
    except ImportError:  # pragma: no cover - geopy ships with movingpandas
        return math.nan
    return float(distance((lat1, lon1), (lat2, lon2)).meters)


@njit(cache=True)
def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres between two lon/lat points (spherical Earth)."""
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp * 0.5) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl * 0.5) ** 2
    return 2.0 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, a)))


@njit(cache=True)
def geodesic_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """WGS84 distance in metres by Vincenty's inverse formula (lat first, as geopy)."""
    if lat1 == lat2 and lon1 == lon2:
        return 0.0
    f = _WGS84_F
    L = math.radians(lon2 - lon1)
    U1 = math.atan((1.0 - f) * math.tan(math.radians(lat1)))
    U2 = math.atan((1.0 - f) * math.tan(math.radians(lat2)))
    sinU1, cosU1 = math.sin(U1), math.cos(U1)
    sinU2, cosU2 = math.sin(U2), math.cos(U2)
    lam = L
    sin_sigma = cos_sigma = sigma = cos2a = cos2sm = 0.0
    for _ in range(200):
        sin_lam, cos_lam = math.sin(lam), math.cos(lam)
        t1 = cosU2 * sin_lam
        t2 = cosU1 * sinU2 - sinU1 * cosU2 * cos_lam
        sin_sigma = math.sqrt(t1 * t1 + t2 * t2)
        if sin_sigma == 0.0:
            return 0.0
        cos_sigma = sinU1 * sinU2 + cosU1 * cosU2 * cos_lam
        sigma = math.atan2(sin_sigma, cos_sigma)
        sin_a = cosU1 * cosU2 * sin_lam / sin_sigma
        cos2a = 1.0 - sin_a * sin_a
        cos2sm = cos_sigma - 2.0 * sinU1 * sinU2 / cos2a if cos2a != 0.0 else 0.0
        C = f / 16.0 * cos2a * (4.0 + f * (4.0 - 3.0 * cos2a))
        lam_prev = lam
        lam = L + (1.0 - C) * f * sin_a * (
            sigma + C * sin_sigma * (cos2sm + C * cos_sigma * (-1.0 + 2.0 * cos2sm * cos2sm)))
        if abs(lam - lam_prev) < 1e-13:
            break
    u2 = cos2a * (_WGS84_A * _WGS84_A - _WGS84_B * _WGS84_B) / (_WGS84_B * _WGS84_B)
    A = 1.0 + u2 / 16384.0 * (4096.0 + u2 * (-768.0 + u2 * (320.0 - 175.0 * u2)))
    B = u2 / 1024.0 * (256.0 + u2 * (-128.0 + u2 * (74.0 - 47.0 * u2)))
    d_sigma = B * sin_sigma * (cos2sm + B / 4.0 * (
        cos_sigma * (-1.0 + 2.0 * cos2sm * cos2sm)
        - B / 6.0 * cos2sm * (-3.0 + 4.0 * sin_sigma * sin_sigma) * (-3.0 + 4.0 * cos2sm * cos2sm)))
    return _WGS84_B * A * (sigma - d_sigma)


@njit(cache=True)
def geodesic_lt(lat1: float, lon1: float, lat2: float, lon2: float, threshold: float) -> bool:
    """``geodesic distance < threshold`` decided as geopy would decide it."""
    d = geodesic_m(lat1, lon1, lat2, lon2)
    if abs(d - threshold) <= EXACT_BAND * threshold:
        with objmode(exact="float64"):
            exact = _geopy_distance(lat1, lon1, lat2, lon2)
        if exact == exact:
            d = exact
    return d < threshold


# --------------------------------------------------------------------------
# Convex hull (GEOS ConvexHull conventions) and minimum-area rectangle
# --------------------------------------------------------------------------
@njit(cache=True)
def _cross(ax: float, ay: float, bx: float, by: float, cx: float, cy: float) -> float:
    """Twice the signed area of (a, b, c): > 0 counter-clockwise (c left of a->b)."""
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)


@njit(cache=True)
def convex_hull_cw(xs: np.ndarray, ys: np.ndarray, out_x: np.ndarray, out_y: np.ndarray) -> int:
    """Convex hull of the points, clockwise from the lowest-then-leftmost vertex.

    Collinear and repeated points are left out, as GEOS ``ConvexHull`` does.
    Writes the ``h`` vertices (not closed) to ``out_x``/``out_y`` (capacity
    ``len(xs) + 1``) and returns ``h`` (1 = a point, 2 = a line).
    """
    n = xs.shape[0]
    order = np.argsort(ys, kind="mergesort")
    order = order[np.argsort(xs[order], kind="mergesort")]
    # Andrew's monotone chain, counter-clockwise, strict turns only
    hx = np.empty(2 * n + 1)
    hy = np.empty(2 * n + 1)
    k = 0
    for j in range(n):
        i = order[j]
        while k >= 2 and _cross(hx[k - 2], hy[k - 2], hx[k - 1], hy[k - 1], xs[i], ys[i]) <= 0.0:
            k -= 1
        hx[k] = xs[i]
        hy[k] = ys[i]
        k += 1
    lower = k + 1
    for j in range(n - 2, -1, -1):
        i = order[j]
        while k >= lower and _cross(hx[k - 2], hy[k - 2], hx[k - 1], hy[k - 1], xs[i], ys[i]) <= 0.0:
            k -= 1
        hx[k] = xs[i]
        hy[k] = ys[i]
        k += 1
    h = k - 1 if k > 1 else k  # last point repeats the first
    # drop exact duplicates (all points equal -> one vertex)
    m = 0
    for j in range(h):
        if m == 0 or hx[j] != out_x[m - 1] or hy[j] != out_y[m - 1]:
            out_x[m] = hx[j]
            out_y[m] = hy[j]
            m += 1
    if m > 1 and out_x[m - 1] == out_x[0] and out_y[m - 1] == out_y[0]:
        m -= 1
    if m <= 2:
        return m
    # rotate to start at the lowest-then-leftmost vertex, then reverse to clockwise
    s = 0
    for j in range(1, m):
        if out_y[j] < out_y[s] or (out_y[j] == out_y[s] and out_x[j] < out_x[s]):
            s = j
    tx = np.empty(m)
    ty = np.empty(m)
    for j in range(m):
        src = (s - j) % m
        tx[j] = out_x[src]
        ty[j] = out_y[src]
    out_x[:m] = tx
    out_y[:m] = ty
    return m


@njit(cache=True)
def _dist_perp_oriented(ax, ay, bx, by, px, py):
    """GEOS LineSegment::distancePerpendicularOriented (positive = left of a->b)."""
    if ax == bx and ay == by:
        return math.sqrt((px - ax) ** 2 + (py - ay) ** 2)
    len2 = (bx - ax) * (bx - ax) + (by - ay) * (by - ay)
    s = ((ay - py) * (bx - ax) - (ax - px) * (by - ay)) / len2
    dist = abs(s) * math.sqrt(len2)
    if _cross(ax, ay, bx, by, px, py) < 0.0:
        return -dist
    return dist


@njit(cache=True)
def _further_or_equal(d1, d2, orient):
    if orient == 0:
        return abs(d1) >= abs(d2)
    if orient == 1:
        return d1 >= d2
    return d1 <= d2


@njit(cache=True)
def _furthest(rx, ry, h, ax, ay, bx, by, start, orient):
    """GEOS MinimumAreaRectangle::findFurthestVertex over a closed ring of h vertices."""
    d = _dist_perp_oriented(ax, ay, bx, by, rx[start], ry[start])
    if orient == 0:
        d = abs(d)
    max_d = d
    next_d = d
    max_i = start
    next_i = start
    while _further_or_equal(next_d, max_d, orient):
        max_d = next_d
        max_i = next_i
        next_i = max_i + 1
        if next_i >= h:
            next_i = 0
        if next_i == start:
            break
        next_d = _dist_perp_oriented(ax, ay, bx, by, rx[next_i], ry[next_i])
        if orient == 0:
            next_d = abs(next_d)
    return max_i


@njit(cache=True)
def _line_intersection(p1x, p1y, p2x, p2y, q1x, q1y, q2x, q2y):
    """GEOS Intersection::intersection of two infinite lines (conditioned by the envelope mid)."""
    min_x = max(min(p1x, p2x), min(q1x, q2x))
    max_x = min(max(p1x, p2x), max(q1x, q2x))
    min_y = max(min(p1y, p2y), min(q1y, q2y))
    max_y = min(max(p1y, p2y), max(q1y, q2y))
    midx = (min_x + max_x) / 2.0
    midy = (min_y + max_y) / 2.0
    p1x -= midx
    p1y -= midy
    p2x -= midx
    p2y -= midy
    q1x -= midx
    q1y -= midy
    q2x -= midx
    q2y -= midy
    px = p1y - p2y
    py = p2x - p1x
    pw = p1x * p2y - p2x * p1y
    qx = q1y - q2y
    qy = q2x - q1x
    qw = q1x * q2y - q2x * q1y
    x = py * qw - qy * pw
    y = qx * pw - px * qw
    w = px * qy - qx * py
    return x / w + midx, y / w + midy


@njit(cache=True)
def _std_line(a, b, c):
    """GEOS Rectangle::createLineForStandardEquation: two points of a*x + b*y = c."""
    if abs(b) > abs(a):
        return 0.0, c / b, 1.0, c / b - a / b
    return c / a, 0.0, c / a - b / a, 1.0


@njit(cache=True)
def _rect_diagonal(brx, bry, blx, bly, opx, opy, lx, ly, rx_, ry_):
    """Corners 0 and 2 of GEOS Rectangle::createFromSidePts."""
    dx = blx - brx
    dy = bly - bry
    base_c = dx * bry - dy * brx
    opp_c = dx * opy - dy * opx
    left_c = -dy * ly - dx * lx
    right_c = -dy * ry_ - dx * rx_
    b0x, b0y, b1x, b1y = _std_line(-dy, dx, base_c)
    o0x, o0y, o1x, o1y = _std_line(-dy, dx, opp_c)
    l0x, l0y, l1x, l1y = _std_line(-dx, -dy, left_c)
    r0x, r0y, r1x, r1y = _std_line(-dx, -dy, right_c)
    if rx_ == brx and ry_ == bry:
        c0x, c0y = brx, bry
    else:
        c0x, c0y = _line_intersection(b0x, b0y, b1x, b1y, r0x, r0y, r1x, r1y)
    if lx == opx and ly == opy:
        c2x, c2y = opx, opy
    else:
        c2x, c2y = _line_intersection(o0x, o0y, o1x, o1y, l0x, l0y, l1x, l1y)
    return c0x, c0y, c2x, c2y


@njit(cache=True)
def mrr_corners(rx: np.ndarray, ry: np.ndarray, h: int):
    """Corners 0 and 2 of the minimum-area rectangle of a CW hull of h >= 3 vertices."""
    min_area = np.inf
    bi = di = li = ri = 0
    diam = 1
    left = 1
    right = 0
    for i in range(h):
        j = i + 1 if i + 1 < h else 0
        ax, ay, bx, by = rx[i], ry[i], rx[j], ry[j]
        diam = _furthest(rx, ry, h, ax, ay, bx, by, diam, 0)
        px, py = rx[diam], ry[diam]
        if (px == ax and py == ay) or (px == bx and py == by):
            qx, qy = px, py
        else:
            len2 = (bx - ax) * (bx - ax) + (by - ay) * (by - ay)
            r = ((px - ax) * (bx - ax) + (py - ay) * (by - ay)) / len2
            qx, qy = ax + r * (bx - ax), ay + r * (by - ay)
        left = _furthest(rx, ry, h, qx, qy, px, py, left, 1)
        if i == 0:
            right = diam
        right = _furthest(rx, ry, h, qx, qy, px, py, right, -1)
        width = (abs(_dist_perp_oriented(qx, qy, px, py, rx[left], ry[left]))
                 + abs(_dist_perp_oriented(qx, qy, px, py, rx[right], ry[right])))
        area = math.sqrt((px - qx) * (px - qx) + (py - qy) * (py - qy)) * width
        if area < min_area:
            min_area = area
            bi, di, li, ri = i, diam, left, right
    bj = bi + 1 if bi + 1 < h else 0
    return _rect_diagonal(rx[bi], ry[bi], rx[bj], ry[bj], rx[di], ry[di],
                          rx[li], ry[li], rx[ri], ry[ri])


@njit(cache=True)
def hull_diagonal_lt(hx: np.ndarray, hy: np.ndarray, h: int, threshold: float) -> bool:
    """movingpandas' ``mrr_diagonal(MultiPoint) < threshold`` for a hull of h vertices."""
    if h <= 1:
        return 0.0 < threshold
    if h == 2:
        return geodesic_lt(hy[0], hx[0], hy[1], hx[1], threshold)
    c0x, c0y, c2x, c2y = mrr_corners(hx, hy, h)
    return geodesic_lt(c0y, c0x, c2y, c2x, threshold)


@njit(cache=True)
def inside_hull(hx: np.ndarray, hy: np.ndarray, h: int, px: float, py: float) -> bool:
    """True when (px, py) lies inside or on a clockwise convex hull of h >= 3 vertices."""
    for i in range(h):
        j = i + 1 if i + 1 < h else 0
        if _cross(hx[i], hy[i], hx[j], hy[j], px, py) > 0.0:
            return False
    return True
