"""Stop kinds (breeding / wintering / stopover / unknown) and season labels.

Rules (parameters per species in ``analysis/data/species_defaults.toml``):

* A stop shorter than ``seasonal_min_days`` is a **stopover**.
* A longer one is **breeding** when its midpoint falls in the breeding window,
  its latitude is at least ``breeding_min_lat`` and the bird's life stage is not
  one that never breeds (``non_breeding_life_stages``: an immature that
  summers away from the breeding grounds is **unknown**, never breeding by
  accident); **wintering** when its midpoint falls in the wintering window and
  its latitude is at most ``wintering_max_lat``; otherwise **unknown**.
* Season labels: breeding stops ``<year>-breeding``; wintering stops
  ``<year>-winter`` with the year the winter began; other stops
  ``<year>-spring`` / ``<year>-autumn`` from the direction of travel (net
  northward or southward change of latitude between the previous and the next
  stop of the bird, at least ``direction_min_deg``), else from the spring and
  autumn date windows; no label when neither applies.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from flyway import schema as S
from flyway.analysis.params import SeasonParams, SpeciesConfig, load_species_config


def _md(ts: pd.Series) -> np.ndarray:
    return (ts.dt.month * 100 + ts.dt.day).to_numpy()


def in_window(month_day: np.ndarray, window: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
    """Month-day codes (MMDD) inside an inclusive window that may wrap over new year."""
    lo = window[0][0] * 100 + window[0][1]
    hi = window[1][0] * 100 + window[1][1]
    if lo <= hi:
        return (month_day >= lo) & (month_day <= hi)
    return (month_day >= lo) | (month_day <= hi)


def classify(midpoint: pd.Series, duration_h: np.ndarray, lat: np.ndarray, non_breeder: np.ndarray,
             direction: np.ndarray, p: SeasonParams,
             known_kind: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Kinds and season labels of stops of one species (vectorised core).

    Parameters
    ----------
    midpoint : Series of tz-aware Timestamps
        Middle of each stop.
    duration_h, lat : ndarray
        Stop duration (hours) and centroid latitude.
    non_breeder : bool ndarray
        The bird's life stage says it does not breed.
    direction : ndarray
        Net change of latitude (degrees) around the stop; NaN when unknown.
    p : SeasonParams
    known_kind : object ndarray, optional
        Kinds worked out before (missing where not), used instead of the rules.

    Returns
    -------
    kind, season : object ndarrays
    """
    md = _md(midpoint)
    year = midpoint.dt.year.to_numpy()
    long_stay = duration_h >= p.seasonal_min_days * 24.0
    breeding = long_stay & in_window(md, p.window_md("breeding_window")) & (lat >= p.breeding_min_lat)
    breeding &= ~non_breeder
    wintering = long_stay & ~breeding & in_window(md, p.window_md("wintering_window"))
    wintering &= lat <= p.wintering_max_lat
    kind = np.where(~long_stay, S.KIND_STOPOVER,
                    np.where(breeding, S.KIND_BREEDING,
                             np.where(wintering, S.KIND_WINTERING, S.KIND_UNKNOWN))).astype(object)
    if known_kind is not None:  # kinds worked out before (the life stage they used is not at hand)
        kind = np.where(pd.isna(known_kind), kind, known_kind).astype(object)

    north = direction >= p.direction_min_deg
    south = direction <= -p.direction_min_deg
    spring = north | (~south & in_window(md, p.window_md("spring_window")))
    autumn = ~spring & (south | in_window(md, p.window_md("autumn_window")))
    ystr = year.astype(str).astype(object)
    winter_year = np.where(midpoint.dt.month.to_numpy() >= 7, year, year - 1).astype(str).astype(object)
    season = np.where(spring, ystr + "-spring", np.where(autumn, ystr + "-autumn", None))
    season = np.where(kind == S.KIND_BREEDING, ystr + "-breeding", season)
    season = np.where(kind == S.KIND_WINTERING, winter_year + "-winter", season)
    return kind, season.astype(object)


def travel_direction(stops: pd.DataFrame) -> np.ndarray:
    """Net latitude change from the previous to the next stop of the same bird.

    ``stops`` must be sorted by individual and start time. At the first (last)
    stop of a bird the change from (to) the stop itself is used.
    """
    g = stops.groupby(S.INDIVIDUAL_ID, sort=False)[S.LAT]
    prev = g.shift(1).fillna(stops[S.LAT])
    nxt = g.shift(-1).fillna(stops[S.LAT])
    out = (nxt - prev).to_numpy(dtype=float, copy=True)
    alone = g.transform("size").to_numpy() < 2
    out[alone] = np.nan
    return out


def label_stops(stops: pd.DataFrame, config: SpeciesConfig | None = None,
                known_kind: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Kind and season of every stop (rows sorted by individual and start time).

    Parameters
    ----------
    stops : pandas.DataFrame
        ``individual_id``, ``species``, ``start_time``, ``end_time``,
        ``duration_h``, ``lat``; ``life_stage`` when known.
    config : SpeciesConfig, optional
        Per-species rules (default: the shipped TOML).
    known_kind : object ndarray, optional
        Kinds already worked out (missing where not): kept as they are, and
        their season labels follow from them.

    Returns
    -------
    kind, season : object ndarrays aligned with ``stops``
    """
    cfg = config or load_species_config()
    kind = np.empty(len(stops), dtype=object)
    season = np.empty(len(stops), dtype=object)
    if len(stops) == 0:
        return kind, season
    midpoint = stops[S.START_TIME] + (stops[S.END_TIME] - stops[S.START_TIME]) / 2
    direction = travel_direction(stops)
    stage = (stops[S.LIFE_STAGE] if S.LIFE_STAGE in stops else pd.Series("", index=stops.index))
    stage = stage.fillna("").astype(str).str.strip().str.lower()
    species = stops[S.SPECIES].fillna("").astype(str)
    for name, idx in species.groupby(species, sort=False).groups.items():
        pos = stops.index.get_indexer(idx)
        p = cfg.seasons(name or None)
        k, s = classify(midpoint.iloc[pos].reset_index(drop=True), stops[S.DURATION_H].to_numpy()[pos],
                        stops[S.LAT].to_numpy()[pos], stage.iloc[pos].isin(p.non_breeding_life_stages).to_numpy(),
                        direction[pos], p, None if known_kind is None else np.asarray(known_kind, dtype=object)[pos])
        kind[pos] = k
        season[pos] = s
    return kind, season
