"""One pass over the tracks: per individual, the time tracked, the passages through every wind-farm
footprint and the crossings of every power line (before any scaling to the population).

Work is cut into chunks of whole individuals (:class:`FixArrays` slices), so
memory is bounded by the chunk, not by the number of fixes. Per chunk:
segments (:func:`segment_table`), candidate (segment, facility) pairs
(:func:`candidate_pairs`, grid + STRtree), then one vectorised intersection
per facility in its own metric projection. Everything is recorded per
passage / crossing with the individual, the month, day or night (solar
elevation at the time and place) and the GPS altitude there; heights above
ground need the local ground level, known only after the pass.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import shapely

from flyway import schema as S

from .track_geometry import BoxGrid, FacilityShape, candidate_pairs, line_crossings, nearby_points, passages_inside
from .track_segments import (SUNRISE_ELEVATION_DEG, FixArrays, TrackParams, fix_arrays, month_index, segment_table,
                             solar_elevation_deg)

log = logging.getLogger(__name__)

__all__ = ["TrackTables", "accumulate_tracks", "split_individuals", "store_fix_chunks", "store_stops",
           "STORE_FIX_COLUMNS"]

_SEEN_CELL_DEG = 0.02  # one representative tracked position per cell (~2 km) for the "far from the data" check
_PASSAGE_KEYS = ("facility", "individual", "month", "time_inside_s", "altitude_m", "night", "transit_start")
_CROSSING_KEYS = ("facility", "individual", "month", "altitude_m", "night", "time_s")


@dataclass(frozen=True, eq=False)
class TrackTables:
    """The tracked exposure of every individual to every facility, unscaled.

    Attributes
    ----------
    coverage_s : ndarray (individuals, 12)
        Tracked time per calendar month (s): segments of at most ``max_gap_h``.
    passages : dict of arrays
        One entry per flight segment inside a wind-farm footprint:
        ``facility`` (index into the shapes), ``individual``, ``month``
        (0-11), ``time_inside_s``, ``altitude_m`` (GPS, interpolated at the
        centre of the part inside; NaN unknown), ``night``, ``transit_start``
        (the segment starts a passage: its predecessor was not inside).
    crossings : dict of arrays
        One entry per crossing of a power line: ``facility``, ``individual``,
        ``month``, ``altitude_m`` (interpolated at the crossing), ``night``,
        ``time_s``.
    ground_m, ground_fixes : ndarray (facilities,)
        Median GPS altitude of the stationary fixes (inside stops) within
        ``ground_radius_km`` of each facility, and how many there were
        (NaN when fewer than ``min_ground_fixes``).
    seen_lon, seen_lat : ndarray
        One tracked position per ~2-km cell, for the distance check.
    """

    coverage_s: np.ndarray
    passages: dict
    crossings: dict
    ground_m: np.ndarray
    ground_fixes: np.ndarray
    seen_lon: np.ndarray
    seen_lat: np.ndarray
    fixes: int
    flight_segments: int
    _index: dict = field(default_factory=dict, repr=False)

    def rows(self, table: str, facility: int) -> np.ndarray:
        """Row numbers of ``passages`` or ``crossings`` (``table``) that belong to one facility."""
        if table not in self._index:  # sort once per table, then slice
            fac = getattr(self, table)["facility"]
            order = np.argsort(fac, kind="stable")
            self._index[table] = (order, np.searchsorted(fac[order], np.arange(len(self.ground_m) + 1)))
        order, bounds = self._index[table]
        return order[bounds[facility]:bounds[facility + 1]]


def split_individuals(fx: FixArrays, max_fixes: int) -> Iterator[FixArrays]:
    """Contiguous slices of whole individuals with at most ``max_fixes`` fixes (or one bird)."""
    n = len(fx)
    if n == 0:
        return
    starts = np.flatnonzero(np.r_[True, fx.individual[1:] != fx.individual[:-1]])
    bounds = [0]
    for s in starts[1:]:  # a loop over individuals, not fixes
        if s - bounds[-1] > max_fixes:
            bounds.append(int(s))
    bounds.append(n)
    for a, b in zip(bounds[:-1], bounds[1:]):
        yield FixArrays(*(getattr(fx, k)[a:b] for k in ("individual", "time_s", "lon", "lat", "altitude_m",
                                                         "stationary")))


def _cell(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Code of the ~2-km lon/lat cell of each position."""
    return ((np.floor(lon / _SEEN_CELL_DEG).astype(np.int64) + 20_000) * 40_000
            + np.floor(lat / _SEEN_CELL_DEG).astype(np.int64) + 20_000)


