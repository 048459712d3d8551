"""Planted imperfections and ground-truth tables of the simulator.

Which fixes become speed outliers, poor (3-satellite) fixes, duplicate rows,
or fixes logged before deploy-on / after deploy-off is decided here, on row
indices of the fixes sorted by bird then time; the truth tables (planted stops,
planted rows, study sites) are built from the same indices, so what the truth
says is exactly what the file holds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from flyway import _simfixes as F
from flyway import schema as S
from flyway._simroutes import SITE
from flyway._simschedule import PlantedStop
from flyway._simwrite import IMMATURE_SUMMERING, ISSUE, utc_ms

ISSUE_OUTLIER, ISSUE_LOW_SAT, ISSUE_DUPLICATE = "speed_outlier", "low_satellites", "duplicate"
ISSUE_EARLY, ISSUE_LATE = "before_deploy_on", "after_deploy_off"
MIN_FIXES_FOR_DEPLOYMENT_ISSUES = 20  # a tag logs off the bird only if its track is longer
DEPLOYMENT_MARGIN_S = 60  # deploy-on is this long before the first fix on the bird


@dataclass(frozen=True)
class Imperfections:
    """Row indices (into fixes sorted by bird, time) of every planted imperfection."""

    outliers: np.ndarray
    import_marked: np.ndarray  # subset of outliers marked by Movebank's import filter
    manually_marked: np.ndarray  # subset of outliers marked by hand
    low_sat: np.ndarray
    duplicates: np.ndarray
    early: np.ndarray  # logged before deploy-on
    early_anchor: np.ndarray  # aligned with ``early``: the first fix on the bird
    late: np.ndarray  # logged after deploy-off
    late_anchor: np.ndarray  # aligned with ``late``: the last fix on the bird

    def clean(self, n: int) -> np.ndarray:
        """Mask of fixes without a planted error (what a stop detector should use)."""
        ok = np.ones(n, bool)
        ok[self.outliers] = ok[self.low_sat] = ok[self.early] = ok[self.late] = False
        return ok

    def by_issue(self) -> dict[str, np.ndarray]:
        return {ISSUE_OUTLIER: self.outliers, ISSUE_LOW_SAT: self.low_sat, ISSUE_DUPLICATE: self.duplicates,
                ISSUE_EARLY: self.early, ISSUE_LATE: self.late}


def bird_bounds(bird: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row range [first, last) of each of ``n`` birds in arrays sorted by bird."""
    counts = np.bincount(bird, minlength=n)
    last = np.cumsum(counts)
    return last - counts, last


def plant_imperfections(p, bird: np.ndarray, t: np.ndarray, interval_s: np.ndarray,
                        rng: np.random.Generator) -> Imperfections:
    """Choose the rows of every imperfection; no row carries two.

    Outliers, poor fixes and duplicates go on fixes taken on the bird whose
    neighbours are both one duty cycle away (an outlier next to a gap would not
    be a speed outlier on that side), never on a bird's first or last fix, and
    no two outliers are consecutive.
    """
    first, last = bird_bounds(bird, p.n_individuals)
    early, early_anchor = _deployment_fixes(first, last, p.early_fix_share, rng, at_start=True)
    late, late_anchor = _deployment_fixes(first, last, p.late_fix_share, rng, at_start=False)
    regular = (np.diff(t) <= 1.5 * interval_s[bird[1:]]) & (bird[1:] == bird[:-1])
    eligible = np.concatenate([[False], regular]) & np.concatenate([regular, [False]])
    eligible[early] = eligible[late] = eligible[early_anchor] = eligible[late_anchor] = False
    outliers = F.pick(np.flatnonzero(eligible), p.outlier_rate, rng, spaced=True)
    eligible[outliers] = False
    low_sat = F.pick(np.flatnonzero(eligible), p.low_satellite_rate, rng)
    eligible[low_sat] = False
    duplicates = F.pick(np.flatnonzero(eligible), p.duplicate_rate, rng)
    marked = rng.uniform(size=len(outliers)) < p.outlier_marked_share
    by_import = marked & (rng.uniform(size=len(outliers)) < 0.5)
    return Imperfections(outliers, outliers[by_import], outliers[marked & ~by_import], low_sat, duplicates,
                         early, early_anchor, late, late_anchor)


