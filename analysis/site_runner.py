"""The store shell of sites, coverage and exposure: read stops/sites, call the cores, write tables.

Tables written (all atomically, with parameters and the ledger state in
their metadata):

* ``STORE/sites/sites.parquet`` — the sites contract (GeoParquet, polygons);
  coverage and exposure fill ``protected_fraction``, ``protected_by`` and
  ``nearest_infrastructure_km`` in place;
* ``STORE/coverage/{coverage_by_group,gaps}.parquet`` and the same as CSV;
* ``STORE/exposure/{site,stop,individual,breeding}_exposure.parquet`` and CSV.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import geopandas as gpd
import pandas as pd
import pyarrow as pa
import shapely

from flyway import schema as S
from flyway.analysis.coverage import CoverageParams, CoverageResult, coverage
from flyway.analysis.infrastructure import ExposureParams, ExposureResult, exposure, read_infrastructure
from flyway.analysis.runner import individuals
from flyway.analysis.sites import find_sites
from flyway.errors import StoreError
from flyway.export import write_safe_csv
from flyway.geoparquet import atomic_write_bytes
from flyway.store import Store, read_derived, write_derived

log = logging.getLogger(__name__)

COVERAGE_DIR = "coverage"
EXPOSURE_DIR = "exposure"
FIX_COLUMNS = [S.INDIVIDUAL_ID, S.SPECIES, S.TIMESTAMP, S.LON, S.LAT, S.QC_FLAGS]


def _store(store) -> Store:
    st = store if isinstance(store, Store) else Store(store)
    st.require()
    return st


def _stops(st: Store) -> pd.DataFrame:
    stops = read_derived(st, S.STOPS.name)
    if stops.empty:
        raise StoreError(f"{st.path}: no stops yet; run `flyway stops --store {st.path}` first")
    return stops


def read_sites_gdf(store) -> gpd.GeoDataFrame:
    """The stored sites as a GeoDataFrame (EPSG:4326 polygons)."""
    st = _store(store)
    sites = read_derived(st, S.SITES.name)
    if sites.empty:
        raise StoreError(f"{st.path}: no sites yet; run `flyway sites --store {st.path}` first")
    geom = shapely.from_wkb(sites[S.GEOMETRY].to_numpy())
    return gpd.GeoDataFrame(sites.drop(columns=[S.GEOMETRY]), geometry=geom, crs=S.CRS)


def write_sites(st: Store, sites: gpd.GeoDataFrame, params: dict[str, Any]) -> Path:
    frame = pd.DataFrame(sites.drop(columns=sites.geometry.name))
    frame[S.GEOMETRY] = shapely.to_wkb(sites.geometry.to_numpy())
    table = pa.Table.from_pandas(frame[[c for c in S.SITES.names if c in frame.columns]], preserve_index=False)
    return write_derived(st, S.SITES.name, S.SITES.conform(table), params=params,
                         geometry_types=["Polygon", "MultiPolygon"])


def run_sites(store, params=None, tracked: Mapping[str, int] | None = None) -> gpd.GeoDataFrame:
    """Cluster the store's stops into sites; share of tracked birds per species from the store.

    ``tracked`` (birds per species) saves reading every part file's footer
    when the caller knows it (the nightly state does).
    """
    st = _store(store)
    stops = _stops(st)
    if tracked is None:
        tracked = {}
        for ind in individuals(st):
            tracked[ind.species] = tracked.get(ind.species, 0) + 1
    tracked = dict(tracked)
    sites = find_sites(stops, params, n_tracked=tracked)
    meta = sites.attrs.get("flyway_params", {})
    with st.lock("sites"):
        write_sites(st, sites, {"sites": meta, "n_tracked": tracked})
    return sites


def run_coverage(store, protected_areas: str | os.PathLike[str] | gpd.GeoDataFrame,
                 params: CoverageParams | None = None, use_fixes: bool = True) -> CoverageResult:
    """Protected-area coverage of the stored sites; writes sites, coverage tables and CSVs."""
    st = _store(store)
    sites = read_sites_gdf(st)
    stops = _stops(st)
    fixes = st.scan_fixes(columns=FIX_COLUMNS).to_pandas() if use_fixes else None
    result = coverage(sites, protected_areas, stops=stops, fixes=fixes, params=params)
    p = dataclasses.asdict(params or CoverageParams())
    p["protected_areas"] = str(protected_areas) if not isinstance(protected_areas, gpd.GeoDataFrame) else "<GeoDataFrame>"
    with st.lock("coverage"):
        write_sites(st, result.sites, {"coverage": p})
        _write_layer(st, COVERAGE_DIR, "protected_areas", result.protected_areas, p)
        for name, frame in (("coverage_by_group", result.by_group), ("gaps", result.gaps)):
            _write_plain(st, COVERAGE_DIR, name, frame, p)
        if st.is_remote:  # the CSV writer wants a folder: write locally, then one PUT per file
            with tempfile.TemporaryDirectory(prefix="flyway-coverage-") as tmp:
                for f in result.to_csv(tmp):
                    atomic_write_bytes(st.path / COVERAGE_DIR / f.name, f.read_bytes())
        else:
            result.to_csv(st.path / COVERAGE_DIR)
    return result


def run_exposure(store, infrastructure: Sequence[str | os.PathLike[str]] | gpd.GeoDataFrame,
                 params: ExposureParams | None = None, use_fixes: bool = True) -> ExposureResult:
    """Distances from stored sites, stops and individuals to energy infrastructure."""
    st = _store(store)
    facilities = infrastructure if isinstance(infrastructure, gpd.GeoDataFrame) else read_infrastructure(
        [str(p) for p in infrastructure])
    sites = read_sites_gdf(st) if (st.path / S.SITES.name / f"{S.SITES.name}.parquet").exists() else None
    stops = _stops(st)
    fixes = st.scan_fixes(columns=FIX_COLUMNS).to_pandas() if use_fixes else None
    result = exposure(facilities, sites=sites, stops=stops, fixes=fixes, params=params)
    p = {"buffers_km": list((params or ExposureParams()).buffers_km),
         "infrastructure": [str(x) for x in infrastructure] if not isinstance(infrastructure, gpd.GeoDataFrame)
         else "<GeoDataFrame>"}
    with st.lock("exposure"):
        _write_layer(st, EXPOSURE_DIR, "infrastructure", facilities, p)
        if result.sites is not None:
            write_sites(st, result.sites, {"exposure": p})
        for name in ("site_exposure", "stop_exposure", "individual_exposure", "breeding_exposure"):
            frame = getattr(result, name)
            if frame is not None:
                _write_plain(st, EXPOSURE_DIR, name, frame, p)
    return result


def _write_layer(st: Store, folder: str, name: str, gdf: gpd.GeoDataFrame, params: dict[str, Any]) -> None:
    """A GeoDataFrame (cleaned protected areas, facilities) as GeoParquet for the maps.

    These are the user's own inputs as cleaned for the analysis; they stay in
    the user's store (flyway itself never ships WDPA data).
    """
    frame = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
    for col in frame.columns:
        if frame[col].dtype == object:
            frame[col] = frame[col].astype("string")
    frame[S.GEOMETRY] = shapely.to_wkb(gdf.geometry.to_numpy())
    types = sorted(set(gdf.geom_type.dropna()))
    write_derived(st, name, pa.Table.from_pandas(frame, preserve_index=False), params=params,
                  geometry_types=types, folder=folder)


def _write_plain(st: Store, folder: str, name: str, frame: pd.DataFrame, params: dict[str, Any]) -> None:
    """A non-spatial derived table as Parquet (and CSV beside it, spreadsheet-safe)."""
    frame = pd.DataFrame(frame).drop(columns=[S.GEOMETRY, "geometry"], errors="ignore")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    write_derived(st, name, table, params=params, folder=folder)
    write_safe_csv(frame, st.path / folder / f"{name}.csv")
