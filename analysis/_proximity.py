"""Geodesic proximity of positions to facilities (points, lines, polygons) without all-pairs work.

The private engine of :mod:`flyway.analysis.infrastructure`. Facilities are
cut into segments (a point is a segment of length 0; lines into pieces of at
most 0.005 degrees; polygons into their boundary, plus a containment test).
A k-d tree of segment midpoints as unit vectors is the spatial index: chord
length orders pairs exactly as the great-circle distance does, so it is a
haversine index, and faster than a haversine BallTree.

A candidate's distance is measured in the azimuthal-equidistant plane of the
query position: both segment ends are placed by their azimuth and distance
from it, on the WGS84 ellipsoid (pyproj ``Geod``) when ``exact`` -- then the
distance to a point facility is the geodesic distance itself -- or on the
mean sphere (within 0.7 %) for cheap screening.
"""
from __future__ import annotations

import itertools

import numpy as np
import pyproj
import shapely
from scipy.spatial import cKDTree

from flyway.analysis._geodesy import EARTH_RADIUS_M

_GEOD = pyproj.Geod(ellps="WGS84")
SEGMENT_DEG = 0.005  # longest line piece (~550 m) kept between exact distance checks
BAND = 0.0075  # great-circle (mean sphere) vs WGS84 geodesic distances differ by < 0.7 %


def _sphere_inv(lon1, lat1, lon2, lat2):
    """Azimuth (degrees) and great-circle distance (m) on the mean sphere, like ``Geod.inv``."""
    lo1, la1, lo2, la2 = map(np.radians, (lon1, lat1, lon2, lat2))
    dlon = lo2 - lo1
    a = np.sin((la2 - la1) / 2) ** 2 + np.cos(la1) * np.cos(la2) * np.sin(dlon / 2) ** 2
    dist = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    az = np.arctan2(np.sin(dlon) * np.cos(la2), np.cos(la1) * np.sin(la2) - np.sin(la1) * np.cos(la2) * np.cos(dlon))
    return np.degrees(az), None, dist


def _point_segment_m(plon, plat, alon, alat, blon, blat, exact: bool = True) -> np.ndarray:
    """Distance (m) from P to segment AB in P's azimuthal-equidistant plane.

    With ``exact`` the ends are placed by geodesic azimuth and distance on
    WGS84 (so a point facility's distance is the geodesic one); otherwise on
    the mean sphere (within 0.7 % of it), which is cheaper.
    """
    inv = _GEOD.inv if exact else _sphere_inv
    az_a, _, d_a = inv(plon, plat, alon, alat)
    az_a, d_a = np.radians(np.asarray(az_a, float)), np.asarray(d_a, float)
    az_b, d_b = az_a.copy(), d_a.copy()
    seg = (alon != blon) | (alat != blat)
    if seg.any():
        az, _, d = inv(plon[seg], plat[seg], blon[seg], blat[seg])
        az_b[seg], d_b[seg] = np.radians(az), d
    ax, ay = d_a * np.sin(az_a), d_a * np.cos(az_a)
    dx, dy = d_b * np.sin(az_b) - ax, d_b * np.cos(az_b) - ay
    len2 = dx * dx + dy * dy
    t = np.clip(np.divide(-(ax * dx + ay * dy), len2, out=np.zeros_like(len2), where=len2 > 0), 0.0, 1.0)
    return np.hypot(ax + t * dx, ay + t * dy)


def _xyz(lon, lat) -> np.ndarray:
    lo, la = np.radians(lon), np.radians(lat)
    return np.column_stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


def _chord(metres):
    return 2.0 * np.sin(np.minimum(np.asarray(metres, float) / (2.0 * EARTH_RADIUS_M), np.pi / 2))


def _arc_m(chord):
    return 2.0 * EARTH_RADIUS_M * np.arcsin(np.clip(np.asarray(chord, float) / 2.0, 0.0, 1.0))


