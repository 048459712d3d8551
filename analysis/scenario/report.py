"""Writers of a scenario run: CSV tables and a self-contained HTML page with fan charts.

Every user-supplied string (titles, scenario, facility and species names,
sources) is escaped with :func:`html.escape`; figures are inline PNG (base64).
"""
from __future__ import annotations

import base64
import html
import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from flyway import schema as S
from flyway.export import write_safe_csv
from flyway.geoparquet import atomic_write_bytes

from .config import ScenarioConfig, WindFarmFacility
from .run import ScenarioResult

log = logging.getLogger(__name__)

__all__ = ["write_csv", "write_html", "fan_chart_png", "facilities_frame", "write_facilities", "read_outputs"]


def write_csv(result: ScenarioResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``summary.csv``, ``collisions.csv``, ``metrics.csv``, ``trajectories.csv``, ``parameters.csv``.

    Returns
    -------
    dict
        Table name → path written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in ("summary", "collisions", "metrics", "trajectories", "parameters"):
        frame: pd.DataFrame = getattr(result, name)
        path = out / f"{name}.csv"
        write_safe_csv(frame, path)
        paths[name] = path
    return paths


def fan_chart_png(result: ScenarioResult, species: str) -> bytes:
    """Fan chart (median, 50 % and 95 % bands) of the population per scenario, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    tq = result.trajectories[result.trajectories[S.SPECIES] == species]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    colours = plt.get_cmap("tab10")
    for i, (name, g) in enumerate(tq.groupby(S.SCENARIO, sort=False)):
        c = colours(i % 10)
        ax.fill_between(g[S.YEAR], g[S.Q2_5], g[S.Q97_5], color=c, alpha=0.12, linewidth=0)
        ax.fill_between(g[S.YEAR], g[S.Q25], g[S.Q75], color=c, alpha=0.25, linewidth=0)
        ax.plot(g[S.YEAR], g[S.MEDIAN], color=c, label=str(name))
    ax.set_xlabel("years from now")
    ax.set_ylabel("individuals")
    ax.set_title(f"{species}: median, 50 % and 95 % of {result.replicates} matched replicates")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _table(frame: pd.DataFrame, floatfmt: str = "{:.4g}") -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for _, row in frame.iterrows():
        cells = []
        for v in row:
            if isinstance(v, (float, np.floating)):
                text = "" if np.isnan(v) else floatfmt.format(v)
            else:
                text = str(v)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_CSS = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
        "font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "th{background:#eee}td:first-child,td:nth-child(2){text-align:left}.note{color:#555;font-size:13px}")


def write_html(result: ScenarioResult, out_dir: str | Path, *, filename: str = "scenario.html",
               proximity=None) -> Path:
    """Write the side-by-side page: summary per species, collisions per facility, fan charts, parameters.

    ``proximity`` (:class:`~.proximity.BreedingProximity`, optional) adds each facility's distance to the
    nearest breeding sites and the share of breeding-season tracked time near it.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = result.config
    years = cfg.run.output_years
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(cfg.title or 'Scenario')}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(cfg.title or 'Scenario comparison')}</h1>",
             f"<p class='note'>Scenario file: {html.escape(cfg.source)}. "
             f"Species table version {html.escape(cfg.species.version)}.</p>"]
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in result.notes]
    for species in result.summary[S.SPECIES].unique():
        s = result.summary[result.summary[S.SPECIES] == species]
        cols = [S.SCENARIO, S.COLLISIONS_MEAN, S.COLLISIONS_Q2_5, S.COLLISIONS_Q97_5, S.ADDED_VS_NATURAL_ADULT_MORTALITY,
                S.COLLISIONS_OVER_PBR]
        for t in years:
            cols += [f"{S.CPS_MEDIAN}_y{t}", f"{S.CGR_MEDIAN}_y{t}", f"{S.P_DECLINE_50}_y{t}"]
        common = cfg.species[species].common_name
        parts.append(f"<h2>{html.escape(common)} (<i>{html.escape(species)}</i>)</h2>")
        parts.append(f"<p>PBR {s[S.PBR].iloc[0]:.3g} birds/yr (λ<sub>max</sub> {s[S.LAMBDA_MAX].iloc[0]:.4f}); "
                     "collisions per year with 95 % interval; CPS and CGR are medians over matched replicates.</p>")
        parts.append(_table(s[cols]))
        png = base64.b64encode(fan_chart_png(result, species)).decode("ascii")
        parts.append(f"<img alt='fan chart {html.escape(species)}' src='data:image/png;base64,{png}'>")
    parts.append("<h2>Collisions per facility</h2>")
    parts.append(_table(result.collisions))
    parts.append("<h2>Facilities</h2><ul>")
    for fac in cfg.facilities.values():
        c = fac.geometry.centroid
        parts.append(f"<li>{html.escape(fac.id)} — {html.escape(fac.name)} ({html.escape(fac.kind)}), "
                     f"centre {c.y:.4f}°N {c.x:.4f}°E</li>")
    parts.append("</ul>")
    if proximity is not None:
        parts += _proximity_html(proximity)
    parts.append("<h2>Parameters and their sources</h2>"
                 "<p class='note'>A non-empty <b>proxy</b> marks a value borrowed from another species or from guidance.</p>")
    parts.append(_table(result.parameters))
    parts.append("</body></html>")
    path = out / filename
    atomic_write_bytes(path, "\n".join(parts).encode("utf-8"))
    return path


