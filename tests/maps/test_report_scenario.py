"""The planner report's section on proposed energy infrastructure (issue 9, item 8)."""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import pytest

from flyway import schema as S
from flyway.analysis.scenario.config import load_scenario, parse_scenario
from flyway.analysis.scenario.report import read_outputs, write_csv, write_facilities, write_html
from flyway.analysis.scenario.run import run_scenarios
from flyway.errors import InputError
from flyway.maps.report import report

EXAMPLE = Path(__file__).resolve().parents[2] / "analysis" / "scenario" / "examples" / "gumi_haepyung_two_sitings.toml"


@pytest.fixture(scope="module")
def scenario_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenario")
    cfg = load_scenario(EXAMPLE)
    raw = dict(cfg.raw)
    raw["facility"] = [dict(f) for f in raw["facility"]]
    raw["facility"][1]["name"] = "<script>window.__xss=1</script> Site B"  # untrusted text travels to the report
    cfg = parse_scenario(raw, source=str(EXAMPLE))
    result = run_scenarios(cfg, replicates=200, seed=1)
    write_csv(result, out)
    write_html(result, out)
    write_facilities(cfg, out)
    return out, result


def test_read_outputs_round_trip(scenario_dir):
    out, result = scenario_dir
    got = read_outputs(out)
    assert list(got["facilities"][S.FACILITY_ID]) == ["A", "B", "L"]
    assert set(got["facilities"].geom_type) == {"Polygon", "MultiPoint", "LineString"}
    assert len(got["summary"]) == len(result.summary)
    assert got["html"] == out / "scenario.html"


def test_read_outputs_refuses_another_folder(tmp_path):
    with pytest.raises(InputError, match="--out folder of `flyway scenario`"):
        read_outputs(tmp_path)
    with pytest.raises(InputError, match="not found"):
        read_outputs(tmp_path / "missing")


def test_report_has_scenario_section(demo_store, scenario_dir, tmp_path):
    out, result = scenario_dir
    index = report(demo_store, tmp_path / "report", with_map=False, scenario=out)
    page = index.read_text("utf-8")
    assert "Proposed energy infrastructure: scenarios" in page
    for name in result.summary[S.SCENARIO].unique():
        assert html.escape(name, quote=True) in page or html.escape(name, quote=False) in page
    assert (tmp_path / "report" / "scenario.html").is_file()
    assert "<script>window.__xss" not in page
    facilities = (tmp_path / "report" / "scenario_facilities.geojson").read_text("utf-8")
    assert "Site B" in facilities
    summary = pd.read_csv(tmp_path / "report" / "scenario_summary.csv")
    a = summary[(summary[S.SCENARIO] == "A: 30 turbines at site A") & (summary[S.SPECIES] == "Grus monacha")]
    assert a[S.COLLISIONS_MEAN].iloc[0] == pytest.approx(
        result.summary.set_index([S.SCENARIO, S.SPECIES]).loc[("A: 30 turbines at site A", "Grus monacha"),
                                                              S.COLLISIONS_MEAN])
