"""Map layers of a scenario: proposed facilities with escaped popups, and the collision-sensitivity choropleth."""
from __future__ import annotations

from pathlib import Path

import folium
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from flyway import schema as S
from flyway.analysis.scenario.config import load_scenario, parse_scenario
from flyway.analysis.scenario.report import facilities_frame
from flyway.analysis.scenario.sensitivity import EXPECTED_COLLISIONS, sensitivity_grid
from flyway.errors import ConfigError
from flyway.maps import layers as L
from flyway.maps.gap_map import build_gap_map
from flyway.maps.scenario_layers import (FACILITIES_LAYER, SENSITIVITY_COLOURS, _log_classes, add_facilities,
                                         add_sensitivity, facility_popups, sensitivity_cells)

from .conftest import PAYLOADS

EXAMPLE = Path(__file__).resolve().parents[2] / "analysis" / "scenario" / "examples" / "gumi_haepyung_two_sitings.toml"
GM, WNC = "Grus monacha", "Antigone vipio"


def _config(names=None):
    cfg = load_scenario(EXAMPLE)
    if names is None:
        return cfg
    raw = dict(cfg.raw)
    raw["facility"] = [dict(f, name=n) for f, n in zip(raw["facility"], names)]
    return parse_scenario(raw, source=str(EXAMPLE))


def _collisions():
    return pd.DataFrame({S.SCENARIO: ["A", "A", "B", "A + line", "A + line"],
                         S.SPECIES: [GM, WNC, GM, GM, GM], S.FACILITY_ID: ["A", "A", "B", "A", "L"],
                         S.COLLISIONS_MEAN: [1.2, 0.3, 0.2, 1.2, 0.04], S.COLLISIONS_Q2_5: [0.5, 0.1, 0.05, 0.5, 0.0],
                         S.COLLISIONS_Q97_5: [2.1, 0.6, 0.4, 2.1, 0.12]})


def _html(m: folium.Map) -> str:
    L.finish_legends(m)
    folium.LayerControl(collapsed=False).add_to(m)
    return m.get_root().render()


def _geojson_data(group: folium.FeatureGroup) -> list[dict]:
    return [child.data for child in group._children.values() if isinstance(child, folium.GeoJson)]


# --------------------------------------------------------------------------- facilities
def test_popups_give_design_and_collisions_with_their_interval():
    props = facility_popups(facilities_frame(_config()), _collisions())
    assert props["id"] == ["A", "B", "L"]
    assert props["kind"] == ["wind farm", "wind farm", "power line"]
    assert props["design"][0] == "30 turbines, rotor radius 68 m, hub height 110 m"
    assert props["design"][2].startswith("wires 18–32 m above ground, 80% marked, ")
    # the same numbers in two scenarios are shown once; each species on its own line
    assert props["collisions"][0] == "Grus monacha: 1.2 (0.5–2.1)<br>Antigone vipio: 0.3 (0.1–0.6)"
    assert props["collisions"][2] == "Grus monacha: 0.04 (0–0.12)"
    no_table = facility_popups(facilities_frame(_config()))
    assert no_table["collisions"] == ["–"] * 3


def test_different_numbers_per_scenario_name_the_scenario():
    table = pd.concat([_collisions(), pd.DataFrame({S.SCENARIO: ["B alone"], S.SPECIES: [GM], S.FACILITY_ID: ["B"],
                                                    S.COLLISIONS_MEAN: [0.25], S.COLLISIONS_Q2_5: [0.06],
                                                    S.COLLISIONS_Q97_5: [0.5]})])
    line = facility_popups(facilities_frame(_config()), table)["collisions"][1]
    assert line == "Grus monacha (B): 0.2 (0.05–0.4)<br>Grus monacha (B alone): 0.25 (0.06–0.5)"


