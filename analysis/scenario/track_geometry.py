"""Geometry of exposure from tracks: facility footprints, candidate segments, passages and crossings.

Each facility gets a local Lambert azimuthal equal-area projection centred
on it (pyproj): areas are exact and distances within a few tens of km are
true to better than 1e-5, so footprints, lengths inside a footprint and
distances are measured in metres there. Candidate segments are found in
lon/lat in two vectorised steps: a summed-area table over a grid of the
facilities' bounding boxes drops every segment whose box touches no facility
(a few numpy passes over all segments), then an STRtree of the facilities'
lon/lat geometries pairs the remaining segments with facilities (shapely 2,
``predicate="intersects"``). Only those pairs are projected and intersected.
Segments crossing the antimeridian are not handled (no flyway facility is near it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyproj
import shapely

from flyway.geo import haversine_m

from .config import PowerLineFacility, WindFarmFacility

__all__ = ["FacilityShape", "facility_shapes", "BoxGrid", "candidate_pairs", "passages_inside", "line_crossings",
           "distance_to_points_km"]

_GRID_CELLS = 4_000_000  # upper bound of the prefilter grid (int32 summed-area table: 16 MB)


@dataclass(frozen=True, eq=False)
class FacilityShape:
    """One facility in lon/lat and in its own metric projection.

    ``metric`` is the rotor-swept footprint (wind farm: the polygon, or the
    turbines' convex hull buffered by the rotor radius) or the line, in
    metres of ``crs``; ``lonlat`` the same geometry in degrees.
    """

    id: str
    kind: str
    lonlat: shapely.Geometry
    metric: shapely.Geometry
    crs: str  # PROJ string of the facility's projection
    to_metric: pyproj.Transformer

    @property
    def area_km2(self) -> float:
        return float(self.metric.area) / 1e6

    @property
    def length_km(self) -> float:
        return float(self.metric.length) / 1e3

    def project(self, lon, lat) -> tuple[np.ndarray, np.ndarray]:
        return self.to_metric.transform(np.asarray(lon, float), np.asarray(lat, float))


def _shape(fac: WindFarmFacility | PowerLineFacility) -> FacilityShape:
    centre = fac.geometry.centroid
    crs = f"+proj=laea +lat_0={centre.y:.8f} +lon_0={centre.x:.8f} +ellps=WGS84"
    # explicit pipelines: the same numbers as Transformer.from_crs without its search for an operation (100x faster)
    fwd = pyproj.Transformer.from_pipeline(f"+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad +step {crs}")
    back = pyproj.Transformer.from_pipeline(f"+proj=pipeline +step +inv {crs} +step +proj=unitconvert +xy_in=rad "
                                            "+xy_out=deg")
    metric = shapely.transform(fac.geometry, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1])))
    if isinstance(fac, WindFarmFacility):
        if shapely.get_type_id(metric) != 3:  # turbine points: the hull swept by the rotors
            radius_m = float(fac.params.rotor_radius_m.mean)
            metric = shapely.buffer(shapely.convex_hull(metric), radius_m, quad_segs=16)
        lonlat = shapely.transform(metric, lambda xy: np.column_stack(back.transform(xy[:, 0], xy[:, 1])))
        kind = "wind_farm"
    else:
        lonlat = fac.geometry
        kind = "power_line"
    return FacilityShape(fac.id, kind, lonlat, metric, crs, fwd)


def facility_shapes(facilities) -> list[FacilityShape]:
    """Footprints / lines of the scenario's facilities (a mapping id → facility, or a list)."""
    items = facilities.values() if hasattr(facilities, "values") else facilities
    return [_shape(f) for f in items]


class BoxGrid:
    """Do axis-aligned boxes touch any of a set of boxes? Vectorised over many query boxes.

    The union of the target boxes is rasterised on a regular lon/lat grid
    (cells touched by a box are flagged); a summed-area table answers
    "any flagged cell inside the query box" with four lookups per query. A
    flagged cell is conservative (a query may pass the grid and still miss
    every target); nothing that touches a target is dropped.
    """

    def __init__(self, bounds: np.ndarray, pad_deg: float = 1e-6) -> None:
        b = np.atleast_2d(np.asarray(bounds, float))
        b = b + np.array([-pad_deg, -pad_deg, pad_deg, pad_deg])
        self.x0, self.y0 = float(b[:, 0].min()), float(b[:, 1].min())
        w = max(float(b[:, 2].max()) - self.x0, 1e-9)
        h = max(float(b[:, 3].max()) - self.y0, 1e-9)
        self.res = max(math.sqrt(w * h / _GRID_CELLS), 1e-4, w / 4000, h / 4000)
        self.nx, self.ny = int(w / self.res) + 1, int(h / self.res) + 1
        flag = np.zeros((self.ny + 1, self.nx + 1), np.int32)
        ix0, iy0, ix1, iy1 = self._cells(b[:, 0], b[:, 1], b[:, 2], b[:, 3])
        # mark each box with +1/-1 corners, then two cumulative sums rasterise all boxes at once
        np.add.at(flag, (iy0, ix0), 1)
        np.add.at(flag, (iy0, ix1 + 1), -1)
        np.add.at(flag, (iy1 + 1, ix0), -1)
        np.add.at(flag, (iy1 + 1, ix1 + 1), 1)
        covered = (flag.cumsum(0).cumsum(1)[: self.ny, : self.nx] > 0).astype(np.int32)
        self.sat = np.zeros((self.ny + 1, self.nx + 1), np.int32)
        self.sat[1:, 1:] = covered.cumsum(0).cumsum(1)

    def _cells(self, xmin, ymin, xmax, ymax):
        ix0 = np.clip(np.floor((np.asarray(xmin) - self.x0) / self.res), 0, self.nx - 1).astype(np.int64)
        iy0 = np.clip(np.floor((np.asarray(ymin) - self.y0) / self.res), 0, self.ny - 1).astype(np.int64)
        ix1 = np.clip(np.floor((np.asarray(xmax) - self.x0) / self.res), 0, self.nx - 1).astype(np.int64)
        iy1 = np.clip(np.floor((np.asarray(ymax) - self.y0) / self.res), 0, self.ny - 1).astype(np.int64)
        return ix0, iy0, ix1, iy1

    def touches(self, xmin, ymin, xmax, ymax) -> np.ndarray:
        """True for query boxes that touch a flagged cell."""
        inside = ((np.asarray(xmax) >= self.x0) & (np.asarray(xmin) <= self.x0 + self.nx * self.res)
                  & (np.asarray(ymax) >= self.y0) & (np.asarray(ymin) <= self.y0 + self.ny * self.res))
        ix0, iy0, ix1, iy1 = self._cells(xmin, ymin, xmax, ymax)
        s = self.sat
        count = s[iy1 + 1, ix1 + 1] - s[iy0, ix1 + 1] - s[iy1 + 1, ix0] + s[iy0, ix0]
        return inside & (count > 0)


def candidate_pairs(lon0, lat0, lon1, lat1, grid: BoxGrid, tree: shapely.STRtree) -> tuple[np.ndarray, np.ndarray]:
    """(segment, facility) pairs whose lon/lat geometries intersect, sorted by facility then segment."""
    keep = np.flatnonzero(grid.touches(np.minimum(lon0, lon1), np.minimum(lat0, lat1),
                                       np.maximum(lon0, lon1), np.maximum(lat0, lat1)))
    if keep.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    coords = np.stack([np.column_stack([lon0[keep], lat0[keep]]), np.column_stack([lon1[keep], lat1[keep]])], axis=1)
    seg_idx, fac_idx = tree.query(shapely.linestrings(coords), predicate="intersects")
    seg = keep[seg_idx]
    order = np.lexsort((seg, fac_idx))
    return seg[order].astype(np.int64), fac_idx[order].astype(np.int64)


def _metric_segments(shape: FacilityShape, lon0, lat0, lon1, lat1) -> np.ndarray:
    x0, y0 = shape.project(lon0, lat0)
    x1, y1 = shape.project(lon1, lat1)
    return shapely.linestrings(np.stack([np.column_stack([x0, y0]), np.column_stack([x1, y1])], axis=1))


def passages_inside(shape: FacilityShape, lon0, lat0, lon1, lat1) -> tuple[np.ndarray, np.ndarray]:
    """Share of each segment inside a footprint, and where along it the inside part is centred.

    Returns
    -------
    share_inside : ndarray
        Length inside the footprint / segment length (metric, 0..1).
    position : ndarray
        Position (0 = start, 1 = end) of the centre of the part inside, for
        interpolating the time and altitude of the passage.
    """
    lines = _metric_segments(shape, lon0, lat0, lon1, lat1)
    inside = shapely.intersection(lines, shape.metric)
    length = shapely.length(lines)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(length > 0, shapely.length(inside) / length, 0.0)
    position = shapely.line_locate_point(lines, shapely.centroid(inside), normalized=True)
    return np.clip(share, 0.0, 1.0), np.nan_to_num(position, nan=0.5)


def line_crossings(shape: FacilityShape, lon0, lat0, lon1, lat1) -> tuple[np.ndarray, np.ndarray]:
    """Crossings of a line by segments, in metres: which segment and where along it.

    Returns ``(segment, position)``: the index (into the given arrays) of the
    segment of each crossing (twice for a segment crossing a zig-zag line
    twice) and its position along the segment (0 = start, 1 = end). A
    segment running along the line counts once, where it meets it first.
    Segments are half-open, (start, end]: a fix lying exactly on the line
    is one crossing, counted by the segment that ends there.
    """
    lines = _metric_segments(shape, lon0, lat0, lon1, lat1)
    inter = shapely.intersection(lines, shape.metric)
    parts, owner = shapely.get_parts(inter, return_index=True)
    if parts.size == 0:
        return np.empty(0, np.int64), np.empty(0)
    points = np.where(shapely.get_type_id(parts) == 0, parts, shapely.get_point(parts, 0))
    keep = ~shapely.is_empty(points)
    owner, points = owner[keep], points[keep]
    position = np.nan_to_num(shapely.line_locate_point(lines[owner], points, normalized=True), nan=0.0)
    keep = position > 0
    return owner[keep].astype(np.int64), position[keep]


def distance_to_points_km(shape: FacilityShape, lon: np.ndarray, lat: np.ndarray, reach_km: float) -> float:
    """Distance (km) from a facility to the nearest of some points.

    Points inside the facility's bounding box widened by ``reach_km`` are
    measured exactly in the facility's projection; when there are none the
    distance is the haversine distance from the nearest facility vertex
    (the message of a facility hundreds of km off needs no more).
    """
    if lon.size == 0:
        return math.inf
    xmin, ymin, xmax, ymax = shape.lonlat.bounds
    dlat = reach_km / 110.574
    dlon = reach_km / (111.320 * max(math.cos(math.radians(max(abs(ymin), abs(ymax)) + dlat)), 1e-6))
    near = (lon >= xmin - dlon) & (lon <= xmax + dlon) & (lat >= ymin - dlat) & (lat <= ymax + dlat)
    if near.any():
        x, y = shape.project(lon[near], lat[near])
        return float(shapely.distance(shapely.points(x, y), shape.metric).min()) / 1e3
    verts = shapely.get_coordinates(shape.lonlat)
    best = math.inf
    for vx, vy in verts[:: max(1, len(verts) // 64)]:  # at most ~64 vertices, each vectorised over the points
        best = min(best, float(haversine_m(vx, vy, lon, lat).min()) / 1e3)
    return best


def nearby_points(shape: FacilityShape, lon: np.ndarray, lat: np.ndarray, radius_km: float) -> np.ndarray:
    """Mask of the points within ``radius_km`` of a facility (measured in its projection)."""
    out = np.zeros(lon.size, bool)
    if lon.size == 0:
        return out
    xmin, ymin, xmax, ymax = shape.lonlat.bounds
    dlat = radius_km / 110.574
    dlon = radius_km / (111.320 * max(math.cos(math.radians(max(abs(ymin), abs(ymax)) + dlat)), 1e-6))
    cand = np.flatnonzero((lon >= xmin - dlon) & (lon <= xmax + dlon) & (lat >= ymin - dlat) & (lat <= ymax + dlat))
    if cand.size:
        x, y = shape.project(lon[cand], lat[cand])
        out[cand] = shapely.dwithin(shapely.points(x, y), shape.metric, radius_km * 1e3)
    return out
