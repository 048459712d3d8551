"""The per-bird view: one individual through time.

A time slider (Leaflet.TimeDimension through folium's ``TimestampedGeoJson``)
replays the track; the whole simplified track, the stops (start, end,
duration) and the QC-flagged fixes (shown in their own layer with the names of
their flags, never hidden) are toggleable layers.
"""
from __future__ import annotations

import logging
import os

import folium
import numpy as np
import pandas as pd
import shapely
from folium import plugins

from flyway import schema as S
from flyway.errors import InputError
from flyway.maps import fix_layers as F
from flyway.maps import layers as L
from flyway.maps._escape import esc, esc_array
from flyway.maps.public import PublicParams, generalise_fixes, generalise_stops

log = logging.getLogger(__name__)
QC_COLOUR = "#e41a1c"
TRACK_COLOUR = "#225ea8"


def _thin_in_time(t_ms: np.ndarray, max_points: int) -> np.ndarray:
    """Indices keeping the first fix of each of ``max_points`` equal time bins (time-sorted input)."""
    if len(t_ms) <= max_points:
        return np.arange(len(t_ms))
    span = max(int(t_ms[-1] - t_ms[0]), 1)
    bins = ((t_ms - t_ms[0]) * (max_points - 1) // span).astype(np.int64)
    return np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])


def _time_layer(m: folium.Map, clean: pd.DataFrame, individual: str, max_points: int) -> int:
    t = pd.to_datetime(clean[S.TIMESTAMP], utc=True).to_numpy("datetime64[ms]").astype(np.int64)
    keep = _thin_in_time(t, max_points)
    if len(keep) < 2:
        return len(keep)
    coords = np.round(np.column_stack([clean[S.LON].to_numpy(float)[keep], clean[S.LAT].to_numpy(float)[keep]]), 5)
    feature = {"type": "Feature",
               "geometry": {"type": "LineString", "coordinates": coords.tolist()},
               "properties": {"times": t[keep].tolist(), "tooltip": esc(individual),
                              "style": {"color": TRACK_COLOUR, "weight": 3, "opacity": 0.9},
                              # the moving head inherits these (circle marker, not an image icon)
                              "icon": "circle", "iconstyle": {"radius": 7, "color": "#000", "weight": 2,
                                                              "fillColor": "#ffd700", "fillOpacity": 1}}}
    plugins.TimestampedGeoJson({"type": "FeatureCollection", "features": [feature]}, period="PT6H",
                               duration="P10D", add_last_point=True, auto_play=False, loop=False,
                               date_options="YYYY-MM-DD HH:mm", time_slider_drag_update=True).add_to(m)
    return len(keep)


def _qc_layer(m: folium.Map, flagged: pd.DataFrame, max_markers: int) -> folium.FeatureGroup:
    flags = flagged[S.QC_FLAGS].to_numpy(np.int64)
    names = [", ".join(S.QCFlag.names_of(int(v))) for v in flags]  # one label per flagged fix (few)
    when = pd.to_datetime(flagged[S.TIMESTAMP], utc=True).dt.strftime("%Y-%m-%d %H:%M:%S")
    props = {"time": esc_array(when), "flags": esc_array(names),
             "file": esc_array(flagged[S.SOURCE_FILE]) if S.SOURCE_FILE in flagged else ["–"] * len(flagged)}
    shown = flagged.iloc[:max_markers]
    group = folium.FeatureGroup(name=f"QC-flagged fixes ({len(flagged)})", show=True)
    folium.GeoJson(L.feature_collection(shapely.points(shown[S.LON].to_numpy(float), shown[S.LAT].to_numpy(float)),
                                        {k: v[:max_markers] for k, v in props.items()}),
                   marker=folium.CircleMarker(radius=4, weight=2, color=QC_COLOUR, fill=True, fill_color="#fff",
                                              fill_opacity=1),
                   tooltip=folium.GeoJsonTooltip(["time", "flags", "file"],
                                                 aliases=["time (UTC)", "QC flags", "source file"])).add_to(group)
    group.add_to(m)
    return group


