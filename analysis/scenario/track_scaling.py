"""From tracked birds to the population: densities, crossings and height shares with a bootstrap of individuals.

Pure functions over per-passage / per-crossing arrays of one facility and
one species (the individual as a local index ``0 .. n_birds - 1``) and the
bootstrap weights ``w`` (shape ``(1 + replicates, n_birds)``: row 0 all ones,
the point estimate; row ``k`` how often each bird is drawn in replicate
``k``). Every statistic is a ratio of weighted sums, so all replicates come
from one matrix product of ``w`` with per-bird monthly sums; the tracked
time ``tracked_w = w @ coverage_s`` is the same for every facility and is
computed once per species by the caller, and only the columns of birds that
came near a facility enter its products.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from .band import day_hours
from .powerline import wire_height_probability
from .track_segments import TrackParams

__all__ = ["resample_counts", "bootstrap_weights", "WindFarmExposure", "wind_farm_exposure", "LineExposure",
           "line_exposure", "flight_height_distribution"]

DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], float)  # 365-day year, as Band's
_FHD_TOP_M = 1000  # flight-height distribution: 1-m bands from 0 to this height


def resample_counts(replicates: int, individuals: int, seed: np.random.SeedSequence) -> np.ndarray:
    """Bootstrap of individuals: how often each bird is drawn in each replicate, shape (replicates, individuals).

    Replicate ``k`` draws ``individuals`` birds with replacement; one
    ``integers`` call and one ``bincount``, no loop over replicates.
    """
    if individuals == 0:
        return np.zeros((replicates, 0))
    idx = np.random.default_rng(seed).integers(0, individuals, size=(replicates, individuals))
    idx += (np.arange(replicates) * individuals)[:, None]
    return np.bincount(idx.ravel(), minlength=replicates * individuals).reshape(replicates, individuals).astype(float)


def bootstrap_weights(replicates: int, individuals: int, seed: np.random.SeedSequence) -> np.ndarray:
    """Row 0 all ones (the point estimate), then :func:`resample_counts`: shape (1 + replicates, individuals).

    Column-major, so the columns of the birds near a facility are gathered as contiguous blocks.
    """
    return np.asfortranarray(np.vstack([np.ones((1, individuals)), resample_counts(replicates, individuals, seed)]))


def _weighted(w: np.ndarray, per_bird: np.ndarray) -> np.ndarray:
    """``w @ per_bird`` over the birds with a non-zero row only (most never come near a given facility)."""
    used = np.flatnonzero(per_bird.any(axis=1) if per_bird.ndim == 2 else per_bird)
    return w[:, used] @ per_bird[used]


def _ratio(top: np.ndarray, bottom: np.ndarray, fallback) -> np.ndarray:
    """``top / bottom`` elementwise, ``fallback`` where the denominator is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1.0), fallback)


def _per_bird(loc: np.ndarray, n_birds: int, weights=None, month: np.ndarray | None = None) -> np.ndarray:
    if month is None:
        return np.bincount(loc, weights=weights, minlength=n_birds).astype(float)
    return np.bincount(loc * 12 + month, weights=weights, minlength=n_birds * 12).reshape(n_birds, 12).astype(float)


def flight_height_distribution(height_m: np.ndarray, weights: np.ndarray, vertical_error_m: float) -> np.ndarray:
    """Share of in-flight time per 1-m band from 0 m (Band's FHD), each height spread by the GPS error.

    Binned: the heights are put in 1-m classes and each class spread over
    the bands as N(class centre, σ). Time below 0 m or above 1,000 m is in
    no band (shares then sum to less than 1).
    """
    edges = np.arange(_FHD_TOP_M + 1, dtype=float)
    if vertical_error_m > 0:
        lo = math.floor(min(height_m.min(), 0.0) - 6 * vertical_error_m)
        hist = np.bincount(np.floor(height_m - lo).astype(np.int64), weights=weights)
        filled = np.flatnonzero(hist)
        cdf = special.ndtr((edges[None, :] - (lo + filled + 0.5)[:, None]) / vertical_error_m)
        fhd = hist[filled] @ np.diff(cdf, axis=1)
    else:
        fhd = np.histogram(height_m, bins=edges, weights=weights)[0]
    return fhd / weights.sum()


@dataclass(frozen=True, eq=False)
class WindFarmExposure:
    """One wind farm and species. Arrays have ``1 + replicates`` rows; row 0 is the point estimate.

    ``density_km2`` is the 24-h mean in-flight density over the footprint
    (birds/km², 12 months); ``band_density_km2`` the daytime-equivalent
    density Band's flux needs with nocturnal activity 0; ``rotor_height_share``
    None when the tracks hold too few heights.
    """

    density_km2: np.ndarray
    band_density_km2: np.ndarray
    rotor_height_share: np.ndarray | None
    flight_height_distribution: np.ndarray | None
    transits: int
    birds_exposed: int
    flight_h_inside: float
    heights: int
    notes: list[str] = field(default_factory=list)


