"""The flyway simulator: Movebank format, determinism, planted truth, biology, imperfections."""
from __future__ import annotations

import gzip
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flyway import schema as S
from flyway._simroutes import (
    PROFILES,
    SITE,
    bearing_deg,
    destination,
    from_xyz,
    haversine_m,
    load_sites,
    slerp,
    to_xyz,
)
from flyway._simwrite import IMMATURE_SUMMERING, ISSUE
from flyway.errors import ConfigError
from flyway.simulate import DEFAULT_SEED, SimParams, simulate_flyway, write_simulation

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

# The Movebank attribute names of a "Movebank format" CSV export, spelled out here on
# purpose: this is the external format the simulator must reproduce.
MOVEBANK_EVENT_COLUMNS = [
    "event-id", "visible", "timestamp", "location-long", "location-lat", "gps:hdop",
    "gps:satellite-count", "height-above-ellipsoid", "ground-speed", "heading", "sensor-type",
    "individual-taxon-canonical-name", "tag-local-identifier", "individual-local-identifier",
    "study-name", "import-marked-outlier", "manually-marked-outlier",
]
MOVEBANK_REFERENCE_COLUMNS = [
    "tag-id", "animal-id", "animal-taxon", "deploy-on-date", "deploy-off-date", "animal-sex",
    "animal-life-stage", "study-site",
]
IND, TS, LON, LAT = ("individual-local-identifier", "timestamp", "location-long", "location-lat")
MOVEBANK_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}$")
QC_SPEED_MAX_MS = 40.0  # DESIGN.md default species speed maximum


@pytest.fixture(scope="module")
def sim():
    return simulate_flyway(n_individuals=30, days=365, seed=DEFAULT_SEED)


@pytest.fixture(scope="module")
def written(sim, tmp_path_factory):
    return write_simulation(tmp_path_factory.mktemp("sim"), sim)


def _clean(sim) -> pd.DataFrame:
    """Fixes without planted imperfections, duplicates dropped."""
    bad = sim.events.loc[sim.events[ISSUE] != "duplicate", S.EVENT_ID]
    return sim.fixes[~sim.fixes["event-id"].isin(bad)].drop_duplicates()


def _speeds(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Speed (m/s) between consecutive rows of the same bird, and the row pairs' mask."""
    ids = df[IND].astype(str).to_numpy()
    t = df[TS].astype("int64").to_numpy() / 1000.0
    lon, lat = df[LON].to_numpy(), df[LAT].to_numpy()
    same = ids[1:] == ids[:-1]
    v = haversine_m(lon[:-1], lat[:-1], lon[1:], lat[1:]) / np.maximum(np.diff(t), 1e-9)
    return v, same


# ---------------------------------------------------------------- format
def test_columns_are_exactly_the_movebank_set(sim, written):
    assert list(sim.fixes.columns) == MOVEBANK_EVENT_COLUMNS
    assert list(sim.reference.columns) == MOVEBANK_REFERENCE_COLUMNS
    header = written["fixes"].read_text().split("\n", 1)[0]
    assert header == ",".join(MOVEBANK_EVENT_COLUMNS)  # unquoted, as Movebank writes it
    assert written["reference"].read_text().split("\n", 1)[0] == ",".join(MOVEBANK_REFERENCE_COLUMNS)


def test_csv_values_look_like_a_movebank_export(written):
    raw = pd.read_csv(written["fixes"], dtype=str, keep_default_na=False, nrows=20_000)
    assert raw[TS].str.match(MOVEBANK_TIME).all()
    for col in ("visible", "import-marked-outlier", "manually-marked-outlier"):
        assert set(raw[col]) <= {"true", "false"}
    assert set(raw["sensor-type"]) == {"gps"}
    line = written["fixes"].read_text().split("\n")[1]
    assert re.match(r'^\d+,(true|false),\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3},', line)
    assert '"gps"' in line  # strings quoted, numbers bare
    ref = pd.read_csv(written["reference"], dtype=str)
    assert ref["deploy-on-date"].str.match(MOVEBANK_TIME).all()
    assert ref["deploy-off-date"].str.match(MOVEBANK_TIME).all()
    assert set(ref["animal-sex"]) <= {"m", "f"}
    assert set(ref["animal-life-stage"]) <= {"adult", "immature", "juvenile"}


def test_pandas_reads_the_csv_with_the_expected_dtypes(sim, written):
    df = pd.read_csv(written["fixes"])
    assert len(df) == len(sim.fixes) == sim.planted["rows"]
    for col, kind in [("event-id", "i"), ("visible", "b"), (LON, "f"), (LAT, "f"), ("gps:hdop", "f"),
                      ("gps:satellite-count", "i"), ("height-above-ellipsoid", "f"), ("ground-speed", "f"),
                      ("heading", "f"), ("import-marked-outlier", "b"), ("manually-marked-outlier", "b")]:
        assert df[col].dtype.kind == kind, col
    assert df.notna().all().all()
    ts = pd.to_datetime(df[TS], format="%Y-%m-%d %H:%M:%S.%f", utc=True)
    assert (ts.to_numpy() == sim.fixes[TS].to_numpy()).all()
    assert np.allclose(df[LON], sim.fixes[LON]) and np.allclose(df[LAT], sim.fixes[LAT])
    assert df["heading"].between(0, 360, inclusive="left").all()


def test_compressed_output_has_the_same_rows(sim, written, tmp_path):
    paths = write_simulation(tmp_path, sim, compress=True)
    assert paths["fixes"].name.endswith(".csv.gz")
    with gzip.open(paths["fixes"], "rb") as fh:
        assert fh.read() == written["fixes"].read_bytes()


# ---------------------------------------------------------------- determinism
def _write_bytes(tmp: Path, **kwargs) -> dict[str, bytes]:
    return {k: p.read_bytes() for k, p in write_simulation(tmp, **kwargs).items()}


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path):
    kw = dict(n_individuals=6, days=90, start="2024-02-15")
    a = _write_bytes(tmp_path / "a", seed=7, compress=True, **kw)
    b = _write_bytes(tmp_path / "b", seed=7, compress=True, **kw)
    c = _write_bytes(tmp_path / "c", seed=8, compress=True, **kw)
    assert a == b
    assert a["fixes"] != c["fixes"] and a["truth"] != c["truth"]


