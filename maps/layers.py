"""Map layers shared by the gap map and the per-bird view.

Each ``add_*`` function takes a folium map (or group) and plain tables, turns
them into compact GeoJSON (coordinates rounded to 1e-5 degree, about 1 m; only
the properties a popup shows, all escaped by :mod:`flyway.maps._escape`) and
adds one toggleable :class:`folium.FeatureGroup`. Large inputs are reduced
before they reach HTML: tracks are simplified with Douglas-Peucker in a metric
projection until a vertex budget holds, fixes become heatmap cells, markers are
clustered and capped.
"""
from __future__ import annotations

import json
import logging

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from folium import plugins

from flyway import schema as S
from flyway.maps._escape import esc, esc_array, fmt, pct

log = logging.getLogger(__name__)

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd")
KIND_COLOURS = {S.KIND_BREEDING: "#d62728", S.KIND_STOPOVER: "#ff7f0e", S.KIND_WINTERING: "#1f77b4",
                S.KIND_UNKNOWN: "#7f7f7f"}
FACILITY_COLOURS = {"power_plant": "#6a3d9a", "wind_turbine": "#33a02c", "generator": "#b2df8a",
                    "power_line": "#e31a1c", "power_tower": "#fb9a99", "substation": "#cab2d6"}
PROTECTION_STEPS = ((0.0, "#d7191c", "< 10% protected"), (0.1, "#fdae61", "10–50%"),
                    (0.5, "#a6d96a", "50–90%"), (0.9, "#1a9641", "≥ 90%"))
NO_DATA_COLOUR = "#9e9e9e"
GAP_COLOUR = "#e7298a"
PA_COLOUR = "#238b45"
_DIGITS = 5


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def round_coords(geoms: np.ndarray) -> np.ndarray:
    """Geometries with coordinates rounded to 1e-5 degree (smaller JSON, ~1 m)."""
    return shapely.transform(geoms, lambda xy: np.round(xy, _DIGITS))


def feature_collection(geoms: np.ndarray, props: dict[str, list]) -> dict:
    """A GeoJSON FeatureCollection from geometries and per-feature property lists (ids = row numbers)."""
    geo_json = shapely.to_geojson(round_coords(np.asarray(geoms, dtype=object)))
    keys = list(props)
    columns = [props[k] for k in keys]
    features = [{"type": "Feature", "id": str(i), "geometry": json.loads(g),
                 "properties": dict(zip(keys, values))}
                for i, (g, *values) in enumerate(zip(geo_json, *columns))]
    return {"type": "FeatureCollection", "features": features}


def colour_of(values: pd.Series, palette: tuple[str, ...] = PALETTE) -> np.ndarray:
    """A stable colour per distinct value (sorted order)."""
    codes, _ = pd.factorize(values.astype(str), sort=True)
    return np.asarray(palette, dtype=object)[codes % len(palette)]


def protection_colour(fraction: np.ndarray) -> np.ndarray:
    """Step colour of a protected fraction (grey where unknown)."""
    fraction = np.asarray(fraction, float)
    out = np.full(len(fraction), NO_DATA_COLOUR, dtype=object)
    for lower, colour, _ in PROTECTION_STEPS:
        out[np.isfinite(fraction) & (fraction >= lower)] = colour
    return out


def add_legend(m: folium.Map, title: str, items: list[tuple[str, str]], note: str | None = None,
               position: str = "bottomleft") -> None:
    """Queue a categorical legend box (colour swatch + label; every label escaped).

    Legends are stacked in one corner box per side by :func:`finish_legends`.
    """
    rows = "".join(f"<div><span style='display:inline-block;width:12px;height:12px;background:{c};"
                   f"margin-right:5px;border:1px solid #555'></span>{esc(label)}</div>" for c, label in items)
    extra = f"<div style='max-width:240px;margin-top:4px;font-size:11px'>{esc(note)}</div>" if note else ""
    box = (f"<div class='flyway-legend' style='background:rgba(255,255,255,0.92);padding:5px 8px;"
           f"border-radius:4px;box-shadow:0 0 4px #888'><b>{esc(title)}</b>{rows}{extra}</div>")
    legends = m.__dict__.setdefault("_flyway_legends", {})
    legends.setdefault("left" if "left" in position else "right", []).append(box)


