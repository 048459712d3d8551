"""QC flags: each rule, preserved ingest flags, per-species thresholds."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flyway import schema as S
from flyway.analysis.params import QCParams, load_species_config
from flyway.analysis.qc import KEPT_FLAGS, flag_counts, qc_flags
from flyway.errors import ConfigError

F = S.QCFlag
NOW = "2025-01-01"


def fixes(n: int = 10, species: str = "Grus monacha") -> pd.DataFrame:
    t = pd.Timestamp("2024-03-01", tz="UTC") + pd.to_timedelta(np.arange(n), unit="h")
    return pd.DataFrame({S.INDIVIDUAL_ID: "c1", S.SPECIES: species, S.TIMESTAMP: t,
                         S.LON: 127.0 + np.arange(n) * 0.01, S.LAT: np.full(n, 38.0),
                         S.HDOP: np.full(n, 1.0), S.SATELLITES: np.full(n, 9.0)})


def flags_of(df: pd.DataFrame, **kw) -> np.ndarray:
    return qc_flags(df, now=NOW, **kw)


def test_clean_track_has_no_flags():
    assert (flags_of(fixes()) == 0).all()


def test_coordinates_and_null_island():
    df = fixes()
    df.loc[1, S.LAT] = 95.0
    df.loc[2, S.LON] = np.nan
    df.loc[3, [S.LON, S.LAT]] = 0.0
    f = flags_of(df)
    assert f[1] & F.IMPOSSIBLE_COORDINATES and f[2] & F.IMPOSSIBLE_COORDINATES
    assert f[3] & F.NULL_ISLAND and not f[3] & F.IMPOSSIBLE_COORDINATES
    assert not f[3] & F.SPEED  # null island takes no part in the speed test
    assert (f[[0, 4, 5]] == 0).all()


def test_hdop_satellites_future():
    df = fixes()
    df.loc[2, S.HDOP] = 5.5
    df.loc[3, S.HDOP] = 5.0  # the limit itself is fine
    df.loc[4, S.SATELLITES] = 3
    df.loc[5, S.SATELLITES] = np.nan  # unknown is not flagged
    df.loc[9, S.TIMESTAMP] = pd.Timestamp("2026-01-01", tz="UTC")
    f = flags_of(df)
    assert f[2] == F.HDOP and f[3] == 0 and f[4] == F.FEW_SATELLITES and f[5] == 0
    assert f[9] & F.FUTURE_TIMESTAMP
    assert not qc_flags(df, now="2027-01-01")[9] & F.FUTURE_TIMESTAMP


def test_duplicates_keep_lowest_hdop():
    df = fixes(4)
    dup = df.iloc[[1]].assign(**{S.HDOP: 0.5, S.LON: 127.0105})
    df = pd.concat([df, dup], ignore_index=True)
    f = flags_of(df)
    assert f[1] & F.DUPLICATE_TIMESTAMP and not f[4] & F.DUPLICATE_TIMESTAMP
    assert int((f & F.DUPLICATE_TIMESTAMP != 0).sum()) == 1


def test_speed_spike_and_species_limit():
    df = fixes(10)
    df.loc[5, S.LAT] += 0.9  # 100 km away and back within an hour each way: ~28 m/s
    assert not flags_of(df)[5] & F.SPEED  # below the crane limit of 30 m/s
    df.loc[5, S.LAT] += 0.5  # ~155 km: 43 m/s
    f = flags_of(df)
    assert f[5] == F.SPEED and (np.delete(f, 5) == 0).all()
    goose = df.assign(**{S.SPECIES: "Branta leucopsis"})
    assert flags_of(goose)[5] == F.SPEED  # default 40 m/s
    df.loc[5, S.LAT] -= 0.6  # ~88 km: 24 m/s
    assert flags_of(df)[5] == 0


def test_first_fix_outlier():
    df = fixes(6)
    df.loc[0, S.LAT] += 2.0
    f = flags_of(df)
    assert f[0] == F.SPEED and (f[1:] == 0).all()


def test_ingest_flags_are_kept_others_recomputed():
    df = fixes(5)
    df[S.QC_FLAGS] = np.array([F.OUTSIDE_DEPLOYMENT, F.MOVEBANK_OUTLIER, F.HDOP, F.SPEED, 0], dtype=np.uint32)
    f = flags_of(df)
    assert f[0] == F.OUTSIDE_DEPLOYMENT and f[1] == F.MOVEBANK_OUTLIER
    assert f[2] == 0 and f[3] == 0  # stale flags are recomputed away
    assert KEPT_FLAGS & F.OUTSIDE_DEPLOYMENT


def test_row_order_and_counts():
    df = fixes(30)
    df.loc[7, S.LAT] += 3
    df.loc[12, S.HDOP] = 9
    shuffled = df.sample(frac=1, random_state=1)
    pd.testing.assert_series_equal(pd.Series(flags_of(df), index=df.index),
                                   pd.Series(flags_of(shuffled), index=shuffled.index).sort_index())
    counts = flag_counts(flags_of(df))
    assert counts["speed"] == 1 and counts["hdop"] == 1 and counts["clean"] == 28


def test_params_and_user_override(tmp_path):
    with pytest.raises(ConfigError, match="max_speed_ms"):
        QCParams(max_speed_ms=0)
    user = tmp_path / "params.toml"
    user.write_text('[species."Grus monacha"]\nmax_speed_ms = 10.0\n')
    cfg = load_species_config(user)
    assert cfg.qc("Grus monacha").max_speed_ms == 10.0 and cfg.qc("Platalea minor").max_speed_ms == 30.0
    df = fixes(10)
    df.loc[5, S.LAT] += 0.5  # ~55 km and back: 15 m/s
    assert flags_of(df, species_config=cfg)[5] == F.SPEED
    user.write_text("[default]\nmax_sped = 3\n")
    with pytest.raises(ConfigError, match="max_sped"):
        load_species_config(user)
