"""Energy infrastructure: read power plants, turbines and lines; measure how close the birds come.

Readers: the Global Power Plant Database CSV (WRI; the published layout and
WRI's per-country input files, whose rows may lack coordinates) and
OpenStreetMap-style GeoJSON / GeoPackage / GeoParquet (``power=generator`` +
``generator:source=wind``, ``power=line`` ..., tags as columns or in GDAL's
``other_tags``).

Distances are geodesic on WGS84 and found through a spatial index, never all
pairs (the engine is :mod:`flyway.analysis._proximity`); buffer counts are
exact geodesic counts; the antimeridian is no edge.
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
import shapely

from flyway import schema as S
from flyway.errors import ConfigError, InputError
from flyway.analysis._proximity import FacilityIndex
from flyway.analysis.countries import iso3_of_name

log = logging.getLogger(__name__)

_QUERY_CHUNK = 8192
_WEIGHT = "_weight"  # scratch column of _fix_shares

POWER_PLANT, WIND_TURBINE, GENERATOR = "power_plant", "wind_turbine", "generator"
POWER_LINE, POWER_TOWER, SUBSTATION = "power_line", "power_tower", "substation"
_OSM_KIND = {"plant": POWER_PLANT, "generator": GENERATOR, "line": POWER_LINE, "minor_line": POWER_LINE,
             "cable": POWER_LINE, "tower": POWER_TOWER, "pole": POWER_TOWER, "substation": SUBSTATION}
# GPPD / WRI country-file spellings -> flyway columns (first match wins; case-insensitive)
GPPD_ALIASES = {
    S.FACILITY_ID: ("gppd_idnr", "wri_id", "id"),
    S.FACILITY_NAME: ("name",),
    S.CAPACITY_MW: ("capacity_mw",),
    S.LAT: ("latitude", "lat"),
    S.LON: ("longitude", "lon", "long"),
    S.FACILITY_SOURCE: ("primary_fuel", "fuel"),
    S.COUNTRY: ("country", "country_long"),
}
_FUEL_SPELLINGS = {"natural gas": "gas"}
# OpenStreetMap keys (https://wiki.openstreetmap.org/wiki/Key:power)
OSM_POWER, OSM_GENERATOR_SOURCE, OSM_PLANT_SOURCE = "power", "generator:source", "plant:source"
OSM_GENERATOR_OUTPUT, OSM_PLANT_OUTPUT = "generator:output:electricity", "plant:output:electricity"
OSM_NAME, OSM_OTHER_TAGS = "name", "other_tags"  # other_tags: GDAL's OSM driver packs extra tags there
OSM_ID_COLUMNS = ("@id", "osm_id", "id", "full_id")


# ---------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------
def read_power_plants(path: str | os.PathLike[str], *, strict: bool = False) -> gpd.GeoDataFrame:
    """Read a Global Power Plant Database CSV (published or WRI country-file layout).

    Parameters
    ----------
    path : path
        The CSV. Column spellings of both layouts are accepted
        (:data:`GPPD_ALIASES`); country names become ISO3 codes.
    strict : bool
        Raise :class:`~flyway.errors.InputError` (file, line, column) on a
        coordinate out of range. By default such rows (WRI's country files
        have one with latitude and longitude swapped) are left out with a
        warning naming their lines, kept in ``attrs["invalid_coordinate_lines"]``.

    Rows without coordinates are left out with a warning; their number is in
    ``attrs["n_without_coordinates"]``.

    Returns
    -------
    geopandas.GeoDataFrame
        facility_id, facility_name, facility_kind (``power_plant``),
        facility_source (fuel, lower case: wind, solar, hydro, coal, gas ...),
        capacity_mw, country (ISO3), point geometry in EPSG:4326.
    """
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read power plants ({exc})", file=str(path)) from exc
    lower = {c.lower().strip(): c for c in raw.columns}
    col = {k: next((lower[a] for a in v if a in lower), None) for k, v in GPPD_ALIASES.items()}
    missing = [GPPD_ALIASES[k][0] for k in (S.LAT, S.LON) if col[k] is None]
    if missing:
        raise InputError(f"power-plant table lacks {', '.join(missing)}", file=str(path))
    lat = pd.to_numeric(raw[col[S.LAT]], errors="coerce").to_numpy(float)
    lon = pd.to_numeric(raw[col[S.LON]], errors="coerce").to_numpy(float)
    invalid = (np.abs(lat) > 90) | (np.abs(lon) > 180)
    if invalid.any():
        i = int(np.flatnonzero(invalid)[0])
        name = col[S.LAT] if abs(lat[i]) > 90 else col[S.LON]
        msg = f"{name} = {lat[i] if name == col[S.LAT] else lon[i]} is outside its range"
        if strict:
            raise InputError(msg, file=str(path), line=i + 2, column=name)
        log.warning("%s: %d plant(s) with impossible coordinates left out (first: line %d, %s)",
                    path.name, int(invalid.sum()), i + 2, msg)
    has_xy = np.isfinite(lat) & np.isfinite(lon) & ~invalid
    n_no_xy = int((~(np.isfinite(lat) & np.isfinite(lon))).sum())
    if n_no_xy:
        log.warning("%s: %d of %d plants have no coordinates and are left out", path.name, n_no_xy, len(raw))

    def get(key):
        return raw[col[key]] if col[key] is not None else pd.Series(None, index=raw.index, dtype="string")

    fuel = get(S.FACILITY_SOURCE).astype("string").str.strip().str.lower()
    out = gpd.GeoDataFrame({
        S.FACILITY_ID: get(S.FACILITY_ID).astype("string").fillna(pd.Series(
            [f"{path.stem}:{i + 2}" for i in range(len(raw))], index=raw.index, dtype="string")),
        S.FACILITY_NAME: get(S.FACILITY_NAME).astype("string"),
        S.FACILITY_KIND: POWER_PLANT,
        S.FACILITY_SOURCE: fuel.replace(_FUEL_SPELLINGS),
        S.CAPACITY_MW: pd.to_numeric(get(S.CAPACITY_MW), errors="coerce"),
        S.COUNTRY: iso3_of_name(get(S.COUNTRY)),
    }, geometry=shapely.points(lon, lat), crs=S.CRS).loc[has_xy].reset_index(drop=True)
    out.attrs["n_without_coordinates"] = n_no_xy
    out.attrs["invalid_coordinate_lines"] = (np.flatnonzero(invalid) + 2).tolist()
    return out


def _tag(frame: pd.DataFrame, key: str) -> pd.Series:
    """An OSM tag from its own column or from GDAL's ``other_tags`` ("k"=>"v",...)."""
    if key in frame.columns:
        return frame[key].astype("string")
    if OSM_OTHER_TAGS in frame.columns:
        pattern = '"' + re.escape(key) + r'"=>"([^"]*)"'
        return frame[OSM_OTHER_TAGS].astype("string").str.extract(pattern, expand=False)
    return pd.Series(pd.NA, index=frame.index, dtype="string")


