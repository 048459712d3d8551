"""Gridded use intensity (CF NetCDF) and annotation of fixes and stops from gridded layers.

:func:`use_intensity` counts, per species, month and lat/lon cell, the GPS
fixes, the distinct individuals and the bird-days of stops (a stop spanning
several months is split between them by its hours in each). The result is an
``xarray.Dataset`` following the CF conventions (1.8): ``lat``/``lon`` with
units, axes and cell bounds, ``time`` at the month start with bounds to the
next month, a ``crs`` grid-mapping variable from pyproj, and ``long_name``,
``units``, ``cell_methods`` and ``grid_mapping`` on every data variable.
There is no CF standard name for animal use, so none is invented.

:func:`annotate` is Movebank Env-DATA in miniature: values of a user's
gridded NetCDF (NDVI, temperature ...) at each fix or stop, by nearest or
linear interpolation in space and time.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyproj
import xarray as xr

import flyway
from flyway import schema as S
from flyway.errors import ConfigError, InputError

log = logging.getLogger(__name__)

CONVENTIONS = "CF-1.8"
_NV = "nv"  # CF bounds dimension
_TIME_UNITS = "days since 1970-01-01 00:00:00"
_CHUNK = 1_000_000
_VARIABLES = {
    S.N_FIXES: dict(long_name="GPS fixes per cell and month", units="1", cell_methods="time: sum area: sum"),
    S.N_INDIVIDUALS: dict(long_name="distinct tracked individuals in the cell during the month", units="1",
                          cell_methods="time: sum area: sum"),
    S.BIRD_DAYS: dict(long_name="bird-days of stops centred in the cell during the month", units="d",
                      cell_methods="time: sum area: sum"),
}


@dataclass(frozen=True)
class GridParams:
    """Grid of the use-intensity cube.

    Parameters
    ----------
    cell_deg : float
        Cell size in degrees (same in lon and lat).
    bounds : (lon_min, lat_min, lon_max, lat_max), optional
        Extent; by default the data extent snapped outward to whole cells.
        Positions outside are left out.
    """

    cell_deg: float = 0.25
    bounds: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if not (np.isfinite(self.cell_deg) and 0.001 <= self.cell_deg <= 10):
            raise ConfigError(f"GridParams.cell_deg = {self.cell_deg!r}: expected degrees in [0.001, 10]")
        if self.bounds is not None:
            b = tuple(float(v) for v in self.bounds)
            if len(b) != 4 or not (-180 <= b[0] < b[2] <= 180 and -90 <= b[1] < b[3] <= 90):
                raise ConfigError(f"GridParams.bounds = {self.bounds!r}: expected (lon_min, lat_min, lon_max, "
                                  "lat_max) with min < max inside [-180, 180] x [-90, 90]")
            object.__setattr__(self, "bounds", b)


def _naive_utc(values) -> np.ndarray:
    t = pd.to_datetime(pd.Series(values), utc=True)
    return t.dt.tz_convert(None).to_numpy("datetime64[ns]")


def _month_index(t: np.ndarray) -> np.ndarray:
    return t.astype("datetime64[M]").astype(np.int64)  # months since 1970-01


def _extent(lons, lats, p: GridParams):
    if p.bounds is not None:
        return p.bounds
    lon = np.concatenate([v for v in lons if v.size] or [np.zeros(1)])
    lat = np.concatenate([v for v in lats if v.size] or [np.zeros(1)])
    c = p.cell_deg
    lo0, la0 = np.floor(lon.min() / c) * c, np.floor(lat.min() / c) * c
    return (max(lo0, -180.0), max(la0, -90.0), min(lo0 + (np.floor((lon.max() - lo0) / c) + 1) * c, 180.0),
            min(la0 + (np.floor((lat.max() - la0) / c) + 1) * c, 90.0))


def use_intensity(fixes: pd.DataFrame | None = None, stops: pd.DataFrame | None = None,
                  params: GridParams | None = None) -> xr.Dataset:
    """Fixes, individuals and bird-days per species, month and cell, as a CF Dataset.

    Parameters
    ----------
    fixes : pandas.DataFrame, optional
        Fixes (species, individual_id, timestamp, lon, lat).
    stops : pandas.DataFrame, optional
        Stops (species, individual_id, start_time, end_time, lon, lat).
    params : GridParams, optional

    Returns
    -------
    xarray.Dataset
        Dimensions (species, time, lat, lon); variables ``n_fixes`` and
        ``n_individuals`` (from fixes, else from stops) and ``bird_days``
        (when stops are given), ``crs`` and the bounds variables.
    """
    if fixes is None and stops is None:
        raise InputError("use_intensity needs fixes or stops")
    p = params or GridParams()
    parts = [f for f in (fixes, stops) if f is not None]
    species = np.unique(np.concatenate([f[S.SPECIES].astype(str).to_numpy() for f in parts]))
    lon0, lat0, lon1, lat1 = _extent([f[S.LON].to_numpy(float) for f in parts],
                                     [f[S.LAT].to_numpy(float) for f in parts], p)
    c = p.cell_deg
    nx, ny = int(round((lon1 - lon0) / c)), int(round((lat1 - lat0) / c))
    months = []
    if fixes is not None:
        fix_month = _month_index(_naive_utc(fixes[S.TIMESTAMP]))
        months.append(fix_month)
    if stops is not None:
        start, end = _naive_utc(stops[S.START_TIME]), _naive_utc(stops[S.END_TIME])
        months += [_month_index(start), _month_index(end)]
    m_min = int(min(m.min() for m in months if m.size)) if any(m.size for m in months) else 0
    m_max = int(max(m.max() for m in months if m.size)) if any(m.size for m in months) else 0
    nt, ns = m_max - m_min + 1, len(species)
    shape = (ns, nt, ny, nx)

    def cells(frame, month):
        ix = np.floor((frame[S.LON].to_numpy(float) - lon0) / c).astype(np.int64)
        iy = np.floor((frame[S.LAT].to_numpy(float) - lat0) / c).astype(np.int64)
        sp = np.searchsorted(species, frame[S.SPECIES].astype(str).to_numpy())
        ok = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
        flat = ((sp * nt + (month - m_min)) * ny + iy) * nx + ix
        return np.where(ok, flat, -1)

    def individuals(frame, flat):
        ind = pd.factorize(frame[S.INDIVIDUAL_ID])[0].astype(np.int64)
        ok = flat >= 0
        pairs = np.unique(flat[ok] * (ind.max(initial=0) + 1) + ind[ok]) // (ind.max(initial=0) + 1)
        return np.bincount(pairs, minlength=ns * nt * ny * nx).reshape(shape).astype(np.int32)

    data = {}
    if fixes is not None:
        flat = cells(fixes, fix_month)
        data[S.N_FIXES] = np.bincount(flat[flat >= 0], minlength=int(np.prod(shape))).reshape(shape)
        data[S.N_INDIVIDUALS] = individuals(fixes, flat)
    if stops is not None:
        k = _month_index(end) - _month_index(start) + 1  # months each stop touches
        row = np.repeat(np.arange(len(stops)), k)
        month = _month_index(start)[row] + (np.arange(row.size) - np.repeat(np.cumsum(k) - k, k))
        m_start = month.astype("datetime64[M]").astype("datetime64[ns]")
        m_end = (month + 1).astype("datetime64[M]").astype("datetime64[ns]")
        overlap = np.minimum(end[row], m_end) - np.maximum(start[row], m_start)
        days = overlap.astype("timedelta64[s]").astype(float) / 86400.0
        flat = cells(stops.iloc[row], month)
        ok = flat >= 0
        data[S.BIRD_DAYS] = np.bincount(flat[ok], days[ok], minlength=int(np.prod(shape))).reshape(shape)
        if fixes is None:
            data[S.N_INDIVIDUALS] = individuals(stops.iloc[row], flat)
    return _cf_dataset(data, species, m_min, nt, lon0, lat0, c, nx, ny)


def _cf_dataset(data, species, m_min, nt, lon0, lat0, c, nx, ny) -> xr.Dataset:
    lon = lon0 + c * (np.arange(nx) + 0.5)
    lat = lat0 + c * (np.arange(ny) + 0.5)
    month = np.arange(m_min, m_min + nt + 1).astype("datetime64[M]").astype("datetime64[ns]")
    dims = (S.SPECIES, S.TIME, S.LAT, S.LON)
    ds = xr.Dataset(
        {name: (dims, arr.astype(np.float32 if name == S.BIRD_DAYS else np.int32), dict(_VARIABLES[name],
                                                                                         grid_mapping=S.CRS_VARIABLE))
         for name, arr in data.items()},
        coords={
            S.SPECIES: (S.SPECIES, species.astype(object), {"long_name": "scientific name of the species"}),
            S.TIME: (S.TIME, month[:-1], {"standard_name": "time", "long_name": "start of month", "axis": "T",
                                          "bounds": f"{S.TIME}_bnds"}),
            S.LAT: (S.LAT, lat, {"standard_name": "latitude", "long_name": "latitude of cell centre",
                                 "units": "degrees_north", "axis": "Y", "bounds": f"{S.LAT}_bnds"}),
            S.LON: (S.LON, lon, {"standard_name": "longitude", "long_name": "longitude of cell centre",
                                 "units": "degrees_east", "axis": "X", "bounds": f"{S.LON}_bnds"}),
        })
    ds[f"{S.TIME}_bnds"] = ((S.TIME, _NV), np.column_stack([month[:-1], month[1:]]))
    ds[f"{S.LAT}_bnds"] = ((S.LAT, _NV), np.column_stack([lat - c / 2, lat + c / 2]))
    ds[f"{S.LON}_bnds"] = ((S.LON, _NV), np.column_stack([lon - c / 2, lon + c / 2]))
    ds[S.CRS_VARIABLE] = ((), np.int32(0), pyproj.CRS(S.CRS).to_cf())
    for name in (S.TIME, f"{S.TIME}_bnds"):
        ds[name].encoding.update(units=_TIME_UNITS, calendar="standard", dtype="float64")
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    ds.attrs.update(
        Conventions=CONVENTIONS, title="Use intensity of tracked birds per cell and month",
        source=f"flyway {flyway.__version__}", history=f"{now} flyway.analysis.grid.use_intensity",
        date_created=now, comment="Counts of GPS fixes, tracked individuals and stop bird-days; "
                                  "cells on a regular latitude-longitude grid (WGS84)",
        geospatial_lat_min=float(lat0), geospatial_lat_max=float(lat0 + c * ny),
        geospatial_lon_min=float(lon0), geospatial_lon_max=float(lon0 + c * nx))
    return ds


def cf_problems(ds: xr.Dataset) -> list[str]:
    """A CF sanity check: what is missing for a CF reader (empty list = fine).

    Checks ``Conventions``, the standard names, units and axes of lat/lon/time,
    that declared bounds exist, that every grid-mapped variable points at an
    existing grid-mapping variable with ``grid_mapping_name``, and that data
    variables carry ``long_name`` (or ``standard_name``) and ``units``.
    """
    out = []
    if not str(ds.attrs.get("Conventions", "")).startswith("CF-"):
        out.append("global attribute Conventions missing")
    wanted = {S.LAT: ("latitude", "degrees_north", "Y"), S.LON: ("longitude", "degrees_east", "X"),
              S.TIME: ("time", None, "T")}
    for name, (std, units, axis) in wanted.items():
        if name not in ds.coords:
            out.append(f"coordinate {name} missing")
            continue
        attrs = ds[name].attrs
        if attrs.get("standard_name") != std:
            out.append(f"{name}: standard_name should be {std}")
        if units and attrs.get("units") != units:
            out.append(f"{name}: units should be {units}")
        if attrs.get("axis") != axis:
            out.append(f"{name}: axis should be {axis}")
    for name, var in ds.variables.items():
        b = var.attrs.get("bounds")
        if b and b not in ds.variables:
            out.append(f"{name}: bounds variable {b} missing")
        gm = var.attrs.get("grid_mapping")
        if gm and (gm not in ds.variables or "grid_mapping_name" not in ds[gm].attrs):
            out.append(f"{name}: grid_mapping {gm} missing or without grid_mapping_name")
    for name, var in ds.data_vars.items():
        if var.ndim >= 2 and _NV not in var.dims:
            if not (var.attrs.get("long_name") or var.attrs.get("standard_name")):
                out.append(f"{name}: long_name missing")
            if "units" not in var.attrs:
                out.append(f"{name}: units missing")
    return out


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``ds`` to NetCDF-4 (h5netcdf engine, gzip level 4) atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    encoding = {name: {"zlib": True, "complevel": 4} for name, v in ds.data_vars.items() if v.ndim >= 3}
    try:
        ds.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_netcdf(path: str | os.PathLike[str]) -> xr.Dataset:
    """Read a NetCDF file fully into memory (and close it)."""
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return ds.load()
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read NetCDF ({exc})", file=str(path)) from exc


def _coord(ds: xr.Dataset, standard_name: str, names: tuple[str, ...]) -> str | None:
    for name, var in ds.coords.items():
        if var.attrs.get("standard_name") == standard_name:
            return str(name)
    return next((n for n in names if n in ds.coords), None)


def _nearest_index(axis: np.ndarray, values: np.ndarray, bounds: np.ndarray | None):
    """Index of the cell holding each value (by its bounds) or of the nearest coordinate.

    Returns the indices and a mask of values outside the grid (beyond the
    outer bounds, or more than half a step beyond the outer coordinates).
    """
    if bounds is not None:
        lower, upper = bounds.min(axis=1), bounds.max(axis=1)
        order = np.argsort(lower)
        pos = np.clip(np.searchsorted(lower[order], values, side="right") - 1, 0, len(axis) - 1)
        pos = order[pos]
        return pos, (values < lower[pos]) | (values >= upper[pos])
    right = np.clip(np.searchsorted(axis, values), 1, max(len(axis) - 1, 1))
    left = right - 1
    if len(axis) == 1:
        return np.zeros(len(values), dtype=np.int64), np.zeros(len(values), dtype=bool)
    pos = np.where(np.abs(values - axis[left]) <= np.abs(axis[right] - values), left, right)
    half = (axis[1:] - axis[:-1]).max() / 2
    return pos, (values < axis[0] - half) | (values > axis[-1] + half)


def annotate(points: pd.DataFrame, env: xr.Dataset | str | os.PathLike[str], variables: list[str] | None = None,
             *, method: Literal["nearest", "linear"] = "linear") -> pd.DataFrame:
    """Values of a gridded layer at each fix or stop (Movebank Env-DATA style).

    Parameters
    ----------
    points : pandas.DataFrame
        Fixes (lon, lat, timestamp) or stops (lon, lat, start_time, end_time:
        the stop's midpoint in time is used).
    env : xarray.Dataset or path
        A gridded layer with latitude/longitude coordinates (CF standard
        names, or lat/latitude/y and lon/longitude/x) and optionally time;
        longitudes may run 0-360.
    variables : list of str, optional
        Variables to sample; default all with both spatial dimensions.
    method : {"linear", "nearest"}
        Linear (bilinear in space, linear in time) or nearest neighbour.
        Positions beyond the grid (by more than half a cell for nearest) get
        NaN.

    Returns
    -------
    pandas.DataFrame
        One column per variable, aligned with ``points.index``.
    """
    if method not in ("nearest", "linear"):
        raise ConfigError(f"method = {method!r}: expected 'nearest' or 'linear'")
    ds = env if isinstance(env, xr.Dataset) else read_netcdf(env)
    lat_n = _coord(ds, "latitude", (S.LAT, "latitude", "y"))
    lon_n = _coord(ds, "longitude", (S.LON, "longitude", "x"))
    time_n = _coord(ds, "time", (S.TIME, "t"))
    if lat_n is None or lon_n is None:
        raise InputError("gridded layer has no latitude/longitude coordinates")
    variables = variables or [n for n, v in ds.data_vars.items() if lat_n in v.dims and lon_n in v.dims]
    missing = [v for v in variables if v not in ds.data_vars]
    if missing:
        raise InputError(f"gridded layer lacks variable(s) {', '.join(missing)}")
    allowed = {lat_n, lon_n, time_n}
    extra = {v: sorted(set(map(str, ds[v].dims)) - allowed) for v in variables}
    extra = {k: d for k, d in extra.items() if d}
    if extra:
        raise InputError(f"variables with dimensions besides lat/lon/time cannot be sampled: {extra}; "
                         "select one level first (ds.isel(...))")
    dims = [lat_n, lon_n] + ([time_n] if time_n in ds.dims else [])
    bounds = {k: ds[ds[k].attrs["bounds"]] for k in dims if ds[k].attrs.get("bounds") in ds.variables}
    ds = ds[variables].sortby(dims)
    lon = points[S.LON].to_numpy(float)
    if float(ds[lon_n].max()) > 180.0:
        lon = np.mod(lon, 360.0)
    idx = {lon_n: lon, lat_n: points[S.LAT].to_numpy(float)}
    if time_n in dims:
        if S.TIMESTAMP in points:
            idx[time_n] = _naive_utc(points[S.TIMESTAMP])
        else:
            start, end = _naive_utc(points[S.START_TIME]), _naive_utc(points[S.END_TIME])
            idx[time_n] = start + (end - start) / 2
        if np.issubdtype(ds[time_n].dtype, np.datetime64):  # interp needs one unit (pandas 3 uses us)
            idx[time_n] = idx[time_n].astype(ds[time_n].dtype)
    out = {v: np.full(len(points), np.nan) for v in variables}
    for s in range(0, len(points), _CHUNK):
        if method == "linear":
            sel = {k: xr.DataArray(v[s:s + _CHUNK], dims="points") for k, v in idx.items()}
            got = ds.interp(sel, method="linear")
        else:
            outside = np.zeros(len(idx[lat_n][s:s + _CHUNK]), dtype=bool)
            sel = {}
            for k, v in idx.items():
                pos, off = _nearest_index(ds[k].to_numpy(), v[s:s + _CHUNK],
                                          bounds[k].to_numpy() if k in bounds else None)
                sel[k] = xr.DataArray(pos, dims="points")
                outside |= off
            got = ds.isel(sel).where(xr.DataArray(~outside, dims="points"))
        for v in variables:
            out[v][s:s + _CHUNK] = got[v].to_numpy().reshape(-1)
    return pd.DataFrame(out, index=points.index)