def finish_legends(m: folium.Map) -> None:
    """Add the queued legends to the page, one stacked box per bottom corner (above the scale bar)."""
    for side, boxes in m.__dict__.pop("_flyway_legends", {}).items():
        m.get_root().html.add_child(folium.Element(
            f"<div class='flyway-legends' style='position:absolute;bottom:{60 if side == 'left' else 30}px;"
            f"{side}:10px;z-index:1000;display:flex;flex-direction:column;gap:4px;font:12px sans-serif'>"
            f"{''.join(boxes)}</div>"))


def new_map(bounds: tuple[float, float, float, float] | None, *, self_contained: bool) -> folium.Map:
    """An empty map: OpenStreetMap tiles (off in self-contained mode) and Natural Earth outlines.

    In self-contained mode nothing is fetched from the network when the map
    opens; the tile layer stays available in the layer control for when it is.
    """
    m = folium.Map(tiles=None, prefer_canvas=True, control_scale=True)
    # folium passes max_zoom only to tile layers; MarkerCluster needs it on the map (no tiles offline)
    m.options["maxZoom"], m.options["minZoom"] = 18, 2
    folium.TileLayer("OpenStreetMap", name="OpenStreetMap tiles (online)", overlay=False,
                     show=not self_contained).add_to(m)
    add_countries(m)
    if bounds is not None and np.all(np.isfinite(bounds)):
        m.fit_bounds([[bounds[1], bounds[0]], [bounds[3], bounds[2]]])
    return m


def add_countries(m: folium.Map) -> None:
    """Country outlines (Natural Earth 1:50m, public domain) as an always-available vector base."""
    from flyway.analysis.countries import load_countries

    countries = load_countries()
    data = feature_collection(countries.geometry.to_numpy(),
                              {"name": esc_array(countries[S.COUNTRY_NAME]), "iso3": esc_array(countries[S.COUNTRY])})
    group = folium.FeatureGroup(name="Country outlines (Natural Earth)", show=True)
    folium.GeoJson(data, style_function=lambda f: {"color": "#666", "weight": 1, "fillColor": "#f2efe9",
                                                   "fillOpacity": 0.6},
                   interactive=False).add_to(group)
    group.add_to(m)


# ---------------------------------------------------------------------------
# stops
# ---------------------------------------------------------------------------
def stop_properties(stops: pd.DataFrame) -> dict[str, list]:
    """Escaped popup fields of stops (id, individual, kind, season, start, end, duration)."""
    start = pd.to_datetime(stops[S.START_TIME], utc=True).dt.strftime("%Y-%m-%d %H:%M")
    end = pd.to_datetime(stops[S.END_TIME], utc=True).dt.strftime("%Y-%m-%d %H:%M")
    days = stops[S.DURATION_H].to_numpy(float) / 24.0
    return {"individual": esc_array(stops[S.INDIVIDUAL_ID]), "species": esc_array(stops[S.SPECIES]),
            "kind": esc_array(stops[S.KIND]),
            "season": esc_array(stops[S.SEASON]) if S.SEASON in stops else ["–"] * len(stops),
            "start": esc_array(start), "end": esc_array(end), "days": [fmt(d) for d in days],
            "country": esc_array(stops[S.COUNTRY]) if S.COUNTRY in stops else ["–"] * len(stops)}


_STOP_FIELDS = ["individual", "species", "kind", "season", "start", "end", "days", "country"]
_STOP_ALIASES = ["individual", "species", "kind", "season", "start (UTC)", "end (UTC)", "duration (days)", "country"]


