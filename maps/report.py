"""The planner report: one HTML page, CSV/GeoJSON downloads, PNG charts and the data dictionary.

Per species, season and country: tracked birds, stops, sites, the share of use
inside protected areas, the top unprotected sites, distance to infrastructure
and the breeding x wintering connectivity matrix; charts of stopover durations,
use per country and coverage by season. With :class:`PublicParams` (the
default for ``flyway report``: reports go to partners) sensitive locations are
generalised in the tables and downloads, and the page says so.
"""
from __future__ import annotations

import csv
import datetime as dt
import logging
import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

import flyway
from flyway import schema as S
from flyway.analysis.countries import connectivity_matrix, transboundary_summary
from flyway.export import csv_safe
from flyway.errors import SchemaError
from flyway.maps._escape import esc, frame_html, pct
from flyway.maps.public import PublicParams, generalise_sites, generalise_stops

log = logging.getLogger(__name__)

# columns exported by the report that no table contract describes: (unit, meaning)
EXTRA_COLUMNS: dict[str, tuple[str, str]] = {
    S.AREA_KM2: ("km2", "site area in an equal-area projection"),
    S.PROTECTED_FIX_FRACTION: ("1", "share of the use (fixes or stop fixes) inside the site that lies in protected areas"),
    S.UNPROTECTED_BIRD_DAYS: ("d", "bird-days at the site outside protected areas"),
    S.GAP_RANK: ("", "rank of the gap by unprotected bird-days (1 = largest)"),
    S.PROTECTED_BIRD_DAYS: ("d", "bird-days of stops whose centroid lies in a protected area"),
    S.PROTECTED_SHARE: ("1", "protected_bird_days / bird_days"),
    S.BREEDING_COUNTRY: ("", "ISO3 of the country where the bird spent most breeding bird-days"),
    S.WINTERING_COUNTRY: ("", "ISO3 of the country where the bird spent most wintering bird-days"),
    S.N_STOPS: ("count", "stop events"),
    S.N_INDIVIDUALS: ("count", "distinct tracked individuals"),
    S.BIRD_DAYS: ("d", "sum of stop durations"),
    S.COUNTRY: ("", "ISO 3166-1 alpha-3 country code"),
}


def _describe(column: str, table: str) -> dict:
    contract = {"stops": S.STOPS, "sites": S.SITES, "gaps": S.SITES}.get(table)
    if contract is not None and column in contract:
        d = contract[column]
        return {"file": table, "column": column, "type": str(d.type), "unit": d.unit, "description": d.description}
    for c in (S.STOPS, S.SITES):
        if column in c:
            return {"file": table, "column": column, "type": str(c[column].type), "unit": c[column].unit,
                    "description": c[column].description}
    if column in EXTRA_COLUMNS:
        unit, text = EXTRA_COLUMNS[column]
        return {"file": table, "column": column, "type": "", "unit": unit, "description": text}
    raise SchemaError(f"report export {table}: column {column!r} has no entry in the data dictionary")