def facilities_frame(config: ScenarioConfig):
    """The facilities of a scenario file as a GeoDataFrame (EPSG:4326) for maps and GIS.

    Columns: ``facility_id``, ``facility_name``, ``facility_kind`` (wind_farm /
    power_line), ``turbines``, ``rotor_radius_m``, ``hub_height_m`` (means of
    their distributions), ``wire_low_m``, ``wire_top_m``, ``marked_share``,
    ``length_km``; the geometry is the footprint, the turbine points or the line.
    """
    import geopandas as gpd

    rows, geoms = [], []
    for fac in config.facilities.values():
        row = {S.FACILITY_ID: fac.id, S.FACILITY_NAME: fac.name, S.FACILITY_KIND: fac.kind,
               "turbines": np.nan, "rotor_radius_m": np.nan, "hub_height_m": np.nan, "wire_low_m": np.nan,
               "wire_top_m": np.nan, "marked_share": np.nan, "length_km": np.nan}
        if isinstance(fac, WindFarmFacility):
            p = fac.params
            row.update(turbines=float(p.turbines), rotor_radius_m=float(np.mean(p.rotor_radius_m.mean)),
                       hub_height_m=float(np.mean(p.hub_height_m.mean)))
        else:
            row.update(wire_low_m=fac.wire_low_m, wire_top_m=fac.wire_top_m, marked_share=fac.marked_share,
                       length_km=fac.length_km)
        rows.append(row)
        geoms.append(fac.geometry)
    return gpd.GeoDataFrame(pd.DataFrame(rows), geometry=geoms, crs=S.CRS)


def write_facilities(config: ScenarioConfig, out_dir: str | Path) -> Path:
    """Write ``facilities.geojson`` (see :func:`facilities_frame`) atomically; returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "facilities.geojson"
    atomic_write_bytes(path, facilities_frame(config).to_json(drop_id=True).encode("utf-8"))
    return path


def read_outputs(out_dir: str | Path) -> dict:
    """Read back what ``flyway scenario`` wrote to ``out_dir`` (for the gap map and the planner report).

    Returns
    -------
    dict
        ``facilities`` (GeoDataFrame or None) and every CSV table written
        (``summary``, ``collisions``, ...; a missing one is None), plus
        ``html`` (path of the scenario page or None).
    """
    import geopandas as gpd

    from flyway.errors import InputError

    out = Path(out_dir)
    if not out.is_dir():
        raise InputError("scenario output folder not found; expected the --out folder of `flyway scenario`",
                         file=str(out))
    found: dict = {"html": out / "scenario.html" if (out / "scenario.html").is_file() else None}
    geo = out / "facilities.geojson"
    found["facilities"] = gpd.read_file(geo) if geo.is_file() else None
    for csv_file in sorted(out.glob("*.csv")):
        found[csv_file.stem] = pd.read_csv(csv_file)
    nc = out / "sensitivity.nc"
    if nc.is_file():
        from flyway.analysis.grid import read_netcdf

        found["sensitivity"] = read_netcdf(nc)
    else:
        found["sensitivity"] = None
    if found["facilities"] is None and "summary" not in found:
        raise InputError("no facilities.geojson or summary.csv here; expected the --out folder of "
                         "`flyway scenario`", file=str(out))
    return found


def _proximity_html(proximity) -> list[str]:
    """Nearest breeding sites per facility and breeding-season time near it, as HTML parts."""
    parts = ["<h2>Proximity to breeding sites</h2>"]
    d = proximity.distances
    if len(d):
        nearest = d.sort_values(S.DISTANCE_KM).groupby(S.FACILITY_ID, sort=False).head(3)
        nearest = nearest.sort_values([S.FACILITY_ID, S.DISTANCE_KM])
        cols = [c for c in (S.FACILITY_ID, S.SPECIES, S.SITE_ID, S.COUNTRY, S.N_INDIVIDUALS, S.DISTANCE_KM,
                            "site_source") if c in nearest]
        parts += ["<p>The three nearest breeding sites of each facility (geodesic distance; 0 = inside).</p>",
                  _table(nearest[cols])]
    else:
        parts.append("<p class='note'>No breeding sites known: no stops of kind breeding in the store and no "
                     "site list (<code>--sites</code>).</p>")
    t = proximity.time_shares
    if len(t):
        parts += ["<p>Share of the breeding-season tracked time of each species within each distance of the "
                  "facility.</p>", _table(t)]
    return parts