def add_stops(m: folium.Map, stops: pd.DataFrame, max_markers: int = 20_000,
              show: bool = True, legend_position: str = "bottomleft") -> list[folium.FeatureGroup]:
    """Stop centroids, one layer per kind, sized by duration; popups with start/end/duration.

    Above ``max_markers`` stops the longest are kept (the legend says so).
    """
    if len(stops) > max_markers:
        stops = stops.nlargest(max_markers, S.DURATION_H)
    groups = []
    for kind in S.STOP_KINDS:
        sub = stops.loc[(stops[S.KIND].astype(str) == kind).to_numpy()]
        if sub.empty:
            continue
        days = sub[S.DURATION_H].to_numpy(float) / 24.0
        props = stop_properties(sub)
        props["r"] = list(np.round(np.clip(2 + np.sqrt(days), 3, 9), 1))
        data = feature_collection(shapely.points(sub[S.LON].to_numpy(float), sub[S.LAT].to_numpy(float)), props)
        colour = KIND_COLOURS[kind]
        group = folium.FeatureGroup(name=f"Stops: {kind} ({len(sub)})", show=show and kind != S.KIND_UNKNOWN)
        folium.GeoJson(data, marker=folium.CircleMarker(radius=5, weight=1, color="#333", fill=True,
                                                        fill_color=colour, fill_opacity=0.85),
                       style_function=lambda f: {"radius": f["properties"]["r"]},
                       tooltip=folium.GeoJsonTooltip(["individual", "kind", "days"],
                                                     aliases=["individual", "kind", "duration (days)"]),
                       popup=folium.GeoJsonPopup(_STOP_FIELDS, aliases=_STOP_ALIASES)).add_to(group)
        group.add_to(m)
        groups.append(group)
    add_legend(m, "Stops", [(KIND_COLOURS[k], k) for k in S.STOP_KINDS], position=legend_position)
    return groups


# ---------------------------------------------------------------------------
# sites, gaps, protected areas
# ---------------------------------------------------------------------------
def site_properties(sites: gpd.GeoDataFrame) -> dict[str, list]:
    """Escaped statistics of each site for its tooltip and popup."""
    def col(name, f=esc):
        return [f(v) for v in sites[name]] if name in sites else ["–"] * len(sites)

    return {"site": col(S.SITE_ID), "species": col(S.SPECIES), "individuals": col(S.N_INDIVIDUALS, fmt),
            "share": col(S.SHARE_OF_TRACKED, pct), "bird_days": col(S.BIRD_DAYS, fmt),
            "seasons": col(S.SEASONS), "kinds": col(S.KINDS), "countries": col(S.COUNTRIES),
            "protected": col(S.PROTECTED_FRACTION, pct), "protected_by": col(S.PROTECTED_BY),
            "nearest_km": col(S.NEAREST_INFRASTRUCTURE_KM, fmt)}


_SITE_FIELDS = ["site", "species", "individuals", "share", "bird_days", "seasons", "kinds", "countries",
                "protected", "protected_by", "nearest_km"]
_SITE_ALIASES = ["site", "species", "individuals", "share of tracked birds", "bird-days", "seasons", "kinds",
                 "countries", "protected fraction", "protected by", "nearest infrastructure (km)"]


