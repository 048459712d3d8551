"""How well detected stops recover known ones (the simulator's planted truth).

A planted stop counts as found when a detected stop of the same individual
overlaps it in time and its centre lies within ``within_m`` (issue 4: 5 km);
precision is the same test the other way round.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from flyway import schema as S
from flyway.geo import haversine_m

_COLS = [S.INDIVIDUAL_ID, S.START_TIME, S.END_TIME, S.LON, S.LAT]


@dataclass(frozen=True)
class Recovery:
    planted: int
    detected: int
    planted_found: int
    detected_matching: int

    @property
    def recall(self) -> float:
        return self.planted_found / self.planted if self.planted else float("nan")

    @property
    def precision(self) -> float:
        return self.detected_matching / self.detected if self.detected else float("nan")

    def to_dict(self) -> dict:
        return {**asdict(self), "recall": self.recall, "precision": self.precision}


def _hits(a: pd.DataFrame, b: pd.DataFrame, within_m: float) -> int:
    m = a[_COLS].reset_index(names="_row").merge(b[_COLS], on=S.INDIVIDUAL_ID, suffixes=("", "_o"))
    overlap = (m[S.START_TIME] <= m[S.END_TIME + "_o"]) & (m[S.END_TIME] >= m[S.START_TIME + "_o"])
    near = haversine_m(m[S.LON].to_numpy(), m[S.LAT].to_numpy(), m[S.LON + "_o"].to_numpy(),
                        m[S.LAT + "_o"].to_numpy()) <= within_m
    return int(m.loc[overlap.to_numpy() & near, "_row"].nunique())


def truth_recovery(stops: pd.DataFrame, truth: pd.DataFrame, within_m: float = 5000.0) -> Recovery:
    """Recall and precision of ``stops`` against ``truth`` (both with individual, start, end, lon, lat)."""
    truth = truth.assign(**{c: pd.to_datetime(truth[c], utc=True) for c in (S.START_TIME, S.END_TIME)})
    stops = stops.assign(**{c: pd.to_datetime(stops[c], utc=True) for c in (S.START_TIME, S.END_TIME)})
    return Recovery(planted=len(truth), detected=len(stops),
                    planted_found=_hits(truth, stops, within_m), detected_matching=_hits(stops, truth, within_m))
