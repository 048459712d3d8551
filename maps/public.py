"""Sharing safely: generalise the locations of sensitive records (breeding and nest sites).

Locations where endangered birds breed are sensitive: a partner export should
not lead anyone to a nest. With :class:`PublicParams` the maps, the report and
its downloads snap every sensitive position to the centre of a grid cell
(default 10 km; configurable per species) and replace sensitive site polygons
by that cell. A record is sensitive when its stop kind is in ``kinds`` (default
breeding) and its species in ``species`` (default: every species). Fixes of an
individual taken during one of its sensitive stops are snapped the same way, so
tracks and the heatmap cannot give the place away either.

The grid is equal-area in spirit: rows are ``grid_km`` apart in latitude and
each row's cells are ``grid_km`` wide at the row's centre latitude.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from flyway import schema as S
from flyway.errors import ConfigError

_KM_PER_DEG = 111.32  # km per degree of latitude (and of longitude at the equator)


@dataclass(frozen=True)
class PublicParams:
    """What a public export generalises, and to what precision.

    Parameters
    ----------
    grid_km : float
        Cell size of the generalisation grid in km (default 10).
    kinds : tuple of str
        Stop kinds whose locations are sensitive (values of ``kind``).
    species : tuple of str, optional
        Species whose records are sensitive; ``None`` = all species.
    species_grid_km : tuple of (str, float)
        Per-species cell sizes overriding ``grid_km``.
    """

    grid_km: float = 10.0
    kinds: tuple[str, ...] = (S.KIND_BREEDING,)
    species: tuple[str, ...] | None = None
    species_grid_km: tuple[tuple[str, float], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name, km in (("grid_km", self.grid_km), *((f"species_grid_km[{s!r}]", k)
                                                       for s, k in self.species_grid_km)):
            if not (isinstance(km, (int, float)) and math.isfinite(km) and 0.1 <= km <= 500):
                raise ConfigError(f"PublicParams.{name} = {km!r}: expected km in [0.1, 500]")
        bad = [k for k in self.kinds if k not in S.STOP_KINDS]
        if bad or not self.kinds:
            raise ConfigError(f"PublicParams.kinds = {self.kinds!r}: expected a non-empty subset of {S.STOP_KINDS}")
        object.__setattr__(self, "kinds", tuple(self.kinds))
        if self.species is not None:
            object.__setattr__(self, "species", tuple(str(s) for s in self.species))

    def km_for(self, species: np.ndarray) -> np.ndarray:
        """Cell size (km) for each species value."""
        km = np.full(len(species), float(self.grid_km))
        for sp, k in self.species_grid_km:
            km[np.asarray(species, dtype=object) == sp] = float(k)
        return km

    def describe(self) -> str:
        """One sentence for a report or map legend."""
        who = "all species" if self.species is None else ", ".join(self.species)
        extra = "".join(f"; {sp}: {k:g} km" for sp, k in self.species_grid_km)
        return (f"Locations of {' and '.join(self.kinds)} records of {who} are generalised to the centre "
                f"of a {self.grid_km:g} km grid cell{extra}.")


def snap(lon: np.ndarray, lat: np.ndarray, km: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the ``km`` grid cells containing the positions (vectorised)."""
    lon, lat = np.asarray(lon, float), np.asarray(lat, float)
    dlat = np.broadcast_to(np.asarray(km, float), lat.shape) / _KM_PER_DEG
    row = np.floor((lat + 90.0) / dlat)
    clat = np.clip(-90.0 + (row + 0.5) * dlat, -89.99, 89.99)
    dlon = dlat / np.cos(np.radians(clat))
    clon = -180.0 + (np.floor((lon + 180.0) / dlon) + 0.5) * dlon
    return clon, clat


def _cell_polygons(lon: np.ndarray, lat: np.ndarray, km: np.ndarray) -> np.ndarray:
    clon, clat = snap(lon, lat, km)
    dlat = km / _KM_PER_DEG / 2
    dlon = dlat / np.cos(np.radians(clat))
    return shapely.box(clon - dlon, clat - dlat, clon + dlon, clat + dlat)


def sensitive_stops(stops: pd.DataFrame, params: PublicParams) -> np.ndarray:
    """Boolean mask of the stops whose location is sensitive."""
    mask = stops[S.KIND].astype(str).isin(params.kinds).to_numpy()
    if params.species is not None:
        mask &= stops[S.SPECIES].astype(str).isin(params.species).to_numpy()
    return mask


