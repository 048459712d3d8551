"""The nightly job's TOML configuration (``flyway nightly --config FILE``).

Example (relative paths are relative to the config file)::

    [nightly]
    settle_s = 10              # a file must keep its size this long before it is taken
    reference = "reference.csv"  # Movebank reference data (deployments), optional
    species_config = "species.toml"  # per-species parameter overrides, optional

    [stops]
    method = "flyway"
    max_diameter_m = 2000.0
    min_duration = "24h"

    [sites]
    eps_km = 10.0
    buffer_km = 2.0

    [coverage]
    protected_areas = "wdpa_ne_asia.gpkg"     # enables unprotected_stop alerts

    [exposure]
    infrastructure = ["gppd.csv", "turbines.geojson"]  # enables near_infrastructure alerts

    [maps]
    out = "/srv/flyway/www"    # gap_map.html and report/ refreshed after each run, optional
    self_contained = true      # inline Leaflet: the pages open with no network
    public_report = true       # breeding locations generalised in the report

    [alerts]
    silent_factor = 3.0
    mortality_radius_m = 50
    mortality_h = 24
    unprotected_below = 0.5
    infrastructure_km = 5

    [alerts.mortality_h_by_species]
    "Grus monacha" = 36

    [alerts.email]
    host = "smtp.example.org"
    port = 587
    starttls = true
    sender = "flyway@example.org"
    to = ["tracking-team@example.org"]
    username_env = "FLYWAY_SMTP_USER"
    password_env = "FLYWAY_SMTP_PASSWORD"

    [alerts.webhook]
    url = "https://chat.example.org/hooks/flyway"
    token_env = "FLYWAY_WEBHOOK_TOKEN"
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flyway.alerts import AlertParams
from flyway.errors import ConfigError
from flyway.notify import EmailConfig, WebhookConfig, parse_delivery

_SECTIONS = {
    "nightly": {"settle_s", "reference", "format", "tz", "species_config"},
    "stops": {"method", "max_diameter_m", "min_duration"},
    "sites": {"eps_km", "buffer_km"},
    "coverage": {"protected_areas"},
    "exposure": {"infrastructure"},
    "maps": {"out", "self_contained", "public_report"},
    "alerts": {f.name for f in dataclasses.fields(AlertParams)} | {"email", "webhook"},
}


@dataclass(frozen=True)
class NightlyConfig:
    """Everything a nightly run needs besides the store and inbox; validated on construction."""

    settle_s: float = 10.0
    reference: Path | None = None
    format: str | None = None
    tz: str | None = None
    species_config: Path | None = None
    stop_method: str = "flyway"
    max_diameter_m: float = 2000.0
    min_duration: str = "24h"
    site_eps_km: float = 10.0
    site_buffer_km: float = 2.0
    protected_areas: Path | None = None
    infrastructure: tuple[Path, ...] = ()
    maps_dir: Path | None = None  # [maps] out: gap map + report refreshed after each run
    maps_self_contained: bool = True
    maps_public_report: bool = True
    alerts: AlertParams = field(default_factory=AlertParams)
    email: EmailConfig | None = None
    webhook: WebhookConfig | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.settle_s, (int, float)) or not math.isfinite(self.settle_s) or self.settle_s < 0:
            raise ConfigError(f"nightly.settle_s = {self.settle_s!r}; expected seconds >= 0", file=self.source)
        if self.stop_method not in ("flyway", "movingpandas"):
            raise ConfigError(f"stops.method = {self.stop_method!r}; expected 'flyway' or 'movingpandas'",
                              file=self.source)
        for name in ("max_diameter_m", "site_eps_km", "site_buffer_km"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"{name} = {v!r}; expected a number > 0", file=self.source)
        for name in ("reference", "species_config", "protected_areas"):
            p = getattr(self, name)
            if p is not None and not Path(p).exists():
                raise ConfigError(f"{name} = {str(p)!r}: no such file", file=self.source)
        missing = [str(p) for p in self.infrastructure if not Path(p).exists()]
        if missing:
            raise ConfigError(f"exposure.infrastructure: no such file(s) {', '.join(missing)}", file=self.source)
        object.__setattr__(self, "infrastructure", tuple(Path(p) for p in self.infrastructure))

    def stop_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`flyway.analysis.runner.run_stops`."""
        opts: dict[str, Any] = {"method": self.stop_method, "max_diameter": float(self.max_diameter_m),
                                "min_duration": self.min_duration}
        if self.species_config is not None:
            from flyway.analysis.params import load_species_config

            opts["species_config"] = load_species_config(self.species_config)
        return opts

    def analysis_params(self) -> dict[str, Any]:
        """What the derived tables depend on (a change recomputes every individual)."""
        species = None
        if self.species_config is not None:
            species = hashlib.sha256(Path(self.species_config).read_bytes()).hexdigest()
        return {"stops": [self.stop_method, self.max_diameter_m, self.min_duration], "species_config": species,
                "reference": str(self.reference) if self.reference else None}

    def as_record(self) -> dict[str, Any]:
        """The parameters as they go into a run record (no secrets: only env var names)."""
        out = dataclasses.asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in out.items()}