def build_bird_map(fixes: pd.DataFrame, stops: pd.DataFrame | None, individual: str, *,
                   max_time_points: int = 5_000, max_track_vertices: int = 20_000, max_qc_markers: int = 5_000,
                   public: PublicParams | None = None, self_contained: bool = False) -> folium.Map:
    """The map of one individual from its fixes and stops.

    Parameters
    ----------
    fixes : pandas.DataFrame
        Fixes (individual_id, species, timestamp, lon, lat, qc_flags); rows of
        other individuals are ignored.
    stops : pandas.DataFrame, optional
        Stops (:data:`flyway.schema.STOPS`).
    individual : str
        The individual id.
    max_time_points : int
        Vertices of the time-slider track (thinned evenly in time).
    max_track_vertices : int
        Vertex budget of the static simplified track.
    max_qc_markers : int
        QC-flagged fixes drawn (all are counted in the layer name).
    public : PublicParams, optional
        Generalise sensitive positions first.
    self_contained : bool
        Tiles off by default (offline).

    Returns
    -------
    folium.Map

    Raises
    ------
    InputError
        When the individual has no fixes.
    """
    mine = fixes.loc[(fixes[S.INDIVIDUAL_ID].astype(str) == str(individual)).to_numpy()]
    if mine.empty:
        raise InputError(f"no fixes of individual {individual!r}", column=S.INDIVIDUAL_ID)
    mine = mine.sort_values(S.TIMESTAMP, kind="stable")
    its_stops = None
    if stops is not None and len(stops):
        its_stops = stops.loc[(stops[S.INDIVIDUAL_ID].astype(str) == str(individual)).to_numpy()]
    if public is not None and its_stops is not None:
        mine = generalise_fixes(mine, its_stops, public)
        its_stops = generalise_stops(its_stops, public)
    flagged_mask = mine[S.QC_FLAGS].to_numpy() != 0 if S.QC_FLAGS in mine else np.zeros(len(mine), bool)
    clean, flagged = mine.loc[~flagged_mask], mine.loc[flagged_mask]
    lon, lat = mine[S.LON].to_numpy(float), mine[S.LAT].to_numpy(float)
    ok = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
    bounds = (lon[ok].min(), lat[ok].min(), lon[ok].max(), lat[ok].max()) if ok.any() else None
    m = L.new_map(bounds, self_contained=self_contained)
    tracks = F.simplified_tracks(clean, max_vertices=max_track_vertices, tolerance_m=50.0)
    if len(tracks):
        group = folium.FeatureGroup(name="Whole track (simplified)", show=True)
        folium.GeoJson(L.feature_collection(tracks.geometry.to_numpy(), {"individual": esc_array(tracks[S.INDIVIDUAL_ID])}),
                       style_function=lambda f: {"color": "#888", "weight": 1.5, "opacity": 0.7},
                       tooltip=folium.GeoJsonTooltip(["individual"], aliases=["individual"])).add_to(group)
        group.add_to(m)
    if its_stops is not None and len(its_stops):
        L.add_stops(m, its_stops, show=True, legend_position="bottomright")
    if len(flagged):
        # out-of-range coordinates cannot be drawn; they are counted in the layer name
        drawable = flagged.loc[(flagged[S.LAT].abs() <= 90).to_numpy() & (flagged[S.LON].abs() <= 180).to_numpy()]
        _qc_layer(m, drawable, max_qc_markers)
        L.add_legend(m, "Fixes", [(QC_COLOUR, f"QC-flagged ({len(flagged)}, shown, not used for stops)"),
                                  (TRACK_COLOUR, "track replay (time slider)")],
                     position="bottomright")
    n = _time_layer(m, clean, str(individual), max_time_points)
    log.info("bird map of %s: %d fixes, %d in the time slider, %d QC-flagged", individual, len(mine), n, len(flagged))
    if public is not None:
        L.add_legend(m, "Public export", [], note=public.describe(), position="bottomright")
    L.finish_legends(m)
    folium.LayerControl(collapsed=False).add_to(m)
    return m


def bird_map(store: str | os.PathLike[str], individual: str, *, self_contained: bool = False,
             public: bool = False, **kwargs) -> folium.Map:
    """The per-bird map of one individual in a store (``flyway map --individual ID``).

    Parameters
    ----------
    store : path
    individual : str
    self_contained, public : bool
        Offline build; generalise sensitive positions (default :class:`PublicParams`).
    **kwargs
        Passed to :func:`build_bird_map` (``max_time_points`` ...).

    Returns
    -------
    folium.Map

    Examples
    --------
    >>> flyway.maps.bird_map("birds/", "HC-0003").save("hc-0003.html")  # doctest: +SKIP
    """
    from flyway.store import read_derived, read_fixes

    fixes = read_fixes(store, individuals=[str(individual)])
    stops = read_derived(store, "stops")
    return build_bird_map(fixes, stops, individual, public=PublicParams() if public else None,
                          self_contained=self_contained, **kwargs)