def _interp(a0, a1, pos):
    """Linear interpolation of a quantity known at both ends (either end alone when the other is NaN)."""
    out = a0 + (a1 - a0) * pos
    return np.where(np.isfinite(out), out, np.where(np.isfinite(a0), a0, a1))


class _Pass:
    """State of one pass: the facilities' indexes and the records gathered so far."""

    def __init__(self, shapes: list[FacilityShape], n_individuals: int, params: TrackParams) -> None:
        self.shapes, self.params = shapes, params
        geoms = np.array([s.lonlat for s in shapes], dtype=object)
        bounds = shapely.bounds(geoms)
        self.grid = BoxGrid(bounds)
        self.tree = shapely.STRtree(geoms)
        dlat = params.ground_radius_km / 110.574
        coslat = np.cos(np.radians(np.minimum(np.maximum(np.abs(bounds[:, 1]), np.abs(bounds[:, 3])) + dlat, 89.0)))
        dlon = params.ground_radius_km / (111.320 * coslat)
        self.ground_grid = BoxGrid(bounds + np.column_stack([-dlon, -np.full_like(dlon, dlat), dlon,
                                                             np.full_like(dlon, dlat)]))
        self.coverage = np.zeros(n_individuals * 12)
        self.passages: dict[str, list] = {k: [] for k in _PASSAGE_KEYS}
        self.crossings: dict[str, list] = {k: [] for k in _CROSSING_KEYS}
        self.ground: list[list[np.ndarray]] = [[] for _ in shapes]
        self.seen: list[np.ndarray] = []
        self.fixes = 0
        self.flights = 0

    def add(self, fx: FixArrays) -> None:
        self.fixes += len(fx)
        start, dt, flight = segment_table(fx, self.params)
        mid = fx.time_s[start] + dt / 2
        self.coverage += np.bincount(fx.individual[start] * 12 + month_index(mid), weights=dt,
                                     minlength=self.coverage.size)
        self._seen(fx)
        self._ground(fx)
        fs, fdt = start[flight], dt[flight]
        self.flights += fs.size
        if fs.size == 0:
            return
        lon0, lat0, lon1, lat1 = fx.lon[fs], fx.lat[fs], fx.lon[fs + 1], fx.lat[fs + 1]
        seg, fac = candidate_pairs(lon0, lat0, lon1, lat1, self.grid, self.tree)
        if seg.size == 0:
            return
        cut = np.flatnonzero(np.r_[True, fac[1:] != fac[:-1], True])
        for a, b in zip(cut[:-1], cut[1:]):  # one vectorised intersection per facility
            f, sl = int(fac[a]), seg[a:b]
            shape = self.shapes[f]
            args = (lon0[sl], lat0[sl], lon1[sl], lat1[sl])
            if shape.kind == "wind_farm":
                share, pos = passages_inside(shape, *args)
                ok = share > 0
                sl, share, pos = sl[ok], share[ok], pos[ok]
                key = fs[sl]  # fix index of the segment start: the previous segment of the bird is key - 1
                self._record(self.passages, f, fx, fs[sl], fdt[sl], pos,
                             time_inside_s=share * fdt[sl], transit_start=~np.isin(key - 1, key))
            else:
                owner, pos = line_crossings(shape, *args)
                sl = sl[owner]
                self._record(self.crossings, f, fx, fs[sl], fdt[sl], pos)

    def _record(self, table: dict, f: int, fx: FixArrays, i0, dt, pos, **extra) -> None:
        t = fx.time_s[i0] + pos * dt
        lon = fx.lon[i0] + pos * (fx.lon[i0 + 1] - fx.lon[i0])
        lat = fx.lat[i0] + pos * (fx.lat[i0 + 1] - fx.lat[i0])
        values = dict(facility=np.full(i0.size, f, np.int64), individual=fx.individual[i0], month=month_index(t),
                      altitude_m=_interp(fx.altitude_m[i0], fx.altitude_m[i0 + 1], pos),
                      night=solar_elevation_deg(t, lon, lat) < SUNRISE_ELEVATION_DEG, time_s=t, **extra)
        for k in table:
            table[k].append(values[k])

    def _seen(self, fx: FixArrays) -> None:
        _, first = np.unique(_cell(fx.lon, fx.lat), return_index=True)
        self.seen.append(np.column_stack([fx.lon[first], fx.lat[first]]))

    def _ground(self, fx: FixArrays) -> None:
        on_ground = np.flatnonzero(fx.stationary & np.isfinite(fx.altitude_m))
        if on_ground.size == 0:
            return
        lon, lat = fx.lon[on_ground], fx.lat[on_ground]
        near = on_ground[self.ground_grid.touches(lon, lat, lon, lat)]
        if near.size == 0:
            return
        for f, shape in enumerate(self.shapes):  # a loop over facilities, each vectorised over the fixes
            inside = nearby_points(shape, fx.lon[near], fx.lat[near], self.params.ground_radius_km)
            if inside.any():
                self.ground[f].append(fx.altitude_m[near[inside]])

    def finish(self, n_individuals: int) -> TrackTables:
        def cat(table: dict) -> dict:
            return {k: (np.concatenate(v) if v else np.empty(0)) for k, v in table.items()}

        ground_n = np.array([sum(a.size for a in g) for g in self.ground], np.int64)
        ground_m = np.array([float(np.median(np.concatenate(g))) if n >= self.params.min_ground_fixes else np.nan
                             for g, n in zip(self.ground, ground_n)])
        seen = np.concatenate(self.seen) if self.seen else np.empty((0, 2))
        if len(seen):
            seen = seen[np.unique(_cell(seen[:, 0], seen[:, 1]), return_index=True)[1]]
        passages, crossings = cat(self.passages), cat(self.crossings)
        for table in (passages, crossings):
            for k in ("facility", "individual", "month"):
                table[k] = table[k].astype(np.int64)
            table["night"] = table["night"].astype(bool)
        passages["transit_start"] = passages["transit_start"].astype(bool)
        return TrackTables(self.coverage.reshape(n_individuals, 12), passages, crossings, ground_m, ground_n,
                           seen[:, 0], seen[:, 1], self.fixes, self.flights)


