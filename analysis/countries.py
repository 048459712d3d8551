"""Countries: the country of a stop or fix, and the transboundary view of the flyway.

Boundaries come from the user (any polygons with an ISO3 column) or from the
packaged Natural Earth outlines of North-East Asia (public domain, see
``flyway/data/NE_SOURCE.md``). Birds on tidal flats fall just outside 1:50m
coastlines, so points outside every country take the nearest one within
``max_distance_km``.

The transboundary tables count stops, individuals and bird-days per country,
species and season, and link each individual's breeding country to its
wintering country (the migratory-connectivity matrix) — the numbers range
states bring to flyway cooperation.
"""
from __future__ import annotations

import functools
import logging
import os
from importlib import resources

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from flyway import schema as S
from flyway.geo import haversine_m
from flyway.errors import ConfigError, InputError

log = logging.getLogger(__name__)

PACKAGED_BOUNDARIES = "ne_countries_ne_asia.geojson"
_CHUNK = 500_000
_ISO_COLUMNS = ("iso_a3", "iso3", "adm0_a3", "iso", "gid_0")  # case-insensitive, first usable wins
_NAME_COLUMNS = ("name_long", "name", "admin", "name_en", "country")
# names used by data providers (WRI country files, GPPD country_long) that Natural Earth spells differently
COUNTRY_NAME_ALIASES = {
    "republic of korea": "KOR", "south korea": "KOR", "korea, republic of": "KOR", "korea": "KOR",
    "dpr korea": "PRK", "north korea": "PRK", "democratic people's republic of korea": "PRK",
    "korea, dem. people's rep.": "PRK", "dem. rep. korea": "PRK",
    "russia": "RUS", "russian federation": "RUS", "china": "CHN", "people's republic of china": "CHN",
    "japan": "JPN", "mongolia": "MNG", "taiwan": "TWN", "hong kong": "HKG", "macao": "MAC", "macau": "MAC",
}


def _pick(columns, wanted) -> str | None:
    lower = {c.lower(): c for c in columns}
    return next((lower[w] for w in wanted if w in lower), None)


@functools.lru_cache(maxsize=1)
def _packaged() -> gpd.GeoDataFrame:
    with resources.as_file(resources.files("flyway") / "data" / PACKAGED_BOUNDARIES) as path:
        return gpd.read_file(path)


def load_countries(boundaries: str | os.PathLike[str] | gpd.GeoDataFrame | None = None) -> gpd.GeoDataFrame:
    """Country polygons with ``country`` (ISO3) and ``country_name``.

    Parameters
    ----------
    boundaries : path or GeoDataFrame, optional
        Any polygons with an ISO3 column (``iso_a3``, ``ISO3``, ``ADM0_A3`` ...;
        Natural Earth's ``-99`` falls back to ``ADM0_A3``). Default: the
        packaged Natural Earth outlines of North-East Asia.

    Returns
    -------
    geopandas.GeoDataFrame
        EPSG:4326, valid geometry.
    """
    if boundaries is None:
        raw = _packaged()
    elif isinstance(boundaries, gpd.GeoDataFrame):
        raw = boundaries
    else:
        try:
            raw = gpd.read_file(boundaries)
        except Exception as exc:  # pyogrio raises several types; name the file
            raise InputError(f"cannot read country boundaries ({exc})", file=str(boundaries)) from exc
    cols = [c for c in raw.columns if c != raw.geometry.name]
    iso_col = _pick(cols, _ISO_COLUMNS)
    if iso_col is None:
        raise InputError("country boundaries need an ISO3 column (" + ", ".join(_ISO_COLUMNS) + ")")
    iso = raw[iso_col].astype("string").str.strip().str.upper()
    adm = _pick(cols, ("adm0_a3",))
    if adm is not None:
        iso = iso.where(~iso.isin(["-99", ""]) & iso.notna(), raw[adm].astype("string").str.upper())
    name_col = _pick(cols, _NAME_COLUMNS)
    name = raw[name_col].astype("string") if name_col else iso
    raw = raw.to_crs(S.CRS) if raw.crs is not None else raw.set_crs(S.CRS)
    return gpd.GeoDataFrame({S.COUNTRY: iso.to_numpy(), S.COUNTRY_NAME: name.to_numpy(),
                             S.GEOMETRY: shapely.make_valid(raw.geometry.to_numpy())},
                            geometry=S.GEOMETRY, crs=S.CRS)


