"""Escaping of user text on its way into HTML, and small HTML builders that always escape.

Individual ids, site ids, reserve names (WDPA ``NAME``/``ORIG_NAME``), facility
names and file names are user-controlled. folium's ``Popup``/``Tooltip`` and the
``GeoJsonPopup``/``GeoJsonTooltip`` fields insert their text as raw HTML
(folium issues #853, #1315), so every value is escaped here before it reaches a
map or the report: ``html.escape(quote=True)`` after stripping control
characters. Nothing user-supplied ever goes into ``style``, ``href`` or script.
"""
from __future__ import annotations

import html
import math
import re
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MISSING = "–"  # shown for missing values


def esc(value: Any, max_len: int = 300) -> str:
    """Escaped text of any value: control characters stripped, length bounded.

    ``None``, NaN and ``pd.NA`` become an en dash; floats are not formatted
    here (see :func:`fmt`).
    """
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return MISSING
    text = _CONTROL.sub("", str(value))
    if len(text) > max_len:
        text = text[: max_len - 1] + "…"
    return html.escape(text, quote=True)


def fmt(value: Any, digits: int = 1) -> str:
    """A number rounded for reading (``digits`` decimals; fractions as percent via :func:`pct`)."""
    if value is None or value is pd.NA:
        return MISSING
    if isinstance(value, (float, np.floating)):
        return MISSING if not np.isfinite(value) else f"{value:,.{digits}f}"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    return esc(value)


def pct(value: Any) -> str:
    """A fraction in [0, 1] as a percentage (``0.25`` -> ``25%``)."""
    if value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and not np.isfinite(value)):
        return MISSING
    return f"{100.0 * float(value):.0f}%"


def esc_array(values: Iterable[Any], max_len: int = 300) -> list[str]:
    """:func:`esc` over a column (for GeoJSON properties shown by GeoJsonPopup/Tooltip)."""
    return [esc(v, max_len) for v in values]


def table_html(rows: Mapping[str, str], title: str | None = None) -> str:
    """A two-column HTML table; ``rows`` maps a label to an *already escaped* value.

    Labels are escaped too (they are ours, but cheap insurance).
    """
    head = f"<b>{esc(title)}</b><br>" if title is not None else ""
    body = "".join(f"<tr><th style='text-align:left;padding-right:6px'>{esc(k)}</th><td>{v}</td></tr>"
                   for k, v in rows.items())
    return f"{head}<table>{body}</table>"


def frame_html(frame: pd.DataFrame, formats: Mapping[str, Any] | None = None, index: bool = False,
               max_rows: int = 200) -> str:
    """An HTML table of a DataFrame with every header and cell escaped.

    ``formats`` maps a column to a function value -> escaped string (e.g.
    :func:`pct`); other cells go through :func:`fmt`.
    """
    formats = dict(formats or {})
    frame = frame.head(max_rows)
    if index:
        frame = frame.reset_index()
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    lines = []
    for row in frame.itertuples(index=False, name=None):  # report tables: a few hundred rows at most
        cells = "".join(f"<td>{formats.get(c, fmt)(v)}</td>" for c, v in zip(frame.columns, row))
        lines.append(f"<tr>{cells}</tr>")
    return f"<table class='data'><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"