# ---------------------------------------------------------------- sampling
def test_fix_intervals_are_a_1_to_4_hour_duty_cycle(sim):
    df = _clean(sim)
    t = df[TS].astype("int64").to_numpy() / 1000.0
    ids = df[IND].astype(str).to_numpy()
    same = ids[1:] == ids[:-1]
    dt = np.diff(t)[same]
    per_bird = pd.Series(dt).groupby(ids[1:][same]).median() / 3600
    assert set(np.rint(per_bird).astype(int)) == {1, 2, 3, 4}
    assert np.allclose(per_bird, np.rint(per_bird), atol=0.03)
    assert dt.min() >= 3600 - 90
    assert (np.diff(t)[same] > 0).all()  # sorted by bird, then time


def test_gaps_are_silent(sim):
    assert sim.planted["gaps"] == len(sim.gaps) > 0
    fixes = sim.fixes
    for g in sim.gaps.itertuples():
        inside = (fixes[IND] == getattr(g, S.INDIVIDUAL_ID)) & (fixes[TS] >= getattr(g, S.START_TIME)) \
            & (fixes[TS] < getattr(g, S.END_TIME))
        assert not inside.any()
    span = (sim.gaps[S.END_TIME] - sim.gaps[S.START_TIME]).dt.total_seconds() / 86_400
    assert span.between(1, 5).all()


# ---------------------------------------------------------------- planted imperfections
def test_planted_duplicates_and_outlier_marks_match_the_file(sim):
    f, p = sim.fixes, sim.planted
    assert f.duplicated().sum() == p["duplicate_rows"] > 0
    assert f.duplicated(subset=["event-id"]).sum() == p["duplicate_rows"]
    assert f["import-marked-outlier"].sum() == p["import_marked_outliers"] > 0
    assert f["manually-marked-outlier"].sum() == p["manually_marked_outliers"] > 0
    assert (f["visible"] == ~(f["import-marked-outlier"] | f["manually-marked-outlier"])).all()
    outlier_ids = set(sim.events.loc[sim.events[ISSUE] == "speed_outlier", S.EVENT_ID])
    assert len(outlier_ids) == p["speed_outliers"]
    assert set(f.loc[~f["visible"], "event-id"]) <= outlier_ids  # only planted outliers are marked


def test_speed_outliers_are_fast_on_both_sides_and_clean_tracks_are_not(sim):
    f = sim.fixes.drop_duplicates().reset_index(drop=True)
    v, same = _speeds(f)
    rows = np.flatnonzero(f["event-id"].isin(sim.events.loc[sim.events[ISSUE] == "speed_outlier", S.EVENT_ID]))
    assert len(rows) == sim.planted["speed_outliers"] > 0
    assert (same[rows - 1] & same[rows]).all()  # never the first or last fix of a bird
    assert (v[rows - 1] > QC_SPEED_MAX_MS).all() and (v[rows] > QC_SPEED_MAX_MS).all()
    v_clean, same_clean = _speeds(_clean(sim))
    assert v_clean[same_clean].max() < 20.0  # the fastest crane flies 17.5 m/s


