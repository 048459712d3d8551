"""Scenario files (TOML): facilities, species overrides, horizon, replicates, scenarios to compare.

A bad file gets one :class:`~flyway.errors.ConfigError` line naming the file,
the key and what was expected, e.g.
``plan.toml: facility[2].rotor_radius_m = -5.0: expected a positive number``.

Shape of a file (see ``examples/``)::

    title = "..."
    [run]                       # all optional
    horizon_years = 50; replicates = 1000; seed = 1; output_years = [10, 25, 50]
    quasi_extinction = 50; band_option = 1
    [species."Grus monacha"]    # overrides of the packaged species table
    avoidance_basic = { mean = 0.99, sd = 0.003 }
    [[facility]]                # a wind farm ...
    id = "A"; kind = "wind_farm"; turbine_lon_lat = [[lon, lat], ...]   # or footprint = [[lon, lat], ...]
    rotor_radius_m = 60; hub_height_m = 100; max_chord_m = 4; rpm = 12; pitch_deg = 10
    operational_share = [12 values]
    [facility.exposure."Grus monacha"]
    density_km2 = [12 values]   # or birds_passing = { autumn = { mean = 5000, sd = 800, months = [10, 11] } }
    [[facility]]                # ... or a power line
    id = "L"; kind = "power_line"; line = [[lon, lat], ...]; wire_low_m = 12; wire_top_m = 30; marked_share = 0.8
    [facility.exposure."Grus monacha"]
    crossings_day = 20000; crossings_night = 4000; wire_height_share_day = 0.3; wire_height_share_night = 0.5
    [[scenario]]
    name = "A"; facilities = ["A"]
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import shapely

from flyway.errors import ConfigError

from .distributions import Dist, as_dist
from .params import WindFarmParams
from .species import SpeciesTable, load_species_table

__all__ = ["RunSettings", "WindFarmFacility", "PowerLineFacility", "Scenario", "ScenarioConfig", "load_scenario",
           "parse_scenario"]

_RUN_KEYS = {"horizon_years", "replicates", "seed", "output_years", "quasi_extinction", "band_option", "impact_mode"}
_WF_GEOMETRY = {"turbine_lon_lat", "footprint"}
_WF_META = {"id", "kind", "name", "exposure"} | _WF_GEOMETRY
_PL_KEYS = {"id", "kind", "name", "exposure", "line", "wire_low_m", "wire_top_m", "marked_share", "marker_efficacy"}
_WF_EXPOSURE = {"density_km2", "birds_passing"}
_PL_EXPOSURE = {"crossings_day", "crossings_night", "wire_height_share_day", "wire_height_share_night"}


@dataclass(frozen=True)
class RunSettings:
    """Horizon, replicates and output choices of a run."""

    horizon_years: int = 50
    replicates: int = 1000
    seed: int = 1
    output_years: tuple[int, ...] = (10, 25, 50)
    quasi_extinction: float = 50.0
    band_option: int = 1
    impact_mode: str = "number"

    def __post_init__(self) -> None:
        if not 1 <= self.horizon_years <= 500:
            raise ConfigError(f"run.horizon_years = {self.horizon_years!r}: expected a whole number within [1, 500]")
        if self.replicates < 1:
            raise ConfigError(f"run.replicates = {self.replicates!r}: expected a whole number >= 1")
        bad = [y for y in self.output_years if not 1 <= y <= self.horizon_years]
        if bad:
            raise ConfigError(f"run.output_years = {list(self.output_years)!r}: expected years within "
                              f"[1, horizon_years = {self.horizon_years}]")
        if self.band_option not in (1, 2, 3):
            raise ConfigError(f"run.band_option = {self.band_option!r}: expected 1, 2 or 3")
        if self.quasi_extinction < 0:
            raise ConfigError(f"run.quasi_extinction = {self.quasi_extinction!r}: expected individuals >= 0")
        if self.impact_mode not in ("number", "rate"):
            raise ConfigError(f"run.impact_mode = {self.impact_mode!r}: expected 'number' or 'rate'")


@dataclass(frozen=True, eq=False)
class WindFarmFacility:
    """A proposed wind farm: geometry, turbine parameters and typed-in exposure per species."""

    id: str
    name: str
    geometry: shapely.Geometry
    params: WindFarmParams
    exposure: Mapping[str, Mapping[str, Any]]
    kind: str = "wind_farm"


@dataclass(frozen=True, eq=False)
class PowerLineFacility:
    """A proposed power line: LineString (lon/lat), wire band, marking and typed-in crossings per species."""

    id: str
    name: str
    geometry: shapely.Geometry
    wire_low_m: float
    wire_top_m: float
    marked_share: float
    marker_efficacy: Dist
    exposure: Mapping[str, Mapping[str, Any]]
    kind: str = "power_line"

    @property
    def length_km(self) -> float:
        return _length_km(np.asarray(self.geometry.coords))


@dataclass(frozen=True)
class Scenario:
    name: str
    facilities: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class ScenarioConfig:
    """A validated scenario file."""

    title: str
    run: RunSettings
    species: SpeciesTable
    facilities: Mapping[str, WindFarmFacility | PowerLineFacility]
    scenarios: tuple[Scenario, ...]
    source: str = "<dict>"
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def species_names(self) -> list[str]:
        names: list[str] = []
        for fac in self.facilities.values():
            names += [s for s in fac.exposure if s not in names]
        return names


def _km_xy(lonlat: np.ndarray) -> np.ndarray:
    """Local equirectangular projection (km) about the mean latitude — enough for a farm or a line."""
    lat0 = math.radians(float(np.mean(lonlat[:, 1])))
    return np.column_stack([lonlat[:, 0] * 111.32 * math.cos(lat0), lonlat[:, 1] * 110.574])


def _length_km(lonlat: np.ndarray) -> float:
    xy = _km_xy(lonlat)
    return float(np.hypot(*np.diff(xy, axis=0).T).sum())


def _lonlat(value: Any, key: str, *, min_points: int) -> np.ndarray:
    try:
        arr = np.asarray(value, float)
    except (TypeError, ValueError):
        arr = np.empty((0,))
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < min_points:
        raise ConfigError(f"{key}: expected a list of at least {min_points} [lon, lat] pairs")
    if np.any(np.abs(arr[:, 0]) > 180) or np.any(np.abs(arr[:, 1]) > 90) or not np.all(np.isfinite(arr)):
        raise ConfigError(f"{key}: longitude must be within [-180, 180] and latitude within [-90, 90]")
    return arr


def _number(m: Mapping[str, Any], key: str, where: str, *, default=None, lo=None, hi=None, what="a number"):
    if key not in m:
        if default is None:
            raise ConfigError(f"{where}: missing key {key} (expected {what})")
        return default
    v = m[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{where}.{key} = {v!r}: expected {what}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ConfigError(f"{where}.{key} = {v!r}: expected {what}")
    return float(v)


def _wind_farm(i: int, m: Mapping[str, Any], table: SpeciesTable) -> WindFarmFacility:
    where = f"facility[{i}]"
    geom_keys = [k for k in _WF_GEOMETRY if k in m]
    if len(geom_keys) != 1:
        raise ConfigError(f"{where}: expected exactly one of turbine_lon_lat (turbine points) or footprint (polygon)")
    if geom_keys[0] == "turbine_lon_lat":
        pts = _lonlat(m["turbine_lon_lat"], f"{where}.turbine_lon_lat", min_points=1)
        geometry = shapely.multipoints(pts)
        turbines = m.get("turbines", len(pts))
        if turbines != len(pts):
            raise ConfigError(f"{where}.turbines = {turbines!r}: expected {len(pts)} (one per point of turbine_lon_lat)")
    else:
        ring = _lonlat(m["footprint"], f"{where}.footprint", min_points=3)
        geometry = shapely.Polygon(ring)
        if not geometry.is_valid or geometry.area == 0:
            raise ConfigError(f"{where}.footprint: expected a valid polygon ring (no self-intersection)")
        if "turbines" not in m:
            raise ConfigError(f"{where}: missing key turbines (a footprint needs the number of turbines)")
        turbines = m["turbines"]
    hull = np.asarray(shapely.minimum_rotated_rectangle(geometry).exterior.coords) if len(
        shapely.get_coordinates(geometry)) > 2 else shapely.get_coordinates(geometry)
    xy = _km_xy(hull) if len(hull) > 1 else np.zeros((1, 2))
    extent = float(np.hypot(*np.diff(xy, axis=0).T).max()) if len(xy) > 1 else 0.0
    params = {k: v for k, v in m.items() if k not in _WF_META}
    params["turbines"] = turbines
    params.setdefault("latitude", float(geometry.centroid.y))
    # width across the array: the longest side of the turbines' minimum rotated rectangle (at least one rotor)
    params.setdefault("width_km", max(extent, 0.001 * 2 * float(as_dist(m.get("rotor_radius_m", 1.0)).mean)))
    try:
        wf = WindFarmParams.from_mapping(params)
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc.detail}" if not exc.detail.startswith("wind_farm") else
                          exc.detail.replace("wind_farm", where, 1)) from None
    exposure = _exposure(where, m.get("exposure", {}), table, _WF_EXPOSURE)
    return WindFarmFacility(str(m["id"]), str(m.get("name", m["id"])), geometry, wf, exposure)


def _power_line(i: int, m: Mapping[str, Any], table: SpeciesTable) -> PowerLineFacility:
    where = f"facility[{i}]"
    unknown = sorted(set(m) - _PL_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(sorted(_PL_KEYS))}")
    if "line" not in m:
        raise ConfigError(f"{where}: missing key line (expected a list of [lon, lat] pairs)")
    line = shapely.LineString(_lonlat(m["line"], f"{where}.line", min_points=2))
    low = _number(m, "wire_low_m", where, lo=0, what="a height in metres >= 0")
    top = _number(m, "wire_top_m", where, lo=0, what="a height in metres >= 0")
    if top < low:
        raise ConfigError(f"{where}.wire_top_m = {top!r}: expected at least wire_low_m = {low!r}")
    marked = _number(m, "marked_share", where, default=0.0, lo=0, hi=1, what="a share within [0, 1]")
    eff = (as_dist(m["marker_efficacy"], kind="beta", name=f"{where}.marker_efficacy") if "marker_efficacy" in m
           else table.power_line["marker_efficacy"])
    if not 0 <= eff.mean <= 1:
        raise ConfigError(f"{where}.marker_efficacy = {eff.mean!r}: expected a share within [0, 1]")
    exposure = _exposure(where, m.get("exposure", {}), table, _PL_EXPOSURE)
    return PowerLineFacility(str(m["id"]), str(m.get("name", m["id"])), line, low, top, marked, eff, exposure)


def _exposure(where: str, block: Any, table: SpeciesTable, allowed: set[str]) -> dict[str, dict[str, Any]]:
    if not isinstance(block, Mapping):
        raise ConfigError(f"{where}.exposure: expected a table per species, e.g. [facility.exposure.\"Grus monacha\"]")
    # no block: exposure comes from the tracks (flyway scenario --store); the run says so when there are none
    out = {}
    for species, spec in block.items():
        if species not in table:
            raise ConfigError(f"{where}.exposure.{species!r}: unknown species; expected one of "
                              f"{', '.join(sorted(table.species))}")
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}.exposure.{species!r}: expected a table with {' or '.join(sorted(allowed))}")
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise ConfigError(f"{where}.exposure.{species!r}.{unknown[0]}: unknown key; expected {', '.join(sorted(allowed))}")
        if allowed is _WF_EXPOSURE and len(set(spec) & allowed) != 1:
            raise ConfigError(f"{where}.exposure.{species!r}: expected exactly one of density_km2 or birds_passing")
        if allowed is _PL_EXPOSURE:
            for k in ("crossings_day", "crossings_night"):
                if k not in spec:
                    raise ConfigError(f"{where}.exposure.{species!r}: missing key {k} (crossings per year)")
                as_dist(spec[k], name=f"{where}.exposure.{species}.{k}")
            for k in ("wire_height_share_day", "wire_height_share_night"):
                d = as_dist(spec.get(k, 1.0), kind="beta", name=f"{where}.exposure.{species}.{k}")
                if not 0 <= d.mean <= 1:
                    raise ConfigError(f"{where}.exposure.{species!r}.{k} = {d.mean!r}: expected a share within [0, 1]")
        if "density_km2" in spec:
            try:
                table[species].band(density_km2=spec["density_km2"])
            except ConfigError as exc:
                raise ConfigError(f"{where}.exposure.{species!r}.{exc.detail}") from None
        out[species] = dict(spec)
    return out


def parse_scenario(raw: Mapping[str, Any], *, source: str = "<dict>", table: SpeciesTable | None = None) -> ScenarioConfig:
    """Validate a scenario mapping (the parsed TOML) into a :class:`ScenarioConfig`."""
    try:
        return _parse(raw, table or load_species_table(), source)
    except ConfigError as exc:
        if exc.file is None:
            raise ConfigError(exc.detail, file=source) from None
        raise


def _parse(raw: Mapping[str, Any], table: SpeciesTable, source: str) -> ScenarioConfig:
    unknown = sorted(set(raw) - {"title", "run", "species", "facility", "scenario"})
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown top-level key; expected title, run, species, facility, scenario")
    run_raw = raw.get("run", {})
    bad = sorted(set(run_raw) - _RUN_KEYS)
    if bad:
        raise ConfigError(f"run.{bad[0]}: unknown key; expected some of {', '.join(sorted(_RUN_KEYS))}")
    for k in ("horizon_years", "replicates", "seed", "band_option"):
        if k in run_raw and (isinstance(run_raw[k], bool) or not isinstance(run_raw[k], int)):
            raise ConfigError(f"run.{k} = {run_raw[k]!r}: expected a whole number")
    run = RunSettings(**{k: (tuple(v) if k == "output_years" else v) for k, v in run_raw.items()})
    species_overrides = raw.get("species", {})
    entries = dict(table.species)
    for name, over in species_overrides.items():
        if name not in table:
            raise ConfigError(f"species.{name!r}: unknown species; expected one of {', '.join(sorted(table.species))}")
        entries[name] = table[name].override(over, origin=f"{source} [species.{name!r}]")
    table = type(table)(table.version, entries, table.power_line, table.power_line_provenance)
    facs: dict[str, WindFarmFacility | PowerLineFacility] = {}
    fac_list = raw.get("facility", [])
    if not isinstance(fac_list, list) or not fac_list:
        raise ConfigError("facility: expected at least one [[facility]] table")
    for i, m in enumerate(fac_list, start=1):
        for k in ("id", "kind"):
            if k not in m:
                raise ConfigError(f"facility[{i}]: missing key {k}" + (" (expected 'wind_farm' or 'power_line')" if k == "kind" else ""))
        if str(m["id"]) in facs:
            raise ConfigError(f"facility[{i}].id = {m['id']!r}: expected a unique id (already used)")
        if m["kind"] == "wind_farm":
            facs[str(m["id"])] = _wind_farm(i, m, table)
        elif m["kind"] == "power_line":
            facs[str(m["id"])] = _power_line(i, m, table)
        else:
            raise ConfigError(f"facility[{i}].kind = {m['kind']!r}: expected 'wind_farm' or 'power_line'")
    scen_list = raw.get("scenario", [])
    if not isinstance(scen_list, list) or not scen_list:
        raise ConfigError("scenario: expected at least one [[scenario]] table (the baseline is implicit)")
    scenarios, seen = [], set()
    for i, s in enumerate(scen_list, start=1):
        if "name" not in s or "facilities" not in s:
            raise ConfigError(f"scenario[{i}]: missing key {'name' if 'name' not in s else 'facilities'}")
        if s["name"] in seen or s["name"] == "baseline":
            raise ConfigError(f"scenario[{i}].name = {s['name']!r}: expected a unique name other than 'baseline'")
        seen.add(s["name"])
        missing = [f for f in s["facilities"] if str(f) not in facs]
        if missing:
            raise ConfigError(f"scenario[{i}].facilities: {missing[0]!r} is not a facility id; expected some of "
                              f"{', '.join(facs)}")
        scenarios.append(Scenario(str(s["name"]), tuple(str(f) for f in s["facilities"])))
    return ScenarioConfig(str(raw.get("title", "")), run, table, facs, tuple(scenarios), source, raw)


def load_scenario(path: str | Path, *, table: SpeciesTable | None = None) -> ScenarioConfig:
    """Read and validate a scenario TOML file.

    Raises
    ------
    ConfigError
        One line naming the file, the key and what was expected.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=str(path)) from None
    return parse_scenario(raw, source=str(path), table=table)
