"""Stochastic Band model: draws of every uncertain input, evaluated in one array pass.

stochLAB's ``stoch_crm`` loops over draws in R and calls the deterministic model
once per draw; here each parameter is drawn as an array of ``n`` values and
the kernels of :mod:`.band` evaluate every draw at once (the extended model
in a compiled loop over draws). With every sd at zero each draw equals the
deterministic model exactly.

Summaries carry honest labels: the column ``q97.5`` is the 97.5 % quantile
(stochLAB's ``pctl_99`` is the 99.9 % one).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from flyway import schema as S

from .band import BandDraws, collisions_from_draws, migrant_flux
from .distributions import Dist, as_dist
from .params import MONTHS, SpeciesParams, WindFarmParams

log = logging.getLogger(__name__)

__all__ = ["sample_band_draws", "StochasticCollisions", "stochastic_band", "migrant_collisions",
           "migrant_collision_draws", "summarise_draws", "QUANTILES"]

QUANTILES = (0.025, 0.25, 0.5, 0.75, 0.975)


_LABELS = {0.025: S.Q2_5, 0.25: S.Q25, 0.5: S.MEDIAN, 0.75: S.Q75, 0.975: S.Q97_5}


def _label(q: float) -> str:
    return _LABELS[q]


def summarise_draws(draws: np.ndarray, labels: Sequence[str]) -> pd.DataFrame:
    """Mean, sd and the 2.5/25/50/75/97.5 % quantiles of each column of ``draws`` (n, k)."""
    draws = np.atleast_2d(draws)
    out = {S.MEAN: draws.mean(axis=0), S.SD: draws.std(axis=0, ddof=1) if draws.shape[0] > 1 else np.zeros(draws.shape[1])}
    qs = np.quantile(draws, QUANTILES, axis=0)
    for q, row in zip(QUANTILES, qs):
        out[_label(q)] = row
    return pd.DataFrame(out, index=pd.Index(list(labels), name=S.PERIOD))


def _draw(d: Dist, rng: np.random.Generator, n: int) -> np.ndarray:
    return np.asarray(d.sample(rng, n), float)


def sample_band_draws(species: SpeciesParams, wf: WindFarmParams, n: int, rng: np.random.Generator) -> BandDraws:
    """Draw ``n`` values of every Band input (bird, turbine, density, flight heights).

    Draw order is fixed, and each parameter takes one vectorised call, so the
    same seed gives the same draws whatever ``n`` the caller later slices.
    """
    sp, w = species, wf
    fhd = sp.flight_height_distribution
    dens = (np.column_stack([_draw(d, rng, n) for d in sp.density_km2]) if sp.density_km2 is not None
            else np.zeros((n, 12)))
    return BandDraws(
        flight_speed_ms=_draw(sp.flight_speed_ms, rng, n),
        body_length_m=_draw(sp.body_length_m, rng, n),
        wingspan_m=_draw(sp.wingspan_m, rng, n),
        nocturnal_activity=_draw(sp.nocturnal_activity, rng, n),
        avoidance_basic=_draw(sp.avoidance_basic, rng, n),
        avoidance_extended=_draw(sp.avoidance_extended, rng, n),
        rotor_height_share=_draw(sp.rotor_height_share, rng, n) if sp.rotor_height_share is not None else None,
        fhd=fhd.samples if fhd is not None else None,
        fhd_row=rng.integers(0, fhd.samples.shape[0], n) if fhd is not None and not fhd.is_fixed else None,
        density_km2=dens,
        rotor_radius_m=_draw(w.rotor_radius_m, rng, n),
        hub_height_m=_draw(w.hub_height_m, rng, n),
        max_chord_m=_draw(w.max_chord_m, rng, n),
        rpm=_draw(w.rpm, rng, n),
        pitch_deg=_draw(w.pitch_deg, rng, n),
        operational_share=np.column_stack([_draw(d, rng, n) for d in w.operational_share]),
    )


@dataclass(frozen=True)
class StochasticCollisions:
    """Draws of monthly collisions (n, 12) with their summaries."""

    draws: np.ndarray
    option: int

    @property
    def annual(self) -> np.ndarray:
        """Collisions per year, one value per draw."""
        return self.draws.sum(axis=1)

    def summary(self) -> pd.DataFrame:
        """Per month and for the year: mean, sd, median and 2.5/25/75/97.5 % quantiles."""
        return summarise_draws(np.column_stack([self.draws, self.annual]), [*MONTHS, "year"])


def stochastic_band(species: SpeciesParams | Mapping[str, Any], wind_farm: WindFarmParams | Mapping[str, Any],
                    option: int = 3, *, draws: int = 1000, seed: int | np.random.SeedSequence | None = None,
                    chunk: int = 50_000) -> StochasticCollisions:
    """Stochastic Band (2012) model: ``draws`` Monte-Carlo draws of every uncertain parameter.

    Parameters
    ----------
    species, wind_farm
        Parameter objects or plain dicts; a value given as ``{mean, sd}``
        (or a :class:`Dist`) is drawn per iteration.
    option
        1, 2 or 3 (see :func:`~flyway.analysis.scenario.band.band_collisions`).
    draws
        Number of Monte-Carlo draws.
    seed
        Seed or :class:`numpy.random.SeedSequence`.
    chunk
        Draws evaluated per array pass (bounds memory; the result does not
        depend on it).

    Returns
    -------
    StochasticCollisions
        ``draws`` (n, 12) collisions per month; ``summary()`` the table.
    """
    sp = SpeciesParams.from_mapping(species)
    wf = WindFarmParams.from_mapping(wind_farm)
    if draws < 1:
        raise ValueError(f"draws = {draws!r}: expected >= 1")
    rng = np.random.default_rng(seed)
    dr = sample_band_draws(sp, wf, draws, rng)
    out = np.empty((draws, 12))
    for start in range(0, draws, chunk):
        sl = slice(start, min(draws, start + chunk))
        out[sl] = collisions_from_draws(_slice(dr, sl), sp, wf, option)
    log.debug("stochastic Band option %d: %d draws", option, draws)
    return StochasticCollisions(out, option)


def _slice(dr: BandDraws, sl: slice) -> BandDraws:
    kw = {}
    for name, value in dr.__dict__.items():
        if value is None or name == "fhd":
            kw[name] = value
        else:
            kw[name] = value[sl]
    return BandDraws(**kw)


def migrant_collision_draws(species: SpeciesParams | Mapping[str, Any], wind_farm: WindFarmParams | Mapping[str, Any],
                            birds_passing: Mapping[str, Any], *, draws: int = 1000,
                            seed: int | np.random.SeedSequence | None = None) -> tuple[list[str], np.ndarray]:
    """Draws of collisions of migrants crossing the wind-farm front (Band 2000; stochLAB ``mig_stoch_crm``).

    Option 1 with the migrant flux ``N_pass T pi R / (2 W)``: collisions =
    flux × rotor-height share × P̄ × operational share (mean over the
    season's months) × (1 − basic avoidance) × large-array correction. Unlike
    ``mig_stoch_crm`` the operational share includes downtime.

    Parameters
    ----------
    birds_passing
        Season name → birds passing the front in that season: a number, or
        ``{mean, sd[, months]}`` with the season's months (1-based; default
        all year), e.g. ``{"spring": {"mean": 4000, "sd": 500, "months": [3, 4]}}``.

    Returns
    -------
    seasons : list of str
    draws : ndarray, shape (draws, seasons)
    """
    sp = SpeciesParams.from_mapping(species)
    wf = WindFarmParams.from_mapping(wind_farm)
    if sp.rotor_height_share is None:
        raise ValueError("the migrant model needs rotor_height_share for the species")
    rng = np.random.default_rng(seed)
    dr = sample_band_draws(sp, wf, draws, rng)
    cols, names = [], []
    for season, spec in birds_passing.items():
        months = spec.get("months", list(range(1, 13))) if isinstance(spec, Mapping) else list(range(1, 13))
        passing = as_dist({k: v for k, v in spec.items() if k != "months"} if isinstance(spec, Mapping) else spec,
                          name=f"birds_passing.{season}")
        n_pass = passing.sample(rng, draws)
        op = dr.operational_share[:, [m - 1 for m in months]].mean(axis=1)
        flux = migrant_flux(n_pass, wf.turbines, dr.rotor_radius_m, wf.width_km)
        # every "month" column carries the season's flux and operational share; keep the first
        season_dr = _with(dr, operational_share=np.repeat(op[:, None], 12, axis=1))
        cols.append(collisions_from_draws(season_dr, sp, wf, 1, flux=np.repeat(flux[:, None], 12, axis=1))[:, 0])
        names.append(str(season))
    return names, np.column_stack(cols)


def migrant_collisions(species, wind_farm, birds_passing: Mapping[str, Any], *, draws: int = 1000,
                       seed: int | np.random.SeedSequence | None = None) -> pd.DataFrame:
    """Summary of :func:`migrant_collision_draws`: one row per season plus ``year``."""
    names, mat = migrant_collision_draws(species, wind_farm, birds_passing, draws=draws, seed=seed)
    return summarise_draws(np.column_stack([mat, mat.sum(axis=1)]), [*names, "year"])


def _with(dr: BandDraws, **changes) -> BandDraws:
    kw = dict(dr.__dict__)
    kw.update(changes)
    return BandDraws(**kw)
