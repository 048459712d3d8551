"""Map layers of a scenario run: the proposed facilities and the collision-sensitivity grid.

:func:`add_facilities` draws wind-farm footprints, turbine points and power
lines of a scenario file (or of its ``facilities.geojson``) in one
"Proposed facilities" layer, with popups giving the design and, when a
collisions table is given, the expected collisions per year and species with
their 95 % interval. :func:`add_sensitivity` draws the grid of
:mod:`flyway.analysis.scenario.sensitivity` as a choropleth of the cells with
tracked flights, on a log colour scale. Every user-supplied string (facility
ids and names, scenario and species names) is escaped with
:func:`flyway.maps._escape.esc`; popups and tooltips only ever receive escaped
text.
"""
from __future__ import annotations

import logging
import math
import os
from typing import Any, Sequence

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr

from flyway import schema as S
from flyway.errors import ConfigError
from flyway.maps._escape import MISSING, esc, esc_array
from flyway.maps.layers import add_legend, feature_collection

log = logging.getLogger(__name__)

__all__ = ["add_facilities", "add_sensitivity", "facility_popups", "sensitivity_cells", "FACILITIES_LAYER",
           "WIND_FARM_COLOUR", "POWER_LINE_COLOUR", "SENSITIVITY_COLOURS"]

FACILITIES_LAYER = "Proposed facilities"
WIND_FARM_COLOUR = "#00838f"
POWER_LINE_COLOUR = "#7b1fa2"
# ColorBrewer YlOrRd (6 classes): one class per decade of expected collisions, highest last
SENSITIVITY_COLOURS = ("#ffffb2", "#fed976", "#feb24c", "#fd8d3c", "#f03b20", "#bd0026")
_KIND_LABEL = {"wind_farm": "wind farm", "power_line": "power line"}
_POPUP_FIELDS = ["name", "id", "kind", "design", "collisions"]
_POPUP_ALIASES = ["proposed facility", "id", "kind", "design", "expected collisions per year (95 % interval)"]


# ---------------------------------------------------------------------------
# proposed facilities
# ---------------------------------------------------------------------------
def _facility_frame(config_or_facilities: Any) -> gpd.GeoDataFrame:
    from flyway.analysis.scenario.config import ScenarioConfig, load_scenario
    from flyway.analysis.scenario.report import facilities_frame

    if isinstance(config_or_facilities, (str, os.PathLike)):
        config_or_facilities = load_scenario(config_or_facilities)
    if isinstance(config_or_facilities, ScenarioConfig):
        return facilities_frame(config_or_facilities)
    if isinstance(config_or_facilities, gpd.GeoDataFrame):
        if S.FACILITY_ID not in config_or_facilities.columns:
            raise ConfigError(f"facilities: missing column {S.FACILITY_ID} (expected facilities.geojson of "
                              "`flyway scenario`)")
        return config_or_facilities
    raise ConfigError(f"facilities = {type(config_or_facilities).__name__}: expected a scenario file, a "
                      "ScenarioConfig or the GeoDataFrame of facilities.geojson")


def _number(row: pd.Series, key: str) -> float:
    v = pd.to_numeric(pd.Series([row.get(key)]), errors="coerce").iloc[0]
    return float(v) if pd.notna(v) else math.nan


def _design(row: pd.Series) -> str:
    """A one-line description of the facility's design (numbers only; escaped anyway)."""
    if str(row.get(S.FACILITY_KIND)) == "power_line":
        low, top, marked, km = (_number(row, k) for k in ("wire_low_m", "wire_top_m", "marked_share", "length_km"))
        parts = [f"wires {low:g}–{top:g} m above ground" if math.isfinite(low) and math.isfinite(top) else "",
                 f"{marked:.0%} marked" if math.isfinite(marked) else "", f"{km:.1f} km" if math.isfinite(km) else ""]
    else:
        n, radius, hub = (_number(row, k) for k in ("turbines", "rotor_radius_m", "hub_height_m"))
        parts = [f"{n:g} turbines" if math.isfinite(n) else "",
                 f"rotor radius {radius:g} m" if math.isfinite(radius) else "",
                 f"hub height {hub:g} m" if math.isfinite(hub) else ""]
    return esc(", ".join(p for p in parts if p) or MISSING)


