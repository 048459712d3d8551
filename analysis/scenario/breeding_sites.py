"""Breeding sites for the proximity tables: from a store's sites table, from breeding stops, or from a site list.

A *site list* is a user's CSV such as ``flagship_sites.csv``
(``site,country,lat,lon,species,role`` plus any other columns): it is read
with validation, and a bad value gets one line naming the file, the line,
the column and what was expected
(``sites.csv:7: lat = '95.2': expected degrees within [-90, 90]``).
"""
from __future__ import annotations

import csv
import os

import numpy as np
import pandas as pd

from flyway import schema as S
from flyway.errors import InputError

__all__ = ["read_site_list", "breeding_sites", "SITE_SOURCE", "SITE_LIST_COLUMNS"]

SITE_SOURCE = "site_source"  # sites table | stops | site list (column name; a candidate for flyway.schema)
SITE_LIST_COLUMNS = ("site", "country", "lat", "lon", "species", "role")
_SOURCE_TABLE, _SOURCE_STOPS, _SOURCE_LIST = "sites table", "stops", "site list"


def read_site_list(source: str | os.PathLike[str] | pd.DataFrame) -> pd.DataFrame:
    """A user's site list (``site,country,lat,lon,species,role`` …), validated.

    Parameters
    ----------
    source
        A CSV file (UTF-8, header row; extra columns such as ``source`` are
        kept) or a DataFrame with those columns.

    Returns
    -------
    pandas.DataFrame
        The rows with ``lat``/``lon`` as floats and ``role`` lower-cased.

    Raises
    ------
    InputError
        One line naming the file, the line, the column and what was
        expected, e.g. ``sites.csv:7: lat = 95.2: expected degrees within [-90, 90]``.
    """
    if isinstance(source, pd.DataFrame):
        name, frame = "site list", source.astype(object).where(source.notna(), "").astype(str)
        lines = np.arange(len(frame)) + 2
    else:
        name = str(source)
        try:
            with open(source, newline="", encoding="utf-8-sig") as fh:
                reader = csv.reader(fh)
                header = next(reader, None)
                rows, line_no = [], []
                for row in reader:  # a site list: tens to thousands of rows
                    if any(cell.strip() for cell in row):
                        rows.append(row)
                        line_no.append(reader.line_num)
        except FileNotFoundError:
            raise InputError("site list not found", file=name) from None
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InputError(f"cannot read the site list as UTF-8 CSV ({exc})", file=name) from None
        if header is None:
            raise InputError(f"empty file; expected a header {','.join(SITE_LIST_COLUMNS)}", file=name)
        header = [h.strip() for h in header]
        for row, line in zip(rows, line_no):
            if len(row) != len(header):
                raise InputError(f"{len(row)} fields, expected {len(header)} (as in the header)", file=name,
                                 line=line)
        frame = pd.DataFrame(rows, columns=header, dtype=str)
        lines = np.asarray(line_no, dtype=np.int64)
    missing = [c for c in SITE_LIST_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"missing column {missing[0]}; expected columns {','.join(SITE_LIST_COLUMNS)}", file=name)
    out = frame.copy()
    for col in ("site", "species", "role"):
        text = out[col].astype(str).str.strip()
        bad = np.flatnonzero((text == "").to_numpy())
        if bad.size:
            raise InputError(f"{col} is empty; expected a {'site name' if col == 'site' else col}", file=name,
                             line=int(lines[bad[0]]), column=col)
        out[col] = text
    out["role"] = out["role"].str.lower()
    bad = np.flatnonzero(~out["role"].isin(S.STOP_KINDS).to_numpy())
    if bad.size:
        raise InputError(f"role = {out['role'].iloc[bad[0]]!r}: expected one of {', '.join(S.STOP_KINDS)}",
                         file=name, line=int(lines[bad[0]]), column="role")
    for col, limit in (("lat", 90.0), ("lon", 180.0)):
        raw = out[col].astype(str).str.strip()
        value = pd.to_numeric(raw, errors="coerce").to_numpy(float)
        bad = np.flatnonzero(~(np.abs(value) <= limit))
        if bad.size:
            raise InputError(f"{col} = {raw.iloc[bad[0]]!r}: expected degrees within [-{limit:g}, {limit:g}]",
                             file=name, line=int(lines[bad[0]]), column=col)
        out[col] = value
    out["country"] = out["country"].astype(str).str.strip()
    return out.reset_index(drop=True)