def _deployment_fixes(first: np.ndarray, last: np.ndarray, share: float, rng: np.random.Generator,
                      at_start: bool) -> tuple[np.ndarray, np.ndarray]:
    """Rows logged off the bird (2-6 per chosen tag) and, aligned, the first/last row on it."""
    usable = np.flatnonzero(last - first >= MIN_FIXES_FOR_DEPLOYMENT_ISSUES)
    k = min(len(usable), max(1, int(round(share * len(first))))) if share > 0 else 0
    chosen = np.sort(rng.choice(usable, size=k, replace=False)) if k else usable[:0]
    m = rng.integers(2, 7, size=k)
    if at_start:
        rows = [np.arange(first[b], first[b] + c) for b, c in zip(chosen, m)]
        anchor = first[chosen] + m
    else:
        rows = [np.arange(last[b] - c, last[b]) for b, c in zip(chosen, m)]
        anchor = last[chosen] - m - 1
    idx = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
    return idx, np.repeat(anchor, m).astype(np.int64)


def deployments(bird: np.ndarray, t: np.ndarray, n: int, imp: Imperfections) -> tuple[np.ndarray, np.ndarray]:
    """deploy-on and deploy-off of each bird (epoch seconds) around its fixes on the bird."""
    first, last = bird_bounds(bird, n)

    def row_per_bird(idx: np.ndarray, default: np.ndarray) -> np.ndarray:
        out = np.clip(default, 0, max(len(t) - 1, 0))
        out[bird[idx]] = idx
        return out

    on = t[row_per_bird(imp.early_anchor, first)] - DEPLOYMENT_MARGIN_S
    off = t[row_per_bird(imp.late_anchor, last - 1)] + DEPLOYMENT_MARGIN_S
    return on, off


def truth_stops(stops: list[PlantedStop], stop_of_fix: np.ndarray, t: np.ndarray, clean: np.ndarray,
                site_names: np.ndarray, ids: np.ndarray, species: np.ndarray) -> pd.DataFrame:
    """One row per planted stop with at least two clean fixes.

    ``stop_of_fix`` is the planted stop of each fix (-1 in flight or at an
    overnight roost); start and end are the first and last clean fix inside it.
    ``species`` is the species name of each bird.
    """
    sel = np.flatnonzero(clean & (stop_of_fix >= 0))
    runs = stop_of_fix[sel]  # non-decreasing: fixes and stops are both in bird, time order
    first = np.flatnonzero(np.concatenate([[True], runs[1:] != runs[:-1]])) if len(runs) else sel[:0]
    count = np.diff(np.append(first, len(runs)))
    stop_ids = runs[first]
    keep = count >= 2
    stop_ids, first, count = stop_ids[keep], first[keep], count[keep]
    planted = [stops[i] for i in stop_ids]
    bird = np.array([st.bird for st in planted], dtype=np.int64)
    return pd.DataFrame({
        S.INDIVIDUAL_ID: ids[bird],
        S.SPECIES: species[bird],
        SITE: site_names[np.array([st.site for st in planted], dtype=np.int64)],
        S.KIND: np.array([st.kind for st in planted], dtype=object),
        S.START_TIME: utc_ms(t[sel[first]]),
        S.END_TIME: utc_ms(t[sel[first + count - 1]]),
        S.LON: np.array([st.lon for st in planted], dtype=float),
        S.LAT: np.array([st.lat for st in planted], dtype=float),
        IMMATURE_SUMMERING: np.array([st.immature_summering for st in planted], bool),
        S.N_FIXES: count.astype(np.int64),
    })


def study_sites(stops: list[PlantedStop], stop_of_fix: np.ndarray, bird: np.ndarray, n: int,
                site_names: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Where each bird was tagged: the site of the stop of its first fix (else ``fallback``)."""
    first, last = bird_bounds(bird, n)
    out = np.asarray(fallback, dtype=object).copy()
    has = np.flatnonzero(last > first)
    stop = stop_of_fix[first[has]]
    ok = stop >= 0
    out[has[ok]] = site_names[[stops[i].site for i in stop[ok]]]
    return out.astype(str)


def planted_rows(event_id: np.ndarray, bird: np.ndarray, t: np.ndarray, ids: np.ndarray,
                 imp: Imperfections) -> pd.DataFrame:
    """The imperfect rows: ``event_id, individual_id, timestamp, issue``, by row then issue."""
    by_issue = imp.by_issue()
    rows = np.concatenate(list(by_issue.values())).astype(np.int64)
    issue = np.repeat(np.array(list(by_issue)), [len(v) for v in by_issue.values()])
    order = np.lexsort((issue, rows))
    rows, issue = rows[order], issue[order]
    return pd.DataFrame({S.EVENT_ID: event_id[rows], S.INDIVIDUAL_ID: ids[bird[rows]],
                         S.TIMESTAMP: utc_ms(t[rows]), ISSUE: issue})