def _rate(value: Any) -> str:
    """Collisions per year for reading: three significant digits, whole numbers from 100 on."""
    v = float(value)
    if not math.isfinite(v):
        return MISSING
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _collision_lines(collisions: pd.DataFrame | None, facility_id: str) -> str:
    """Escaped HTML: one line per species (and scenario, where the numbers differ between scenarios)."""
    if collisions is None or not len(collisions):
        return MISSING
    mine = collisions.loc[(collisions[S.FACILITY_ID].astype(str) == facility_id).to_numpy()]
    if not len(mine):
        return "not assessed"
    cols = [S.COLLISIONS_MEAN, S.COLLISIONS_Q2_5, S.COLLISIONS_Q97_5]
    rounded = mine.assign(**{c: pd.to_numeric(mine[c], errors="coerce").round(4) for c in cols})
    distinct = rounded.drop_duplicates([S.SPECIES] + cols)
    several = distinct.groupby(S.SPECIES)[S.COLLISIONS_MEAN].transform("size") > 1
    lines = []
    for (_, r), per_scenario in zip(distinct.iterrows(), several.to_numpy()):  # facilities x species: a few rows
        label = esc(r[S.SPECIES]) + (f" ({esc(r[S.SCENARIO])})" if per_scenario and S.SCENARIO in r else "")
        mean, lo, hi = (_rate(r[c]) for c in cols)
        lines.append(f"{label}: {mean} ({lo}–{hi})")
    return "<br>".join(lines)


def facility_popups(frame: gpd.GeoDataFrame, collisions: pd.DataFrame | None = None) -> dict[str, list[str]]:
    """Escaped popup properties of each facility: name, id, kind, design, collisions (HTML lines)."""
    if collisions is not None:
        missing = [c for c in (S.FACILITY_ID, S.SPECIES, S.COLLISIONS_MEAN, S.COLLISIONS_Q2_5, S.COLLISIONS_Q97_5)
                   if c not in collisions.columns]
        if missing:
            raise ConfigError(f"collisions: missing column {missing[0]} (expected collisions.csv of `flyway scenario`)")
    ids = frame[S.FACILITY_ID].astype(str)
    names = frame[S.FACILITY_NAME] if S.FACILITY_NAME in frame else ids
    kinds = frame[S.FACILITY_KIND].astype(str) if S.FACILITY_KIND in frame else pd.Series("", index=frame.index)
    return {"name": esc_array(names), "id": esc_array(ids),
            "kind": esc_array(kinds.map(lambda k: _KIND_LABEL.get(k, k))),
            "design": [_design(row) for _, row in frame.iterrows()],
            "collisions": [_collision_lines(collisions, fid) for fid in ids]}


def add_facilities(m: folium.Map, config_or_facilities: Any, collisions: pd.DataFrame | None = None,
                   show: bool = True) -> folium.FeatureGroup:
    """The proposed facilities of a scenario as one "Proposed facilities" layer, with popups.

    Parameters
    ----------
    m : folium.Map
    config_or_facilities
        A :class:`~flyway.analysis.scenario.config.ScenarioConfig`, the path
        of a scenario file, or the GeoDataFrame of ``facilities.geojson``
        (:func:`~flyway.analysis.scenario.report.read_outputs`).
    collisions : pandas.DataFrame, optional
        The collisions table of the run (``scenario``, ``species``,
        ``facility_id``, ``collisions_mean``, ``collisions_q2.5``,
        ``collisions_q97.5``): the popups give the expected collisions per
        year and species with their 95 % interval.
    show : bool
        Layer visible when the map opens.

    Returns
    -------
    folium.FeatureGroup
    """
    frame = _facility_frame(config_or_facilities)
    props = facility_popups(frame, collisions)
    geoms = frame.geometry.to_numpy()
    type_id = shapely.get_type_id(geoms)
    group = folium.FeatureGroup(name=FACILITIES_LAYER, show=show)
    tooltip_fields, tooltip_aliases = ["name", "kind"], ["proposed facility", "kind"]

    def subset(mask):
        return {k: [v for v, keep in zip(values, mask) if keep] for k, values in props.items()}

    areas = np.isin(type_id, (3, 6))
    lines = np.isin(type_id, (1, 2, 5))
    points = np.isin(type_id, (0, 4))
    if areas.any() or lines.any():
        shapes = areas | lines
        colour = [POWER_LINE_COLOUR if ln else WIND_FARM_COLOUR for ln in lines[shapes]]
        data = feature_collection(geoms[shapes], {**subset(shapes), "colour": colour})
        folium.GeoJson(data, style_function=lambda f: {"color": f["properties"]["colour"], "weight": 3,
                                                       "fillColor": f["properties"]["colour"], "fillOpacity": 0.35},
                       highlight_function=lambda f: {"weight": 5},
                       tooltip=folium.GeoJsonTooltip(tooltip_fields, aliases=tooltip_aliases),
                       popup=folium.GeoJsonPopup(_POPUP_FIELDS, aliases=_POPUP_ALIASES, max_width=420)
                       ).add_to(group)
    if points.any():
        turbines, which = shapely.get_parts(geoms[points], return_index=True)  # one marker per turbine
        sub = subset(points)
        data = feature_collection(turbines, {k: [v[i] for i in which] for k, v in sub.items()})
        folium.GeoJson(data, marker=folium.CircleMarker(radius=4, weight=1, color="#222", fill=True,
                                                        fill_color=WIND_FARM_COLOUR, fill_opacity=0.95),
                       tooltip=folium.GeoJsonTooltip(tooltip_fields, aliases=tooltip_aliases),
                       popup=folium.GeoJsonPopup(_POPUP_FIELDS, aliases=_POPUP_ALIASES, max_width=420)
                       ).add_to(group)
    group.add_to(m)
    items = []
    if areas.any() or points.any():
        items.append((WIND_FARM_COLOUR, "proposed wind farm (footprint or turbines)"))
    if lines.any():
        items.append((POWER_LINE_COLOUR, "proposed power line"))
    note = ("popups: expected collisions per year, mean (95 % interval)" if collisions is not None else None)
    add_legend(m, FACILITIES_LAYER, items, note=note, position="bottomright")
    return group


