"""Scenario files: the shipped examples run; bad files give one clear line naming the key."""
from __future__ import annotations

import copy
import tomllib
from importlib import resources

import numpy as np
import pytest

from flyway import schema as S
from flyway.analysis.scenario.config import load_scenario, parse_scenario
from flyway.analysis.scenario.run import run_scenarios
from flyway.errors import ConfigError

EXAMPLE = resources.files("flyway.analysis.scenario").joinpath("examples/gumi_haepyung_two_sitings.toml")


@pytest.fixture(scope="module")
def raw():
    return tomllib.loads(EXAMPLE.read_text("utf-8"))


def _bad(raw, mutate):
    r = copy.deepcopy(raw)
    mutate(r)
    with pytest.raises(ConfigError) as info:
        parse_scenario(r, source="plan.toml")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("plan.toml: ")
    return msg


def test_example_file_parses():
    cfg = load_scenario(str(EXAMPLE))
    assert [s.name for s in cfg.scenarios][:2] == ["A: 30 turbines at site A", "B: 30 turbines at site B"]
    assert cfg.facilities["A"].params.turbines == 30
    assert cfg.facilities["B"].params.turbines == 30  # one per point
    assert 2.0 < cfg.facilities["A"].params.width_km < 3.5
    assert cfg.facilities["L"].length_km == pytest.approx(4.9, abs=0.5)
    assert cfg.species["Grus monacha"].provenance["avoidance_basic"]["note"] == "override"


def test_missing_key(raw):
    msg = _bad(raw, lambda r: r["facility"][0].pop("rotor_radius_m"))
    assert "facility[1]: missing key rotor_radius_m" in msg


def test_negative_radius(raw):
    msg = _bad(raw, lambda r: r["facility"][1].__setitem__("rotor_radius_m", -5.0))
    assert "facility[2].rotor_radius_m = -5.0" in msg and "positive" in msg


def test_unknown_species(raw):
    msg = _bad(raw, lambda r: r["facility"][0]["exposure"].__setitem__("Grus foo", {"density_km2": [0.1] * 12}))
    assert "'Grus foo'" in msg and "unknown species" in msg and "Grus monacha" in msg


def test_share_above_one(raw):
    msg = _bad(raw, lambda r: r["facility"][2].__setitem__("marked_share", 1.2))
    assert "facility[3].marked_share = 1.2" in msg and "[0, 1]" in msg


def test_operational_share_above_one(raw):
    msg = _bad(raw, lambda r: r["facility"][1].__setitem__("operational_share", [1.1] * 12))
    assert "operational_share[Jan]" in msg and "[0, 1]" in msg


def test_species_override_out_of_range(raw):
    msg = _bad(raw, lambda r: r["species"]["Grus monacha"].__setitem__("avoidance_basic", 1.5))
    assert "avoidance_basic" in msg and "Grus monacha" in msg


def test_unknown_facility_in_scenario_and_bad_kind(raw):
    assert "'Z' is not a facility id" in _bad(raw, lambda r: r["scenario"][0].__setitem__("facilities", ["Z"]))
    assert "facility[1].kind = 'nuclear'" in _bad(raw, lambda r: r["facility"][0].__setitem__("kind", "nuclear"))


def test_bad_coordinates_and_horizon(raw):
    assert "latitude" in _bad(raw, lambda r: r["facility"][2].__setitem__("line", [[128.4, 95.0], [128.5, 36.0]]))
    assert "run.output_years" in _bad(raw, lambda r: r["run"].__setitem__("horizon_years", 20))


def test_file_errors_name_the_file(tmp_path):
    p = tmp_path / "broken.toml"
    p.write_text("title = \n")
    with pytest.raises(ConfigError, match="broken.toml: invalid TOML"):
        load_scenario(p)


def test_run_scenarios_side_by_side():
    res = run_scenarios(str(EXAMPLE), replicates=300, seed=7)
    s = res.summary.set_index([S.SPECIES, S.SCENARIO])
    hc = s.loc["Grus monacha"]
    cps = [f"{S.CPS_MEDIAN}_y{t}" for t in (10, 25, 50)]
    a, b_, c_ = "A: 30 turbines at site A", "B: 30 turbines at site B", "C: A plus the marked line"
    assert hc.loc["baseline", S.COLLISIONS_MEAN] == 0
    assert (hc.loc["baseline", cps] == 1.0).all()
    # site B lies farther from the wetland (lower typed-in densities): fewer collisions, smaller impact
    assert hc.loc[b_, S.COLLISIONS_MEAN] < hc.loc[a, S.COLLISIONS_MEAN]
    assert hc.loc[b_, cps[-1]] > hc.loc[a, cps[-1]]
    # C = A plus the line: same turbine draws plus the line's
    c = res.collisions[res.collisions[S.SCENARIO] == c_]
    assert set(c[S.FACILITY_ID]) == {"A", "L"}
    assert hc.loc[c_, S.COLLISIONS_MEAN] > hc.loc[a, S.COLLISIONS_MEAN]
    assert np.isfinite(hc[S.COLLISIONS_OVER_PBR]).all()
    assert set(res.parameters[S.SPECIES]) <= {"Grus monacha", "Antigone vipio", "(all)"}
    assert (res.parameters[S.PARAMETER_PROXY] != "").any()


def test_no_exposure_and_no_tracks_is_one_clear_error(raw):
    raw = copy.deepcopy(raw)
    for fac in raw["facility"]:
        fac.pop("exposure", None)
    cfg = parse_scenario(raw, source="plan.toml")
    with pytest.raises(ConfigError, match=r"plan\.toml: no species to assess.*--store"):
        run_scenarios(cfg, replicates=20)


def test_a_facility_without_exposure_is_named_not_silently_zero(raw):
    raw = copy.deepcopy(raw)
    raw["facility"][1].pop("exposure")  # B: nothing typed in, no store
    result = run_scenarios(parse_scenario(raw), replicates=20)
    assert "B" not in set(result.collisions[S.FACILITY_ID])
    assert any("Not assessed" in n and "facility B" in n for n in result.notes)
