"""Column mappings: how a source CSV's columns become the fixes schema.

A mapping is a TOML file (``ingest/mappings/*.toml`` ship with flyway; a user
passes their own with ``--format vendor:PATH.toml``). Sections:

``[mapping]``
    ``name``; ``timezone`` (IANA name, e.g. ``"Asia/Shanghai"``; required
    unless the time cells carry a UTC offset); ``timestamp_format``
    (strptime, e.g. ``"%d/%m/%Y %H:%M"``; omit for ISO 8601); ``delimiter``
    (default ``","``); ``decimal`` (``"."`` or ``","``); ``encoding``
    (default ``"utf-8"``); ``movebank_outliers`` (use ``visible`` and the
    ``*-marked-outlier`` columns).
``[columns]``
    fixes column -> source column name, or a list of alternatives. Required:
    ``individual_id``, ``timestamp``, ``lon``, ``lat``.
``[units]``
    ``ground_speed_ms = "km/h"`` (or ``"m/s"``); ``altitude_m = "ft"``.
``[filter]``
    ``column`` and ``keep`` (values of rows that are fixes); other rows go to
    the quarantine as non-location records.
``[constants]``
    values for columns the file lacks (``sensor_type = "gps"``,
    ``species = "Grus monacha"``, ``study = "..."``).
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flyway import schema as S
from flyway.errors import ConfigError, InputError

REQUIRED_FIELDS = (S.INDIVIDUAL_ID, S.TIMESTAMP, S.LON, S.LAT)
MAPPED_FIELDS = (
    S.INDIVIDUAL_ID, S.TAG_ID, S.SPECIES, S.STUDY, S.TIMESTAMP, S.LON, S.LAT, S.ALTITUDE_M,
    S.HDOP, S.SATELLITES, S.GROUND_SPEED_MS, S.SENSOR_TYPE, S.EVENT_ID, S.ARGOS_LC,
)
SPEED_UNITS = {"m/s": 1.0, "km/h": 1 / 3.6, "kn": 0.514444, "mph": 0.44704}
ALTITUDE_UNITS = {"m": 1.0, "ft": 0.3048}
BUILTIN = ("movebank", "plain", "ornitela")

# Movebank outlier attributes (move2 mt_movebank_visible semantics)
VISIBLE = "visible"
OUTLIER_COLUMNS = ("manually-marked-outlier", "algorithm-marked-outlier", "import-marked-outlier")
MARKED_VALID = "manually-marked-valid"

_SEP = re.compile(r"[-._:\s]+")


def normalise_header(name: str) -> str:
    """Compare-key of a header cell: lower case, BOM and separators removed."""
    return _SEP.sub("", name.replace("\ufeff", "").strip().lower())


@dataclass(frozen=True)
class Mapping:
    """A validated column mapping (see module docstring for the TOML keys)."""

    name: str
    columns: dict[str, tuple[str, ...]]
    timezone: str | None = None
    timestamp_format: str | None = None
    delimiter: str = ","
    decimal: str = "."
    encoding: str = "utf-8"
    units: dict[str, str] = field(default_factory=dict)
    filter_column: str | None = None
    filter_keep: tuple[str, ...] = ()
    constants: dict[str, str] = field(default_factory=dict)
    movebank_outliers: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        where = self.source or self.name
        unknown = [k for k in self.columns if k not in MAPPED_FIELDS]
        if unknown:
            raise ConfigError(f"[columns] {', '.join(unknown)}: unknown fixes column(s); "
                              f"expected some of {', '.join(MAPPED_FIELDS)}", file=where)
        missing = [k for k in REQUIRED_FIELDS if k not in self.columns]
        if missing:
            raise ConfigError(f"[columns] must map {', '.join(missing)}", file=where)
        if self.timezone is not None:
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigError(f"timezone = {self.timezone!r} is not an IANA time zone name "
                                  "(e.g. 'UTC', 'Asia/Shanghai')", file=where) from None
        speed = self.units.get(S.GROUND_SPEED_MS, "m/s")
        if speed not in SPEED_UNITS:
            raise ConfigError(f"[units] ground_speed_ms = {speed!r}; expected one of {', '.join(SPEED_UNITS)}",
                              file=where)
        alt = self.units.get(S.ALTITUDE_M, "m")
        if alt not in ALTITUDE_UNITS:
            raise ConfigError(f"[units] altitude_m = {alt!r}; expected one of {', '.join(ALTITUDE_UNITS)}",
                              file=where)
        if self.decimal not in (".", ","):
            raise ConfigError(f"decimal = {self.decimal!r}; expected '.' or ','", file=where)
        if self.decimal == "," and self.delimiter == ",":
            raise ConfigError("decimal = ',' needs another delimiter (e.g. delimiter = ';')", file=where)
        if len(self.delimiter) != 1:
            raise ConfigError(f"delimiter = {self.delimiter!r}; expected one character", file=where)

    @property
    def speed_factor(self) -> float:
        return SPEED_UNITS[self.units.get(S.GROUND_SPEED_MS, "m/s")]

    @property
    def altitude_factor(self) -> float:
        return ALTITUDE_UNITS[self.units.get(S.ALTITUDE_M, "m")]

    def resolve(self, header: list[str], file: str) -> dict[str, int]:
        """Map each fixes column to the index of its source column in ``header``.

        Raises :class:`InputError` listing the required columns not found and
        the names accepted for each.
        """
        keys = {}
        for i, h in enumerate(header):
            keys.setdefault(normalise_header(h), i)
        found: dict[str, int] = {}
        for fld, names in self.columns.items():
            for n in names:
                idx = keys.get(normalise_header(n))
                if idx is not None:
                    found[fld] = idx
                    break
        missing = [f for f in REQUIRED_FIELDS if f not in found and f not in self.constants]
        if missing:
            accepted = "; ".join(f"{f}: {' | '.join(self.columns[f])}" for f in missing)
            raise InputError(
                f"missing required column(s) for the {self.name} format ({accepted}); "
                f"header has: {', '.join(h for h in header[:30])}",
                file=file, line=1,
            )
        return found

    def column_index(self, header: list[str], name: str) -> int | None:
        target = normalise_header(name)
        for i, h in enumerate(header):
            if normalise_header(h) == target:
                return i
        return None


def load_mapping(spec: str | Path) -> Mapping:
    """Load a mapping: a built-in name (``movebank``, ``plain``, ``ornitela``) or a TOML path."""
    text, source = _mapping_text(spec)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML ({exc})", file=source) from exc
    return mapping_from_dict(doc, source)


def _mapping_text(spec: str | Path) -> tuple[str, str]:
    spec_s = str(spec)
    if spec_s in BUILTIN:
        res = resources.files("flyway.ingest").joinpath("mappings", f"{spec_s}.toml")
        return res.read_text(encoding="utf-8"), f"{spec_s}.toml"
    path = Path(spec_s)
    if not path.is_file():
        raise ConfigError(f"no such mapping; expected one of {', '.join(BUILTIN)} or a TOML file path",
                          file=spec_s)
    return path.read_text(encoding="utf-8"), path.name


def mapping_from_dict(doc: dict[str, Any], source: str = "<mapping>") -> Mapping:
    head = doc.get("mapping", {})
    if not isinstance(head, dict):
        raise ConfigError("[mapping] must be a table", file=source)
    cols_raw = doc.get("columns")
    if not isinstance(cols_raw, dict):
        raise ConfigError("[columns] table is required (fixes column -> source column)", file=source)
    columns = {k: tuple([v] if isinstance(v, str) else v) for k, v in cols_raw.items()}
    for k, v in columns.items():
        if not v or not all(isinstance(x, str) for x in v):
            raise ConfigError(f"[columns] {k} must be a column name or a list of names", file=source)
    flt = doc.get("filter", {})
    known_head = {"name", "description", "timezone", "timestamp_format", "delimiter", "decimal",
                  "encoding", "movebank_outliers"}
    extra = set(head) - known_head
    if extra:
        raise ConfigError(f"[mapping] unknown key(s) {', '.join(sorted(extra))}; expected some of "
                          f"{', '.join(sorted(known_head))}", file=source)
    return Mapping(
        name=str(head.get("name", Path(source).stem)),
        columns=columns,
        timezone=head.get("timezone"),
        timestamp_format=head.get("timestamp_format"),
        delimiter=head.get("delimiter", ","),
        decimal=head.get("decimal", "."),
        encoding=head.get("encoding", "utf-8"),
        units=dict(doc.get("units", {})),
        filter_column=flt.get("column"),
        filter_keep=tuple(flt.get("keep", ())),
        constants={k: str(v) for k, v in doc.get("constants", {}).items()},
        movebank_outliers=bool(head.get("movebank_outliers", False)),
        source=source,
    )


def detect_format(header: list[str]) -> str:
    """Guess the built-in mapping of a header: Movebank, Ornitela or plain."""
    keys = {normalise_header(h) for h in header}
    # Any Movebank attribute name picks the Movebank format, so a Movebank export
    # that lacks a required column is rejected naming the Movebank column names.
    if keys & {"locationlong", "locationlat", "individuallocalidentifier"}:
        return "movebank"
    if {"deviceid", "utcdatetime", "latitude", "longitude"} <= keys:
        return "ornitela"
    return "plain"
