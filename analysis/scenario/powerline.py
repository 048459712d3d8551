"""Power-line collision model: risky crossings × per-crossing collision probability × marking.

No Band-like geometric model is standard for wires; the evidence is empirical
(Bernardino et al. 2018). This is the crossing-based model of
``reference/scenario-science.md`` §B2, which GPS tracks support directly:

* a flight segment between consecutive fixes that crosses the line is a
  crossing (:func:`count_crossings`, shapely 2 vectorised with an STRtree);
* it is risky with the probability of being at wire height given the
  altitude and its vertical error (:func:`wire_height_probability`);
* collisions = risky crossings × q × (1 − marked share × marker efficacy),
  day and night separately (:func:`powerline_collisions`), with the priors of
  the species table (q: Barrientos et al. 2011; efficacy: Barrientos et al.
  2011, 2012; sandhill-crane studies) drawn per replicate
  (:func:`stochastic_powerline`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import shapely
from scipy import special

from .distributions import Dist, as_dist

log = logging.getLogger(__name__)

__all__ = ["wire_height_probability", "powerline_collisions", "stochastic_powerline", "count_crossings",
           "PowerLineDraws"]


def wire_height_probability(altitude_m, vertical_error_m, wire_low_m, wire_top_m, margin_m=1.0):
    """Probability that a bird crossing at ``altitude_m`` (above ground) is within the wire band.

    ``P = Φ((h_top + δ − h)/σ) − Φ((h_low − δ − h)/σ)`` with σ the GPS vertical
    error and δ a margin (half the wingspan). ``σ = 0`` gives the indicator.
    All arguments broadcast.
    """
    h = np.asarray(altitude_m, float)
    sigma = np.asarray(vertical_error_m, float)
    top = np.asarray(wire_top_m, float) + margin_m
    low = np.asarray(wire_low_m, float) - margin_m
    if np.any(sigma < 0):
        raise ValueError("vertical_error_m must be >= 0")
    with np.errstate(divide="ignore", invalid="ignore"):
        p = special.ndtr((top - h) / sigma) - special.ndtr((low - h) / sigma)
    exact = ((h >= low) & (h <= top)).astype(float)
    return np.where(sigma > 0, p, exact)


def powerline_collisions(crossings_day, crossings_night, wire_height_share_day, wire_height_share_night,
                         collision_per_crossing_day, collision_per_crossing_night, marked_share, marker_efficacy):
    """Expected collisions (day, night) = crossings × share at wire height × q × (1 − m e).

    Arguments broadcast (e.g. arrays of draws). ``q`` is the probability that
    a crossing at wire height of an *unmarked* line ends in a collision.
    Returns ``(day, night)`` arrays.
    """
    m = np.asarray(marked_share, float)
    e = np.asarray(marker_efficacy, float)
    if np.any((m < 0) | (m > 1)) or np.any((e < 0) | (e > 1)):
        raise ValueError("marked_share and marker_efficacy must be shares within [0, 1]")
    reduction = 1 - m * e
    day = np.asarray(crossings_day, float) * wire_height_share_day * collision_per_crossing_day * reduction
    night = np.asarray(crossings_night, float) * wire_height_share_night * collision_per_crossing_night * reduction
    return day, night


@dataclass(frozen=True)
class PowerLineDraws:
    """Draws of annual collisions of one species at one line: day, night, total (n,)."""

    day: np.ndarray
    night: np.ndarray

    @property
    def total(self) -> np.ndarray:
        return self.day + self.night

    @property
    def probability_at_least_one(self) -> float:
        """P(≥ 1 collision in a year) = 1 − exp(−E[C]) (Poisson), for tiny populations."""
        return float(1 - np.exp(-self.total.mean()))


def stochastic_powerline(*, crossings_day, crossings_night, wire_height_share_day, wire_height_share_night,
                         collision_per_crossing: Dist, marked_share: float, marker_efficacy: Dist,
                         collision_per_crossing_night: Dist | None = None, draws: int = 1000,
                         seed: int | np.random.SeedSequence | None = None) -> PowerLineDraws:
    """Monte-Carlo draws of annual collisions with one line (one array pass).

    Parameters
    ----------
    crossings_day, crossings_night
        Crossings per year (numbers, ``{mean, sd}`` or Dists) — typed in, or
        counted from tracks and scaled to the population.
    wire_height_share_day, wire_height_share_night
        Share of crossings at wire height (numbers, ``{mean, sd}`` (beta) or
        Dists), e.g. the mean of :func:`wire_height_probability` over
        tracked crossings.
    collision_per_crossing, collision_per_crossing_night
        Priors of q (night defaults to the day prior).
    marked_share
        Share of the line's spans carrying markers.
    marker_efficacy
        Prior of the marker efficacy.
    """
    rng = np.random.default_rng(seed)
    c_day = as_dist(crossings_day, name="crossings_day").sample(rng, draws)
    c_night = as_dist(crossings_night, name="crossings_night").sample(rng, draws)
    w_day = as_dist(wire_height_share_day, kind="beta", name="wire_height_share_day").sample(rng, draws)
    w_night = as_dist(wire_height_share_night, kind="beta", name="wire_height_share_night").sample(rng, draws)
    q_day = collision_per_crossing.sample(rng, draws)
    q_night = (collision_per_crossing_night or collision_per_crossing).sample(rng, draws)
    e = marker_efficacy.sample(rng, draws)
    day, night = powerline_collisions(c_day, c_night, w_day, w_night, q_day, q_night, marked_share, e)
    return PowerLineDraws(day, night)


def count_crossings(lon0, lat0, lon1, lat1, line) -> tuple[np.ndarray, np.ndarray]:
    """Flight segments that cross a line: which segment, and where along it.

    Parameters
    ----------
    lon0, lat0, lon1, lat1 : array_like, shape (n,)
        Start and end of each segment (consecutive fixes of one bird).
    line : shapely LineString or MultiLineString (or WKT)
        The power line, same coordinates (lon/lat degrees; the intersection
        is planar in degrees, fine for segments of a few km).

    Returns
    -------
    segment : ndarray of int64
        Index of the segment of each crossing (a segment crossing a zig-zag
        line twice appears twice).
    fraction : ndarray of float64
        Position of the crossing along its segment (0 = start, 1 = end), for
        interpolating the time and altitude of the crossing.
    """
    if isinstance(line, str):
        line = shapely.from_wkt(line)
    coords = np.stack([np.column_stack([lon0, lat0]), np.column_stack([lon1, lat1])], axis=1).astype(float)
    if coords.shape[0] == 0:
        return np.empty(0, np.int64), np.empty(0)
    segments = shapely.linestrings(coords)
    tree = shapely.STRtree(segments)
    hit = np.sort(tree.query(line, predicate="intersects"))
    if hit.size == 0:
        return np.empty(0, np.int64), np.empty(0)
    inter = shapely.intersection(segments[hit], line)
    pts = shapely.get_parts(inter, return_index=True)
    parts, owner = pts
    # a segment lying along the line intersects in a line: count it once, at its start
    keep_geom = shapely.get_type_id(parts) == 0
    points = np.where(keep_geom, parts, shapely.get_point(parts, 0))
    seg_idx = hit[owner]
    frac = shapely.line_locate_point(segments[seg_idx], points, normalized=True)
    order = np.lexsort((frac, seg_idx))
    return seg_idx[order].astype(np.int64), np.nan_to_num(frac[order], nan=0.0)