def data_dictionary(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per exported column (file, column, type, unit, description).

    Raises
    ------
    SchemaError
        When an exported column is described nowhere (contracts or :data:`EXTRA_COLUMNS`).
    """
    rows = [_describe(str(c), name) for name, t in tables.items() for c in t.columns if c != S.GEOMETRY]
    return pd.DataFrame(rows, columns=["file", "column", "type", "unit", "description"])


# ---------------------------------------------------------------------------
# charts (matplotlib Figure objects: no pyplot global state)
# ---------------------------------------------------------------------------
def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def chart_stopover_durations(stops: pd.DataFrame, path: Path) -> Path:
    """Histogram of stopover durations (days), one panel per species."""
    stopovers = stops.loc[(stops[S.KIND].astype(str) == S.KIND_STOPOVER).to_numpy()]
    species = sorted(stopovers[S.SPECIES].astype(str).unique()) or ["(none)"]
    fig = Figure(figsize=(4 * len(species), 3))
    days = stopovers[S.DURATION_H].to_numpy(float) / 24.0
    bins = np.linspace(0, max(np.nanmax(days, initial=1.0), 1.0), 21)
    for i, sp in enumerate(species):
        ax = fig.add_subplot(1, len(species), i + 1)
        ax.hist(days[(stopovers[S.SPECIES].astype(str) == sp).to_numpy()], bins=bins, color="#ff7f0e")
        ax.set_title(sp, fontsize=9, style="italic")
        ax.set_xlabel("stopover duration (days)")
        ax.set_ylabel("stopovers")
    return _save(fig, path)


def chart_countries(by_country: pd.DataFrame, path: Path) -> Path:
    """Bird-days per country, stacked by species."""
    wide = by_country.groupby([S.COUNTRY, S.SPECIES], dropna=False)[S.BIRD_DAYS].sum().unstack(fill_value=0)
    wide.index = wide.index.astype(str)
    fig = Figure(figsize=(7, 3.5))
    ax = fig.add_subplot()
    bottom = np.zeros(len(wide))
    for sp in wide.columns:
        ax.bar(wide.index, wide[sp].to_numpy(float), bottom=bottom, label=str(sp))
        bottom += wide[sp].to_numpy(float)
    ax.set_ylabel("bird-days at stops")
    ax.set_xlabel("country (ISO3)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def chart_coverage(by_group: pd.DataFrame, path: Path) -> Path:
    """Share of bird-days inside protected areas per season, one bar per species."""
    g = by_group.groupby([S.SEASON, S.SPECIES], dropna=False)[[S.BIRD_DAYS, S.PROTECTED_BIRD_DAYS]].sum()
    share = (g[S.PROTECTED_BIRD_DAYS] / g[S.BIRD_DAYS].where(g[S.BIRD_DAYS] > 0)).unstack()
    share.index = share.index.astype(str)
    fig = Figure(figsize=(7, 3.5))
    ax = fig.add_subplot()
    width = 0.8 / max(len(share.columns), 1)
    x = np.arange(len(share))
    for i, sp in enumerate(share.columns):
        ax.bar(x + i * width, 100 * share[sp].to_numpy(float), width, label=str(sp))
    ax.set_xticks(x + width * (len(share.columns) - 1) / 2, share.index, rotation=30, fontsize=8)
    ax.set_ylabel("% of bird-days protected")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    return _save(fig, path)


# ---------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------
def _species_summary(stops: pd.DataFrame, sites, by_group) -> pd.DataFrame:
    days = stops[S.DURATION_H].to_numpy(float) / 24.0
    frame = pd.DataFrame({S.SPECIES: stops[S.SPECIES].astype(str).to_numpy(), "days": days,
                          "stopover": (stops[S.KIND].astype(str) == S.KIND_STOPOVER).to_numpy(),
                          S.INDIVIDUAL_ID: stops[S.INDIVIDUAL_ID].astype(str).to_numpy()})
    out = frame.groupby(S.SPECIES).agg(tracked_birds=(S.INDIVIDUAL_ID, "nunique"), stops=("days", "size"),
                                       stopovers=("stopover", "sum"), bird_days=("days", "sum"))
    med = frame[frame["stopover"]].groupby(S.SPECIES)["days"].median()
    out["median_stopover_days"] = med.reindex(out.index)
    if sites is not None:
        out["sites"] = sites.groupby(sites[S.SPECIES].astype(str)).size().reindex(out.index).fillna(0).astype(int)
    if by_group is not None:
        g = by_group.groupby(S.SPECIES)[[S.BIRD_DAYS, S.PROTECTED_BIRD_DAYS]].sum()
        out["share_protected"] = (g[S.PROTECTED_BIRD_DAYS] / g[S.BIRD_DAYS]).reindex(out.index)
    return out.reset_index()


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    csv_safe(pd.DataFrame(frame.drop(columns=S.GEOMETRY, errors="ignore"))).to_csv(
        path, index=False, quoting=csv.QUOTE_MINIMAL)
    return path


_CSS = """body{font:14px/1.4 sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;color:#222}
table.data{border-collapse:collapse;margin:.5em 0 1.2em;font-size:12px}
table.data th,table.data td{border:1px solid #ccc;padding:2px 6px;text-align:right}
table.data th{background:#f0f0f0} .note{background:#fff3cd;border:1px solid #e0c060;padding:.5em 1em}
img{max-width:100%;border:1px solid #ddd;margin:.3em 0}"""


def build_report(out_dir: str | os.PathLike[str], *, stops: pd.DataFrame, sites: gpd.GeoDataFrame | None = None,
                 gaps: pd.DataFrame | None = None, coverage_by_group: pd.DataFrame | None = None,
                 public: PublicParams | None = PublicParams(), title: str = "Flyway planner report",
                 map_file: str | None = None, scenario: dict | None = None) -> Path:
    """Write the report folder from tables; returns the path of ``index.html``.

    Parameters
    ----------
    out_dir : path
        Folder for ``index.html``, the CSV/GeoJSON downloads and the PNG charts.
    stops : pandas.DataFrame
        Stops (:data:`flyway.schema.STOPS`).
    sites : geopandas.GeoDataFrame, optional
        Sites, ideally with coverage and exposure filled.
    gaps : pandas.DataFrame, optional
        Ranked gaps (``coverage(...).gaps``).
    coverage_by_group : pandas.DataFrame, optional
        ``coverage(...).by_group`` (protected share per species x season x country).
    public : PublicParams or None
        Generalise sensitive locations (default); ``None`` exports exact positions.
    title : str
    map_file : str, optional
        Name of a map HTML file in ``out_dir`` to link to.
    scenario : dict, optional
        Outputs of ``flyway scenario`` (:func:`flyway.analysis.scenario.report.read_outputs`): adds the
        section on proposed energy infrastructure, copies the scenario page and its tables.

    Returns
    -------
    pathlib.Path
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if public is not None:
        stops = generalise_stops(stops, public)
        sites = generalise_sites(sites, public) if sites is not None else None
        if gaps is not None and sites is not None:
            gaps = gaps.drop(columns=[S.LON, S.LAT], errors="ignore").merge(
                pd.DataFrame(sites[[S.SITE_ID, S.LON, S.LAT]]), on=S.SITE_ID, how="left")
    by_country = transboundary_summary(stops)
    tables: dict[str, pd.DataFrame] = {"stops": stops.drop(columns=S.GEOMETRY, errors="ignore"),
                                       "by_country": by_country}
    conn = {}
    for sp in sorted(stops[S.SPECIES].astype(str).unique()):
        mat = connectivity_matrix(stops, sp)
        if mat.size:
            conn[sp] = mat
    conn_long = pd.concat([m.stack().rename(S.N_INDIVIDUALS).reset_index().assign(**{S.SPECIES: sp})
                           for sp, m in conn.items()], ignore_index=True) if conn else None
    if conn_long is not None:
        tables["connectivity"] = conn_long
    if sites is not None:
        tables["sites"] = pd.DataFrame(sites.drop(columns=S.GEOMETRY))
    if gaps is not None:
        tables["gaps"] = gaps
    if coverage_by_group is not None:
        tables["coverage_by_group"] = coverage_by_group
    dictionary = data_dictionary(tables)
    files = {name: _write_csv(t, out / f"{name}.csv") for name, t in tables.items()}
    files["data_dictionary"] = _write_csv(dictionary, out / "data_dictionary.csv")
    if sites is not None:
        geo = sites.copy()
        for c in geo.columns:
            if c != geo.geometry.name and geo[c].dtype == object:
                geo[c] = geo[c].astype("string")
        (out / "sites.geojson").write_text(geo.to_json(drop_id=True), encoding="utf-8")
        files["sites.geojson"] = out / "sites.geojson"
    charts = {"Stopover durations": chart_stopover_durations(stops, out / "stopover_durations.png"),
              "Use per country": chart_countries(by_country, out / "use_per_country.png")}
    if coverage_by_group is not None and len(coverage_by_group):
        charts["Coverage by season"] = chart_coverage(coverage_by_group, out / "coverage_by_season.png")

    parts = [f"<h1>{esc(title)}</h1>",
             f"<p>Generated {esc(dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'))} by flyway "
             f"{esc(flyway.__version__)}.</p>"]
    if public is not None:
        parts.append(f"<p class='note'><b>Public export.</b> {esc(public.describe())} The downloads below are "
                     "generalised the same way.</p>")
    else:
        parts.append("<p class='note'><b>Exact locations.</b> Not generalised: do not share outside the "
                     "project (use the public export for partners).</p>")
    if map_file:
        parts.append(f"<p><a href='{esc(map_file)}'>Open the gap map</a></p>")
    parts += ["<h2>Per species</h2>",
              frame_html(_species_summary(stops, sites, coverage_by_group),
                         {"share_protected": pct})]
    parts += ["<h2>Per country, species and season</h2>", frame_html(by_country)]
    if coverage_by_group is not None:
        parts += ["<h2>Share of use inside protected areas</h2>",
                  frame_html(coverage_by_group, {S.PROTECTED_SHARE: pct})]
    if gaps is not None:
        cols = [c for c in (S.GAP_RANK, S.SITE_ID, S.SPECIES, S.N_INDIVIDUALS, S.SHARE_OF_TRACKED, S.BIRD_DAYS,
                            S.UNPROTECTED_BIRD_DAYS, S.PROTECTED_FRACTION, S.COUNTRIES, S.NEAREST_INFRASTRUCTURE_KM)
                if c in gaps]
        parts += ["<h2>Top unprotected sites</h2>",
                  frame_html(gaps[cols].head(20), {S.SHARE_OF_TRACKED: pct, S.PROTECTED_FRACTION: pct})]
    if sites is not None and S.NEAREST_INFRASTRUCTURE_KM in sites and sites[S.NEAREST_INFRASTRUCTURE_KM].notna().any():
        near = sites.nsmallest(20, S.NEAREST_INFRASTRUCTURE_KM)
        parts += ["<h2>Sites closest to energy infrastructure</h2>",
                  frame_html(pd.DataFrame(near[[S.SITE_ID, S.SPECIES, S.KINDS, S.BIRD_DAYS,
                                                S.NEAREST_INFRASTRUCTURE_KM]]))]
    if scenario is not None:
        parts += _scenario_section(scenario, out, files, public)
    parts.append("<h2>Migratory connectivity (individuals, breeding x wintering country)</h2>")
    for sp, mat in conn.items():
        parts += [f"<h3><i>{esc(sp)}</i></h3>", frame_html(mat, index=True)]
    parts.append("<h2>Charts</h2>")
    parts += [f"<h3>{esc(t)}</h3><img src='{esc(p.name)}' alt='{esc(t)}'>" for t, p in charts.items()]
    parts.append("<h2>Downloads</h2><ul>")
    parts += [f"<li><a href='{esc(p.name)}'>{esc(p.name)}</a></li>" for p in files.values()]
    parts += ["</ul><h2>Data dictionary</h2>", frame_html(dictionary, max_rows=len(dictionary))]
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>")
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    log.info("report written to %s (%d downloads, %d charts)", index, len(files), len(charts))
    return index


def _scenario_section(scenario: dict, out: Path, files: dict[str, Path], public: PublicParams | None) -> list[str]:
    """Proposed wind farms and power lines: the side-by-side table, collisions per facility, proximity."""
    import shutil

    parts = ["<h2>Proposed energy infrastructure: scenarios</h2>"]
    if scenario.get("html") is not None:
        shutil.copyfile(scenario["html"], out / "scenario.html")
        parts.append("<p><a href='scenario.html'>Open the full scenario comparison</a> (fan charts of the "
                     "population, every parameter with its source).</p>")
    summary = scenario.get("summary")
    if summary is not None and len(summary):
        years = sorted({int(c.rsplit("_y", 1)[1]) for c in summary.columns if c.startswith(f"{S.CPS_MEDIAN}_y")})
        cols = [c for c in (S.SCENARIO, S.SPECIES, S.COLLISIONS_MEAN, S.COLLISIONS_Q2_5, S.COLLISIONS_Q97_5,
                            S.ADDED_VS_NATURAL_ADULT_MORTALITY, S.COLLISIONS_OVER_PBR) if c in summary]
        cols += [c for t in years for c in (f"{S.CPS_MEDIAN}_y{t}", f"{S.P_DECLINE_50}_y{t}") if c in summary]
        parts += ["<p>Collisions per year (mean and 95 % interval) of each scenario, as a share of PBR, and the "
                  "counterfactual of population size (CPS: impacted / baseline, median of matched replicates) "
                  "and the probability of a decline of more than 50 % at each horizon.</p>",
                  frame_html(summary[cols], max_rows=len(summary))]
    collisions = scenario.get("collisions")
    if collisions is not None and len(collisions):
        parts += ["<h3>Collisions per facility</h3>", frame_html(collisions, max_rows=len(collisions))]
    distances = scenario.get("breeding_distances")
    if distances is not None and len(distances):
        if public is not None:  # distances stay; the breeding sites' own positions do not leave the project
            distances = distances.drop(columns=[S.LON, S.LAT], errors="ignore")
        nearest = distances.sort_values(S.DISTANCE_KM).groupby(S.FACILITY_ID, sort=False).head(5)
        parts += ["<h3>Distance to breeding sites (nearest five per facility)</h3>",
                  frame_html(nearest.sort_values([S.FACILITY_ID, S.DISTANCE_KM]), max_rows=len(nearest))]
        scenario = dict(scenario, breeding_distances=distances)
    shares = scenario.get("breeding_time_shares")
    if shares is not None and len(shares):
        parts += ["<h3>Share of breeding-season tracked time near each facility</h3>",
                  frame_html(shares, max_rows=len(shares))]
    for name in ("summary", "collisions", "breeding_distances", "breeding_time_shares"):
        if scenario.get(name) is not None:
            files[f"scenario_{name}"] = _write_csv(scenario[name], out / f"scenario_{name}.csv")
    if scenario.get("facilities") is not None:
        path = out / "scenario_facilities.geojson"
        path.write_text(scenario["facilities"].to_json(drop_id=True), encoding="utf-8")
        files["scenario_facilities"] = path
    return parts


def report(store: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, protected_areas=None,
           infrastructure=None, public: bool = True, with_map: bool = True, self_contained: bool = True,
           scenario: str | os.PathLike[str] | None = None) -> Path:
    """The planner report of a store (``flyway report --store STORE --out DIR``).

    Parameters
    ----------
    store : path
    out_dir : path
    protected_areas, infrastructure : optional
        As for :func:`flyway.maps.gap_map.gap_map`.
    public : bool
        Generalise sensitive locations (default True: reports go to partners).
    with_map : bool
        Also write ``map.html`` (the gap map, same generalisation) and link it.
    self_contained : bool
        Inline the map's JavaScript (opens offline).
    scenario : path, optional
        The ``--out`` folder of a ``flyway scenario`` run: adds the proposed facilities to the map and a
        section comparing the scenarios (collisions, PBR, population, distance to breeding sites).

    Returns
    -------
    pathlib.Path
        ``index.html`` of the report.

    Examples
    --------
    >>> flyway.report("birds/", "report/")  # doctest: +SKIP
    """
    from flyway.maps.gap_map import MapParams, build_gap_map, load_store_tables
    from flyway.maps.offline import save_map

    pp = PublicParams() if public else None
    scen = None
    if scenario is not None:
        from flyway.analysis.scenario.report import read_outputs

        scen = read_outputs(scenario)
    t = load_store_tables(store, protected_areas=protected_areas, infrastructure=infrastructure, with_fixes=with_map)
    if t["stops"] is None:
        raise SchemaError(f"{store}: no stops table; run `flyway stops --store {store}` first")
    map_file = None
    if with_map:
        m = build_gap_map(fixes=t["fixes"], stops=t["stops"], sites=t["sites"], gaps=t["gaps"],
                          protected_areas=t["protected_areas"], infrastructure=t["infrastructure"],
                          params=MapParams(public=pp), self_contained=self_contained, scenario=scen)
        map_file = save_map(m, Path(out_dir) / "map.html", self_contained=self_contained).name
    return build_report(out_dir, stops=t["stops"], sites=t["sites"], gaps=t["gaps"],
                        coverage_by_group=t["coverage_by_group"], public=pp, map_file=map_file, scenario=scen)