def test_untrusted_names_are_escaped_and_the_layer_is_named():
    cfg = _config(names=[PAYLOADS[0], PAYLOADS[1], PAYLOADS[2]])
    m = folium.Map()
    extra = pd.DataFrame({S.SCENARIO: [PAYLOADS[0]], S.SPECIES: [GM], S.FACILITY_ID: ["B"], S.COLLISIONS_MEAN: [0.3],
                          S.COLLISIONS_Q2_5: [0.1], S.COLLISIONS_Q97_5: [0.6]})
    group = add_facilities(m, cfg, pd.concat([_collisions(), extra]))
    page = _html(m)
    assert FACILITIES_LAYER in page
    assert "window.__xss" in page  # the names are there ...
    for payload in PAYLOADS:
        assert payload not in page  # ... but never as markup
    features = [f for data in _geojson_data(group) for f in data["features"]]
    by_id = {f["properties"]["id"]: f["properties"] for f in features}
    assert by_id["A"]["name"].startswith("&lt;script&gt;window.__xss=1")
    assert by_id["L"]["name"] == "&#x27;&gt;&lt;svg onload=window.__xss=1&gt;"
    assert "(&lt;script&gt;window.__xss=1" in by_id["B"]["collisions"]  # a scenario name, escaped too
    turbines = [f for f in features if f["properties"]["id"] == "B"]
    assert len(turbines) == 30 and all(f["geometry"]["type"] == "Point" for f in turbines)
    assert {f["geometry"]["type"] for f in features if f["properties"]["id"] != "B"} == {"Polygon", "LineString"}
    assert "proposed power line" in page and "expected collisions per year, mean (95 % interval)" in page


def test_add_facilities_takes_the_outputs_of_a_run(tmp_path):
    from flyway.analysis.scenario.report import read_outputs, write_csv, write_facilities
    from flyway.analysis.scenario.run import run_scenarios

    cfg = _config()
    result = run_scenarios(cfg, replicates=50, seed=1)
    write_csv(result, tmp_path)
    write_facilities(cfg, tmp_path)
    out = read_outputs(tmp_path)
    props = facility_popups(out["facilities"], out["collisions"])
    mean_a = result.collisions.query("facility_id == 'A' and species == @GM")[S.COLLISIONS_MEAN].iloc[0]
    assert props["collisions"][0].startswith(f"Grus monacha: {mean_a:.3g} (")
    m = folium.Map()
    add_facilities(m, out["facilities"], collisions=out["collisions"])
    assert FACILITIES_LAYER in _html(m)


def test_bad_inputs_raise_one_clear_line():
    with pytest.raises(ConfigError, match="expected a scenario file, a ScenarioConfig or the GeoDataFrame"):
        add_facilities(folium.Map(), 42)
    with pytest.raises(ConfigError, match="collisions: missing column collisions_q2.5"):
        add_facilities(folium.Map(), _config(), _collisions().drop(columns=S.COLLISIONS_Q2_5))


# --------------------------------------------------------------------------- sensitivity
def _grid(values: np.ndarray, species=(GM,)) -> xr.Dataset:
    """A hand-made grid of expected collisions (species, lat, lon) on 0.1-degree cells from (128, 36)."""
    ny, nx = values.shape[1:]
    lat_e, lon_e = 36.0 + 0.1 * np.arange(ny + 1), 128.0 + 0.1 * np.arange(nx + 1)
    return xr.Dataset({EXPECTED_COLLISIONS: ((S.SPECIES, S.LAT, S.LON), values.astype(np.float32)),
                       "lat_bnds": ((S.LAT, "nv"), np.column_stack([lat_e[:-1], lat_e[1:]])),
                       "lon_bnds": ((S.LON, "nv"), np.column_stack([lon_e[:-1], lon_e[1:]]))},
                      coords={S.SPECIES: list(species), S.LAT: (lat_e[:-1] + lat_e[1:]) / 2,
                              S.LON: (lon_e[:-1] + lon_e[1:]) / 2})


