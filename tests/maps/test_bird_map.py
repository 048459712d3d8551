"""Per-bird view: time slider, stops, QC-flagged fixes shown (not hidden)."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from flyway import schema as S
from flyway.errors import InputError
from flyway.maps.bird_map import _thin_in_time, bird_map, build_bird_map


def _flagged_individual(fixes):
    counts = fixes.loc[fixes[S.QC_FLAGS] != 0, S.INDIVIDUAL_ID].value_counts()
    assert len(counts), "the simulated store should contain QC-flagged fixes"
    return counts.index[0], int(counts.iloc[0])


def test_bird_map_layers(tables):
    fixes, stops = tables["fixes"], tables["stops"]
    ind, n_flagged = _flagged_individual(fixes)
    html = build_bird_map(fixes, stops, ind, max_time_points=500).get_root().render()
    assert f"QC-flagged fixes ({n_flagged})" in html
    assert "L.timeDimension" in html and "Whole track (simplified)" in html
    n_stops = int((stops[S.INDIVIDUAL_ID] == ind).sum())
    assert html.count('"days": "') == n_stops  # one popup per stop, none of other birds
    times = json.loads(re.search(r'"times": (\[[0-9, ]+\])', html).group(1))
    assert 2 <= len(times) <= 500 and times == sorted(times)
    # QC markers name the flags
    assert any(name in html for name in ("hdop", "few_satellites", "speed", "outside_deployment", "movebank_outlier"))


def test_thin_in_time_keeps_order_and_bound():
    rng = np.random.default_rng(0)
    t = np.sort(rng.integers(0, 10**9, 50_000))
    keep = _thin_in_time(t, 1_000)
    assert len(keep) <= 1_000 and keep[0] == 0 and np.all(np.diff(keep) > 0)
    assert np.array_equal(_thin_in_time(t[:10], 1_000), np.arange(10))


def test_unknown_individual_is_an_input_error(tables):
    with pytest.raises(InputError, match="no fixes"):
        build_bird_map(tables["fixes"], tables["stops"], "nobody")


def test_bird_map_from_store(demo_store, tables):
    ind = sorted(tables["stops"][S.INDIVIDUAL_ID].unique())[0]
    html = bird_map(demo_store, ind, public=True).get_root().render()
    assert "Public export" in html and "L.timeDimension" in html
