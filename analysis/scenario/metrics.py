"""Counterfactual impact metrics of matched projections (Natural England PVA definitions).

Per matched replicate k, output year t, reference year b = 0 (the year before
impacts start):

* CPS (nepva M2) = median_k [N_imp,k(t) / N_base,k(t)] over k with N_base > 0;
* CGR (nepva M1) = median_k [agr_imp,k / agr_base,k], agr = (N(t)/N(b))^(1/(t−b));
* P(decline > 50 %) = P_k(N_imp,k(t) < 0.5 N(b));
* quasi-extinction = P_k(N_imp,k(s) < threshold for some s <= t) (*by* year t);
* median and 2.5/97.5 % of N_imp(t).

Replicates whose baseline is 0 cannot give a ratio; they are left out and
counted (``n_ratio`` says how many ratios entered), never silently.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from flyway import schema as S

__all__ = ["counterfactual_metrics", "trajectory_quantiles"]


def counterfactual_metrics(totals: np.ndarray, years, *, quasi_extinction: float, names=None) -> pd.DataFrame:
    """Metrics per scenario and output year.

    Parameters
    ----------
    totals : ndarray, shape (scenarios, replicates, years + 1)
        Population totals, scenario 0 the baseline, year 0 the start.
    years : sequence of int
        Output years (e.g. 10, 25, 50); must be within the horizon.
    quasi_extinction : float
        Threshold (individuals) of quasi-extinction.
    names : sequence of str, optional
        Scenario names (default ``baseline``, ``1``, ``2`` …).

    Returns
    -------
    DataFrame
        One row per (scenario, year): ``cps_median``, ``cps_mean``,
        ``cps_q2.5``, ``cps_q97.5``, ``cgr_median``, ``cgr_q2.5``,
        ``cgr_q97.5``, ``n_ratio``, ``p_decline_50``, ``p_quasi_extinction``,
        ``n_median``, ``n_q2.5``, ``n_q97.5``.
    """
    totals = np.asarray(totals, float)
    n_s, _, horizon = totals.shape[0], totals.shape[1], totals.shape[2] - 1
    names = list(names) if names is not None else ["baseline", *map(str, range(1, n_s))]
    start = totals[:, :, 0]
    running_min = np.minimum.accumulate(totals, axis=2)
    rows = []
    for t in years:
        if not 1 <= t <= horizon:
            raise ValueError(f"output year {t} is outside the horizon 1..{horizon}")
        base = totals[0, :, t]
        ok = base > 0
        for j in range(n_s):
            n_t = totals[j, :, t]
            ratio = n_t[ok] / base[ok]
            agr_imp = (n_t[ok] / start[j, ok]) ** (1.0 / t)
            agr_base = (base[ok] / start[0, ok]) ** (1.0 / t)
            cgr = agr_imp / agr_base
            row = {S.SCENARIO: names[j], S.YEAR: int(t), S.N_RATIO: int(ok.sum())}
            if ratio.size:
                row.update({S.CPS_MEDIAN: float(np.median(ratio)), S.CPS_MEAN: float(ratio.mean()),
                            S.CPS_Q2_5: float(np.quantile(ratio, 0.025)), S.CPS_Q97_5: float(np.quantile(ratio, 0.975)),
                            S.CGR_MEDIAN: float(np.median(cgr)), S.CGR_Q2_5: float(np.quantile(cgr, 0.025)),
                            S.CGR_Q97_5: float(np.quantile(cgr, 0.975))})
            else:
                row.update({k: np.nan for k in (S.CPS_MEDIAN, S.CPS_MEAN, S.CPS_Q2_5, S.CPS_Q97_5, S.CGR_MEDIAN,
                                                S.CGR_Q2_5, S.CGR_Q97_5)})
            row.update({
                S.P_DECLINE_50: float(np.mean(n_t < 0.5 * start[j])),
                S.P_QUASI_EXTINCTION: float(np.mean(running_min[j, :, t] < quasi_extinction)),
                S.N_MEDIAN: float(np.median(n_t)),
                S.N_Q2_5: float(np.quantile(n_t, 0.025)),
                S.N_Q97_5: float(np.quantile(n_t, 0.975)),
            })
            rows.append(row)
    return pd.DataFrame(rows)


_QUANTILE_LABELS = {0.025: S.Q2_5, 0.25: S.Q25, 0.5: S.MEDIAN, 0.75: S.Q75, 0.975: S.Q97_5}


def trajectory_quantiles(totals: np.ndarray, names=None, quantiles=(0.025, 0.25, 0.5, 0.75, 0.975)) -> pd.DataFrame:
    """Quantiles of the population per scenario and year (for fan charts): long table."""
    totals = np.asarray(totals, float)
    names = list(names) if names is not None else ["baseline", *map(str, range(1, totals.shape[0]))]
    q = np.quantile(totals, quantiles, axis=1)  # (nq, scenarios, years+1)
    rows = []
    for j, name in enumerate(names):
        for t in range(totals.shape[2]):
            row = {S.SCENARIO: name, S.YEAR: t}
            row.update({_QUANTILE_LABELS[qq]: float(q[i, j, t]) for i, qq in enumerate(quantiles)})
            rows.append(row)
    return pd.DataFrame(rows)
