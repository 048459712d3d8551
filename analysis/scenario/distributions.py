"""Parameter distributions of the scenario models.

Every uncertain input of a collision or population model is a :class:`Dist`:
a fixed value, a truncated normal, a beta given by its mean and standard
deviation (the "method of moments" used by stochLAB and nepva), a gamma or a
lognormal by mean/sd, or bootstrap samples (a 1-d array of scalar samples or
a 2-d array whose rows are resampled, e.g. flight-height distributions).

Each distribution draws ``n`` values in one vectorised call. A distribution
with ``sd == 0`` returns its mean *exactly* (not a draw that happens to be
close), so the stochastic models with every sd at zero reproduce the
deterministic ones bit for bit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from scipy import special

from flyway.errors import ConfigError

__all__ = [
    "Dist", "Fixed", "TruncNormal", "BetaMoments", "GammaMoments", "LogNormalMoments",
    "Bootstrap", "AlignedDraws", "as_dist",
]


class Dist:
    """Base class: ``mean`` and ``sample(rng, n)``."""

    mean: float

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    @property
    def is_fixed(self) -> bool:
        return False

    def describe(self) -> str:  # pragma: no cover - overridden
        return repr(self)


def _check_finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{name} = {value!r}: expected a finite number")
    return value


@dataclass(frozen=True)
class Fixed(Dist):
    """A known value (no uncertainty)."""

    mean: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _check_finite("value", self.mean))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.mean)

    @property
    def is_fixed(self) -> bool:
        return True

    def describe(self) -> str:
        return f"{self.mean:g}"


@dataclass(frozen=True)
class TruncNormal(Dist):
    """Normal(mean, sd) truncated to ``[lower, upper]`` (stochLAB's ``rtnorm``, lower 0).

    ``mean`` is the mean of the untruncated normal (as in stochLAB); drawn by
    inverse CDF, so one uniform gives one value.
    """

    mean: float
    sd: float
    lower: float = 0.0
    upper: float = math.inf

    def __post_init__(self) -> None:
        _check_finite("mean", self.mean)
        if not (self.sd >= 0 and math.isfinite(self.sd)):
            raise ConfigError(f"sd = {self.sd!r}: expected a finite number >= 0")
        if not self.lower < self.upper:
            raise ConfigError(f"truncation [{self.lower}, {self.upper}]: lower must be below upper")
        if not self.lower <= self.mean <= self.upper:
            raise ConfigError(f"mean = {self.mean!r}: expected inside [{self.lower}, {self.upper}]")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.sd == 0:
            return np.full(n, float(self.mean))
        a = special.ndtr((self.lower - self.mean) / self.sd)
        b = special.ndtr((self.upper - self.mean) / self.sd)
        u = a + (b - a) * rng.random(n)
        x = self.mean + self.sd * special.ndtri(u)
        return np.clip(x, self.lower, self.upper)

    @property
    def is_fixed(self) -> bool:
        return self.sd == 0

    def describe(self) -> str:
        return f"tnorm({self.mean:g}, {self.sd:g})"


@dataclass(frozen=True)
class BetaMoments(Dist):
    """Beta distribution on [0, 1] given by its mean and sd.

    Shape parameters by moments: ``eta = mean(1-mean)/sd^2 - 1``,
    ``a = eta*mean``, ``b = eta*(1-mean)``; requires ``sd^2 < mean(1-mean)``.
    """

    mean: float
    sd: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.mean <= 1.0:
            raise ConfigError(f"mean = {self.mean!r}: a share or probability must be within [0, 1]")
        if not (self.sd >= 0 and math.isfinite(self.sd)):
            raise ConfigError(f"sd = {self.sd!r}: expected a finite number >= 0")
        if self.sd > 0 and not self.sd ** 2 < self.mean * (1 - self.mean):
            raise ConfigError(
                f"sd = {self.sd!r} with mean {self.mean!r}: a beta needs sd^2 < mean*(1-mean) "
                f"= {self.mean * (1 - self.mean):.4g}"
            )

    @property
    def shapes(self) -> tuple[float, float]:
        eta = self.mean * (1 - self.mean) / self.sd ** 2 - 1
        return eta * self.mean, eta * (1 - self.mean)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.sd == 0:
            return np.full(n, float(self.mean))
        a, b = self.shapes
        return rng.beta(a, b, n)

    def quantile(self, u: np.ndarray) -> np.ndarray:
        """Inverse CDF at probabilities ``u`` (for common random numbers)."""
        if self.sd == 0:
            return np.full(np.shape(u), float(self.mean))
        a, b = self.shapes
        return special.betaincinv(a, b, u)

    @property
    def is_fixed(self) -> bool:
        return self.sd == 0

    def describe(self) -> str:
        return f"beta(mean {self.mean:g}, sd {self.sd:g})"


@dataclass(frozen=True)
class GammaMoments(Dist):
    """Gamma distribution on [0, inf) by mean and sd (shape mean²/sd², scale sd²/mean)."""

    mean: float
    sd: float

    def __post_init__(self) -> None:
        if not (self.mean >= 0 and math.isfinite(self.mean)):
            raise ConfigError(f"mean = {self.mean!r}: expected a finite number >= 0")
        if not (self.sd >= 0 and math.isfinite(self.sd)):
            raise ConfigError(f"sd = {self.sd!r}: expected a finite number >= 0")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.sd == 0 or self.mean == 0:
            return np.full(n, float(self.mean))
        shape = self.mean ** 2 / self.sd ** 2
        return rng.gamma(shape, self.sd ** 2 / self.mean, n)

    @property
    def is_fixed(self) -> bool:
        return self.sd == 0

    def describe(self) -> str:
        return f"gamma(mean {self.mean:g}, sd {self.sd:g})"


@dataclass(frozen=True)
class LogNormalMoments(Dist):
    """Lognormal on (0, inf) by its mean and sd (not those of the log)."""

    mean: float
    sd: float

    def __post_init__(self) -> None:
        if not (self.mean > 0 and math.isfinite(self.mean)):
            raise ConfigError(f"mean = {self.mean!r}: a lognormal needs a mean > 0")
        if not (self.sd >= 0 and math.isfinite(self.sd)):
            raise ConfigError(f"sd = {self.sd!r}: expected a finite number >= 0")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.sd == 0:
            return np.full(n, float(self.mean))
        s2 = math.log1p((self.sd / self.mean) ** 2)
        return rng.lognormal(math.log(self.mean) - s2 / 2, math.sqrt(s2), n)

    @property
    def is_fixed(self) -> bool:
        return self.sd == 0

    def describe(self) -> str:
        return f"lognormal(mean {self.mean:g}, sd {self.sd:g})"


@dataclass(frozen=True, eq=False)
class Bootstrap(Dist):
    """Resample given samples with replacement.

    ``samples`` is 1-d (scalar samples) or 2-d (each row one sample of a
    vector, e.g. one bootstrap flight-height distribution).
    """

    samples: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        arr = np.asarray(self.samples, dtype=float)
        if arr.ndim not in (1, 2) or arr.shape[0] == 0:
            raise ConfigError("bootstrap samples: expected a non-empty 1-d or 2-d array")
        if not np.all(np.isfinite(arr)):
            raise ConfigError("bootstrap samples: expected finite numbers only")
        arr.setflags(write=False)
        object.__setattr__(self, "samples", arr)

    @property
    def mean(self) -> float | np.ndarray:  # type: ignore[override]
        m = self.samples.mean(axis=0)
        return float(m) if m.ndim == 0 else m

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.samples.shape[0] == 1:
            return np.repeat(self.samples, n, axis=0) if self.samples.ndim == 2 else np.full(n, self.samples[0])
        return self.samples[rng.integers(0, self.samples.shape[0], n)]

    @property
    def is_fixed(self) -> bool:
        return self.samples.shape[0] == 1

    def describe(self) -> str:
        return f"bootstrap({self.samples.shape[0]} samples)"


@dataclass(frozen=True, eq=False)
class AlignedDraws(Dist):
    """Values already drawn one per replicate: replicate ``k`` gets ``values[k]``, in order.

    For inputs whose uncertainty comes from elsewhere and must stay aligned
    with the run's replicates, e.g. in-flight densities from a bootstrap of
    tracked individuals (replicate ``k`` of every facility uses the same
    resample of birds). Unlike :class:`Bootstrap` nothing is resampled and
    the generator is not used; asking for another number of draws than
    there are values is an error.
    """

    values: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        arr = np.array(self.values, dtype=float).ravel()
        if arr.size == 0 or not np.all(np.isfinite(arr)):
            raise ConfigError("aligned draws: expected a non-empty array of finite numbers")
        arr.setflags(write=False)
        object.__setattr__(self, "values", arr)

    @property
    def mean(self) -> float:  # type: ignore[override]
        return float(self.values.mean())

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if n != self.values.size:
            raise ValueError(f"aligned draws: {self.values.size} values for {n} replicates; expected one per replicate")
        return self.values.copy()

    @property
    def is_fixed(self) -> bool:
        return bool(np.all(self.values == self.values[0]))

    def describe(self) -> str:
        return f"aligned draws ({self.values.size}, mean {self.mean:g})"


_KINDS = {
    "fixed": Fixed,
    "tnorm": TruncNormal,
    "truncated_normal": TruncNormal,
    "beta": BetaMoments,
    "gamma": GammaMoments,
    "lognormal": LogNormalMoments,
}


def as_dist(value: Any, *, kind: str = "tnorm", name: str = "value",
            lower: float = 0.0, upper: float = math.inf) -> Dist:
    """Turn a number, a ``{mean, sd[, dist]}`` mapping or samples into a :class:`Dist`.

    Parameters
    ----------
    value
        A number (fixed), a :class:`Dist`, a mapping with ``mean`` (or
        ``value``) and optional ``sd`` and ``dist`` (``fixed``, ``tnorm``,
        ``beta``, ``gamma``, ``lognormal``), or a mapping with ``samples``
        (bootstrap).
    kind
        The distribution used when a mapping gives a sd but no ``dist``:
        ``"beta"`` for shares and probabilities, ``"tnorm"`` otherwise.
    name
        Parameter name, used in error messages.
    lower, upper
        Truncation bounds of a truncated normal.

    Returns
    -------
    Dist

    Examples
    --------
    >>> as_dist(14.9).mean
    14.9
    >>> as_dist({"mean": 0.98, "sd": 0.005}, kind="beta").describe()
    'beta(mean 0.98, sd 0.005)'
    """
    if isinstance(value, Dist):
        return value
    if isinstance(value, bool):
        raise ConfigError(f"{name} = {value!r}: expected a number or {{mean, sd}}")
    if isinstance(value, (int, float, np.floating, np.integer)):
        return Fixed(float(value))
    if isinstance(value, Mapping):
        try:
            if "samples" in value:
                return Bootstrap(np.asarray(value["samples"], dtype=float))
            mean = value["mean"] if "mean" in value else value["value"]
            sd = float(value.get("sd", 0.0))
            dist = str(value.get("dist", kind if sd > 0 else "fixed"))
            if dist not in _KINDS:
                raise ConfigError(f"{name}.dist = {dist!r}: expected one of {', '.join(sorted(_KINDS))}")
            cls = _KINDS[dist]
            if cls is Fixed:
                return Fixed(float(mean))
            if cls is TruncNormal:
                return TruncNormal(float(mean), sd, lower, upper)
            return cls(float(mean), sd)
        except KeyError:
            raise ConfigError(f"{name}: expected a number or a table with 'mean' (and 'sd')") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name} = {value!r}: expected numbers ({exc})") from None
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc.detail}") from None
    raise ConfigError(f"{name} = {value!r}: expected a number or a table with 'mean' and 'sd'")
