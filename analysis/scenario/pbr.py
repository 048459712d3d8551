"""Potential Biological Removal (Wade 1998) and maximum growth rate (Niel & Lebreton 2005).

PBR is a screen to report *beside* the population projection, never instead of
it: it understates impacts on long-lived birds (Schippers et al. 2020;
Chambert et al. 2023).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import special

__all__ = ["lambda_max", "pbr", "n_min", "Z_20"]

# Phi^-1(0.8): N_min is the 20th percentile of a lognormal with median N.
Z_20 = float(special.ndtri(0.8))


def lambda_max(adult_survival, age_first_breeding):
    """Maximum annual growth rate from adult survival and age at first breeding.

    Niel & Lebreton (2005) demographic-invariant method for long-lived birds:
    the larger root of ``a λ² − (s a − s + a + 1) λ + s a = 0``, i.e.
    ``(λ − 1) T = 1`` with generation time ``T = a + s / (λ − s)``:

    ``λ_max = [(s a − s + a + 1) + sqrt((s − s a − a − 1)² − 4 s a²)] / (2 a)``

    Parameters
    ----------
    adult_survival : float or array
        Maximal adult survival ``s``, within (0, 1).
    age_first_breeding : float or array
        Age at first breeding ``a`` (years), > 0.

    Returns
    -------
    float or ndarray
        λ_max; ``R_max = λ_max − 1``.

    Examples
    --------
    >>> round(lambda_max(0.8, 3), 12)
    1.2
    """
    s = np.asarray(adult_survival, float)
    a = np.asarray(age_first_breeding, float)
    if np.any((s <= 0) | (s >= 1)):
        raise ValueError(f"adult_survival = {adult_survival!r}: expected within (0, 1)")
    if np.any(a <= 0):
        raise ValueError(f"age_first_breeding = {age_first_breeding!r}: expected > 0 years")
    b = s * a - s + a + 1
    lam = (b + np.sqrt((s - s * a - a - 1) ** 2 - 4 * s * a ** 2)) / (2 * a)
    return float(lam) if lam.ndim == 0 else lam


def n_min(n, cv):
    """Minimum population estimate: 20th percentile of a lognormal with median ``n`` and CV ``cv``.

    ``N_min = N / exp(z_0.8 sqrt(ln(1 + CV²)))`` (Wade 1998).
    """
    n = np.asarray(n, float)
    cv = np.asarray(cv, float)
    if np.any(n < 0) or np.any(cv < 0):
        raise ValueError("n and cv must be >= 0")
    out = n / np.exp(Z_20 * np.sqrt(np.log1p(cv ** 2)))
    return float(out) if out.ndim == 0 else out


def pbr(n, cv, rmax, recovery_factor):
    """Potential Biological Removal (Wade 1998): ``N_min × ½ R_max × F_r``.

    Parameters
    ----------
    n : float
        Population size estimate (individuals).
    cv : float
        Coefficient of variation of ``n``.
    rmax : float
        Maximum annual growth rate ``R_max = λ_max − 1`` (see :func:`lambda_max`).
    recovery_factor : float
        ``F_r`` within (0, 1]; 0.1 for endangered, 0.5 for depleted,
        threatened or unknown status, 1.0 within optimum sustainable
        population (NMFS guidance).

    Returns
    -------
    float
        Individuals that may be removed per year.

    Examples
    --------
    >>> round(pbr(1000, 0.0, 0.2, 0.5), 9)
    50.0
    """
    if not 0 < recovery_factor <= 1:
        raise ValueError(f"recovery_factor = {recovery_factor!r}: expected within (0, 1]")
    if rmax < 0 or not math.isfinite(rmax):
        raise ValueError(f"rmax = {rmax!r}: expected a finite number >= 0")
    return n_min(n, cv) * 0.5 * rmax * recovery_factor
