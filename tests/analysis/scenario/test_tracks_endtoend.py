"""Exposure from tracks against an independent per-segment computation, and end to end from a store."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely

import flyway
from flyway import schema as S
from flyway.analysis.runner import run_stops
from flyway.analysis.scenario import scenario_command
from flyway.analysis.scenario.tracks import TrackExposure, TrackParams
from flyway.errors import StoreError
from tests.analysis.scenario.test_tracks import GM, _config, _farm

# a concave footprint (an L) and a zig-zag line, both around 128.4 E 36.2 N
L_SHAPE = [[128.38, 36.18], [128.43, 36.18], [128.43, 36.195], [128.40, 36.195], [128.40, 36.22], [128.38, 36.22],
           [128.38, 36.18]]
ZIGZAG = [[128.36, 36.15], [128.39, 36.25], [128.42, 36.15], [128.45, 36.25]]


def _random_walks(n_birds=3, n_fixes=70, seed=4):
    rng = np.random.default_rng(seed)
    frames = []
    for b in range(n_birds):
        step = rng.normal(0, 0.006, (n_fixes, 2))
        xy = np.array([128.405, 36.20]) + np.cumsum(step, axis=0)
        minutes = np.cumsum(rng.uniform(2, 30, n_fixes))
        frames.append(pd.DataFrame({S.INDIVIDUAL_ID: f"r{b}", S.SPECIES: GM,
                                    S.TIMESTAMP: pd.Timestamp("2024-04-28", tz="UTC") + pd.to_timedelta(minutes, "min"),
                                    S.LON: xy[:, 0], S.LAT: xy[:, 1], S.ALTITUDE_M: 100.0, S.QC_FLAGS: 0}))
    return pd.concat(frames, ignore_index=True)


def _brute_force(fixes, footprint, line, params):
    """Per segment, in an azimuthal equidistant projection (not the module's equal-area one)."""
    aeqd = pyproj.Transformer.from_crs("EPSG:4326", "+proj=aeqd +lat_0=36.2 +lon_0=128.4 +datum=WGS84", always_xy=True)
    poly = shapely.Polygon(np.column_stack(aeqd.transform(*np.asarray(footprint).T)))
    wire = shapely.LineString(np.column_stack(aeqd.transform(*np.asarray(line).T)))
    inside_by_month, transits, crossings = {}, 0, 0
    geod = pyproj.Geod(ellps="WGS84")
    for _, bird in fixes.sort_values([S.INDIVIDUAL_ID, S.TIMESTAMP]).groupby(S.INDIVIDUAL_ID):
        was_inside = False
        rows = bird.to_dict("records")
        for a, b in zip(rows[:-1], rows[1:]):
            dt = (b[S.TIMESTAMP] - a[S.TIMESTAMP]).total_seconds()
            dist = geod.inv(a[S.LON], a[S.LAT], b[S.LON], b[S.LAT])[2]
            if not (0 < dt <= params.max_gap_h * 3600 and dist >= params.min_flight_speed_ms * dt):
                was_inside = False
                continue
            seg = shapely.LineString(np.column_stack(aeqd.transform([a[S.LON], b[S.LON]], [a[S.LAT], b[S.LAT]])))
            share = seg.intersection(poly).length / seg.length
            if share > 0:
                mid = a[S.TIMESTAMP] + pd.Timedelta(seconds=dt / 2)
                inside_by_month[mid.month] = inside_by_month.get(mid.month, 0.0) + share * dt
                transits += not was_inside
            was_inside = share > 0
            hit = seg.intersection(wire)
            crossings += len(shapely.get_parts(hit)) if not hit.is_empty else 0
    return inside_by_month, transits, crossings


def test_time_inside_transits_and_crossings_match_a_per_segment_computation():
    fixes = _random_walks()
    line = {"id": "Z", "kind": "power_line", "line": ZIGZAG, "wire_low_m": 18, "wire_top_m": 32,
            "exposure": {GM: {"crossings_day": 1, "crossings_night": 1}}}
    cfg = _config(_farm("A", L_SHAPE), line)
    params = TrackParams()
    tr = TrackExposure(fixes, None, params=params)
    tr.prepare(cfg, 10, np.random.SeedSequence(0))
    inside, transits, crossings = _brute_force(fixes, L_SHAPE, ZIGZAG, params)
    assert len(fixes) == 210 and transits >= 5 and crossings >= 5  # the walks do cross both
    pas = tr.tables.passages
    got = {m + 1: float(pas["time_inside_s"][pas["month"] == m].sum()) for m in np.unique(pas["month"])}
    assert set(got) == set(inside)
    for m in inside:
        assert got[m] == pytest.approx(inside[m], rel=1e-3)
    table = tr.table().set_index(S.FACILITY_ID)
    assert table.loc["A", S.TRACKED_TRANSITS] == transits
    assert table.loc["Z", S.TRACKED_CROSSINGS] == crossings


@pytest.fixture
def sim_store_with_stops(tmp_path):
    sim = flyway.write_simulation(tmp_path / "sim", n_individuals=6, days=120, seed=5)
    store = tmp_path / "store"
    flyway.ingest([sim["fixes"]], store=store, reference=sim["reference"])
    return store


def _on_route(store):
    """A 4 x 4 km footprint centred on the middle of a fast flight segment of a hooded crane."""
    fx = flyway.read_fixes(store, species=GM)
    fx = fx[fx[S.QC_FLAGS] == 0].sort_values([S.INDIVIDUAL_ID, S.TIMESTAMP])
    nxt = fx.groupby(S.INDIVIDUAL_ID)[[S.LON, S.LAT, S.TIMESTAMP]].shift(-1)
    dt = (nxt[S.TIMESTAMP] - fx[S.TIMESTAMP]).dt.total_seconds()
    speed_ms = np.hypot((nxt[S.LON] - fx[S.LON]) * 90, (nxt[S.LAT] - fx[S.LAT]) * 111) * 1000 / dt
    ok = (dt > 0) & (dt <= 3 * 3600) & (speed_ms > 5) & (speed_ms < 30)  # a migratory flight, not an outlier
    seg = fx[ok].iloc[len(fx[ok]) // 2]
    nx = nxt[ok].iloc[len(fx[ok]) // 2]
    lon, lat = (seg[S.LON] + nx[S.LON]) / 2, (seg[S.LAT] + nx[S.LAT]) / 2
    d = 0.02
    return [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d], [lon - d, lat - d]]


def _scenario_file(path, footprint, density):
    fp = ", ".join(f"[{x:.6f}, {y:.6f}]" for x, y in footprint)
    path.write_text(f"""
title = "on the simulated route"
[run]
horizon_years = 10
replicates = 200
seed = 7
output_years = [10]
[[facility]]
id = "R"
kind = "wind_farm"
footprint = [{fp}]
turbines = 20
rotor_radius_m = 60.0
hub_height_m = 100.0
max_chord_m = 4.0
rpm = {{ mean = 10.0, sd = 1.0 }}
pitch_deg = 10.0
operational_share = [0.85, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85]
[facility.exposure."{GM}"]
density_km2 = [{", ".join([str(density)] * 12)}]
[[scenario]]
name = "R"
facilities = ["R"]
""")
    return path


def test_scenario_command_from_a_store_uses_the_tracks(sim_store_with_stops, tmp_path):
    store = sim_store_with_stops
    plan = _scenario_file(tmp_path / "plan.toml", _on_route(store), 0.0)
    with pytest.raises(StoreError, match="no stops table; run `flyway stops"):
        scenario_command(store, plan, tmp_path / "out0")
    run_stops(store)
    summary = scenario_command(store, plan, tmp_path / "out", replicates=200, seed=7)
    json.dumps(summary)  # JSON-ready
    src = {(e[S.FACILITY_ID], e[S.SPECIES]): e[S.EXPOSURE_SOURCE] for e in summary["exposure"]}
    assert src[("R", GM)] == "tracks"  # typed-in density 0 would give no collisions at all
    coll = pd.read_csv(summary["csv"]["collisions"])
    row = coll[coll[S.SPECIES] == GM].iloc[0]
    assert row[S.TRACKED_TRANSITS] >= 1 and row[S.COLLISIONS_MEAN] > 0
    exposure = pd.read_csv(summary["csv"]["exposure"])
    assert (exposure[S.SPECIES] == GM).any() and exposure[S.TRACKED_INDIVIDUALS].max() == 2
    # the simulated store's other species were assessed too (tracked, in the species table)
    assert set(coll[S.SPECIES]) == {"Grus monacha", "Antigone vipio", "Platalea minor"}
    # without the store: the typed-in (zero) densities
    typed = scenario_command(None, plan, tmp_path / "typed")
    assert typed["scenarios"][0][S.COLLISIONS_MEAN] == 0