def load_config(path: str | os.PathLike[str] | None) -> NightlyConfig:
    """Read a nightly TOML file (see the module docstring); ``None`` gives the defaults.

    Raises
    ------
    ConfigError
        Unknown section or key, a bad value, a missing file, or a secret
        written into the file instead of named by an environment variable.
    """
    if path is None:
        return NightlyConfig()
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read nightly config: {exc.strerror}", file=str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=str(path)) from exc
    src = str(path)
    for section, table in raw.items():
        if section not in _SECTIONS:
            raise ConfigError(f"unknown section [{section}]; allowed: {', '.join(sorted(_SECTIONS))}", file=src)
        unknown = sorted(set(table) - _SECTIONS[section])
        if unknown:
            raise ConfigError(f"unknown key(s) {', '.join(unknown)} in [{section}]; allowed: "
                              f"{', '.join(sorted(_SECTIONS[section]))}", file=src)
    base = path.resolve().parent

    def rel(value: Any) -> Path | None:
        return None if value is None else (base / os.path.expanduser(str(value))).resolve()

    night, stops, sites = raw.get("nightly", {}), raw.get("stops", {}), raw.get("sites", {})
    alert_table = dict(raw.get("alerts", {}))
    email, webhook = parse_delivery(alert_table, src)
    alert_kw = {k: v for k, v in alert_table.items() if k not in ("email", "webhook")}
    try:
        alerts = AlertParams(**alert_kw)
    except ConfigError as exc:
        raise ConfigError(exc.detail, file=src) from None
    infra = raw.get("exposure", {}).get("infrastructure", [])
    infra = [infra] if isinstance(infra, str) else list(infra)
    return NightlyConfig(
        settle_s=night.get("settle_s", 10.0), reference=rel(night.get("reference")), format=night.get("format"),
        tz=night.get("tz"), species_config=rel(night.get("species_config")),
        stop_method=stops.get("method", "flyway"), max_diameter_m=stops.get("max_diameter_m", 2000.0),
        min_duration=str(stops.get("min_duration", "24h")), site_eps_km=sites.get("eps_km", 10.0),
        site_buffer_km=sites.get("buffer_km", 2.0), protected_areas=rel(raw.get("coverage", {}).get("protected_areas")),
        infrastructure=tuple(rel(p) for p in infra), maps_dir=rel(raw.get("maps", {}).get("out")),
        maps_self_contained=bool(raw.get("maps", {}).get("self_contained", True)),
        maps_public_report=bool(raw.get("maps", {}).get("public_report", True)),
        alerts=alerts, email=email, webhook=webhook, source=src)
