"""Routes and annual schedules of simulated birds (the biology of :mod:`flyway.simulate`).

One row per flagship species in :data:`PROFILES` holds every biological number
the simulator uses, each with its source: the row of
``shared/data/species/flagship_species_parameters.csv`` it comes from (quoted
as ``species / parameter``), or the reasoning where that file has no value.

A *schedule* is a bird's movement as a sorted list of segments, each either
stationary (at a stop centre) or a flight along a great circle. The fix
generator in :mod:`flyway._simfixes` samples positions from these segments;
nothing here loops over fixes.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd

from flyway import schema as S
from flyway.errors import ConfigError
from flyway.geo import EARTH_RADIUS_M, haversine_m  # noqa: F401  (re-exported to the simulator modules)

DAY_S = 86_400.0

# Columns of the packaged sites table that have no schema constant (truth-only).
SITE = "site"
ROLE = "role"

ROLE_BREEDING, ROLE_STOPOVER, ROLE_WINTERING = "breeding", "stopover", "wintering"


@dataclass(frozen=True)
class SpeciesProfile:
    """Migration parameters of one species (dates as ``MM-DD``, SI units otherwise).

    Raises :class:`~flyway.errors.ConfigError` on an impossible value.
    """

    species: str
    code: str  # short prefix of simulated individual ids
    spring_departure: tuple[str, str]  # leaving the wintering site
    autumn_departure: tuple[str, str]  # leaving the breeding (or summering) site
    stopover_days_spring: tuple[float, float]
    stopover_days_autumn: tuple[float, float]
    ground_speed_ms: tuple[float, float]  # migratory ground speed
    max_bout_h: float  # longest flight bout of one day before an overnight roost
    departure_hour_local: tuple[float, float]  # local solar time of departures
    home_range_m: tuple[float, float]  # radius of the daytime range at a stop
    flight_altitude_m: tuple[float, float]  # cruising height above the ellipsoid
    immature_summering_share: float  # immatures that summer away from breeding sites

    def __post_init__(self) -> None:
        for name in ("spring_departure", "autumn_departure"):
            for mmdd in getattr(self, name):
                try:
                    pd.Timestamp(f"2001-{mmdd}")
                except ValueError as exc:
                    raise ConfigError(f"{self.species}: {name} = {mmdd!r} is not a MM-DD date") from exc
        for name in ("stopover_days_spring", "stopover_days_autumn", "ground_speed_ms",
                     "departure_hour_local", "home_range_m", "flight_altitude_m"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ConfigError(f"{self.species}: {name} = {(lo, hi)} must be a range 0 < low <= high")
        if self.departure_hour_local[1] >= 24:
            raise ConfigError(f"{self.species}: departure_hour_local must be below 24 h")
        if not 1.0 <= self.max_bout_h <= 24.0:
            raise ConfigError(f"{self.species}: max_bout_h = {self.max_bout_h} must be in [1, 24] h")
        if not 0.0 <= self.immature_summering_share <= 1.0:
            raise ConfigError(f"{self.species}: immature_summering_share must be in [0, 1]")


# --------------------------------------------------------------------------
# The parameter table. "row X / p" = species X, parameter p of
# shared/data/species/flagship_species_parameters.csv.
# --------------------------------------------------------------------------
PROFILES: dict[str, SpeciesProfile] = {
    p.species: p
    for p in (
        SpeciesProfile(
            species="Platalea minor",
            code="BFS",
            # row Platalea minor / spring_departure_wintering: March (03-01..03-31).
            spring_departure=("03-01", "03-31"),
            # row Platalea minor / autumn_departure_breeding: Oct, as late as Nov; the
            # autumn_arrival_wintering row (mid-Sep..Oct) argues for the early half: Oct.
            autumn_departure=("10-01", "10-31"),
            # stopover_duration is UNKNOWN in the file; the one tracked juvenile crossed the
            # E China coast in 7 days (row migration_duration_autumn_example), so stops are short.
            stopover_days_spring=(3.0, 12.0),
            stopover_days_autumn=(3.0, 10.0),
            # No spoonbill speed in the file (only a weak crane proxy); 40-50 km/h for a
            # flapping 1.3 kg ibis, slower than the cranes' 14-17.5 m/s.
            ground_speed_ms=(11.0, 14.0),
            # row Platalea minor / yellow_sea_crossing_duration: 14.1 h non-stop.
            max_bout_h=14.0,
            # row Platalea minor / departure_time_of_day: mostly 05:00-08:00 local.
            departure_hour_local=(5.0, 8.0),
            # Compact on purpose (0.4-0.9 km radius) so a 2 km max-diameter stop detector
            # (DESIGN.md default) finds each stop; real post-fledging ranges are larger
            # (row home_range_postfledging_mcp100: 66 km2).
            home_range_m=(400.0, 900.0),
            flight_altitude_m=(50.0, 600.0),  # flapping coastal flyer: low; no row in the file
            # row Platalea minor / stopover_regions notes: immatures summer along Yellow Sea coasts.
            immature_summering_share=0.7,
        ),
        SpeciesProfile(
            species="Grus monacha",
            code="HC",
            # row Grus monacha / spring_departure_wintering: early Feb to late Mar (02-01..03-31).
            spring_departure=("02-01", "03-31"),
            # No breeding-departure row: autumn_arrival_wintering (10-15..11-15) minus the adults'
            # autumn migration of 54 d (row migration_duration_autumn_adult) gives Aug 22-Sep 22.
            autumn_departure=("08-25", "09-25"),
            # row stopover_share_of_migration_time: 62% of 44 d spring, 86% of 54 d autumn in
            # stopovers (Mi et al. 2018) -> ~27 d and ~46 d over 1-4 stops.
            stopover_days_spring=(5.0, 20.0),
            stopover_days_autumn=(8.0, 28.0),
            # row Grus monacha / flight_speed_ground: 14.0-17.5 m/s (proxy Grus americana).
            ground_speed_ms=(14.0, 17.5),
            max_bout_h=10.0,  # row nocturnal_activity: mainly diurnal migration
            departure_hour_local=(6.0, 9.0),  # after the morning thermals start; diurnal migrant
            home_range_m=(400.0, 900.0),  # see Platalea minor
            # row flight_height_migration_bands (Grus grus proxy): 61% of flocks above 250 m.
            flight_altitude_m=(250.0, 1500.0),
            # row migration_duration_*_subadult: subadults migrate differently and summer away.
            immature_summering_share=0.6,
        ),
        SpeciesProfile(
            species="Antigone vipio",
            code="WNC",
            # row Antigone vipio / spring_departure_wintering: late Feb to mid Mar (02-23..03-21).
            spring_departure=("02-23", "03-21"),
            # No breeding-departure row: autumn_arrival_wintering (10-01..11-30) minus a few weeks
            # of stopovers (stopover_share_of_migration_time up to 0.87, Higuchi et al. 1996).
            autumn_departure=("09-10", "10-10"),
            stopover_days_spring=(5.0, 20.0),  # stopover_duration UNKNOWN: as Grus monacha
            stopover_days_autumn=(7.0, 25.0),
            # row Antigone vipio / flight_speed_ground: 14.0-17.5 m/s (proxy Grus americana).
            ground_speed_ms=(14.0, 17.5),
            max_bout_h=10.0,  # diurnal, as Grus monacha
            departure_hour_local=(6.0, 9.0),
            home_range_m=(400.0, 900.0),  # compact on purpose; row winter_home_range_mcp is 172 km2
            flight_altitude_m=(250.0, 1500.0),  # as Grus monacha
            immature_summering_share=0.6,
        ),
    )
}
SPECIES_NAMES: tuple[str, ...] = tuple(PROFILES)


def load_sites() -> pd.DataFrame:
    """The packaged flagship-sites table (``flyway/data/flagship_sites.csv``).

    Returns
    -------
    pandas.DataFrame
        One row per site and species: ``site, country, lat, lon, species, role,
        source, precision`` (see ``flyway/data/SITES_SOURCE.md``).
    """
    text = resources.files("flyway").joinpath("data", "flagship_sites.csv").read_text("utf-8")
    return pd.read_csv(io.StringIO(text))


@dataclass(frozen=True)
class SpeciesSites:
    """Site indices (rows of the sites table) of one species, by role."""

    breeding: np.ndarray
    stopover: np.ndarray
    wintering: np.ndarray


def sites_by_species(sites: pd.DataFrame) -> dict[str, SpeciesSites]:
    """Group the rows of ``sites`` by species and role (row positions, not labels)."""
    out = {}
    for name in SPECIES_NAMES:
        rows = sites[S.SPECIES].to_numpy() == name
        role = sites[ROLE].to_numpy()
        out[name] = SpeciesSites(*(np.flatnonzero(rows & (role == r))
                                   for r in (ROLE_BREEDING, ROLE_STOPOVER, ROLE_WINTERING)))
        if min(len(out[name].breeding), len(out[name].stopover), len(out[name].wintering)) == 0:
            raise ConfigError(f"sites table: {name} needs at least one breeding, stopover and wintering site")
    return out


# --------------------------------------------------------------------------
# Spherical geodesy (scalars or arrays, degrees in, metres / degrees out)
# --------------------------------------------------------------------------
def to_xyz(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Unit vectors (..., 3) of points given in degrees."""
    lo, la = np.radians(lon), np.radians(lat)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def from_xyz(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude (degrees) of vectors (..., 3); need not be unit length."""
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    return np.degrees(np.arctan2(y, x)), np.degrees(np.arctan2(z, np.hypot(x, y)))


def slerp(a: np.ndarray, b: np.ndarray, frac):
    """Point at fraction ``frac`` of the great circle from unit vector ``a`` to ``b``."""
    omega = np.arccos(np.clip(np.sum(a * b, axis=-1), -1.0, 1.0))[..., None]
    frac = np.asarray(frac, dtype=float)[..., None]
    sin_o = np.sin(omega)
    safe = sin_o > 1e-12
    wa = np.where(safe, np.sin((1 - frac) * omega) / np.where(safe, sin_o, 1.0), 1 - frac)
    wb = np.where(safe, np.sin(frac * omega) / np.where(safe, sin_o, 1.0), frac)
    return wa * a + wb * b


def destination(lon, lat, bearing_deg, dist_m):
    """Point reached from (lon, lat) after ``dist_m`` metres on initial bearing (degrees)."""
    la, lo = np.radians(lat), np.radians(lon)
    th, d = np.radians(bearing_deg), np.asarray(dist_m) / EARTH_RADIUS_M
    la2 = np.arcsin(np.sin(la) * np.cos(d) + np.cos(la) * np.sin(d) * np.cos(th))
    lo2 = lo + np.arctan2(np.sin(th) * np.sin(d) * np.cos(la), np.cos(d) - np.sin(la) * np.sin(la2))
    return (np.degrees(lo2) + 540.0) % 360.0 - 180.0, np.degrees(la2)


def bearing_deg(lon1, lat1, lon2, lat2):
    """Initial great-circle bearing from point 1 to point 2, degrees in [0, 360)."""
    la1, la2 = np.radians(lat1), np.radians(lat2)
    dlo = np.radians(lon2 - lon1)
    y = np.sin(dlo) * np.cos(la2)
    x = np.cos(la1) * np.sin(la2) - np.sin(la1) * np.cos(la2) * np.cos(dlo)
    return np.degrees(np.arctan2(y, x)) % 360.0


# --------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    """The sites of one bird (row positions in the sites table)."""

    wintering: int
    breeding: int  # the summering site for an immature that summers away
    spring_stopovers: tuple[int, ...]
    autumn_stopovers: tuple[int, ...]
    summering: bool  # True: ``breeding`` is a stopover-area site where an immature summers


def _corridor(lon, lat, w: int, b: int, candidates: np.ndarray) -> np.ndarray:
    """Candidates ordered from w to b, keeping those with the smallest detour."""
    direct = haversine_m(lon[w], lat[w], lon[b], lat[b])
    from_w = haversine_m(lon[w], lat[w], lon[candidates], lat[candidates])
    to_b = haversine_m(lon[candidates], lat[candidates], lon[b], lat[b])
    ratio = (from_w + to_b) / max(direct, 1.0)
    for limit in (1.3, 1.6, 2.2, np.inf):
        keep = candidates[(ratio <= limit) & (from_w > 0) & (to_b > 0)]
        if len(keep):
            break
    order = np.argsort(haversine_m(lon[w], lat[w], lon[keep], lat[keep]), kind="stable")
    return keep[order]


def choose_route(sp: SpeciesSites, lon: np.ndarray, lat: np.ndarray, summering: bool,
                 rng: np.random.Generator) -> Route:
    """Pick a wintering site, a breeding site and 1-4 stopovers on the way, per season.

    Stopovers are drawn from the species' stopover sites whose detour between
    wintering and breeding site is smallest (a corridor), visited in order of
    distance from the wintering site. An immature that summers away gets a
    stopover-area site as its summer destination instead of a breeding site.
    """
    w = int(rng.choice(sp.wintering))
    b = int(rng.choice(sp.breeding))
    corridor = _corridor(lon, lat, w, b, sp.stopover)
    if summering:
        b = int(rng.choice(corridor))  # summer part-way, e.g. Yellow Sea coasts for spoonbills
        corridor = _corridor(lon, lat, w, b, sp.stopover[sp.stopover != b]) \
            if len(sp.stopover) > 1 else corridor[:0]

    def pick() -> tuple[int, ...]:
        if not len(corridor):
            return ()
        k = int(rng.integers(1, min(4, len(corridor)) + 1))
        chosen = np.sort(rng.choice(len(corridor), size=k, replace=False))
        return tuple(int(corridor[i]) for i in chosen)

    spring = pick()
    autumn = tuple(reversed(pick()))
    return Route(w, b, spring, autumn, summering)
