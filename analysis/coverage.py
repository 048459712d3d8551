"""Coverage and gaps: how much of each site, and of the birds' use of it, protected areas cover.

All geometry work happens in one equal-area projection (a Lambert azimuthal
equal-area centred on the sites unless the caller names another, e.g.
``EPSG:6933``). A site's ``protected_fraction`` is the area of the site inside
the *union* of the protected areas over the site's area, so overlapping
reserves never count twice; ``protected_by`` names the individual areas
(largest overlap first). Use-based figures weight by fixes or bird-days:
``protected_fix_fraction`` per site and the share of bird-days inside
protected areas per species x season x country. Gaps are the sites below a
protection threshold ranked by their unprotected bird-days.
"""
from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from flyway import schema as S
from flyway.errors import ConfigError, InputError
from flyway.export import csv_safe
from flyway.analysis.countries import stop_countries
from flyway.analysis.protected import (ProtectedAreaParams, clean_protected_areas, equal_area_crs,
                                       read_protected_areas)

log = logging.getLogger(__name__)
_CHUNK = 500_000  # fixes per point-in-polygon batch: bounds memory for 10M fixes


@dataclass(frozen=True)
class CoverageParams:
    """Parameters of the coverage and gap analysis.

    Parameters
    ----------
    gap_max_protected : float
        Sites whose protected share (use-weighted when stops or fixes are
        given, area otherwise) is below this are listed as gaps.
    crs : str, optional
        Equal-area CRS for areas (e.g. ``"EPSG:6933"``); default a Lambert
        azimuthal equal-area projection centred on the sites.
    protected : ProtectedAreaParams
        Cleaning and filters applied when ``protected_areas`` is a path or an
        uncleaned table.
    """

    gap_max_protected: float = 0.5
    crs: str | None = None
    protected: ProtectedAreaParams = field(default_factory=ProtectedAreaParams)

    def __post_init__(self) -> None:
        if not (0.0 < self.gap_max_protected <= 1.0):
            raise ConfigError(f"CoverageParams.gap_max_protected = {self.gap_max_protected!r}: "
                              "expected a fraction in (0, 1]")
        if self.crs is not None:
            try:
                crs = pyproj.CRS(self.crs)
            except pyproj.exceptions.CRSError as exc:
                raise ConfigError(f"CoverageParams.crs = {self.crs!r}: not a CRS ({exc})") from exc
            if not crs.is_projected:
                raise ConfigError(f"CoverageParams.crs = {self.crs!r}: expected a projected equal-area CRS")


