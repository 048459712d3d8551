"""CSV block helpers (flyway.ingest.blocks): line breaks inside cells, line numbers."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flyway.ingest import blocks as B


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_newline_scan_agrees_with_numpy(data):
    buffer = pa.py_buffer(data)
    expected = b"\n" in data
    assert B._holds_newline(buffer) is expected


def test_newline_scan_without_libc(monkeypatch):
    monkeypatch.setattr(B, "_MEMCHR", None)
    assert B._holds_newline(pa.py_buffer(b"a,b\nc"))
    assert not B._holds_newline(pa.py_buffer(b"a,b,c"))


@pytest.mark.parametrize("scan", ["libc", "numpy"])
def test_line_breaks_count_the_breaks_inside_quoted_cells(monkeypatch, scan):
    if scan == "numpy":
        monkeypatch.setattr(B, "_MEMCHR", None)
    text = b'a,b\n1,"x\ny"\n2,z\n3,"p\nq\nr"\n'
    batch = pcsv.read_csv(pa.BufferReader(text), parse_options=pcsv.ParseOptions(newlines_in_values=True)
                          ).to_batches()[0]
    assert B.line_breaks(batch).tolist() == [1, 0, 2]
    plain = pcsv.read_csv(pa.BufferReader(b"a,b\n1,x\n2,y\n")).to_batches()[0]
    assert B.line_breaks(plain) is None


def test_line_numbers_skip_rejected_lines():
    lines, nxt = B.line_numbers(4, 2, [(3, "bad"), (9, "later block")])
    assert lines.tolist() == [2, 4, 5, 6] and nxt == 7
    lines, nxt = B.line_numbers(0, 7, [])
    assert lines.size == 0 and nxt == 7
    assert np.issubdtype(lines.dtype, np.integer)
