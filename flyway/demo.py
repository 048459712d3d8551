"""``flyway demo``: the embedded default run, needing no downloads.

Simulates a flyway of the three flagship species, ingests it into a store,
flags it, detects stops (and says how many of the planted stops it
recovered), clusters sites, measures their coverage by synthetic protected
areas and their distance to synthetic wind farms, and prints the top gaps.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from flyway.analysis.accuracy import truth_recovery
from flyway import schema as S
from flyway.analysis.runner import run_qc, run_stops, stops_summary
from flyway.analysis.site_runner import run_coverage, run_exposure, run_sites
from flyway.demo_layers import write_demo_layers
from flyway.maps.gap_map import gap_map
from flyway.maps.offline import save_map
from flyway.maps.report import report as planner_report
from flyway.info import store_info
from flyway.ingest.pipeline import ingest
from flyway.simulate import write_simulation


def run_demo(out_dir: str | os.PathLike[str], n_individuals: int = 30, days: int = 365, seed: int = 0,
             echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Simulate -> ingest -> summarise. Returns paths and the figures printed."""
    out_dir = Path(out_dir)
    sim_dir = out_dir / "simulated"
    store = out_dir / "store"
    paths = write_simulation(sim_dir, n_individuals=n_individuals, days=days, seed=seed)
    echo(f"simulated {n_individuals} birds over {days} days -> {paths['fixes']}")
    report = ingest([paths["fixes"]], store, reference=paths["reference"])
    echo(f"ingested batch {report.batch_id}: {report.rows_kept} fixes kept, "
         f"{report.rows_quarantined} rows quarantined, "
         f"{sum(f.rows_duplicate for f in report.files)} duplicate rows dropped")
    for f in report.files:
        for reason, n in f.quarantine_reasons.items():
            echo(f"  quarantine {reason}: {n}")
    info = store_info(store)
    for s in info.species:
        echo(f"  {s.species}: {s.individuals} birds, {s.fixes} fixes, {s.first} .. {s.last}")
    qc = run_qc(store)
    flagged = {k: v for k, v in qc.counts.items() if v and k != "clean"}
    echo(f"QC: {qc.counts.get('clean', 0)} clean fixes; flagged: "
         + ", ".join(f"{k} {v}" for k, v in flagged.items()))
    stops = run_stops(store)
    for row in stops_summary(stops).itertuples(index=False):
        echo(f"  {row.species}: {row.stops} stops of {row.birds} birds, {row.stopovers} stopovers, "
             f"median stopover {row.median_stopover_days:.1f} days")
    recovery = truth_recovery(stops, pd.read_csv(paths["truth"]))
    echo(f"planted stops recovered: {recovery.planted_found} of {recovery.planted} "
         f"(recall {recovery.recall:.3f}, precision {recovery.precision:.3f})")
    sites = run_sites(store)
    echo(f"sites: {len(sites)} (stops of all birds clustered); "
         f"{int((sites[S.SHARE_OF_TRACKED] >= 0.2).sum())} used by at least 20 % of a species' tracked birds")
    layers = write_demo_layers(out_dir / "layers", seed=seed)
    echo(f"synthetic protected areas and wind farms (built in code, not real data): {out_dir / 'layers'}")
    cov = run_coverage(store, layers["protected_areas"])
    by = cov.by_group
    for sp, g in by.groupby(S.SPECIES):
        echo(f"  {sp}: {g['protected_bird_days'].sum() / max(g[S.BIRD_DAYS].sum(), 1e-9):.0%} "
             "of stopover bird-days inside protected areas")
    echo(f"top coverage gaps ({len(cov.gaps)} sites below 50 % protected):")
    for row in cov.gaps.head(5).itertuples(index=False):
        echo(f"  #{row.gap_rank} {row.species} at {row.lat:.2f}N {row.lon:.2f}E ({row.countries}): "
             f"{row.n_individuals} birds, {row.bird_days:.0f} bird-days, {row.protected_fraction:.0%} protected")
    exp = run_exposure(store, [layers["infrastructure"]])
    near = exp.sites.sort_values(S.NEAREST_INFRASTRUCTURE_KM).head(3)
    for row in near.itertuples(index=False):
        echo(f"  {row.species} site at {row.lat:.2f}N {row.lon:.2f}E: nearest facility "
             f"{getattr(row, S.NEAREST_INFRASTRUCTURE_KM):.1f} km")
    scen_dir, scen = _demo_scenario(store, out_dir, seed, echo)
    gap = save_map(gap_map(store, self_contained=True, scenario=scen_dir), out_dir / "gap_map.html",
                   self_contained=True)
    echo(f"gap map (self-contained, opens offline): {gap} ({gap.stat().st_size / 1e6:.1f} MB)")
    page = planner_report(store, out_dir / "report", public=True, scenario=scen_dir)
    echo(f"planner report (breeding sites generalised): {page}")
    return {"store": str(store), "simulation": {k: str(v) for k, v in paths.items()},
            "ingest": report.to_dict(), "info": info.to_dict(), "qc": qc.counts,
            "stops": len(stops), "recovery": recovery.to_dict(), "sites": len(sites),
            "gaps": len(cov.gaps), "layers": {k: str(v) for k, v in layers.items()},
            "map": str(gap), "report": str(page), "scenario": scen}


#: the demo's scenario file: two siting options near the Gumi-Haepyung crane stopover, exposure from the tracks
DEMO_SCENARIO = "demo_gumi_haepyung_tracks.toml"


def _demo_scenario(store: Path, out_dir: Path, seed: int, echo: Callable[[str], None]) -> tuple[Path, dict]:
    """Compare two wind-farm sitings (and one with its power line) from the simulated tracks; print the table."""
    from importlib import resources

    from flyway.analysis.scenario import scenario_command

    scen_dir = out_dir / "scenario"
    with resources.as_file(resources.files("flyway.analysis.scenario").joinpath("examples", DEMO_SCENARIO)) as toml:
        result = scenario_command(store, toml, scen_dir, replicates=1000, seed=seed)
    echo("scenario: two siting options near the Gumi-Haepyung wetland (exposure from the simulated tracks; "
         "collisions/yr mean [95 %], share of PBR, CPS = impacted/baseline population at 10/25/50 years):")
    rows = pd.DataFrame(result["scenarios"])
    rows = rows[(rows[S.SCENARIO] != "baseline") & (rows[S.COLLISIONS_Q97_5] > 0)]
    for r in rows.to_dict("records"):
        cps = " ".join(f"{r[f'{S.CPS_MEDIAN}_y{t}']:.3f}" for t in (10, 25, 50) if f"{S.CPS_MEDIAN}_y{t}" in r)
        echo(f"  {r[S.SCENARIO]:<28} {r[S.SPECIES]:<15} {r[S.COLLISIONS_MEAN]:6.2f} "
             f"[{r[S.COLLISIONS_Q2_5]:.2f}-{r[S.COLLISIONS_Q97_5]:.2f}]  {r[S.COLLISIONS_OVER_PBR]:6.1%} of PBR  "
             f"CPS {cps}")
    echo(f"scenario page: {result['html']}")
    return scen_dir, result
