"""Protected areas: read a WDPA file (or any named polygons) and clean it as wdpar does.

The user supplies the file (shapefile, GeoPackage, GeoJSON or GeoParquet);
flyway never ships WDPA data (its terms forbid redistribution). WDPA field
names, including the spellings Protected Planet introduced in November 2025
(``PRNT_ISO3``, ``REALM``, ``SITE_TYPE``), map to flyway column names through
one alias table, :data:`WDPA_ALIASES`.

Cleaning follows ``prioritizr/wdpar::wdpa_clean`` (Butchart et al. 2015; Runge
et al. 2015): keep status Designated / Inscribed / Established (so Proposed,
Adopted and Not Reported go), drop UNESCO-MAB Biosphere Reserves, drop point
records without a reported area and buffer the others to circles of that area
(radius sqrt(REP_AREA / pi), Visconti et al. 2013) in an equal-area projection,
repair invalid geometry and drop slivers. Overlaps are dissolved before area
is measured (:func:`dissolve_protected_areas`), so no square metre counts twice.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from flyway import schema as S
from flyway.errors import ConfigError, InputError

log = logging.getLogger(__name__)

# flyway column -> accepted spellings in the source file (first match wins; case-insensitive)
WDPA_ALIASES: dict[str, tuple[str, ...]] = {
    S.PA_ID: ("WDPAID", "WDPA_ID", "SITE_ID", "id"),
    S.PA_NAME: ("NAME", "NAME_ENG", "ORIG_NAME", "name_en"),
    S.DESIGNATION: ("DESIG_ENG", "DESIG", "designation"),
    S.IUCN_CAT: ("IUCN_CAT",),
    S.STATUS: ("STATUS",),
    S.STATUS_YEAR: ("STATUS_YR", "STATUS_YEAR"),
    S.ISO3: ("ISO3",),
    S.PARENT_ISO3: ("PRNT_ISO3", "PARENT_ISO3", "PARENT_ISO"),
    S.REALM: ("REALM", "MARINE"),
    S.SITE_TYPE: ("SITE_TYPE", "PA_DEF"),
    S.REP_AREA_KM2: ("REP_AREA",),
    S.GIS_AREA_KM2: ("GIS_AREA",),
}
# codes of the fields deprecated in November 2025, translated to the new labels
_MARINE_CODES = {"0": "Terrestrial", "1": "Coastal", "2": "Marine"}
_PA_DEF_CODES = {"1": "PA", "0": "OECM"}
IUCN_CATEGORIES = ("Ia", "Ib", "II", "III", "IV", "V", "VI",
                   "Not Reported", "Not Applicable", "Not Assigned")
DEFAULT_STATUS = "Designated"  # polygons without a STATUS field (plain named polygons)
_WDPA_MARKERS = (S.STATUS, S.DESIGNATION, S.REP_AREA_KM2)
_QUAD_SEGS = 32
_POLYGON_CIRCLE_SCALE = float(np.sqrt(2 * np.pi / (4 * _QUAD_SEGS * np.sin(2 * np.pi / (4 * _QUAD_SEGS)))))
_OUTPUT = [S.PA_ID, S.PA_NAME, S.DESIGNATION, S.IUCN_CAT, S.STATUS, S.STATUS_YEAR, S.ISO3,
           S.PARENT_ISO3, S.REALM, S.SITE_TYPE, S.REP_AREA_KM2, S.GIS_AREA_KM2]


@dataclass(frozen=True)
class ProtectedAreaParams:
    """What counts as protected (wdpar defaults) and optional filters.

    Parameters
    ----------
    keep_status : tuple of str
        Statuses kept (case-insensitive). wdpar keeps Designated, Inscribed,
        Established; Proposed, Adopted and Not Reported are dropped.
    exclude_unesco_mab : bool
        Drop UNESCO-MAB Biosphere Reserves (their buffer and transition zones
        are not protected; Coetzer et al. 2014).
    designations : tuple of str, optional
        Keep only these English designations (case-insensitive), e.g.
        ``("Ramsar Site, Wetland of International Importance",)``.
    iucn_categories : tuple of str, optional
        Keep only these IUCN categories (from :data:`IUCN_CATEGORIES`).
    status_year_max : int, optional
        "What was protected in that year": keep areas whose status year is at
        most this. Areas of unknown year (0 in WDPA) are kept only with
        ``include_unknown_year``.
    include_unknown_year : bool
        See ``status_year_max``.
    site_types : tuple of str, optional
        ``("PA",)`` leaves out OECMs.
    min_area_m2 : float
        Slivers smaller than this are dropped (wdpar: 0.1 m^2).
    """

    keep_status: tuple[str, ...] = ("Designated", "Inscribed", "Established")
    exclude_unesco_mab: bool = True
    designations: tuple[str, ...] | None = None
    iucn_categories: tuple[str, ...] | None = None
    status_year_max: int | None = None
    include_unknown_year: bool = False
    site_types: tuple[str, ...] | None = None
    min_area_m2: float = 0.1

    def __post_init__(self) -> None:
        for name in ("keep_status", "designations", "iucn_categories", "site_types"):
            val = getattr(self, name)
            if val is None:
                continue
            if isinstance(val, str) or not all(isinstance(v, str) for v in val) or not val:
                raise ConfigError(f"ProtectedAreaParams.{name} = {val!r}: expected a non-empty tuple of strings")
            object.__setattr__(self, name, tuple(val))
        if self.iucn_categories is not None:
            bad = [c for c in self.iucn_categories if c.lower() not in {k.lower() for k in IUCN_CATEGORIES}]
            if bad:
                raise ConfigError(f"ProtectedAreaParams.iucn_categories: unknown {bad}; "
                                  f"allowed: {', '.join(IUCN_CATEGORIES)}")
        if self.status_year_max is not None and not (
                isinstance(self.status_year_max, (int, np.integer)) and 1800 <= self.status_year_max <= 2200):
            raise ConfigError(f"ProtectedAreaParams.status_year_max = {self.status_year_max!r}: "
                              "expected a year between 1800 and 2200")
        if not (np.isfinite(self.min_area_m2) and self.min_area_m2 >= 0):
            raise ConfigError(f"ProtectedAreaParams.min_area_m2 = {self.min_area_m2!r}: expected >= 0")


def equal_area_crs(lon: np.ndarray, lat: np.ndarray) -> pyproj.CRS:
    """A Lambert azimuthal equal-area CRS centred on the given positions.

    Equal-area everywhere (only shapes distort far from the centre), and
    continuous across the antimeridian, so areas of sites and protected areas
    anywhere in the flyway are exact up to the ellipsoid.
    """
    lon = np.radians(np.asarray(lon, float)[np.isfinite(lon)])
    lat = np.asarray(lat, float)[np.isfinite(lat)]
    if lon.size == 0:
        lon0, lat0 = 0.0, 0.0
    else:
        lon0 = float(np.degrees(np.arctan2(np.sin(lon).mean(), np.cos(lon).mean())))
        lat0 = float(np.clip(lat.mean(), -89.0, 89.0))
    return pyproj.CRS.from_proj4(f"+proj=laea +lat_0={lat0:.4f} +lon_0={lon0:.4f} "
                                 "+x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs")


def _read_any(path: Path, layer: str | None) -> gpd.GeoDataFrame:
    if not path.exists():
        raise InputError("file not found", file=str(path))
    try:
        if path.suffix.lower() in (".parquet", ".geoparquet"):
            return gpd.read_parquet(path)
        return gpd.read_file(path, layer=layer)
    except Exception as exc:  # pyogrio/pyarrow raise many types; the user needs the file name
        raise InputError(f"cannot read protected areas ({exc})", file=str(path)) from exc


def _resolve(columns: list[str], name_column: str | None) -> dict[str, str]:
    """Source column for each flyway column, through the alias table."""
    lower = {c.lower(): c for c in columns}
    found = {}
    for target, spellings in WDPA_ALIASES.items():
        for sp in spellings:
            if sp.lower() in lower:
                found[target] = lower[sp.lower()]
                break
    if name_column is not None:
        if name_column not in columns:
            raise InputError(f"name column {name_column!r} not found; columns are {', '.join(columns)}",
                             column=name_column)
        found[S.PA_NAME] = name_column
    return found


def read_protected_areas(source: str | os.PathLike[str] | gpd.GeoDataFrame, *, layer: str | None = None,
                         name_column: str | None = None) -> gpd.GeoDataFrame:
    """Read protected areas into flyway columns (no cleaning yet).

    Parameters
    ----------
    source : path or GeoDataFrame
        A WDPA download (shapefile, GeoPackage, GeoJSON, GeoParquet; polygon
        and point layers alike) or any polygons with a name column.
    layer : str, optional
        Layer of a multi-layer file (GeoPackage / File Geodatabase).
    name_column : str, optional
        The name column of non-WDPA polygons when it is not ``NAME``/``name``.

    Returns
    -------
    geopandas.GeoDataFrame
        Columns ``pa_id, pa_name, designation, iucn_cat, status, status_year,
        iso3, parent_iso3, realm, site_type, rep_area_km2, gis_area_km2`` and
        the geometry, in EPSG:4326. Old WDPA spellings and codes (``MARINE``
        0/1/2, ``PA_DEF`` 1/0, ``PARENT_ISO3``) are translated.

    Raises
    ------
    InputError
        The file cannot be read, a WDPA file lacks ``STATUS`` or
        ``DESIG_ENG``, point records lack ``REP_AREA``, or there is no name.
    """
    label = "<GeoDataFrame>"
    if isinstance(source, gpd.GeoDataFrame):
        raw = source.copy()
    else:
        label = str(source)
        raw = _read_any(Path(source), layer)
    cols = [c for c in raw.columns if c != raw.geometry.name]
    found = _resolve(cols, name_column)
    is_wdpa = any(k in found for k in _WDPA_MARKERS)
    if S.PA_NAME not in found:
        raise InputError("no name column: expected NAME (WDPA) or pass name_column=", file=label)
    if is_wdpa:
        missing = [WDPA_ALIASES[k][0] for k in (S.STATUS, S.DESIGNATION) if k not in found]
        if missing:
            raise InputError(f"WDPA file lacks {', '.join(missing)} (accepted spellings: "
                             + "; ".join("/".join(WDPA_ALIASES[k]) for k in (S.STATUS, S.DESIGNATION)) + ")",
                             file=label)
    geom = raw.geometry
    if raw.crs is None:
        log.warning("%s has no CRS; assuming EPSG:4326", label)
    elif not pyproj.CRS(raw.crs).equals(pyproj.CRS(S.CRS)):
        geom = geom.to_crs(S.CRS)
    out = pd.DataFrame(index=raw.index)
    for target in _OUTPUT:
        out[target] = raw[found[target]] if target in found else None
    if S.PA_ID not in found:
        out[S.PA_ID] = np.arange(1, len(raw) + 1)
    out[S.PA_ID] = out[S.PA_ID].astype(str)
    if not is_wdpa:
        out[S.STATUS] = DEFAULT_STATUS
    if found.get(S.REALM, "").upper() == "MARINE":
        out[S.REALM] = out[S.REALM].astype(str).str.strip().map(_MARINE_CODES).fillna(out[S.REALM])
    if found.get(S.SITE_TYPE, "").upper() == "PA_DEF":
        out[S.SITE_TYPE] = out[S.SITE_TYPE].astype(str).str.strip().map(_PA_DEF_CODES).fillna(out[S.SITE_TYPE])
    for c in (S.PA_NAME, S.DESIGNATION, S.IUCN_CAT, S.STATUS, S.ISO3, S.PARENT_ISO3, S.REALM, S.SITE_TYPE):
        out[c] = out[c].astype("string").str.strip()
    year = pd.to_numeric(out[S.STATUS_YEAR], errors="coerce")
    out[S.STATUS_YEAR] = year.where(year > 0).astype("Int64")  # WDPA: 0 = unknown
    for c in (S.REP_AREA_KM2, S.GIS_AREA_KM2):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
    is_point = geom.geom_type.isin(["Point", "MultiPoint"]).to_numpy()
    if is_point.any() and S.REP_AREA_KM2 not in found:
        raise InputError("point records need REP_AREA (reported area, km^2) to be buffered",
                         file=label, column="REP_AREA")
    return gpd.GeoDataFrame(out, geometry=gpd.GeoSeries(geom.to_numpy(), index=raw.index, name=S.GEOMETRY),
                            crs=S.CRS).reset_index(drop=True)


def _norm(values: pd.Series) -> pd.Series:
    return values.astype("string").str.lower().str.replace(r"[^a-z0-9]", "", regex=True)


def _select(pas: gpd.GeoDataFrame, p: ProtectedAreaParams) -> np.ndarray:
    keep = _norm(pas[S.STATUS]).isin([re.sub(r"[^a-z0-9]", "", s.lower()) for s in p.keep_status])
    keep = np.array(keep.fillna(False).to_numpy(bool), copy=True)
    desig = _norm(pas[S.DESIGNATION])
    if p.exclude_unesco_mab:
        keep &= ~desig.eq("unescomabbiospherereserve").fillna(False).to_numpy(bool)
    if p.designations is not None:
        keep &= desig.isin([re.sub(r"[^a-z0-9]", "", d.lower()) for d in p.designations]).fillna(False).to_numpy(bool)
    if p.iucn_categories is not None:
        keep &= _norm(pas[S.IUCN_CAT]).isin([c.lower().replace(" ", "") for c in p.iucn_categories]) \
            .fillna(False).to_numpy(bool)
    if p.status_year_max is not None:
        yr = pas[S.STATUS_YEAR]
        keep &= ((yr <= p.status_year_max).fillna(p.include_unknown_year)).to_numpy(bool)
    if p.site_types is not None:
        keep &= _norm(pas[S.SITE_TYPE]).isin([t.lower() for t in p.site_types]).fillna(False).to_numpy(bool)
    return keep


def _polygonal(geoms: np.ndarray) -> np.ndarray:
    """Repair geometry and keep only its polygonal parts (make_valid may add lines)."""
    fixed = shapely.make_valid(geoms)
    parts, idx = shapely.get_parts(fixed, return_index=True)
    poly = shapely.get_type_id(parts) == 3
    parts, idx = parts[poly], idx[poly]
    out = np.full(len(geoms), None, dtype=object)
    if len(parts):
        order = np.argsort(idx, kind="stable")
        present, dense = np.unique(idx[order], return_inverse=True)
        multi = shapely.multipolygons(parts[order], indices=dense)
        single = np.bincount(dense) == 1
        out[present] = np.where(single, shapely.get_geometry(multi, 0), multi)
    return out


def clean_protected_areas(pas: gpd.GeoDataFrame | str | os.PathLike[str],
                          params: ProtectedAreaParams | None = None) -> gpd.GeoDataFrame:
    """Clean protected areas the way wdpar does (Runge et al. 2015).

    Parameters
    ----------
    pas : GeoDataFrame or path
        Output of :func:`read_protected_areas`, or a path passed to it.
    params : ProtectedAreaParams, optional
        Status, designation, IUCN-category, year and site-type filters.

    Returns
    -------
    geopandas.GeoDataFrame
        One (Multi)Polygon per kept record, EPSG:4326, with ``area_km2``
        measured in an equal-area projection (overlaps between records not yet
        dissolved: use :func:`dissolve_protected_areas` for areas).

    Examples
    --------
    >>> pas = clean_protected_areas("WDPA_Oct2026_CHN.gpkg",
    ...                             ProtectedAreaParams(status_year_max=2015))
    """
    p = params or ProtectedAreaParams()
    if not isinstance(pas, gpd.GeoDataFrame) or S.STATUS not in pas.columns:
        pas = read_protected_areas(pas)
    n0 = len(pas)
    pas = pas.loc[_select(pas, p)].copy()
    geom = pas.geometry.to_numpy()
    is_point = np.isin(shapely.get_type_id(geom), (0, 4))
    rep = pas[S.REP_AREA_KM2].to_numpy(float)
    no_area = is_point & ~(np.isfinite(rep) & (rep > 0))
    if no_area.any():
        log.info("dropping %d point record(s) without a reported area", int(no_area.sum()))
    pas, geom, is_point, rep = pas.loc[~no_area], geom[~no_area], is_point[~no_area], rep[~no_area]
    b = shapely.bounds(geom)
    crs = equal_area_crs((b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2)
    to_ea = pyproj.Transformer.from_crs(S.CRS, crs, always_xy=True)
    projected = shapely.transform(geom, lambda xy: np.column_stack(to_ea.transform(xy[:, 0], xy[:, 1])))
    # radius of the circle of area REP_AREA, enlarged so the 128-gon has that area exactly
    radius = np.sqrt(np.where(is_point, rep, 0.0) * 1e6 / np.pi) * _POLYGON_CIRCLE_SCALE
    projected = np.where(is_point, shapely.buffer(projected, radius, quad_segs=_QUAD_SEGS), projected)
    projected = _polygonal(projected)
    area = shapely.area(projected)
    area = np.where(pd.isna(projected), 0.0, area)
    keep = area >= max(p.min_area_m2, 1e-12)
    pas, projected, area = pas.loc[keep].copy(), projected[keep], area[keep]
    to_ll = pyproj.Transformer.from_crs(crs, S.CRS, always_xy=True)
    back = shapely.transform(projected, lambda xy: np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1])))
    pas[S.AREA_KM2] = area / 1e6
    pas = pas.set_geometry(_unwrap_dateline(back), crs=S.CRS)
    log.info("protected areas: %d records -> %d after cleaning", n0, len(pas))
    return pas.reset_index(drop=True)


def _unwrap_dateline(geoms: np.ndarray) -> np.ndarray:
    """Shift the western half of geometries torn across the antimeridian by +360 degrees.

    A circle buffered around a point at 179.9 E comes back from the projection
    with vertices at -179.9; keeping them at 180.1 leaves one valid polygon
    (the projections used downstream map 180.1 and -179.9 to the same place).
    """
    b = shapely.bounds(geoms)
    torn = (b[:, 2] - b[:, 0]) > 180.0
    if torn.any():
        geoms = geoms.copy()
        geoms[torn] = shapely.transform(
            geoms[torn], lambda xy: np.column_stack([np.where(xy[:, 0] < 0, xy[:, 0] + 360.0, xy[:, 0]), xy[:, 1]]))
    return geoms


def dissolve_protected_areas(pas: gpd.GeoDataFrame, by: str | None = None,
                             crs: pyproj.CRS | None = None) -> gpd.GeoDataFrame:
    """Union overlapping protected areas so each square metre counts once.

    Parameters
    ----------
    pas : geopandas.GeoDataFrame
        Cleaned protected areas (:func:`clean_protected_areas`).
    by : str, optional
        Column to dissolve within (e.g. ``flyway.schema.ISO3``); all at once
        when omitted.
    crs : pyproj.CRS, optional
        Equal-area CRS for the union and the area; by default a Lambert
        azimuthal equal-area projection centred on the data.

    Returns
    -------
    geopandas.GeoDataFrame
        One row per group with the union geometry (in ``crs``) and its
        ``area_km2``.
    """
    if crs is None:
        b = pas.total_bounds if len(pas) else np.zeros(4)
        crs = equal_area_crs(np.array([(b[0] + b[2]) / 2]), np.array([(b[1] + b[3]) / 2]))
    proj = pas.to_crs(crs)
    proj = proj.set_geometry(shapely.make_valid(proj.geometry.to_numpy()))
    if by is None:
        union = shapely.union_all(proj.geometry.to_numpy())
        out = gpd.GeoDataFrame({S.AREA_KM2: [shapely.area(union) / 1e6]}, geometry=[union], crs=crs)
    else:
        out = proj[[by, proj.geometry.name]].dissolve(by=by).reset_index()
        out[S.AREA_KM2] = out.area / 1e6
    return out
