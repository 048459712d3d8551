"""The packaged species table (``data/species_parameters.toml``): parameters with their sources.

Every value carries its citation and, when borrowed from another species or
from guidance, the proxy it comes from, so a report can say which numbers are
proxies. Per-scenario overrides replace a value and record the override as
its source.
"""
from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from flyway import schema as S
from flyway.errors import ConfigError

from .distributions import Bootstrap, Dist, as_dist
from .params import SpeciesParams
from .population import Demography

log = logging.getLogger(__name__)

__all__ = ["SpeciesEntry", "SpeciesTable", "load_species_table", "fhd_from_bands"]

_META = ("source", "proxy", "note")
_BAND_KEYS = ("body_length_m", "wingspan_m", "flight_speed_ms", "flight", "nocturnal_activity", "avoidance_basic",
              "avoidance_extended", "rotor_height_share", "flight_height_distribution", "density_km2")
_DEMOGRAPHY_KEYS = ("adult_survival", "juvenile_survival", "immature_survival", "age_first_breeding", "productivity",
                    "breeding_propensity", "initial_population", "carrying_capacity", "theta")
_POPULATION_KEYS = ("population_cv", "recovery_factor", "observed_growth_rate")


def fhd_from_bands(edges, share) -> np.ndarray:
    """Share of flights per 1-m band from 0 m, spreading each band's share evenly over its metres."""
    edges = np.asarray(edges, int)
    share = np.asarray(share, float)
    if edges.size != share.size + 1 or np.any(np.diff(edges) <= 0) or edges[0] != 0:
        raise ConfigError("flight_height_bands_m: expected edges from 0 m, increasing, one more than shares")
    return np.repeat(share / np.diff(edges), np.diff(edges))


@dataclass(frozen=True, eq=False)
class SpeciesEntry:
    """One species: Band parameters, demography, PBR inputs and the provenance of every value."""

    name: str
    common_name: str
    values: Mapping[str, Any]
    provenance: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def band(self, **extra) -> SpeciesParams:
        """Band-model parameters (``extra`` adds e.g. ``density_km2``)."""
        m = {k: v for k, v in self.values.items() if k in _BAND_KEYS}
        m.update(extra)
        return SpeciesParams.from_mapping(m, name=self.name)

    def demography(self) -> Demography:
        return Demography.from_mapping({k: v for k, v in self.values.items() if k in _DEMOGRAPHY_KEYS})

    def scalar(self, key: str, default: float | None = None) -> float | None:
        v = self.values.get(key)
        if v is None:
            return default
        return float(v.mean) if isinstance(v, Dist) else float(v)

    def override(self, overrides: Mapping[str, Any], *, origin: str = "scenario file") -> "SpeciesEntry":
        """A copy with ``overrides`` (vocabulary keys) replacing the table values."""
        allowed = set(_BAND_KEYS) | set(_DEMOGRAPHY_KEYS) | set(_POPULATION_KEYS)
        values, prov = dict(self.values), dict(self.provenance)
        for key, raw in overrides.items():
            if key not in allowed:
                raise ConfigError(f"species.{self.name!r}.{key}: unknown parameter; expected one of "
                                  f"{', '.join(sorted(allowed))}")
            values[key] = _parse_value(key, raw, f"species.{self.name}.{key}")
            prov[key] = {"source": origin, "proxy": "", "note": "override"}
        entry = SpeciesEntry(self.name, self.common_name, values, prov)
        try:  # validate now, with the species in the message
            entry.band()
            entry.demography()
        except ConfigError as exc:
            raise ConfigError(f"species.{self.name!r}.{exc.detail}") from None
        return entry

    def provenance_table(self) -> pd.DataFrame:
        """One row per parameter: value, source, proxy (empty = direct estimate), note."""
        rows = []
        for key, value in self.values.items():
            p = self.provenance.get(key, {})
            shown = value.describe() if isinstance(value, Dist) else str(value)
            rows.append({S.SPECIES: self.name, S.PARAMETER: key, S.PARAMETER_VALUE: shown,
                         S.PARAMETER_SOURCE: p.get("source", ""), S.PARAMETER_PROXY: p.get("proxy", ""),
                         S.PARAMETER_NOTE: p.get("note", "")})
        return pd.DataFrame(rows)


