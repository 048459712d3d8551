"""Readers: Movebank exports and their spellings, compression, reference data,
vendor mappings (Ornitela, plain, user TOML), encodings, idempotence, and line
numbers across blocks.
"""
from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
import shapely

from flyway import schema as S
from flyway.ingest import quarantine as Q
from flyway.ingest.mapping import detect_format
from flyway.store import STATUS_COMMITTED, Store
from tests.ingest.conftest import (
    BIRD, MB_ALT, MB_EVENT, MB_HDOP, MB_ID, MB_LAT, MB_LON, MB_SATS, MB_SENSOR, MB_SPECIES, MB_SPEED,
    MB_TIME, MOVEBANK_HEADER, SPECIES, TAG, csv_text, file_report, fix, shared_data, zip_bytes,
)

PLAIN_HEADER = ("individual_id", "timestamp", "lat", "lon", "species")  # input text of a plain CSV
FULL_HEADER = MOVEBANK_HEADER + (MB_HDOP, MB_SATS, MB_ALT, MB_SPEED, MB_SENSOR, S.FIXES[S.STUDY].movebank)


def full_rows(n: int = 3) -> list[dict[str, str]]:
    return [fix(i, **{MB_HDOP: "1.4", MB_SATS: "9", MB_ALT: "12.5", MB_SPEED: "3.25", MB_SENSOR: "GPS",
                      S.FIXES[S.STUDY].movebank: "Spoonbills of Chongming"}) for i in range(n)]


def stored_key(fixes: pd.DataFrame) -> list[tuple]:
    return list(zip(fixes[S.INDIVIDUAL_ID], fixes[S.TIMESTAMP], fixes[S.LON], fixes[S.LAT]))


# ============================================================================ Movebank
def test_movebank_export_is_read_into_the_fixes_contract(harness):
    report = harness.ingest(harness.write(full_rows(3), name="mb.csv", header=FULL_HEADER))
    fr = file_report(report, "mb.csv")
    assert (fr.status, fr.format, fr.rows_kept) == (STATUS_COMMITTED, "movebank", 3)
    fixes = harness.fixes()
    assert list(fixes.columns) == S.FIXES.names
    first = fixes.iloc[0]
    assert first[S.TIMESTAMP] == pd.Timestamp("2024-03-01 06:00:00", tz="UTC")
    assert (first[S.LON], first[S.LAT]) == (121.8, 31.5)
    assert (first[S.INDIVIDUAL_ID], first[S.TAG_ID], first[S.SPECIES]) == (BIRD, TAG, SPECIES)
    assert first[S.STUDY] == "Spoonbills of Chongming"
    assert first[S.SENSOR_TYPE] == "gps"
    assert first[S.EVENT_ID] == 1000 and first[S.SATELLITES] == 9
    assert first[S.HDOP] == pytest.approx(1.4) and first[S.ALTITUDE_M] == pytest.approx(12.5)
    assert first[S.GROUND_SPEED_MS] == pytest.approx(3.25)
    assert first[S.SOURCE_LINE] == 2 and first[S.SOURCE_FILE] == "mb.csv"
    assert first[S.BATCH_ID] == report.batch_id and first[S.QC_FLAGS] == 0
    point = shapely.from_wkb(first[S.GEOMETRY])
    assert (point.x, point.y) == (121.8, 31.5)


def test_study_defaults_to_file_stem(harness):
    harness.ingest(harness.write([fix(0)], name="chongming_2024.csv"))
    assert harness.fixes()[S.STUDY].tolist() == ["chongming_2024"]


