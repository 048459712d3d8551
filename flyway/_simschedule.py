"""Annual schedules of simulated birds: stationary periods and flight bouts.

A schedule is a sorted run of segments per bird. A stationary segment keeps the
bird at a stop centre (night roost) and within a daytime range around it; a
flight segment moves it along a great circle at constant ground speed. A leg
longer than one day's flight bout is split by overnight roosts (stationary
segments shorter than a day, which are not planted stops). The loops here are
over years and legs of one bird, never over fixes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from flyway import schema as S
from flyway._simroutes import (
    DAY_S,
    Route,
    SpeciesProfile,
    destination,
    from_xyz,
    haversine_m,
    slerp,
    to_xyz,
)

HOUR_S = 3600.0
MIN_BREEDING_DAYS = 30.0  # a bird stays at least this long at its summer site
ROOST_RANGE_M = 150.0  # daytime range at an overnight roost on migration
STOP_CENTRE_SPREAD_M = 5_000.0  # a bird's roost lies up to this far from the published site centre
GROUND_HEIGHT_M = (20.0, 200.0)  # height above the ellipsoid at stops: lowland wetlands + geoid


@dataclass(frozen=True)
class PlantedStop:
    """One planted stationary period (a row of the truth table before clipping)."""

    bird: int
    site: int  # row of the sites table
    kind: str  # S.KIND_BREEDING | S.KIND_WINTERING | S.KIND_STOPOVER
    immature_summering: bool
    lon: float
    lat: float


@dataclass
class ScheduleBuilder:
    """Collects the segments of all birds in columns (appended bird by bird, in time order)."""

    bird: list[int] = field(default_factory=list)
    t0: list[float] = field(default_factory=list)
    t1: list[float] = field(default_factory=list)
    moving: list[bool] = field(default_factory=list)
    lon0: list[float] = field(default_factory=list)
    lat0: list[float] = field(default_factory=list)
    lon1: list[float] = field(default_factory=list)
    lat1: list[float] = field(default_factory=list)
    speed: list[float] = field(default_factory=list)  # flight: ground speed; stop: 0
    size: list[float] = field(default_factory=list)  # flight: altitude; stop: day-range radius
    ground: list[float] = field(default_factory=list)  # height above ellipsoid of the ground
    stop: list[int] = field(default_factory=list)  # index into ``stops``, -1 = not a planted stop
    stops: list[PlantedStop] = field(default_factory=list)

    def _add(self, bird, t0, t1, moving, a, b, speed, size, ground, stop) -> None:
        self.bird.append(bird)
        self.t0.append(t0)
        self.t1.append(t1)
        self.moving.append(moving)
        self.lon0.append(a[0])
        self.lat0.append(a[1])
        self.lon1.append(b[0])
        self.lat1.append(b[1])
        self.speed.append(speed)
        self.size.append(size)
        self.ground.append(ground)
        self.stop.append(stop)

    def arrays(self) -> dict[str, np.ndarray]:
        """The segments as numpy columns (times in seconds since the Unix epoch)."""
        names = ("bird", "t0", "t1", "moving", "lon0", "lat0", "lon1", "lat1",
                 "speed", "size", "ground", "stop")
        dtypes = (np.int64, float, float, bool, float, float, float, float, float, float, float, np.int64)
        return {n: np.asarray(getattr(self, n), dtype=d) for n, d in zip(names, dtypes)}


def _local_time_after(t_utc: float, lon: float, hour: float) -> float:
    """First instant at or after ``t_utc`` when local solar time at ``lon`` is ``hour``."""
    offset = lon / 15.0 * HOUR_S
    local = t_utc + offset
    cand = np.floor(local / DAY_S) * DAY_S + hour * HOUR_S
    if cand < local:
        cand += DAY_S
    return float(cand - offset)


def _window_date(year: int, window: tuple[str, str], rng: np.random.Generator) -> float:
    """A uniformly drawn UTC midnight (epoch seconds) inside a ``MM-DD`` window of ``year``."""
    lo = pd.Timestamp(f"{year}-{window[0]}", tz="UTC").value / 1e9
    hi = pd.Timestamp(f"{year}-{window[1]}", tz="UTC").value / 1e9
    return lo + np.floor(rng.uniform(0, (hi - lo) / DAY_S + 1)) * DAY_S


class _Bird:
    """Schedule of one bird; appends its segments to a :class:`ScheduleBuilder`."""

    def __init__(self, out: ScheduleBuilder, bird: int, profile: SpeciesProfile, route: Route,
                 site_lon: np.ndarray, site_lat: np.ndarray, rng: np.random.Generator) -> None:
        self.out, self.bird, self.p, self.route, self.rng = out, bird, profile, route, rng
        self.centre: dict[int, tuple[float, float]] = {}
        self.ground: dict[int, float] = {}
        self.stop_of: dict[tuple[int, str], int] = {}
        for s in {route.wintering, route.breeding, *route.spring_stopovers, *route.autumn_stopovers}:
            lo, la = destination(site_lon[s], site_lat[s], rng.uniform(0, 360),
                                 STOP_CENTRE_SPREAD_M * np.sqrt(rng.uniform()))
            self.centre[s] = (float(lo), float(la))
            self.ground[s] = float(rng.uniform(*GROUND_HEIGHT_M))

    def _departure(self, t: float, lon: float) -> float:
        return _local_time_after(t, lon, self.rng.uniform(*self.p.departure_hour_local))

    def stay(self, site: int, kind: str, t0: float, t1: float) -> None:
        """A planted stationary period at ``site`` (a new truth stop per period)."""
        summering = self.route.summering and site == self.route.breeding
        stop = len(self.out.stops)
        c = self.centre[site]
        self.out.stops.append(PlantedStop(self.bird, site, kind, summering, c[0], c[1]))
        radius = self.rng.uniform(*self.p.home_range_m)
        self.out._add(self.bird, t0, t1, False, c, c, 0.0, radius, self.ground[site], stop)

    def fly(self, t: float, a: tuple[float, float], b: tuple[float, float]) -> float:
        """Fly from ``a`` to ``b`` in daily bouts; returns the arrival time."""
        speed = self.rng.uniform(*self.p.ground_speed_ms)
        altitude = self.rng.uniform(*self.p.flight_altitude_m)
        pos = a
        while True:
            dist = float(haversine_m(pos[0], pos[1], b[0], b[1]))
            bout = self.p.max_bout_h * HOUR_S * self.rng.uniform(0.8, 1.0)
            if dist / speed <= bout * 1.15:  # finish the leg rather than roost just short of it
                self.out._add(self.bird, t, t + dist / speed, True, pos, b, speed, altitude, 0.0, -1)
                return t + dist / speed
            lo, la = from_xyz(slerp(to_xyz(*pos), to_xyz(*b), bout * speed / dist))
            roost = (float(lo), float(la))
            self.out._add(self.bird, t, t + bout, True, pos, roost, speed, altitude, 0.0, -1)
            t_next = self._departure(t + bout + 6 * HOUR_S, roost[0])
            self.out._add(self.bird, t + bout, t_next, False, roost, roost, 0.0, ROOST_RANGE_M,
                          self.rng.uniform(*GROUND_HEIGHT_M), -1)
            pos, t = roost, t_next

    def migrate(self, t: float, origin: int, stopovers: tuple[int, ...], target: int,
                stay_days: tuple[float, float], t_end: float) -> float | None:
        """Leave ``origin`` at ``t`` and reach ``target`` via ``stopovers``.

        Returns the arrival time at ``target``, or None once the schedule has
        passed ``t_end``.
        """
        pos = self.centre[origin]
        for s in stopovers:
            t = self.fly(t, pos, self.centre[s])
            t_dep = self._departure(t + self.rng.uniform(*stay_days) * DAY_S, self.centre[s][0])
            self.stay(s, S.KIND_STOPOVER, t, t_dep)
            if t_dep >= t_end:
                return None
            pos, t = self.centre[s], t_dep
        return self.fly(t, pos, self.centre[target])


def build_schedule(out: ScheduleBuilder, bird: int, profile: SpeciesProfile, route: Route,
                   site_lon: np.ndarray, site_lat: np.ndarray, t_start: float, t_end: float,
                   rng: np.random.Generator) -> None:
    """Append the annual cycles of one bird covering ``[t_start, t_end]`` (epoch seconds).

    The bird winters until its spring departure, migrates via its spring
    stopovers to its breeding site (an immature that summers away: to its
    summering site), leaves in autumn via its autumn stopovers and winters again,
    year after year. The first wintering period starts 60 days before 1 January
    of the start year, so a simulation starting in any month finds each bird
    where its annual cycle puts it.
    """
    b = _Bird(out, bird, profile, route, site_lon, site_lat, rng)
    year = pd.Timestamp(t_start, unit="s").year
    winter_start = pd.Timestamp(f"{year}-01-01", tz="UTC").value / 1e9 - 60 * DAY_S
    summer_kind = S.KIND_STOPOVER if route.summering else S.KIND_BREEDING
    while True:
        w = b.centre[route.wintering]
        t_dep = b._departure(_window_date(year, profile.spring_departure, rng), w[0])
        t_dep = max(t_dep, b._departure(winter_start + DAY_S, w[0]))
        b.stay(route.wintering, S.KIND_WINTERING, winter_start, t_dep)
        if t_dep >= t_end:
            return
        arrival = b.migrate(t_dep, route.wintering, route.spring_stopovers, route.breeding,
                            profile.stopover_days_spring, t_end)
        if arrival is None:
            return
        summer = b.centre[route.breeding]
        t_dep = max(b._departure(_window_date(year, profile.autumn_departure, rng), summer[0]),
                    b._departure(arrival + MIN_BREEDING_DAYS * DAY_S, summer[0]))
        b.stay(route.breeding, summer_kind, arrival, t_dep)
        if t_dep >= t_end:
            return
        arrival = b.migrate(t_dep, route.breeding, route.autumn_stopovers, route.wintering,
                            profile.stopover_days_autumn, t_end)
        if arrival is None:
            return
        winter_start, year = arrival, year + 1