def _parse_value(key: str, raw: Any, where: str) -> Any:
    if key == "flight":
        return str(raw["value"] if isinstance(raw, Mapping) else raw)
    if key in ("age_first_breeding",):
        v = raw["mean"] if isinstance(raw, Mapping) else raw
        if isinstance(v, bool) or int(v) != v:
            raise ConfigError(f"{where} = {v!r}: expected a whole number of years")
        return int(v)
    if key == "flight_height_distribution":
        arr = np.atleast_2d(np.asarray(raw, float))
        return Bootstrap(arr)
    if key == "density_km2":
        return raw
    if isinstance(raw, Mapping):
        raw = {k: v for k, v in raw.items() if k not in _META}
    kind = "beta" if key in ("nocturnal_activity", "avoidance_basic", "avoidance_extended", "rotor_height_share",
                             "adult_survival", "juvenile_survival", "immature_survival") else (
        "gamma" if key == "productivity" else "tnorm")
    d = as_dist(raw, kind=kind, name=where)
    if key in ("initial_population", "population_cv", "recovery_factor", "observed_growth_rate",
               "breeding_propensity", "carrying_capacity", "theta"):
        return float(d.mean)
    return d


@dataclass(frozen=True, eq=False)
class SpeciesTable:
    """The species table: entries by scientific name, power-line priors, version."""

    version: str
    species: Mapping[str, SpeciesEntry]
    power_line: Mapping[str, Dist]
    power_line_provenance: Mapping[str, Mapping[str, str]]

    def __getitem__(self, name: str) -> SpeciesEntry:
        try:
            return self.species[name]
        except KeyError:
            raise ConfigError(f"species {name!r}: unknown; expected one of {', '.join(sorted(self.species))} "
                              "(or give all its parameters in the scenario file)") from None

    def __contains__(self, name: object) -> bool:
        return name in self.species

    def provenance_table(self) -> pd.DataFrame:
        frames = [e.provenance_table() for e in self.species.values()]
        pl = [{S.SPECIES: "(all)", S.PARAMETER: f"power_line.{k}", S.PARAMETER_VALUE: d.describe(),
               S.PARAMETER_SOURCE: self.power_line_provenance[k]["source"],
               S.PARAMETER_PROXY: self.power_line_provenance[k]["proxy"],
               S.PARAMETER_NOTE: self.power_line_provenance[k]["note"]} for k, d in self.power_line.items()]
        return pd.concat(frames + [pd.DataFrame(pl)], ignore_index=True)


def load_species_table(path: str | Path | None = None) -> SpeciesTable:
    """Read the packaged species table (or another file of the same form).

    Returns
    -------
    SpeciesTable
        ``table["Grus monacha"].band()`` gives the Band parameters,
        ``.demography()`` the vital rates, ``.provenance_table()`` the sources.
    """
    if path is None:
        text = resources.files("flyway.analysis.scenario").joinpath("data/species_parameters.toml").read_text("utf-8")
        where = "species_parameters.toml"
    else:
        text = Path(path).read_text("utf-8")
        where = str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=where) from None
    entries = {}
    for name, block in raw.get("species", {}).items():
        values, prov = {}, {}
        flat = {k: v for k, v in block.items() if k not in ("common_name", "demography")}
        flat.update(block.get("demography", {}))
        for key, spec in flat.items():
            meta = {m: str(spec.get(m, "")) for m in _META} if isinstance(spec, Mapping) else {m: "" for m in _META}
            if key == "flight_height_bands_m":
                values["flight_height_distribution"] = Bootstrap(fhd_from_bands(spec["edges"], spec["share"])[None, :])
                prov["flight_height_distribution"] = meta
                continue
            values[key] = _parse_value(key, spec, f"{where}: species.{name}.{key}")
            prov[key] = meta
        entries[name] = SpeciesEntry(name, str(block.get("common_name", name)), values, prov)
    pl, pl_prov = {}, {}
    for key, spec in raw.get("power_line", {}).items():
        pl[key] = as_dist({k: v for k, v in spec.items() if k not in _META}, name=f"power_line.{key}")
        pl_prov[key] = {m: str(spec.get(m, "")) for m in _META}
    log.debug("species table %s: %d species", raw.get("version"), len(entries))
    return SpeciesTable(str(raw.get("version", "")), entries, pl, pl_prov)
