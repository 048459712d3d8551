"""In-flight tracked time per grid cell and calendar month: the binning kernel of the sensitivity grid.

Flight segments (:func:`~.track_segments.segment_table`) are straight lines
in lon/lat between consecutive fixes; each is split where it crosses a cell
edge, and each piece's share of the segment's length (in lon/lat) is its
share of the segment's duration. Vectorised over all segments of a chunk
(``np.repeat`` over crossings, one ``lexsort``, one ``bincount``), in
batches of at most two million pieces.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flyway.geo import EARTH_RADIUS_M

from .track_segments import FixArrays, TrackParams, month_index, segment_table

__all__ = ["CellGrid", "FlightTime", "KM_PER_DEG"]

KM_PER_DEG = math.pi * EARTH_RADIUS_M / 180.0 / 1000.0  # 111.195 km per degree of latitude (mean sphere)
_PIECES_PER_BATCH = 2_000_000  # pieces of flight segments binned at once (bounds memory)


@dataclass(frozen=True)
class CellGrid:
    """Regular lon/lat cells: ``dlat`` = cell_km of latitude, ``dlon`` = cell_km of longitude at the mid-latitude."""

    lon0: float
    lat0: float
    dlon: float
    dlat: float
    nx: int
    ny: int

    @classmethod
    def build(cls, cell_km: float, bounds: tuple[float, float, float, float]) -> "CellGrid":
        lon_min, lat_min, lon_max, lat_max = bounds
        dlat = cell_km / KM_PER_DEG
        dlon = dlat / max(math.cos(math.radians((lat_min + lat_max) / 2)), 0.01)
        ny = max(1, int(math.ceil((lat_max - lat_min) / dlat - 1e-9)))
        nx = max(1, int(math.ceil((lon_max - lon_min) / dlon - 1e-9)))
        return cls(lon_min, lat_min, dlon, dlat, nx, ny)

    @classmethod
    def snapped(cls, cell_km: float, lon_min, lat_min, lon_max, lat_max) -> "CellGrid":
        """The data extent snapped outward to whole cells (origin at multiples of the cell size)."""
        dlat = cell_km / KM_PER_DEG
        dlon = dlat / max(math.cos(math.radians((lat_min + lat_max) / 2)), 0.01)
        lon0, lat0 = math.floor(lon_min / dlon) * dlon, math.floor(lat_min / dlat) * dlat
        nx = int(math.floor((lon_max - lon0) / dlon)) + 1
        ny = int(math.floor((lat_max - lat0) / dlat)) + 1
        return cls(lon0, lat0, dlon, dlat, nx, ny)

    @property
    def cells(self) -> int:
        return self.nx * self.ny

    def lat_edges(self) -> np.ndarray:
        return self.lat0 + self.dlat * np.arange(self.ny + 1)

    def lon_edges(self) -> np.ndarray:
        return self.lon0 + self.dlon * np.arange(self.nx + 1)

    def area_km2(self) -> np.ndarray:
        """Area of the cells of each row on the mean sphere (km²), shape (ny,)."""
        edges = np.radians(np.clip(self.lat_edges(), -90.0, 90.0))
        r_km = EARTH_RADIUS_M / 1000.0
        return r_km ** 2 * math.radians(self.dlon) * np.diff(np.sin(edges))


class FlightTime:
    """Tracked seconds per species and calendar month, and in-flight seconds per species, month and cell.

    :meth:`add` accumulates a chunk of whole birds: ``species_code`` maps an
    individual code to a species index (-1: left out).
    """

    def __init__(self, n_species: int, grid: CellGrid) -> None:
        self.grid, self.ns = grid, n_species
        self.tracked_s = np.zeros((n_species, 12))
        self.flight_s = np.zeros((n_species, 12, grid.cells))
        self.years: list[int] = []
        self.segments = self.flights = 0

    def add(self, fx: FixArrays, species_code: np.ndarray, params: TrackParams) -> None:
        start, dt_s, flight = segment_table(fx, params)
        sp = species_code[fx.individual[start]]
        mine = sp >= 0  # birds of species left out (code -1)
        start, dt_s, flight, sp = start[mine], dt_s[mine], flight[mine], sp[mine]
        if not start.size:
            return
        mid = fx.time_s[start] + dt_s / 2.0
        month = month_index(mid)
        self.tracked_s += np.bincount(sp * 12 + month, weights=dt_s, minlength=self.ns * 12).reshape(self.ns, 12)
        years = (mid * 1e6).astype("datetime64[us]").astype("datetime64[Y]").astype(np.int64) + 1970
        self.years += [int(years.min()), int(years.max())]
        self.segments += int(start.size)
        self.flights += int(flight.sum())
        self._bin_flights(fx, start[flight], dt_s[flight], sp[flight] * 12 + month[flight])

    def _bin_flights(self, fx: FixArrays, a: np.ndarray, dt_s: np.ndarray, layer: np.ndarray) -> None:
        """Split flight segments where they cross cell edges and add each piece's share of the time to its cell."""
        g = self.grid
        x0, y0 = (fx.lon[a] - g.lon0) / g.dlon, (fx.lat[a] - g.lat0) / g.dlat  # positions in cell units
        x1 = x0 + ((fx.lon[a + 1] - fx.lon[a] + 180.0) % 360.0 - 180.0) / g.dlon  # the short way round
        y1 = y0 + (fx.lat[a + 1] - fx.lat[a]) / g.dlat
        cx = np.abs(np.floor(x1) - np.floor(x0)).astype(np.int64)  # cell edges crossed, per axis
        cy = np.abs(np.floor(y1) - np.floor(y0)).astype(np.int64)
        ends = np.cumsum(cx + cy + 1)  # pieces per segment
        cuts = np.searchsorted(ends, np.arange(_PIECES_PER_BATCH, int(ends[-1]) if ends.size else 0,
                                               _PIECES_PER_BATCH), side="right")
        flat_out = self.flight_s.reshape(-1)
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, a.size]):  # batches of ~2M pieces
            if hi <= lo:
                continue
            seg = np.arange(lo, hi)
            seg_t = [np.repeat(seg, 2), np.tile([0.0, 1.0], seg.size)]  # both ends of every segment
            for c, u0, u1 in ((cx, x0, x1), (cy, y0, y1)):  # and every crossing of a cell edge
                n = c[lo:hi]
                s = np.repeat(seg, n)
                j = np.arange(s.size) - np.repeat(np.cumsum(n) - n, n)
                edge = np.where(u1[s] > u0[s], np.floor(u0[s]) + 1 + j, np.floor(u0[s]) - j)
                seg_t += [s, (edge - u0[s]) / (u1[s] - u0[s])]
            s, t = np.concatenate(seg_t[0::2]), np.concatenate(seg_t[1::2])
            order = np.lexsort((t, s))
            s, t = s[order], t[order]
            piece = np.flatnonzero(s[1:] == s[:-1])  # between consecutive breakpoints of one segment
            s, t_lo, t_hi = s[piece], t[piece], t[piece + 1]
            mid = (t_lo + t_hi) / 2
            ix = np.floor(x0[s] + mid * (x1[s] - x0[s]))
            iy = np.floor(y0[s] + mid * (y1[s] - y0[s]))
            ok = (ix >= 0) & (ix < g.nx) & (iy >= 0) & (iy < g.ny) & (t_hi > t_lo)
            flat = layer[s[ok]] * g.cells + (iy[ok] * g.nx + ix[ok]).astype(np.int64)
            where, inverse = np.unique(flat, return_inverse=True)
            flat_out[where] += np.bincount(inverse, weights=((t_hi - t_lo) * dt_s[s])[ok])