def accumulate_tracks(chunks: Iterable[FixArrays], shapes: list[FacilityShape], n_individuals: int,
                      params: TrackParams = TrackParams()) -> TrackTables:
    """Run the pass over chunks of whole individuals (codes ``0 .. n_individuals - 1``).

    Parameters
    ----------
    chunks
        :class:`FixArrays` of whole individuals, each sorted by (individual, time).
    shapes
        The facilities (:func:`~.track_geometry.facility_shapes`).
    n_individuals
        Number of individual codes (rows of ``coverage_s``).
    params
        :class:`TrackParams`.

    Returns
    -------
    TrackTables
    """
    state = _Pass(shapes, n_individuals, params)
    for fx in chunks:
        state.add(fx)
    log.debug("tracks: %d fixes, %d flight segments, %d passages, %d crossings", state.fixes, state.flights,
              sum(a.size for a in state.passages["facility"]), sum(a.size for a in state.crossings["facility"]))
    return state.finish(n_individuals)


#: fixes columns the track analyses read from a store
STORE_FIX_COLUMNS = [S.INDIVIDUAL_ID, S.SPECIES, S.TIMESTAMP, S.LON, S.LAT, S.ALTITUDE_M, S.QC_FLAGS]


def store_stops(store, purpose: str) -> pd.DataFrame:
    """The store's stops table; :class:`~flyway.errors.StoreError` naming ``purpose`` when there is none."""
    from flyway.errors import StoreError
    from flyway.store import Store, read_derived

    st = store if isinstance(store, Store) else Store(store)
    st.require()
    path = st.path / S.STOPS.name / f"{S.STOPS.name}.parquet"
    if not path.exists():
        raise StoreError(f"{path}: no stops table; run `flyway stops --store {store}` first ({purpose} needs the "
                         "stops to tell standing birds from flights)")
    return read_derived(st, S.STOPS.name)


def store_fix_chunks(store, species: Iterable[str] | None = None, *, chunk_fixes: int = 1_000_000,
                     stops: pd.DataFrame | None = None, columns: list[str] | None = None
                     ) -> tuple[pd.Index, np.ndarray, Callable[[], Iterator[FixArrays]]]:
    """Individual codes, their species, and a generator of :class:`FixArrays` chunks read from a store.

    Each call of the returned function reads the committed fixes again, a
    group of whole birds at a time (one snapshot of the ledger for all calls).
    """
    from flyway.analysis.runner import group_individuals, individuals
    from flyway.store import Store

    st = store if isinstance(store, Store) else Store(store)
    st.require()
    inds = individuals(st, list(species) if species is not None else None)
    codes = pd.Index([i.individual_id for i in inds])
    snap = st.snapshot()
    groups = group_individuals(inds, chunk_fixes)
    cols = columns or STORE_FIX_COLUMNS

    def chunks() -> Iterator[FixArrays]:
        for g in groups:
            frame = st.scan_fixes(individuals=g, columns=cols, snapshot=snap).to_pandas()
            yield from split_individuals(fix_arrays(frame, stops, codes), chunk_fixes)

    return codes, np.array([i.species for i in inds], dtype=object), chunks