@pytest.mark.parametrize("spell", [
    lambda h: h.replace("-", "."),                # R move: location.long
    lambda h: h.replace("-", "_"),                # REST API: location_long
    lambda h: h.replace("-", "_").title(),        # Location_Long
    lambda h: h.replace("-", " "),                # "location long"
], ids=["dots", "underscores", "title-case", "spaces"])
def test_movebank_header_spellings_are_aliases(harness, spell):
    header = [spell(h) for h in MOVEBANK_HEADER]
    rows = [[r[h] for h in MOVEBANK_HEADER] for r in (fix(0), fix(1))]
    report = harness.ingest(harness.write(rows, name="aliases.csv", header=header))
    fr = file_report(report, "aliases.csv")
    assert (fr.format, fr.rows_kept) == ("movebank", 2)
    assert harness.fixes()[S.LON].tolist() == [121.8, 121.801]


def test_detect_format_recognises_partial_movebank_headers():
    assert detect_format([MB_TIME, MB_LON, MB_LAT]) == "movebank"
    assert detect_format([MB_ID, MB_TIME]) == "movebank"  # so a missing column is named the Movebank way
    assert detect_format(["device_id", "UTC_datetime", "Latitude", "Longitude"]) == "ornitela"
    assert detect_format(list(PLAIN_HEADER)) == "plain"


def test_gzip_is_read_and_sniffed_by_content(harness):
    gz = harness.write(good := [fix(i) for i in range(3)], name="tags.csv.gz", compress="gzip")
    report = harness.ingest(gz)
    assert file_report(report, "tags.csv.gz").rows_kept == 3
    # gzip bytes under a plain name are still gzip (magic bytes, not the name, decide)
    disguised = harness.write_bytes("other.csv", gzip.compress(csv_text([fix(i) for i in range(3, 5)]).encode()))
    report = harness.ingest(disguised)
    assert file_report(report, "other.csv").rows_kept == 2
    assert len(harness.fixes()) == len(good) + 2


def test_zip_with_one_member(harness):
    path = harness.write([fix(i) for i in range(3)], name="export.zip", compress="zip")
    report = harness.ingest(path)
    fr = file_report(report, "export.zip!export.csv")
    assert fr.rows_kept == 3
    assert set(harness.fixes()[S.SOURCE_FILE]) == {"export.zip!export.csv"}


def test_zip_with_several_members_ingests_each_with_its_own_hash(harness):
    members = {
        "a.csv": csv_text([fix(i) for i in range(3)]),
        "sub/b.csv": csv_text([fix(i, **{MB_ID: "BFS-02"}) for i in range(2)]),
        "__MACOSX/._a.csv": "mac resource fork",
    }
    path = harness.write_bytes("study.zip", zip_bytes(members))
    report = harness.ingest(path)
    assert sorted(f.file for f in report.files) == ["study.zip!a.csv", "study.zip!sub/b.csv"]
    a, b = file_report(report, "study.zip!a.csv"), file_report(report, "study.zip!sub/b.csv")
    assert (a.rows_kept, b.rows_kept) == (3, 2)
    assert a.sha256 != b.sha256 and len(a.sha256) == 64
    assert harness.fixes()[S.INDIVIDUAL_ID].value_counts().to_dict() == {BIRD: 3, "BFS-02": 2}


# ============================================================================ reference data
def _reference(harness, deploy_on: str, deploy_off: str) -> object:
    header = (S.MB_REF_ANIMAL_ID, S.MB_REF_TAG_ID, S.MB_REF_ANIMAL_TAXON, S.MB_REF_DEPLOY_ON, S.MB_REF_DEPLOY_OFF,
              S.FIXES[S.SEX].movebank, S.FIXES[S.LIFE_STAGE].movebank)
    path = harness.folder / "reference.csv"
    path.write_text(csv_text([[BIRD, TAG, SPECIES, deploy_on, deploy_off, "f", "adult"]], header=header),
                    encoding="utf-8")
    return path