def read_osm_power(source: str | os.PathLike[str] | gpd.GeoDataFrame, *, layer: str | None = None
                   ) -> gpd.GeoDataFrame:
    """Read OSM-tagged power features (GeoJSON, GeoPackage, GeoParquet or a GeoDataFrame).

    ``power=generator`` with ``generator:source=wind`` becomes a
    ``wind_turbine``; ``power=line|minor_line|cable`` a ``power_line``;
    ``tower|pole`` a ``power_tower``; ``plant``, ``substation`` keep their
    names. Features without a ``power`` tag are left out.
    """
    label = "<GeoDataFrame>"
    if isinstance(source, gpd.GeoDataFrame):
        raw = source
    else:
        label = str(source)
        try:
            path = Path(source)
            raw = gpd.read_parquet(path) if path.suffix.lower() in (".parquet", ".geoparquet") \
                else gpd.read_file(path, layer=layer)
        except Exception as exc:  # pyogrio/pyarrow raise several types; name the file
            raise InputError(f"cannot read infrastructure ({exc})", file=label) from exc
    raw = raw.to_crs(S.CRS) if raw.crs is not None else raw.set_crs(S.CRS)
    power = _tag(raw, OSM_POWER).str.strip().str.lower()
    if power.isna().all():
        raise InputError("no 'power' tag in any feature (expected OSM tags such as power=line)", file=label)
    gen_source = _tag(raw, OSM_GENERATOR_SOURCE).fillna(_tag(raw, OSM_PLANT_SOURCE)).str.strip().str.lower()
    kind = power.map(_OSM_KIND).fillna(power)
    kind = kind.where(~((power == "generator") & (gen_source == "wind")), WIND_TURBINE)
    ident = next((raw[c].astype("string") for c in OSM_ID_COLUMNS if c in raw.columns),
                 pd.Series([f"osm:{i}" for i in range(len(raw))], index=raw.index, dtype="string"))
    capacity = pd.to_numeric(_tag(raw, OSM_GENERATOR_OUTPUT).fillna(_tag(raw, OSM_PLANT_OUTPUT))
                             .str.extract(r"([0-9.]+)\s*MW", expand=False), errors="coerce")
    out = gpd.GeoDataFrame({S.FACILITY_ID: ident, S.FACILITY_NAME: _tag(raw, OSM_NAME), S.FACILITY_KIND: kind,
                            S.FACILITY_SOURCE: gen_source, S.CAPACITY_MW: capacity, S.COUNTRY: None},
                           geometry=raw.geometry.to_numpy(), crs=S.CRS)
    keep = power.notna().to_numpy() & ~out.geometry.is_empty.to_numpy() & out.geometry.notna().to_numpy()
    return out.loc[keep].reset_index(drop=True)


