"""Layers drawn from fixes: simplified tracks and the use-intensity heatmap.

Fixes are never drawn one by one: tracks are simplified with Douglas-Peucker
in a metric projection (Lambert azimuthal equal-area centred on the data) until
a vertex budget holds, and the heatmap shows fixes aggregated to grid cells
whose size grows until a cell budget holds, so a 10M-fix store still gives a
map of a few megabytes.
"""
from __future__ import annotations

import logging

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from folium import plugins

from flyway import schema as S
from flyway.analysis.protected import equal_area_crs
from flyway.maps._escape import esc, esc_array, fmt
from flyway.maps.layers import colour_of, feature_collection

log = logging.getLogger(__name__)


def simplified_tracks(fixes: pd.DataFrame, max_vertices: int = 150_000,
                      tolerance_m: float = 250.0) -> gpd.GeoDataFrame:
    """One simplified line per individual (Douglas-Peucker in a metric projection).

    The tolerance starts at ``tolerance_m`` and doubles until all lines
    together have at most ``max_vertices`` vertices. Fixes must be sorted by
    individual and time (as :func:`flyway.read_fixes` returns them).

    Returns
    -------
    geopandas.GeoDataFrame
        individual_id, species, n_fixes, geometry (EPSG:4326); attribute
        ``tolerance_m`` records the tolerance used.
    """
    ind = fixes[S.INDIVIDUAL_ID].astype(str).to_numpy()
    codes, uniques = pd.factorize(ind)
    counts = np.bincount(codes, minlength=len(uniques)) if len(codes) else np.zeros(0, int)
    keep = counts[codes] >= 2 if len(codes) else np.zeros(0, bool)
    lon, lat = fixes[S.LON].to_numpy(float)[keep], fixes[S.LAT].to_numpy(float)[keep]
    if not len(lon):
        return gpd.GeoDataFrame({S.INDIVIDUAL_ID: [], S.SPECIES: [], S.N_FIXES: []},
                                geometry=gpd.GeoSeries([], crs=S.CRS), crs=S.CRS)
    crs = equal_area_crs(lon, lat)
    x, y = pyproj.Transformer.from_crs(S.CRS, crs, always_xy=True).transform(lon, lat)
    lines = shapely.linestrings(x, y, indices=codes[keep])
    present = np.unique(codes[keep])
    tol = tolerance_m
    simple = shapely.simplify(lines, tol, preserve_topology=False)
    while shapely.get_num_coordinates(simple).sum() > max_vertices:
        tol *= 2.0
        simple = shapely.simplify(lines, tol, preserve_topology=False)
    back = pyproj.Transformer.from_crs(crs, S.CRS, always_xy=True)
    simple = shapely.transform(simple, lambda xy: np.column_stack(back.transform(xy[:, 0], xy[:, 1])))
    species = pd.Series(fixes[S.SPECIES].astype(str).to_numpy()).groupby(codes).first()
    out = gpd.GeoDataFrame({S.INDIVIDUAL_ID: np.asarray(uniques, dtype=object)[present],
                            S.SPECIES: species.loc[present].to_numpy(),
                            S.N_FIXES: counts[present]}, geometry=gpd.GeoSeries(simple, crs=S.CRS), crs=S.CRS)
    out.attrs["tolerance_m"] = tol
    log.info("tracks: %d fixes -> %d vertices (tolerance %.0f m)", len(lon),
             int(shapely.get_num_coordinates(simple).sum()), tol)
    return out


def add_tracks(m: folium.Map, tracks: gpd.GeoDataFrame, show: bool = True) -> list[folium.FeatureGroup]:
    """One layer per species; each individual's line in its own colour, tooltip = its id."""
    groups = []
    colours = colour_of(tracks[S.INDIVIDUAL_ID]) if len(tracks) else np.array([], dtype=object)
    for sp in sorted(tracks[S.SPECIES].unique()):
        sel = (tracks[S.SPECIES] == sp).to_numpy()
        sub = tracks.loc[sel]
        data = feature_collection(sub.geometry.to_numpy(), {
            "individual": esc_array(sub[S.INDIVIDUAL_ID]), "species": esc_array(sub[S.SPECIES]),
            "fixes": [fmt(v) for v in sub[S.N_FIXES]], "colour": list(colours[sel])})
        group = folium.FeatureGroup(name=f"Tracks: {esc(sp)} ({len(sub)})", show=show)
        folium.GeoJson(data, style_function=lambda f: {"color": f["properties"]["colour"], "weight": 2,
                                                       "opacity": 0.75},
                       tooltip=folium.GeoJsonTooltip(["individual", "species", "fixes"],
                                                     aliases=["individual", "species", "fixes"])).add_to(group)
        group.add_to(m)
        groups.append(group)
    return groups


def heat_cells(fixes: pd.DataFrame, cell_deg: float = 0.05, max_cells: int = 30_000) -> pd.DataFrame:
    """Fixes aggregated to grid cells for the heatmap (lon, lat of the cell centre, n_fixes).

    The cell doubles until at most ``max_cells`` cells are occupied, so the
    heatmap's size does not grow with the number of fixes.
    """
    lon, lat = fixes[S.LON].to_numpy(float), fixes[S.LAT].to_numpy(float)
    ok = np.isfinite(lon) & np.isfinite(lat)
    lon, lat = lon[ok], lat[ok]
    cell = cell_deg
    while True:
        ix = np.floor((lon + 180.0) / cell).astype(np.int64)
        iy = np.floor((lat + 90.0) / cell).astype(np.int64)
        key, n = np.unique(ix * 10_000_000 + iy, return_counts=True)
        if len(key) <= max_cells:
            break
        cell *= 2.0
    cx, cy = np.divmod(key, 10_000_000)
    return pd.DataFrame({S.LON: -180.0 + (cx + 0.5) * cell, S.LAT: -90.0 + (cy + 0.5) * cell, S.N_FIXES: n})


def add_heatmap(m: folium.Map, cells: pd.DataFrame, show: bool = False) -> folium.FeatureGroup:
    """Use-intensity heatmap of fix cells (log-scaled weights, so stopovers do not swamp flight paths)."""
    w = np.log1p(cells[S.N_FIXES].to_numpy(float))
    w = w / w.max() if len(w) and w.max() > 0 else w
    data = np.column_stack([np.round(cells[S.LAT].to_numpy(float), 4), np.round(cells[S.LON].to_numpy(float), 4),
                            np.round(w, 3)]).tolist()
    group = folium.FeatureGroup(name=f"Use intensity (heatmap of {int(cells[S.N_FIXES].sum()):,} fixes)", show=show)
    plugins.HeatMap(data, radius=12, blur=14, min_opacity=0.25, max_zoom=9).add_to(group)
    group.add_to(m)
    return group