def test_reference_data_fills_species_sex_life_stage_and_flags_undeployed_fixes(harness):
    ref = _reference(harness, "2024-03-01 06:30:00.000", "2024-03-01 09:30:00.000")
    header = [h for h in MOVEBANK_HEADER if h != MB_SPECIES]
    report = harness.ingest(harness.write([fix(i) for i in range(5)], name="tags.csv", header=header),
                            reference=ref)
    assert file_report(report, "tags.csv").rows_kept == 5  # flagged, never dropped
    fixes = harness.fixes()
    assert set(fixes[S.SPECIES]) == {SPECIES}
    assert set(fixes[S.SEX]) == {"f"} and set(fixes[S.LIFE_STAGE]) == {"adult"}
    outside = (fixes[S.QC_FLAGS].to_numpy(dtype=np.uint32) & S.QCFlag.OUTSIDE_DEPLOYMENT) > 0
    assert outside.tolist() == [True, False, False, False, True]  # 06:00 before on, 10:00 after off


def test_reference_data_is_kept_for_later_ingests(harness):
    ref = _reference(harness, "2024-01-01 00:00:00.000", "")
    header = [h for h in MOVEBANK_HEADER if h != MB_SPECIES]
    harness.ingest(harness.write([fix(0)], name="first.csv", header=header), reference=ref)
    report = harness.ingest(harness.write([fix(1)], name="second.csv", header=header))
    assert file_report(report, "second.csv").rows_kept == 1
    assert harness.fixes()[S.SEX].tolist() == ["f", "f"]


def test_reference_without_sex_or_life_stage_columns(harness):
    path = harness.folder / "ref_min.csv"
    path.write_text(f"{S.MB_REF_ANIMAL_ID},{S.MB_REF_ANIMAL_TAXON}\n{BIRD},{SPECIES}\n", encoding="utf-8")
    header = [h for h in MOVEBANK_HEADER if h != MB_SPECIES]
    harness.ingest(harness.write([fix(0), fix(1)], name="t.csv", header=header), reference=path)
    fixes = harness.fixes()
    assert fixes[S.SPECIES].tolist() == [SPECIES] * 2 and fixes[S.SEX].isna().all()


# ============================================================================ vendor mappings
ORNITELA_HEADER = ("device_id", "device_name", "UTC_datetime", "UTC_date", "UTC_time", "datatype", "satcount",
                   "U_bat_mV", "bat_soc_pct", "solar_I_mA", "hdop", "Latitude", "Longitude", "MSL_altitude_m",
                   "Reserved", "speed_km/h", "direction_deg")


def _ornitela_rows() -> list[list[str]]:
    return [
        ["213456", "crane-A", "2023-10-01 00:00:00", "2023-10-01", "00:00:00", "GPS", "8", "4012", "91", "12",
         "1.1", "45.1234", "123.4567", "152", "", "36", "90"],
        ["213456", "crane-A", "2023-10-01 00:05:00", "2023-10-01", "00:05:00", "SENSORS", "", "4011", "91", "10",
         "", "", "", "", "", "", ""],
        ["213456", "crane-A", "2023-10-01 00:10:00", "2023-10-01", "00:10:00", "GPSS", "6", "4010", "90", "9",
         "2.3", "45.1300", "123.4600", "160", "", "0", "0"],
    ]


@pytest.mark.parametrize("fmt", [None, "ornitela", "vendor:ornitela"])
def test_ornitela_converts_km_h_and_keeps_sensor_rows_in_quarantine(harness, fmt):
    path = harness.write(_ornitela_rows(), name="orn.csv", header=ORNITELA_HEADER)
    report = harness.ingest(path, format=fmt, species="Antigone vipio")
    fr = file_report(report, "orn.csv")
    assert (fr.format, fr.rows_read, fr.rows_kept, fr.rows_quarantined) == ("ornitela", 3, 2, 1)
    q = harness.quarantine()
    assert q[[S.Q_LINE, S.Q_REASON, S.Q_COLUMN, S.Q_VALUE]].values.tolist() == [
        [3, Q.FILTERED_RECORD, "datatype", "SENSORS"]]
    fixes = harness.fixes()
    assert fixes[S.GROUND_SPEED_MS].tolist() == pytest.approx([10.0, 0.0])  # 36 km/h = 10 m/s
    assert fixes[S.ALTITUDE_M].tolist() == pytest.approx([152.0, 160.0])
    assert fixes[S.SATELLITES].tolist() == [8, 6]
    assert fixes[S.INDIVIDUAL_ID].tolist() == ["213456"] * 2
    assert fixes[S.SPECIES].tolist() == ["Antigone vipio"] * 2
    assert fixes[S.TIMESTAMP].iloc[0] == pd.Timestamp("2023-10-01 00:00:00", tz="UTC")