def read_infrastructure(paths: str | os.PathLike[str] | list[str | os.PathLike[str]]) -> gpd.GeoDataFrame:
    """Read and combine facility files: ``.csv`` as GPPD, anything else as OSM-tagged features."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    frames = [read_power_plants(p) if Path(p).suffix.lower() == ".csv" else read_osm_power(p) for p in paths]
    if not frames:
        raise InputError("no infrastructure file given")
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry=S.GEOMETRY, crs=S.CRS)


@dataclass(frozen=True)
class ExposureParams:
    """Parameters of the exposure analysis.

    Parameters
    ----------
    buffers_km : tuple of float
        Buffer radii around each position (1, 5, 10 km; 20 km mirrors the
        Migratory Soaring Birds screening radius).
    by : str
        Facility column whose values are reported separately (default the
        kind: power_plant, wind_turbine, power_line ...;
        ``flyway.schema.FACILITY_SOURCE`` splits plants by fuel).
    """

    buffers_km: tuple[float, ...] = (1.0, 5.0, 10.0)
    by: str = S.FACILITY_KIND

    def __post_init__(self) -> None:
        b = tuple(float(x) for x in self.buffers_km)
        if not b or any(not (np.isfinite(x) and 0 < x <= 500) for x in b):
            raise ConfigError(f"ExposureParams.buffers_km = {self.buffers_km!r}: expected km in (0, 500]")
        object.__setattr__(self, "buffers_km", tuple(sorted(set(b))))
        if self.by not in (S.FACILITY_KIND, S.FACILITY_SOURCE, S.COUNTRY):
            raise ConfigError(f"ExposureParams.by = {self.by!r}: expected one of "
                              f"{S.FACILITY_KIND}, {S.FACILITY_SOURCE}, {S.COUNTRY}")


def proximity(lon: np.ndarray, lat: np.ndarray, facilities: gpd.GeoDataFrame,
              params: ExposureParams | None = None, *, counts: bool = True) -> pd.DataFrame:
    """Nearest facility of each group and facilities within each buffer, per position.

    Parameters
    ----------
    lon, lat : array-like
        Positions (WGS84 degrees).
    facilities : geopandas.GeoDataFrame
        From :func:`read_infrastructure` (points, lines or polygons).
    params : ExposureParams, optional
    counts : bool
        Also count facilities within each buffer (``n_within_<r>km``).

    Returns
    -------
    pandas.DataFrame
        Long format, one row per position x facility group, indexed by the
        position in lon/lat: the group column, facility_id, facility_name,
        distance_km (geodesic), and the buffer counts.
    """
    p = params or ExposureParams()
    lon, lat = np.asarray(lon, float), np.asarray(lat, float)
    frames = []
    groups = facilities[p.by].astype("string").fillna("unknown")
    for group in sorted(groups.unique()):
        sub = facilities.loc[(groups == group).to_numpy()]
        index = FacilityIndex(sub.geometry.to_numpy())
        for s in range(0, len(lon), _QUERY_CHUNK):
            qlon, qlat = lon[s:s + _QUERY_CHUNK], lat[s:s + _QUERY_CHUNK]
            dist, fac = index.nearest(qlon, qlat)
            block = pd.DataFrame({p.by: group,
                                  S.FACILITY_ID: sub[S.FACILITY_ID].to_numpy()[fac],
                                  S.FACILITY_NAME: sub[S.FACILITY_NAME].to_numpy()[fac],
                                  S.DISTANCE_KM: dist / 1000.0}, index=np.arange(s, s + len(qlon)))
            if counts:
                q, f, d = index.pairs(qlon, qlat, max(p.buffers_km) * 1000.0,
                                      tuple(km * 1000.0 for km in p.buffers_km))
                for km in p.buffers_km:
                    near = d <= km * 1000.0
                    pair = np.unique(q[near].astype(np.int64) * (len(sub) + 1) + f[near])
                    block[S.N_WITHIN_KM.format(km=km)] = np.bincount(pair // (len(sub) + 1),
                                                                     minlength=len(qlon))
            frames.append(block)
    if not frames:
        return pd.DataFrame(columns=[p.by, S.FACILITY_ID, S.FACILITY_NAME, S.DISTANCE_KM])
    return pd.concat(frames)


# ---------------------------------------------------------------------------
# exposure of sites, stops, individuals and breeding places
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ExposureResult:
    """What :func:`exposure` returns (tables are long: one row per item x facility group).

    Attributes
    ----------
    sites : GeoDataFrame or None
        The sites with ``nearest_infrastructure_km`` filled.
    site_exposure, stop_exposure, individual_exposure, breeding_exposure : DataFrame or None
        Nearest facility and distance (from the site centre / stop centroid),
        facilities within each buffer, facilities inside the site polygon
        (``n_inside``); per individual the closest approach while stopped and
        the share of fixes within each buffer; breeding sites (or stops).
    """

    sites: gpd.GeoDataFrame | None
    site_exposure: pd.DataFrame | None
    stop_exposure: pd.DataFrame | None
    individual_exposure: pd.DataFrame | None
    breeding_exposure: pd.DataFrame | None


def _with_keys(prox: pd.DataFrame, table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    keyed = table[[k for k in keys if k in table.columns]].reset_index(drop=True)
    return keyed.iloc[prox.index.to_numpy()].reset_index(drop=True).join(prox.reset_index(drop=True))


def _inside_sites(sites: gpd.GeoDataFrame, facilities: gpd.GeoDataFrame, by: str) -> pd.DataFrame:
    fi, si = shapely.STRtree(sites.geometry.to_numpy()).query(facilities.geometry.to_numpy(),
                                                               predicate="intersects")
    frame = pd.DataFrame({S.SITE_ID: sites[S.SITE_ID].to_numpy()[si],
                          by: facilities[by].astype("string").fillna("unknown").to_numpy()[fi]})
    return frame.groupby([S.SITE_ID, by]).size().rename(S.N_INSIDE).reset_index()


def _fix_shares(lon, lat, individual, facilities, p: ExposureParams, weight) -> pd.DataFrame:
    prox = proximity(lon, lat, facilities, p, counts=False)
    frame = pd.DataFrame({S.INDIVIDUAL_ID: np.asarray(individual)[prox.index.to_numpy()],
                          p.by: prox[p.by].to_numpy(), _WEIGHT: np.asarray(weight, float)[prox.index.to_numpy()]})
    cols = []
    for km in p.buffers_km:
        name = S.SHARE_FIXES_WITHIN_KM.format(km=km)
        frame[name] = frame[_WEIGHT] * (prox[S.DISTANCE_KM].to_numpy() <= km)
        cols.append(name)
    sums = frame.groupby([S.INDIVIDUAL_ID, p.by])[cols + [_WEIGHT]].sum()
    return sums[cols].div(sums[_WEIGHT], axis=0).reset_index()


def exposure(facilities: gpd.GeoDataFrame | str | os.PathLike[str] | list, *,
             sites: gpd.GeoDataFrame | None = None, stops: pd.DataFrame | None = None,
             fixes: pd.DataFrame | None = None, params: ExposureParams | None = None) -> ExposureResult:
    """Exposure of sites, stops and individuals to energy infrastructure.

    Parameters
    ----------
    facilities : GeoDataFrame, path or list of paths
        Output of :func:`read_infrastructure`, or files for it.
    sites : GeoDataFrame, optional
        Sites (:func:`flyway.analysis.sites.find_sites`).
    stops : DataFrame, optional
        Stops (:data:`flyway.schema.STOPS`).
    fixes : DataFrame, optional
        Fixes (individual_id, lon, lat): the share of fixes within each
        buffer per individual. Without fixes the share is taken over the stop
        centroids weighted by their fixes.
    params : ExposureParams, optional

    Returns
    -------
    ExposureResult

    Examples
    --------
    >>> plants = read_infrastructure("power_plants_ne_asia.csv")
    >>> res = exposure(plants, sites=sites, stops=stops, params=ExposureParams(by=S.FACILITY_SOURCE))
    >>> res.site_exposure.query("facility_source == 'wind'").nsmallest(10, "distance_km")
    """
    p = params or ExposureParams()
    if not isinstance(facilities, gpd.GeoDataFrame):
        facilities = read_infrastructure(facilities)
    if p.by not in facilities.columns:
        raise InputError(f"facilities lack the column {p.by}", column=p.by)
    out_sites = site_x = stop_x = ind_x = breeding = None
    if sites is not None:
        prox = proximity(sites[S.LON].to_numpy(float), sites[S.LAT].to_numpy(float), facilities, p)
        site_x = _with_keys(prox, sites, [S.SITE_ID, S.SPECIES, S.KINDS])
        site_x = site_x.merge(_inside_sites(sites, facilities, p.by), how="left", on=[S.SITE_ID, p.by])
        site_x[S.N_INSIDE] = site_x[S.N_INSIDE].fillna(0).astype(np.int64)
        nearest = site_x.groupby(S.SITE_ID)[S.DISTANCE_KM].min()
        out_sites = sites.copy()
        out_sites[S.NEAREST_INFRASTRUCTURE_KM] = out_sites[S.SITE_ID].map(nearest).astype(float)
        if S.KINDS in site_x:
            breeding = site_x[site_x[S.KINDS].fillna("").str.split(";").map(lambda k: S.KIND_BREEDING in k)]
    if stops is not None:
        prox = proximity(stops[S.LON].to_numpy(float), stops[S.LAT].to_numpy(float), facilities, p)
        stop_x = _with_keys(prox, stops, [S.INDIVIDUAL_ID, S.SPECIES, S.STOP_ID, S.KIND, S.SEASON, S.COUNTRY])
        if breeding is None and S.KIND in stop_x:
            breeding = stop_x[stop_x[S.KIND] == S.KIND_BREEDING].reset_index(drop=True)
        closest = stop_x.groupby([S.INDIVIDUAL_ID, p.by])[S.DISTANCE_KM].min().reset_index()
        if fixes is None:
            w = stops[S.N_FIXES].to_numpy(float) if S.N_FIXES in stops else np.ones(len(stops))
            shares = _fix_shares(stops[S.LON].to_numpy(float), stops[S.LAT].to_numpy(float),
                                 stops[S.INDIVIDUAL_ID].to_numpy(), facilities, p, w)
            ind_x = closest.merge(shares, on=[S.INDIVIDUAL_ID, p.by], how="left")
        else:
            ind_x = closest
    if fixes is not None:
        shares = _fix_shares(fixes[S.LON].to_numpy(float), fixes[S.LAT].to_numpy(float),
                             fixes[S.INDIVIDUAL_ID].to_numpy(), facilities, p, np.ones(len(fixes)))
        ind_x = shares if ind_x is None else ind_x.merge(shares, on=[S.INDIVIDUAL_ID, p.by], how="outer")
    return ExposureResult(out_sites, site_x, stop_x, ind_x, breeding)
