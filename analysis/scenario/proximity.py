"""Proximity of proposed facilities to breeding sites (issue 9 item 7).

Two tables per scenario file, both for the planner's report:

* **distances** — one row per facility × breeding site: the geodesic
  distance (WGS84, :mod:`flyway.analysis._proximity`) from the site centre to
  the facility's geometry: the nearest turbine, the footprint's edge (0 inside
  it) or the line. Breeding sites come from

  - the store's sites table: sites whose ``kinds`` include ``breeding``
    (source ``sites table``; the ids are those of the gap map), or
  - the stops: stops of kind ``breeding`` clustered per species with
    :func:`flyway.analysis.sites.find_sites` (source ``stops``), or
  - a user's site list (``site,country,lat,lon,species,role`` CSV such as
    ``flagship_sites.csv``): rows with role ``breeding`` (source ``site list``).

* **time shares** — one row per facility × species: the share of the
  species' breeding-season tracked time spent within 1, 5, 10 and 20 km of
  the facility. The breeding season is the species' calendar breeding window
  of :mod:`flyway.analysis.seasons` (``breeding_window`` in the per-species
  defaults, e.g. 10 April – 31 July), taken by the UTC date of each fix: a
  fixed, documented window that does not depend on stop detection, and the
  same for breeders and for birds summering elsewhere. Each clean fix (QC
  flags dropped as the stops stage does) stands for half of the intervals to
  its neighbours of the same bird, each interval capped at ``max_gap_h``
  (a tag that fell silent for a week does not make its last fix weigh a
  week). Distances to the facilities are geodesic at the buffer edges
  (:meth:`FacilityIndex.pairs`).

:func:`breeding_proximity` is the pure core over tables;
:func:`proximity_from_store` is the shell that reads a store a chunk of birds
at a time; :func:`write_proximity` writes the two CSV tables.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from flyway import schema as S
from flyway.analysis._proximity import FacilityIndex
from flyway.analysis.params import SpeciesConfig, load_species_config
from flyway.analysis.seasons import in_window
from flyway.errors import ConfigError

from .breeding_sites import SITE_SOURCE, breeding_sites
from .config import ScenarioConfig, load_scenario
from .track_passages import split_individuals, store_fix_chunks
from .track_segments import FixArrays, fix_arrays

log = logging.getLogger(__name__)

__all__ = ["BreedingProximity", "breeding_proximity", "proximity_from_store", "write_proximity",
           "fix_time_weights_s", "store_fix_chunks", "BREEDING_WINDOW", "SHARE_BREEDING_TIME_WITHIN_KM"]

# column names of the two tables (candidates for flyway.schema; see the module docstring)
BREEDING_WINDOW = "breeding_window"  # "MM-DD..MM-DD", the calendar window of the species
SHARE_BREEDING_TIME_WITHIN_KM = "share_breeding_time_within_{km:g}km"  # .format(km=5)

_QUERY_CHUNK = 200_000  # fixes per distance query (bounds the candidate-pair arrays)
_DISTANCE_COLUMNS = [S.FACILITY_ID, S.FACILITY_NAME, S.FACILITY_KIND, S.SPECIES, S.SITE_ID, S.COUNTRY, S.LON, S.LAT,
                     S.N_INDIVIDUALS, S.DISTANCE_KM, SITE_SOURCE]


@dataclass(frozen=True, eq=False)
class BreedingProximity:
    """What :func:`breeding_proximity` returns.

    Attributes
    ----------
    distances : pandas.DataFrame
        One row per facility × breeding site: ``facility_id``,
        ``facility_name``, ``facility_kind``, ``species``, ``site_id`` (the
        site id, or the site's name in a site list), ``country``, ``lon``,
        ``lat`` (site centre), ``n_individuals`` (tracked birds that bred
        there; missing for a site list), ``distance_km`` (geodesic, 0 inside
        a footprint), ``site_source``. Sorted by facility and distance.
    time_shares : pandas.DataFrame
        One row per facility × tracked species: ``facility_id``,
        ``facility_name``, ``facility_kind``, ``species``,
        ``breeding_window``, ``tracked_individuals`` and
        ``tracked_bird_days`` (breeding-season tracked time), and
        ``share_breeding_time_within_<r>km`` per buffer (NaN without
        breeding-season fixes).
    distances_km : tuple of float
        The buffers.
    """

    distances: pd.DataFrame
    time_shares: pd.DataFrame
    distances_km: tuple[float, ...]


# ---------------------------------------------------------------------------
# facilities
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Facilities:
    ids: np.ndarray
    names: np.ndarray
    kinds: np.ndarray
    geometries: np.ndarray


def _facilities(facilities: Any) -> _Facilities:
    """Facilities of a scenario file, a mapping id -> facility, an iterable of facilities or a GeoDataFrame."""
    if isinstance(facilities, ScenarioConfig):
        facilities = facilities.facilities
    if isinstance(facilities, (str, os.PathLike)):
        facilities = load_scenario(facilities).facilities
    if isinstance(facilities, pd.DataFrame):
        missing = [c for c in (S.FACILITY_ID, "geometry") if c not in facilities.columns]
        if missing:
            raise ConfigError(f"facilities: missing column {missing[0]} (expected facilities.geojson columns)")
        ids = facilities[S.FACILITY_ID].astype(str).to_numpy(object)
        names = (facilities[S.FACILITY_NAME].astype(str).to_numpy(object) if S.FACILITY_NAME in facilities
                 else ids.copy())
        kinds = (facilities[S.FACILITY_KIND].astype(str).to_numpy(object) if S.FACILITY_KIND in facilities
                 else np.full(len(ids), "", object))
        return _Facilities(ids, names, kinds, np.asarray(facilities.geometry.to_numpy(), dtype=object))
    items = list(facilities.values()) if isinstance(facilities, Mapping) else list(facilities)
    if not items:
        raise ConfigError("facilities: expected at least one facility")
    return _Facilities(np.array([f.id for f in items], object), np.array([f.name for f in items], object),
                       np.array([f.kind for f in items], object), np.array([f.geometry for f in items], object))


def _check_distances(distances_km) -> tuple[float, ...]:
    try:
        d = tuple(sorted({float(x) for x in distances_km}))
    except (TypeError, ValueError):
        d = ()
    if not d or any(not (math.isfinite(x) and 0 < x <= 500) for x in d):
        raise ConfigError(f"distances_km = {distances_km!r}: expected buffers in km within (0, 500]")
    return d


def _site_distances(fac: _Facilities, sites: pd.DataFrame) -> pd.DataFrame:
    """Geodesic distance from every site centre to every facility (0 inside a footprint)."""
    if not len(sites):
        return pd.DataFrame(columns=_DISTANCE_COLUMNS)
    lon, lat = sites[S.LON].to_numpy(float), sites[S.LAT].to_numpy(float)
    frames = []
    for i, geom in enumerate(fac.geometries):  # one index per facility: a handful of facilities
        dist_m, _ = FacilityIndex(np.array([geom], dtype=object)).nearest(lon, lat)
        block = sites.copy()
        block.insert(0, S.FACILITY_KIND, fac.kinds[i])
        block.insert(0, S.FACILITY_NAME, fac.names[i])
        block.insert(0, S.FACILITY_ID, fac.ids[i])
        block[S.DISTANCE_KM] = dist_m / 1000.0
        frames.append(block)
    out = pd.concat(frames, ignore_index=True)[_DISTANCE_COLUMNS]
    order = pd.Series(pd.factorize(out[S.FACILITY_ID])[0])
    return out.assign(_o=order).sort_values(["_o", S.DISTANCE_KM, S.SITE_ID], kind="stable").drop(
        columns="_o").reset_index(drop=True)


# ---------------------------------------------------------------------------
# breeding-season tracked time within the buffers
# ---------------------------------------------------------------------------
def fix_time_weights_s(individual: np.ndarray, time_s: np.ndarray, max_gap_s: float) -> np.ndarray:
    """Time (s) each fix stands for: half of each interval to its neighbours, each capped at ``max_gap_s``.

    ``individual`` and ``time_s`` must be sorted by individual, then time.
    The weights of one bird sum to its tracked time with gaps capped.
    """
    n = len(time_s)
    w = np.zeros(n)
    if n < 2:
        return w
    gap = np.where(individual[1:] == individual[:-1], np.minimum(np.diff(time_s), max_gap_s), 0.0)
    w[:-1] += gap / 2.0
    w[1:] += gap / 2.0
    return w


def _month_day(time_s: np.ndarray) -> np.ndarray:
    """Month-day codes (MMDD, UTC) of times in seconds since 1970."""
    t = (np.asarray(time_s, float) * 1e6).astype("datetime64[us]")
    month = t.astype("datetime64[M]")
    day = (t.astype("datetime64[D]") - month.astype("datetime64[D]")).astype(np.int64) + 1
    return (month.astype(np.int64) % 12 + 1) * 100 + day


class _ShareSums:
    """Running sums of breeding-season fix weights: inside each buffer of each facility, and in total."""

    def __init__(self, n_species: int, index: FacilityIndex, n_facilities: int, radii_m: tuple[float, ...],
                 n_individuals: int) -> None:
        self.index, self.nf, self.radii_m = index, n_facilities, radii_m
        self.within = np.zeros((n_species, n_facilities, len(radii_m)))
        self.total = np.zeros(n_species)
        self.seen = np.zeros(n_individuals, bool)
        self.n_species = n_species

    def add(self, fx: FixArrays, species_code: np.ndarray, windows: list, max_gap_s: float) -> None:
        if not len(fx):
            return
        w = fix_time_weights_s(fx.individual, fx.time_s, max_gap_s)
        sp = species_code[fx.individual]
        md = _month_day(fx.time_s)
        season = np.zeros(len(fx), bool)
        for code, window in enumerate(windows):  # one mask per species
            mine = sp == code
            season[mine] = in_window(md[mine], window)
        keep = season & (w > 0)
        lon, lat, w, sp = fx.lon[keep], fx.lat[keep], w[keep], sp[keep]
        self.seen[fx.individual[keep]] = True
        self.total += np.bincount(sp, weights=w, minlength=self.n_species)
        for s in range(0, len(lon), _QUERY_CHUNK):
            q, f, d = self.index.pairs(lon[s:s + _QUERY_CHUNK], lat[s:s + _QUERY_CHUNK], self.radii_m[-1],
                                       self.radii_m)
            q = q.astype(np.int64) + s
            for k, r in enumerate(self.radii_m):
                near = d <= r
                pair = np.unique(q[near] * self.nf + f[near])  # a fix counts once per facility
                fq, ff = np.divmod(pair, self.nf)
                self.within[:, :, k] += np.bincount(sp[fq] * self.nf + ff, weights=w[fq],
                                                    minlength=self.n_species * self.nf).reshape(self.n_species, self.nf)


def _time_shares(fac: _Facilities, chunks: Iterable[FixArrays], species_of: np.ndarray, distances_km,
                 max_gap_h: float, season_config: SpeciesConfig) -> pd.DataFrame:
    species, species_code = np.unique(np.asarray(species_of, dtype=str), return_inverse=True)
    windows = [season_config.seasons(str(s)).window_md("breeding_window") for s in species]
    radii_m = tuple(km * 1000.0 for km in distances_km)
    sums = _ShareSums(len(species), FacilityIndex(fac.geometries), len(fac.ids), radii_m, len(species_of))
    for fx in chunks:
        sums.add(fx, species_code, windows, max_gap_h * 3600.0)
    birds = np.bincount(species_code[sums.seen], minlength=len(species)) if len(species_of) else np.zeros(0, int)
    rows = []
    for i in range(len(fac.ids)):
        for s, name in enumerate(species):
            p = season_config.seasons(str(name))
            row = {S.FACILITY_ID: fac.ids[i], S.FACILITY_NAME: fac.names[i], S.FACILITY_KIND: fac.kinds[i],
                   S.SPECIES: str(name), BREEDING_WINDOW: f"{p.breeding_window[0]}..{p.breeding_window[1]}",
                   S.TRACKED_INDIVIDUALS: int(birds[s]), S.TRACKED_BIRD_DAYS: sums.total[s] / 86400.0}
            for k, km in enumerate(distances_km):
                row[SHARE_BREEDING_TIME_WITHIN_KM.format(km=km)] = (
                    sums.within[s, i, k] / sums.total[s] if sums.total[s] > 0 else np.nan)
            rows.append(row)
    cols = [S.FACILITY_ID, S.FACILITY_NAME, S.FACILITY_KIND, S.SPECIES, BREEDING_WINDOW, S.TRACKED_INDIVIDUALS,
            S.TRACKED_BIRD_DAYS] + [SHARE_BREEDING_TIME_WITHIN_KM.format(km=km) for km in distances_km]
    return pd.DataFrame(rows, columns=cols)


def _codes(fixes: pd.DataFrame) -> tuple[pd.Index, np.ndarray]:
    missing = [c for c in (S.INDIVIDUAL_ID, S.SPECIES, S.TIMESTAMP, S.LON, S.LAT) if c not in fixes.columns]
    if missing:
        raise ConfigError(f"fixes: missing column {missing[0]} (expected the fixes schema)")
    first = fixes.drop_duplicates(S.INDIVIDUAL_ID)
    ids = first[S.INDIVIDUAL_ID].astype(str).to_numpy()
    order = np.argsort(ids, kind="stable")
    return pd.Index(ids[order]), first[S.SPECIES].astype(str).to_numpy()[order]


# ---------------------------------------------------------------------------
# the core and the shell
# ---------------------------------------------------------------------------
def breeding_proximity(facilities: Any, *, stops: pd.DataFrame | None = None, fixes: pd.DataFrame | None = None,
                       sites: str | os.PathLike[str] | pd.DataFrame | None = None,
                       site_table: pd.DataFrame | None = None, distances_km=(1, 5, 10, 20), max_gap_h: float = 6.0,
                       season_config: SpeciesConfig | None = None, chunk_fixes: int = 1_000_000) -> BreedingProximity:
    """Distances from facilities to breeding sites and breeding-season tracked time near them.

    Parameters
    ----------
    facilities
        A :class:`~.config.ScenarioConfig` (or the path of a scenario
        file), a mapping id → facility, a list of facilities, or a
        GeoDataFrame with ``facility_id`` (``facilities.geojson``).
    stops
        Stops table: its breeding stops clustered into breeding sites
        (unless ``site_table`` is given).
    fixes
        Fixes table (``individual_id``, ``species``, ``timestamp``, ``lon``,
        ``lat``; ``qc_flags`` used when present): the breeding-season time
        shares. None: an empty ``time_shares`` table.
    sites
        A user's site list (path or DataFrame; :func:`read_site_list`):
        its ``breeding`` rows are breeding sites too.
    site_table
        The store's sites table: its breeding sites replace the clustering of ``stops``.
    distances_km
        Buffers (km), default 1, 5, 10, 20.
    max_gap_h
        Cap of each interval between fixes in the fix weights (hours).
    season_config
        Per-species breeding windows (default: the shipped defaults,
        :func:`flyway.analysis.params.load_species_config`).
    chunk_fixes
        Fixes per chunk of whole birds.

    Returns
    -------
    BreedingProximity
        ``distances`` and ``time_shares`` (see the class).

    Examples
    --------
    >>> prox = breeding_proximity("plan.toml", stops=stops, fixes=fixes,
    ...                           sites="flagship_sites.csv")          # doctest: +SKIP
    >>> prox.distances.query("distance_km < 10")                      # doctest: +SKIP
    """
    d_km = _check_distances(distances_km)
    if not (isinstance(max_gap_h, (int, float)) and not isinstance(max_gap_h, bool) and max_gap_h > 0
            and math.isfinite(max_gap_h)):
        raise ConfigError(f"max_gap_h = {max_gap_h!r}: expected a positive number of hours")
    fac = _facilities(facilities)
    distances = _site_distances(fac, breeding_sites(stops=stops, sites=sites, site_table=site_table))
    cfg = season_config or load_species_config()
    if fixes is None:
        shares = _time_shares(fac, [], np.array([], dtype=str), d_km, max_gap_h, cfg)
    else:
        codes, species_of = _codes(fixes)
        shares = _time_shares(fac, split_individuals(fix_arrays(fixes, None, codes), chunk_fixes), species_of,
                              d_km, max_gap_h, cfg)
    return BreedingProximity(distances, shares, d_km)


def _optional(store, name: str) -> pd.DataFrame | None:
    from flyway.errors import StoreError
    from flyway.store import read_derived

    try:
        table = read_derived(store, name)
    except StoreError:
        return None
    return table if len(table) else None


def proximity_from_store(store: str | os.PathLike[str], config: ScenarioConfig | str | os.PathLike[str],
                         sites_csv: str | os.PathLike[str] | None = None, *, distances_km=(1, 5, 10, 20),
                         max_gap_h: float = 6.0, species: Iterable[str] | None = None,
                         chunk_fixes: int = 1_000_000) -> BreedingProximity:
    """:func:`breeding_proximity` for the facilities of a scenario file and the birds of a store.

    Breeding sites: the store's sites table when it exists (ids as on the gap
    map), else its breeding stops clustered; plus the ``breeding`` rows of
    ``sites_csv``. Time shares from the committed fixes of every species in
    the store (or ``species``), read a group of birds at a time.
    """
    fac = _facilities(config if isinstance(config, ScenarioConfig) else load_scenario(config))
    d_km = _check_distances(distances_km)
    site_table = _optional(store, S.SITES.name)
    stops = None if site_table is not None else _optional(store, S.STOPS.name)
    if site_table is None and stops is None and sites_csv is None:
        log.warning("%s has no sites or stops table and no site list was given: no breeding-site distances", store)
    distances = _site_distances(fac, breeding_sites(stops=stops, sites=sites_csv, site_table=site_table))
    codes, species_of, chunks = store_fix_chunks(store, species, chunk_fixes=chunk_fixes)
    shares = _time_shares(fac, chunks(), species_of, d_km, max_gap_h, load_species_config())
    return BreedingProximity(distances, shares, d_km)


def write_proximity(result: BreedingProximity, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``breeding_distances.csv`` and ``breeding_time_shares.csv`` atomically (spreadsheet-safe)."""
    from flyway.export import write_safe_csv

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in (("breeding_distances", result.distances), ("breeding_time_shares", result.time_shares)):
        paths[name] = out / f"{name}.csv"
        write_safe_csv(frame, paths[name])
    return paths