def test_cells_without_flights_are_omitted_and_species_are_summed():
    values = np.zeros((2, 3, 4))
    values[0, 1, 2] = 0.5
    values[1, 1, 2] = 0.25
    values[1, 0, 0] = 0.01
    cells = sensitivity_cells(_grid(values, species=(GM, WNC)))
    assert len(cells) == 2 and cells.attrs["block"] == 1
    top = cells.sort_values("total").iloc[-1]
    assert top["total"] == pytest.approx(0.75) and top[GM] == pytest.approx(0.5) and top[WNC] == pytest.approx(0.25)
    assert (top["lon_min"], top["lat_min"], top["lon_max"], top["lat_max"]) == pytest.approx((128.2, 36.1, 128.3, 36.2))
    only = sensitivity_cells(_grid(values, species=(GM, WNC)), species=WNC)
    assert sorted(only["total"]) == pytest.approx([0.01, 0.25])


def test_above_the_budget_cells_merge_into_blocks_showing_their_highest_cell():
    values = np.zeros((1, 4, 4))
    values[0, 0, 0], values[0, 1, 1], values[0, 0, 3], values[0, 3, 3] = 0.1, 0.4, 0.2, 0.3
    cells = sensitivity_cells(_grid(values), max_cells=3)
    assert cells.attrs["block"] == 2
    got = sorted(zip(cells["lon_min"].round(6), cells["lat_min"].round(6), cells["total"].round(6)))
    assert got == [(128.0, 36.0, 0.4), (128.2, 36.0, 0.2), (128.2, 36.2, 0.3)]


def test_log_colour_classes_are_decades():
    colours, items = _log_classes(np.array([0.5, 0.05, 0.0005, 0.0001]))
    assert list(colours) == [SENSITIVITY_COLOURS[-1], SENSITIVITY_COLOURS[-2], SENSITIVITY_COLOURS[-4],
                             SENSITIVITY_COLOURS[-4]]
    assert [label for _, label in items] == ["0.1 – 1", "0.01 – 0.1", "0.001 – 0.01", "< 0.001"]
    colours, items = _log_classes(np.array([3e-9, 2.0]))  # ten decades: the lowest classes are pooled
    assert len(items) == len(SENSITIVITY_COLOURS) and items[-1][1] == "< 0.0001"


def test_add_sensitivity_draws_a_named_layer_with_a_legend_in_collisions_per_year():
    values = np.zeros((1, 3, 3))
    values[0, 1, 1], values[0, 2, 0] = 0.02, 0.3
    ds = _grid(values, species=(PAYLOADS[0],))
    m = folium.Map()
    group = add_sensitivity(m, ds, show=True)
    page = _html(m)
    assert "Collision sensitivity: all species (2 cells)" in page
    assert "Collision sensitivity (collisions/yr)" in page and "cells without tracked flights not drawn" in page
    assert PAYLOADS[0] not in page
    (data,) = _geojson_data(group)
    assert all(f["properties"]["species"].startswith("&lt;script&gt;window.__xss") for f in data["features"])
    assert sorted(f["properties"]["collisions"] for f in data["features"]) == ["0.02", "0.3"]
    assert add_sensitivity(folium.Map(), _grid(np.zeros((1, 2, 2)))) is None
    with pytest.raises(ConfigError, match="species = 'Grus grus': not in the sensitivity grid"):
        add_sensitivity(folium.Map(), ds, species="Grus grus")


def test_the_gap_map_shows_facilities_and_the_grid_of_a_scenario(tmp_path):
    cfg = _config()
    t0 = pd.Timestamp("2024-10-10 02:00", tz="UTC")
    fixes = pd.DataFrame({S.INDIVIDUAL_ID: "b1", S.SPECIES: GM, S.TIMESTAMP: [t0, t0 + pd.Timedelta("20min")],
                          S.LON: [128.30, 128.45], S.LAT: [36.15, 36.20], S.QC_FLAGS: np.zeros(2, np.uint32)})
    grid = sensitivity_grid(fixes, None, cell_km=2.0)
    from flyway.analysis.grid import read_netcdf, write_netcdf

    ds = read_netcdf(write_netcdf(grid, tmp_path / "sensitivity.nc"))
    m = build_gap_map(fixes=fixes, scenario={"facilities": facilities_frame(cfg), "collisions": _collisions(),
                                             "sensitivity": ds})
    page = m.get_root().render()
    assert FACILITIES_LAYER in page and "Collision sensitivity: all species" in page
