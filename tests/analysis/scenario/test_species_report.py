"""The packaged species table (sources, proxies) and the report writers."""
from __future__ import annotations

import csv
import html
from pathlib import Path

import numpy as np
import pytest

from flyway import schema as S
from flyway.analysis.scenario import scenario_command
from flyway.analysis.scenario.distributions import BetaMoments, Bootstrap, TruncNormal, as_dist
from flyway.analysis.scenario.report import write_csv, write_html
from flyway.analysis.scenario.run import run_scenarios
from flyway.analysis.scenario.species import fhd_from_bands, load_species_table
from flyway.errors import ConfigError

SPECIES_CSV = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "species" / "flagship_species_parameters.csv"
FLAGSHIPS = ("Platalea minor", "Grus monacha", "Antigone vipio")


def test_every_value_has_a_source_and_proxies_are_visible():
    table = load_species_table()
    assert set(table.species) == set(FLAGSHIPS) and table.version
    prov = table.provenance_table()
    assert (prov[S.PARAMETER_SOURCE].str.len() > 0).all()
    proxies = prov[prov[S.PARAMETER_PROXY] != ""]
    # e.g. the crane flight speed is a common-crane proxy
    assert ((proxies[S.SPECIES] == "Grus monacha") & (proxies[S.PARAMETER] == "flight_speed_ms")).any()
    for name in FLAGSHIPS:
        entry = table[name]
        entry.band()
        entry.demography()
    with pytest.raises(ConfigError, match="unknown"):
        table["Grus foo"]


@pytest.mark.realdata
def test_sources_are_citation_keys_of_the_shared_table():
    if not SPECIES_CSV.is_file():
        pytest.skip("shared/data/species is not available")
    with SPECIES_CSV.open() as fh:
        known = {key.strip() for row in csv.DictReader(fh) for key in row["source"].split(";")}  # the CSV's own header
    prov = load_species_table().provenance_table()
    for cell in prov[S.PARAMETER_SOURCE]:
        for key in cell.split(";"):
            assert key.strip() in known, key


def test_fhd_from_bands():
    fhd = fhd_from_bands([0, 2, 4], [0.2, 0.4])
    np.testing.assert_allclose(fhd, [0.1, 0.1, 0.2, 0.2])
    with pytest.raises(ConfigError):
        fhd_from_bands([0, 2], [0.1, 0.2])


def test_distributions_zero_sd_is_exact_and_beta_checks_moments():
    rng = np.random.default_rng(0)
    assert np.array_equal(TruncNormal(0.3, 0.0).sample(rng, 4), np.full(4, 0.3))
    assert np.array_equal(BetaMoments(0.98, 0.0).sample(rng, 3), np.full(3, 0.98))
    x = BetaMoments(0.9, 0.05).sample(rng, 50_000)
    assert x.mean() == pytest.approx(0.9, abs=2e-3) and x.std() == pytest.approx(0.05, abs=2e-3)
    t = TruncNormal(1.0, 2.0).sample(rng, 10_000)
    assert t.min() >= 0
    with pytest.raises(ConfigError, match="sd"):
        BetaMoments(0.98, 0.2)
    rows = Bootstrap(np.array([[1.0, 0.0], [0.0, 1.0]])).sample(rng, 10)
    assert rows.shape == (10, 2)
    with pytest.raises(ConfigError, match="rpm"):
        as_dist({"sd": 1}, name="rpm")


def test_report_escapes_user_strings_and_writes_tables(tmp_path):
    example = Path(__file__).resolve().parents[3] / "analysis" / "scenario" / "examples" / "gumi_haepyung_two_sitings.toml"
    raw = example.read_text().replace('name = "A: 30 turbines at site A"', 'name = "A <script>alert(1)</script>"') \
        .replace('title = "', 'title = "<b>x</b> ')
    p = tmp_path / "s.toml"
    p.write_text(raw)
    res = run_scenarios(str(p), replicates=100, seed=1)
    paths = write_csv(res, tmp_path / "out")
    page = write_html(res, tmp_path / "out").read_text()
    assert "<script>alert(1)" not in page and html.escape("A <script>alert(1)</script>") in page
    assert "<b>x</b>" not in page
    assert "data:image/png;base64," in page
    assert set(paths) == {"summary", "collisions", "metrics", "trajectories", "parameters"}
    with paths["summary"].open() as fh:
        header = next(csv.reader(fh))
    assert f"{S.CPS_MEDIAN}_y50" in header and S.COLLISIONS_OVER_PBR in header


def test_scenario_command_summary(tmp_path):
    example = Path(__file__).resolve().parents[3] / "analysis" / "scenario" / "examples" / "gumi_haepyung_two_sitings.toml"
    summary = scenario_command(None, example, tmp_path / "run", replicates=50, seed=2)
    assert Path(summary["html"]).is_file() and summary["replicates"] == 50
    assert {row[S.SCENARIO] for row in summary["scenarios"]} >= {"baseline", "B: 30 turbines at site B"}
