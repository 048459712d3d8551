"""Stop kinds and season labels."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flyway import schema as S
from flyway.analysis.params import SeasonParams
from flyway.analysis.seasons import in_window, label_stops
from flyway.errors import ConfigError


def stops(rows, species="Grus monacha", stage=None) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=[S.START_TIME, S.END_TIME, S.LAT])
    df[S.START_TIME] = pd.to_datetime(df[S.START_TIME], utc=True)
    df[S.END_TIME] = pd.to_datetime(df[S.END_TIME], utc=True)
    df[S.DURATION_H] = (df[S.END_TIME] - df[S.START_TIME]).dt.total_seconds() / 3600
    df[S.INDIVIDUAL_ID] = "hc1"
    df[S.SPECIES] = species
    if stage is not None:
        df[S.LIFE_STAGE] = stage
    return df


YEAR = [("2023-11-20", "2024-03-01", 32.1),   # Izumi: wintering
        ("2024-03-10", "2024-03-20", 35.0),   # stopover going north
        ("2024-04-01", "2024-04-10", 42.0),   # stopover going north
        ("2024-05-05", "2024-08-25", 50.0),   # breeding in the taiga
        ("2024-09-20", "2024-10-01", 44.0),   # stopover going south
        ("2024-11-20", "2025-02-20", 32.1)]   # wintering again


def test_a_crane_year():
    kind, season = label_stops(stops(YEAR))
    assert kind.tolist() == ["wintering", "stopover", "stopover", "breeding", "stopover", "wintering"]
    assert season.tolist() == ["2023-winter", "2024-spring", "2024-spring", "2024-breeding", "2024-autumn",
                               "2024-winter"]


def test_immature_summering_is_not_breeding():
    kind, season = label_stops(stops(YEAR, stage="immature"))
    assert kind[3] == S.KIND_UNKNOWN and kind[0] == S.KIND_WINTERING
    kind, _ = label_stops(stops(YEAR, stage="Adult"))
    assert kind[3] == S.KIND_BREEDING


def test_long_summer_stop_south_of_breeding_range_is_unknown():
    rows = [("2024-05-05", "2024-08-25", 35.0)]  # hooded cranes breed north of 44 N
    assert label_stops(stops(rows))[0].tolist() == [S.KIND_UNKNOWN]


def test_direction_beats_dates():
    # a northward stop in July (date window says autumn) is spring migration by direction
    rows = [("2024-07-01", "2024-07-03", 30.0), ("2024-07-05", "2024-07-07", 35.0),
            ("2024-07-09", "2024-07-10", 40.0)]
    assert label_stops(stops(rows))[1].tolist() == ["2024-spring"] * 3


def test_windows_wrap_and_validation():
    md = np.array([1115, 1231, 101, 301, 302, 700])
    assert in_window(md, ((11, 15), (3, 1))).tolist() == [True, True, True, True, False, False]
    with pytest.raises(ConfigError, match="breeding_window"):
        SeasonParams(breeding_window=("13-01", "08-01"))
    with pytest.raises(ConfigError, match="seasonal_min_days"):
        SeasonParams(seasonal_min_days=-1)


def test_empty():
    kind, season = label_stops(stops([]))
    assert len(kind) == 0 and len(season) == 0
