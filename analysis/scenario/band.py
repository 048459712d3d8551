"""Band (2012) collision risk model, options 1–3, with the large-array correction.

Kernels over arrays of draws: every function takes parameter arrays of shape
``(n,)`` (one value per Monte-Carlo draw; ``n = 1`` for the deterministic
model) and evaluates all draws in one pass. The deterministic entry points
:func:`transit_probability` and :func:`band_collisions` call the very same
kernels with the parameter means, so a stochastic run whose every sd is zero
equals the deterministic model exactly.

Formulas: Band, W. (2012) *Using a collision risk model to assess bird
collision risks for offshore wind farms*, SOSS-02 (BTO), as implemented in the
R package stochLAB (Caneco et al.); see ``reference/scenario-science.md`` §B1.
Units: metres, seconds, radians inside the kernels (``pitch_deg`` converted).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

import numba
import numpy as np

from .params import SpeciesParams, WindFarmParams

log = logging.getLogger(__name__)

__all__ = [
    "BandDraws", "day_hours", "flux_factor", "migrant_flux", "transit_probability_kernel",
    "large_array_factor", "fhd_on_rotor", "rotor_height_share_from_fhd", "collision_integral_extended",
    "collisions_from_draws", "transit_probability", "band_collisions", "draws_at_means",
]

_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
_Y = np.round(-1.0 + 0.05 * np.arange(41), 2)  # heights on the rotor disc, in units of R
_R_BASIC = 0.05 * np.arange(1, 21)  # radii of the basic model's integral (r = 0 dropped)


def day_hours(latitude: float) -> tuple[np.ndarray, np.ndarray]:
    """Hours of daylight and darkness per month (365-day year, Forsythe-type CBM model).

    Parameters
    ----------
    latitude
        Degrees north.

    Returns
    -------
    day, night : ndarray, shape (12,)
        Hours per month, Jan..Dec; ``day + night = 24 * days in month``.
    """
    j = np.arange(1, 366, dtype=float)
    p = np.arcsin(0.39795 * np.cos(0.2163108 + 2 * np.arctan(0.9671396 * np.tan(0.0086 * (j - 186)))))
    phi = math.radians(latitude)
    arg = (math.sin(0.8333 * math.pi / 180) + math.sin(phi) * np.sin(p)) / (math.cos(phi) * np.cos(p))
    dl = 24 - (24 / math.pi) * np.arccos(np.clip(arg, -1.0, 1.0))
    month = np.repeat(np.arange(12), _DAYS_IN_MONTH)
    day = np.bincount(month, weights=dl, minlength=12)
    return day, 24.0 * _DAYS_IN_MONTH - day


def flux_factor(flight_speed_ms, density_km2, rotor_radius_m, turbines: int, latitude: float,
                nocturnal_activity) -> np.ndarray:
    """Bird transits through all rotor discs per month, no avoidance, all at rotor height.

    ``F = v * (D/1e6)/(2R) * (T*pi*R^2) * (H_day + f_night*H_night) * 3600``.
    Shapes: ``flight_speed_ms``, ``rotor_radius_m``, ``nocturnal_activity`` (n,);
    ``density_km2`` (n, 12). Returns (n, 12).
    """
    day, night = day_hours(latitude)
    v = np.asarray(flight_speed_ms, float)[:, None]
    r = np.asarray(rotor_radius_m, float)[:, None]
    hours = day[None, :] + np.asarray(nocturnal_activity, float)[:, None] * night[None, :]
    return v * (np.asarray(density_km2, float) / 1e6) / (2 * r) * (turbines * math.pi * r ** 2) * hours * 3600


def migrant_flux(birds_passing, turbines: int, rotor_radius_m, width_km) -> np.ndarray:
    """Migrant-front flux (Band 2000 'risk window'; stochLAB ``get_mig_flux_factor``).

    Birds passing a front of width ``width_km``, spread evenly across it and
    over the height ``2R``: ``F = N_pass * T * pi * R / (2 * W_m)``.
    """
    r = np.asarray(rotor_radius_m, float)
    return np.asarray(birds_passing, float) * turbines * math.pi * r / (2 * np.asarray(width_km, float) * 1000)


def transit_probability_kernel(flight_speed_ms, body_length_m, wingspan_m, rotor_radius_m, max_chord_m,
                               rpm, pitch_deg, *, blades: int, flapping: bool, upwind_share: float,
                               chord_profile) -> np.ndarray:
    """Average single-transit collision probability P̄ (basic model, no avoidance), shape (n,)."""
    v, length, span, r_m, cmax, rpm_, pitch = (np.asarray(a, float)[:, None] for a in (
        flight_speed_ms, body_length_m, wingspan_m, rotor_radius_m, max_chord_m, rpm, pitch_deg))
    omega = 2 * math.pi * rpm_ / 60
    gamma = pitch * math.pi / 180
    r = _R_BASIC[None, :]
    chord = cmax * np.asarray(chord_profile, float)[1:][None, :]
    alpha = v / (r * r_m * omega)
    beta = length / span
    f_glide = 1.0 if flapping else 2 / math.pi
    sweep = np.where(alpha < beta, length, span * f_glide * alpha)
    k = blades * omega / (2 * math.pi * v)
    face = alpha * chord * np.cos(gamma)
    depth = chord * np.sin(gamma)
    p_up = np.minimum(1.0, k * (np.abs(depth + face) + sweep))
    p_down = np.minimum(1.0, k * (np.abs(-depth + face) + sweep))
    w = np.full(20, 0.05 * 2)
    w[-1] = 0.05  # p(1)/2
    rw = (_R_BASIC * w)[None, :]
    pbar_up = (p_up * rw).sum(axis=1)
    pbar_down = (p_down * rw).sum(axis=1)
    return upwind_share * pbar_up + (1 - upwind_share) * pbar_down


def large_array_factor(turbines: int, rotor_radius_m, width_km, transit_probability, mean_operational,
                       avoidance_basic) -> np.ndarray:
    """Large-array correction (Band 2012; the spreadsheet's (n-1)(n-2) form). Always uses basic avoidance."""
    n = math.sqrt(turbines)
    r = np.asarray(rotor_radius_m, float)
    risk = (turbines * math.pi * r ** 2 / (2 * r * np.asarray(width_km, float) * 1000)
            * transit_probability * mean_operational * (1 - np.asarray(avoidance_basic, float)))
    return 1 - (n - 1) / (2 * n) * risk + (n - 1) * (n - 2) / (6 * n ** 2) * risk ** 2


def fhd_on_rotor(fhd, hub_height_m, rotor_radius_m, tidal_offset_m: float, rows=None) -> np.ndarray:
    """``d(y) = R * fhd(hub + yR + tide)`` at the 41 heights y = -1, -0.95 … 1 (linear interpolation).

    ``fhd`` (n, H) or (H,): share of flights per 1-m band from 0 m; or (B, H)
    bootstrap samples with ``rows`` (n,) the sample used by each draw.
    Heights beyond the table count as zero. Returns (n, 41).
    """
    fhd = np.atleast_2d(np.asarray(fhd, float))
    hub = np.asarray(hub_height_m, float)[:, None]
    r = np.asarray(rotor_radius_m, float)[:, None]
    n = max(fhd.shape[0] if rows is None else len(rows), hub.shape[0])
    h = hub + _Y[None, :] * r + tidal_offset_m
    lo = np.floor(h).astype(np.int64)
    hi = np.ceil(h).astype(np.int64)
    padded = np.concatenate([fhd, np.zeros((fhd.shape[0], 1))], axis=1)
    top = fhd.shape[1]
    lo_c, hi_c = np.clip(lo, 0, top), np.clip(hi, 0, top)
    if rows is not None:
        idx = np.asarray(rows, np.int64)[:, None]
    elif fhd.shape[0] > 1:
        idx = np.arange(fhd.shape[0])[:, None]
    else:
        idx = np.zeros((n, 1), np.int64)
    flat = padded.ravel()
    width = padded.shape[1]
    f_lo = flat[idx * width + lo_c]
    f_hi = flat[idx * width + hi_c]
    d = r * (f_lo + (f_lo - f_hi) * (lo - h))
    return np.where(h < 0, 0.0, d)


def rotor_height_share_from_fhd(d_y: np.ndarray) -> np.ndarray:
    """Option 2's share of flights at collision-risk height, ``0.05 * trapezoid(d(y))``."""
    w = np.full(41, 0.05)
    w[0] = w[-1] = 0.025
    return (d_y * w[None, :]).sum(axis=1)


@lru_cache(maxsize=8)
def _rotor_grid(chord_profile: tuple[float, ...]):
    """Flattened left-half rotor grid (stochLAB ``generate_rotor_grids``), with x-trapezoid weights."""
    ys, rs, chords, cosphi, wx = [], [], [], [], []
    for k, y in enumerate(_Y):
        xmax = math.sqrt(max(0.0, 1 - y * y))
        if xmax == 0:
            continue
        if xmax == 1:
            x = 0.05 * np.arange(21)
        else:
            x = np.append(0.05 * np.arange(int(math.floor(xmax / 0.05)) + 1), xmax)
        w = np.full(x.size, 0.05)
        w[0] = 0.025
        w[-2] = 0.025 + (x[-1] - x[-2]) / 2
        w[-1] = (x[-1] - x[-2]) / 2
        r = np.sqrt(x ** 2 + y ** 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            phi = np.arctan(x / y) + (math.pi if y < 0 else 0.0)
        ys.append(np.full(x.size, k))
        rs.append(r)
        chords.append(np.interp(r, 0.05 * np.arange(21), np.asarray(chord_profile, float)))
        cosphi.append(np.abs(np.cos(phi)))
        wx.append(w)
    cat = np.concatenate
    return cat(ys).astype(np.int64), cat(rs), cat(chords), cat(cosphi), cat(wx)


@numba.njit(cache=True, parallel=True)
def _coll_int_kernel(d_y, v, length, span, r_m, cmax, omega, gamma, k_mult, flapping, upwind_share,
                     yidx, rg, chord, cosphi, wx):  # pragma: no cover - compiled
    n = v.shape[0]
    m = yidx.shape[0]
    out = np.empty(n)
    ywt = np.full(41, 0.05 * 2 / np.pi)
    ywt[0] *= 0.5
    ywt[40] *= 0.5
    for i in numba.prange(n):
        sg = math.sin(gamma[i])
        cg = math.cos(gamma[i])
        up = 0.0
        down = 0.0
        row_up = 0.0
        row_down = 0.0
        cur = yidx[0]
        for j in range(m):
            if yidx[j] != cur:
                up += ywt[cur] * d_y[i, cur] * 2.0 * row_up
                down += ywt[cur] * d_y[i, cur] * 2.0 * row_down
                row_up = 0.0
                row_down = 0.0
                cur = yidx[j]
            if rg[j] == 0.0:
                p_up = 1.0
                p_down = 1.0
            else:
                alpha = v[i] / (rg[j] * r_m[i] * omega[i])
                c = cmax[i] * chord[j]
                f = 1.0 if flapping else cosphi[j]
                sweep = max(length[i], span[i] * alpha * f)
                p_up = k_mult[i] * (abs(c * sg + alpha * c * cg) + sweep)
                p_down = k_mult[i] * (abs(-c * sg + alpha * c * cg) + sweep)
            row_up += wx[j] * p_up
            row_down += wx[j] * p_down
        up += ywt[cur] * d_y[i, cur] * 2.0 * row_up
        down += ywt[cur] * d_y[i, cur] * 2.0 * row_down
        out[i] = upwind_share * up + (1.0 - upwind_share) * down
    return out


def collision_integral_extended(d_y, flight_speed_ms, body_length_m, wingspan_m, rotor_radius_m, max_chord_m,
                                rpm, pitch_deg, *, blades: int, flapping: bool, upwind_share: float,
                                chord_profile) -> np.ndarray:
    """Extended model's collision integral (options 3/4), ``f_up CollInt+ + (1-f_up) CollInt-``, shape (n,)."""
    yidx, rg, chord, cosphi, wx = _rotor_grid(tuple(float(c) for c in chord_profile))
    v = np.ascontiguousarray(flight_speed_ms, float)
    omega = 2 * math.pi * np.asarray(rpm, float) / 60
    d_y = np.ascontiguousarray(np.broadcast_to(d_y, (v.shape[0], 41)), float)
    return _coll_int_kernel(d_y, v, np.ascontiguousarray(body_length_m, float), np.ascontiguousarray(wingspan_m, float),
                            np.ascontiguousarray(rotor_radius_m, float), np.ascontiguousarray(max_chord_m, float),
                            omega, np.asarray(pitch_deg, float) * math.pi / 180,
                            blades * omega / (2 * math.pi * v), bool(flapping), float(upwind_share),
                            yidx, rg, chord, cosphi, wx)


@dataclass(frozen=True)
class BandDraws:
    """Values of every Band input, one entry per draw (arrays of shape (n,) or (n, 12))."""

    flight_speed_ms: np.ndarray
    body_length_m: np.ndarray
    wingspan_m: np.ndarray
    nocturnal_activity: np.ndarray
    avoidance_basic: np.ndarray
    avoidance_extended: np.ndarray
    rotor_height_share: np.ndarray | None
    fhd: np.ndarray | None  # (n, H), (1, H), or (B, H) bootstrap samples indexed by fhd_row
    density_km2: np.ndarray  # (n, 12)
    rotor_radius_m: np.ndarray
    hub_height_m: np.ndarray
    max_chord_m: np.ndarray
    rpm: np.ndarray
    pitch_deg: np.ndarray
    operational_share: np.ndarray  # (n, 12)
    fhd_row: np.ndarray | None = None  # (n,) row of ``fhd`` used by each draw


def _mean(d):
    return np.asarray(d.mean, float)


def draws_at_means(species: SpeciesParams, wf: WindFarmParams) -> BandDraws:
    """The deterministic model's inputs: every parameter at its mean, as one draw."""
    one = lambda d: np.array([float(_mean(d))])  # noqa: E731
    fhd = species.flight_height_distribution
    return BandDraws(
        one(species.flight_speed_ms), one(species.body_length_m), one(species.wingspan_m),
        one(species.nocturnal_activity), one(species.avoidance_basic), one(species.avoidance_extended),
        one(species.rotor_height_share) if species.rotor_height_share is not None else None,
        fhd.mean[None, :] if fhd is not None else None,
        np.array([[float(_mean(d)) for d in species.density_km2]]) if species.density_km2 else np.zeros((1, 12)),
        one(wf.rotor_radius_m), one(wf.hub_height_m), one(wf.max_chord_m), one(wf.rpm), one(wf.pitch_deg),
        np.array([[float(_mean(d)) for d in wf.operational_share]]),
    )


def _pbar(dr: BandDraws, species: SpeciesParams, wf: WindFarmParams) -> np.ndarray:
    return transit_probability_kernel(dr.flight_speed_ms, dr.body_length_m, dr.wingspan_m, dr.rotor_radius_m,
                                      dr.max_chord_m, dr.rpm, dr.pitch_deg, blades=wf.blades,
                                      flapping=species.flight == "flapping", upwind_share=wf.upwind_share,
                                      chord_profile=wf.chord_profile)


def collisions_from_draws(dr: BandDraws, species: SpeciesParams, wf: WindFarmParams, option: int,
                          *, flux: np.ndarray | None = None) -> np.ndarray:
    """Monthly collisions, shape (n, 12), for every draw at once.

    ``flux`` (n, 12) replaces the density-based flux (e.g. migrant flux or
    transits derived from tracks).
    """
    if option not in (1, 2, 3):
        raise ValueError(f"option = {option!r}: expected 1, 2 or 3")
    pbar = _pbar(dr, species, wf)
    op = dr.operational_share
    lac = (large_array_factor(wf.turbines, dr.rotor_radius_m, wf.width_km, pbar, op.mean(axis=1), dr.avoidance_basic)
           if wf.large_array_correction else np.ones_like(pbar))
    if flux is None:
        flux = flux_factor(dr.flight_speed_ms, dr.density_km2, dr.rotor_radius_m, wf.turbines, wf.latitude,
                           dr.nocturnal_activity)
    if option == 1:
        if dr.rotor_height_share is None:
            raise ValueError("option 1 needs rotor_height_share for the species")
        factor = dr.rotor_height_share * pbar * (1 - dr.avoidance_basic) * lac
        return flux * op * factor[:, None]
    if dr.fhd is None:
        raise ValueError(f"option {option} needs a flight_height_distribution for the species")
    d_y = fhd_on_rotor(dr.fhd, dr.hub_height_m, dr.rotor_radius_m, wf.tidal_offset_m, dr.fhd_row)
    if option == 2:
        factor = rotor_height_share_from_fhd(d_y) * pbar * (1 - dr.avoidance_basic) * lac
        return flux * op * factor[:, None]
    coll = collision_integral_extended(d_y, dr.flight_speed_ms, dr.body_length_m, dr.wingspan_m, dr.rotor_radius_m,
                                       dr.max_chord_m, dr.rpm, dr.pitch_deg, blades=wf.blades,
                                       flapping=species.flight == "flapping", upwind_share=wf.upwind_share,
                                       chord_profile=wf.chord_profile)
    factor = coll * (1 - dr.avoidance_extended) * lac
    return flux * op * factor[:, None]


def transit_probability(species: SpeciesParams | Mapping[str, Any], wind_farm: WindFarmParams | Mapping[str, Any]) -> float:
    """Average single-transit collision probability of the Band (2012) basic model, no avoidance.

    Parameters
    ----------
    species, wind_farm
        :class:`SpeciesParams` / :class:`WindFarmParams` or plain dicts with
        the vocabulary keys (``body_length_m``, ``wingspan_m``,
        ``flight_speed_ms``, ``flight`` …; ``rotor_radius_m``, ``rpm``,
        ``pitch_deg``, ``max_chord_m`` …). Distributions enter at their mean.

    Returns
    -------
    float
        P̄ = f_up P̄₊ + (1 − f_up) P̄₋.

    Examples
    --------
    Band (2012) gannet worked example: ``transit_probability(gannet, farm)``
    gives 0.0759263489….
    """
    sp = SpeciesParams.from_mapping(species)
    wf = WindFarmParams.from_mapping(wind_farm)
    return float(_pbar(draws_at_means(sp, wf), sp, wf)[0])


def band_collisions(species: SpeciesParams | Mapping[str, Any], wind_farm: WindFarmParams | Mapping[str, Any],
                    option: int = 1) -> np.ndarray:
    """Expected collisions per month of the deterministic Band (2012) model.

    Parameters
    ----------
    species, wind_farm
        Parameter objects or plain dicts (see :func:`transit_probability`);
        ``species`` needs ``density_km2`` (12 monthly daytime in-flight
        densities, birds/km²), and ``rotor_height_share`` (option 1) or
        ``flight_height_distribution`` (options 2, 3).
    option
        1 (basic model, survey share at rotor height), 2 (basic model, share
        from the flight-height distribution) or 3 (extended model).

    Returns
    -------
    ndarray, shape (12,)
        Collisions Jan..Dec, after avoidance and the large-array correction.
    """
    sp = SpeciesParams.from_mapping(species)
    wf = WindFarmParams.from_mapping(wind_farm)
    if sp.density_km2 is None:
        from flyway.errors import ConfigError
        raise ConfigError("density_km2: the species needs 12 monthly in-flight densities (birds/km2)")
    return collisions_from_draws(draws_at_means(sp, wf), sp, wf, option)[0]