def generalise_stops(stops: pd.DataFrame, params: PublicParams) -> pd.DataFrame:
    """Stops with sensitive centroids snapped to the grid and their radius set to the cell size."""
    out = stops.copy()
    m = sensitive_stops(stops, params)
    if m.any():
        km = params.km_for(stops.loc[m, S.SPECIES].astype(str).to_numpy())
        lon, lat = snap(stops.loc[m, S.LON].to_numpy(float), stops.loc[m, S.LAT].to_numpy(float), km)
        out.loc[m, S.LON], out.loc[m, S.LAT] = lon, lat
        if S.RADIUS_M in out:
            out.loc[m, S.RADIUS_M] = km * 1000.0
        if S.GEOMETRY in out and not isinstance(out, gpd.GeoDataFrame):
            out[S.GEOMETRY] = out[S.GEOMETRY].astype(object)
            out.loc[m, S.GEOMETRY] = shapely.to_wkb(shapely.points(lon, lat))
    return out


def generalise_sites(sites: gpd.GeoDataFrame, params: PublicParams) -> gpd.GeoDataFrame:
    """Sites used for a sensitive kind become the grid cell of their centre."""
    out = sites.copy()
    kinds = out[S.KINDS].astype("string").fillna("") if S.KINDS in out else pd.Series("", index=out.index)
    m = kinds.str.split(";").map(lambda ks: any(k in params.kinds for k in ks)).to_numpy(bool)
    if params.species is not None:
        m &= out[S.SPECIES].astype(str).isin(params.species).to_numpy()
    if m.any():
        km = params.km_for(out.loc[m, S.SPECIES].astype(str).to_numpy())
        lon, lat = out.loc[m, S.LON].to_numpy(float), out.loc[m, S.LAT].to_numpy(float)
        cells = _cell_polygons(lon, lat, km)
        clon, clat = snap(lon, lat, km)
        geoms = out.geometry.to_numpy().copy()
        geoms[m] = cells
        out = out.set_geometry(gpd.GeoSeries(geoms, index=out.index, crs=out.crs))
        out.loc[m, S.LON], out.loc[m, S.LAT] = clon, clat
    return out


def generalise_fixes(fixes: pd.DataFrame, stops: pd.DataFrame, params: PublicParams) -> pd.DataFrame:
    """Fixes taken during a sensitive stop of the same individual, snapped to the grid.

    Vectorised: the sensitive stops of all individuals are sorted by
    (individual, start) and each fix is matched to the last stop starting at or
    before it with ``searchsorted``.
    """
    out = fixes.copy()
    sens = stops.loc[sensitive_stops(stops, params)]
    if sens.empty or out.empty:
        return out
    ind_codes, _ = pd.factorize(pd.concat([sens[S.INDIVIDUAL_ID], out[S.INDIVIDUAL_ID]]).astype(str))
    s_ind, f_ind = ind_codes[: len(sens)], ind_codes[len(sens):]
    s_start = pd.to_datetime(sens[S.START_TIME], utc=True).to_numpy("datetime64[us]").astype(np.int64)
    s_end = pd.to_datetime(sens[S.END_TIME], utc=True).to_numpy("datetime64[us]").astype(np.int64)
    f_t = pd.to_datetime(out[S.TIMESTAMP], utc=True).to_numpy("datetime64[us]").astype(np.int64)
    # composite key (individual, second): int64 holds 1e9 individuals x 290 years of seconds
    base = min(s_start.min(), f_t.min()) // 1_000_000
    span = int(max(s_end.max(), f_t.max()) // 1_000_000 - base) + 1
    s_key = s_ind.astype(np.int64) * span + (s_start // 1_000_000 - base)
    order = np.argsort(s_key, kind="stable")
    s_key, s_ind, s_end, s_start = s_key[order], s_ind[order], s_end[order], s_start[order]
    f_key = f_ind.astype(np.int64) * span + (f_t // 1_000_000 - base)
    j = np.searchsorted(s_key, f_key, side="right") - 1
    ok = j >= 0
    jj = np.where(ok, j, 0)
    inside = ok & (s_ind[jj] == f_ind) & (f_t <= s_end[jj]) & (f_t >= s_start[jj])
    if inside.any():
        km = params.km_for(out.loc[inside, S.SPECIES].astype(str).to_numpy()) if S.SPECIES in out \
            else np.full(int(inside.sum()), params.grid_km)
        lon, lat = snap(out.loc[inside, S.LON].to_numpy(float), out.loc[inside, S.LAT].to_numpy(float), km)
        out.loc[inside, S.LON], out.loc[inside, S.LAT] = lon, lat
    return out