def test_plain_csv_with_utc_offsets(harness):
    rows = [[BIRD, "2024-03-01T14:00:00+08:00", "31.5", "121.8", SPECIES],
            [BIRD, "2024-03-01T07:00:00Z", "31.6", "121.9", SPECIES],
            [BIRD, "2024-03-01T17:30:00+09:30", "31.7", "122.0", SPECIES]]
    report = harness.ingest(harness.write(rows, name="offsets.csv", header=PLAIN_HEADER))
    assert file_report(report, "offsets.csv").format == "plain"
    times = harness.fixes()[S.TIMESTAMP].tolist()
    assert times == [pd.Timestamp(f"2024-03-01 0{h}:00", tz="UTC") for h in (6, 7, 8)]


def test_plain_csv_needs_tz_and_uses_it(harness):
    rows = [[BIRD, "2024-07-01 08:00:00", "31.5", "121.8", SPECIES]]
    path = harness.write(rows, name="local.csv", header=PLAIN_HEADER)
    assert file_report(harness.ingest(path), "local.csv").status == "rejected"
    report = harness.ingest(path, tz="Asia/Shanghai")
    assert file_report(report, "local.csv").rows_kept == 1
    assert harness.fixes()[S.TIMESTAMP].tolist() == [pd.Timestamp("2024-07-01 00:00:00", tz="UTC")]


def _user_mapping(harness, zone: str, encoding: str = "utf-8", name: str = "hunan.toml") -> str:
    path = harness.folder / name
    path.write_text(f"""
[mapping]
name = "hunan-messenger"
timezone = "{zone}"
timestamp_format = "%d/%m/%Y %H:%M"
encoding = "{encoding}"

[columns]
individual_id = "编号"
timestamp = "时间"
lon = "经度"
lat = "纬度"
altitude_m = "海拔"

[units]
altitude_m = "ft"

[constants]
species = "Grus monacha"
""", encoding="utf-8")
    return f"vendor:{path}"


VENDOR_HEADER = ("编号", "时间", "经度", "纬度", "海拔")


def test_user_mapping_with_day_first_format_in_a_dst_free_zone(harness):
    fmt = _user_mapping(harness, "Asia/Shanghai")
    # 13 March and 6 November: DST changes elsewhere, none in China (UTC+8 all year)
    rows = [["鹤1", t, "130.2", "32.1", "100"] for t in ("13/03/2022 02:30", "06/11/2022 01:30", "06/11/2022 09:00")]
    report = harness.ingest(harness.write(rows, name="hunan.csv", header=VENDOR_HEADER), format=fmt)
    fr = file_report(report, "hunan.csv")
    assert (fr.format, fr.rows_kept, fr.rows_quarantined) == ("hunan-messenger", 3, 0)
    fixes = harness.fixes()
    assert fixes[S.TIMESTAMP].tolist() == [pd.Timestamp(t, tz="UTC") for t in
                                           ("2022-03-12 18:30", "2022-11-05 17:30", "2022-11-06 01:00")]
    assert fixes[S.ALTITUDE_M].tolist() == pytest.approx([30.48] * 3)  # 100 ft
    assert fixes[S.SPECIES].tolist() == ["Grus monacha"] * 3


