"""Run a scenario file: collisions per facility and species, projections, metrics, PBR — side by side.

Exposure enters through an :class:`ExposureSource`. Without tracks it is the
typed-in densities, migrant numbers and crossings of the scenario file
(:class:`TypedExposure`, parity with stochLAB); the track-derived source
(:class:`~.tracks.TrackExposure`, issue 9 items 4 and 5) implements the same
two methods and is passed as ``tracks``. The collisions table says, per
facility and species, which source was used and the tracked numbers behind it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from flyway import schema as S
from flyway.errors import ConfigError

from .band_stochastic import migrant_collision_draws, stochastic_band
from .config import PowerLineFacility, ScenarioConfig, WindFarmFacility, load_scenario, parse_scenario
from .metrics import counterfactual_metrics, trajectory_quantiles
from .pbr import lambda_max, pbr
from .population import Impact, project
from .powerline import stochastic_powerline

log = logging.getLogger(__name__)

__all__ = ["ExposureSource", "TypedExposure", "ScenarioResult", "run_scenarios"]


@runtime_checkable
class ExposureSource(Protocol):
    """Where the birds' exposure to a facility comes from (typed in, or derived from tracks).

    Optional members, used when present:

    ``prepare(config, replicates, seed_sequence)``
        Called once before the facilities are asked, with the run's number of
        replicates and a seed sequence of its own (spawned after the model
        streams, so it changes no other draw). A source whose values are
        draws must return them in replicate order (e.g.
        :class:`~.distributions.AlignedDraws`): replicate ``k`` of every
        facility and of the projection is one draw.
    ``species``
        Species the source knows about beyond those typed into the file
        (e.g. the tracked species); those in the species table are assessed too.
    ``notes``
        Lines for the result's notes.

    The mappings returned may also carry ``source`` (label), ``tracked``
    (column → value, see :mod:`flyway.schema`), ``note`` and, for wind farms,
    ``species_overrides`` (Band species parameters replacing the table's,
    e.g. a tracked rotor-height share).
    """

    def wind_farm(self, facility: WindFarmFacility, species: str) -> Mapping[str, Any] | None:
        """``{"density_km2": 12 monthly values}`` or ``{"birds_passing": {...}}``; None = not exposed."""

    def power_line(self, facility: PowerLineFacility, species: str) -> Mapping[str, Any] | None:
        """``{"crossings_day", "crossings_night", "wire_height_share_day", "wire_height_share_night"}``."""


class TypedExposure:
    """Exposure typed into the scenario file (``[facility.exposure."<species>"]``)."""

    def wind_farm(self, facility: WindFarmFacility, species: str):
        return facility.exposure.get(species)

    def power_line(self, facility: PowerLineFacility, species: str):
        return facility.exposure.get(species)


@dataclass(frozen=True, eq=False)
class ScenarioResult:
    """Everything a scenario run produced.

    Attributes
    ----------
    collisions : DataFrame
        Per scenario, species and facility: annual collisions (mean, sd,
        median, 2.5/97.5 %), model and exposure source.
    summary : DataFrame
        The side-by-side table: per scenario and species, collisions/yr with
        95 % interval, added mortality (rate and relative to natural adult
        mortality), PBR and collisions/PBR, and CPS, CGR, P(decline > 50 %),
        quasi-extinction and N at each output year.
    metrics : DataFrame
        Long table of the counterfactual metrics (scenario, species, year).
    trajectories : DataFrame
        Quantiles of the population per scenario, species and year (fan chart).
    parameters : DataFrame
        Every species parameter used, with its source and proxy.
    """

    config: ScenarioConfig
    collisions: pd.DataFrame
    summary: pd.DataFrame
    metrics: pd.DataFrame
    trajectories: pd.DataFrame
    parameters: pd.DataFrame
    replicates: int
    seed: int
    notes: tuple[str, ...] = field(default_factory=tuple)


_TRACKED_COLUMNS = (S.TRACKED_INDIVIDUALS, S.TRACKED_BIRD_DAYS, S.TRACKED_BIRDS_EXPOSED, S.TRACKED_TRANSITS,
                    S.TRACKED_CROSSINGS, S.TRACKED_FLIGHT_H_INSIDE, S.HEIGHT_SOURCE, S.ROTOR_HEIGHT_SHARE,
                    S.WIRE_HEIGHT_SHARE, S.GROUND_LEVEL_M)


def _provenance(exp: Mapping[str, Any]) -> dict:
    """Source label, tracked numbers and note of one exposure (typed-in: the label only)."""
    tracked = exp.get("tracked", {})
    out = {S.EXPOSURE_SOURCE: str(exp.get("source", "typed-in"))}
    out.update({k: tracked.get(k, "" if k == S.HEIGHT_SOURCE else np.nan) for k in _TRACKED_COLUMNS})
    out[S.EXPOSURE_NOTE] = str(exp.get("note", ""))
    return out


def _facility_draws(fac, species: str, cfg: ScenarioConfig, exposure: ExposureSource, n: int,
                    ss: np.random.SeedSequence) -> tuple[np.ndarray, str, dict] | None:
    entry = cfg.species[species]
    if isinstance(fac, WindFarmFacility):
        exp = exposure.wind_farm(fac, species)
        if not exp:
            return None
        if "birds_passing" in exp:
            _, mat = migrant_collision_draws(entry.band(), fac.params, exp["birds_passing"], draws=n, seed=ss)
            return mat.sum(axis=1), "Band 2000 migrant front, option 1", _provenance(exp)
        option = cfg.run.band_option
        sp = entry.band(density_km2=exp["density_km2"], **exp.get("species_overrides", {}))
        model = f"Band 2012 option {option}"
        if option in (2, 3) and sp.flight_height_distribution is None:
            # neither the tracks nor the species table give heights per metre: the basic model, said so
            model = f"Band 2012 option 1 (option {option} asked; no flight-height distribution for {species})"
            option = 1
        return stochastic_band(sp, fac.params, option, draws=n, seed=ss).annual, model, _provenance(exp)
    exp = exposure.power_line(fac, species)
    if not exp:
        return None
    pl = stochastic_powerline(
        crossings_day=exp["crossings_day"], crossings_night=exp["crossings_night"],
        wire_height_share_day=exp.get("wire_height_share_day", 1.0),
        wire_height_share_night=exp.get("wire_height_share_night", 1.0),
        collision_per_crossing=cfg.species.power_line["collision_per_crossing_unmarked"],
        marked_share=fac.marked_share, marker_efficacy=fac.marker_efficacy, draws=n, seed=ss)
    return pl.total, "crossings x q x (1 - marked x efficacy)", _provenance(exp)


def run_scenarios(config: ScenarioConfig | Mapping[str, Any] | str, tracks: ExposureSource | None = None, *,
                  replicates: int | None = None, seed: int | None = None) -> ScenarioResult:
    """Compare the baseline with every scenario of a scenario file.

    Parameters
    ----------
    config
        A :class:`ScenarioConfig`, a parsed mapping or the path of a TOML file.
    tracks
        An :class:`ExposureSource` built from tracks; None uses the densities
        and crossings typed into the file.
    replicates, seed
        Override the file's ``run.replicates`` / ``run.seed``. Replicate k of
        every facility, scenario and projection uses the same draw index, so
        one replicate carries one draw of every uncertain parameter from
        collisions into the population.

    Returns
    -------
    ScenarioResult
    """
    if isinstance(config, str):
        config = load_scenario(config)
    elif not isinstance(config, ScenarioConfig):
        config = parse_scenario(config)
    cfg = config
    n = int(replicates or cfg.run.replicates)
    seed = int(cfg.run.seed if seed is None else seed)
    exposure = tracks if tracks is not None else TypedExposure()
    if not isinstance(exposure, ExposureSource):
        raise TypeError("tracks: expected an ExposureSource (wind_farm() and power_line() methods)")
    root = np.random.SeedSequence(seed)
    species_names = cfg.species_names
    species_names += [s for s in getattr(exposure, "species", ()) if s in cfg.species and s not in species_names]
    if not species_names:
        raise ConfigError("no species to assess: the file types in no exposure ([facility.exposure.\"<species>\"]) "
                          "and no tracks were given (flyway scenario --store STORE: exposure from the tracks)",
                          file=cfg.source)
    fac_ids = list(cfg.facilities)
    # one stream per (species, facility) and per species projection: stable when scenarios are added
    streams = {key: ss for key, ss in zip([(s, f) for s in species_names for f in fac_ids] + species_names,
                                          root.spawn(len(species_names) * (len(fac_ids) + 1)))}
    prepare = getattr(exposure, "prepare", None)
    if callable(prepare):  # spawned after the model streams: typed-in runs draw exactly as before
        prepare(cfg, n, root.spawn(1)[0])
    coll_rows, summary_rows, metric_frames, traj_frames = [], [], [], []
    names = ["baseline", *[s.name for s in cfg.scenarios]]
    assessed: set[str] = set()
    for sp_name in species_names:
        entry = cfg.species[sp_name]
        dem = entry.demography()
        draws = {}
        for fid in fac_ids:
            got = _facility_draws(cfg.facilities[fid], sp_name, cfg, exposure, n, streams[(sp_name, fid)])
            if got is not None:
                draws[fid] = got
                assessed.add(fid)
        impacts, per_scen = [], {}
        for sc in cfg.scenarios:
            total = np.zeros(n)
            for fid in sc.facilities:
                if fid in draws:
                    d, model, prov = draws[fid]
                    total = total + d
                    coll_rows.append({**_coll_row(sc.name, sp_name, fid, d, model), **prov})
            per_scen[sc.name] = total
            value = total if cfg.run.impact_mode == "number" else np.clip(total / dem.initial_population, 0, 1)
            impacts.append(Impact(value, cfg.run.impact_mode))
        traj = project(dem, impacts, years=cfg.run.horizon_years, replicates=n, seed=streams[sp_name]).sum(axis=3)
        met = counterfactual_metrics(traj, cfg.run.output_years, quasi_extinction=cfg.run.quasi_extinction, names=names)
        met.insert(1, S.SPECIES, sp_name)
        metric_frames.append(met)
        tq = trajectory_quantiles(traj, names)
        tq.insert(1, S.SPECIES, sp_name)
        traj_frames.append(tq)
        summary_rows += _summary_rows(sp_name, entry, dem, names, per_scen, met, cfg.run.output_years)
    notes = (
        f"{n} replicates, seed {seed}; impacts as {'numbers killed per year' if cfg.run.impact_mode == 'number' else 'rates'}"
        " applied to every age class in proportion to its numbers (competing risk s(1 - h)).",
        "Exposure: " + (f"from the tracks, or typed in where no tracked bird of a species came near (column "
                        f"{S.EXPOSURE_SOURCE})." if tracks is not None
                        else "typed-in densities and crossings of the scenario file."),
        "PBR is a screen beside the projection, never instead of it (it understates impacts on long-lived birds).",
        *getattr(exposure, "notes", ()),
    )
    silent = [fid for fid in fac_ids if fid not in assessed]
    if silent:  # no typed-in exposure and no tracks: say so rather than report zero quietly
        msg = (f"Not assessed (no exposure typed in for any species and no store given): facility "
               f"{', '.join(silent)}.")
        log.warning(msg)
        notes = (*notes, msg)
    return ScenarioResult(cfg, pd.DataFrame(coll_rows), pd.DataFrame(summary_rows),
                          pd.concat(metric_frames, ignore_index=True), pd.concat(traj_frames, ignore_index=True),
                          _used_parameters(cfg, species_names),
                          n, seed, notes)


def _coll_row(scenario: str, species: str, facility: str, d: np.ndarray, model: str) -> dict:
    return {S.SCENARIO: scenario, S.SPECIES: species, S.FACILITY_ID: facility, S.CRM_MODEL: model,
            S.COLLISIONS_MEAN: float(d.mean()), S.COLLISIONS_SD: float(d.std(ddof=1)) if d.size > 1 else 0.0,
            S.COLLISIONS_MEDIAN: float(np.median(d)), S.COLLISIONS_Q2_5: float(np.quantile(d, 0.025)),
            S.COLLISIONS_Q97_5: float(np.quantile(d, 0.975))}


def _used_parameters(cfg: ScenarioConfig, species_names: list[str]) -> pd.DataFrame:
    table = cfg.species.provenance_table()
    return table[table[S.SPECIES].isin([*species_names, "(all)"])].reset_index(drop=True)


def _summary_rows(sp_name, entry, dem, names, per_scen, met, years) -> list[dict]:
    s_ad = dem.adult_survival.mean
    lam = lambda_max(s_ad, dem.age_first_breeding)
    limit = pbr(dem.initial_population, entry.scalar("population_cv", 0.0), lam - 1, entry.scalar("recovery_factor", 0.1))
    rows = []
    for name in names:
        c = per_scen.get(name, np.zeros(1))
        rate = float(c.mean()) / dem.initial_population
        row = {S.SCENARIO: name, S.SPECIES: sp_name,
               S.COLLISIONS_MEAN: float(c.mean()), S.COLLISIONS_Q2_5: float(np.quantile(c, 0.025)),
               S.COLLISIONS_Q97_5: float(np.quantile(c, 0.975)),
               S.ADDED_MORTALITY_RATE: rate, S.ADDED_VS_NATURAL_ADULT_MORTALITY: rate / (1 - s_ad),
               S.PBR: limit, S.COLLISIONS_OVER_PBR: float(c.mean()) / limit if limit > 0 else np.nan,
               S.LAMBDA_MAX: lam}
        m = met[met[S.SCENARIO] == name].set_index(S.YEAR)
        for t in years:
            for k in (S.CPS_MEDIAN, S.CPS_Q2_5, S.CPS_Q97_5, S.CGR_MEDIAN, S.P_DECLINE_50, S.P_QUASI_EXTINCTION,
                      S.N_MEDIAN, S.N_Q2_5, S.N_Q97_5):
                row[f"{k}_y{t}"] = float(m.loc[t, k])
        rows.append(row)
    return rows