def test_low_satellite_fixes_are_counted(sim):
    f = sim.fixes
    low = f["gps:satellite-count"] < 4
    assert low.sum() == sim.planted["low_satellite_fixes"] > 0
    assert (f.loc[low, "gps:hdop"] > 5).all()
    assert (f.loc[~low, "gps:hdop"] <= 5).all()


def test_fixes_outside_the_deployment_are_counted(sim):
    f, ref = sim.fixes, sim.reference.set_index("animal-id")
    on = f[IND].astype(str).map(ref["deploy-on-date"])
    off = f[IND].astype(str).map(ref["deploy-off-date"])
    assert (f[TS] < on).sum() == sim.planted["fixes_before_deploy_on"] > 0
    assert (f[TS] > off).sum() == sim.planted["fixes_after_deploy_off"] > 0
    assert (ref["deploy-on-date"] < ref["deploy-off-date"]).all()


# ---------------------------------------------------------------- truth and biology
def test_every_truth_stop_has_fixes_near_its_site(sim):
    sites = load_sites().set_index([SITE, S.SPECIES])
    clean = _clean(sim)
    by_bird = {k: g for k, g in clean.groupby(IND, observed=True)}
    for stop in sim.truth.itertuples(index=False):
        g = by_bird[getattr(stop, S.INDIVIDUAL_ID)]
        inside = g[(g[TS] >= getattr(stop, S.START_TIME)) & (g[TS] <= getattr(stop, S.END_TIME))]
        assert len(inside) == getattr(stop, S.N_FIXES) >= 2
        d = haversine_m(inside[LON].to_numpy(), inside[LAT].to_numpy(), stop.lon, stop.lat)
        assert d.max() < 1_000.0  # within the 0.4-0.9 km day range plus GPS error
        site = sites.loc[(getattr(stop, SITE), getattr(stop, S.SPECIES))]
        assert haversine_m(stop.lon, stop.lat, site[S.LON], site[S.LAT]) < 5_100.0
    assert set(sim.truth[S.KIND]) == {S.KIND_BREEDING, S.KIND_WINTERING, S.KIND_STOPOVER}


def test_truth_stops_do_not_overlap_and_birds_move_between_them(sim):
    for _, g in sim.truth.groupby(S.INDIVIDUAL_ID):
        assert (g[S.START_TIME].to_numpy()[1:] > g[S.END_TIME].to_numpy()[:-1]).all()
        assert (g[S.END_TIME] >= g[S.START_TIME]).all()


def test_all_three_species_and_real_sites(sim):
    taxa = set(sim.fixes["individual-taxon-canonical-name"].astype(str))
    assert taxa == {"Platalea minor", "Grus monacha", "Antigone vipio"}
    sites = load_sites()
    used = sim.truth.merge(sites, on=[SITE, S.SPECIES], suffixes=("", "_site"))
    assert len(used) == len(sim.truth)  # every stop is at a site of its own species
    roles = used["role"].replace({"breeding": S.KIND_BREEDING, "wintering": S.KIND_WINTERING,
                                  "stopover": S.KIND_STOPOVER})
    normal = ~used[IMMATURE_SUMMERING]
    assert (roles[normal] == used.loc[normal, S.KIND]).all()


def test_immatures_summer_away_from_breeding_sites(sim):
    summering = sim.truth[sim.truth[IMMATURE_SUMMERING]]
    assert sim.planted["immature_summering_stops"] == len(summering) > 0
    assert (summering[S.KIND] == S.KIND_STOPOVER).all()
    stage = sim.reference.set_index("animal-id")["animal-life-stage"]
    assert set(stage[summering[S.INDIVIDUAL_ID]]) == {"immature"}
    months = summering[S.START_TIME].dt.month
    assert months.between(2, 7).all()  # they settle in spring and stay the summer
    assert ((summering[S.END_TIME] - summering[S.START_TIME]).dt.days >= 30).all()


def test_species_timing_and_speeds_follow_the_parameter_table(sim):
    ref = sim.reference.set_index("animal-id")
    winter = sim.truth[(sim.truth[S.KIND] == S.KIND_WINTERING)
                       & (sim.truth[S.START_TIME] < pd.Timestamp("2024-01-02", tz="UTC"))]
    for stop in winter.itertuples(index=False):
        prof = PROFILES[ref.loc[getattr(stop, S.INDIVIDUAL_ID), "animal-taxon"]]
        lo, hi = (pd.Timestamp(f"2024-{d}", tz="UTC") for d in prof.spring_departure)
        end = getattr(stop, S.END_TIME)
        if end < pd.Timestamp("2024-12-01", tz="UTC"):  # the bird left, not a tag gap at the end
            assert lo - pd.Timedelta("6D") <= end <= hi + pd.Timedelta("2D")  # a gap can end it early
    breeding = sim.truth[sim.truth[S.KIND] == S.KIND_BREEDING]
    assert ((breeding[S.END_TIME] - breeding[S.START_TIME]).dt.days >= 30).all()
    fast = sim.fixes[sim.fixes["ground-speed"] > 5]  # in flight
    for taxon, g in fast.groupby("individual-taxon-canonical-name", observed=True):
        lo, hi = PROFILES[taxon].ground_speed_ms
        assert g["ground-speed"].between(lo * 0.75, hi * 1.25).all()


