"""The gap map: where the birds stop, which of those places no reserve covers, where infrastructure is close.

:func:`build_gap_map` is the pure core: tables in, a :class:`folium.Map` out, with
toggleable layers (tracks per species, stops per kind, sites coloured by
protected fraction, the ranked coverage gaps, protected areas, energy
infrastructure, a use-intensity heatmap, Natural Earth country outlines) and
legends. :func:`gap_map` is the thin shell that reads whatever the store holds
and skips the layers whose tables do not exist yet.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from flyway import schema as S
from flyway.errors import ConfigError, StoreError
from flyway.maps import fix_layers as F
from flyway.maps import layers as L
from flyway.maps.public import PublicParams, generalise_fixes, generalise_sites, generalise_stops

log = logging.getLogger(__name__)

FIX_COLUMNS = [S.INDIVIDUAL_ID, S.SPECIES, S.TIMESTAMP, S.LON, S.LAT, S.QC_FLAGS]


@dataclass(frozen=True)
class MapParams:
    """What the gap map shows and how much of it.

    Parameters
    ----------
    species, seasons : tuple of str, optional
        Show only these species / seasons (``2024-spring`` ...); ``None`` = all.
    max_track_vertices : int
        Vertex budget of all tracks together (Douglas-Peucker tolerance grows until it holds).
    simplify_m : float
        Starting Douglas-Peucker tolerance in metres.
    heat_cell_deg : float
        Smallest heatmap cell (degrees); cells grow until ``max_heat_cells`` hold.
    max_heat_cells, max_stop_markers, max_facility_markers : int
        Caps that keep a 10M-fix map small.
    top_gaps : int
        Ranked gaps highlighted.
    public : PublicParams, optional
        Generalise sensitive records (breeding sites ...) before drawing.
    """

    species: tuple[str, ...] | None = None
    seasons: tuple[str, ...] | None = None
    max_track_vertices: int = 150_000
    simplify_m: float = 250.0
    heat_cell_deg: float = 0.05
    max_heat_cells: int = 30_000
    max_stop_markers: int = 20_000
    max_facility_markers: int = 5_000
    top_gaps: int = 20
    public: PublicParams | None = None

    def __post_init__(self) -> None:
        for name in ("species", "seasons"):
            v = getattr(self, name)
            if isinstance(v, str):
                object.__setattr__(self, name, (v,))
            elif v is not None:
                object.__setattr__(self, name, tuple(str(x) for x in v))
        for name in ("max_track_vertices", "max_heat_cells", "max_stop_markers", "max_facility_markers", "top_gaps"):
            v = getattr(self, name)
            if not (isinstance(v, (int, np.integer)) and v >= 1):
                raise ConfigError(f"MapParams.{name} = {v!r}: expected a positive integer")
        if not (np.isfinite(self.simplify_m) and 0 < self.simplify_m <= 100_000):
            raise ConfigError(f"MapParams.simplify_m = {self.simplify_m!r}: expected metres in (0, 100000]")
        if not (np.isfinite(self.heat_cell_deg) and 0.001 <= self.heat_cell_deg <= 5):
            raise ConfigError(f"MapParams.heat_cell_deg = {self.heat_cell_deg!r}: expected degrees in [0.001, 5]")
        if self.public is not None and not isinstance(self.public, PublicParams):
            raise ConfigError(f"MapParams.public = {self.public!r}: expected a PublicParams or None")


# ---------------------------------------------------------------------------
# filters (species, season)
# ---------------------------------------------------------------------------
def _keep_species(frame, species):
    if frame is None or species is None or S.SPECIES not in frame:
        return frame
    return frame.loc[frame[S.SPECIES].astype(str).isin(species).to_numpy()]


def _season_fixes(fixes: pd.DataFrame, stops: pd.DataFrame) -> pd.DataFrame:
    """Fixes of each individual between its first selected-season stop start and last stop end."""
    win = stops.groupby(stops[S.INDIVIDUAL_ID].astype(str)).agg(
        first=(S.START_TIME, "min"), last=(S.END_TIME, "max"))
    ind = fixes[S.INDIVIDUAL_ID].astype(str)
    t = pd.to_datetime(fixes[S.TIMESTAMP], utc=True)
    first = pd.to_datetime(ind.map(win["first"]), utc=True)
    last = pd.to_datetime(ind.map(win["last"]), utc=True)
    return fixes.loc[((t >= first) & (t <= last)).fillna(False).to_numpy(bool)]


def _keep_seasons(table, wanted: set[str]):
    if table is None or S.SEASONS not in table:
        return table
    used = table[S.SEASONS].astype("string").fillna("").str.split(";").map(lambda s: bool(wanted & set(s)))
    return table.loc[used.to_numpy(bool)]


def filter_tables(p: MapParams, fixes=None, stops=None, sites=None, gaps=None):
    """Apply the species and season filters of ``p`` to the tables that are given."""
    fixes, stops, sites, gaps = (_keep_species(t, p.species) for t in (fixes, stops, sites, gaps))
    if p.seasons is not None:
        wanted = set(p.seasons)
        if stops is not None:
            stops = stops.loc[stops[S.SEASON].astype("string").isin(wanted).fillna(False).to_numpy(bool)]
            if fixes is not None:
                fixes = _season_fixes(fixes, stops)
        sites, gaps = _keep_seasons(sites, wanted), _keep_seasons(gaps, wanted)
    return fixes, stops, sites, gaps


def _bounds(*frames) -> tuple[float, float, float, float] | None:
    lon = np.concatenate([f[S.LON].to_numpy(float) for f in frames if f is not None and len(f)] or [np.empty(0)])
    lat = np.concatenate([f[S.LAT].to_numpy(float) for f in frames if f is not None and len(f)] or [np.empty(0)])
    ok = np.isfinite(lon) & np.isfinite(lat)
    if not ok.any():
        return None
    return float(lon[ok].min()), float(lat[ok].min()), float(lon[ok].max()), float(lat[ok].max())


# ---------------------------------------------------------------------------
# the core
# ---------------------------------------------------------------------------
def build_gap_map(*, fixes: pd.DataFrame | None = None, stops: pd.DataFrame | None = None,
                  sites: gpd.GeoDataFrame | None = None, gaps: pd.DataFrame | None = None,
                  protected_areas: gpd.GeoDataFrame | None = None, infrastructure: gpd.GeoDataFrame | None = None,
                  params: MapParams | None = None, self_contained: bool = False,
                  scenario: dict | None = None) -> folium.Map:
    """The gap map from tables (every table optional; missing ones give no layer).

    Parameters
    ----------
    fixes : pandas.DataFrame, optional
        Fixes (individual_id, species, timestamp, lon, lat, optional qc_flags)
        sorted by individual and time. QC-flagged fixes (``qc_flags != 0``)
        are left out of tracks and the heatmap.
    stops : pandas.DataFrame, optional
        Stops (:data:`flyway.schema.STOPS`).
    sites : geopandas.GeoDataFrame, optional
        Sites (:data:`flyway.schema.SITES`), e.g. ``coverage(...).sites``.
    gaps : pandas.DataFrame, optional
        Ranked gaps (``coverage(...).gaps``): the top ``params.top_gaps`` are outlined.
    protected_areas, infrastructure : geopandas.GeoDataFrame, optional
        Cleaned protected areas; facilities from ``read_infrastructure``.
    params : MapParams, optional
    self_contained : bool
        Tiles off by default (the map must open offline); see :func:`flyway.maps.offline.save_map`.
    scenario : dict, optional
        Outputs of ``flyway scenario`` (:func:`flyway.analysis.scenario.report.read_outputs`): the
        proposed facilities with their expected collisions in popups, and the collision-sensitivity grid.

    Returns
    -------
    folium.Map

    Examples
    --------
    >>> m = build_gap_map(stops=stops, sites=cov.sites, gaps=cov.gaps, protected_areas=cov.protected_areas)
    >>> save_map(m, "gaps.html", self_contained=True)  # doctest: +SKIP
    """
    p = params or MapParams()
    fixes, stops, sites, gaps = filter_tables(p, fixes, stops, sites, gaps)
    if p.public is not None:
        if fixes is not None and stops is not None:
            fixes = generalise_fixes(fixes, stops, p.public)
        if stops is not None:
            stops = generalise_stops(stops, p.public)
        if sites is not None:
            sites = generalise_sites(sites, p.public)
    m = L.new_map(_bounds(fixes, stops, sites), self_contained=self_contained)
    if protected_areas is not None and len(protected_areas):
        L.add_protected_areas(m, protected_areas)
    if fixes is not None and len(fixes):
        clean = fixes if S.QC_FLAGS not in fixes else fixes.loc[(fixes[S.QC_FLAGS].to_numpy() == 0)]
        F.add_heatmap(m, F.heat_cells(clean, p.heat_cell_deg, p.max_heat_cells))
        F.add_tracks(m, F.simplified_tracks(clean, p.max_track_vertices, p.simplify_m))
    if stops is not None and len(stops):
        L.add_stops(m, stops, max_markers=p.max_stop_markers, show=False)
    if sites is not None and len(sites):
        L.add_sites(m, sites)
        if gaps is not None and len(gaps):
            L.add_gaps(m, gaps, sites, top=p.top_gaps)
    if infrastructure is not None and len(infrastructure):
        L.add_infrastructure(m, infrastructure, max_markers=p.max_facility_markers)
    if scenario is not None:
        from flyway.maps.scenario_layers import add_facilities, add_sensitivity

        # a fine grid of in-flight time can show colonies through local flights: not in public maps
        if scenario.get("sensitivity") is not None and p.public is None:
            add_sensitivity(m, scenario["sensitivity"])
        if scenario.get("facilities") is not None and len(scenario["facilities"]):
            add_facilities(m, scenario["facilities"], collisions=scenario.get("collisions"))
    if p.public is not None:
        L.add_legend(m, "Public export", [], note=p.public.describe(), position="bottomright")
    L.finish_legends(m)
    folium.LayerControl(collapsed=False).add_to(m)
    return m


# ---------------------------------------------------------------------------
# the store shell
# ---------------------------------------------------------------------------
def as_geodataframe(frame: pd.DataFrame) -> gpd.GeoDataFrame:
    """A store table with a WKB ``geometry`` column as a GeoDataFrame (EPSG:4326)."""
    if isinstance(frame, gpd.GeoDataFrame):
        return frame
    geoms = shapely.from_wkb(np.asarray(frame[S.GEOMETRY].to_numpy(), dtype=object))
    return gpd.GeoDataFrame(frame.drop(columns=S.GEOMETRY), geometry=gpd.GeoSeries(geoms, index=frame.index),
                            crs=S.CRS)


# derived tables that live in a stage's folder rather than their own (analysis/site_runner.py)
_FOLDER_OF = {"gaps": "coverage", "coverage_by_group": "coverage", "protected_areas": "coverage",
              "infrastructure": "exposure"}


def _optional_table(store, name: str) -> pd.DataFrame | None:
    from flyway.store import read_derived

    try:
        table = read_derived(store, name, folder=_FOLDER_OF.get(name))
    except StoreError:
        return None
    return table if len(table) else None


def _as_frame(value, reader) -> gpd.GeoDataFrame | None:
    if value is None or isinstance(value, gpd.GeoDataFrame):
        return value
    return reader(value)


def load_store_tables(store: str | os.PathLike[str], *, protected_areas=None, infrastructure=None,
                      species=None, with_fixes: bool = True) -> dict:
    """Read what the store has for a map or report; derive sites/coverage/exposure when their inputs exist.

    Returns a dict with keys fixes, stops, sites, gaps, protected_areas,
    infrastructure, coverage (``CoverageResult`` or None), coverage_by_group;
    missing ones are None.
    """
    from flyway.store import read_fixes

    species = (species,) if isinstance(species, str) else species
    stops = _optional_table(store, "stops")
    sites = _optional_table(store, "sites")
    sites = as_geodataframe(sites) if sites is not None else None
    if sites is None and stops is not None:
        from flyway.analysis.sites import find_sites

        log.info("no sites table in %s: clustering the stops for the map", store)
        sites = find_sites(stops)
    gaps = _optional_table(store, "gaps")
    pas = _as_frame(protected_areas, _read_protected)
    if pas is None and (t := _optional_table(store, "protected_areas")) is not None:
        pas = as_geodataframe(t)
    fac = _as_frame(infrastructure, _read_infrastructure)
    if fac is None and (t := _optional_table(store, "infrastructure")) is not None:
        fac = as_geodataframe(t)
    cov = None
    if protected_areas is not None and pas is not None and sites is not None and len(sites):
        # given a file: measure coverage now (a store's own coverage run already filled the sites)
        from flyway.analysis.coverage import coverage

        cov = coverage(sites, pas, stops=stops)
        sites, pas = cov.sites, cov.protected_areas
        gaps = cov.gaps if gaps is None else gaps
    if infrastructure is not None and fac is not None and sites is not None and len(sites):
        from flyway.analysis.infrastructure import exposure

        sites = exposure(fac, sites=sites).sites
    fixes = None
    if with_fixes:
        try:
            fixes = read_fixes(store, species=list(species) if species else None, columns=FIX_COLUMNS)
        except StoreError:
            fixes = None
    by_group = cov.by_group if cov is not None else _optional_table(store, "coverage_by_group")
    return {"fixes": fixes, "stops": stops, "sites": sites, "gaps": gaps, "protected_areas": pas,
            "infrastructure": fac, "coverage": cov, "coverage_by_group": by_group}


def _read_protected(path):
    from flyway.analysis.protected import clean_protected_areas

    return clean_protected_areas(path)


def _read_infrastructure(paths):
    from flyway.analysis.infrastructure import read_infrastructure

    return read_infrastructure(paths)


def gap_map(store: str | os.PathLike[str], *, protected_areas=None, infrastructure=None,
            params: MapParams | None = None, self_contained: bool = False, public: bool = False,
            scenario: str | os.PathLike[str] | None = None) -> folium.Map:
    """The gap map of a store (what ``flyway map --store STORE`` draws).

    Parameters
    ----------
    store : path
        The flyway store. Stops, sites, gaps and fixes are read if present;
        without a sites table the stops are clustered here.
    protected_areas : path or GeoDataFrame, optional
        WDPA file or cleaned polygons: fills protected fractions and gaps.
    infrastructure : path, list of paths or GeoDataFrame, optional
        Facility files (GPPD CSV, OSM GeoJSON): the infrastructure layer and
        each site's nearest facility.
    params : MapParams, optional
    self_contained : bool
        Build for offline use (tiles off; save with ``save_map(..., self_contained=True)``).
    public : bool
        Generalise sensitive records with the default :class:`PublicParams`
        (ignored when ``params.public`` is set).
    scenario : path, optional
        The ``--out`` folder of a ``flyway scenario`` run: the proposed facilities and the sensitivity grid.

    Returns
    -------
    folium.Map

    Examples
    --------
    >>> flyway.gap_map(store="birds/").save("map.html")  # doctest: +SKIP
    """
    p = params or MapParams()
    if public and p.public is None:
        from dataclasses import replace

        p = replace(p, public=PublicParams())
    t = load_store_tables(store, protected_areas=protected_areas, infrastructure=infrastructure, species=p.species)
    scen = None
    if scenario is not None:
        from flyway.analysis.scenario.report import read_outputs

        scen = read_outputs(scenario)
    return build_gap_map(fixes=t["fixes"], stops=t["stops"], sites=t["sites"], gaps=t["gaps"],
                         protected_areas=t["protected_areas"], infrastructure=t["infrastructure"], params=p,
                         self_contained=self_contained, scenario=scen)
