"""Power-line model: crossings from segments, wire-height probability, collisions with marking."""
from __future__ import annotations

import numpy as np
import pytest
import shapely

from flyway.analysis.scenario.distributions import BetaMoments, Fixed, LogNormalMoments
from flyway.analysis.scenario.powerline import (count_crossings, powerline_collisions, stochastic_powerline,
                                                wire_height_probability)


def test_count_crossings_hand_built():
    line = shapely.LineString([(0, 0), (0, 10)])
    # crosses at x=0 halfway; parallel beside the line; crosses at 1/3; beyond the line's end
    seg, frac = count_crossings([-1, 1, -1, -1], [5, 0, 2, 20], [1, 1, 2, 1], [5, 10, 2, 20], line)
    assert seg.tolist() == [0, 2]
    np.testing.assert_allclose(frac, [0.5, 1 / 3])


def test_count_crossings_zigzag_counts_twice_and_empty_input():
    zig = shapely.LineString([(0, 0), (1, 1), (2, 0)])
    seg, frac = count_crossings([-1], [0.5], [3], [0.5], zig)
    assert seg.tolist() == [0, 0]
    np.testing.assert_allclose(frac, [0.375, 0.625])
    seg, frac = count_crossings([], [], [], [], zig)
    assert seg.size == 0 and frac.size == 0


def test_count_crossings_many_segments_matches_brute_force():
    rng = np.random.default_rng(1)
    x0, y0, x1, y1 = rng.uniform(-5, 5, (4, 5000))
    line = shapely.LineString([(-4, -4), (0, 3), (4, -1)])
    seg, _ = count_crossings(x0, y0, x1, y1, line)
    brute = shapely.intersects(shapely.linestrings(np.stack([np.c_[x0, y0], np.c_[x1, y1]], axis=1)), line)
    assert set(seg.tolist()) == set(np.flatnonzero(brute).tolist())


def test_wire_height_probability():
    # exact indicator without error; symmetric band with error
    np.testing.assert_array_equal(wire_height_probability([5, 20, 40], 0, 10, 30, margin_m=0), [0, 1, 0])
    p = wire_height_probability(20, 10, 10, 30, margin_m=0)
    assert p == pytest.approx(0.6826894921, rel=1e-9)
    assert wire_height_probability(500, 10, 10, 30) < 1e-12


def test_collisions_and_marking():
    day, night = powerline_collisions(10_000, 2_000, 0.5, 1.0, 0.21e-3, 0.21e-3, 0.0, 0.5)
    assert day == pytest.approx(10_000 * 0.5 * 0.21e-3) and night == pytest.approx(2_000 * 0.21e-3)
    marked_day, _ = powerline_collisions(10_000, 2_000, 0.5, 1.0, 0.21e-3, 0.21e-3, 1.0, 0.78)
    assert marked_day == pytest.approx(day * 0.22)
    with pytest.raises(ValueError):
        powerline_collisions(1, 1, 1, 1, 1, 1, 1.2, 0.5)


def test_stochastic_powerline_mean_and_fixed_case():
    fixed = stochastic_powerline(crossings_day=1000, crossings_night=100, wire_height_share_day=0.5,
                                 wire_height_share_night=0.5, collision_per_crossing=Fixed(1e-3), marked_share=0.5,
                                 marker_efficacy=Fixed(0.5), draws=5, seed=1)
    np.testing.assert_allclose(fixed.total, (1000 + 100) * 0.5 * 1e-3 * 0.75)
    n = 20_000
    res = stochastic_powerline(crossings_day={"mean": 1000, "sd": 100}, crossings_night=100,
                               wire_height_share_day={"mean": 0.5, "sd": 0.1}, wire_height_share_night=0.5,
                               collision_per_crossing=LogNormalMoments(1e-3, 5e-4), marked_share=0.5,
                               marker_efficacy=BetaMoments(0.5, 0.17), draws=n, seed=2)
    expected = (1000 * 0.5 + 100 * 0.5) * 1e-3 * 0.75
    assert abs(res.total.mean() - expected) < 4 * res.total.std() / np.sqrt(n)
    assert 0 < res.probability_at_least_one < 1