def test_user_mapping_in_a_dst_zone_quarantines_the_ambiguous_hour(harness):
    fmt = _user_mapping(harness, "America/New_York")
    times = ("06/11/2022 00:30", "06/11/2022 01:30", "06/11/2022 02:30")  # 01:30 happens twice
    rows = [["鹤1", t, "-74.0", "40.7", "0"] for t in times]
    report = harness.ingest(harness.write(rows, name="ny.csv", header=VENDOR_HEADER), format=fmt)
    fr = file_report(report, "ny.csv")
    assert (fr.rows_kept, fr.quarantine_reasons) == (2, {Q.AMBIGUOUS_LOCAL_TIME: 1})
    q = harness.quarantine()
    assert q[[S.Q_LINE, S.Q_COLUMN, S.Q_VALUE]].values.tolist() == [[3, "时间", "06/11/2022 01:30"]]
    assert harness.fixes()[S.TIMESTAMP].tolist() == [pd.Timestamp("2022-11-06 04:30", tz="UTC"),
                                                     pd.Timestamp("2022-11-06 07:30", tz="UTC")]


def test_gb18030_declared_in_a_mapping(harness):
    fmt = _user_mapping(harness, "Asia/Shanghai", encoding="gb18030")
    rows = [["白枕鹤-1", "01/04/2023 12:00", "116.4", "39.9", "50"], ["白枕鹤-1", "01/04/2023 13:00", "116.5", "39.9", "50"]]
    path = harness.write(rows, name="gbk.csv", header=VENDOR_HEADER, encoding="gb18030")
    assert path.read_bytes() != csv_text(rows, header=VENDOR_HEADER).encode("utf-8")  # really not UTF-8
    report = harness.ingest(path, format=fmt)
    assert file_report(report, "gbk.csv").rows_kept == 2
    assert harness.fixes()[S.INDIVIDUAL_ID].tolist() == ["白枕鹤-1"] * 2


def test_gb18030_without_a_declared_encoding_is_rejected(harness):
    fmt = _user_mapping(harness, "Asia/Shanghai")  # declares utf-8
    rows = [["白枕鹤-1", "01/04/2023 12:00", "116.4", "39.9", "50"]]
    path = harness.write(rows, name="gbk.csv", header=VENDOR_HEADER, encoding="gb18030")
    report = harness.ingest(path, format=fmt)
    harness.assert_rejected(report, "gbk.csv", line=1, mentions=["not valid utf-8", "gb18030"])


# ============================================================================ idempotence
def test_same_file_twice_adds_nothing(harness):
    path = harness.write([fix(i) for i in range(4)], name="tags.csv")
    harness.ingest(path)
    ledger_rows = Store(harness.store).read_ledger().num_rows
    again = harness.ingest(path)
    fr = file_report(again, "tags.csv")
    assert fr.status == "skipped" and "already ingested" in fr.message
    renamed = harness.write([fix(i) for i in range(4)], name="tags_copy.csv")  # same bytes, new name
    assert file_report(harness.ingest(renamed), "tags_copy.csv").status == "skipped"
    assert len(harness.fixes()) == 4
    assert Store(harness.store).read_ledger().num_rows == ledger_rows


def test_overlapping_files_add_no_duplicate_fixes(harness):
    first = harness.write([fix(i) for i in range(10)], name="jan.csv")
    second = harness.write([fix(i) for i in range(5, 15)], name="jan_feb.csv")
    harness.ingest(first)
    report = harness.ingest(second)
    fr = file_report(report, "jan_feb.csv")
    assert (fr.rows_read, fr.rows_kept, fr.rows_duplicate) == (10, 5, 5)
    fixes = harness.fixes()
    assert len(fixes) == 15 and len(set(stored_key(fixes))) == 15