def test_simulation_can_start_in_summer():
    sim = simulate_flyway(n_individuals=9, days=20, seed=3, start="2024-07-01",
                          life_stage_shares=(1.0, 0.0, 0.0))
    first = sim.truth.groupby(S.INDIVIDUAL_ID).first()
    assert (first[S.KIND] == S.KIND_BREEDING).all()
    assert sim.fixes[TS].min() >= pd.Timestamp("2024-07-01", tz="UTC")
    assert sim.fixes[TS].max() < pd.Timestamp("2024-07-21", tz="UTC")


def test_species_selection_and_multi_year_runs():
    sim = simulate_flyway(n_individuals=4, days=800, seed=5, species=["Grus monacha"])
    assert set(sim.fixes["individual-taxon-canonical-name"].astype(str)) == {"Grus monacha"}
    winters = sim.truth[sim.truth[S.KIND] == S.KIND_WINTERING]
    assert (winters.groupby(S.INDIVIDUAL_ID).size() >= 3).all()  # 2024, 2024/25, 2025/26


# ---------------------------------------------------------------- parameters
@pytest.mark.parametrize("kwargs, word", [
    (dict(n_individuals=0), "n_individuals"), (dict(days=0), "days"), (dict(seed=-1), "seed"),
    (dict(start="not a date"), "start"), (dict(species=["Grus grus"]), "species"),
    (dict(duplicate_rate=0.5), "duplicate_rate"), (dict(life_stage_shares=(0.5, 0.1, 0.1)), "life_stage_shares"),
    (dict(interval_hours=(0.1,)), "interval_hours"),
])
def test_bad_parameters_are_rejected_with_the_name(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        simulate_flyway(**{"n_individuals": 2, "days": 5, **kwargs})


def test_write_simulation_refuses_sim_and_options(sim, tmp_path):
    with pytest.raises(ConfigError):
        write_simulation(tmp_path, sim, seed=3)


def test_parameters_are_frozen():
    p = SimParams()
    with pytest.raises(AttributeError):
        p.days = 3  # type: ignore[misc]


# ---------------------------------------------------------------- properties and geodesy
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 5), days=st.integers(1, 120),
       month=st.integers(1, 12))
def test_invariants_hold_for_any_seed_and_period(seed, n, days, month):
    sim = simulate_flyway(n_individuals=n, days=days, seed=seed, start=f"2025-{month:02d}-01")
    f = sim.fixes
    start = pd.Timestamp(f"2025-{month:02d}-01", tz="UTC")
    assert f[TS].between(start, start + pd.Timedelta(days=days)).all()
    assert f[IND].nunique() == n and len(sim.reference) == n
    clean = _clean(sim)
    assert clean[LON].between(100, 140).all() and clean[LAT].between(18, 66).all()
    v, same = _speeds(clean)
    assert (v[same] < 20.0).all()
    if days >= 30:  # a month always holds a stop of every bird
        assert set(sim.truth[S.INDIVIDUAL_ID]) == set(sim.reference["animal-id"])
    assert (sim.truth[S.N_FIXES] >= 2).all()


def test_geodesy_known_answers():
    assert haversine_m(0.0, 0.0, 1.0, 0.0) == pytest.approx(111_195.08, rel=1e-6)
    lon, lat = from_xyz(slerp(to_xyz(0.0, 0.0), to_xyz(90.0, 0.0), 0.5))
    assert (float(lon), float(lat)) == pytest.approx((45.0, 0.0))
    lon2, lat2 = destination(126.0, 37.0, 30.0, 250_000.0)
    assert haversine_m(126.0, 37.0, lon2, lat2) == pytest.approx(250_000.0, rel=1e-9)
    assert bearing_deg(126.0, 37.0, lon2, lat2) == pytest.approx(30.0, abs=1e-6)
    assert bearing_deg(0.0, 0.0, 0.0, 1.0) == pytest.approx(0.0)


# ---------------------------------------------------------------- package data
def test_packaged_sites_are_the_shared_facts():
    packaged = load_sites()
    assert {"Platalea minor", "Grus monacha", "Antigone vipio"} == set(packaged[S.SPECIES])
    assert packaged["source"].notna().all()
    shared = SHARED_DATA / "sites" / "flagship_sites.csv"
    if not shared.is_file():
        pytest.skip("../shared/data is absent")
    pd.testing.assert_frame_equal(packaged, pd.read_csv(io.StringIO(shared.read_text("utf-8"))))
