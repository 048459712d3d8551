"""The scenario layers in headless Chromium: a facility popup opens, names stay text, no JavaScript errors.

Reuses the browser fixture of ``test_browser.py`` (skipped the same way when
selenium, chromium or chromedriver are missing).
"""
from __future__ import annotations

import time

import folium
import numpy as np
import pandas as pd
import pytest

from flyway import schema as S
from flyway.analysis.scenario.sensitivity import sensitivity_grid
from flyway.maps import layers as L
from flyway.maps.offline import save_map
from flyway.maps.scenario_layers import FACILITIES_LAYER, add_facilities, add_sensitivity

from .conftest import PAYLOADS
from .test_browser import (OPEN_EVERYTHING, assert_no_errors, browser, click_popup,  # noqa: F401 (fixture)
                           open_page, pytestmark)
from .test_scenario_layers import _collisions, _config

By = pytest.importorskip("selenium.webdriver.common.by").By


def test_facility_popup_opens_and_the_grid_renders(browser, tmp_path):  # noqa: F811
    cfg = _config(names=[PAYLOADS[0] + " ridge A", "Site B", "Line"])
    t0 = pd.Timestamp("2024-10-10 02:00", tz="UTC")
    fixes = pd.DataFrame({S.INDIVIDUAL_ID: "b1", S.SPECIES: "Grus monacha",
                          S.TIMESTAMP: [t0, t0 + pd.Timedelta("20min")], S.LON: [128.30, 128.38],
                          S.LAT: [36.12, 36.17], S.QC_FLAGS: np.zeros(2, np.uint32)})
    m = L.new_map((128.25, 36.1, 128.6, 36.25), self_contained=True)
    add_sensitivity(m, sensitivity_grid(fixes, None, cell_km=1.0), show=True)
    add_facilities(m, cfg, _collisions())
    L.finish_legends(m)
    folium.LayerControl(collapsed=False).add_to(m)
    path = save_map(m, tmp_path / "scenario_map.html", self_contained=True)
    open_page(browser, path)
    assert_no_errors(browser)
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".leaflet-control-layers-overlays > label")]
    assert FACILITIES_LAYER in labels and any(t.startswith("Collision sensitivity: all species") for t in labels)
    name = m.get_name()
    # click the middle of footprint A and read its popup
    popup = click_popup(browser, name, 36.195, 128.41, 13)
    assert PAYLOADS[0] + " ridge A" in popup  # the name shown as text
    assert "Grus monacha: 1.2 (0.5–2.1)" in popup and "30 turbines" in popup
    # open every popup and tooltip: no payload runs
    title = browser.title
    assert browser.execute_script(OPEN_EVERYTHING, name) > 0
    time.sleep(0.5)
    assert browser.execute_script("return window.__xss") is None and browser.title == title
    assert_no_errors(browser)