def country_of(lon: np.ndarray, lat: np.ndarray,
               boundaries: str | os.PathLike[str] | gpd.GeoDataFrame | None = None, *,
               max_distance_km: float = 25.0) -> np.ndarray:
    """ISO3 country of each position (None where there is none).

    Parameters
    ----------
    lon, lat : array-like
        WGS84 degrees.
    boundaries : path or GeoDataFrame, optional
        See :func:`load_countries`.
    max_distance_km : float
        Points outside every polygon take the nearest country within this
        great-circle distance (coastal mudflats, coarse coastlines); 0 turns
        this off.

    Returns
    -------
    numpy.ndarray of object
    """
    if not (np.isfinite(max_distance_km) and max_distance_km >= 0):
        raise ConfigError(f"max_distance_km = {max_distance_km!r}: expected a distance >= 0")
    countries = load_countries(boundaries)
    geoms = countries.geometry.to_numpy()
    iso = countries[S.COUNTRY].to_numpy(dtype=object)
    tree = shapely.STRtree(geoms)
    lon, lat = np.asarray(lon, float), np.asarray(lat, float)
    out = np.full(lon.shape[0], None, dtype=object)
    for s in range(0, lon.shape[0], _CHUNK):
        pts = shapely.points(lon[s:s + _CHUNK], lat[s:s + _CHUNK])
        pi, gi = tree.query(pts, predicate="intersects")
        first = np.unique(pi, return_index=True)[1]  # a point on a shared border takes the first polygon
        block = np.full(len(pts), None, dtype=object)
        block[pi[first]] = iso[gi[first]]
        if max_distance_km > 0:
            miss = np.flatnonzero(pd.isna(block) & np.isfinite(lon[s:s + _CHUNK]) & np.isfinite(lat[s:s + _CHUNK]))
            if miss.size:
                block[miss] = _nearest_within(pts[miss], geoms, iso, tree, max_distance_km)
        out[s:s + _CHUNK] = block
    return out


def _nearest_within(pts, geoms, iso, tree, max_km) -> np.ndarray:
    # candidates within a generous box in degrees, then the true distance to the closest point
    deg = max_km / 111.0 / np.maximum(np.cos(np.radians(np.clip(shapely.get_y(pts), -85, 85))), 0.05)
    pi, gi = tree.query_nearest(pts, max_distance=float(deg.max()), all_matches=False)
    near = shapely.get_coordinates(shapely.shortest_line(pts[pi], geoms[gi]))[1::2]
    p = shapely.get_coordinates(pts[pi])
    dist_km = haversine_m(p[:, 0], p[:, 1], near[:, 0], near[:, 1]) / 1000.0
    out = np.full(len(pts), None, dtype=object)
    ok = dist_km <= max_km
    out[pi[ok]] = iso[gi[ok]]
    return out


def iso3_of_name(names: pd.Series | np.ndarray | list[str],
                 boundaries: str | os.PathLike[str] | gpd.GeoDataFrame | None = None) -> np.ndarray:
    """ISO3 codes for country names ("Republic of Korea", "Russia" ...); None when unknown.

    Three-letter upper-case codes pass through; names match
    :data:`COUNTRY_NAME_ALIASES` and the names in the boundaries.
    """
    names = pd.Series(names, dtype="string").str.strip()
    table = dict(COUNTRY_NAME_ALIASES)
    countries = load_countries(boundaries)
    table.update({str(n).lower(): c for n, c in zip(countries[S.COUNTRY_NAME], countries[S.COUNTRY]) if pd.notna(n)})
    is_code = names.str.fullmatch(r"[A-Z]{3}").fillna(False)
    mapped = names.str.lower().map(table)
    return names.where(is_code, mapped).astype(object).where(lambda v: pd.notna(v), None).to_numpy()


def stop_countries(stops: pd.DataFrame,
                   boundaries: str | os.PathLike[str] | gpd.GeoDataFrame | None = None) -> np.ndarray:
    """The stops' ``country`` column, with missing values looked up from their lon/lat."""
    have = stops[S.COUNTRY].to_numpy(dtype=object) if S.COUNTRY in stops else np.full(len(stops), None, object)
    missing = pd.isna(have)
    if missing.any():
        have = have.copy()
        have[missing] = country_of(stops[S.LON].to_numpy(float)[missing], stops[S.LAT].to_numpy(float)[missing],
                                   boundaries)
    return have


