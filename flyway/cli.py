"""The ``flyway`` command line: a thin layer over the Python API.

Each command parses options, calls one API function and renders its result
(rich tables for people, ``--json`` for machines). A :class:`FlywayError`
becomes one line on stderr and its exit code; tracebacks only with
``--verbose``.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer
from rich.console import Console
from rich.table import Table

from flyway import schema as S_
from flyway.errors import ConfigError as ConfigErr
from flyway.errors import FlywayError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="flyway: GPS tags of migratory birds -> stopovers, protection gaps, energy exposure.")
store_app = typer.Typer(no_args_is_help=True, help="Inspect and export a store.")
app.add_typer(store_app, name="store")

out = Console()
err = Console(stderr=True)
_STATE: dict[str, Any] = {"verbose": False, "quiet": False}

EXIT_PARTIAL = 4  # some input files were rejected, the rest were ingested


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logs and tracebacks."),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors.")) -> None:
    _STATE.update(verbose=verbose, quiet=quiet)
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _run(fn: Callable[[], Any]) -> Any:
    """Call ``fn``; turn a FlywayError into one line on stderr and its exit code."""
    try:
        return fn()
    except FlywayError as exc:
        if _STATE["verbose"]:
            err.print_exception()
        _error(f"flyway: error: {exc}")
        raise typer.Exit(exc.exit_code) from None


def _error(line: str) -> None:
    """One unwrapped line on stderr (log collectors and tests read it whole)."""
    sys.stderr.write(line.replace("\n", " ") + "\n")
    sys.stderr.flush()


def _echo(text: str) -> None:
    if not _STATE["quiet"]:
        out.print(text, markup=False, highlight=False, soft_wrap=True)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# --------------------------------------------------------------------------- simulate
@app.command()
def simulate(out_dir: Path = typer.Option(..., "--out", help="Folder for the Movebank CSV, reference data and truth."),
             individuals: int = typer.Option(30, "--individuals", min=1, help="Tagged birds."),
             days: int = typer.Option(365, "--days", min=1, help="Days of tracking."),
             seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same files)."),
             compress: bool = typer.Option(False, "--gzip", help="Write .csv.gz.")) -> None:
    """Simulate a flyway of the three flagship species as a Movebank export plus planted truth."""
    from flyway.simulate import write_simulation

    paths = _run(lambda: write_simulation(out_dir, n_individuals=individuals, days=days, seed=seed,
                                          compress=compress))
    for kind, path in paths.items():
        _echo(f"{kind}: {path}")


# --------------------------------------------------------------------------- ingest
@app.command()
def ingest(files: List[Path] = typer.Argument(..., help="CSV files (.csv, .csv.gz, .zip)."),
           store: str = typer.Option(..., "--store", help="Store folder or URL such as s3://bucket/prefix "
                                      "(created if missing)."),
           reference: Optional[Path] = typer.Option(None, "--reference", help="Movebank reference data CSV."),
           format: Optional[str] = typer.Option(
               None, "--format", help="movebank | plain | ornitela | vendor:NAME | vendor:PATH.toml (default: detect)."),
           tz: Optional[str] = typer.Option(None, "--tz", help="IANA time zone of times without a UTC offset."),
           species: Optional[str] = typer.Option(None, "--species", help="Species of fixes whose file names none."),
           as_json: bool = typer.Option(False, "--json", help="Print the ingest report as JSON.")) -> None:
    """Ingest tag files into the store as one atomic batch."""
    from flyway.ingest.pipeline import ingest as run_ingest

    def go():
        fmt = format
        if fmt and fmt.startswith("vendor:") and not fmt.endswith(".toml"):
            fmt = fmt.split(":", 1)[1]  # vendor:ornitela -> built-in mapping name
        return run_ingest(files, store, reference=reference, format=fmt, tz=tz, species=species,
                          progress=None)

    report = _run(go)
    if as_json:
        _print_json(report.to_dict())
    else:
        table = Table(title=f"ingest batch {report.batch_id}")
        for col in ("file", "status", "format", "read", "kept", "quarantined", "duplicate"):
            table.add_column(col)
        for f in report.files:
            table.add_row(f.file, f.status, f.format, str(f.rows_read), str(f.rows_kept),
                          str(f.rows_quarantined), str(f.rows_duplicate))
        if not _STATE["quiet"]:
            out.print(table)
    for f in report.rejected:
        _error(f"flyway: rejected: {f.message}")
    if report.rejected:
        raise typer.Exit(EXIT_PARTIAL if len(report.rejected) < len(report.files) else 2)


# --------------------------------------------------------------------------- store
@store_app.command("info")
def store_info(store: str = typer.Option(..., "--store"),
               as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Individuals, species, fixes, time span and quarantined rows of a store."""
    from flyway.info import store_info as info_fn

    info = _run(lambda: info_fn(store))
    if as_json:
        _print_json(info.to_dict())
        return
    _echo(f"store {info.store}: {info.individuals} individuals, {info.fixes} fixes, "
          f"{info.first or '-'} .. {info.last or '-'}")
    table = Table(title="species")
    for col in ("species", "individuals", "fixes", "first", "last"):
        table.add_column(col)
    for s in info.species:
        table.add_row(s.species, str(s.individuals), str(s.fixes), s.first or "-", s.last or "-")
    if not _STATE["quiet"]:
        out.print(table)
    _echo(f"files ingested: {info.files_ingested}, rejected: {info.files_rejected}, batches: {info.batches}, "
          f"part files: {info.part_files}, {info.size_bytes / 1e6:.1f} MB")
    _echo(f"quarantined rows: {info.quarantined_rows}, values: {info.quarantined_values}"
          + (f" ({', '.join(f'{k}: {v}' for k, v in info.quarantine_reasons.items())})"
             if info.quarantine_reasons else ""))
    for name, n in info.derived.items():
        _echo(f"{name}: {n} rows")


