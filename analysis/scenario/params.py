"""Typed parameters of the collision models: species (bird) and wind farm (turbines).

One vocabulary everywhere, units in the names (see issue 9):

species
    ``body_length_m``, ``wingspan_m``, ``flight_speed_ms``, ``flight``
    (``flapping`` | ``gliding``), ``nocturnal_activity`` (night flight activity
    as a fraction of daytime), ``avoidance_basic``, ``avoidance_extended``,
    ``rotor_height_share`` (option 1), ``flight_height_distribution`` (share
    per 1-m band from 0 m; options 2/3), ``density_km2`` (12 monthly daytime
    in-flight densities, birds/km²).
wind farm
    ``turbines``, ``latitude``, ``width_km``, ``rotor_radius_m``,
    ``hub_height_m``, ``tidal_offset_m``, ``blades``, ``max_chord_m``,
    ``pitch_deg``, ``rpm``, ``upwind_share``, ``large_array_correction``,
    ``chord_profile`` (21 values at r/R = 0, 0.05 … 1), ``operational_share``
    (12 monthly values).

Each numeric value may be a :class:`~flyway.analysis.scenario.distributions.Dist`
(or anything :func:`as_dist` accepts); the deterministic model uses the means.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

import numpy as np

from flyway.errors import ConfigError

from .distributions import Bootstrap, Dist, Fixed, as_dist

__all__ = ["SpeciesParams", "WindFarmParams", "CHORD_PROFILE_5MW", "MONTHS"]

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Band (2012) spreadsheet's "typical 5 MW" blade: chord / max chord at r/R = 0, 0.05 ... 1.
CHORD_PROFILE_5MW = (0.69, 0.73, 0.79, 0.88, 0.96, 1.00, 0.98, 0.92, 0.85, 0.80, 0.75,
                     0.70, 0.64, 0.58, 0.52, 0.47, 0.41, 0.37, 0.30, 0.24, 0.00)

FLIGHT_TYPES = ("flapping", "gliding")


def _positive(name: str, d: Dist, *, allow_zero: bool = False) -> Dist:
    lo = d.mean if not isinstance(d, Bootstrap) else float(np.min(d.samples))
    if not (lo > 0 or (allow_zero and lo >= 0)):
        what = "a number >= 0" if allow_zero else "a positive number"
        raise ConfigError(f"{name} = {lo!r}: expected {what}")
    return d


def _share(name: str, d: Dist) -> Dist:
    vals = d.samples if isinstance(d, Bootstrap) else np.array([d.mean])
    if np.any(vals < 0) or np.any(vals > 1):
        bad = vals[(vals < 0) | (vals > 1)][0]
        raise ConfigError(f"{name} = {bad!r}: expected a share within [0, 1]")
    return d


def _monthly(name: str, value: Any, *, kind: str) -> tuple[Dist, ...]:
    if isinstance(value, Mapping) and "mean" in value:
        means = value["mean"]
        sds = value.get("sd", [0.0] * 12)
        if np.isscalar(sds):
            sds = [sds] * 12
        if np.isscalar(means) or len(means) != 12 or len(sds) != 12:
            raise ConfigError(f"{name}: expected 12 monthly values (Jan..Dec) for mean and sd")
        value = [{"mean": m, "sd": s} for m, s in zip(means, sds)]
    if np.isscalar(value) or isinstance(value, Mapping) or len(value) != 12:
        raise ConfigError(f"{name}: expected 12 monthly values (Jan..Dec), got {value!r}")
    return tuple(as_dist(v, kind=kind, name=f"{name}[{MONTHS[i]}]") for i, v in enumerate(value))


@dataclass(frozen=True, eq=False)
class SpeciesParams:
    """Bird parameters of the Band model (one species), validated on construction."""

    name: str
    body_length_m: Dist
    wingspan_m: Dist
    flight_speed_ms: Dist
    flight: str = "flapping"
    nocturnal_activity: Dist = field(default_factory=lambda: Fixed(0.0))
    avoidance_basic: Dist = field(default_factory=lambda: Fixed(0.98))
    avoidance_extended: Dist | None = None
    rotor_height_share: Dist | None = None
    flight_height_distribution: Bootstrap | None = None
    density_km2: tuple[Dist, ...] | None = None

    def __post_init__(self) -> None:
        if self.flight not in FLIGHT_TYPES:
            raise ConfigError(f"flight = {self.flight!r}: expected one of {', '.join(FLIGHT_TYPES)}")
        for n in ("body_length_m", "wingspan_m", "flight_speed_ms"):
            _positive(n, getattr(self, n))
        for n in ("nocturnal_activity", "avoidance_basic", "avoidance_extended", "rotor_height_share"):
            if getattr(self, n) is not None:
                _share(n, getattr(self, n))
        if self.avoidance_extended is None:
            object.__setattr__(self, "avoidance_extended", self.avoidance_basic)
        fhd = self.flight_height_distribution
        if fhd is not None:
            if fhd.samples.ndim != 2 or fhd.samples.shape[1] < 2:
                raise ConfigError("flight_height_distribution: expected shares per 1-m band from 0 m "
                                  "(one row per bootstrap sample)")
            if np.any(fhd.samples < 0) or np.any(fhd.samples.sum(axis=1) > 1 + 1e-6):
                raise ConfigError("flight_height_distribution: shares must be >= 0 and sum to at most 1")
        if self.density_km2 is not None:
            if len(self.density_km2) != 12:
                raise ConfigError("density_km2: expected 12 monthly values (Jan..Dec)")
            for i, d in enumerate(self.density_km2):
                _positive(f"density_km2[{MONTHS[i]}]", d, allow_zero=True)

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | "SpeciesParams", *, name: str | None = None) -> "SpeciesParams":
        """Build from a plain dict with the vocabulary keys (numbers, ``{mean, sd}`` or Dists).

        ``flight_height_distribution`` is a list of shares per 1-m band (one
        distribution) or a list of such lists (bootstrap samples).
        """
        if isinstance(m, SpeciesParams):
            return m
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(m) - known - _SPECIES_EXTRA_KEYS)
        if unknown:
            raise ConfigError(f"species: unknown key(s) {', '.join(unknown)}; expected some of "
                              f"{', '.join(sorted(known))}")
        missing = [k for k in ("body_length_m", "wingspan_m", "flight_speed_ms") if k not in m]
        if missing:
            raise ConfigError(f"species: missing key {missing[0]} (expected a number or {{mean, sd}})")
        kw: dict[str, Any] = {"name": str(name or m.get("name", "species"))}
        for k in ("body_length_m", "wingspan_m", "flight_speed_ms"):
            kw[k] = as_dist(m[k], name=k)
        if "flight" in m:
            kw["flight"] = str(m["flight"])
        for k in ("nocturnal_activity", "avoidance_basic", "avoidance_extended", "rotor_height_share"):
            if k in m and m[k] is not None:
                kw[k] = as_dist(m[k], kind="beta", name=k)
        fhd = m.get("flight_height_distribution")
        if fhd is not None:
            kw["flight_height_distribution"] = fhd if isinstance(fhd, Bootstrap) else Bootstrap(np.atleast_2d(np.asarray(fhd, float)))
        if m.get("density_km2") is not None:
            kw["density_km2"] = _monthly("density_km2", m["density_km2"], kind="tnorm")
        return cls(**kw)

    def with_density(self, density_km2: Any) -> "SpeciesParams":
        """A copy with other monthly in-flight densities (e.g. of one facility)."""
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        kw["density_km2"] = _monthly("density_km2", density_km2, kind="tnorm")
        return SpeciesParams(**kw)


# keys a species mapping may carry for other models (demography, power lines, provenance)
_SPECIES_EXTRA_KEYS = {"common_name", "version", "sources", "demography", "power_line", "proxies"}


@dataclass(frozen=True, eq=False)
class WindFarmParams:
    """Wind-farm (turbine) parameters of the Band model, validated on construction."""

    turbines: int
    latitude: float
    width_km: float
    rotor_radius_m: Dist
    hub_height_m: Dist
    max_chord_m: Dist
    rpm: Dist
    pitch_deg: Dist
    operational_share: tuple[Dist, ...]
    tidal_offset_m: float = 0.0
    blades: int = 3
    upwind_share: float = 0.5
    large_array_correction: bool = True
    chord_profile: tuple[float, ...] = CHORD_PROFILE_5MW

    def __post_init__(self) -> None:
        if isinstance(self.turbines, bool) or int(self.turbines) != self.turbines or self.turbines < 1:
            raise ConfigError(f"turbines = {self.turbines!r}: expected a whole number >= 1")
        if not -90 <= self.latitude <= 90:
            raise ConfigError(f"latitude = {self.latitude!r}: expected degrees within [-90, 90]")
        if not (self.width_km > 0 and math.isfinite(self.width_km)):
            raise ConfigError(f"width_km = {self.width_km!r}: expected a positive number (km)")
        for n in ("rotor_radius_m", "hub_height_m", "max_chord_m", "rpm"):
            _positive(n, getattr(self, n))
        if not 0 <= self.pitch_deg.mean < 90:
            raise ConfigError(f"pitch_deg = {self.pitch_deg.mean!r}: expected degrees within [0, 90)")
        if self.hub_height_m.mean < self.rotor_radius_m.mean:
            raise ConfigError(f"hub_height_m = {self.hub_height_m.mean!r}: expected at least "
                              f"rotor_radius_m = {self.rotor_radius_m.mean!r} (blade tip below ground)")
        if int(self.blades) != self.blades or self.blades < 1:
            raise ConfigError(f"blades = {self.blades!r}: expected a whole number >= 1")
        if not 0 <= self.upwind_share <= 1:
            raise ConfigError(f"upwind_share = {self.upwind_share!r}: expected a share within [0, 1]")
        if len(self.operational_share) != 12:
            raise ConfigError("operational_share: expected 12 monthly values (Jan..Dec)")
        for i, d in enumerate(self.operational_share):
            _share(f"operational_share[{MONTHS[i]}]", d)
        prof = np.asarray(self.chord_profile, float)
        if prof.shape != (21,) or np.any(prof < 0) or np.any(prof > 1):
            raise ConfigError("chord_profile: expected 21 values within [0, 1] at r/R = 0, 0.05 ... 1")

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | "WindFarmParams") -> "WindFarmParams":
        """Build from a plain dict with the vocabulary keys."""
        if isinstance(m, WindFarmParams):
            return m
        required = ("turbines", "latitude", "width_km", "rotor_radius_m", "hub_height_m",
                    "max_chord_m", "rpm", "pitch_deg", "operational_share")
        for k in required:
            if k not in m:
                raise ConfigError(f"wind_farm: missing key {k}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(m) - known)
        if unknown:
            raise ConfigError(f"wind_farm: unknown key(s) {', '.join(unknown)}; expected some of "
                              f"{', '.join(sorted(known))}")
        kw: dict[str, Any] = {}
        for k in ("rotor_radius_m", "hub_height_m", "max_chord_m", "rpm", "pitch_deg"):
            kw[k] = as_dist(m[k], name=k)
        kw["operational_share"] = _monthly("operational_share", m["operational_share"], kind="beta")
        kw["turbines"] = m["turbines"]
        for k in ("latitude", "width_km", "tidal_offset_m", "upwind_share"):
            if k in m:
                try:
                    kw[k] = float(m[k])
                except (TypeError, ValueError):
                    raise ConfigError(f"{k} = {m[k]!r}: expected a number") from None
        if "blades" in m:
            kw["blades"] = m["blades"]
        if "large_array_correction" in m:
            kw["large_array_correction"] = bool(m["large_array_correction"])
        if "chord_profile" in m:
            kw["chord_profile"] = tuple(float(c) for c in m["chord_profile"])
        return cls(**kw)
