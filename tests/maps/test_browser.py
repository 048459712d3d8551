"""The maps and report in a real headless Chromium, network blocked (self-contained mode).

Skipped cleanly when selenium, chromium or chromedriver are missing (CI's
.ci/run installs Debian's ``chromium`` and ``chromium-driver``).
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from flyway import schema as S
from flyway.maps.bird_map import build_bird_map
from flyway.maps.gap_map import build_gap_map
from flyway.maps.offline import save_map
from flyway.maps.report import build_report

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                                 reason="chromium / chromedriver not installed")]
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000"]
# collects uncaught errors from the first script on, whatever the console log level says
ERROR_HOOK = ("window.__errors=[];window.addEventListener('error',function(e){window.__errors.push("
              "String(e.message||(e.target&&e.target.outerHTML)))},true);")
COUNT_FEATURES = """
const map = window[arguments[0]], key = arguments[1]; const seen = new Set();
function walk(layer) {
  if (layer.feature && layer.feature.properties && key in layer.feature.properties) seen.add(L.stamp(layer));
  if (layer.getLayers) layer.getLayers().forEach(walk);
}
map.eachLayer(walk); return seen.size;"""


@pytest.fixture(scope="module")
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='flyway-chromium-')}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["http://*", "https://*", "ws://*", "wss://*"]})
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": ERROR_HOOK})
    yield driver
    driver.quit()


def open_page(driver, path: Path, wait_for: str = ".leaflet-container") -> float:
    driver.get_log("browser")  # drop entries of the previous page
    start = time.perf_counter()
    driver.get(path.resolve().as_uri())
    WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.readyState") == "complete")
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, wait_for))
    return time.perf_counter() - start


def click_popup(driver, leaflet_map: str, lat: float, lon: float, zoom: int) -> str:
    """Centre the map on (lat, lon), click there and return the text of the popup that opens."""
    driver.execute_script(f"window[arguments[0]].setView([{lat}, {lon}], {zoom}, {{animate: false}});", leaflet_map)
    time.sleep(0.3)
    x, y = driver.execute_script(
        f"const p = window[arguments[0]].latLngToContainerPoint([{lat}, {lon}]); return [p.x, p.y];", leaflet_map)
    container = driver.find_element(By.CSS_SELECTOR, ".leaflet-container")
    size = container.size
    ActionChains(driver).move_to_element_with_offset(container, int(x - size["width"] / 2),
                                                     int(y - size["height"] / 2)).click().perform()
    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".leaflet-popup-content"))
    # textContent, not .text: a tall popup scrolls, and .text returns only its visible lines
    return driver.find_element(By.CSS_SELECTOR, ".leaflet-popup-content").get_attribute("textContent")


def assert_no_errors(driver) -> None:
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
    assert driver.execute_script("return window.__errors") == []


def test_gap_map_renders_offline(browser, tables, tmp_path):
    m = build_gap_map(fixes=tables["fixes"], stops=tables["stops"], sites=tables["sites"], gaps=tables["gaps"],
                      protected_areas=tables["protected_areas"], infrastructure=tables["infrastructure"],
                      self_contained=True)
    path = save_map(m, tmp_path / "map.html", self_contained=True)
    seconds = open_page(browser, path)
    print(f"\ngap map: {path.stat().st_size / 1e6:.2f} MB, loaded in {seconds:.2f} s")
    assert_no_errors(browser)
    name = m.get_name()
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".leaflet-control-layers-overlays > label")]
    assert any(t.startswith("Sites by protected fraction") for t in labels)
    assert any(t.startswith("Protected areas (4)") for t in labels)
    assert sum(t.startswith("Tracks: ") for t in labels) == tables["stops"][S.SPECIES].nunique()
    assert sum(t.startswith("Stops: ") for t in labels) == tables["stops"][S.KIND].nunique()
    leaflet_map = name  # scripts look the map up by its variable name (a Leaflet map is not serialisable)
    # polygon + centre marker per site, one feature per protected area, every facility in a cluster
    assert browser.execute_script(COUNT_FEATURES, leaflet_map, "protected") == 2 * len(tables["sites"])
    assert browser.execute_script(COUNT_FEATURES, leaflet_map, "designation") == len(tables["protected_areas"])
    n_clustered = browser.execute_script(
        "let n=0; window[arguments[0]].eachLayer(l => { if (l.getAllChildMarkers && !l.getChildCount) {} "
        "if (l instanceof L.MarkerClusterGroup) n += l.getLayers().length; }); return n;", leaflet_map)
    assert n_clustered == len(tables["infrastructure"])
    assert browser.find_elements(By.CSS_SELECTOR, ".flyway-legend")
    # click the centre marker of the largest site away from facility clusters and read its popup
    fx, fy = tables["infrastructure"].geometry.x.to_numpy(), tables["infrastructure"].geometry.y.to_numpy()
    sites = tables["sites"]
    far = np.hypot(sites[S.LON].to_numpy()[:, None] - fx, sites[S.LAT].to_numpy()[:, None] - fy).min(axis=1) > 0.5
    site = sites.loc[far].nlargest(1, S.BIRD_DAYS).iloc[0]
    popup = click_popup(browser, leaflet_map, site[S.LAT], site[S.LON], 9)
    assert str(site[S.SITE_ID]) in popup and "share of tracked birds" in popup
    browser.save_screenshot(str(tmp_path / "gap_map.png"))
    assert (tmp_path / "gap_map.png").stat().st_size > 10_000
    assert_no_errors(browser)


# Render the content of every popup and tooltip (bound on a feature or on its GeoJSON group) into
# the page, as Leaflet does when one opens; features inside marker clusters included.
OPEN_EVERYTHING = """
const map = window[arguments[0]]; const done = new Set();
const sink = document.createElement('div'); document.body.appendChild(sink);
function render(holder, leaf) {
  for (const get of ['getPopup', 'getTooltip']) {
    const bound = holder[get] && holder[get]();
    const key = L.stamp(holder) + ':' + L.stamp(leaf) + ':' + get;
    if (!bound || done.has(key)) continue;
    done.add(key);
    let content = bound._content;
    if (typeof content === 'function') content = content(leaf);
    const box = document.createElement('div');
    if (content instanceof HTMLElement) box.appendChild(content); else box.innerHTML = String(content);
    sink.appendChild(box);
  }
}
function walk(layer, parents) {
  if (layer.feature || !layer.getLayers) { render(layer, layer); parents.forEach(p => render(p, layer)); }
  if (layer.getLayers) layer.getLayers().forEach(l => walk(l, parents.concat([layer])));
}
map.eachLayer(l => walk(l, []));
return done.size;"""


def _no_payload_ran(driver, leaflet_map) -> int:
    title = driver.title
    opened = driver.execute_script(OPEN_EVERYTHING, leaflet_map)
    time.sleep(1.0)  # let injected <img onerror> fire if anything was injected
    assert driver.execute_script("return window.__xss") is None
    assert driver.title == title
    return opened


def test_xss_payloads_do_not_execute(browser, payload_tables, tmp_path):
    t = payload_tables
    m = build_gap_map(fixes=t["fixes"], stops=t["stops"], sites=t["sites"], gaps=t["gaps"],
                      protected_areas=t["protected_areas"], infrastructure=t["infrastructure"], self_contained=True)
    open_page(browser, save_map(m, tmp_path / "xss.html", self_contained=True))
    leaflet_map = m.get_name()
    # every site/PA/facility/track/stop/gap feature with a popup or tooltip was opened
    assert _no_payload_ran(browser, leaflet_map) >= 2 * len(t["sites"]) + len(t["protected_areas"])
    assert "<script>" in browser.execute_script("return document.body.innerText")  # shown as text
    ind = t["fixes"].loc[t["fixes"][S.QC_FLAGS] != 0, S.INDIVIDUAL_ID].iloc[0]
    bm = build_bird_map(t["fixes"], t["stops"], ind, self_contained=True)
    open_page(browser, save_map(bm, tmp_path / "xss_bird.html", self_contained=True))
    assert _no_payload_ran(browser, bm.get_name()) > 0
    assert_no_errors(browser)


def test_bird_map_time_slider(browser, tables, tmp_path):
    ind = tables["fixes"].loc[tables["fixes"][S.QC_FLAGS] != 0, S.INDIVIDUAL_ID].iloc[0]
    m = build_bird_map(tables["fixes"], tables["stops"], ind, self_contained=True)
    seconds = open_page(browser, save_map(m, tmp_path / "bird.html", self_contained=True),
                        wait_for=".leaflet-bar-timecontrol")
    print(f"\nbird map loaded in {seconds:.2f} s")
    before = browser.find_element(By.CSS_SELECTOR, ".timecontrol-date").text
    browser.find_element(By.CSS_SELECTOR, ".timecontrol-forward").click()
    time.sleep(0.5)
    assert browser.find_element(By.CSS_SELECTOR, ".timecontrol-date").text != before
    browser.save_screenshot(str(tmp_path / "bird_map.png"))
    assert_no_errors(browser)


def test_report_opens(browser, tables, tmp_path):
    index = build_report(tmp_path, stops=tables["stops"], sites=tables["sites"], gaps=tables["gaps"],
                         coverage_by_group=tables["coverage"].by_group)
    open_page(browser, index, wait_for="h1")
    widths = browser.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")
    assert len(widths) >= 3 and all(w > 0 for w in widths)
    assert_no_errors(browser)