@store_app.command("export")
def store_export(store: str = typer.Option(..., "--store"),
                 out_path: Path = typer.Option(..., "--out", help="Output .csv, .csv.gz or .gpkg."),
                 species: Optional[List[str]] = typer.Option(None, "--species"),
                 individual: Optional[List[str]] = typer.Option(None, "--individual"),
                 start: Optional[str] = typer.Option(None, "--start"),
                 end: Optional[str] = typer.Option(None, "--end")) -> None:
    """Export committed fixes to CSV (spreadsheet-safe) or GeoPackage."""
    from flyway.export import export_fixes

    n = _run(lambda: export_fixes(store, out_path, species or None, individual or None, start, end))
    _echo(f"wrote {n} fixes to {out_path}")


@store_app.command("compact")
def store_compact(store: str = typer.Option(..., "--store"),
                  as_json: bool = typer.Option(False, "--json")) -> None:
    """Merge each bird's part files into one (nightly ingests add one per bird per night)."""
    from flyway.compact import compact

    res = _run(lambda: compact(store))
    if as_json:
        _print_json(res.__dict__)
        return
    _echo(f"compacted {res.individuals} birds: {res.files_before} part files -> {res.files_after}")


# --------------------------------------------------------------------------- qc / stops
SCHEDULER_HELP = ("dask scheduler address (tcp://host:8786); default DASK_SCHEDULER_ADDRESS, "
                  "else a local cluster. Workers must see the store's folder "
                  "(or, for s3://, have the same endpoint environment variables).")


def _cluster(scheduler: Optional[str], in_process: bool, workers: Optional[int]):
    """The dask client context the CLI runs stages on (library code never starts one itself)."""
    import os
    from contextlib import nullcontext

    from flyway.analysis.parallel import ENV_SCHEDULER, local_cluster, resolve_client

    if in_process:
        return nullcontext(None)
    if scheduler or os.environ.get(ENV_SCHEDULER):
        return resolve_client(None, scheduler)
    return local_cluster(n_workers=workers)