class FacilityIndex:
    """Segments of a set of facilities, a k-d tree of their midpoints on the unit sphere, and polygons.

    Chord length on the unit sphere orders pairs exactly as the great-circle
    distance does, so a Euclidean k-d tree over unit vectors is a haversine
    index (faster than a haversine BallTree).
    """

    def __init__(self, geoms: np.ndarray) -> None:
        polygonal = np.isin(shapely.get_type_id(geoms), (3, 6))
        self.polygons = geoms[polygonal]
        self.polygon_facility = np.flatnonzero(polygonal)
        lines = geoms.copy()
        lines[polygonal] = shapely.boundary(geoms[polygonal])
        parts, fac = shapely.get_parts(lines, return_index=True)
        lineal = np.isin(shapely.get_type_id(parts), (1, 2))
        parts[lineal] = shapely.segmentize(parts[lineal], SEGMENT_DEG)
        xy, part = shapely.get_coordinates(parts, return_index=True)
        same = np.r_[part[1:] == part[:-1], False]
        is_point = shapely.get_type_id(parts)[part] == 0
        a = np.flatnonzero(same | is_point)
        b = np.where(is_point[a], a, a + 1)
        self.alon, self.alat, self.blat = xy[a, 0], xy[a, 1], xy[b, 1]
        self.blon = self.alon + (xy[b, 0] - self.alon + 180.0) % 360.0 - 180.0  # unwrap across 180
        self.facility = fac[part[a]]
        self.half_m = float(_GEOD.inv(self.alon, self.alat, self.blon, self.blat)[2].max(initial=0.0)) / 2
        self.tree = cKDTree(_xyz((self.alon + self.blon) / 2, (self.alat + self.blat) / 2))
        self.polygon_tree = shapely.STRtree(self.polygons) if len(self.polygons) else None

    def _within(self, xyz, radius_m) -> tuple[np.ndarray, np.ndarray]:
        """(query, segment) for segment midpoints within radius_m (spherical metres) of each query."""
        ind = self.tree.query_ball_point(xyz, _chord(radius_m), return_sorted=False)
        counts = np.fromiter((len(i) for i in ind), dtype=np.int64, count=len(ind))
        q = np.repeat(np.arange(len(ind)), counts)
        seg = np.fromiter(itertools.chain.from_iterable(ind), dtype=np.int64, count=int(counts.sum()))
        return q, seg

    def _distance(self, lon, lat, q, seg, exact) -> np.ndarray:
        return _point_segment_m(lon[q], lat[q], self.alon[seg], self.alat[seg], self.blon[seg], self.blat[seg],
                                exact=exact)

    def _inside(self, lon, lat):
        if self.polygon_tree is None:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        qi, pi = self.polygon_tree.query(shapely.points(lon, lat), predicate="intersects")
        return qi, self.polygon_facility[pi]

    def pairs(self, lon, lat, radius_m: float, thresholds_m: tuple[float, ...]):
        """(query, facility, distance m) for facilities possibly within radius_m of each query.

        Distances are spherical except for pairs within the sphere-ellipsoid
        band of one of ``thresholds_m``, which are measured on WGS84, so every
        comparison with a threshold is the geodesic one.
        """
        q, seg = self._within(_xyz(lon, lat), (radius_m + self.half_m) * (1 + BAND))
        d = self._distance(lon, lat, q, seg, exact=False)
        near_threshold = np.zeros(len(d), dtype=bool)
        for t in thresholds_m:
            near_threshold |= np.abs(d - t) <= t * BAND + 1.0
        d[near_threshold] = self._distance(lon, lat, q[near_threshold], seg[near_threshold], exact=True)
        qi, fi = self._inside(lon, lat)
        return np.r_[q, qi], np.r_[self.facility[seg], fi], np.r_[d, np.zeros(len(qi))]

    def nearest(self, lon, lat) -> tuple[np.ndarray, np.ndarray]:
        """Geodesic distance (m) to and index of the nearest facility of each query."""
        xyz = _xyz(lon, lat)
        k = min(2, self.tree.n)
        dist, idx = self.tree.query(xyz, k=k)
        dist, idx = dist.reshape(len(lon), k), idx.reshape(len(lon), k)
        reach = (_arc_m(dist[:, 0]) + 2 * self.half_m) * (1 + 2 * BAND) + 1.0
        alone = np.ones(len(lon), dtype=bool) if k == 1 else _arc_m(dist[:, 1]) > reach
        # the first neighbour is the only candidate unless another midpoint lies within reach
        q_more, seg_more = self._within(xyz[~alone], reach[~alone])
        q = np.r_[np.flatnonzero(alone), np.flatnonzero(~alone)[q_more]]
        seg = np.r_[idx[alone, 0], seg_more]
        d = self._distance(lon, lat, q, seg, exact=True)
        qi, fi = self._inside(lon, lat)
        q, fac, d = np.r_[q, qi], np.r_[self.facility[seg], fi], np.r_[d, np.zeros(len(qi))]
        order = np.lexsort((fac, d, q))
        q, fac, d = q[order], fac[order], d[order]
        first = np.unique(q, return_index=True)[1]
        return d[first], fac[first]
