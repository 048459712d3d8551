"""Synthetic protected areas and energy infrastructure for the demo (built in code).

flyway never ships WDPA data. The demo needs *some* protected areas and
facilities to show coverage gaps and exposure, so it constructs them around
the packaged flagship-site coordinates: reserves (WDPA field names) over
about half of the sites, a few of them only "Proposed" (which must not
count), wind farms a few kilometres from some stopovers and one power line.
They are invented for illustration and say so in their names.
"""
from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer

from flyway.simulate import load_sites

DEMO_TAG = "(synthetic demo)"


def _local(lon: float, lat: float) -> tuple[Transformer, Transformer]:
    aeqd = CRS.from_proj4(f"+proj=aeqd +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m")
    return (Transformer.from_crs("EPSG:4326", aeqd, always_xy=True),
            Transformer.from_crs(aeqd, "EPSG:4326", always_xy=True))


def _circle(lon: float, lat: float, radius_m: float, dx: float = 0.0, dy: float = 0.0) -> shapely.Polygon:
    _, back = _local(lon, lat)
    ring = shapely.Point(dx, dy).buffer(radius_m, quad_segs=16)
    return shapely.transform(ring, lambda xy: np.column_stack(back.transform(xy[:, 0], xy[:, 1])))


def demo_protected_areas(seed: int = 0) -> gpd.GeoDataFrame:
    """WDPA-like polygons over about half of the flagship sites (some only proposed)."""
    rng = np.random.default_rng(seed)
    sites = load_sites().drop_duplicates(["lon", "lat"]).reset_index(drop=True)
    rows = []
    for i, s in sites.iterrows():
        if rng.random() < 0.45:
            continue  # an unprotected site: these become the gaps
        status = "Proposed" if rng.random() < 0.15 else "Designated"
        radius = float(rng.uniform(3_000, 12_000))
        # reserves rarely sit centred on the birds: shift some so they cover part of a site
        dx, dy = rng.normal(0, radius * 0.6, 2)
        geom = _circle(float(s["lon"]), float(s["lat"]), radius, float(dx), float(dy))
        rows.append({
            "WDPAID": 900000 + i, "NAME": f"{s['site']} reserve {DEMO_TAG}",
            "DESIG_ENG": rng.choice(["Nature Reserve", "Ramsar Site, Wetland of International Importance",
                                     "Wildlife Protection Area"]),
            "IUCN_CAT": rng.choice(["Ia", "IV", "Not Reported"]), "STATUS": status,
            "STATUS_YR": int(rng.integers(1985, 2020)), "ISO3": s["country"], "MARINE": "0",
            "REP_AREA": float(geom.area), "GIS_AREA": 0.0, "geometry": geom,
        })
    pas = gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326")
    pas["REP_AREA"] = pas.to_crs("EPSG:6933").area / 1e6
    pas["GIS_AREA"] = pas["REP_AREA"]
    return pas


def demo_infrastructure(seed: int = 0) -> gpd.GeoDataFrame:
    """OSM-tagged wind turbines near some stopover sites and one power line."""
    rng = np.random.default_rng(seed + 1)
    sites = load_sites()
    stopovers = sites[sites["role"] == "stopover"].drop_duplicates(["lon", "lat"]).reset_index(drop=True)
    rows = []
    for k, s in stopovers.sample(n=min(4, len(stopovers)), random_state=seed).iterrows():
        fwd, back = _local(float(s["lon"]), float(s["lat"]))
        bearing = rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(2_000, 8_000)
        cx, cy = dist * np.cos(bearing), dist * np.sin(bearing)
        gx, gy = np.meshgrid(np.arange(4) * 600.0, np.arange(3) * 600.0)
        lon, lat = back.transform(cx + gx.ravel(), cy + gy.ravel())
        for j, (x, y) in enumerate(zip(lon, lat)):
            rows.append({"id": f"node/demo{k:02d}{j:02d}", "power": "generator", "generator:source": "wind",
                         "generator:output:electricity": "4.2 MW",
                         "name": f"{s['site']} wind farm {DEMO_TAG}", "geometry": shapely.Point(x, y)})
    s = stopovers.iloc[0]
    fwd, back = _local(float(s["lon"]), float(s["lat"]))
    xs, ys = back.transform(np.array([-30_000.0, 0.0, 30_000.0]), np.array([-4_000.0, 1_500.0, 3_000.0]))
    rows.append({"id": "way/demo-line", "power": "line", "voltage": "220000",
                 "name": f"{s['site']} 220 kV line {DEMO_TAG}", "geometry": shapely.LineString(zip(xs, ys))})
    return gpd.GeoDataFrame(pd.DataFrame(rows), geometry="geometry", crs="EPSG:4326")


def write_demo_layers(out_dir: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write both layers as GeoJSON; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"protected_areas": out / "protected_areas_demo.geojson",
             "infrastructure": out / "infrastructure_demo.geojson"}
    demo_protected_areas(seed).to_file(paths["protected_areas"], driver="GeoJSON", engine="pyogrio")
    demo_infrastructure(seed).to_file(paths["infrastructure"], driver="GeoJSON", engine="pyogrio")
    return paths
