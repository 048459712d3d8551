"""Movebank reference data (deployments): species, sex, life stage, deploy-on/off.

Joined to fixes on animal (and tag when both sides have it). A fix outside
every deployment of its animal/tag is flagged ``OUTSIDE_DEPLOYMENT``, never
dropped (Movebank itself leaves such "undeployed" events out of a track).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from flyway import schema as S
from flyway.errors import InputError
from flyway.ingest.mapping import normalise_header

# reference-data column (normalised Movebank name) -> internal name
REF_ANIMAL = "animal_id"
REF_TAG = "tag_id"
REF_TAXON = "taxon"
REF_ON = "deploy_on"
REF_OFF = "deploy_off"
REF_SEX = "sex"
REF_STAGE = "life_stage"
_ALIASES = {
    REF_ANIMAL: ("animal-id", "individual-local-identifier", "animal-local-identifier"),
    REF_TAG: ("tag-id", "tag-local-identifier"),
    REF_TAXON: ("animal-taxon", "individual-taxon-canonical-name", "taxon-canonical-name"),
    REF_ON: ("deploy-on-date", "deploy-on-timestamp"),
    REF_OFF: ("deploy-off-date", "deploy-off-timestamp"),
    REF_SEX: ("animal-sex", "sex"),
    REF_STAGE: ("animal-life-stage", "life-stage"),
}
REFERENCE_SCHEMA = pa.schema([
    (REF_ANIMAL, pa.string()), (REF_TAG, pa.string()), (REF_TAXON, pa.string()),
    (REF_ON, S.TIMESTAMP_TYPE), (REF_OFF, S.TIMESTAMP_TYPE), (REF_SEX, pa.string()), (REF_STAGE, pa.string()),
])


def read_reference(path: str | Path) -> pa.Table:
    """Read a Movebank reference-data CSV into the internal deployment table.

    Raises :class:`InputError` naming the file, line and column of a bad
    deploy-on/off date or a missing animal-id column.
    """
    path = Path(path)
    name = path.name
    try:
        raw = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
            strings_can_be_null=True, column_types=_all_strings(path)))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"cannot read reference data ({exc})", file=name) from exc
    keys = {normalise_header(c): c for c in raw.column_names}
    cols: dict[str, pa.Array] = {}
    for internal, names in _ALIASES.items():
        src = next((keys[normalise_header(n)] for n in names if normalise_header(n) in keys), None)
        cols[internal] = raw.column(src) if src else pa.nulls(raw.num_rows, pa.string())
    if cols[REF_ANIMAL].null_count == raw.num_rows:
        raise InputError("reference data needs an animal-id column (Movebank reference data)", file=name, line=1)
    out = {}
    for internal in (REF_ANIMAL, REF_TAG, REF_TAXON, REF_SEX, REF_STAGE):
        out[internal] = pc.utf8_trim_whitespace(cols[internal].cast(pa.string()))
    for internal in (REF_ON, REF_OFF):
        s = pd.Series(cols[internal].to_pandas(), dtype=object)
        parsed = pd.to_datetime(s, format="ISO8601", errors="coerce", utc=True)
        bad = parsed.isna() & s.notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"{_ALIASES[internal][0]} = {s.iloc[row]!r} is not a date "
                             "(expected yyyy-MM-dd HH:mm:ss.SSS, UTC)", file=name, line=row + 2)
        out[internal] = pa.array(parsed, S.TIMESTAMP_TYPE)
    return pa.table(out, schema=REFERENCE_SCHEMA)


def _all_strings(path: Path) -> dict[str, pa.DataType]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        header = next(csv.reader(fh), [])
    return {h: pa.string() for h in header}


def merge_reference(old: pa.Table | None, new: pa.Table) -> pa.Table:
    """Deployments known so far: ``new`` rows replace old rows of the same animal and tag."""
    if old is None or old.num_rows == 0:
        return new
    old_df, new_df = old.to_pandas(), new.to_pandas()
    keys = set(zip(new_df[REF_ANIMAL], new_df[REF_TAG].fillna("")))
    keep = [(a, t or "") not in keys for a, t in zip(old_df[REF_ANIMAL], old_df[REF_TAG].fillna(""))]
    merged = pd.concat([old_df[keep], new_df], ignore_index=True)
    return pa.Table.from_pandas(merged, schema=REFERENCE_SCHEMA, preserve_index=False)


def apply_reference(fixes: pa.Table, reference: pa.Table | None) -> pa.Table:
    """Fill species/sex/life stage from deployments and flag fixes outside them.

    A fix matches a deployment of the same animal (and the same tag where the
    deployment names one). Fixes of animals absent from the reference data are
    left as they are.
    """
    if reference is None or reference.num_rows == 0 or fixes.num_rows == 0:
        return fixes
    ref = reference.to_pandas()
    n = fixes.num_rows
    df = pd.DataFrame({
        "row": np.arange(n),
        REF_ANIMAL: fixes.column(S.INDIVIDUAL_ID).to_pandas(),
        "fix_tag": fixes.column(S.TAG_ID).to_pandas(),
        "t": fixes.column(S.TIMESTAMP).to_pandas(),
    })
    m = df.merge(ref, on=REF_ANIMAL, how="inner")
    if m.empty:
        return fixes
    tag_ok = m[REF_TAG].isna() | m["fix_tag"].isna() | (m[REF_TAG] == m["fix_tag"])
    m = m[tag_ok.to_numpy()]
    inside = (m[REF_ON].isna() | (m["t"] >= m[REF_ON])) & (m[REF_OFF].isna() | (m["t"] <= m[REF_OFF]))
    m = m.assign(inside=inside.to_numpy())
    # prefer the deployment the fix lies in; otherwise any deployment of the animal
    m = m.sort_values(["row", "inside"], ascending=[True, False]).drop_duplicates("row")
    rows = m["row"].to_numpy()
    outside = np.zeros(n, dtype=bool)
    outside[rows] = ~m["inside"].to_numpy()
    flags = fixes.column(S.QC_FLAGS).to_numpy().copy()
    flags[outside] |= np.uint32(S.QCFlag.OUTSIDE_DEPLOYMENT)

    # the file's own species wins; the deployment fills it where the file has none
    species = pc.coalesce(fixes.column(S.SPECIES), _from_ref(n, rows, m[REF_TAXON]))
    fixes = fixes.set_column(fixes.schema.get_field_index(S.QC_FLAGS), S.QC_FLAGS, pa.array(flags, pa.uint32()))
    fixes = fixes.set_column(fixes.schema.get_field_index(S.SPECIES), S.SPECIES, species)
    for column, ref_col in ((S.SEX, REF_SEX), (S.LIFE_STAGE, REF_STAGE)):
        fixes = fixes.append_column(column, _from_ref(n, rows, m[ref_col]))
    return fixes


def _from_ref(n: int, rows: np.ndarray, values: pd.Series) -> pa.Array:
    out = np.full(n, None, dtype=object)
    out[rows] = values.to_numpy(dtype=object)
    # from_pandas: a reference column that is empty comes back from pandas as NaN, not None
    return pa.array(out, pa.string(), from_pandas=True)