def breeding_sites(*, stops: pd.DataFrame | None = None, sites: str | os.PathLike[str] | pd.DataFrame | None = None,
                   site_table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Breeding sites from a store's sites table, from the stops, and/or from a site list.

    Parameters
    ----------
    stops
        Stops (:data:`flyway.schema.STOPS`): stops of kind ``breeding``
        are clustered per species (:func:`flyway.analysis.sites.find_sites`,
        default parameters). Ignored when ``site_table`` is given.
    sites
        A site list (:func:`read_site_list`): rows with role ``breeding``.
    site_table
        The store's sites table (:data:`flyway.schema.SITES`): sites whose
        ``kinds`` include ``breeding``.

    Returns
    -------
    pandas.DataFrame
        ``species``, ``site_id``, ``country``, ``lon``, ``lat``,
        ``n_individuals``, ``site_source``.
    """
    frames = []
    if site_table is not None and len(site_table):
        kinds = (site_table[S.KINDS].astype("string").fillna("") if S.KINDS in site_table
                 else pd.Series("", index=site_table.index))
        bred = site_table.loc[kinds.str.split(";").map(lambda k: S.KIND_BREEDING in k).to_numpy(bool)]
        frames.append(_site_rows(bred, _SOURCE_TABLE))
    elif stops is not None and len(stops):
        kind = stops[S.KIND].astype(str) if S.KIND in stops else pd.Series("", index=stops.index)
        bred = stops.loc[(kind == S.KIND_BREEDING).to_numpy()]
        if len(bred):
            from flyway.analysis.sites import find_sites

            frames.append(_site_rows(find_sites(bred), _SOURCE_STOPS))
    if sites is not None:
        lst = read_site_list(sites)
        lst = lst.loc[(lst["role"] == S.KIND_BREEDING).to_numpy()]
        frames.append(pd.DataFrame({S.SPECIES: lst["species"].to_numpy(object), S.SITE_ID: lst["site"].to_numpy(object),
                                    S.COUNTRY: lst["country"].to_numpy(object), S.LON: lst["lon"].to_numpy(float),
                                    S.LAT: lst["lat"].to_numpy(float),
                                    S.N_INDIVIDUALS: pd.array([pd.NA] * len(lst), dtype="Int64"),
                                    SITE_SOURCE: _SOURCE_LIST}))
    cols = [S.SPECIES, S.SITE_ID, S.COUNTRY, S.LON, S.LAT, S.N_INDIVIDUALS, SITE_SOURCE]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=float if c in (S.LON, S.LAT) else object) for c in cols})
    return pd.concat(frames, ignore_index=True)[cols]


def _site_rows(table: pd.DataFrame, source: str) -> pd.DataFrame:
    country = (table[S.COUNTRIES] if S.COUNTRIES in table else
               table[S.COUNTRY] if S.COUNTRY in table else pd.Series("", index=table.index))
    n_ind = table[S.N_INDIVIDUALS] if S.N_INDIVIDUALS in table else pd.Series(pd.NA, index=table.index)
    return pd.DataFrame({S.SPECIES: table[S.SPECIES].astype(str).to_numpy(object),
                         S.SITE_ID: table[S.SITE_ID].astype(str).to_numpy(object),
                         S.COUNTRY: country.astype("string").fillna("").to_numpy(object),
                         S.LON: table[S.LON].to_numpy(float), S.LAT: table[S.LAT].to_numpy(float),
                         S.N_INDIVIDUALS: pd.array(n_ind.to_numpy(), dtype="Int64"), SITE_SOURCE: source})
