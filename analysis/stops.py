"""Stop detection: fixes in, stop events out (the stops table of flyway.schema).

Two methods share one output:

``method="movingpandas"``
    The stops of movingpandas' ``TrajectoryStopDetector.get_stop_segments``
    (same start and end timestamps), computed by a numba kernel that
    reproduces its algorithm (see :func:`flyway.analysis._stop_kernels.movingpandas_stops`).
    All rows with coordinates are used, as movingpandas would; rows with the
    same individual and timestamp keep the first in input order (movingpandas
    sorts with an unstable sort there, so such duplicates are the one place the
    two can differ).
``method="flyway"`` (default)
    The same detector run on QC-clean fixes only, on gap-free pieces of each
    track (a gap is longer than ``max(gap_max, gap_factor x median interval)``),
    followed by merging of consecutive stops closer than a merge distance and
    time, and a minimum number of fixes. Per-species defaults come from
    ``analysis/data/species_defaults.toml``.

The core (:func:`detect_stop_ranges`) works on sorted arrays; :func:`detect_stops`
is the DataFrame wrapper usable in a notebook and by the CLI shell.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Mapping

import numpy as np
import pandas as pd

from flyway import schema as S
from flyway.analysis import _stop_kernels as K
from flyway.analysis.params import SpeciesConfig, StopParams, load_species_config
from flyway.analysis.seasons import label_stops
from flyway.errors import InputError
from flyway.geoparquet import points_wkb

log = logging.getLogger(__name__)

REQUIRED = (S.INDIVIDUAL_ID, S.TIMESTAMP, S.LON, S.LAT)


def _utc_ns(values: pd.Series) -> np.ndarray:
    """int64 nanoseconds since the epoch, UTC (naive timestamps are taken as UTC)."""
    ts = pd.to_datetime(values, utc=True)
    return ts.dt.tz_localize(None).astype("datetime64[ns]").to_numpy().view(np.int64)


def prepare_fixes(fixes: pd.DataFrame, params: StopParams) -> pd.DataFrame:
    """Columns the kernels need, sorted by (individual, time), one row per timestamp.

    Rows without finite coordinates or time are dropped; for ``method="flyway"``
    so are fixes with any QC flag in ``params.ignore_flags``.
    """
    missing = [c for c in REQUIRED if c not in fixes.columns]
    if missing:
        raise InputError(f"fixes lack column(s) {', '.join(missing)}; "
                         f"detect_stops needs {', '.join(REQUIRED)}")
    work = pd.DataFrame({
        S.INDIVIDUAL_ID: fixes[S.INDIVIDUAL_ID].astype(str).to_numpy(),
        "_t": _utc_ns(fixes[S.TIMESTAMP]),
        S.LON: pd.to_numeric(fixes[S.LON], errors="coerce").to_numpy(dtype=float),
        S.LAT: pd.to_numeric(fixes[S.LAT], errors="coerce").to_numpy(dtype=float),
        "_row": np.arange(len(fixes)),
    })
    if S.SPECIES in fixes.columns:
        work[S.SPECIES] = fixes[S.SPECIES].to_numpy()
    if S.LIFE_STAGE in fixes.columns:
        work[S.LIFE_STAGE] = fixes[S.LIFE_STAGE].to_numpy()
    ok = np.isfinite(work[S.LON].to_numpy()) & np.isfinite(work[S.LAT].to_numpy())
    ok &= work["_t"].to_numpy() != np.iinfo(np.int64).min
    if params.method == "flyway" and S.QC_FLAGS in fixes.columns:
        flags = fixes[S.QC_FLAGS].fillna(0).to_numpy().astype(np.uint32)
        ok &= (flags & np.uint32(params.ignore_flags)) == 0
    work = work[ok]
    # movingpandas keeps the first row of a repeated timestamp in input order;
    # the flyway method breaks such ties by position so row order never matters
    keys = [S.INDIVIDUAL_ID, "_t"] + (["_row"] if params.method == "movingpandas" else [S.LON, S.LAT])
    work = work.sort_values(keys, kind="mergesort")
    work = work[~work.duplicated([S.INDIVIDUAL_ID, "_t"], keep="first")]
    return work.reset_index(drop=True)


def _offsets(ids: np.ndarray) -> np.ndarray:
    if len(ids) == 0:
        return np.zeros(1, np.int64)
    change = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    return np.concatenate([[0], change, [len(ids)]]).astype(np.int64)


def detect_stop_ranges(t: np.ndarray, lon: np.ndarray, lat: np.ndarray, ind_offsets: np.ndarray,
                       params: StopParams, limits: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """First and last fix index of every stop, on arrays sorted by (individual, time).

    Parameters
    ----------
    t : int64 ndarray
        Nanoseconds since the epoch (UTC), ascending within each individual.
    lon, lat : float64 ndarray
        Degrees (WGS84).
    ind_offsets : int64 ndarray
        Individual ``i`` is ``[ind_offsets[i], ind_offsets[i + 1])``.
    params : StopParams
    limits : float64 ndarray, optional
        Gap threshold (ns) of each individual, NaN where it is to be computed
        from the arrays (:func:`track_gap_limits`). Given when the arrays hold
        only the end of a track whose threshold comes from the whole of it.

    Returns
    -------
    starts, ends : int64 ndarray
    """
    min_ns = int(params.min_duration.value)
    if params.method == "movingpandas":
        return K.movingpandas_stops(t, lon, lat, ind_offsets, float(params.max_diameter_m), min_ns)
    own = K.gap_limits(t, ind_offsets, float(params.gap_factor), float(params.gap_max.value))
    if limits is not None:
        own = np.where(np.isnan(limits), own, limits)
    seg = K.gap_offsets(t, ind_offsets, own)
    starts, ends = K.movingpandas_stops(t, lon, lat, seg, float(params.max_diameter_m), min_ns)
    # merging never bridges a gap: stops merge only within one gap-free segment
    seg_code = np.repeat(np.arange(len(seg) - 1), np.diff(seg))
    starts, ends = K.merge_stops(t, lon, lat, seg_code, starts, ends,
                                 float(params.merge_distance_m), float(params.merge_time.value))
    keep = (ends - starts + 1) >= params.min_fixes
    return starts[keep], ends[keep]


def _stops_frame(work: pd.DataFrame, starts: np.ndarray, ends: np.ndarray) -> pd.DataFrame:
    t = work["_t"].to_numpy()
    lon, lat = work[S.LON].to_numpy(), work[S.LAT].to_numpy()
    c_lon, c_lat, radius, count = K.stop_summaries(t, lon, lat, starts, ends)
    start = pd.to_datetime(t[starts], utc=True).as_unit("us")
    end = pd.to_datetime(t[ends], utc=True).as_unit("us")
    ind = work[S.INDIVIDUAL_ID].to_numpy()[starts]
    species = work[S.SPECIES].to_numpy()[starts] if S.SPECIES in work else np.full(len(starts), "")
    out = pd.DataFrame({
        S.INDIVIDUAL_ID: ind,
        S.SPECIES: pd.Series(species, dtype=object).fillna("").astype(str).to_numpy(),
        S.STOP_ID: pd.Series(ind, dtype=str).to_numpy() + "_" + start.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        S.START_TIME: start,
        S.END_TIME: end,
        S.DURATION_H: (t[ends] - t[starts]) / 3.6e12,
        S.LON: c_lon,
        S.LAT: c_lat,
        S.RADIUS_M: radius,
        S.N_FIXES: count,
    })
    if S.LIFE_STAGE in work:
        out[S.LIFE_STAGE] = work[S.LIFE_STAGE].to_numpy()[starts]
    return out


def detect_stops(fixes: pd.DataFrame, method: str = "flyway", max_diameter: float = 2000.0,
                 min_duration: Any = "24h", *, species_config: SpeciesConfig | None = None,
                 gap_limits: Mapping[str, float] | None = None, with_life_stage: bool = False,
                 **options: Any) -> pd.DataFrame:
    """Detect the stops of every individual in ``fixes``.

    Parameters
    ----------
    fixes : pandas.DataFrame
        At least ``individual_id``, ``timestamp`` (tz-aware, or naive UTC),
        ``lon``, ``lat``; ``qc_flags``, ``species`` and ``life_stage`` are used
        when present. Row order does not matter.
    method : {"flyway", "movingpandas"}
        ``"movingpandas"`` gives the stops of movingpandas'
        ``TrajectoryStopDetector.get_stop_segments(max_diameter, min_duration)``;
        ``"flyway"`` adds QC filtering, gap splitting, merging and a minimum
        number of fixes.
    max_diameter : float
        Metres (WGS84 geodesic diagonal of the minimum rotated rectangle).
    min_duration : str or Timedelta
        Any pandas duration, e.g. ``"24h"``.
    species_config : SpeciesConfig, optional
        Per-species defaults (default: the shipped TOML).
    gap_limits : mapping, optional
        Individual id to its gap threshold in nanoseconds, for individuals
        whose ``fixes`` are only the end of their track (the threshold comes
        from the whole track; :mod:`flyway.tail`). Others compute their own.
    with_life_stage : bool
        Keep the ``life_stage`` of each stop (its first fix's) as an extra column.
    **options
        Overrides of :class:`~flyway.analysis.params.StopParams` for the flyway
        method: ``gap_max``, ``gap_factor``, ``merge_distance_m``, ``merge_time``,
        ``min_fixes``, ``ignore_flags``.

    Returns
    -------
    pandas.DataFrame
        Columns of ``flyway.schema.STOPS`` (``country`` null), one row per stop,
        sorted by individual and start time; ``stop_id`` is
        ``<individual_id>_<start time, ISO 8601 UTC>``.

    Examples
    --------
    >>> stops = detect_stops(fixes, max_diameter=2000.0, min_duration="24h")  # doctest: +SKIP
    """
    cfg = species_config or load_species_config()
    base = StopParams(method=method, max_diameter_m=max_diameter, min_duration=min_duration)
    species_of = (fixes[S.SPECIES].astype(object) if S.SPECIES in fixes.columns
                  else pd.Series("", index=fixes.index, dtype=object))
    frames = []
    for species, part in fixes.groupby(species_of.fillna(""), sort=True, dropna=False):
        params = base if method == "movingpandas" else cfg.stops(
            species or None, method=method, max_diameter_m=max_diameter,
            min_duration=min_duration, **options)
        work = prepare_fixes(part, params)
        offsets = _offsets(work[S.INDIVIDUAL_ID].to_numpy())
        limits = None
        if gap_limits:
            first_ids = work[S.INDIVIDUAL_ID].to_numpy()[offsets[:-1]]
            limits = np.array([gap_limits.get(i, np.nan) for i in first_ids], dtype=float)
        starts, ends = detect_stop_ranges(work["_t"].to_numpy(), work[S.LON].to_numpy(),
                                          work[S.LAT].to_numpy(), offsets, params, limits)
        log.debug("species %r: %d fixes -> %d stops", species, len(work), len(starts))
        frames.append(_stops_frame(work, starts, ends))
    stops = pd.concat(frames, ignore_index=True) if frames else _stops_frame(
        prepare_fixes(fixes, base), np.zeros(0, np.int64), np.zeros(0, np.int64))
    stops = stops.sort_values([S.INDIVIDUAL_ID, S.START_TIME], kind="mergesort", ignore_index=True)
    kind, season = label_stops(stops, cfg)
    stops[S.KIND] = kind
    stops[S.SEASON] = season
    stops[S.COUNTRY] = pd.Series([None] * len(stops), dtype=object)
    stops[S.GEOMETRY] = points_wkb(stops[S.LON].to_numpy(), stops[S.LAT].to_numpy()).to_pylist()
    extra = [S.LIFE_STAGE] if with_life_stage and S.LIFE_STAGE in stops else []
    return stops[S.STOPS.names + extra]


def stop_params(method: str = "flyway", max_diameter: float = 2000.0, min_duration: Any = "24h",
                species: str | None = None, species_config: SpeciesConfig | None = None,
                **options: Any) -> StopParams:
    """The effective :class:`StopParams` of a call (for the metadata of the stops table)."""
    cfg = species_config or load_species_config()
    if method == "movingpandas":
        return StopParams(method=method, max_diameter_m=max_diameter, min_duration=min_duration)
    return replace(cfg.stops(species, method=method, **options), max_diameter_m=max_diameter,
                   min_duration=min_duration)


def stops_table(stops: pd.DataFrame):
    """The stops DataFrame as a ``pyarrow.Table`` conforming to ``flyway.schema.STOPS``."""
    import pyarrow as pa

    if len(stops) == 0:  # an empty frame's columns carry no usable types (geometry would be float)
        return S.STOPS.empty()
    return S.STOPS.conform(pa.Table.from_pandas(stops[S.STOPS.names], preserve_index=False))
