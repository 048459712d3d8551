"""Grid: CF use-intensity cube, NetCDF round trip, annotation from gridded layers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from flyway import schema as S
from flyway.analysis.grid import GridParams, annotate, cf_problems, read_netcdf, use_intensity, write_netcdf
from flyway.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def fixes() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    n = 4000
    return pd.DataFrame({
        S.SPECIES: rng.choice(["Grus monacha", "Platalea minor"], n),
        S.INDIVIDUAL_ID: rng.choice(["a", "b", "c", "d"], n),
        S.TIMESTAMP: pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.uniform(0, 91, n), unit="D"),
        S.LON: rng.uniform(120.0, 122.0, n), S.LAT: rng.uniform(30.0, 31.0, n)})


@pytest.fixture(scope="module")
def stops() -> pd.DataFrame:
    return pd.DataFrame({
        S.SPECIES: ["Grus monacha", "Platalea minor"], S.INDIVIDUAL_ID: ["a", "b"],
        S.START_TIME: pd.to_datetime(["2024-01-20 00:00:00", "2024-02-10 12:00:00"], utc=True),
        S.END_TIME: pd.to_datetime(["2024-02-10 00:00:00", "2024-02-11 00:00:00"], utc=True),
        S.LON: [120.1, 121.3], S.LAT: [30.1, 30.6]})


def test_counts_and_month_split(fixes, stops):
    ds = use_intensity(fixes, stops, GridParams(cell_deg=0.5))
    assert dict(ds.sizes) == {S.SPECIES: 2, S.TIME: 3, S.LAT: 2, S.LON: 4, "nv": 2}
    assert int(ds[S.N_FIXES].sum()) == len(fixes)
    per_species = ds[S.N_FIXES].sum(dim=[S.TIME, S.LAT, S.LON]).to_series()
    assert per_species.to_dict() == fixes[S.SPECIES].value_counts().to_dict()
    crane = ds[S.BIRD_DAYS].sel(species="Grus monacha", lat=30.25, lon=120.25)
    assert crane.to_numpy().tolist() == pytest.approx([12.0, 9.0, 0.0])  # Jan 20 - Feb 10 split by month
    assert float(ds[S.BIRD_DAYS].sum()) == pytest.approx(21.5)
    # n_individuals: distinct birds per species, month, cell
    one = fixes[(fixes[S.SPECIES] == "Grus monacha") & (fixes[S.TIMESTAMP] < "2024-02-01")
                & (fixes[S.LON] < 120.5) & (fixes[S.LAT] < 30.5)]
    got = ds[S.N_INDIVIDUALS].sel(species="Grus monacha", lat=30.25, lon=120.25).isel(time=0)
    assert int(got) == one[S.INDIVIDUAL_ID].nunique()


def test_individuals_from_stops_alone(stops):
    ds = use_intensity(stops=stops, params=GridParams(cell_deg=1.0))
    assert S.N_FIXES not in ds and int(ds[S.N_INDIVIDUALS].sel(species="Grus monacha").sum()) == 2  # 2 months


def test_cf_attributes_and_netcdf_round_trip(tmp_path, fixes, stops):
    ds = use_intensity(fixes, stops, GridParams(cell_deg=0.25))
    assert cf_problems(ds) == []
    assert ds[S.CRS_VARIABLE].attrs["grid_mapping_name"] == "latitude_longitude"
    for name in (S.N_FIXES, S.N_INDIVIDUALS, S.BIRD_DAYS):
        assert {"long_name", "units", "grid_mapping", "cell_methods"} <= set(ds[name].attrs)
    path = write_netcdf(ds, tmp_path / "use.nc")
    back = xr.open_dataset(path, engine="h5netcdf")
    try:
        xr.testing.assert_identical(ds, back.load())
        assert back[S.TIME].encoding["units"].startswith("days since 1970-01-01")
    finally:
        back.close()
    assert cf_problems(read_netcdf(path)) == []
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


def test_cf_check_reports_what_is_missing(fixes):
    ds = use_intensity(fixes, params=GridParams(cell_deg=1.0))
    broken = ds.copy()
    broken.attrs.pop("Conventions")
    broken[S.LAT].attrs.pop("units")
    broken[S.N_FIXES].attrs.pop("units")
    broken = broken.drop_vars(S.CRS_VARIABLE)
    problems = cf_problems(broken)
    assert any("Conventions" in p for p in problems)
    assert any(p.startswith("lat: units") for p in problems)
    assert any(p.startswith("n_fixes: units") for p in problems)
    assert any("grid_mapping" in p for p in problems)


def _linear_layer(lon: np.ndarray | None = None) -> xr.Dataset:
    """ndvi = 2 lat + 3 lon + 0.5 days since 2024-01-01 on a regular grid with descending latitudes."""
    lat = np.arange(30.0, 32.01, 0.5)
    lon = np.arange(119.0, 123.01, 0.5) if lon is None else lon
    time = pd.date_range("2024-01-01", periods=4, freq="7D").to_numpy()
    t_days = (time - time[0]) / np.timedelta64(1, "D")
    value = (2.0 * lat[None, :, None] + 3.0 * lon[None, None, :] + 0.5 * t_days[:, None, None])
    ds = xr.Dataset({"ndvi": (("time", "latitude", "longitude"), value)},
                    coords={"time": time, "latitude": lat, "longitude": lon})
    return ds.isel(latitude=slice(None, None, -1))  # descending latitudes, as in many products


def test_annotate_linear_reproduces_a_linear_field():
    pts = pd.DataFrame({S.LON: [120.3, 121.7], S.LAT: [30.2, 31.9],
                        S.TIMESTAMP: pd.to_datetime(["2024-01-02 12:00:00", "2024-01-20 00:00:00"], utc=True)})
    got = annotate(pts, _linear_layer(), method="linear")
    t = np.array([1.5, 19.0])
    assert got["ndvi"].to_numpy() == pytest.approx(2 * pts[S.LAT] + 3 * pts[S.LON] + 0.5 * t)


def test_annotate_nearest_stops_and_outside_is_nan():
    stops = pd.DataFrame({S.LON: [120.3, 150.0], S.LAT: [30.2, 30.2],
                          S.START_TIME: pd.to_datetime(["2024-01-01", "2024-01-01"], utc=True),
                          S.END_TIME: pd.to_datetime(["2024-01-09", "2024-01-09"], utc=True)})
    got = annotate(stops, _linear_layer(), method="nearest")
    # nearest node: lat 30.0, lon 120.5, time 2024-01-08 (the stop's midpoint is 2024-01-05)
    assert got["ndvi"].iloc[0] == pytest.approx(2 * 30.0 + 3 * 120.5 + 0.5 * 7)
    assert np.isnan(got["ndvi"].iloc[1])


def test_annotate_uses_cell_bounds_and_0_360_longitudes(tmp_path, fixes):
    ds = use_intensity(fixes, params=GridParams(cell_deg=0.5))
    path = write_netcdf(ds.sel(species="Grus monacha"), tmp_path / "cube.nc")
    late = fixes[fixes[S.SPECIES] == "Grus monacha"].head(50)
    got = annotate(late, path, [S.N_FIXES], method="nearest")
    month = late[S.TIMESTAMP].dt.tz_convert(None).dt.to_period("M").dt.to_timestamp()
    expect = [int(ds[S.N_FIXES].sel(species="Grus monacha", time=m, lat=np.floor(y * 2) / 2 + 0.25,
                                     lon=np.floor(x * 2) / 2 + 0.25))
              for m, x, y in zip(month, late[S.LON], late[S.LAT])]
    assert got[S.N_FIXES].tolist() == expect
    across = pd.DataFrame({S.LON: [-179.0, 179.5], S.LAT: [30.0, 30.0],
                           S.TIMESTAMP: pd.to_datetime(["2024-01-08 00:00:00"] * 2, utc=True)})
    got = annotate(across, _linear_layer(np.arange(170.0, 190.01, 0.5)), method="linear")  # 0-360 layer
    assert got["ndvi"].tolist() == pytest.approx([60 + 3 * 181.0 + 3.5, 60 + 3 * 179.5 + 3.5])


def test_bad_inputs():
    with pytest.raises(InputError):
        use_intensity()
    with pytest.raises(ConfigError, match="cell_deg"):
        GridParams(cell_deg=0)
    with pytest.raises(ConfigError, match="bounds"):
        GridParams(bounds=(10, 0, 5, 1))
    with pytest.raises(ConfigError, match="method"):
        annotate(pd.DataFrame({S.LON: [0.0], S.LAT: [0.0]}), _linear_layer(), method="cubic")
    with pytest.raises(InputError, match="lacks"):
        annotate(pd.DataFrame({S.LON: [0.0], S.LAT: [0.0]}), _linear_layer(), ["temperature"])
