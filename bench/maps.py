"""Benchmark: gap map of a large store -> HTML size and load time in headless Chromium.

Usage::

    python bench/maps.py                  # 1M and 10M fixes
    python bench/maps.py --fixes 1e6      # one size

For each size the simulator's Movebank CSV (bench/ingest.py's settings, cached
in bench/out/) is ingested into a store (cached too), flagged and its stops
detected; then the self-contained gap map is built and written, and opened in
headless Chromium with the network blocked. The peer is folium's naive way of
drawing the same fixes (one PolyLine per individual over every fix), built
and written in the same run: the ratio of sizes is what simplification,
aggregation and capping buy. Targets (issue 6): < ~15 MB, opens in a few seconds.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from ingest import OUT, make_csv  # noqa: E402  (same simulator settings and cache)


def build_store(n_fixes: int) -> Path:
    import flyway
    from flyway.analysis.runner import run_qc, run_stops

    csv = make_csv(n_fixes)
    store = csv.parent / "store"
    if not (store / "stops" / "stops.parquet").exists():
        t = time.perf_counter()
        ref = csv.parent / "reference.csv"
        flyway.ingest([csv], store=store, reference=ref if ref.exists() else None)
        run_qc(store)
        run_stops(store)
        print(f"  store built in {time.perf_counter() - t:.0f}s")
    return store


def browser_load_seconds(path: Path) -> float:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={tempfile.mkdtemp()}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["http://*", "https://*"]})
        driver.set_page_load_timeout(300)
        t = time.perf_counter()
        driver.get(path.resolve().as_uri())
        WebDriverWait(driver, 300).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".leaflet-control-layers"))
        # one more frame so the canvas has drawn
        driver.execute_async_script("requestAnimationFrame(() => arguments[0]())")
        return time.perf_counter() - t
    finally:
        driver.quit()


def naive_folium(store: Path, out: Path) -> tuple[float, float]:
    """The peer: every fix of every bird as a folium PolyLine (no simplification, CDN assets)."""
    import folium

    import flyway
    from flyway import schema as S

    t = time.perf_counter()
    fixes = flyway.read_fixes(store, columns=[S.INDIVIDUAL_ID, S.LON, S.LAT])
    m = folium.Map()
    for _, g in fixes.groupby(S.INDIVIDUAL_ID, sort=False):  # the peer's idiom, a loop per bird
        folium.PolyLine(list(zip(g[S.LAT].to_numpy(), g[S.LON].to_numpy()))).add_to(m)
    m.save(str(out))
    return time.perf_counter() - t, out.stat().st_size / 1e6


def bench(n_fixes: int, peer: bool) -> dict:
    from flyway.maps.gap_map import gap_map
    from flyway.maps.offline import save_map

    store = build_store(n_fixes)
    out = OUT / f"map-{n_fixes:.0e}.html"
    t = time.perf_counter()
    m = gap_map(store, self_contained=True)
    save_map(m, out, self_contained=True)
    build_s = time.perf_counter() - t
    size_mb = out.stat().st_size / 1e6
    load_s = browser_load_seconds(out)
    row = {"fixes": n_fixes, "build_s": round(build_s, 1), "size_mb": round(size_mb, 2), "load_s": round(load_s, 2)}
    if peer:
        peer_out = OUT / f"naive-{n_fixes:.0e}.html"
        peer_s, peer_mb = naive_folium(store, peer_out)
        row.update(peer_build_s=round(peer_s, 1), peer_size_mb=round(peer_mb, 1),
                   size_ratio=round(peer_mb / size_mb, 1))
    print(json.dumps(row))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixes", type=float, action="append", help="store size(s); default 1e6 and 1e7")
    ap.add_argument("--no-peer", action="store_true", help="skip the naive folium map")
    args = ap.parse_args()
    for n in args.fixes or [1e6, 1e7]:
        bench(int(n), peer=not args.no_peer)


if __name__ == "__main__":
    main()
