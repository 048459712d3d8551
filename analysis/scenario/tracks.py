"""Exposure of birds to proposed wind farms and power lines, from the GPS tracks (issue 9 items 4, 5).

:class:`TrackExposure` is an :class:`~.run.ExposureSource`:
``run_scenarios(config, TrackExposure.from_store("birds/"))``. Every number it
hands to the collision models is traceable in :meth:`TrackExposure.table`.

Method
------
1. Segments between consecutive clean fixes of one bird, at most
   ``max_gap_h`` apart, are tracked time; a segment is a flight unless both
   ends are inside a stop of the bird or it is slower than
   ``min_flight_speed_ms`` (:mod:`.track_segments`).
2. Flight segments are intersected with every footprint (the polygon, or
   the turbines' convex hull buffered by the rotor radius) and line in the
   facility's own equal-area projection: time inside = share of the
   segment's length inside × its duration; a *transit* is a run of
   consecutive segments inside; a *crossing* is a point where a segment
   meets a line (:mod:`.track_passages`, :mod:`.track_geometry`).
3. Height above ground = GPS altitude (interpolated at the passage or
   crossing) − the local ground level, taken as the median GPS altitude of
   stationary fixes (inside stops, any species) within ``ground_radius_km``
   of the facility. The share at rotor height is the share of in-flight time
   inside the footprint whose height is in [hub − R, hub + R], each passage
   weighted by ``Φ((top − h)/σ) − Φ((low − h)/σ)`` (σ = ``vertical_error_m``);
   for lines the same probability for the wire band ± half the wingspan.
   Without a ground level, or with fewer than ``min_height_samples``
   passages with a height, the species table's rotor-height share (and
   flight-height distribution) is used, and for lines every crossing counts
   as at wire height (precautionary; the prior per-crossing probability of
   Barrientos et al. 2011 is not height-filtered either).
4. Scaling to the population, month by month (ratio estimator over tracked
   time): the share of tracked bird-time spent in flight inside the footprint
   ``p_m = Σ_i flight_time_inside_im / Σ_i tracked_time_im`` times the
   population size ``N`` is the number of birds in flight over the footprint
   at any moment, so the in-flight density (24-h mean, birds/km²) is
   ``D_m = N p_m / A``. With every tracked bird followed all month this is
   (N / tracked birds present) × tracked in-flight bird-time inside /
   (month × A); counting tracked time instead of heads lets a bird tracked
   for part of a month, or in several years, count for what it was tracked.
   ``N`` is the species table's ``initial_population`` (the flyway
   population, with the scenario file's overrides) unless ``population``
   gives another. Band's flux multiplies a *daytime* density by day hours
   plus nocturnal activity × night hours; the tracks already hold the night
   flights, so the Band input is the daytime-equivalent density
   ``D_m × 24 h × days_m / H_day,m`` with nocturnal activity 0: the flux then
   equals the tracked one exactly. Power lines: crossings per year
   ``= N Σ_m (Σ_i crossings_im / Σ_i tracked_time_im) × seconds in month m``,
   day and night separately.
5. Uncertainty: bootstrap over individuals, stratified by species. One
   resample of the tracked birds per replicate, drawn once in
   :meth:`TrackExposure.prepare`, serves every facility; the run's draw
   alignment carries replicate ``k`` into the collisions and the population
   projection. Per-individual monthly sums are computed once; each
   replicate is a row of a matrix product (no loop over replicates).
   Options 2/3 of Band use the pooled tracked flight-height distribution
   (not resampled).
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import pandas as pd

from flyway import schema as S
from flyway.errors import ConfigError, InputError

from .config import PowerLineFacility, ScenarioConfig, WindFarmFacility
from .distributions import AlignedDraws, Bootstrap, Fixed
from .track_geometry import FacilityShape, distance_to_points_km, facility_shapes
from .track_passages import TrackTables, accumulate_tracks, split_individuals
from .track_scaling import bootstrap_weights, line_exposure, resample_counts, wind_farm_exposure
from .track_segments import FixArrays, TrackParams, fix_arrays

log = logging.getLogger(__name__)

__all__ = ["TrackExposure", "TrackParams", "resample_counts"]



@dataclass(frozen=True)
class _Species:
    name: str
    codes: np.ndarray  # individual codes of the species
    population: float


class TrackExposure:
    """Exposure from GPS tracks: an :class:`~.run.ExposureSource` for :func:`~.run.run_scenarios`.

    Parameters
    ----------
    fixes
        Fixes table (schema columns ``individual_id``, ``species``,
        ``timestamp``, ``lon``, ``lat``; ``altitude_m`` and ``qc_flags`` used
        when present). Fixes with QC flags are dropped, as the stops stage does.
    stops
        Stops table (``individual_id``, ``start_time``, ``end_time``): fixes
        inside a stop are birds standing, not flying. None: no fix is stationary
        (and there is no ground level).
    params
        :class:`TrackParams`.
    population
        Population size per species, overriding the species table's
        ``initial_population`` (individuals).
    species
        Only these species (default: every species in ``fixes``).
    chunk_fixes
        Fixes per chunk of whole individuals (bounds memory).

    Notes
    -----
    Call :meth:`prepare` (``run_scenarios`` does) before :meth:`wind_farm` /
    :meth:`power_line`. The method is in the module docstring.

    Examples
    --------
    >>> tracks = TrackExposure.from_store("birds/")            # doctest: +SKIP
    >>> result = run_scenarios("plan.toml", tracks)           # doctest: +SKIP
    >>> tracks.table()                                         # doctest: +SKIP
    """

    def __init__(self, fixes: pd.DataFrame, stops: pd.DataFrame | None = None, *,
                 params: TrackParams = TrackParams(), population: Mapping[str, float] | None = None,
                 species: Iterable[str] | None = None, chunk_fixes: int = 1_000_000) -> None:
        missing = [c for c in (S.INDIVIDUAL_ID, S.SPECIES, S.TIMESTAMP, S.LON, S.LAT) if c not in fixes.columns]
        if missing:
            raise ConfigError(f"fixes: missing column {missing[0]} (expected the fixes schema)")
        if species is not None:
            fixes = fixes[fixes[S.SPECIES].isin(list(species))]
        first = fixes.drop_duplicates(S.INDIVIDUAL_ID)
        ids = first[S.INDIVIDUAL_ID].astype(str).to_numpy()
        order = np.argsort(ids, kind="stable")
        codes = pd.Index(ids[order])
        self._setup(codes, first[S.SPECIES].astype(str).to_numpy()[order],
                    lambda: split_individuals(fix_arrays(fixes, stops, codes), chunk_fixes), params, population)

    @classmethod
    def from_store(cls, store: str | os.PathLike[str], species: str | Iterable[str] | None = None, *,
                   params: TrackParams = TrackParams(), population: Mapping[str, float] | None = None,
                   chunk_fixes: int = 1_000_000) -> "TrackExposure":
        """Tracks of a flyway store: its committed fixes and its stops table, read a chunk of birds at a time.

        Raises
        ------
        StoreError
            The store has no stops table (run ``flyway stops`` first).
        """
        from .track_passages import store_fix_chunks, store_stops

        stops = store_stops(store, "exposure from tracks")
        sp = [species] if isinstance(species, str) else (list(species) if species is not None else None)
        codes, species_of, chunks = store_fix_chunks(store, sp, chunk_fixes=chunk_fixes, stops=stops)
        obj = cls.__new__(cls)
        obj._setup(codes, species_of, chunks, params, population)
        return obj

    @classmethod
    def from_chunks(cls, individual_ids: Iterable[str], species_of: Iterable[str],
                    chunks: Callable[[], Iterable[FixArrays]], *, params: TrackParams = TrackParams(),
                    population: Mapping[str, float] | None = None) -> "TrackExposure":
        """Tracks given as chunks of :class:`~.track_segments.FixArrays` (whole individuals, sorted).

        Parameters
        ----------
        individual_ids, species_of
            Id and species of each individual code ``0 .. n - 1`` used in the chunks.
        chunks
            Called once per pass; returns an iterable of :class:`FixArrays`
            (e.g. a generator reading a group of birds at a time).
        """
        obj = cls.__new__(cls)
        obj._setup(pd.Index([str(i) for i in individual_ids]), np.array(list(species_of), dtype=object),
                   lambda: iter(chunks()), params, population)
        return obj

    def _setup(self, codes: pd.Index, species_of: np.ndarray, chunks: Callable[[], Iterator[FixArrays]],
               params: TrackParams, population: Mapping[str, float] | None) -> None:
        if not isinstance(params, TrackParams):
            raise TypeError("params: expected a TrackParams")
        self.params = params
        self.individual_ids = codes
        self.species_of = np.asarray(species_of, dtype=object)
        self._chunks = chunks
        self._population = dict(population or {})
        self._tables: TrackTables | None = None
        self._tables_key: Any = None
        self._results: dict[tuple[str, str], dict] = {}
        self._facilities: Mapping[str, Any] = {}
        self._notes: list[str] = []
        self.prepared = False

    # ------------------------------------------------------------------ protocol
    @property
    def species(self) -> tuple[str, ...]:
        """Tracked species (sorted)."""
        return tuple(sorted(set(self.species_of.tolist())))

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(self._notes)

    @property
    def tables(self) -> TrackTables | None:
        """The unscaled per-bird passages, crossings and tracked time of the last :meth:`prepare`."""
        return self._tables

    def prepare(self, config: ScenarioConfig, replicates: int, seed: np.random.SeedSequence | int) -> None:
        """Measure every facility of ``config`` against the tracks and draw the bootstrap.

        Parameters
        ----------
        config
            The scenario (facilities, species table with its overrides, Band option).
        replicates
            Number of replicates of the run; replicate ``k`` of every facility
            uses the same resample of tracked birds.
        seed
            Seed or :class:`numpy.random.SeedSequence` of the bootstrap.

        Raises
        ------
        ConfigError
            A facility lies further than ``far_km`` from every tracked fix.
        """
        seed = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        shapes = facility_shapes(config.facilities)
        key = tuple((s.id, s.metric.wkb) for s in shapes)
        if self._tables_key != key:
            self._tables = accumulate_tracks(self._chunks(), shapes, len(self.individual_ids), self.params)
            self._tables_key = key
        tables = self._tables
        if tables.seen_lon.size == 0:
            raise InputError("tracks: no clean fixes (without QC flags) of the tracked species; expected GPS tracks "
                             "(or run without a store for the typed-in exposure)")
        self._check_far(config, shapes, tables)
        self._results, self._notes, self._facilities = {}, [], config.facilities
        groups = self._species_groups(config)
        for i, sp in enumerate(groups):
            child = np.random.SeedSequence(seed.entropy, spawn_key=tuple(seed.spawn_key) + (i,))
            w = bootstrap_weights(replicates, sp.codes.size, child)
            tracked_w = w @ tables.coverage_s[sp.codes]  # tracked time per resample and month, for every facility
            for f, (fac, shape) in enumerate(zip(config.facilities.values(), shapes)):
                if isinstance(fac, WindFarmFacility):
                    self._results[(fac.id, sp.name)] = self._wind_farm(f, fac, shape, sp, w, tracked_w, tables, config)
                else:
                    self._results[(fac.id, sp.name)] = self._power_line(f, fac, sp, w, tracked_w, tables, config)
        self._notes.append(
            f"Exposure from {tables.fixes:,} tracked fixes of {len(self.individual_ids)} birds "
            f"({tables.flight_segments:,} flight segments): population in flight over each footprint = population "
            "size x share of tracked time in flight inside it, month by month; uncertainty by a bootstrap of "
            f"individuals ({replicates} resamples, shared by all facilities). Heights = GPS altitude - local ground "
            f"level (median altitude of stationary fixes within {self.params.ground_radius_km:g} km); "
            f"GPS vertical error sd {self.params.vertical_error_m:g} m.")
        self.prepared = True

    def wind_farm(self, facility: WindFarmFacility, species: str) -> Mapping[str, Any] | None:
        """Monthly in-flight densities (aligned draws) and the tracked rotor-height share, or the typed-in fallback."""
        return self._answer(facility, species, S.TRACKED_TRANSITS, "transits")

    def power_line(self, facility: PowerLineFacility, species: str) -> Mapping[str, Any] | None:
        """Crossings per year, day and night (aligned draws), and the share at wire height, or the typed-in fallback."""
        return self._answer(facility, species, S.TRACKED_CROSSINGS, "crossings")

    def _answer(self, facility, species: str, count_key: str, what: str) -> Mapping[str, Any] | None:
        if not self.prepared:
            raise RuntimeError("TrackExposure: call prepare(config, replicates, seed) first (run_scenarios does)")
        res = self._results.get((facility.id, species))
        typed = facility.exposure.get(species)
        if res is None:
            return None if typed is None else {**typed, "source": "typed-in (species not tracked)"}
        if res["tracked"][count_key] == 0 and typed is not None:
            return {**typed, "source": f"typed-in (0 tracked {what})", "tracked": res["tracked"],
                    "note": f"0 tracked {what}: the typed-in exposure of the scenario file is used"}
        return res

    def table(self) -> pd.DataFrame:
        """One row per facility and species: the tracked numbers behind the exposure (point estimates)."""
        if not self.prepared:
            raise RuntimeError("TrackExposure: call prepare(config, replicates, seed) first")
        rows = []
        for (fid, sp), res in self._results.items():
            fac = self._facilities[fid]
            used = self.wind_farm(fac, sp) if isinstance(fac, WindFarmFacility) else self.power_line(fac, sp)
            rows.append({S.FACILITY_ID: fid, S.SPECIES: sp, S.EXPOSURE_SOURCE: used["source"], **res["tracked"],
                         **res["point"], S.EXPOSURE_NOTE: used.get("note", res["note"])})
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ internals
    def _species_groups(self, config: ScenarioConfig) -> list[_Species]:
        out = []
        for name in self.species:
            if name not in config.species:
                self._notes.append(f"tracked species {name!r} is not in the species table: not assessed")
                continue
            entry = config.species[name]
            pop = float(self._population.get(name, entry.scalar("initial_population", 0.0) or 0.0))
            if not (pop > 0 and math.isfinite(pop)):
                raise ConfigError(f"population[{name!r}] = {pop!r}: expected a population size > 0 (individuals)")
            out.append(_Species(name, np.flatnonzero(self.species_of == name), pop))
        return out

    def _check_far(self, config: ScenarioConfig, shapes: list[FacilityShape], tables: TrackTables) -> None:
        reach = self.params.far_km
        for shape in shapes:
            d = distance_to_points_km(shape, tables.seen_lon, tables.seen_lat, reach)
            if d > reach:
                what = "footprint" if shape.kind == "wind_farm" else "line"
                raise ConfigError(f'facility "{shape.id}": {what} lies about {d:,.0f} km from the nearest tracked '
                                  f"fix; expected within {reach:g} km of the tracks (lon/lat swapped?)",
                                  file=config.source)

    def _rows(self, tables: TrackTables, name: str, f: int, sp: _Species) -> tuple[dict, np.ndarray]:
        """Passages / crossings of facility ``f`` by birds of the species, and each one's bird (local index)."""
        table = getattr(tables, name)
        rows = tables.rows(name, f)
        pos = np.full(len(self.individual_ids), -1, np.int64)
        pos[sp.codes] = np.arange(sp.codes.size)
        rows = rows[pos[table["individual"][rows]] >= 0]
        return {k: v[rows] for k, v in table.items()}, pos[table["individual"][rows]]

    def _tracked(self, sp: _Species, tables: TrackTables, f: int, exposed: int, height_source: str) -> dict:
        return {S.TRACKED_INDIVIDUALS: int(sp.codes.size),
                S.TRACKED_BIRD_DAYS: float(tables.coverage_s[sp.codes].sum() / 86400.0),
                S.TRACKED_BIRDS_EXPOSED: int(exposed), S.GROUND_LEVEL_M: float(tables.ground_m[f]),
                S.HEIGHT_SOURCE: height_source}

    def _fallback_reason(self, tables: TrackTables, f: int, heights: int, what: str) -> str:
        if not math.isfinite(float(tables.ground_m[f])):
            return (f"no ground level: {int(tables.ground_fixes[f])} stationary fixes with an altitude within "
                    f"{self.params.ground_radius_km:g} km")
        return f"{heights} {what} with a height"

    def _wind_farm(self, f: int, fac: WindFarmFacility, shape: FacilityShape, sp: _Species, w: np.ndarray,
                   tracked_w: np.ndarray, tables: TrackTables, config: ScenarioConfig) -> dict:
        pas, loc = self._rows(tables, "passages", f, sp)
        ex = wind_farm_exposure(loc, pas["month"], pas["time_inside_s"], pas["altitude_m"] - tables.ground_m[f],
                                pas["transit_start"], tracked_w, w, population=sp.population,
                                area_km2=shape.area_km2, latitude=fac.params.latitude,
                                hub_height_m=float(fac.params.hub_height_m.mean),
                                rotor_radius_m=float(fac.params.rotor_radius_m.mean), params=self.params)
        overrides: dict[str, Any] = {"nocturnal_activity": Fixed(0.0)}
        notes = list(ex.notes)
        if ex.rotor_height_share is not None:
            overrides["rotor_height_share"] = AlignedDraws(ex.rotor_height_share[1:])
            overrides["flight_height_distribution"] = Bootstrap(ex.flight_height_distribution[None, :])
            share, height_source = float(ex.rotor_height_share[0]), "tracks"
        else:
            share = config.species[sp.name].scalar("rotor_height_share", float("nan"))
            height_source = "species table"
            if ex.transits:
                notes.append("rotor-height share from the species table ("
                             f"{self._fallback_reason(tables, f, ex.heights, 'passages')})")
        tracked = self._tracked(sp, tables, f, ex.birds_exposed, height_source)
        tracked.update({S.TRACKED_TRANSITS: ex.transits, S.TRACKED_FLIGHT_H_INSIDE: ex.flight_h_inside,
                        S.ROTOR_HEIGHT_SHARE: share})
        point = {S.DENSITY_KM2: float(ex.density_km2[0].mean()), S.AREA_KM2: shape.area_km2,
                 **{f"{S.DENSITY_KM2}_{m + 1:02d}": float(ex.density_km2[0, m]) for m in range(12)}}
        return {"density_km2": [AlignedDraws(ex.band_density_km2[1:, m]) for m in range(12)],
                "species_overrides": overrides, "source": "tracks", "tracked": tracked, "point": point,
                "note": "; ".join(notes)}

    def _power_line(self, f: int, fac: PowerLineFacility, sp: _Species, w: np.ndarray, tracked_w: np.ndarray,
                    tables: TrackTables, config: ScenarioConfig) -> dict:
        cr, loc = self._rows(tables, "crossings", f, sp)
        ex = line_exposure(loc, cr["month"], cr["night"], cr["altitude_m"] - tables.ground_m[f],
                           tracked_w, w, population=sp.population, wire_low_m=fac.wire_low_m,
                           wire_top_m=fac.wire_top_m,
                           margin_m=float(config.species[sp.name].scalar("wingspan_m", 0.0)) / 2, params=self.params)
        notes = [f"{ex.crossings} tracked crossings ({ex.night_crossings} at night) by {ex.birds_exposed} of "
                 f"{sp.codes.size} tracked birds"]
        out: dict[str, Any] = {"crossings_day": AlignedDraws(ex.crossings_day[1:]),
                               "crossings_night": AlignedDraws(ex.crossings_night[1:])}
        shares = {}
        for label in ("day", "night"):
            draws = getattr(ex, f"wire_height_share_{label}")
            out[f"wire_height_share_{label}"] = AlignedDraws(draws[1:]) if draws is not None else 1.0
            shares[label] = float(draws[0]) if draws is not None else 1.0
        height_source = "tracks" if ex.wire_height_share_day is not None else "none (all crossings at wire height)"
        if height_source != "tracks" and ex.crossings:
            notes.append("every crossing counted as at wire height "
                         f"({self._fallback_reason(tables, f, ex.heights, 'crossings')})")
        tracked = self._tracked(sp, tables, f, ex.birds_exposed, height_source)
        day = ex.crossings - ex.night_crossings
        tracked.update({S.TRACKED_CROSSINGS: ex.crossings,
                        S.WIRE_HEIGHT_SHARE: ((shares["day"] * day + shares["night"] * ex.night_crossings)
                                              / ex.crossings) if ex.crossings else float("nan")})
        point = {S.CROSSINGS_PER_YEAR: float(ex.crossings_day[0] + ex.crossings_night[0]),
                 S.NIGHT_CROSSING_SHARE: ex.night_crossings / ex.crossings if ex.crossings else float("nan")}
        return {**out, "source": "tracks", "tracked": tracked, "point": point, "note": "; ".join(notes)}
