"""Gap map: layers from tables, size reductions, escaping, public generalisation, offline assets."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import shapely

from flyway import schema as S
from flyway.errors import ConfigError
from flyway.maps import fix_layers as F
from flyway.maps import layers as L
from flyway.maps.gap_map import MapParams, build_gap_map, gap_map
from flyway.maps.offline import inline_assets, save_map
from flyway.maps.public import PublicParams, generalise_fixes, generalise_sites, generalise_stops, snap

from .conftest import PAYLOADS


def _html(m) -> str:
    return m.get_root().render()


@pytest.mark.parametrize("kwargs", [dict(max_track_vertices=0), dict(simplify_m=-1.0), dict(heat_cell_deg=50.0),
                                    dict(top_gaps=1.5), dict(public="yes")])
def test_map_params_are_validated(kwargs):
    with pytest.raises(ConfigError):
        MapParams(**kwargs)


def test_public_params_are_validated():
    with pytest.raises(ConfigError, match="grid_km"):
        PublicParams(grid_km=0.0)
    with pytest.raises(ConfigError, match="kinds"):
        PublicParams(kinds=("nest",))


def test_all_layers_present_and_counted(tables):
    m = build_gap_map(fixes=tables["fixes"], stops=tables["stops"], sites=tables["sites"], gaps=tables["gaps"],
                      protected_areas=tables["protected_areas"], infrastructure=tables["infrastructure"])
    html = _html(m)
    for name in ("Country outlines", "Protected areas (4)", "Use intensity", "Tracks: ", "Stops: stopover",
                 f"Sites by protected fraction ({len(tables['sites'])})", "coverage gaps",
                 "Infrastructure: power_plant (3)", "Infrastructure: wind_turbine (2)"):
        assert name in html, name
    # one polygon and one centre marker per site, each carrying the site id
    n_sites = len(tables["sites"])
    n_gaps = min(MapParams().top_gaps, len(tables["gaps"]))
    assert html.count('"site": "') == 2 * n_sites + n_gaps
    assert "L.markerClusterGroup" in html and "HeatLayer" in html or "heatLayer" in html
    assert html.count("L.control.layers") == 1


def test_site_popup_carries_statistics(tables):
    sites = tables["sites"]
    html = _html(build_gap_map(sites=sites))
    row = sites.iloc[0]
    assert f'"site": "{row[S.SITE_ID]}"' in html
    assert "share of tracked birds" in html and "nearest infrastructure (km)" in html
    assert f'"individuals": "{int(row[S.N_INDIVIDUALS])}"' in html


def test_every_user_string_is_escaped(payload_tables):
    t = payload_tables
    html = _html(build_gap_map(fixes=t["fixes"], stops=t["stops"], sites=t["sites"], gaps=t["gaps"],
                               protected_areas=t["protected_areas"], infrastructure=t["infrastructure"]))
    # folium writes JSON with <, >, & as \\u escapes; decode them so a raw payload cannot hide
    decoded = html.replace("\\u003c", "<").replace("\\u003e", ">").replace("\\u0026", "&")
    for payload in PAYLOADS:
        assert payload not in decoded
    assert "&lt;script&gt;window.__xss=1" in decoded
    assert "onerror=&quot;window.__xss" in decoded  # quotes escaped too: no attribute break-out


def test_species_and_season_filters(tables):
    sp = sorted(tables["stops"][S.SPECIES].unique())[0]
    html = _html(build_gap_map(stops=tables["stops"], sites=tables["sites"], params=MapParams(species=sp)))
    others = [s for s in tables["stops"][S.SPECIES].unique() if s != sp]
    assert sp in html and not any(f'"species": "{o}"' in html for o in others)
    season = tables["stops"][S.SEASON].dropna().iloc[0]
    kept = tables["stops"][S.SEASON] == season
    html = _html(build_gap_map(stops=tables["stops"], params=MapParams(seasons=[season])))
    assert html.count(f'"season": "{season}"') == int(kept.sum())
    assert html.count('"season": "') == int(kept.sum())


def test_track_simplification_respects_budget():
    n = 2_000
    t = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    rng = np.random.default_rng(0)
    fixes = pd.DataFrame({S.INDIVIDUAL_ID: np.repeat(["a", "b"], n // 2), S.SPECIES: "Grus monacha",
                          S.TIMESTAMP: t, S.LON: 120 + np.cumsum(rng.normal(0, 0.05, n)),
                          S.LAT: 35 + np.cumsum(rng.normal(0, 0.05, n))})
    tracks = F.simplified_tracks(fixes, max_vertices=300, tolerance_m=10.0)
    assert len(tracks) == 2
    assert shapely.get_num_coordinates(tracks.geometry.to_numpy()).sum() <= 300
    assert tracks.attrs["tolerance_m"] > 10.0
    # end points survive Douglas-Peucker
    first = shapely.get_coordinates(tracks.geometry.iloc[0])
    assert np.allclose(first[0], [fixes[S.LON].iloc[0], fixes[S.LAT].iloc[0]], atol=1e-6)
    # a straight line collapses to its two ends
    line = fixes.iloc[:100].assign(**{S.LON: np.linspace(120, 121, 100), S.LAT: 35.0})
    assert shapely.get_num_coordinates(F.simplified_tracks(line).geometry.iloc[0]) == 2


def test_heat_cells_bounded_and_conserve_fixes():
    rng = np.random.default_rng(1)
    fixes = pd.DataFrame({S.LON: rng.uniform(100, 140, 50_000), S.LAT: rng.uniform(20, 55, 50_000)})
    cells = F.heat_cells(fixes, cell_deg=0.01, max_cells=1_000)
    assert len(cells) <= 1_000
    assert cells[S.N_FIXES].sum() == len(fixes)


def test_snap_is_idempotent_and_within_cell():
    rng = np.random.default_rng(2)
    lon, lat = rng.uniform(100, 150, 1000), rng.uniform(10, 70, 1000)
    clon, clat = snap(lon, lat, 10.0)
    again = snap(clon, clat, 10.0)
    assert np.allclose(again[0], clon) and np.allclose(again[1], clat)
    assert np.all(np.abs(clat - lat) <= 10.0 / 111.32 / 2 + 1e-9)


def test_public_generalises_only_sensitive_records(tables):
    stops, fixes, sites = tables["stops"], tables["fixes"], tables["sites"]
    p = PublicParams(grid_km=10.0)
    out = generalise_stops(stops, p)
    breeding = (stops[S.KIND] == S.KIND_BREEDING).to_numpy()
    assert breeding.any()
    assert np.array_equal(out.loc[~breeding, S.LON].to_numpy(), stops.loc[~breeding, S.LON].to_numpy())
    assert not np.allclose(out.loc[breeding, S.LON].to_numpy(), stops.loc[breeding, S.LON].to_numpy())
    gf = generalise_fixes(fixes, stops, p)
    moved = gf[S.LON].to_numpy() != fixes[S.LON].to_numpy()
    b = stops.loc[breeding].iloc[0]
    during = ((fixes[S.INDIVIDUAL_ID] == b[S.INDIVIDUAL_ID]) & (fixes[S.TIMESTAMP] >= b[S.START_TIME])
              & (fixes[S.TIMESTAMP] <= b[S.END_TIME])).to_numpy()
    assert moved[during].all()
    assert moved.sum() < len(fixes) // 2
    gs = generalise_sites(sites, p)
    bsite = sites[S.KINDS].fillna("").str.contains(S.KIND_BREEDING).to_numpy()
    assert (shapely.area(gs.geometry[bsite].to_numpy()) > shapely.area(sites.geometry[bsite].to_numpy())).all()
    # the exact breeding coordinates never reach the public map
    html = _html(build_gap_map(fixes=fixes, stops=stops, sites=sites, params=MapParams(public=p)))
    exact = f"{round(b[S.LON], 5)}, {round(b[S.LAT], 5)}"
    assert exact not in html and "Public export" in html


def test_offline_inlines_every_asset(tables, tmp_path):
    m = build_gap_map(stops=tables["stops"], sites=tables["sites"], infrastructure=tables["infrastructure"],
                      fixes=tables["fixes"], self_contained=True)
    path = save_map(m, tmp_path / "map.html", self_contained=True)
    html = path.read_text()
    assert not re.search(r'<(script|link)\b[^>]*(src|href)="(https?:)?//', html)
    assert "L.markerClusterGroup" in html and "Leaflet.markercluster" in html or "MarkerClusterGroup" in html
    assert html.count("jQuery requires a window with a document") == 1  # jQuery inlined once
    online = inline_assets(m.get_root().render(), self_contained=False)
    assert "cdn.jsdelivr.net/npm/leaflet@" in online and "bootstrap" not in online


def test_offline_refuses_unknown_assets():
    page = '<html><head><script src="https://cdn.example.org/some-plugin.js"></script></head></html>'
    with pytest.raises(ConfigError, match="some-plugin.js"):
        inline_assets(page)


def test_gap_map_shell_skips_missing_tables(demo_store):
    m = gap_map(demo_store)
    html = _html(m)
    assert "Sites by protected fraction" in html and "Tracks: " in html
    assert "Protected areas" not in html and "Infrastructure: " not in html
