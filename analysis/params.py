"""Typed, frozen parameters of QC, stop detection and season labelling.

Every parameter set is validated once, at construction, with a message that
names the value given and what is allowed. Per-species defaults come from
``analysis/data/species_defaults.toml`` (commented with sources); a user's TOML
of the same layout overrides them (:func:`load_species_config`).
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from flyway.errors import ConfigError

DEFAULTS_FILE = Path(__file__).resolve().parent / "data" / "species_defaults.toml"
METHODS = ("flyway", "movingpandas")


def _positive(name: str, value: float, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (
        value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} = {value!r} is not allowed; expected a finite number {bound}")


def to_timedelta(name: str, value: Any) -> pd.Timedelta:
    """A positive pandas Timedelta from a string ("24h"), number of hours is NOT assumed."""
    try:
        td = pd.Timedelta(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{name} = {value!r} is not a duration; expected e.g. '24h' or '30min'") from exc
    if pd.isna(td) or td <= pd.Timedelta(0):
        raise ConfigError(f"{name} = {value!r} is not allowed; expected a duration > 0")
    return td


def _month_day(name: str, value: Any) -> tuple[int, int]:
    try:
        month, day = (int(p) for p in str(value).split("-"))
        pd.Timestamp(year=2000, month=month, day=day)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{name} = {value!r} is not a month-day; expected 'MM-DD'") from exc
    return month, day


@dataclass(frozen=True)
class QCParams:
    """Thresholds of the QC flags (see :mod:`flyway.analysis.qc`)."""

    max_speed_ms: float = 40.0
    max_hdop: float = 5.0
    min_satellites: int = 4

    def __post_init__(self) -> None:
        _positive("max_speed_ms", self.max_speed_ms)
        _positive("max_hdop", self.max_hdop)
        if not isinstance(self.min_satellites, int) or self.min_satellites < 0:
            raise ConfigError(f"min_satellites = {self.min_satellites!r} is not allowed; expected an integer >= 0")


@dataclass(frozen=True)
class StopParams:
    """Parameters of :func:`flyway.analysis.stops.detect_stops`.

    ``max_diameter_m`` and ``min_duration`` are the detector's; the others apply
    to ``method="flyway"`` only: a gap longer than ``max(gap_max, gap_factor x
    median interval)`` splits a track, fixes with QC flags in ``ignore_flags``
    are left out, consecutive stops closer than ``merge_distance_m`` and
    ``merge_time`` merge, and a stop needs ``min_fixes`` fixes.
    """

    method: str = "flyway"
    max_diameter_m: float = 2000.0
    min_duration: pd.Timedelta = pd.Timedelta("24h")
    gap_max: pd.Timedelta = pd.Timedelta("24h")
    gap_factor: float = 3.0
    merge_distance_m: float = 20000.0
    merge_time: pd.Timedelta = pd.Timedelta("24h")
    min_fixes: int = 3
    ignore_flags: int = 0xFFFFFFFF

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method = {self.method!r} is not allowed; expected one of {', '.join(METHODS)}")
        _positive("max_diameter_m", self.max_diameter_m)
        _positive("gap_factor", self.gap_factor)
        _positive("merge_distance_m", self.merge_distance_m, allow_zero=True)
        for name in ("min_duration", "gap_max", "merge_time"):
            object.__setattr__(self, name, to_timedelta(name, getattr(self, name)))
        if not isinstance(self.min_fixes, int) or self.min_fixes < 1:
            raise ConfigError(f"min_fixes = {self.min_fixes!r} is not allowed; expected an integer >= 1")
        if not isinstance(self.ignore_flags, int) or not 0 <= self.ignore_flags <= 0xFFFFFFFF:
            raise ConfigError(f"ignore_flags = {self.ignore_flags!r} is not allowed; expected a uint32 bitmask")

    def as_metadata(self) -> dict[str, Any]:
        """JSON-ready form for the metadata of derived tables."""
        out = dataclasses.asdict(self)
        for name in ("min_duration", "gap_max", "merge_time"):
            out[name] = str(getattr(self, name))
        return out


@dataclass(frozen=True)
class SeasonParams:
    """Rules of :mod:`flyway.analysis.seasons` (kinds and season labels)."""

    seasonal_min_days: float = 30.0
    breeding_window: tuple[str, str] = ("04-10", "07-31")
    wintering_window: tuple[str, str] = ("11-15", "03-01")
    spring_window: tuple[str, str] = ("01-01", "06-30")
    autumn_window: tuple[str, str] = ("07-01", "12-31")
    breeding_min_lat: float = -90.0
    wintering_max_lat: float = 90.0
    direction_min_deg: float = 1.0
    non_breeding_life_stages: tuple[str, ...] = ("juvenile", "immature", "subadult")

    def __post_init__(self) -> None:
        _positive("seasonal_min_days", self.seasonal_min_days)
        _positive("direction_min_deg", self.direction_min_deg, allow_zero=True)
        for name in ("breeding_window", "wintering_window", "spring_window", "autumn_window"):
            window = tuple(getattr(self, name))
            if len(window) != 2:
                raise ConfigError(f"{name} = {window!r} is not allowed; expected two 'MM-DD' dates")
            for v in window:
                _month_day(name, v)
            object.__setattr__(self, name, window)
        for name, lo, hi in (("breeding_min_lat", -90, 90), ("wintering_max_lat", -90, 90)):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise ConfigError(f"{name} = {v!r} is not allowed; expected a latitude in [-90, 90]")
        object.__setattr__(self, "non_breeding_life_stages",
                           tuple(s.lower() for s in self.non_breeding_life_stages))

    def window_md(self, name: str) -> tuple[tuple[int, int], tuple[int, int]]:
        a, b = getattr(self, name)
        return _month_day(name, a), _month_day(name, b)


_QC_KEYS = {f.name for f in dataclasses.fields(QCParams)}
_SEASON_KEYS = {f.name for f in dataclasses.fields(SeasonParams)}
_STOP_KEYS = {"max_diameter_m", "min_duration_h", "gap_max_h", "gap_factor", "merge_distance_m",
              "merge_time_h", "min_fixes"}


@dataclass(frozen=True)
class SpeciesConfig:
    """Per-species parameter tables: ``[default]`` plus ``[species."<name>"]`` overrides."""

    default: Mapping[str, Any]
    species: Mapping[str, Mapping[str, Any]]
    source: str = str(DEFAULTS_FILE)

    def values(self, species: str | None) -> dict[str, Any]:
        out = dict(self.default)
        if species is not None:
            out.update(self.species.get(species, {}))
        return out

    def qc(self, species: str | None = None) -> QCParams:
        v = self.values(species)
        return QCParams(**{k: v[k] for k in _QC_KEYS if k in v})

    def seasons(self, species: str | None = None) -> SeasonParams:
        v = self.values(species)
        kw = {k: (tuple(v[k]) if isinstance(v[k], list) else v[k]) for k in _SEASON_KEYS if k in v}
        return SeasonParams(**kw)

    def stops(self, species: str | None = None, method: str = "flyway", **overrides: Any) -> StopParams:
        v = self.values(species)
        kw: dict[str, Any] = {"method": method}
        for key in ("max_diameter_m", "gap_factor", "merge_distance_m", "min_fixes"):
            if key in v:
                kw[key] = v[key]
        for key, name in (("min_duration_h", "min_duration"), ("gap_max_h", "gap_max"),
                          ("merge_time_h", "merge_time")):
            if key in v:
                kw[name] = pd.Timedelta(hours=float(v[key]))
        kw.update({k: val for k, val in overrides.items() if val is not None})
        return StopParams(**kw)


def _check_keys(table: Mapping[str, Any], where: str, path: str) -> None:
    allowed = _QC_KEYS | _SEASON_KEYS | _STOP_KEYS
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} in {where}; allowed: {', '.join(sorted(allowed))}",
                          file=path)


def load_species_config(path: str | Path | None = None) -> SpeciesConfig:
    """The shipped per-species defaults, overridden by the user's TOML file at ``path``.

    Parameters
    ----------
    path : str or Path, optional
        A TOML file with ``[default]`` and/or ``[species."<scientific name>"]``
        tables. Keys it gives replace the shipped ones; others are kept.

    Returns
    -------
    SpeciesConfig
    """
    def read(p: Path) -> dict[str, Any]:
        try:
            with open(p, "rb") as fh:
                return tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read species parameters: {exc.strerror}", file=str(p)) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"invalid TOML: {exc}", file=str(p)) from exc

    base = read(DEFAULTS_FILE)
    default = dict(base.get("default", {}))
    species = {k: dict(v) for k, v in base.get("species", {}).items()}
    source = str(DEFAULTS_FILE)
    if path is not None:
        user = read(Path(path))
        _check_keys(user.get("default", {}), "[default]", str(path))
        default.update(user.get("default", {}))
        for name, table in user.get("species", {}).items():
            _check_keys(table, f'[species."{name}"]', str(path))
            species.setdefault(name, {}).update(table)
        source = f"{DEFAULTS_FILE};{path}"
    cfg = SpeciesConfig(default, species, source)
    for name in [None, *species]:  # validate every table now, not at first use
        cfg.qc(name), cfg.seasons(name), cfg.stops(name)
    return cfg
