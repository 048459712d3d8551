"""Collision sensitivity grid: expected collisions per year if one standard turbine stood in each cell (issue 9 item 7).

Where would a wind farm do least harm? For every cell of a regular
latitude-longitude grid over the tracks, and every species of the species
table that is tracked:

1. **In-flight tracked time per cell and calendar month.** Segments between
   consecutive clean fixes of a bird, at most ``max_gap_h`` apart, are
   tracked time; a segment is a flight unless both ends are inside a stop of
   the bird or it is slower than ``min_flight_speed_ms`` — exactly the
   segments of the exposure from tracks (:mod:`.track_segments`). Each flight
   segment, a straight line in lon/lat, is split where it crosses cell edges
   and each piece's share of the segment's duration (its share of the
   segment's length in lon/lat) goes to its cell (:mod:`.flight_grid`;
   ``np.bincount``, no loop over fixes). A segment's time goes to the
   calendar month of its midpoint (UTC), for the flight time and the tracked
   time alike. Grids do not wrap across the antimeridian: the part of a
   flight beyond +/-180 degrees is left out.
2. **Density of the population in flight.** As in :mod:`.tracks`: the share
   of tracked bird-time spent in flight over the cell,
   ``p = Σ_i flight_time_i,cell,m / Σ_i tracked_time_i,m``, times the
   population ``N`` (the species table's ``initial_population``) is the
   number of birds in flight over the cell at any moment; divided by the
   cell's area (km², on the sphere) it is the 24-h mean in-flight density
   ``D`` (birds/km²). Every year of tracking counts for the time it was
   tracked, so the grid is a mean year.
3. **Band collisions of one standard turbine** (:class:`StandardTurbine`;
   option 1 with the species' ``rotor_height_share`` by default). Band's
   model is linear in the density, so the collisions per unit density are
   computed once per species and month with
   :func:`~.band.band_collisions` and multiplied by ``D``. As for tracked
   exposure, Band's input is the daytime-equivalent density
   ``D × 24 h × days / H_day`` with nocturnal activity 0 (the tracks hold the
   night flights already); the day length then cancels, so the coefficient
   does not depend on the cell's latitude. A single turbine has no
   large-array correction.

Months without tracked birds of a species give density 0 (the
``tracked_bird_days`` variable says which months are covered). The grid is
an ``xarray.Dataset`` following CF-1.8 with a climatological time axis (the
12 calendar months, ``climatology`` bounds spanning the tracked years);
:func:`flyway.analysis.grid.write_netcdf` writes it.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np
import pandas as pd
import pyproj
import xarray as xr

import flyway
from flyway import schema as S
from flyway.analysis.grid import _NV, _TIME_UNITS, CONVENTIONS
from flyway.errors import ConfigError

from .band import band_collisions, day_hours
from .distributions import Fixed
from .flight_grid import CellGrid, FlightTime
from .params import WindFarmParams
from .species import SpeciesTable, load_species_table
from .track_passages import split_individuals
from .track_scaling import DAYS_IN_MONTH
from .track_segments import FixArrays, TrackParams, fix_arrays

log = logging.getLogger(__name__)

__all__ = ["StandardTurbine", "sensitivity_grid", "sensitivity_from_store", "EXPECTED_COLLISIONS",
           "EXPECTED_COLLISIONS_MONTH", "FLIGHT_TIME_H", "CELL_AREA_KM2", "POPULATION"]

# variable names of the grid (candidates for flyway.schema)
EXPECTED_COLLISIONS = "expected_collisions"  # (species, lat, lon), per year
EXPECTED_COLLISIONS_MONTH = "expected_collisions_month"  # (species, time, lat, lon), per calendar month
FLIGHT_TIME_H = "flight_time_h"  # (species, time, lat, lon), tracked in-flight bird-hours
CELL_AREA_KM2 = "cell_area_km2"  # (lat,)
POPULATION = "population"  # (species,)
_CLIMATOLOGY = "climatology_bounds"
_MAX_VALUES = 100_000_000  # species x 12 x cells of one variable (400 MB in float32)


@dataclass(frozen=True)
class StandardTurbine:
    """The one turbine placed in every cell (Band parameters; units in the names).

    Defaults: the generic 4-MW onshore machine of the packaged example
    scenario (``examples/gumi_haepyung_two_sitings.toml``): rotor radius
    68 m, hub height 110 m (lowest blade tip 42 m), 3 blades, maximum
    chord 4 m, 10.5 rpm, pitch 10°, operational 85 % of the time in every
    month; Band's typical 5-MW chord profile.
    """

    rotor_radius_m: float = 68.0
    hub_height_m: float = 110.0
    blades: int = 3
    max_chord_m: float = 4.0
    rpm: float = 10.5
    pitch_deg: float = 10.0
    operational_share: float = 0.85

    def __post_init__(self) -> None:
        self.wind_farm(0.0)  # validates, with the turbine's key in the message

    def wind_farm(self, latitude: float) -> WindFarmParams:
        """Band's wind-farm parameters of this single turbine at ``latitude`` (degrees)."""
        try:
            return WindFarmParams.from_mapping({
                "turbines": 1, "latitude": latitude, "width_km": 2 * self.rotor_radius_m / 1000.0,
                "rotor_radius_m": self.rotor_radius_m, "hub_height_m": self.hub_height_m, "blades": self.blades,
                "max_chord_m": self.max_chord_m, "rpm": self.rpm, "pitch_deg": self.pitch_deg,
                "operational_share": [self.operational_share] * 12, "large_array_correction": False})
        except (ConfigError, TypeError, ValueError) as exc:
            detail = exc.detail if isinstance(exc, ConfigError) else str(exc)
            raise ConfigError(f"turbine.{detail}") from None

    def describe(self) -> str:
        return (f"rotor radius {self.rotor_radius_m:g} m, hub {self.hub_height_m:g} m, {self.blades} blades, "
                f"max chord {self.max_chord_m:g} m, {self.rpm:g} rpm, pitch {self.pitch_deg:g} deg, "
                f"operational {self.operational_share:.0%}")


