"""Synthetic flyway: GPS fixes of the flagship species as a Movebank export, plus ground truth.

``simulate_flyway`` plants birds of Black-faced Spoonbill (*Platalea minor*),
Hooded Crane (*Grus monacha*) and White-naped Crane (*Antigone vipio*) on their
real breeding, stopover and wintering areas (``flyway/data/flagship_sites.csv``)
and lets them migrate with species-typical dates, speeds and stopover lengths
(the cited table in :mod:`flyway._simroutes`). The tags sample every 1-4 h with
GPS error, and the data carry the imperfections real studies have: silent gaps,
exact duplicate rows, speed outliers (some marked by Movebank), fixes with too
few satellites, and fixes logged before the tag was put on the bird or after it
came off. Every imperfection and every stationary period is recorded, so tests
of ingest, QC and stop detection can count what they should find.

The same seed gives the same bytes; the fixes of all birds are generated with
array operations (see :mod:`flyway._simfixes`), so millions of fixes take
seconds. Planted errors and truth tables are in :mod:`flyway._simtruth`, the
Movebank tables and their CSV writer in :mod:`flyway._simwrite`.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from flyway import _simfixes as F
from flyway import _simtruth as T
from flyway import schema as S
from flyway._simroutes import PROFILES, SITE, SPECIES_NAMES, choose_route, load_sites, sites_by_species
from flyway._simschedule import ScheduleBuilder, build_schedule
from flyway._simwrite import IMMATURE_SUMMERING, movebank_fixes, reference_table, utc_ms, write_csv
from flyway.errors import ConfigError

__all__ = ["DEFAULT_SEED", "SimParams", "Simulation", "simulate_flyway", "write_simulation", "load_sites"]

log = logging.getLogger(__name__)

DEFAULT_SEED = 0
LIFE_STAGES = ("adult", "immature", "juvenile")  # Movebank animal-life-stage values used
SEXES = ("m", "f")
EVENT_ID_BASE = 30_000_000_000  # Movebank-like 11-digit event ids


@dataclass(frozen=True)
class SimParams:
    """Parameters of a simulation, validated on construction.

    Raises :class:`~flyway.errors.ConfigError` naming the parameter, the value
    given and what is allowed.
    """

    n_individuals: int = 30
    days: float = 365.0
    seed: int = DEFAULT_SEED
    start: str = "2024-01-01"  # UTC
    species: tuple[str, ...] = SPECIES_NAMES
    interval_hours: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0)  # duty cycle, one per tag
    gaps_per_year: float = 3.0  # tag silent (no GSM / low battery): Poisson mean per bird-year
    gap_days: tuple[float, float] = (1.0, 5.0)
    duplicate_rate: float = 0.002  # share of fixes written twice (exact duplicate rows)
    outlier_rate: float = 0.0005  # share of fixes displaced into speed outliers
    outlier_marked_share: float = 0.5  # outliers marked in Movebank (import- or manually-marked)
    low_satellite_rate: float = 0.001  # fixes with 3 satellites and hdop 6-20
    early_fix_share: float = 0.1  # tags logging before deploy-on (switched on before attachment)
    late_fix_share: float = 0.1  # tags logging after deploy-off (removed, still on)
    life_stage_shares: tuple[float, float, float] = (0.6, 0.3, 0.1)  # adult, immature, juvenile
    study_name: str = "flyway simulated flyway: flagship species of North-East Asia"

    def __post_init__(self) -> None:
        def bad(name: str, allowed: str) -> ConfigError:
            return ConfigError(f"simulate: {name} = {getattr(self, name)!r}; expected {allowed}")

        if isinstance(self.n_individuals, bool) or not isinstance(self.n_individuals, (int, np.integer)) \
                or not 1 <= self.n_individuals <= 1_000_000:
            raise bad("n_individuals", "an integer in [1, 1000000]")
        if not 1 <= self.days <= 3660:
            raise bad("days", "a number of days in [1, 3660]")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise bad("seed", "a non-negative integer")
        try:
            pd.Timestamp(self.start)
        except (ValueError, TypeError) as exc:
            raise bad("start", "a date such as 2024-01-01") from exc
        if not self.species or any(s not in PROFILES for s in self.species):
            raise bad("species", f"a non-empty selection of {', '.join(SPECIES_NAMES)}")
        if not self.interval_hours or any(not 0.25 <= h <= 24 for h in self.interval_hours):
            raise bad("interval_hours", "fix intervals in [0.25, 24] h")
        lo, hi = self.gap_days
        if not 0 < lo <= hi <= 60:
            raise bad("gap_days", "a range 0 < low <= high <= 60 days")
        if not 0 <= self.gaps_per_year <= 50:
            raise bad("gaps_per_year", "a rate in [0, 50] per bird-year")
        for name in ("duplicate_rate", "outlier_rate", "low_satellite_rate"):
            if not 0 <= getattr(self, name) <= 0.05:
                raise bad(name, "a share of fixes in [0, 0.05]")
        for name in ("outlier_marked_share", "early_fix_share", "late_fix_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise bad(name, "a share in [0, 1]")
        if len(self.life_stage_shares) != 3 or min(self.life_stage_shares) < 0 \
                or abs(sum(self.life_stage_shares) - 1) > 1e-9:
            raise bad("life_stage_shares", "three shares (adult, immature, juvenile) summing to 1")

    @property
    def t_start(self) -> int:
        """Start of the study in epoch seconds (UTC)."""
        ts = pd.Timestamp(self.start)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return int(ts.value // 1_000_000_000)

    @property
    def t_end(self) -> int:
        """End of the study (exclusive) in epoch seconds (UTC)."""
        return self.t_start + int(round(self.days * 86_400))


@dataclass(frozen=True, eq=False)
class Simulation:
    """A simulated study and its ground truth.

    Attributes
    ----------
    fixes : pandas.DataFrame
        Event data with Movebank attribute names, as in a Movebank CSV export.
    truth : pandas.DataFrame
        One row per planted stationary period: ``individual_id, species, site,
        kind, start_time, end_time, lon, lat, immature_summering, n_fixes``.
        Start and end are the first and last fix inside the period that is not a
        planted imperfection; ``n_fixes`` counts those fixes (at least 2).
        ``lon``/``lat`` is the bird's roost, within 5 km of the published centre
        of ``site`` (a row of :func:`load_sites`). Overnight roosts on migration
        (under a day) are not planted stops.
    reference : pandas.DataFrame
        Movebank reference (deployment) data, one row per tag deployment.
    planted : dict
        Counts of everything planted (rows, gaps, duplicates, outliers ...).
    events : pandas.DataFrame
        The planted imperfect rows: ``event_id, individual_id, timestamp, issue``.
    gaps : pandas.DataFrame
        The silent periods: ``individual_id, start_time, end_time``.
    params : SimParams
    """

    fixes: pd.DataFrame
    truth: pd.DataFrame
    reference: pd.DataFrame
    planted: dict
    events: pd.DataFrame
    gaps: pd.DataFrame
    params: SimParams = field(repr=False)


def simulate_flyway(n_individuals: int = 30, days: float = 365.0, seed: int = DEFAULT_SEED,
                    start: str = "2024-01-01", species: list[str] | tuple[str, ...] | None = None,
                    **options) -> Simulation:
    """Simulate GPS-tagged birds of the flagship species moving along their flyway.

    Parameters
    ----------
    n_individuals : int
        Tagged birds; species are mixed as evenly as possible.
    days : float
        Length of the study in days from ``start``.
    seed : int
        Random seed; the same seed gives the same data, byte for byte.
    start : str
        First day of the study (UTC).
    species : list of str, optional
        Scientific names to simulate (default: all three flagship species).
    **options
        Any other field of :class:`SimParams` (rates of imperfections, duty cycles ...).

    Returns
    -------
    Simulation

    Examples
    --------
    >>> sim = simulate_flyway(n_individuals=3, days=30, seed=1)
    >>> sorted(sim.fixes["individual-taxon-canonical-name"].unique())[:1]
    ['Antigone vipio']
    """
    p = SimParams(n_individuals=n_individuals, days=days, seed=seed, start=start,
                  species=tuple(species) if species else SPECIES_NAMES, **options)
    tic = time.perf_counter()
    rng = np.random.default_rng(p.seed)
    sites = load_sites()
    birds = _plant_birds(p, sites, rng)
    seg = birds.schedule.arrays()
    tic_sched = time.perf_counter()

    bird, t = F.fix_times(birds.interval_s, p.t_start, p.t_end, rng)
    base = float(seg["t0"].min())
    span = float(max(seg["t1"].max(), p.t_end) - base + 86_400)
    first, last = T.bird_bounds(bird, p.n_individuals)
    gap_bird, gap_start, gap_end = F.gap_windows(t[first], t[np.maximum(last - 1, 0)], p.gaps_per_year,
                                                 p.gap_days, rng)
    silent = F.in_windows(bird, t - base, gap_bird, gap_start - base, gap_end - base, span)
    bird, t = bird[~silent], t[~silent]
    s = F.locate(seg, bird, t, span, base)

    imp = T.plant_imperfections(p, bird, t, birds.interval_s, rng)
    low_sat = np.zeros(len(t), bool)
    low_sat[imp.low_sat] = True
    track = F.observed_positions(seg, s, t, low_sat, rng)
    track = F.displace_outliers(track, imp.outliers, birds.interval_s[bird[imp.outliers]], rng)
    track = F.place_at_station(track, np.concatenate([imp.early, imp.late]),
                               np.concatenate([imp.early_anchor, imp.late_anchor]), rng)
    tic_fix = time.perf_counter()

    ids = birds.ids
    species = np.array(p.species)[birds.species_of]
    site_names = sites[SITE].to_numpy()
    stops = birds.schedule.stops
    event_id = EVENT_ID_BASE + np.arange(len(t), dtype=np.int64)
    fixes = movebank_fixes(p, track, bird, t, event_id, birds.species_of, ids, imp.import_marked,
                           imp.manually_marked, imp.duplicates)
    truth = T.truth_stops(stops, seg["stop"][s], t, imp.clean(len(t)), site_names, ids, species)
    deploy_on, deploy_off = T.deployments(bird, t, p.n_individuals, imp)
    tagged_at = T.study_sites(stops, seg["stop"][s], bird, p.n_individuals, site_names,
                              site_names[[r.wintering for r in birds.routes]])
    reference = reference_table(ids, species, LIFE_STAGES, birds.stage_of, SEXES, birds.sex_of,
                                deploy_on, deploy_off, tagged_at)
    gaps = pd.DataFrame({S.INDIVIDUAL_ID: ids[gap_bird],
                         S.START_TIME: utc_ms(gap_start), S.END_TIME: utc_ms(gap_end)})
    planted = {
        "rows": int(len(fixes)), "fixes": int(len(t)), "individuals": p.n_individuals,
        "truth_stops": int(len(truth)), "immature_summering_stops": int(truth[IMMATURE_SUMMERING].sum()),
        "gaps": int(len(gap_bird)), "gap_fixes_removed": int(silent.sum()),
        "duplicate_rows": int(len(imp.duplicates)), "speed_outliers": int(len(imp.outliers)),
        "import_marked_outliers": int(len(imp.import_marked)),
        "manually_marked_outliers": int(len(imp.manually_marked)),
        "low_satellite_fixes": int(len(imp.low_sat)),
        "fixes_before_deploy_on": int(len(imp.early)), "fixes_after_deploy_off": int(len(imp.late)),
        "individuals_with_fixes_before_deploy_on": int(len(np.unique(bird[imp.early]))),
        "individuals_with_fixes_after_deploy_off": int(len(np.unique(bird[imp.late]))),
    }
    log.info("simulated %d fixes of %d birds: schedules %.2f s, fixes %.2f s, tables %.2f s",
             len(t), p.n_individuals, tic_sched - tic, tic_fix - tic_sched, time.perf_counter() - tic_fix)
    return Simulation(fixes, truth, reference, planted, T.planted_rows(event_id, bird, t, ids, imp), gaps, p)


@dataclass(frozen=True)
class _Birds:
    """Who was tagged: species, life stage, sex, duty cycle, route and schedule of each bird."""

    species_of: np.ndarray  # index into SimParams.species
    stage_of: np.ndarray  # index into LIFE_STAGES
    sex_of: np.ndarray  # index into SEXES
    interval_s: np.ndarray  # fix interval of the tag
    ids: np.ndarray  # individual-local-identifier
    routes: list
    schedule: ScheduleBuilder


def _plant_birds(p: SimParams, sites: pd.DataFrame, rng: np.random.Generator) -> _Birds:
    """Draw the tagged birds and build their schedules (a loop over birds, not fixes)."""
    n = p.n_individuals
    site_lon, site_lat = sites[S.LON].to_numpy(float), sites[S.LAT].to_numpy(float)
    by_species = sites_by_species(sites)
    species_of = rng.permutation(np.resize(np.arange(len(p.species)), n))  # as even a mix as n allows
    stage_of = rng.choice(len(LIFE_STAGES), size=n, p=p.life_stage_shares)
    sex_of = rng.integers(0, len(SEXES), size=n)
    interval_s = np.rint(rng.choice(np.asarray(p.interval_hours, float), size=n) * 3600).astype(np.int64)
    schedule = ScheduleBuilder()
    routes = []
    for i in range(n):
        prof = PROFILES[p.species[species_of[i]]]
        summering = LIFE_STAGES[stage_of[i]] == "immature" and rng.uniform() < prof.immature_summering_share
        routes.append(choose_route(by_species[prof.species], site_lon, site_lat, summering, rng))
        build_schedule(schedule, i, prof, routes[-1], site_lon, site_lat, p.t_start, p.t_end, rng)
    codes = np.array([PROFILES[name].code for name in p.species])[species_of]
    ids = np.array([f"{c}-{i + 1:04d}" for i, c in enumerate(codes)])
    return _Birds(species_of, stage_of, sex_of, interval_s, ids, routes, schedule)


FILE_FIXES, FILE_REFERENCE, FILE_TRUTH = "flyway_sim.csv", "reference.csv", "truth_stops.csv"
FILE_EVENTS, FILE_GAPS, FILE_PLANTED = "truth_events.csv", "truth_gaps.csv", "truth_planted.json"


def write_simulation(out_dir: str | Path, sim: Simulation | None = None, *, compress: bool = False,
                     **kwargs) -> dict[str, Path]:
    """Write a simulation as a Movebank study plus its ground truth.

    Parameters
    ----------
    out_dir : str or Path
        Folder to write into (created if missing).
    sim : Simulation, optional
        What to write; default: ``simulate_flyway(**kwargs)``.
    compress : bool
        Gzip the event data (``flyway_sim.csv.gz``).
    **kwargs
        Passed to :func:`simulate_flyway` when ``sim`` is None
        (``n_individuals``, ``days``, ``seed``, ``start`` ...).

    Returns
    -------
    dict of str to Path
        ``fixes`` (Movebank event CSV), ``reference`` (Movebank reference
        data), ``truth`` (planted stops), ``events`` (planted imperfect rows),
        ``gaps`` (silent periods) and ``planted`` (JSON: counts and parameters).

    Examples
    --------
    >>> import tempfile
    >>> paths = write_simulation(tempfile.mkdtemp(), n_individuals=2, days=10, seed=3)
    >>> sorted(paths)
    ['events', 'fixes', 'gaps', 'planted', 'reference', 'truth']
    """
    if sim is None:
        sim = simulate_flyway(**kwargs)
    elif kwargs:
        raise ConfigError(f"write_simulation: got both sim and simulation options {sorted(kwargs)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tic = time.perf_counter()
    paths = {
        "fixes": write_csv(sim.fixes, out / (FILE_FIXES + (".gz" if compress else "")), compress),
        "reference": write_csv(sim.reference, out / FILE_REFERENCE),
        "truth": write_csv(sim.truth, out / FILE_TRUTH),
        "events": write_csv(sim.events, out / FILE_EVENTS),
        "gaps": write_csv(sim.gaps, out / FILE_GAPS),
    }
    meta = {"planted": sim.planted, "params": {k: v for k, v in vars(sim.params).items()}}
    planted_path = out / FILE_PLANTED
    tmp = planted_path.with_name(planted_path.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True, default=list) + "\n", encoding="utf-8")
    os.replace(tmp, planted_path)
    paths["planted"] = planted_path
    log.info("wrote %d rows to %s in %.2f s", len(sim.fixes), paths["fixes"], time.perf_counter() - tic)
    return paths