def transboundary_summary(stops: pd.DataFrame,
                          boundaries: str | os.PathLike[str] | gpd.GeoDataFrame | None = None) -> pd.DataFrame:
    """Stops, individuals and bird-days per country x species x season.

    Parameters
    ----------
    stops : pandas.DataFrame
        Stops (:data:`flyway.schema.STOPS`). Their ``country`` is used; where
        it is missing (or the column is absent) the country is looked up in
        ``boundaries``.
    boundaries : path or GeoDataFrame, optional
        See :func:`load_countries`.

    Returns
    -------
    pandas.DataFrame
        Columns country, species, season, n_stops, n_individuals, bird_days,
        sorted by country, species, season; missing countries/seasons stay
        as <NA> rows so totals add up.
    """
    frame = pd.DataFrame({S.COUNTRY: stop_countries(stops, boundaries),
                          S.SPECIES: stops[S.SPECIES].to_numpy(),
                          S.SEASON: stops[S.SEASON].to_numpy() if S.SEASON in stops else None,
                          S.INDIVIDUAL_ID: stops[S.INDIVIDUAL_ID].to_numpy(),
                          S.BIRD_DAYS: stops[S.DURATION_H].to_numpy(float) / 24.0})
    g = frame.groupby([S.COUNTRY, S.SPECIES, S.SEASON], dropna=False, sort=True)
    out = g.agg(**{S.N_STOPS: (S.BIRD_DAYS, "size"), S.N_INDIVIDUALS: (S.INDIVIDUAL_ID, "nunique"),
                   S.BIRD_DAYS: (S.BIRD_DAYS, "sum")}).reset_index()
    return out


def migratory_connectivity(stops: pd.DataFrame,
                           boundaries: str | os.PathLike[str] | gpd.GeoDataFrame | None = None) -> pd.DataFrame:
    """Individuals linking each breeding country to each wintering country.

    An individual's breeding (wintering) country is the one where it spent
    the most bird-days in stops of kind ``breeding`` (``wintering``).
    Individuals seen in only one of the two appear with the other missing.

    Returns
    -------
    pandas.DataFrame
        Columns species, breeding_country, wintering_country, n_individuals.
    """
    frame = pd.DataFrame({S.INDIVIDUAL_ID: stops[S.INDIVIDUAL_ID].to_numpy(),
                          S.SPECIES: stops[S.SPECIES].to_numpy(),
                          S.KIND: stops[S.KIND].to_numpy(),
                          S.COUNTRY: stop_countries(stops, boundaries),
                          S.BIRD_DAYS: stops[S.DURATION_H].to_numpy(float) / 24.0})
    frame = frame[frame[S.KIND].isin([S.KIND_BREEDING, S.KIND_WINTERING]) & frame[S.COUNTRY].notna()]
    days = frame.groupby([S.SPECIES, S.INDIVIDUAL_ID, S.KIND, S.COUNTRY], sort=True)[S.BIRD_DAYS].sum()
    days = days.reset_index().sort_values([S.BIRD_DAYS, S.COUNTRY], ascending=[False, True], kind="stable")
    main = days.drop_duplicates([S.SPECIES, S.INDIVIDUAL_ID, S.KIND])
    wide = main.pivot(index=[S.SPECIES, S.INDIVIDUAL_ID], columns=S.KIND, values=S.COUNTRY)
    wide = wide.reindex(columns=[S.KIND_BREEDING, S.KIND_WINTERING])
    wide.columns = [S.BREEDING_COUNTRY, S.WINTERING_COUNTRY]
    out = wide.reset_index().groupby([S.SPECIES, S.BREEDING_COUNTRY, S.WINTERING_COUNTRY], dropna=False,
                                     sort=True).size()
    return out.rename(S.N_INDIVIDUALS).reset_index()


def connectivity_matrix(stops: pd.DataFrame, species: str | None = None,
                        boundaries: str | os.PathLike[str] | gpd.GeoDataFrame | None = None) -> pd.DataFrame:
    """The breeding-country x wintering-country matrix of individuals.

    Parameters
    ----------
    stops : pandas.DataFrame
    species : str, optional
        One species; all species pooled when omitted.
    boundaries : path or GeoDataFrame, optional

    Returns
    -------
    pandas.DataFrame
        Index breeding countries, columns wintering countries, integer counts
        (individuals with both known).

    Examples
    --------
    >>> connectivity_matrix(stops, "Grus monacha")
    wintering_country  CHN  JPN  KOR
    breeding_country
    RUS                  4   11    2
    """
    long = migratory_connectivity(stops, boundaries)
    if species is not None:
        long = long[long[S.SPECIES] == species]
    long = long.dropna(subset=[S.BREEDING_COUNTRY, S.WINTERING_COUNTRY])
    return long.pivot_table(index=S.BREEDING_COUNTRY, columns=S.WINTERING_COUNTRY, values=S.N_INDIVIDUALS,
                            aggfunc="sum", fill_value=0).astype(int)
