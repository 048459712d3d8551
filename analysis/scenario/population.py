"""Stochastic age-structured (Leslie) projection with matched counterfactuals.

Post-breeding census, age classes ``0 … a`` where ``a`` = age at first
breeding and class ``a`` holds every adult. Each year: survival (binomial)
with the year's survival rates, then births (Poisson) from the adults with
the year's productivity. Arrays are (scenarios, replicates, ages); the
baseline is scenario 0.

Common random numbers for *both* kinds of noise:

* environmental: one draw of every rate per (replicate, year), shared by the
  baseline and every scenario (beta survival, gamma or lognormal productivity);
* demographic: the scenario's binomial survivors and Poisson births are
  *coupled* to the baseline's (thinning): the survivors of a scenario with
  ``n' <= n`` birds and rate ``s' <= s`` are a random subset of the baseline's
  survivors, which has exactly the Bin(n', s') law. With zero impact a scenario
  reproduces the baseline exactly, and without density dependence an impacted
  population never exceeds its baseline in any replicate. When a scenario's
  count or rate is higher (density dependence, a beneficial change) the
  coupling adds independent extra survivors or births, keeping the exact law.

Each scenario has its own random stream (``SeedSequence.spawn``), so adding a
scenario does not change the others.

Collision deaths enter as **rates** ``h`` (competing risk, ``s' = s (1 − h)``,
as eolpop) or as **numbers** per year turned into that year's rate
``h = deaths / N_exposed`` (deaths spread over the exposed age classes in
proportion to their numbers, as nepva's "absolute" impacts).
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from flyway.errors import ConfigError

from .distributions import BetaMoments, Dist, GammaMoments, LogNormalMoments, as_dist

log = logging.getLogger(__name__)

__all__ = ["Demography", "Impact", "leslie_matrix", "dominant_eigenvalue", "stable_age_distribution",
           "project"]


@dataclass(frozen=True, eq=False)
class Demography:
    """Vital rates of one population; the sd of each rate is its year-to-year (environmental) sd.

    ``productivity`` is fledglings per pair of adults per year.
    ``immature_survival`` (ages 1 … a−1) defaults to the adult rate.
    ``carrying_capacity`` switches on density dependence: productivity
    × min(1, (K / N)^theta) (compensatory above K, no effect below).
    """

    adult_survival: BetaMoments
    juvenile_survival: BetaMoments
    age_first_breeding: int
    productivity: Dist
    initial_population: float
    immature_survival: BetaMoments | None = None
    breeding_propensity: float = 1.0
    carrying_capacity: float | None = None
    theta: float = 1.0

    def __post_init__(self) -> None:
        for n in ("adult_survival", "juvenile_survival", "immature_survival"):
            d = getattr(self, n)
            if d is not None and not isinstance(d, BetaMoments):
                raise ConfigError(f"{n}: expected a survival as a beta {{mean, sd}} within [0, 1]")
        if self.immature_survival is None:
            object.__setattr__(self, "immature_survival", self.adult_survival)
        a = self.age_first_breeding
        if isinstance(a, bool) or int(a) != a or not 1 <= a <= 30:
            raise ConfigError(f"age_first_breeding = {a!r}: expected a whole number of years within [1, 30]")
        if not isinstance(self.productivity, (GammaMoments, LogNormalMoments)) and not self.productivity.is_fixed:
            raise ConfigError("productivity: expected a gamma or lognormal {mean, sd} (fledglings per pair)")
        if self.productivity.mean < 0:
            raise ConfigError(f"productivity = {self.productivity.mean!r}: expected >= 0 fledglings per pair")
        if not self.initial_population > 0:
            raise ConfigError(f"initial_population = {self.initial_population!r}: expected > 0 individuals")
        if not 0 < self.breeding_propensity <= 1:
            raise ConfigError(f"breeding_propensity = {self.breeding_propensity!r}: expected a share within (0, 1]")
        if self.carrying_capacity is not None and not self.carrying_capacity > 0:
            raise ConfigError(f"carrying_capacity = {self.carrying_capacity!r}: expected > 0 individuals")

    @classmethod
    def from_mapping(cls, m) -> "Demography":
        """From a dict: survivals as numbers or ``{mean, sd}`` (beta), productivity ``{mean, sd[, dist]}`` (gamma)."""
        if isinstance(m, Demography):
            return m
        for k in ("adult_survival", "juvenile_survival", "age_first_breeding", "productivity", "initial_population"):
            if k not in m:
                raise ConfigError(f"demography: missing key {k}")

        def beta(k):
            d = as_dist(m[k], kind="beta", name=k)
            try:
                return d if isinstance(d, BetaMoments) else BetaMoments(d.mean, 0.0)
            except ConfigError as exc:
                raise ConfigError(f"{k}: {exc.detail}") from None

        prod = as_dist(m["productivity"], kind="gamma", name="productivity")
        return cls(
            adult_survival=beta("adult_survival"), juvenile_survival=beta("juvenile_survival"),
            immature_survival=beta("immature_survival") if m.get("immature_survival") is not None else None,
            age_first_breeding=m["age_first_breeding"], productivity=prod,
            initial_population=float(m["initial_population"]),
            breeding_propensity=float(m.get("breeding_propensity", 1.0)),
            carrying_capacity=None if m.get("carrying_capacity") is None else float(m["carrying_capacity"]),
            theta=float(m.get("theta", 1.0)),
        )

    @property
    def n_ages(self) -> int:
        return int(self.age_first_breeding) + 1

    def mean_survival(self) -> np.ndarray:
        """Mean survival of each age class 0 … a (a = adults)."""
        s = np.full(self.n_ages, self.immature_survival.mean)
        s[0] = self.juvenile_survival.mean
        s[-1] = self.adult_survival.mean
        return s

    def mean_fecundity(self) -> np.ndarray:
        """Fledglings per individual of each age class (adults only: productivity × propensity / 2)."""
        f = np.zeros(self.n_ages)
        f[-1] = self.productivity.mean * self.breeding_propensity / 2
        return f


@dataclass(frozen=True)
class Impact:
    """Added mortality of one scenario: deaths per year (``mode="number"``) or a rate (``"rate"``).

    ``value`` is a scalar or one value per replicate (e.g. draws of the
    collision model, carrying its uncertainty into the projection).
    ``ages`` marks the exposed age classes (default: all).
    """

    value: float | np.ndarray = 0.0
    mode: str = "number"
    ages: tuple[bool, ...] | None = None
    start_year: int = 1

    def __post_init__(self) -> None:
        if self.mode not in ("number", "rate"):
            raise ConfigError(f"impact mode = {self.mode!r}: expected 'number' or 'rate'")
        v = np.asarray(self.value, float)
        if np.any(v < 0) or not np.all(np.isfinite(v)):
            raise ConfigError("impact: expected deaths or rates >= 0")
        if self.mode == "rate" and np.any(v > 1):
            raise ConfigError("impact rate: expected a share within [0, 1]")


def leslie_matrix(survival: Sequence[float], fecundity: Sequence[float]) -> np.ndarray:
    """Post-breeding Leslie matrix (eolpop ``build_Leslie``).

    ``A[0, i] = s_i f_{i+1}`` (last class: ``s_n f_n``), ``A[i+1, i] = s_i``,
    ``A[n, n] = s_n``.
    """
    s = np.asarray(survival, float)
    f = np.asarray(fecundity, float)
    n = s.size
    a = np.zeros((n, n))
    a[0, :-1] = s[:-1] * f[1:]
    a[0, -1] = s[-1] * f[-1]
    a[np.arange(1, n), np.arange(n - 1)] = s[:-1]
    a[-1, -1] += s[-1]
    return a


def dominant_eigenvalue(matrix: np.ndarray) -> float:
    """Asymptotic growth rate λ (largest real eigenvalue)."""
    return float(np.max(np.linalg.eigvals(matrix).real))


def stable_age_distribution(matrix: np.ndarray) -> np.ndarray:
    """Right eigenvector of λ, normalised to sum 1."""
    vals, vecs = np.linalg.eig(matrix)
    v = np.abs(vecs[:, np.argmax(vals.real)].real)
    return v / v.sum()


def _integer_vector(total: float, shares: np.ndarray) -> np.ndarray:
    """Round ``total * shares`` to integers summing to round(total) (largest remainder)."""
    raw = total * shares
    base = np.floor(raw).astype(np.int64)
    short = int(round(total)) - int(base.sum())
    base[np.argsort(raw - base)[::-1][:short]] += 1
    return base


def _coupled_binomial(rng, n_b, p_b, x_b, n_i, p_i):
    """Draw Bin(n_i, p_i) coupled to the baseline draw ``x_b`` ~ Bin(n_b, p_b) (see module docstring)."""
    m = np.minimum(n_i, n_b)
    # survivors (at the baseline rate) among the first m of the n_b baseline birds
    h = np.where(m == n_b, x_b, rng.hypergeometric(x_b, n_b - x_b, m))
    lower = p_i <= p_b
    ratio = np.divide(p_i, p_b, out=np.zeros_like(p_i), where=p_b > 0)
    x = rng.binomial(h, np.where(lower, ratio, 1.0))
    if not lower.all():
        up = np.divide(p_i - p_b, 1 - p_b, out=np.ones_like(p_i), where=p_b < 1)
        x = x + np.where(lower, 0, rng.binomial(m - h, np.where(lower, 0.0, np.clip(up, 0, 1))))
    extra = n_i - m
    if extra.any():
        x = x + rng.binomial(extra, p_i)
    return x


def _coupled_poisson(rng, lam_b, x_b, lam_i):
    """Draw Poisson(lam_i) coupled to ``x_b`` ~ Poisson(lam_b) (thinning / superposition)."""
    lower = lam_i <= lam_b
    ratio = np.divide(lam_i, lam_b, out=np.zeros_like(lam_i), where=lam_b > 0)
    x = rng.binomial(x_b, np.where(lower, ratio, 1.0))
    if not lower.all():
        x = x + rng.poisson(np.where(lower, 0.0, lam_i - lam_b))
    return x


def _environment(dem: Demography, rng: np.random.Generator, reps: int, env: bool):
    """This year's survival per age class (reps, ages) and productivity (reps,)."""
    na = dem.n_ages
    if not env:
        return np.broadcast_to(dem.mean_survival(), (reps, na)), np.full(reps, dem.productivity.mean)
    s = np.empty((reps, na))
    s[:, 0] = dem.juvenile_survival.sample(rng, reps)
    if na > 2:
        s[:, 1:-1] = dem.immature_survival.sample(rng, reps)[:, None]
    s[:, -1] = dem.adult_survival.sample(rng, reps)
    return s, dem.productivity.sample(rng, reps)