def add_sites(m: folium.Map, sites: gpd.GeoDataFrame) -> folium.FeatureGroup:
    """Site polygons coloured by protected fraction, with the use statistics in popups."""
    props = site_properties(sites)
    frac = sites[S.PROTECTED_FRACTION].to_numpy(float) if S.PROTECTED_FRACTION in sites else np.full(len(sites), np.nan)
    props["fill"] = list(protection_colour(frac))
    data = feature_collection(sites.geometry.to_numpy(), props)
    group = folium.FeatureGroup(name=f"Sites by protected fraction ({len(sites)})", show=True)
    folium.GeoJson(data, style_function=lambda f: {"color": "#222", "weight": 1,
                                                   "fillColor": f["properties"]["fill"], "fillOpacity": 0.6},
                   highlight_function=lambda f: {"weight": 3},
                   tooltip=folium.GeoJsonTooltip(["site", "species", "protected"],
                                                 aliases=["site", "species", "protected"]),
                   popup=folium.GeoJsonPopup(_SITE_FIELDS, aliases=_SITE_ALIASES, max_width=420)).add_to(group)
    # centre markers keep small sites visible at flyway scale; same colour, same popup
    days = sites[S.BIRD_DAYS].to_numpy(float) if S.BIRD_DAYS in sites else np.ones(len(sites))
    props["r"] = list(np.round(np.clip(3 + np.sqrt(np.nan_to_num(days)) / 2, 4, 16), 1))
    centres = shapely.points(sites[S.LON].to_numpy(float), sites[S.LAT].to_numpy(float))
    folium.GeoJson(feature_collection(centres, props),
                   marker=folium.CircleMarker(radius=6, weight=1, color="#222", fill=True, fill_opacity=0.85),
                   style_function=lambda f: {"fillColor": f["properties"]["fill"], "radius": f["properties"]["r"]},
                   tooltip=folium.GeoJsonTooltip(["site", "species", "protected"],
                                                 aliases=["site", "species", "protected"]),
                   popup=folium.GeoJsonPopup(_SITE_FIELDS, aliases=_SITE_ALIASES, max_width=420)).add_to(group)
    group.add_to(m)
    add_legend(m, "Sites: protected fraction",
               [(c, label) for _, c, label in PROTECTION_STEPS] + [(NO_DATA_COLOUR, "not assessed")])
    return group


def add_gaps(m: folium.Map, gaps: pd.DataFrame, sites: gpd.GeoDataFrame, top: int = 20) -> folium.FeatureGroup:
    """The ``top`` ranked coverage gaps outlined in magenta, with rank and unprotected bird-days."""
    g = gaps.sort_values(S.GAP_RANK).head(top) if S.GAP_RANK in gaps else gaps.head(top)
    geo = sites.set_index(sites[S.SITE_ID].astype(str)).geometry
    g = g[g[S.SITE_ID].astype(str).isin(geo.index)]
    geoms = geo.loc[g[S.SITE_ID].astype(str)].to_numpy()
    props = {"rank": [fmt(r) for r in g[S.GAP_RANK]] if S.GAP_RANK in g else [fmt(i + 1) for i in range(len(g))],
             "site": esc_array(g[S.SITE_ID]), "species": esc_array(g[S.SPECIES]),
             "unprotected_bird_days": [fmt(v) for v in g[S.UNPROTECTED_BIRD_DAYS]]
             if S.UNPROTECTED_BIRD_DAYS in g else ["–"] * len(g),
             "share": [pct(v) for v in g[S.SHARE_OF_TRACKED]] if S.SHARE_OF_TRACKED in g else ["–"] * len(g)}
    group = folium.FeatureGroup(name=f"Top {len(g)} coverage gaps", show=True)
    folium.GeoJson(feature_collection(geoms, props),
                   style_function=lambda f: {"color": GAP_COLOUR, "weight": 4, "fill": False, "dashArray": "6 4"},
                   tooltip=folium.GeoJsonTooltip(["rank", "site", "species", "unprotected_bird_days", "share"],
                                                 aliases=["gap rank", "site", "species", "unprotected bird-days",
                                                          "share of tracked birds"])).add_to(group)
    group.add_to(m)
    add_legend(m, "Coverage gaps", [(GAP_COLOUR, f"top {len(g)} unprotected sites by use")])
    return group


