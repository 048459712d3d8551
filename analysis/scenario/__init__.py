"""Scenario analysis: what a proposed wind farm or power line does to the birds and their populations.

Collision models (Band 2012 options 1–3 with the large-array correction, the
migrant front, a crossing-based power-line model), a stochastic Leslie
projection with matched counterfactuals, PBR, and the side-by-side report.
Exposure is typed into the scenario file or measured from the GPS tracks
(:class:`TrackExposure`).
"""
from __future__ import annotations

import logging
from pathlib import Path

# the function ``pbr`` shadows the submodule of the same name in this namespace on purpose:
# ``flyway.analysis.scenario.pbr(...)`` is the function; ``from flyway.analysis.scenario.pbr import n_min`` still works
from .band import band_collisions, transit_probability
from .pbr import lambda_max, pbr
from .run import run_scenarios
from .tracks import TrackExposure, TrackParams

log = logging.getLogger(__name__)

__all__ = ["transit_probability", "band_collisions", "lambda_max", "pbr", "run_scenarios", "scenario_command",
           "TrackExposure", "TrackParams"]


def scenario_command(store: str | Path | None, scenario: str | Path, out: str | Path,
                     replicates: int | None = None, seed: int | None = None,
                     sites_csv: str | Path | None = None) -> dict:
    """``flyway scenario --store STORE --scenario FILE.toml --out DIR [--replicates N] [--seed S]``.

    Parameters
    ----------
    store
        The fixes store. Given, exposure comes from its tracks and stops
        (:class:`~.tracks.TrackExposure`): every species of the species table
        that is tracked is assessed at every facility; a facility that no
        tracked bird of a species came near falls back to the exposure typed
        into the scenario file for that species, if any (the collisions
        table's ``exposure_source`` says which was used). None: the typed-in
        exposure only.
    scenario
        The scenario TOML file.
    out
        Output folder (created): ``scenario.html`` and the CSV tables, plus
        ``exposure.csv`` (the tracked numbers per facility and species) when
        a store is given.
    replicates, seed
        Override the file's ``run.replicates`` and ``run.seed``.
    sites_csv
        A site list (``site,country,lat,lon,species,role``) whose ``breeding`` rows join the breeding
        sites found in the store (stops of kind breeding) for the proximity tables.

    With a store the folder also gets ``breeding_distances.csv`` and ``breeding_time_shares.csv``
    (each facility's distance to every breeding site, and the share of breeding-season tracked time
    within 1/5/10/20 km) and ``sensitivity.nc`` (CF NetCDF: expected collisions per year of one
    standard turbine in each 5 km cell, from the tracks).

    Returns
    -------
    dict
        A JSON-ready summary: output paths, the exposure source per facility
        and species, and per scenario and species collisions per year (mean,
        95 % interval), collisions/PBR and CPS at the output years.

    Raises
    ------
    ConfigError
        A bad scenario file, or a facility far from every tracked fix.
    StoreError
        The store has no stops table.
    """
    from flyway import schema as S
    from flyway.export import write_safe_csv

    from .config import load_scenario
    from .report import write_csv, write_facilities, write_html

    cfg = load_scenario(str(scenario))
    tracks = proximity = None
    if store is not None:
        from .tracks import TrackExposure

        tracks = TrackExposure.from_store(store, species=sorted(cfg.species.species))
        log.info("exposure from the tracks of %d birds in %s", len(tracks.individual_ids), store)
    result = run_scenarios(cfg, tracks, replicates=replicates, seed=seed)
    paths = write_csv(result, out)
    if tracks is not None:
        paths["exposure"] = Path(out) / "exposure.csv"
        write_safe_csv(tracks.table(), paths["exposure"])
    if store is not None:
        from flyway.analysis.grid import write_netcdf

        from .proximity import proximity_from_store, write_proximity
        from .sensitivity import sensitivity_from_store

        proximity = proximity_from_store(store, cfg, sites_csv=sites_csv)
        paths.update(write_proximity(proximity, out))
        paths["sensitivity"] = write_netcdf(sensitivity_from_store(store, cfg.species), Path(out) / "sensitivity.nc")
    elif sites_csv is not None:
        from .proximity import breeding_proximity, write_proximity

        proximity = breeding_proximity(cfg, sites=sites_csv)
        paths.update(write_proximity(proximity, out))
    html_path = write_html(result, out, proximity=proximity)
    paths["facilities"] = write_facilities(cfg, out)

    rows = []
    for rec in result.summary.to_dict("records"):
        row = {k: rec[k] for k in (S.SCENARIO, S.SPECIES, S.COLLISIONS_MEAN, S.COLLISIONS_Q2_5, S.COLLISIONS_Q97_5,
                                   S.COLLISIONS_OVER_PBR)}
        row.update({k: v for k, v in rec.items() if k.startswith(f"{S.CPS_MEDIAN}_y")})
        rows.append(row)
    exposure = []
    if len(result.collisions):
        seen = result.collisions.drop_duplicates([S.FACILITY_ID, S.SPECIES])
        exposure = [{S.FACILITY_ID: r[S.FACILITY_ID], S.SPECIES: r[S.SPECIES], S.EXPOSURE_SOURCE: r[S.EXPOSURE_SOURCE]}
                    for r in seen.to_dict("records")]
    return {"html": str(html_path), "csv": {k: str(v) for k, v in paths.items()},
            "replicates": result.replicates, "seed": result.seed, "exposure": exposure, "scenarios": rows}