def project(demography: Demography, impacts: Sequence[Impact] = (), *, years: int = 50, replicates: int = 1000,
            seed: int | np.random.SeedSequence | None = None, demographic: bool = True,
            environmental: bool = True, workers: int | None = None) -> np.ndarray:
    """Project the baseline and every impact scenario with common random numbers.

    Parameters
    ----------
    demography
        Vital rates and initial size (individuals, set to the stable age
        distribution of the mean Leslie matrix).
    impacts
        One :class:`Impact` per scenario; the baseline (no impact) is added
        as scenario 0.
    years, replicates
        Horizon and number of replicate trajectories.
    seed
        Seed or SeedSequence; streams are spawned per component.
    demographic, environmental
        Switch the two kinds of process noise (both on by default). With
        both off the projection is the deterministic ``A^t n0`` (no rounding).
    workers
        Threads over scenarios (default: the CPU count); the result does not
        depend on it.

    Returns
    -------
    ndarray, shape (1 + len(impacts), replicates, years + 1, ages)
        Numbers per age class; year 0 is the initial vector.
    """
    dem = Demography.from_mapping(demography)
    if years < 1 or replicates < 1:
        raise ValueError("years and replicates must be >= 1")
    n_s = 1 + len(impacts)
    na = dem.n_ages
    env_ss, *scen_ss = np.random.SeedSequence(seed).spawn(1 + n_s) if not isinstance(seed, np.random.SeedSequence) \
        else seed.spawn(1 + n_s)
    rng_env = np.random.default_rng(env_ss)
    rngs = [np.random.default_rng(s) for s in scen_ss]
    mean_a = leslie_matrix(dem.mean_survival(), dem.mean_fecundity())
    shares = stable_age_distribution(mean_a)
    n0 = _integer_vector(dem.initial_population, shares) if demographic else dem.initial_population * shares
    dtype = np.int64 if demographic else float
    out = np.empty((n_s, replicates, years + 1, na), dtype=dtype)
    out[:, :, 0, :] = n0
    masks = [np.ones(na, bool) if imp.ages is None else np.asarray(imp.ages, bool) for imp in impacts]
    for mk in masks:
        if mk.shape != (na,):
            raise ConfigError(f"impact ages: expected {na} flags (age classes 0..{na - 1})")
    values = [np.broadcast_to(np.asarray(imp.value, float), (replicates,)) for imp in impacts]
    fec_shape = np.zeros(na)
    fec_shape[-1] = dem.breeding_propensity / 2
    base: dict[str, np.ndarray] = {}

    def step(j: int, t: int, s_env: np.ndarray, prod: np.ndarray) -> None:
        """Year t of scenario j (j = 0: baseline, whose draws the scenarios are coupled to)."""
        n = out[j, :, t - 1, :]
        s = s_env
        if j > 0 and t >= impacts[j - 1].start_year:
            imp, mk = impacts[j - 1], masks[j - 1]
            if imp.mode == "rate":
                h = values[j - 1]
            else:
                exposed = (n * mk).sum(axis=1)
                h = np.divide(values[j - 1], exposed, out=np.zeros(replicates), where=exposed > 0)
            s = s_env * (1 - np.clip(h, 0, 1)[:, None] * mk[None, :])
        if not demographic:
            x = n * s
        elif j == 0:
            x = base["x"] = rngs[0].binomial(n, s)
        else:
            x = _coupled_binomial(rngs[j], out[0, :, t - 1, :], s_env, base["x"], n, s)
        new = np.empty_like(n)
        new[:, 1:] = x[:, :-1]
        new[:, -1] += x[:, -1]
        f = prod
        if dem.carrying_capacity is not None:
            total = n.sum(axis=1)
            f = prod * np.minimum(1.0, np.divide(dem.carrying_capacity, total, out=np.ones(replicates),
                                                 where=total > 0) ** dem.theta)
        lam = (new * fec_shape[None, :]).sum(axis=1) * f
        if not demographic:
            new[:, 0] = lam
        elif j == 0:
            new[:, 0] = base["b"] = rngs[0].poisson(lam)
            base["lam"] = lam
        else:
            new[:, 0] = _coupled_poisson(rngs[j], base["lam"], base["b"], lam)
        out[j, :, t, :] = new

    # scenarios are independent given the baseline's draws, each with its own stream: numpy's
    # generators release the GIL, so threads use both cores and the result does not depend on them
    with ThreadPoolExecutor(max_workers=max(1, min(workers or os.cpu_count() or 1, n_s - 1))) as pool:
        for t in range(1, years + 1):
            s_env, prod = _environment(dem, rng_env, replicates, environmental)
            step(0, t, s_env, prod)
            list(pool.map(lambda j: step(j, t, s_env, prod), range(1, n_s)))
    log.debug("projected %d scenarios x %d replicates x %d years", n_s, replicates, years)
    return out