def add_protected_areas(m: folium.Map, pas: gpd.GeoDataFrame, tolerance_deg: float = 0.002,
                        show: bool = True) -> folium.FeatureGroup:
    """Protected areas (simplified for display), name / designation / IUCN category in the tooltip."""
    geoms = shapely.simplify(pas.geometry.to_numpy(), tolerance_deg, preserve_topology=True)

    def col(name):
        return esc_array(pas[name]) if name in pas else ["–"] * len(pas)

    data = feature_collection(geoms, {"name": col(S.PA_NAME), "id": col(S.PA_ID), "designation": col(S.DESIGNATION),
                                      "iucn": col(S.IUCN_CAT), "status": col(S.STATUS)})
    group = folium.FeatureGroup(name=f"Protected areas ({len(pas)})", show=show)
    folium.GeoJson(data, style_function=lambda f: {"color": PA_COLOUR, "weight": 1, "fillColor": PA_COLOUR,
                                                   "fillOpacity": 0.15},
                   tooltip=folium.GeoJsonTooltip(["name", "id", "designation", "iucn", "status"],
                                                 aliases=["protected area", "id", "designation", "IUCN", "status"])
                   ).add_to(group)
    group.add_to(m)
    add_legend(m, "Protected areas", [(PA_COLOUR, "protected area (user-supplied)")])
    return group


# ---------------------------------------------------------------------------
# infrastructure
# ---------------------------------------------------------------------------
def add_infrastructure(m: folium.Map, facilities: gpd.GeoDataFrame, max_markers: int = 5_000,
                       show: bool = True) -> list[folium.FeatureGroup]:
    """Energy facilities: points clustered per kind, lines drawn; at most ``max_markers`` points per kind.

    Above the cap the largest facilities (by capacity) are kept.
    """
    groups = []
    kinds = facilities[S.FACILITY_KIND].astype("string").fillna("unknown")
    for kind in sorted(kinds.unique()):
        sub = facilities.loc[(kinds == kind).to_numpy()]
        is_point = (shapely.get_type_id(sub.geometry.to_numpy()) == 0)
        points, others = sub.loc[is_point], sub.loc[~is_point]
        if len(points) > max_markers:
            cap = points[S.CAPACITY_MW] if S.CAPACITY_MW in points else pd.Series(0.0, index=points.index)
            points = points.loc[cap.fillna(0).sort_values(ascending=False).index[:max_markers]]
        colour = FACILITY_COLOURS.get(kind, "#444")

        def props(t):
            return {"name": esc_array(t[S.FACILITY_NAME]) if S.FACILITY_NAME in t else ["–"] * len(t),
                    "id": esc_array(t[S.FACILITY_ID]) if S.FACILITY_ID in t else ["–"] * len(t),
                    "kind": [esc(kind)] * len(t),
                    "source": esc_array(t[S.FACILITY_SOURCE]) if S.FACILITY_SOURCE in t else ["–"] * len(t),
                    "mw": [fmt(v) for v in t[S.CAPACITY_MW]] if S.CAPACITY_MW in t else ["–"] * len(t)}

        fields, aliases = ["name", "id", "kind", "source", "mw"], ["facility", "id", "kind", "source", "capacity (MW)"]
        group = folium.FeatureGroup(name=f"Infrastructure: {esc(kind)} ({len(sub)})", show=show)
        if len(points):
            cluster = plugins.MarkerCluster(name=None, options={"disableClusteringAtZoom": 11,
                                                                "chunkedLoading": True}).add_to(group)
            folium.GeoJson(feature_collection(points.geometry.to_numpy(), props(points)),
                           marker=folium.CircleMarker(radius=5, weight=1, color="#222", fill=True, fill_color=colour,
                                                      fill_opacity=0.9),
                           tooltip=folium.GeoJsonTooltip(fields, aliases=aliases)).add_to(cluster)
        if len(others):
            folium.GeoJson(feature_collection(others.geometry.to_numpy(), props(others)),
                           style_function=lambda f, c=colour: {"color": c, "weight": 2},
                           tooltip=folium.GeoJsonTooltip(fields, aliases=aliases)).add_to(group)
        group.add_to(m)
        groups.append(group)
    if groups:
        add_legend(m, "Energy infrastructure",
                   [(FACILITY_COLOURS.get(k, "#444"), k) for k in sorted(kinds.unique())], position="bottomright")
    return groups
