"""Fixtures of the map tests: a small simulated store, and tables whose names are XSS payloads."""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from flyway import schema as S
from tests.conftest import simulated_store

PAYLOADS = (
    '<script>window.__xss=1;document.title="pwned"</script>',
    '"><img src=x onerror="window.__xss=1;document.title=\'pwned\'">',
    "'><svg onload=window.__xss=1>",
)


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory):
    """simulate -> ingest -> qc -> stops for 6 birds over a year (a few seconds)."""
    return simulated_store(tmp_path_factory.mktemp("mapstore"), n_individuals=6, days=365, seed=3)


@pytest.fixture(scope="session")
def tables(demo_store):
    """fixes, stops, sites (with coverage and exposure), gaps, protected areas, facilities of the demo store."""
    from flyway.maps.gap_map import load_store_tables

    first = load_store_tables(demo_store, with_fixes=False)
    sites = first["sites"]
    top = sites.nlargest(4, S.BIRD_DAYS)
    pas = gpd.GeoDataFrame({"NAME": [f"Reserve {i}" for i in range(4)], "WDPAID": np.arange(1, 5),
                            "STATUS": "Designated", "DESIG_ENG": "Nature Reserve"},
                           geometry=shapely.buffer(shapely.points(top[S.LON], top[S.LAT]), 0.03), crs=S.CRS)
    fac = gpd.GeoDataFrame({S.FACILITY_ID: [f"F{i}" for i in range(5)], S.FACILITY_NAME: [f"Plant {i}" for i in range(5)],
                            S.FACILITY_KIND: ["power_plant"] * 3 + ["wind_turbine"] * 2,
                            S.FACILITY_SOURCE: ["coal", "gas", "hydro", "wind", "wind"],
                            S.CAPACITY_MW: [500.0, 300.0, 20.0, 3.0, 3.0], S.COUNTRY: "CHN"},
                           geometry=shapely.points(sites[S.LON].to_numpy()[:5] + 0.05, sites[S.LAT].to_numpy()[:5]),
                           crs=S.CRS)
    return load_store_tables(demo_store, protected_areas=pas, infrastructure=fac)


def with_payloads(t: dict) -> dict:
    """The same tables with individual ids, site ids, reserve, facility and file names replaced by payloads."""
    out = dict(t)
    inds = sorted(t["stops"][S.INDIVIDUAL_ID].astype(str).unique())
    rename = {ind: PAYLOADS[i % len(PAYLOADS)] + f"#{i}" for i, ind in enumerate(inds)}
    for name in ("fixes", "stops"):
        frame = t[name].copy()
        frame[S.INDIVIDUAL_ID] = frame[S.INDIVIDUAL_ID].astype(str).map(rename)
        out[name] = frame
    fixes = out["fixes"]
    fixes[S.SOURCE_FILE] = PAYLOADS[1] + ".csv"
    site_ids = {s: PAYLOADS[i % len(PAYLOADS)] + f"@{i}" for i, s in enumerate(t["sites"][S.SITE_ID].astype(str))}
    sites = t["sites"].copy()
    sites[S.SITE_ID] = sites[S.SITE_ID].astype(str).map(site_ids)
    sites[S.PROTECTED_BY] = PAYLOADS[0]
    out["sites"] = sites
    gaps = t["gaps"].copy()
    gaps[S.SITE_ID] = gaps[S.SITE_ID].astype(str).map(site_ids)
    out["gaps"] = gaps
    pas = t["protected_areas"].copy()
    pas[S.PA_NAME] = [PAYLOADS[i % len(PAYLOADS)] for i in range(len(pas))]
    pas[S.DESIGNATION] = PAYLOADS[2]
    out["protected_areas"] = pas
    fac = t["infrastructure"].copy()
    fac[S.FACILITY_NAME] = [PAYLOADS[i % len(PAYLOADS)] for i in range(len(fac))]
    out["infrastructure"] = fac
    return out


@pytest.fixture(scope="session")
def payload_tables(tables):
    return with_payloads(tables)
