"""Stops and tag summaries of the nightly tail birds, from their windows (see :mod:`flyway.tail`)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from flyway import schema as S
from flyway.store import Store
from flyway.tail import Windows, gap_dt_hi, id_runs, row_values, stop_rows, whole_bounds


# ------------------------------------------------------------------------------------------ stops
def _exact_bounds(st: Store, w: Windows, birds: list[str], stop_options: Mapping[str, Any],
                  snapshot) -> dict[str, float]:
    """Upper medians of the clean intervals of whole tracks, before and after the night (max of both).

    For birds whose bound is not in the state yet (a store from before it
    was kept): one read of four columns of their whole track.
    """
    if not birds:
        return {}
    cols = [S.INDIVIDUAL_ID, S.SPECIES, S.TIMESTAMP, S.LON, S.LAT, S.QC_FLAGS]
    fixes = st.scan_fixes(individuals=birds, columns=cols, snapshot=snapshot).to_pandas()
    after = whole_bounds(fixes, stop_options)
    since = fixes[S.INDIVIDUAL_ID].map({b: w.since[b] for b in birds})
    before = whole_bounds(fixes[(fixes[S.TIMESTAMP] <= since).to_numpy()], stop_options)
    return {b: max(after.get(b, np.nan), before.get(b, np.nan)) for b in birds}


def tail_stops(st: Store, w: Windows, fixes: pd.DataFrame, old_stops: pd.DataFrame, bounds: Mapping[str, float],
               stop_options: Mapping[str, Any]) -> tuple[pd.DataFrame, dict[str, float]]:
    """Every stop of each tail bird (kept stored ones + the window's), labelled; and new median bounds.

    ``fixes`` from :func:`window_fixes`; ``bounds`` the birds' stored upper
    bounds of the median interval (ns). Birds whose threshold cannot be
    proved unchanged join ``w.fallback`` and are left out.
    """
    from flyway.analysis.params import load_species_config
    from flyway.analysis.seasons import label_stops
    from flyway.analysis.stops import _utc_ns, detect_stops

    opts = dict(stop_options)
    cfg = opts.pop("species_config", None) or load_species_config()
    method = opts.pop("method", "flyway")
    max_diameter, min_duration = opts.pop("max_diameter", 2000.0), opts.pop("min_duration", "24h")
    ids = fixes[S.INDIVIDUAL_ID].to_numpy(dtype=object)
    t = _utc_ns(fixes[S.TIMESTAMP])
    ok, params, species = stop_rows(fixes, stop_options)
    bird_code, bird_names = pd.factorize(ids)
    runs = id_runs(ids)
    limits: dict[str, float] = {}
    new_bounds: dict[str, float] = {}
    unknown = [b for b in w.birds if not pd.isna(w.start[b]) and np.isnan(bounds.get(b, np.nan))]
    bounds = {**bounds, **_exact_bounds(st, w, unknown, stop_options, st.snapshot())}
    id_s = pd.Series(ids, dtype=object)
    whole_birds = [b for b in w.birds if pd.isna(w.start[b])]
    since_row = row_values(bird_code, bird_names, {b: w.since[b].value for b in w.birds}, np.iinfo(np.int64).max)
    old_ok = np.flatnonzero(ok & (t <= since_row))
    last_old = pd.Series(old_ok).groupby(ids[old_ok]).last() if len(old_ok) else pd.Series(dtype=np.int64)
    tail = ok & (t > since_row)
    tail[last_old.to_numpy(np.int64)] = True  # the interval from the last old clean fix to the first new one
    exact = gap_dt_hi(ids, t, ok & id_s.isin(whole_birds).to_numpy())
    night = gap_dt_hi(ids, t, tail & ~id_s.isin(whole_birds).to_numpy())
    for b in w.birds:
        if b not in runs:
            w.fallback.add(b)
            continue
        if pd.isna(w.start[b]):  # the whole track: its own threshold, an exact bound
            new_bounds[b] = exact.get(b, np.nan)
            continue
        p = params[species[runs[b][0]]]
        hi = night.get(b, np.nan)
        bound = max(bounds.get(b, np.nan), hi) if not np.isnan(hi) else bounds.get(b, np.nan)
        gap_min = float(p.gap_max.value)
        if method != "flyway" or np.isnan(bound) or b not in last_old.index or p.gap_factor * bound > gap_min:
            w.fallback.add(b)
            continue
        limits[b], new_bounds[b] = gap_min, bound
    birds = w.birds
    after = {b: (w.stop_after[b].value if not pd.isna(w.stop_after.get(b, pd.NaT)) else np.iinfo(np.int64).min)
             for b in birds}
    stop_after = row_values(bird_code, bird_names, after, np.iinfo(np.int64).max)
    use = id_s.isin(birds).to_numpy() & ((t > stop_after) | (stop_after == np.iinfo(np.int64).min))
    found = detect_stops(fixes[use], method=method, max_diameter=max_diameter, min_duration=min_duration,
                         species_config=cfg, gap_limits=limits, with_life_stage=True, **opts)
    found = found[found[S.INDIVIDUAL_ID].isin(birds)]
    from flyway.analysis.countries import country_of

    if len(found):
        found = found.assign(**{S.COUNTRY: country_of(found[S.LON].to_numpy(), found[S.LAT].to_numpy())})
    old = old_stops[old_stops[S.INDIVIDUAL_ID].isin(birds)]
    cut = old[S.INDIVIDUAL_ID].map({b: w.stop_after[b] for b in birds})
    kept = old[(pd.to_datetime(old[S.END_TIME], utc=True) <= pd.to_datetime(cut, utc=True)).fillna(False).to_numpy()]
    parts = [x for x in (kept.assign(_kind=kept[S.KIND].astype(object)), found.assign(_kind=None)) if len(x)]
    stops = pd.concat(parts, ignore_index=True) if parts else found.assign(_kind=None)
    stops = stops.sort_values([S.INDIVIDUAL_ID, S.START_TIME], kind="mergesort", ignore_index=True)
    if len(stops):
        # every season label again (the last kept stop's next stop may have changed); the kept stops'
        # kinds are final, and the stored table has no life stage to work them out again
        stops[S.KIND], stops[S.SEASON] = label_stops(stops, cfg, known_kind=stops["_kind"].to_numpy(dtype=object))
    return stops[S.STOPS.names], {b: v for b, v in new_bounds.items() if b not in w.fallback}


# ------------------------------------------------------------------------------------------- tags
def tail_tags(w: Windows, fixes: pd.DataFrame, before: pd.DataFrame, params) -> tuple[pd.DataFrame, list[str]]:
    """Tag summaries (:func:`flyway.alerts.tag_summaries`) of the tail birds from their windows.

    Returns the summaries and the birds whose window cannot give them exactly
    (too few fixes for the usual interval, or no fix farther than the
    mortality radius from the last one): those need their whole track.
    """
    from flyway import alerts as A
    from flyway.geo import haversine_m

    birds = w.birds
    fx = fixes[fixes[S.INDIVIDUAL_ID].isin(birds)]
    if fx.empty:
        return pd.DataFrame(columns=before.columns if len(before.columns) else None), []
    summ = A.tag_summaries(fx).set_index(S.INDIVIDUAL_ID)
    prev = before.set_index(S.INDIVIDUAL_ID)
    ids = fx[S.INDIVIDUAL_ID].to_numpy(dtype=object)
    t = fx[S.TIMESTAMP].to_numpy(dtype="datetime64[us]").astype(np.int64)
    flagged = fx[S.QC_FLAGS].to_numpy() != 0
    lon, lat = fx[S.LON].to_numpy(float), fx[S.LAT].to_numpy(float)
    runs = id_runs(ids)
    whole: list[str] = []
    rows = []
    for b in birds:
        if b not in runs or b not in prev.index:
            whole.append(b)
            continue
        a, z = runs[b]
        exact = pd.isna(w.start[b])
        new = t[a:z] > w.since[b].value // 1000
        clean = np.flatnonzero(~flagged[a:z])
        far_ok = exact
        if not exact and clean.size:
            c = a + clean
            far_ok = bool((haversine_m(lon[c], lat[c], lon[c[-1]], lat[c[-1]]) > params.mortality_radius_m).any())
        if not exact and ((z - a) <= A.USUAL_INTERVALS or not far_ok):
            whole.append(b)
            continue
        s, p = summ.loc[b].copy(), prev.loc[b]
        if not exact:
            s["n_fixes"] = int(p["n_fixes"]) + int(new.sum())
            s["n_flagged"] = int(p["n_flagged"]) + int(flagged[a:z][new].sum())
            if clean.size == 0 and int(p["n_flagged"]) < int(p["n_fixes"]):
                s[S.LON], s[S.LAT] = p[S.LON], p[S.LAT]  # the last clean fix lies before the window
        rows.append(s.rename(b))
    tags = pd.DataFrame(rows).rename_axis(S.INDIVIDUAL_ID).reset_index() if rows else summ.iloc[:0].reset_index()
    return tags, whole