@dataclass(frozen=True)
class CoverageResult:
    """What :func:`coverage` returns.

    Attributes
    ----------
    sites : geopandas.GeoDataFrame
        The sites with ``protected_fraction``, ``protected_by`` and
        ``protected_fix_fraction`` filled.
    by_group : pandas.DataFrame
        Per species x season x country: stops, bird-days, protected bird-days
        and ``protected_share``.
    gaps : pandas.DataFrame
        Sites below the protection threshold, ranked by unprotected bird-days.
    protected_areas : geopandas.GeoDataFrame
        The cleaned protected areas used.
    """

    sites: gpd.GeoDataFrame
    by_group: pd.DataFrame
    gaps: pd.DataFrame
    protected_areas: gpd.GeoDataFrame

    def to_csv(self, folder: str | os.PathLike[str]) -> list[Path]:
        """Write ``sites.csv``, ``coverage_by_group.csv`` and ``gaps.csv`` (no geometry).

        Cells starting with ``= + - @`` (and tab/CR) are prefixed with ``'`` so
        a spreadsheet never runs a protected-area name as a formula.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for name, frame in (("sites", self.sites), ("coverage_by_group", self.by_group), ("gaps", self.gaps)):
            path = folder / f"{name}.csv"
            tmp = path.with_suffix(".csv.tmp")
            csv_safe(pd.DataFrame(frame.drop(columns=S.GEOMETRY, errors="ignore"))).to_csv(
                tmp, index=False, quoting=csv.QUOTE_MINIMAL)
            os.replace(tmp, path)
            out.append(path)
        return out


def _as_cleaned(protected_areas, params: ProtectedAreaParams) -> gpd.GeoDataFrame:
    if isinstance(protected_areas, gpd.GeoDataFrame) and {S.PA_ID, S.AREA_KM2} <= set(protected_areas.columns):
        return protected_areas
    return clean_protected_areas(read_protected_areas(protected_areas), params)


def _project(geoms: np.ndarray, crs: pyproj.CRS) -> np.ndarray:
    tr = pyproj.Transformer.from_crs(S.CRS, crs, always_xy=True)
    return shapely.transform(geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def _project_points(lon: np.ndarray, lat: np.ndarray, crs: pyproj.CRS) -> np.ndarray:
    x, y = pyproj.Transformer.from_crs(S.CRS, crs, always_xy=True).transform(lon, lat)
    return shapely.points(x, y)


def _site_overlaps(site_geoms: np.ndarray, pa_geoms: np.ndarray, pas: gpd.GeoDataFrame):
    """Protected fraction (union-based) and the overlapping areas of each site."""
    n = len(site_geoms)
    site_area = shapely.area(site_geoms)
    si, pj = shapely.STRtree(pa_geoms).query(site_geoms, predicate="intersects")
    pieces = shapely.intersection(site_geoms[si], pa_geoms[pj])
    area = shapely.area(pieces)
    keep = area > 0
    si, pj, pieces, area = si[keep], pj[keep], pieces[keep], area[keep]
    protected = np.bincount(si, area, minlength=n)
    many = np.flatnonzero(np.bincount(si, minlength=n) > 1)
    for s in many:  # sites touched by several areas: union first, so overlaps count once
        protected[s] = shapely.area(shapely.union_all(pieces[si == s]))
    fraction = np.clip(np.divide(protected, site_area, out=np.zeros(n), where=site_area > 0), 0.0, 1.0)
    labels = (pas[S.PA_NAME].fillna("").astype(str) + " (" + pas[S.PA_ID].astype(str) + ")").to_numpy()
    by = pd.DataFrame({"s": si, "label": labels[pj], "a": area}).sort_values(["s", "a", "label"],
                                                                             ascending=[True, False, True])
    joined = by.groupby("s")["label"].agg(";".join)
    protected_by = np.full(n, None, dtype=object)
    protected_by[joined.index.to_numpy()] = joined.to_numpy()
    return fraction, protected_by


def _inside_any(points: np.ndarray, polygons: np.ndarray) -> np.ndarray:
    """Which points lie in (or on) any polygon.

    The points go into the tree and the polygons are the (prepared) queries:
    about twice as fast as testing each point against a tree of polygons.
    """
    inside = np.zeros(len(points), dtype=bool)
    if len(points) and len(polygons):
        inside[shapely.STRtree(points).query(polygons, predicate="intersects")[1]] = True
    return inside


def _use_in_sites(lon, lat, species, weight, site_geoms, site_species, pa_geoms, crs):
    """Per site: total weight of the points inside it, and the part inside protected areas."""
    n_sites = len(site_geoms)
    total = np.zeros(n_sites)
    protected = np.zeros(n_sites)
    for s in range(0, len(lon), _CHUNK):
        pts = _project_points(lon[s:s + _CHUNK], lat[s:s + _CHUNK], crs)
        si, pi = shapely.STRtree(pts).query(site_geoms, predicate="intersects")
        same = species[s:s + _CHUNK][pi] == site_species[si]
        si, pi = si[same], pi[same]
        w = weight[s:s + _CHUNK][pi]
        total += np.bincount(si, w, minlength=n_sites)
        used, where = np.unique(pi, return_inverse=True)
        protected += np.bincount(si, w * _inside_any(pts[used], pa_geoms)[where], minlength=n_sites)
    return total, protected


def coverage(sites: gpd.GeoDataFrame, protected_areas: str | os.PathLike[str] | gpd.GeoDataFrame, *,
             stops: pd.DataFrame | None = None, fixes: pd.DataFrame | None = None,
             params: CoverageParams | None = None) -> CoverageResult:
    """Protected-area coverage of sites and of the birds' use, and the ranked gaps.

    Parameters
    ----------
    sites : geopandas.GeoDataFrame
        Sites from :func:`flyway.analysis.sites.find_sites` (or any polygons
        with the site columns species, site_id, bird_days).
    protected_areas : path or GeoDataFrame
        A WDPA file / polygons with names (read and cleaned here) or the
        output of :func:`flyway.analysis.protected.clean_protected_areas`.
    stops : pandas.DataFrame, optional
        Stops (:data:`flyway.schema.STOPS`): bird-days per species x season x
        country inside protected areas (a missing country is looked up in
        the packaged Natural Earth outlines), and ``protected_fix_fraction`` from
        stop centroids weighted by their fixes when ``fixes`` is not given.
    fixes : pandas.DataFrame, optional
        Fixes (species, lon, lat): ``protected_fix_fraction`` = share of the
        fixes inside a site that lie inside a protected area.
    params : CoverageParams, optional

    Returns
    -------
    CoverageResult

    Examples
    --------
    >>> cov = coverage(sites, protected_areas="wdpa.gpkg", stops=stops)
    >>> cov.gaps.head(10)
    """
    p = params or CoverageParams()
    for name in (S.SITE_ID, S.SPECIES, S.BIRD_DAYS):
        if name not in sites.columns:
            raise InputError(f"sites table lacks column {name}", column=name)
    pas = _as_cleaned(protected_areas, p.protected)
    sites = sites.to_crs(S.CRS).reset_index(drop=True) if sites.crs is not None else sites.set_crs(S.CRS)
    centres = shapely.centroid(sites.geometry.to_numpy())
    crs = pyproj.CRS(p.crs) if p.crs else equal_area_crs(shapely.get_x(centres), shapely.get_y(centres))
    site_geoms = shapely.make_valid(_project(sites.geometry.to_numpy(), crs))
    pa_geoms = shapely.make_valid(_project(pas.geometry.to_numpy(), crs))
    fraction, protected_by = _site_overlaps(site_geoms, pa_geoms, pas)
    out = sites.copy()
    out[S.PROTECTED_FRACTION] = fraction
    out[S.PROTECTED_BY] = protected_by
    out[S.AREA_KM2] = shapely.area(site_geoms) / 1e6

    site_species = out[S.SPECIES].astype(str).to_numpy()
    use_frac = np.full(len(out), np.nan)
    source = fixes if fixes is not None else stops
    if source is not None:
        weight = (np.ones(len(source)) if source is fixes
                  else source[S.N_FIXES].to_numpy(float) if S.N_FIXES in source else np.ones(len(source)))
        total, prot = _use_in_sites(source[S.LON].to_numpy(float), source[S.LAT].to_numpy(float),
                                    source[S.SPECIES].astype(str).to_numpy(), weight,
                                    site_geoms, site_species, pa_geoms, crs)
        use_frac = np.divide(prot, total, out=np.full(len(out), np.nan), where=total > 0)
    out[S.PROTECTED_FIX_FRACTION] = use_frac
    by_group = _by_group(out, stops, pa_geoms, crs)
    gaps = _gaps(out, p.gap_max_protected)
    log.info("coverage: %d sites, %d protected areas, %d gaps", len(out), len(pas), len(gaps))
    return CoverageResult(out, by_group, gaps, pas)


def _by_group(sites: gpd.GeoDataFrame, stops: pd.DataFrame | None, pa_geoms, crs) -> pd.DataFrame:
    keys = [S.SPECIES, S.SEASON, S.COUNTRY]
    if stops is None:  # area-weighted from the sites alone
        frame = pd.DataFrame({S.SPECIES: sites[S.SPECIES], S.SEASON: pd.NA, S.COUNTRY: pd.NA,
                              S.N_STOPS: sites[S.N_STOPS] if S.N_STOPS in sites else 0,
                              S.BIRD_DAYS: sites[S.BIRD_DAYS],
                              S.PROTECTED_BIRD_DAYS: sites[S.BIRD_DAYS] * sites[S.PROTECTED_FRACTION]})
    else:
        inside = np.zeros(len(stops), dtype=bool)
        lon, lat = stops[S.LON].to_numpy(float), stops[S.LAT].to_numpy(float)
        for s in range(0, len(stops), _CHUNK):
            inside[s:s + _CHUNK] = _inside_any(_project_points(lon[s:s + _CHUNK], lat[s:s + _CHUNK], crs), pa_geoms)
        days = stops[S.DURATION_H].to_numpy(float) / 24.0
        frame = pd.DataFrame({S.SPECIES: stops[S.SPECIES].astype(str),
                              S.SEASON: stops[S.SEASON] if S.SEASON in stops else pd.NA,
                              S.COUNTRY: stop_countries(stops),
                              S.N_STOPS: 1, S.BIRD_DAYS: days, S.PROTECTED_BIRD_DAYS: days * inside})
    table = frame.groupby(keys, dropna=False, sort=True)[[S.N_STOPS, S.BIRD_DAYS, S.PROTECTED_BIRD_DAYS]].sum()
    table = table.reset_index()
    table[S.PROTECTED_SHARE] = np.divide(table[S.PROTECTED_BIRD_DAYS].to_numpy(float),
                                         table[S.BIRD_DAYS].to_numpy(float),
                                         out=np.full(len(table), np.nan), where=table[S.BIRD_DAYS].to_numpy() > 0)
    return table


def _gaps(sites: gpd.GeoDataFrame, max_protected: float) -> pd.DataFrame:
    share = sites[S.PROTECTED_FIX_FRACTION].fillna(sites[S.PROTECTED_FRACTION]).to_numpy(float)
    gaps = pd.DataFrame(sites.drop(columns=S.GEOMETRY))
    gaps[S.UNPROTECTED_BIRD_DAYS] = gaps[S.BIRD_DAYS].to_numpy(float) * (1.0 - share)
    gaps = gaps.loc[share < max_protected]
    sort_by = [S.UNPROTECTED_BIRD_DAYS] + ([S.SHARE_OF_TRACKED] if S.SHARE_OF_TRACKED in gaps else []) + [S.SITE_ID]
    gaps = gaps.sort_values(sort_by, ascending=[False] * (len(sort_by) - 1) + [True]).reset_index(drop=True)
    gaps.insert(0, S.GAP_RANK, np.arange(1, len(gaps) + 1))
    return gaps