def _unit_collisions(table: SpeciesTable, species: str, turbine: StandardTurbine, latitude: float,
                     option: int) -> np.ndarray:
    """Collisions per month of one turbine per 1 bird/km² of 24-h mean in-flight density, shape (12,)."""
    h_day, _ = day_hours(latitude)
    unit_band_density = 24.0 * DAYS_IN_MONTH / h_day  # daytime-equivalent density of 1 bird/km² (24-h mean)
    try:
        sp = table[species].band(density_km2=list(unit_band_density), nocturnal_activity=Fixed(0.0))
        return band_collisions(sp, turbine.wind_farm(latitude), option)
    except (ConfigError, ValueError) as exc:
        detail = exc.detail if isinstance(exc, ConfigError) else str(exc)
        raise ConfigError(f"species {species!r}: {detail} (sensitivity grid, Band option {option})") from None


@dataclass(frozen=True)
class _Run:
    """What a run gathered for :func:`_dataset`."""

    species: np.ndarray
    population: np.ndarray
    grid: CellGrid
    sums: FlightTime
    coefficient: np.ndarray  # (species, 12) collisions per unit density
    turbine: StandardTurbine
    option: int
    cell_km: float


def _species_and_population(species_of: np.ndarray, table: SpeciesTable,
                            population: Mapping[str, float] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    names = np.unique(np.asarray(species_of, dtype=str))
    known = np.array([n for n in names if n in table], dtype=object)
    skipped = sorted(set(names) - set(known))
    if skipped:
        log.warning("sensitivity grid: no Band parameters for %s in the species table; left out", ", ".join(skipped))
    pops = []
    for name in known:
        given = (population or {}).get(name)
        pop = float(given) if given is not None else table[name].scalar("initial_population", 0.0) or 0.0
        if not (math.isfinite(pop) and pop > 0):
            raise ConfigError(f"population[{name!r}] = {pop!r}: expected a population size > 0 (individuals); "
                              "give it in the species table (initial_population) or as population=")
        pops.append(pop)
    code = pd.Index(known).get_indexer(np.asarray(species_of, dtype=str)).astype(np.int64) if len(species_of) else \
        np.zeros(0, np.int64)
    return known, np.asarray(pops, float), code


def _check(cell_km: float, option: int, bounds) -> tuple[float, float, float, float] | None:
    if isinstance(cell_km, bool) or not isinstance(cell_km, (int, float)) or not (0.1 <= cell_km <= 500):
        raise ConfigError(f"cell_km = {cell_km!r}: expected a cell size in km within [0.1, 500]")
    if option not in (1, 2, 3):
        raise ConfigError(f"option = {option!r}: expected Band option 1, 2 or 3")
    if bounds is None:
        return None
    try:
        b = tuple(float(v) for v in bounds)
    except (TypeError, ValueError):
        b = ()
    if len(b) != 4 or not (-180 <= b[0] < b[2] <= 180 and -90 <= b[1] < b[3] <= 90):
        raise ConfigError(f"bounds = {bounds!r}: expected (lon_min, lat_min, lon_max, lat_max) with min < max "
                          "inside [-180, 180] x [-90, 90]")
    return b  # type: ignore[return-value]


def _run(chunks: Callable[[], Iterator[FixArrays]], species_of: np.ndarray, table: SpeciesTable, *,
         turbine: StandardTurbine, cell_km: float, bounds, option: int, params: TrackParams,
         population: Mapping[str, float] | None) -> xr.Dataset:
    b = _check(cell_km, option, bounds)
    species, pops, code = _species_and_population(species_of, table, population)
    if not len(species):
        raise ConfigError("sensitivity grid: no tracked species has Band parameters in the species table; "
                          f"expected some of {', '.join(sorted(table.species))}")
    if b is not None:
        grid = CellGrid.build(cell_km, b)
    else:
        lo = np.array([np.inf, np.inf]), np.array([-np.inf, -np.inf])
        for fx in chunks():  # first pass: the extent of the tracked species' fixes
            mine = code[fx.individual] >= 0
            if mine.any():
                lo = (np.minimum(lo[0], [fx.lon[mine].min(), fx.lat[mine].min()]),
                      np.maximum(lo[1], [fx.lon[mine].max(), fx.lat[mine].max()]))
        if not np.all(np.isfinite(lo[0])):
            raise ConfigError("sensitivity grid: no clean fixes of the tracked species")
        grid = CellGrid.snapped(cell_km, lo[0][0], lo[0][1], lo[1][0], lo[1][1])
    if len(species) * 12 * grid.cells > _MAX_VALUES:
        raise ConfigError(f"cell_km = {cell_km!r}: {grid.ny} x {grid.nx} cells x 12 months x {len(species)} species "
                          f"is more than {_MAX_VALUES:,} values; expected a larger cell_km or smaller bounds")
    sums = FlightTime(len(species), grid)
    for fx in chunks():
        sums.add(fx, code, params)
    lat_ref = float(np.clip(grid.lat0 + grid.dlat * grid.ny / 2, -60.0, 60.0))  # the day length cancels
    coef = np.stack([_unit_collisions(table, str(s), turbine, lat_ref, option) for s in species])
    log.info("sensitivity grid: %d x %d cells of %g km, %d species, %d segments (%d flights)", grid.ny, grid.nx,
             cell_km, len(species), sums.segments, sums.flights)
    return _dataset(_Run(species, pops, grid, sums, coef, turbine, option, cell_km))


def sensitivity_grid(fixes: pd.DataFrame, stops: pd.DataFrame | None, species_table: SpeciesTable | None = None, *,
                     turbine: StandardTurbine | None = None, cell_km: float = 5.0,
                     bounds: tuple[float, float, float, float] | None = None, option: int = 1,
                     params: TrackParams | None = None, population: Mapping[str, float] | None = None,
                     chunk_fixes: int = 1_000_000) -> xr.Dataset:
    """Expected collisions per year if one standard turbine stood in each cell, from the tracks.

    Parameters
    ----------
    fixes
        Fixes (``individual_id``, ``species``, ``timestamp``, ``lon``,
        ``lat``; ``qc_flags`` used when present; flagged fixes are dropped).
    stops
        Stops (``individual_id``, ``start_time``, ``end_time``): fixes inside
        a stop are birds on the ground. None: every segment fast enough is a flight.
    species_table
        Band parameters and population sizes (default: the packaged table;
        a scenario file's overrides: ``load_scenario(path).species``).
    turbine
        The standard turbine (default :class:`StandardTurbine`).
    cell_km
        Cell size in km (default 5): latitude steps of ``cell_km``, longitude
        steps of ``cell_km`` at the grid's mid-latitude.
    bounds
        (lon_min, lat_min, lon_max, lat_max) of the grid; default the extent
        of the fixes snapped outward to whole cells. Flights outside are left out.
    option
        Band option (1: the species' ``rotor_height_share``; 2, 3: its
        flight-height distribution).
    params
        :class:`~.track_segments.TrackParams` (``max_gap_h``, ``min_flight_speed_ms``).
    population
        Population per species overriding ``initial_population``.
    chunk_fixes
        Fixes per chunk of whole birds.

    Returns
    -------
    xarray.Dataset
        CF-1.8: ``expected_collisions`` (species, lat, lon; 1/year),
        ``expected_collisions_month`` and ``density_km2`` and
        ``flight_time_h`` (species, time, lat, lon; the 12 calendar months),
        ``tracked_bird_days`` (species, time), ``population`` (species),
        ``cell_area_km2`` (lat), bounds and ``crs``. Cells without tracked
        flights are 0.

    Examples
    --------
    >>> ds = sensitivity_grid(flyway.read_fixes("birds/"), flyway.read_stops("birds/"))  # doctest: +SKIP
    >>> write_netcdf(ds, "sensitivity.nc")                                              # doctest: +SKIP
    """
    from .proximity import _codes

    codes, species_of = _codes(fixes)
    fx_all = fix_arrays(fixes, stops, codes)
    return _run(lambda: split_individuals(fx_all, chunk_fixes), species_of, species_table or load_species_table(),
                turbine=turbine or StandardTurbine(), cell_km=cell_km, bounds=bounds, option=option,
                params=params or TrackParams(), population=population)


def sensitivity_from_store(store: str | os.PathLike[str], species_table: SpeciesTable | None = None, *,
                           species: Iterable[str] | None = None, turbine: StandardTurbine | None = None,
                           cell_km: float = 5.0, bounds: tuple[float, float, float, float] | None = None,
                           option: int = 1, params: TrackParams | None = None,
                           population: Mapping[str, float] | None = None, chunk_fixes: int = 1_000_000) -> xr.Dataset:
    """:func:`sensitivity_grid` over a store's committed fixes and its stops, a group of birds at a time.

    Raises
    ------
    StoreError
        The store has no stops table (run ``flyway stops`` first).
    """
    from .track_passages import store_fix_chunks, store_stops

    stops = store_stops(store, "the sensitivity grid")
    _, species_of, chunks = store_fix_chunks(store, species, chunk_fixes=chunk_fixes, stops=stops)
    return _run(chunks, species_of, species_table or load_species_table(), turbine=turbine or StandardTurbine(),
                cell_km=cell_km, bounds=bounds, option=option, params=params or TrackParams(), population=population)


# ---------------------------------------------------------------------------
# the CF dataset
# ---------------------------------------------------------------------------
def _dataset(run: _Run) -> xr.Dataset:
    g, sums = run.grid, run.sums
    ns = len(run.species)
    lat_e, lon_e = g.lat_edges(), g.lon_edges()
    lat, lon = (lat_e[:-1] + lat_e[1:]) / 2, (lon_e[:-1] + lon_e[1:]) / 2
    area = g.area_km2()
    flight_s = sums.flight_s.reshape(ns, 12, g.ny, g.nx)
    tracked = sums.tracked_s
    # population share of tracked time per second of flight, per km2: (species, month, lat, 1); 0 where untracked
    per_second = np.divide(run.population[:, None], tracked, out=np.zeros_like(tracked), where=tracked > 0)
    scale = per_second[:, :, None, None] / area[None, None, :, None]
    density = np.multiply(flight_s, scale, out=np.empty(flight_s.shape, np.float32), casting="same_kind")
    monthly = np.multiply(density, run.coefficient[:, :, None, None].astype(np.float32))
    flight_h = np.divide(flight_s, 3600.0, out=np.empty(flight_s.shape, np.float32), casting="same_kind")
    first, last = (min(sums.years), max(sums.years)) if sums.years else (1970, 1970)
    start = np.array([f"{first}-{m:02d}" for m in range(1, 13)], dtype="datetime64[M]")
    clim_end = np.array([f"{last}-{m:02d}" for m in range(1, 13)], dtype="datetime64[M]") + 1
    dims4 = (S.SPECIES, S.TIME, S.LAT, S.LON)
    clim = "time: sum within years time: mean over years"
    where = f"one standard turbine ({run.turbine.describe()})"
    ds = xr.Dataset(
        {
            EXPECTED_COLLISIONS: ((S.SPECIES, S.LAT, S.LON), monthly.sum(axis=1, dtype=np.float64).astype(np.float32), {
                "long_name": f"expected collisions per year of the population with {where} in the cell",
                "units": "year-1", "cell_methods": "time: sum area: mean", "grid_mapping": S.CRS_VARIABLE}),
            EXPECTED_COLLISIONS_MONTH: (dims4, monthly, {
                "long_name": f"expected collisions in the calendar month with {where} in the cell",
                "units": "1", "cell_methods": f"{clim} area: mean", "grid_mapping": S.CRS_VARIABLE}),
            S.DENSITY_KM2: (dims4, density, {
                "long_name": "birds of the population in flight over the cell per km2 (24-hour mean)",
                "units": "km-2", "cell_methods": "time: mean within years time: mean over years area: mean",
                "grid_mapping": S.CRS_VARIABLE}),
            FLIGHT_TIME_H: (dims4, flight_h, {
                "long_name": "tracked in-flight bird-hours over the cell (all tracked birds and years)",
                "units": "h", "cell_methods": "time: sum within years time: sum over years area: sum",
                "grid_mapping": S.CRS_VARIABLE}),
            S.TRACKED_BIRD_DAYS: ((S.SPECIES, S.TIME), tracked / 86400.0, {
                "long_name": "tracked bird-days in the calendar month (all tracked birds and years)", "units": "d",
                "cell_methods": "time: sum within years time: sum over years"}),
            POPULATION: ((S.SPECIES,), run.population, {
                "long_name": "population size the tracked birds are scaled to", "units": "1"}),
            CELL_AREA_KM2: ((S.LAT,), area, {"long_name": "area of a grid cell (mean sphere)", "units": "km2"}),
        },
        coords={
            S.SPECIES: (S.SPECIES, run.species.astype(object), {"long_name": "scientific name of the species"}),
            S.TIME: (S.TIME, start.astype("datetime64[ns]"), {
                "standard_name": "time", "long_name": "calendar month (climatological time)", "axis": "T",
                "climatology": _CLIMATOLOGY}),
            S.LAT: (S.LAT, lat, {"standard_name": "latitude", "long_name": "latitude of cell centre",
                                 "units": "degrees_north", "axis": "Y", "bounds": f"{S.LAT}_bnds"}),
            S.LON: (S.LON, lon, {"standard_name": "longitude", "long_name": "longitude of cell centre",
                                 "units": "degrees_east", "axis": "X", "bounds": f"{S.LON}_bnds"}),
        })
    ds[_CLIMATOLOGY] = ((S.TIME, _NV), np.column_stack([start, clim_end]).astype("datetime64[ns]"))
    ds[f"{S.LAT}_bnds"] = ((S.LAT, _NV), np.column_stack([lat_e[:-1], lat_e[1:]]))
    ds[f"{S.LON}_bnds"] = ((S.LON, _NV), np.column_stack([lon_e[:-1], lon_e[1:]]))
    ds[S.CRS_VARIABLE] = ((), np.int32(0), pyproj.CRS(S.CRS).to_cf())
    for name in (S.TIME, _CLIMATOLOGY):
        ds[name].encoding.update(units=_TIME_UNITS, calendar="standard", dtype="float64")
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    t = run.turbine
    ds.attrs.update(
        Conventions=CONVENTIONS, title="Collision sensitivity: expected collisions of one standard turbine per cell",
        source=f"flyway {flyway.__version__}", history=f"{now} flyway.analysis.scenario.sensitivity",
        date_created=now,
        comment=("In-flight tracked time per cell and calendar month, scaled to the population by the share of "
                 "tracked time, as a 24-h mean in-flight density; Band (2012) collisions of one turbine, linear in "
                 "the density. Months without tracked birds of a species give 0. Cells on a regular "
                 "latitude-longitude grid (WGS84); areas on the mean sphere."),
        band_option=np.int32(run.option), cell_km=float(run.cell_km),
        turbine_rotor_radius_m=float(t.rotor_radius_m), turbine_hub_height_m=float(t.hub_height_m),
        turbine_blades=np.int32(t.blades), turbine_max_chord_m=float(t.max_chord_m), turbine_rpm=float(t.rpm),
        turbine_pitch_deg=float(t.pitch_deg), turbine_operational_share=float(t.operational_share),
        geospatial_lat_min=float(lat_e[0]), geospatial_lat_max=float(lat_e[-1]),
        geospatial_lon_min=float(lon_e[0]), geospatial_lon_max=float(lon_e[-1]))
    return ds