# ---------------------------------------------------------------------------
# collision-sensitivity grid
# ---------------------------------------------------------------------------
def _edges(ds: xr.Dataset, name: str) -> np.ndarray:
    bounds = f"{name}_bnds"
    if bounds in ds:
        b = ds[bounds].to_numpy()
        return np.r_[b[:, 0], b[-1, 1]]
    c = ds[name].to_numpy()
    step = np.diff(c).mean() if c.size > 1 else 1.0
    return np.r_[c - step / 2, c[-1] + step / 2]


def _pick_species(ds: xr.Dataset, species: str | Sequence[str] | None) -> list[str]:
    available = [str(s) for s in ds[S.SPECIES].to_numpy()]
    if species is None:
        return available
    wanted = [species] if isinstance(species, str) else [str(s) for s in species]
    unknown = [s for s in wanted if s not in available]
    if unknown:
        raise ConfigError(f"species = {unknown[0]!r}: not in the sensitivity grid; expected one of "
                          f"{', '.join(available)}")
    return wanted


def sensitivity_cells(ds: xr.Dataset, species: str | Sequence[str] | None = None,
                      max_cells: int = 10_000) -> pd.DataFrame:
    """Cells of the grid with expected collisions > 0, merged into blocks until at most ``max_cells`` remain.

    Each block of ``f × f`` cells shows its highest cell (a precautionary
    reading: a farm anywhere in the block may meet that cell's birds), with
    that cell's values per species.

    Returns
    -------
    pandas.DataFrame
        ``lon_min``, ``lat_min``, ``lon_max``, ``lat_max``, ``total`` (sum over
        the chosen species, collisions per year) and one column per species;
        ``attrs["block"]`` is the merge factor ``f``.
    """
    from flyway.analysis.scenario.sensitivity import EXPECTED_COLLISIONS

    names = _pick_species(ds, species)
    per = np.nan_to_num(ds[EXPECTED_COLLISIONS].sel({S.SPECIES: names}).transpose(S.SPECIES, S.LAT, S.LON)
                        .to_numpy().astype(float))
    lat_e, lon_e = _edges(ds, S.LAT), _edges(ds, S.LON)
    ny, nx = per.shape[1:]
    f = 1
    while True:
        nyb, nxb = -(-ny // f), -(-nx // f)
        padded = np.zeros((len(names), nyb * f, nxb * f))
        padded[:, :ny, :nx] = per
        blocks = padded.reshape(len(names), nyb, f, nxb, f).transpose(0, 1, 3, 2, 4).reshape(
            len(names), nyb, nxb, f * f)
        total = blocks.sum(axis=0)
        best = np.argmax(total, axis=-1)[..., None]
        top = np.take_along_axis(total, best, axis=-1)[..., 0]
        if int((top > 0).sum()) <= max_cells:
            break
        f *= 2
    iy, ix = np.nonzero(top > 0)
    values = np.take_along_axis(blocks, np.broadcast_to(best[None], (len(names),) + best.shape), axis=-1)[..., 0]
    y0, y1 = iy * f, np.minimum((iy + 1) * f, ny)
    x0, x1 = ix * f, np.minimum((ix + 1) * f, nx)
    out = pd.DataFrame({"lon_min": lon_e[x0], "lat_min": lat_e[y0], "lon_max": lon_e[x1], "lat_max": lat_e[y1],
                        "total": top[iy, ix]})
    for k, name in enumerate(names):
        out[name] = values[k, iy, ix]
    out.attrs["block"] = f
    return out


def _log_classes(values: np.ndarray) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Colour of each value by decade (at most six classes, the lowest open below) and the legend items."""
    top = int(math.floor(math.log10(values.max()))) + 1
    bottom = max(int(math.floor(math.log10(values.min()))), top - len(SENSITIVITY_COLOURS))
    decades = np.arange(bottom, top)  # class k: [10^decades[k], 10^(decades[k]+1))
    colours = SENSITIVITY_COLOURS[len(SENSITIVITY_COLOURS) - len(decades):]
    cls = np.clip(np.floor(np.log10(values)).astype(int) - bottom, 0, len(decades) - 1)
    items = []
    for k, d in enumerate(decades):
        lo, hi = f"{10.0 ** d:g}", f"{10.0 ** (d + 1):g}"
        items.append((colours[k], f"< {hi}" if k == 0 else f"{lo} – {hi}"))
    return np.asarray(colours, dtype=object)[cls], items[::-1]


def add_sensitivity(m: folium.Map, ds: xr.Dataset | str | os.PathLike[str], species: str | Sequence[str] | None = None,
                    max_cells: int = 10_000, show: bool = False) -> folium.FeatureGroup | None:
    """The collision-sensitivity grid as a choropleth of its cells (log colour scale; empty cells omitted).

    Parameters
    ----------
    m : folium.Map
    ds : xarray.Dataset or path
        From :func:`~flyway.analysis.scenario.sensitivity.sensitivity_grid`
        (or its NetCDF file).
    species : str or list of str, optional
        Species whose expected collisions are summed (default all in the grid).
    max_cells : int
        Cells drawn at most; above it cells are merged (:func:`sensitivity_cells`).
    show : bool
        Layer visible when the map opens (off by default: it covers the sites).

    Returns
    -------
    folium.FeatureGroup or None
        None when no cell has tracked flights.
    """
    if not isinstance(ds, xr.Dataset):
        from flyway.analysis.grid import read_netcdf

        ds = read_netcdf(ds)
    names = _pick_species(ds, species)
    cells = sensitivity_cells(ds, names, max_cells=max_cells)
    if not len(cells):
        log.info("sensitivity grid: no cell with tracked flights; no layer")
        return None
    fill, items = _log_classes(cells["total"].to_numpy())
    what = "all species" if species is None else ", ".join(names)
    per_species = ["<br>".join(f"{esc(n)}: {_rate(v)}" for n, v in zip(names, row))
                   for row in cells[names].to_numpy()]
    geoms = shapely.box(cells["lon_min"], cells["lat_min"], cells["lon_max"], cells["lat_max"])
    data = feature_collection(geoms, {"collisions": [_rate(v) for v in cells["total"]], "species": per_species,
                                      "fill": list(fill)})
    group = folium.FeatureGroup(name=f"Collision sensitivity: {esc(what)} ({len(cells):,} cells)", show=show)
    folium.GeoJson(data, style_function=lambda f: {"color": f["properties"]["fill"], "weight": 0,
                                                   "fillColor": f["properties"]["fill"], "fillOpacity": 0.65},
                   tooltip=folium.GeoJsonTooltip(["collisions", "species"],
                                                 aliases=["expected collisions per year (one turbine)", "by species"])
                   ).add_to(group)
    group.add_to(m)
    a = ds.attrs
    turbine = (f"one turbine: rotor radius {a['turbine_rotor_radius_m']:g} m, hub {a['turbine_hub_height_m']:g} m"
               if "turbine_rotor_radius_m" in a else "one standard turbine")
    block = cells.attrs["block"]
    note = (f"{turbine} in the cell; Band option {a.get('band_option', 1)}; population scaled from tracked "
            "in-flight time; cells without tracked flights not drawn"
            + (f"; blocks of {block}×{block} cells show their highest cell" if block > 1 else ""))
    add_legend(m, "Collision sensitivity (collisions/yr)", items, note=note, position="bottomright")
    return group