def wind_farm_exposure(loc, month, time_inside_s, height_m, transit_start, tracked_w, w, *, population: float,
                       area_km2: float, latitude: float, hub_height_m: float, rotor_radius_m: float,
                       params: TrackParams) -> WindFarmExposure:
    """Population exposure to one wind farm from the tracked passages of one species.

    Parameters
    ----------
    loc, month, time_inside_s, height_m, transit_start : ndarray (passages,)
        Bird (local index), month (0-11), in-flight time inside the
        footprint (s), height above ground (m, NaN unknown), start of a transit.
    tracked_w : ndarray (1 + replicates, 12)
        Tracked time per month (s) of each bootstrap resample: ``w @ coverage_s``
        with ``coverage_s`` (birds, 12) the tracked time per bird and month.
    w : ndarray (1 + replicates, birds)
        Bootstrap weights (:func:`bootstrap_weights`).
    population
        Population size (individuals).
    area_km2, latitude, hub_height_m, rotor_radius_m
        Footprint area, latitude (Band's day length), rotor band.
    """
    n_birds = w.shape[1]
    inside = _per_bird(loc, n_birds, time_inside_s, month)
    density = population * _ratio(_weighted(w, inside), tracked_w, 0.0) / area_km2
    h_day, _ = day_hours(latitude)
    band_density = np.where(h_day > 0, density * 24.0 * DAYS_IN_MONTH / np.where(h_day > 0, h_day, 1.0), 0.0)
    known = np.isfinite(height_m)
    transits = int(transit_start.sum())
    notes = [f"{transits} tracked transits by {np.unique(loc).size} of {n_birds} tracked birds"]
    share = fhd = None
    if int(known.sum()) >= params.min_height_samples:
        p_rotor = wire_height_probability(np.where(known, height_m, 0.0), params.vertical_error_m,
                                          hub_height_m - rotor_radius_m, hub_height_m + rotor_radius_m, margin_m=0.0)
        at_rotor = _per_bird(loc, n_birds, time_inside_s * p_rotor * known)
        with_height = _per_bird(loc, n_birds, time_inside_s * known)
        share = _ratio(_weighted(w, at_rotor), _weighted(w, with_height), at_rotor.sum() / with_height.sum())
        fhd = flight_height_distribution(height_m[known], time_inside_s[known], params.vertical_error_m)
    if np.any((density[0] > 0) & (h_day <= 0)):
        notes.append("in-flight time in months without daylight is not represented by Band's day-based flux")
    empty = int((tracked_w[0] == 0).sum())
    if empty and transits:
        notes.append(f"{empty} months without tracked birds (density 0 there)")
    return WindFarmExposure(density, band_density, share, fhd, transits, int(np.unique(loc).size),
                            float(time_inside_s.sum() / 3600.0), int(known.sum()), notes)


@dataclass(frozen=True, eq=False)
class LineExposure:
    """One power line and species: population crossings per year and shares at wire height (day, night).

    ``crossings_day`` / ``crossings_night`` have ``1 + replicates`` rows (row
    0 the point estimate); a share is such an array, or None when the tracks
    hold too few heights (every crossing then counts as at wire height).
    """

    crossings_day: np.ndarray
    crossings_night: np.ndarray
    wire_height_share_day: np.ndarray | None
    wire_height_share_night: np.ndarray | None
    crossings: int
    night_crossings: int
    birds_exposed: int
    heights: int


def line_exposure(loc, month, night, height_m, tracked_w, w, *, population: float, wire_low_m: float,
                  wire_top_m: float, margin_m: float, params: TrackParams) -> LineExposure:
    """Population crossings of one line from the tracked crossings of one species.

    Crossings per year = population × Σ_m (crossings_m / tracked time_m) ×
    seconds in month m, day and night separately; the share at wire height
    is the mean of ``Φ((top + δ − h)/σ) − Φ((low − δ − h)/σ)`` over crossings
    with a height (night crossings pooled with the day's when the night has
    fewer than ``min_height_samples``). Arguments as :func:`wind_farm_exposure`,
    with ``night`` (bool per crossing) and ``margin_m`` δ (half the wingspan).
    """
    n_birds = w.shape[1]
    seconds = DAYS_IN_MONTH * 86400.0
    known = np.isfinite(height_m)
    p_wire = np.where(known, wire_height_probability(np.where(known, height_m, 0.0), params.vertical_error_m,
                                                     wire_low_m, wire_top_m, margin_m), 0.0)
    pooled = (_per_bird(loc, n_birds, p_wire), _per_bird(loc, n_birds, known.astype(float)))
    out = {}
    for label, mask in (("day", ~night), ("night", night)):
        counts = _per_bird(loc[mask], n_birds, None, month[mask])
        out[f"crossings_{label}"] = (population * _ratio(_weighted(w, counts), tracked_w, 0.0) * seconds).sum(axis=1)
        risk = _per_bird(loc[mask], n_birds, p_wire[mask])
        with_height = _per_bird(loc[mask], n_birds, known[mask].astype(float))
        if with_height.sum() < params.min_height_samples:
            risk, with_height = pooled
        out[f"wire_height_share_{label}"] = (
            np.clip(_ratio(_weighted(w, risk), _weighted(w, with_height), risk.sum() / with_height.sum()), 0.0, 1.0)
            if with_height.sum() >= params.min_height_samples else None)
    return LineExposure(**out, crossings=int(loc.size), night_crossings=int(night.sum()),
                        birds_exposed=int(np.unique(loc).size), heights=int(known.sum()))
