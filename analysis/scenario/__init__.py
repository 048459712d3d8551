"""Scenario analysis: what a proposed wind farm or power line does to the birds and their populations.

Collision models (Band 2012 options 1–3 with the large-array correction, the
migrant front, a crossing-based power-line model), a stochastic Leslie
projection with matched counterfactuals, PBR, and the side-by-side report.
"""
from __future__ import annotations

import logging
from pathlib import Path

# the function ``pbr`` shadows the submodule of the same name in this namespace on purpose:
# ``flyway.analysis.scenario.pbr(...)`` is the function; ``from flyway.analysis.scenario.pbr import n_min`` still works
from .band import band_collisions, transit_probability
from .pbr import lambda_max, pbr
from .run import run_scenarios

log = logging.getLogger(__name__)

__all__ = ["transit_probability", "band_collisions", "lambda_max", "pbr", "run_scenarios", "scenario_command"]


def scenario_command(store: str | Path | None, scenario: str | Path, out: str | Path,
                     replicates: int | None = None, seed: int | None = None) -> dict:
    """``flyway scenario --store STORE --scenario FILE.toml --out DIR [--replicates N] [--seed S]``.

    Parameters
    ----------
    store
        The fixes store (exposure from tracks is not wired yet: the typed-in
        exposure of the scenario file is used; ``store`` may be None).
    scenario
        The scenario TOML file.
    out
        Output folder (created): ``scenario.html`` and the CSV tables.
    replicates, seed
        Override the file's ``run.replicates`` and ``run.seed``.

    Returns
    -------
    dict
        A JSON-ready summary: output paths and, per scenario and species,
        collisions per year (mean, 95 % interval), collisions/PBR and CPS at
        the output years.
    """
    from .report import write_csv, write_html

    if store is not None:
        log.info("exposure from the tracks in %s is not available yet; using the typed-in exposure", store)
    result = run_scenarios(str(scenario), None, replicates=replicates, seed=seed)
    paths = write_csv(result, out)
    html_path = write_html(result, out)
    from flyway import schema as S

    rows = []
    for rec in result.summary.to_dict("records"):
        row = {k: rec[k] for k in (S.SCENARIO, S.SPECIES, S.COLLISIONS_MEAN, S.COLLISIONS_Q2_5, S.COLLISIONS_Q97_5,
                                   S.COLLISIONS_OVER_PBR)}
        row.update({k: v for k, v in rec.items() if k.startswith(f"{S.CPS_MEDIAN}_y")})
        rows.append(row)
    return {"html": str(html_path), "csv": {k: str(v) for k, v in paths.items()},
            "replicates": result.replicates, "seed": result.seed, "scenarios": rows}
