"""The numpy dedup of sorted first-time rows equals the general hash-based dedup."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from flyway import schema as S
from flyway.ingest.writer import FinalizeResult, _dedup_against, _dedup_sorted

KEY_COLS = [S.INDIVIDUAL_ID, S.TIMESTAMP, S.LON, S.LAT, S.EVENT_ID]


def _table(rows) -> pa.Table:
    df = pd.DataFrame(rows, columns=["ind", "t", "x", "ev"])
    df = df.sort_values(["ind", "t"], kind="mergesort").reset_index(drop=True)
    return pa.table({
        S.INDIVIDUAL_ID: pa.array(df["ind"].astype(str)),
        S.TIMESTAMP: pa.array(pd.to_datetime(df["t"], unit="h", utc=True)),
        S.LON: pa.array(df["x"].astype(float)), S.LAT: pa.array(np.zeros(len(df))),
        S.EVENT_ID: pa.array(df["ev"], pa.int64()),
        S.SOURCE_FILE: pa.array(["f.csv"] * len(df)), S.SOURCE_LINE: pa.array(np.arange(2, len(df) + 2)),
        S.QC_FLAGS: pa.array(np.zeros(len(df), np.uint32)),
    })


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 6), st.integers(0, 2),
                          st.one_of(st.none(), st.integers(0, 8))), min_size=1, max_size=40))
def test_sorted_fast_path_equals_general_path(rows):
    new = _table(rows)
    empty = new.select(KEY_COLS).slice(0, 0)
    r1, r2 = FinalizeResult(), FinalizeResult()
    fast = _dedup_sorted(new, r1)
    general = _dedup_against(new, empty, r2)
    assert fast.equals(general)
    assert r1.rows_duplicate == r2.rows_duplicate
    q1 = pa.concat_tables(r1.quarantine).column("line").to_pylist() if r1.quarantine else []
    q2 = pa.concat_tables(r2.quarantine).column("line").to_pylist() if r2.quarantine else []
    assert sorted(q1) == sorted(q2)