@app.command()
def qc(store: str = typer.Option(..., "--store"),
       now: Optional[str] = typer.Option(None, "--now", help="Reference time for future timestamps (UTC)."),
       config: Optional[Path] = typer.Option(None, "--config", help="Species parameters TOML (overrides)."),
       as_json: bool = typer.Option(False, "--json")) -> None:
    """Recompute QC flags (never deleting a fix), write them to the store, print counts per flag."""
    from flyway.analysis.params import load_species_config
    from flyway.analysis.runner import run_qc

    res = _run(lambda: run_qc(store, now=now, species_config=load_species_config(config) if config else None))
    if as_json:
        _print_json({"fixes": res.fixes, "counts": res.counts, "individuals_rewritten": res.individuals_changed})
        return
    table = Table(title=f"QC flags over {res.fixes} fixes")
    table.add_column("flag")
    table.add_column("fixes", justify="right")
    for name, n in res.counts.items():
        table.add_row(name, str(n))
    if not _STATE["quiet"]:
        out.print(table)
    _echo(f"individuals with changed flags: {res.individuals_changed}")


@app.command()
def stops(store: str = typer.Option(..., "--store"),
          method: str = typer.Option("flyway", "--method", help="flyway | movingpandas"),
          max_diameter: float = typer.Option(2000.0, "--max-diameter", help="Metres."),
          min_duration: str = typer.Option("24h", "--min-duration", help="pandas duration, e.g. 24h, 2d."),
          scheduler: Optional[str] = typer.Option(None, "--scheduler", help=SCHEDULER_HELP),
          in_process: bool = typer.Option(False, "--in-process", help="No dask: run in this process."),
          workers: Optional[int] = typer.Option(None, "--workers", help="Local cluster size (default: cores)."),
          config: Optional[Path] = typer.Option(None, "--config", help="Species parameters TOML (overrides)."),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """Detect stop events per individual and write stops/ into the store."""
    from flyway.analysis.params import load_species_config
    from flyway.analysis.runner import run_stops, stops_summary

    def go():
        cfg = load_species_config(config) if config else None
        with _cluster(scheduler, in_process, workers) as client:
            return run_stops(store, method=method, max_diameter=max_diameter, min_duration=min_duration,
                             client=client, species_config=cfg)

    result = _run(go)
    summary = stops_summary(result)
    if as_json:
        _print_json({"stops": len(result), "species": summary.to_dict(orient="records")})
        return
    table = Table(title=f"{len(result)} stops ({method})")
    for col in summary.columns:
        table.add_column(col)
    for row in summary.itertuples(index=False):
        table.add_row(*[f"{v:.1f}" if isinstance(v, float) else str(v) for v in row])
    if not _STATE["quiet"]:
        out.print(table)


# --------------------------------------------------------------------------- sites / coverage / exposure
@app.command()
def sites(store: str = typer.Option(..., "--store"),
          eps_km: float = typer.Option(10.0, "--eps-km", help="Clustering distance between stops (km)."),
          buffer_km: float = typer.Option(2.0, "--buffer-km", help="Buffer around a site's stops (km)."),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """Cluster the stops of all birds into sites (haversine DBSCAN), with use statistics."""
    from flyway.analysis.site_runner import run_sites
    from flyway.analysis.sites import SiteParams

    result = _run(lambda: run_sites(store, SiteParams(eps_m=eps_km * 1000.0, buffer_m=buffer_km * 1000.0)))
    cols = [S_.SITE_ID, S_.SPECIES, S_.N_INDIVIDUALS, S_.SHARE_OF_TRACKED, S_.BIRD_DAYS, S_.COUNTRIES]
    top = result.sort_values(S_.BIRD_DAYS, ascending=False)[cols]
    if as_json:
        _print_json({"sites": len(result), "top": top.head(20).to_dict(orient="records")})
        return
    _table(f"{len(result)} sites (top 15 by bird-days)", top.head(15))


@app.command()
def coverage(store: str = typer.Option(..., "--store"),
             protected_areas: Path = typer.Option(..., "--protected-areas",
                                                  help="WDPA or any polygons with a name (shp, gpkg, geojson, parquet)."),
             status_year: Optional[int] = typer.Option(None, "--status-year",
                                                       help="What was protected in this year."),
             gap_max: float = typer.Option(0.5, "--gap-max", help="Sites protected below this share are gaps."),
             no_fixes: bool = typer.Option(False, "--no-fixes", help="Weight by stops only (faster)."),
             as_json: bool = typer.Option(False, "--json")) -> None:
    """Protected-area coverage of the sites, per species/season/country, and the ranked gaps."""
    from flyway.analysis.coverage import CoverageParams
    from flyway.analysis.protected import ProtectedAreaParams
    from flyway.analysis.site_runner import run_coverage

    params = CoverageParams(gap_max_protected=gap_max, protected=ProtectedAreaParams(status_year_max=status_year))
    result = _run(lambda: run_coverage(store, protected_areas, params, use_fixes=not no_fixes))
    if as_json:
        _print_json({"sites": len(result.sites), "gaps": result.gaps.head(50).to_dict(orient="records"),
                     "by_group": result.by_group.to_dict(orient="records")})
        return
    cols = ["gap_rank", S_.SPECIES, S_.COUNTRIES, S_.N_INDIVIDUALS, S_.BIRD_DAYS, S_.PROTECTED_FRACTION, S_.LON, S_.LAT]
    _table(f"top coverage gaps ({len(result.gaps)} sites below {gap_max:.0%} protected)",
           result.gaps[[c for c in cols if c in result.gaps.columns]].head(15))
    by = result.by_group
    if len(by):
        share = by.groupby(S_.SPECIES).apply(
            lambda g: g["protected_bird_days"].sum() / max(g[S_.BIRD_DAYS].sum(), 1e-9), include_groups=False)
        for sp, v in share.items():
            _echo(f"{sp}: {v:.0%} of stopover bird-days inside protected areas")
    _echo(f"tables and CSV in {store.rstrip('/')}/coverage")


@app.command()
def exposure(store: str = typer.Option(..., "--store"),
             infrastructure: List[Path] = typer.Option(..., "--infrastructure",
                                                       help="GPPD CSV, OSM-style GeoJSON/GeoPackage (repeatable)."),
             buffers_km: str = typer.Option("1,5,10", "--buffers-km", help="Buffer distances, comma-separated."),
             no_fixes: bool = typer.Option(False, "--no-fixes", help="Share of stop fixes instead of all fixes."),
             as_json: bool = typer.Option(False, "--json")) -> None:
    """Nearest energy facilities and facilities within buffers, for sites, stops and birds."""
    from flyway.analysis.infrastructure import ExposureParams
    from flyway.analysis.site_runner import run_exposure

    def go():
        try:
            buffers = tuple(float(x) for x in buffers_km.split(","))
        except ValueError:
            raise ConfigErr(f"--buffers-km = {buffers_km!r}: expected numbers separated by commas") from None
        return run_exposure(store, infrastructure, ExposureParams(buffers_km=buffers), use_fixes=not no_fixes)

    result = _run(go)
    frame = result.site_exposure if result.site_exposure is not None else result.stop_exposure
    if as_json:
        _print_json({"site_exposure": None if frame is None else frame.head(50).to_dict(orient="records")})
        return
    if frame is not None:
        near = frame.sort_values("distance_km").drop_duplicates([c for c in (S_.SITE_ID, S_.STOP_ID) if c in frame])
        cols = [c for c in (S_.SITE_ID, S_.STOP_ID, S_.SPECIES, "facility_kind", "distance_km", "n_within_5km")
                if c in near.columns]
        _table("closest energy facilities", near[cols].head(15))
    _echo(f"tables and CSV in {store.rstrip('/')}/exposure")


def _table(title: str, frame) -> None:
    if _STATE["quiet"]:
        return
    table = Table(title=title)
    for col in frame.columns:
        table.add_column(str(col))
    for row in frame.itertuples(index=False):
        table.add_row(*[f"{v:.3g}" if isinstance(v, float) else str(v) for v in row])
    out.print(table)


# --------------------------------------------------------------------------- maps and report
@app.command("map")
def map_cmd(store: str = typer.Option(..., "--store"),
            out_path: Path = typer.Option(Path("map.html"), "--out", help="HTML file to write."),
            individual: Optional[str] = typer.Option(None, "--individual", help="Per-bird view of this individual."),
            self_contained: bool = typer.Option(False, "--self-contained",
                                                help="Inline Leaflet and plugins: opens with no network."),
            public: bool = typer.Option(False, "--public", help="Generalise breeding locations (sensitive species)."),
            protected_areas: Optional[Path] = typer.Option(None, "--protected-areas"),
            infrastructure: Optional[List[Path]] = typer.Option(None, "--infrastructure"),
            species: Optional[List[str]] = typer.Option(None, "--species", help="Only these species (repeatable)."),
            season: Optional[List[str]] = typer.Option(None, "--season", help="Only these seasons, e.g. 2024-spring."),
            scenario_dir: Optional[Path] = typer.Option(
                None, "--scenario", help="--out folder of `flyway scenario`: proposed facilities and sensitivity grid.")
            ) -> None:
    """The gap map (sites by protected fraction, tracks, heatmap, reserves, facilities) or a per-bird view."""
    from flyway.maps.bird_map import bird_map
    from flyway.maps.gap_map import MapParams, gap_map
    from flyway.maps.offline import save_map

    def go():
        if individual:
            m = bird_map(store, individual, self_contained=self_contained, public=public)
        else:
            params = MapParams(species=tuple(species) if species else None,
                               seasons=tuple(season) if season else None)
            m = gap_map(store, protected_areas=protected_areas, infrastructure=infrastructure or None,
                        params=params, self_contained=self_contained, public=public, scenario=scenario_dir)
        return save_map(m, out_path, self_contained=self_contained)

    path = _run(go)
    _echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB{', self-contained' if self_contained else ''})")


@app.command("report")
def report_cmd(store: str = typer.Option(..., "--store"),
               out_dir: Path = typer.Option(..., "--out", help="Folder for report.html, CSV/GeoJSON and charts."),
               public: bool = typer.Option(True, "--public/--exact",
                                           help="Generalise breeding locations (default) or show them exactly."),
               protected_areas: Optional[Path] = typer.Option(None, "--protected-areas"),
               infrastructure: Optional[List[Path]] = typer.Option(None, "--infrastructure"),
               scenario_dir: Optional[Path] = typer.Option(
                   None, "--scenario", help="--out folder of `flyway scenario`: adds the scenario comparison.")
               ) -> None:
    """The planner report: per species, season and country, with charts, downloads and a data dictionary."""
    from flyway.maps.report import report

    path = _run(lambda: report(store, out_dir, protected_areas=protected_areas,
                               infrastructure=infrastructure or None, public=public, scenario=scenario_dir))
    _echo(f"wrote {path}")


# --------------------------------------------------------------------------- scenario
@app.command()
def scenario(scenario_file: Path = typer.Option(..., "--scenario", help="Scenario TOML (facilities, options)."),
             out_dir: Path = typer.Option(..., "--out", help="Folder for scenario.html and the CSV tables."),
             store: Optional[str] = typer.Option(
                 None, "--store", help="Store: exposure from its tracks and stops (run `flyway stops` first); "
                 "without it, the scenario file's typed-in exposure."),
             replicates: Optional[int] = typer.Option(None, "--replicates", min=1),
             seed: Optional[int] = typer.Option(None, "--seed"),
             sites_csv: Optional[Path] = typer.Option(
                 None, "--sites", help="Site list CSV (site,country,lat,lon,species,role): its breeding rows join "
                 "the store's breeding sites for the proximity tables."),
             as_json: bool = typer.Option(False, "--json")) -> None:
    """Compare siting options: collisions (Band 2012, power lines), population projections, PBR, proximity."""
    from flyway.analysis.scenario import scenario_command

    summary = _run(lambda: scenario_command(store, scenario_file, out_dir, replicates, seed, sites_csv))
    if as_json:
        _print_json(summary)
        return
    _echo(json.dumps(summary, indent=2, default=str))


# --------------------------------------------------------------------------- nightly / runs (issue 8)
@app.command()
def nightly(store: str = typer.Option(..., "--store"),
            inbox: Path = typer.Option(..., "--inbox", help="Folder tag files arrive in (processed/, failed/ inside)."),
            scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler for the stop stage "
                                                    "(default DASK_SCHEDULER_ADDRESS, else this process)."),
            config: Optional[Path] = typer.Option(None, "--config", help="Nightly TOML (see flyway.nightly_config)."),
            now: Optional[str] = typer.Option(None, "--now", help="Reference time (UTC) for silent tags; 'now'."),
            dry_run: bool = typer.Option(False, "--dry-run", help="List what would be done; touch nothing."),
            as_json: bool = typer.Option(False, "--json", help="Print the run record.")) -> None:
    """Ingest the inbox, update derived tables of changed birds, raise alerts; exit 0 / 4 (some files failed) / 75 (locked)."""
    from flyway.nightly import nightly as run_nightly

    if not _STATE["quiet"] and not _STATE["verbose"]:
        logging.getLogger("flyway").setLevel(logging.INFO)  # journald-friendly lines on stderr
    res = _run(lambda: run_nightly(store, inbox, config=config, scheduler=scheduler, now=now, dry_run=dry_run))
    if as_json:
        _print_json(res.record)
    elif dry_run:
        for f in res.record["files"]:
            _echo(f"{f['name']}: {f['action']}")
    else:
        c = res.record["counts"]
        _echo(f"run {res.run_id}: {c.get('files_processed', 0)} processed, {c.get('files_failed', 0)} failed, "
              f"{c.get('rows_kept', 0)} fixes, {c.get('stops_added', 0)} stops added, {c.get('alerts', 0)} alerts")
    raise typer.Exit(res.exit_code)


@app.command()
def runs(store: str = typer.Option(..., "--store"),
         last: int = typer.Option(20, "--last", min=1, help="Show the last N runs."),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """List the nightly runs of a store (STORE/_runs/*.json), newest last."""
    from flyway.runrecord import list_runs

    frame = list_runs(store).tail(last)
    if as_json:
        _print_json(frame.to_dict(orient="records"))
        return
    _table(f"{len(frame)} nightly run(s)", frame.drop(columns=["ended"]))


# --------------------------------------------------------------------------- demo
@app.command()
def demo(out_dir: Path = typer.Option(Path("flyway-demo"), "--out", help="Working folder of the demo."),
         individuals: int = typer.Option(30, "--individuals", min=1),
         days: int = typer.Option(365, "--days", min=1),
         seed: int = typer.Option(0, "--seed")) -> None:
    """The embedded default: simulate, ingest, QC, stops, sites, coverage gaps, map and report (no downloads)."""
    from flyway.demo import run_demo

    result = _run(lambda: run_demo(out_dir, n_individuals=individuals, days=days, seed=seed, echo=_echo))
    _echo(f"demo finished: store at {result['store']}")


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    main()