def test_overlapping_files_in_one_call(harness):
    a = harness.write([fix(i) for i in range(6)], name="a.csv")
    b = harness.write([fix(i) for i in range(3, 9)], name="b.csv")
    report = harness.ingest([a, b])
    assert sum(f.rows_duplicate for f in report.files) == 3
    assert sum(f.rows_kept for f in report.files) == 9
    assert len(set(stored_key(harness.fixes()))) == len(harness.fixes()) == 9


# ============================================================================ blocks
def _long_file(n: int, bad_lat_every: int = 0) -> list[dict[str, str]]:
    rows = [fix(i, **{MB_EVENT: str(i)}) for i in range(n)]
    if bad_lat_every:
        for i in range(bad_lat_every // 2, n, bad_lat_every):
            rows[i][MB_LAT] = "95"
    return rows


def test_small_blocks_keep_line_numbers_right(harness):
    rows = _long_file(1000, bad_lat_every=97)
    report = harness.ingest(harness.write(rows, name="long.csv"), block_size=4096)
    fr = file_report(report, "long.csv")
    bad = [i + 2 for i in range(48, 1000, 97)]
    assert (fr.rows_read, fr.rows_quarantined, fr.rows_kept) == (1000, len(bad), 1000 - len(bad))
    fixes = harness.fixes()
    assert (fixes[S.SOURCE_LINE] == fixes[S.EVENT_ID] + 2).all()  # event i is on line i + 2
    assert sorted(harness.quarantine()[S.Q_LINE]) == bad


def test_small_blocks_keep_line_numbers_right_after_short_rows(harness):
    rows = _long_file(600)
    for i in range(50, 600, 97):
        rows[i] = ",".join(list(rows[i].values())[:3])  # a short row: bad_field_count
    report = harness.ingest(harness.write(rows, name="short_rows.csv"), block_size=4096)
    assert file_report(report, "short_rows.csv").quarantine_reasons == {Q.BAD_FIELD_COUNT: 6}
    assert sorted(harness.quarantine()[S.Q_LINE]) == [i + 2 for i in range(50, 600, 97)]
    fixes = harness.fixes()
    assert (fixes[S.SOURCE_LINE] == fixes[S.EVENT_ID] + 2).all()


# ============================================================================ real data
def _real(name: str):
    folder = shared_data() / "telemetry" / name
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    return next(folder.glob("*.csv"))


@pytest.mark.realdata
def test_real_icarus_export_keeps_gps_and_quarantines_accessory_rows(harness):
    path = _real("mongolia-cuckoos-snipe-icarus")
    report = harness.ingest(path, block_size=1 << 16)
    fr = file_report(report, path.name)
    # SOURCE.md: 2,334 rows = 1,193 GPS fixes + 1,141 accessory rows without location
    assert (fr.rows_read, fr.rows_kept, fr.quarantine_reasons.get(Q.NON_LOCATION_RECORD)) == (2334, 1193, 1141)
    fixes = harness.fixes()
    assert fixes[S.INDIVIDUAL_ID].nunique() == 11
    assert set(fixes[S.SPECIES]) == {"Cuculus canorus", "Gallinago gallinago"}
    lines = path.read_text(encoding="utf-8").splitlines()
    sample = fixes.sample(50, random_state=1)
    for line, event in zip(sample[S.SOURCE_LINE], sample[S.EVENT_ID]):
        assert lines[line - 1].startswith(f"{event},")


@pytest.mark.realdata
def test_real_barnacle_geese_export(harness):
    path = _real("barnacle-geese-greenland")
    report = harness.ingest(path)
    fr = file_report(report, path.name)
    assert (fr.rows_read, fr.rows_kept) == (6853, 6853)  # SOURCE.md: 6,853 fixes, 7 individuals
    fixes = harness.fixes()
    assert fixes[S.INDIVIDUAL_ID].nunique() == 7
    assert fixes[S.LAT].between(54.1, 77.2).all() and fixes[S.LON].between(-29.5, -5.9).all()
    assert "Kölzsch" in fixes[S.STUDY].iloc[0]
