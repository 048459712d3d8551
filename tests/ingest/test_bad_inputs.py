"""The bad-input catalogue of ingest (conventions.md §8.2): one test per case.

Each case asserts its handling exactly:

* REJECT: the report's message is one line naming the file (and the line where
  it applies) and what was expected; nothing of the file is in the store.
* QUAR: the reason code, line numbers and column in the quarantine; the good
  rows of the same file are stored.
* FLAG: stored, with the ``qc_flags`` bit set.
* ACCEPT: stored, normalised.

And for every file (checked inside ``harness.ingest``): rows_read ==
rows_kept + rows_quarantined + rows_duplicate, and a rejection has a reason.
"""
from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flyway import schema as S
from flyway.errors import ConfigError
from flyway.ingest import quarantine as Q
from flyway.ingest.mapping import MARKED_VALID
from flyway.store import STATUS_COMMITTED
from tests.ingest.conftest import (
    BIRD, MB_ALT, MB_EVENT, MB_HDOP, MB_ID, MB_LAT, MB_LON, MB_SATS, MB_SENSOR, MB_SPECIES, MB_TIME,
    MOVEBANK_HEADER, NOW, SPECIES, IngestHarness, csv_text, file_report, fix, zip_bytes,
)

COORDS = f"{MB_LON}/{MB_LAT}"
# a plain CSV (ingest/mappings/plain.toml): its header names are input text
PLAIN_HEADER = ("individual_id", "timestamp", "lat", "lon", "species")


def good_rows(n: int = 3) -> list[dict[str, str]]:
    return [fix(i) for i in range(n)]


def line_of(index: int) -> int:
    """Physical line of the row at ``index`` of the rows list (header = line 1)."""
    return index + 2


def flags_of(fixes: pd.DataFrame) -> np.ndarray:
    return fixes[S.QC_FLAGS].to_numpy(dtype=np.uint32)


# ============================================================================ REJECT
def test_empty_file_is_rejected(harness):
    path = harness.write_bytes("empty.csv", b"")
    report = harness.ingest(path)
    harness.assert_rejected(report, "empty.csv", mentions=["empty (0 bytes)"])


def test_blank_first_line_is_rejected(harness):
    path = harness.write_bytes("blank_first.csv", ("\n" + csv_text(good_rows())).encode())
    report = harness.ingest(path)
    harness.assert_rejected(report, "blank_first.csv", line=1, mentions=["header"])


def test_missing_required_column_is_rejected_naming_it(harness):
    header = [h for h in MOVEBANK_HEADER if h != MB_LAT]
    path = harness.write(good_rows(), name="no_lat.csv", header=header)
    report = harness.ingest(path)
    fr = harness.assert_rejected(report, "no_lat.csv", line=1, mentions=["missing required column", MB_LAT])
    assert "movebank" in fr.message


def test_several_missing_columns_are_all_listed(harness):
    header = [h for h in MOVEBANK_HEADER if h not in (MB_ID, MB_TIME)]
    path = harness.write(good_rows(), name="no_id_time.csv", header=header)
    report = harness.ingest(path)
    harness.assert_rejected(report, "no_id_time.csv", line=1, mentions=[MB_ID, MB_TIME])


def test_wrong_delimiter_is_rejected(harness):
    rows = [fix(i, **{MB_SPECIES: "Platalea_minor"}) for i in range(3)]
    path = harness.write(rows, name="spaces.csv", delimiter=" ")
    report = harness.ingest(path)
    harness.assert_rejected(report, "spaces.csv", line=1, mentions=["single column", "comma-separated"])


def test_decimal_commas_are_rejected_unless_declared(harness):
    rows = [fix(i, **{MB_LON: f"121,{800 + i}", MB_LAT: f"31,{500 + i}"}) for i in range(4)]
    path = harness.write(rows, name="decimal_comma.csv", delimiter=";")
    report = harness.ingest(path)
    harness.assert_rejected(report, "decimal_comma.csv", mentions=[MB_LAT, "decimal comma", 'decimal = ","'])


def test_non_utf8_bytes_are_rejected_with_line_and_byte_offset(harness):
    rows = good_rows(2) + [fix(2, **{MB_ID: "Böhm"})] + good_rows(4)[3:]
    data = csv_text(rows).encode("latin-1")
    path = harness.write_bytes("latin1.csv", data)
    report = harness.ingest(path)
    offset = data.index(b"\xf6")
    harness.assert_rejected(report, "latin1.csv", line=line_of(2),
                            mentions=[f"byte offset {offset}", "not valid utf-8", "encoding"])


def test_utf16_file_is_rejected(harness):
    path = harness.write(good_rows(), name="utf16.csv", encoding="utf-16")
    report = harness.ingest(path)
    harness.assert_rejected(report, "utf16.csv", line=1, mentions=["byte offset 0", "not valid utf-8"])


def test_gzip_that_is_not_gzip_is_rejected(harness):
    path = harness.write(good_rows(), name="tags.csv.gz")
    report = harness.ingest(path)
    harness.assert_rejected(report, "tags.csv.gz", mentions=["not a gzip file"])


def test_truncated_gzip_is_rejected(harness):
    data = gzip.compress(csv_text(good_rows(50)).encode())
    path = harness.write_bytes("cut.csv.gz", data[: len(data) // 2])
    report = harness.ingest(path)
    harness.assert_rejected(report, "cut.csv.gz", mentions=["corrupt or truncated"])


def test_zip_that_is_not_zip_is_rejected(harness):
    path = harness.write(good_rows(), name="tags.zip")
    report = harness.ingest(path)
    harness.assert_rejected(report, "tags.zip", mentions=["not a zip archive"])


def test_corrupt_zip_is_rejected(harness):
    path = harness.write_bytes("broken.zip", b"PK\x03\x04" + b"\x00garbage" * 20)
    report = harness.ingest(path)
    harness.assert_rejected(report, "broken.zip", mentions=["corrupt zip archive"])


def test_zip_bomb_is_rejected(harness):
    data = zip_bytes({"bomb.csv": csv_text(good_rows()) + "0" * 5_000_000})
    path = harness.write_bytes("bomb.zip", data)
    report = harness.ingest(path)
    harness.assert_rejected(report, "bomb.zip", mentions=["zip bomb"])


def test_swapped_lat_lon_columns_are_rejected(harness):
    rows = [fix(i, **{MB_LON: fix(i)[MB_LAT], MB_LAT: fix(i)[MB_LON]}) for i in range(5)]  # lat in the lon column
    path = harness.write(rows, name="swapped.csv")
    report = harness.ingest(path)
    harness.assert_rejected(report, "swapped.csv", mentions=["swapped", MB_LAT])


def test_degrees_minutes_coordinates_are_rejected(harness):
    rows = [fix(i, **{MB_LAT: f"31°3{i}'N"}) for i in range(4)]
    path = harness.write(rows, name="dms.csv")
    report = harness.ingest(path)
    harness.assert_rejected(report, "dms.csv", mentions=[MB_LAT, "31°30'N", "decimal degrees"])


def test_timezone_less_times_without_tz_are_rejected(harness):
    rows = [[BIRD, f"2024-03-01 0{i}:00:00", "31.5", "121.8", SPECIES] for i in range(3)]
    path = harness.write(rows, name="naive.csv", header=PLAIN_HEADER)
    report = harness.ingest(path)
    harness.assert_rejected(report, "naive.csv", mentions=["without a time zone", "--tz", "never guesses"])


def test_unparseable_timestamps_in_every_row_are_rejected(harness):
    rows = [fix(i, **{MB_TIME: f"{i + 1} March 2024"}) for i in range(3)]
    path = harness.write(rows, name="words.csv")
    report = harness.ingest(path)
    harness.assert_rejected(report, "words.csv", mentions=[MB_TIME, "'1 March 2024'", "cannot be read as a time"])


def test_day_month_ambiguous_dates_are_rejected_unless_declared(harness):
    rows = [[BIRD, f"03/04/2021 0{i}:00", "31.5", "121.8", SPECIES] for i in range(3)]
    path = harness.write(rows, name="dmy.csv", header=PLAIN_HEADER)
    report = harness.ingest(path, tz="UTC")
    harness.assert_rejected(report, "dmy.csv", mentions=["03/04/2021", "timestamp_format"])


def test_offset_and_naive_times_mixed_are_rejected(harness):
    rows = [[BIRD, "2024-03-01T06:00:00+08:00", "31.5", "121.8", SPECIES],
            [BIRD, "2024-03-01 07:00:00", "31.5", "121.8", SPECIES]]
    path = harness.write(rows, name="mixed_tz.csv", header=PLAIN_HEADER)
    report = harness.ingest(path, tz="UTC")
    harness.assert_rejected(report, "mixed_tz.csv", mentions=["mixes times with a UTC offset"])


def test_file_without_any_species_is_rejected(harness):
    header = [h for h in MOVEBANK_HEADER if h != MB_SPECIES]
    path = harness.write(good_rows(), name="no_species.csv", header=header)
    report = harness.ingest(path)
    harness.assert_rejected(report, "no_species.csv", mentions=["no species", "--species"])


def test_missing_file_is_rejected(harness):
    report = harness.ingest(harness.folder / "nowhere.csv")
    harness.assert_rejected(report, "nowhere.csv", mentions=["no such file"])


def test_mapping_with_unknown_timezone_is_a_config_error(harness):
    mapping = harness.folder / "bad_zone.toml"
    mapping.write_text('[mapping]\ntimezone = "Mars/Olympus_Mons"\n[columns]\nindividual_id = "id"\n'
                       'timestamp = "t"\nlon = "x"\nlat = "y"\n', encoding="utf-8")
    path = harness.write([["B", "2024-03-01 06:00", "121.8", "31.5"]], name="v.csv", header=("id", "t", "x", "y"))
    with pytest.raises(ConfigError, match=r"bad_zone\.toml: .*'Mars/Olympus_Mons' is not an IANA time zone"):
        harness.ingest(path, format=f"vendor:{mapping}")
    assert harness.fixes().empty


def test_file_rejected_late_leaves_nothing_and_other_files_commit(harness):
    """A rejection found in a later block (naive times after 300 offset rows) undoes the whole file."""
    rows = [[BIRD, (pd.Timestamp("2024-03-01T00:00:00Z") + pd.Timedelta(hours=i)).isoformat(), "31.5",
             f"{121 + i * 1e-4:.4f}", SPECIES] for i in range(300)]
    rows.append([BIRD, "2024-04-01 00:00:00", "31.5", "121.8", SPECIES])
    late = harness.write(rows, name="late_naive.csv", header=PLAIN_HEADER)
    good = harness.write(good_rows(), name="good.csv")
    report = harness.ingest([late, good], block_size=4096)
    harness.assert_rejected(report, "late_naive.csv", mentions=["without a time zone"])
    assert file_report(report, "good.csv").rows_kept == 3
    assert len(harness.fixes()) == 3


def test_unterminated_quote_is_rejected(harness):
    rows = good_rows(2) + [fix(2, **{MB_ID: '"BFS-01'})] + [fix(i) for i in range(3, 6)]
    path = harness.write(rows, name="open_quote.csv")
    report = harness.ingest(path)
    harness.assert_rejected(report, "open_quote.csv", line=line_of(2), mentions=["quote"])


# ============================================================================ QUAR
def test_latitude_out_of_range_is_quarantined(harness):
    rows = good_rows(5)
    rows[1][MB_LAT], rows[3][MB_LAT] = "95", "-91"
    report = harness.ingest(harness.write(rows, name="lat.csv"))
    q = harness.assert_quarantined(report, "lat.csv", Q.LAT_OUT_OF_RANGE, [line_of(1), line_of(3)], MB_LAT, kept=3)
    assert sorted(q[S.Q_VALUE]) == ["-91", "95"]


def test_longitude_out_of_range_is_quarantined(harness):
    rows = good_rows(5)
    rows[0][MB_LON], rows[4][MB_LON] = "200", "-181"
    report = harness.ingest(harness.write(rows, name="lon.csv"))
    harness.assert_quarantined(report, "lon.csv", Q.LON_OUT_OF_RANGE, [line_of(0), line_of(4)], MB_LON, kept=3)


def test_longitude_in_0_360_convention_is_not_wrapped(harness):
    rows = good_rows(4)
    rows[2][MB_LON] = "190.0"  # = -170 in the usual convention; never wrapped silently
    report = harness.ingest(harness.write(rows, name="lon360.csv"))
    harness.assert_quarantined(report, "lon360.csv", Q.LON_OUT_OF_RANGE, [line_of(2)], MB_LON, kept=3)
    assert not np.isclose(harness.fixes()[S.LON], -170.0).any()


def test_nan_and_empty_coordinates_are_non_location_records(harness):
    rows = good_rows(6)
    for i, text in zip((1, 2, 3, 4), ("NaN", "", "NA", "N/A")):
        rows[i][MB_LON] = rows[i][MB_LAT] = text
    report = harness.ingest(harness.write(rows, name="nan.csv"))
    harness.assert_quarantined(report, "nan.csv", Q.NON_LOCATION_RECORD, [line_of(i) for i in (1, 2, 3, 4)],
                               COORDS, kept=2)


def test_null_island_is_quarantined(harness):
    rows = good_rows(4)
    rows[1][MB_LON], rows[1][MB_LAT] = "0", "0"
    rows[2][MB_LON], rows[2][MB_LAT] = "0.0000001", "-0.0"
    report = harness.ingest(harness.write(rows, name="zero.csv"))
    harness.assert_quarantined(report, "zero.csv", Q.NULL_ISLAND, [line_of(1), line_of(2)], COORDS, kept=2)


def test_non_numeric_coordinate_is_quarantined(harness):
    rows = good_rows(5)
    rows[3][MB_LAT] = "31.5N"
    report = harness.ingest(harness.write(rows, name="lat_text.csv"))
    q = harness.assert_quarantined(report, "lat_text.csv", Q.BAD_COORDINATE, [line_of(3)], MB_LAT, kept=4)
    assert q[S.Q_VALUE].tolist() == ["31.5N"]


def test_unparseable_timestamp_row_is_quarantined(harness):
    rows = good_rows(4)
    rows[2][MB_TIME] = "yesterday"
    report = harness.ingest(harness.write(rows, name="ts_word.csv"))
    q = harness.assert_quarantined(report, "ts_word.csv", Q.BAD_TIMESTAMP, [line_of(2)], MB_TIME, kept=3)
    assert q[S.Q_VALUE].tolist() == ["yesterday"]
    assert q[S.Q_RAW].iloc[0].split(",")[1] == "yesterday"


def test_missing_timestamp_is_quarantined(harness):
    rows = good_rows(4)
    rows[0][MB_TIME] = ""
    report = harness.ingest(harness.write(rows, name="ts_empty.csv"))
    harness.assert_quarantined(report, "ts_empty.csv", Q.MISSING_TIMESTAMP, [line_of(0)], MB_TIME, kept=3)


def test_two_digit_year_row_is_quarantined(harness):
    rows = good_rows(4)
    rows[1][MB_TIME] = "24-03-01 07:00:00"
    report = harness.ingest(harness.write(rows, name="yy.csv"))
    harness.assert_quarantined(report, "yy.csv", Q.BAD_TIMESTAMP, [line_of(1)], MB_TIME, kept=3)


def test_mixed_timestamp_formats_quarantine_the_odd_rows(harness):
    rows = good_rows(5)
    rows[2][MB_TIME] = "01/03/2024 08:00"
    rows[4][MB_TIME] = "Mar 1 2024 10:00"
    report = harness.ingest(harness.write(rows, name="mixed_fmt.csv"))
    harness.assert_quarantined(report, "mixed_fmt.csv", Q.BAD_TIMESTAMP, [line_of(2), line_of(4)], MB_TIME, kept=3)


def test_nonexistent_local_time_is_quarantined(harness):
    """Spring forward in New York: 2024-03-10 02:30 never happened."""
    rows = [[BIRD, t, "40.7", "-74.0", SPECIES]
            for t in ("2024-03-10 01:30:00", "2024-03-10 02:30:00", "2024-03-10 03:30:00")]
    report = harness.ingest(harness.write(rows, name="ny_spring.csv", header=PLAIN_HEADER), tz="America/New_York")
    harness.assert_quarantined(report, "ny_spring.csv", Q.AMBIGUOUS_LOCAL_TIME, [line_of(1)], PLAIN_HEADER[1], kept=2)
    times = harness.fixes()[S.TIMESTAMP].dt.strftime("%H:%M").tolist()
    assert times == ["06:30", "07:30"]  # EST (UTC-5) before, EDT (UTC-4) after


def test_epoch_default_times_are_quarantined(harness):
    rows = good_rows(5)
    rows[1][MB_TIME] = "1970-01-01 00:00:00.000"  # Unix epoch: clock reset
    rows[3][MB_TIME] = "1980-01-06 00:00:00.000"  # GPS epoch: clock reset
    report = harness.ingest(harness.write(rows, name="epoch.csv"))
    harness.assert_quarantined(report, "epoch.csv", Q.EPOCH_DEFAULT, [line_of(1), line_of(3)], MB_TIME, kept=3)


def test_duplicate_event_id_keeps_the_first(harness):
    rows = good_rows(4)
    rows[3][MB_EVENT] = rows[0][MB_EVENT]  # another fix with an id already used
    report = harness.ingest(harness.write(rows, name="dup_event.csv"))
    harness.assert_quarantined(report, "dup_event.csv", Q.DUPLICATE_EVENT_ID, [line_of(3)], S.EVENT_ID, kept=3)
    assert line_of(0) in harness.fixes()[S.SOURCE_LINE].tolist()


def test_duplicate_event_id_against_the_store_is_quarantined(harness):
    harness.ingest(harness.write(good_rows(3), name="first.csv"))
    rows = [fix(i) for i in range(3, 6)]
    rows[1][MB_EVENT] = fix(0)[MB_EVENT]
    report = harness.ingest(harness.write(rows, name="second.csv"))
    harness.assert_quarantined(report, "second.csv", Q.DUPLICATE_EVENT_ID, [line_of(1)], S.EVENT_ID, kept=2)
    assert len(harness.fixes()) == 5


def test_truncated_last_line_is_quarantined(harness):
    rows = good_rows(4) + [",".join(list(fix(4).values())[:3])]
    report = harness.ingest(harness.write(rows, name="cut.csv", final_newline=False))
    q = harness.assert_quarantined(report, "cut.csv", Q.BAD_FIELD_COUNT, [line_of(4)], "", kept=4)
    assert q[S.Q_RAW].iloc[0] == rows[-1]  # the partial row is kept, verbatim


def test_row_with_extra_field_is_quarantined(harness):
    rows = good_rows(4)
    rows[2] = ",".join(rows[2].values()) + ",surplus"
    report = harness.ingest(harness.write(rows, name="extra_field.csv"))
    harness.assert_quarantined(report, "extra_field.csv", Q.BAD_FIELD_COUNT, [line_of(2)], "", kept=3)


def test_repeated_header_mid_file_is_quarantined(harness):
    rows = good_rows(2) + [",".join(MOVEBANK_HEADER)] + [fix(i) for i in range(2, 4)]
    report = harness.ingest(harness.write(rows, name="concat.csv"))
    harness.assert_quarantined(report, "concat.csv", Q.REPEATED_HEADER, [line_of(2)], MB_TIME, kept=4)
    q = harness.quarantine()
    assert (q[S.Q_LINE] == line_of(2)).sum() == 1, "one record per rejected row, no value records on top"


def test_missing_individual_is_quarantined(harness):
    rows = good_rows(3)
    rows[1][MB_ID] = "  "
    report = harness.ingest(harness.write(rows, name="no_id.csv"))
    harness.assert_quarantined(report, "no_id.csv", Q.MISSING_INDIVIDUAL, [line_of(1)], MB_ID, kept=2)


def test_control_characters_in_ids_are_quarantined(harness):
    rows = good_rows(4)
    rows[1][MB_ID] = "BFS\x0001"
    rows[2][MB_ID] = "BFS\x07"
    report = harness.ingest(harness.write(rows, name="ctrl.csv"))
    harness.assert_quarantined(report, "ctrl.csv", Q.BAD_IDENTIFIER, [line_of(1), line_of(2)], MB_ID, kept=2)


def test_empty_line_mid_file_is_quarantined_as_empty_row(harness):
    rows = good_rows(2) + [""] + [fix(i) for i in range(2, 4)]
    report = harness.ingest(harness.write(rows, name="gap.csv"))
    harness.assert_quarantined(report, "gap.csv", Q.EMPTY_ROW, [line_of(2)], "", kept=4)
    assert harness.fixes()[S.SOURCE_LINE].tolist() == [2, 3, 5, 6]


def test_sensor_only_rows_are_non_location_records(harness):
    header = MOVEBANK_HEADER + (MB_SENSOR,)
    rows = [fix(0, **{MB_SENSOR: "gps"}),
            fix(1, **{MB_SENSOR: "accessory-measurements", MB_LON: "", MB_LAT: ""}),
            fix(2, **{MB_SENSOR: "gps"})]
    report = harness.ingest(harness.write(rows, name="sensors.csv", header=header))
    harness.assert_quarantined(report, "sensors.csv", Q.NON_LOCATION_RECORD, [line_of(1)], COORDS, kept=2)
    assert set(harness.fixes()[S.SENSOR_TYPE]) == {"gps"}


def test_rows_without_species_are_quarantined(harness):
    ref = harness.folder / "reference.csv"
    ref.write_text(f"{S.MB_REF_ANIMAL_ID},{S.MB_REF_ANIMAL_TAXON}\n{BIRD},{SPECIES}\n", encoding="utf-8")
    header = [h for h in MOVEBANK_HEADER if h != MB_SPECIES]
    rows = good_rows(3)
    rows[2][MB_ID] = "unknown-bird"
    report = harness.ingest(harness.write(rows, name="partly.csv", header=header), reference=ref)
    harness.assert_quarantined(report, "partly.csv", Q.MISSING_SPECIES, [line_of(2)], S.SPECIES, kept=2)


def test_non_numeric_hdop_nulls_the_value_and_keeps_the_row(harness):
    header = MOVEBANK_HEADER + (MB_HDOP,)
    rows = [fix(i, **{MB_HDOP: "1.2"}) for i in range(3)]
    rows[1][MB_HDOP] = "high"
    report = harness.ingest(harness.write(rows, name="hdop.csv", header=header))
    q = harness.assert_quarantined(report, "hdop.csv", Q.BAD_VALUE, [line_of(1)], MB_HDOP, kept=3, action=Q.VALUE)
    assert q[S.Q_VALUE].tolist() == ["high"]
    hdop = harness.fixes().set_index(S.SOURCE_LINE)[S.HDOP]
    assert np.isnan(hdop[line_of(1)]) and hdop[line_of(0)] == pytest.approx(1.2)


def test_fractional_satellite_count_nulls_the_value(harness):
    header = MOVEBANK_HEADER + (MB_SATS,)
    rows = [fix(i, **{MB_SATS: "7"}) for i in range(3)]
    rows[2][MB_SATS] = "5.5"
    report = harness.ingest(harness.write(rows, name="sats.csv", header=header))
    harness.assert_quarantined(report, "sats.csv", Q.BAD_VALUE, [line_of(2)], MB_SATS, kept=3, action=Q.VALUE)
    sats = harness.fixes().set_index(S.SOURCE_LINE)[S.SATELLITES]
    assert pd.isna(sats[line_of(2)]) and sats[line_of(0)] == 7


def test_units_inside_cells_null_the_value(harness):
    header = MOVEBANK_HEADER + (MB_ALT,)
    rows = [fix(i, **{MB_ALT: "12.5"}) for i in range(3)]
    rows[0][MB_ALT] = "12 m"
    rows[1][MB_ALT] = "<5"
    report = harness.ingest(harness.write(rows, name="units.csv", header=header))
    harness.assert_quarantined(report, "units.csv", Q.BAD_VALUE, [line_of(0), line_of(1)], MB_ALT, kept=3,
                               action=Q.VALUE)


def test_non_integer_event_id_nulls_the_value(harness):
    rows = good_rows(3)
    rows[1][MB_EVENT] = "12a"
    report = harness.ingest(harness.write(rows, name="event_text.csv"))
    harness.assert_quarantined(report, "event_text.csv", Q.BAD_VALUE, [line_of(1)], MB_EVENT, kept=3,
                               action=Q.VALUE)
    assert harness.fixes()[S.EVENT_ID].isna().sum() == 1


# ============================================================================ FLAG
def test_sentinel_altitude_is_nulled_and_flagged(harness):
    header = MOVEBANK_HEADER + (MB_ALT,)
    rows = [fix(i, **{MB_ALT: "35"}) for i in range(3)]
    rows[1][MB_ALT] = "-9999"
    report = harness.ingest(harness.write(rows, name="sentinel.csv", header=header))
    harness.assert_quarantined(report, "sentinel.csv", Q.SENTINEL_VALUE, [line_of(1)], MB_ALT, kept=3,
                               action=Q.VALUE)
    fixes = harness.fixes().set_index(S.SOURCE_LINE)
    assert np.isnan(fixes.loc[line_of(1), S.ALTITUDE_M])
    assert fixes.loc[line_of(1), S.QC_FLAGS] == S.QCFlag.SENTINEL_VALUE
    assert fixes.loc[line_of(0), S.QC_FLAGS] == 0


def test_future_dates_are_flagged(harness):
    rows = good_rows(3)
    rows[1][MB_TIME] = "2031-05-01 00:00:00.000"
    rows[2][MB_TIME] = (NOW + pd.Timedelta(hours=12)).strftime("%Y-%m-%d %H:%M:%S.000")  # within tolerance
    report = harness.ingest(harness.write(rows, name="future.csv"))
    fr = file_report(report, "future.csv")
    assert fr.rows_kept == 3 and fr.rows_quarantined == 0
    flags = harness.fixes().set_index(S.SOURCE_LINE)[S.QC_FLAGS]
    assert flags[line_of(1)] == S.QCFlag.FUTURE_TIMESTAMP
    assert flags[line_of(0)] == 0 and flags[line_of(2)] == 0


def test_same_timestamp_two_positions_flags_both(harness):
    rows = good_rows(3)
    rows[2][MB_TIME] = rows[1][MB_TIME]
    report = harness.ingest(harness.write(rows, name="same_t.csv"))
    assert file_report(report, "same_t.csv").rows_kept == 3
    flags = harness.fixes().set_index(S.SOURCE_LINE)[S.QC_FLAGS]
    assert flags[line_of(1)] & S.QCFlag.DUPLICATE_TIMESTAMP
    assert flags[line_of(2)] & S.QCFlag.DUPLICATE_TIMESTAMP
    assert flags[line_of(0)] == 0


def test_movebank_invisible_rows_are_flagged(harness):
    header = (S.MB_VISIBLE,) + MOVEBANK_HEADER
    rows = [fix(i, **{S.MB_VISIBLE: v}) for i, v in enumerate(("true", "false", "TRUE", ""))]
    report = harness.ingest(harness.write(rows, name="visible.csv", header=header))
    assert file_report(report, "visible.csv").rows_kept == 4
    outlier = (flags_of(harness.fixes()) & S.QCFlag.MOVEBANK_OUTLIER) > 0
    assert outlier.tolist() == [False, True, False, False]


def test_marked_outliers_are_flagged_unless_marked_valid(harness):
    valid = MARKED_VALID
    header = MOVEBANK_HEADER + (S.MB_IMPORT_MARKED_OUTLIER, valid)
    rows = [fix(0, **{S.MB_IMPORT_MARKED_OUTLIER: "false"}),
            fix(1, **{S.MB_IMPORT_MARKED_OUTLIER: "true"}),
            fix(2, **{S.MB_IMPORT_MARKED_OUTLIER: "true", valid: "true"})]
    harness.ingest(harness.write(rows, name="outliers.csv", header=header))
    outlier = (flags_of(harness.fixes()) & S.QCFlag.MOVEBANK_OUTLIER) > 0
    assert outlier.tolist() == [False, True, False]


# ============================================================================ ACCEPT
def test_header_only_file_is_a_no_op(harness):
    path = harness.write([], name="header_only.csv")
    report = harness.ingest(path)
    fr = file_report(report, "header_only.csv")
    assert (fr.status, fr.rows_read, fr.rows_kept) == (STATUS_COMMITTED, 0, 0)
    assert "header only" in fr.message
    assert harness.fixes().empty


def test_utf8_bom_is_accepted(harness):
    path = harness.write(good_rows(), name="bom.csv", prefix=b"\xef\xbb\xbf")
    report = harness.ingest(path)
    assert file_report(report, "bom.csv").rows_kept == 3
    assert harness.fixes()[S.EVENT_ID].tolist() == [1000, 1001, 1002]


def test_out_of_order_rows_are_stored_in_time_order(harness):
    rows = [fix(i) for i in (3, 0, 2, 1)]
    report = harness.ingest(harness.write(rows, name="shuffled.csv"))
    assert file_report(report, "shuffled.csv").rows_kept == 4
    fixes = harness.fixes()
    assert fixes[S.TIMESTAMP].is_monotonic_increasing
    assert fixes[S.SOURCE_LINE].tolist() == [3, 5, 4, 2]


def _partition_dirs(harness) -> list:
    return [p for p in (harness.store / "fixes").rglob("*") if p.is_dir()]


def test_path_traversal_ids_stay_data_not_paths(harness):
    ids = ["../../etc/passwd", "a/b", "..", "CON"]
    rows = [fix(i, **{MB_ID: ident}) for i, ident in enumerate(ids)]
    report = harness.ingest(harness.write(rows, name="traversal.csv"))
    assert file_report(report, "traversal.csv").rows_kept == 4
    assert sorted(harness.fixes()[S.INDIVIDUAL_ID]) == sorted(ids)
    root = (harness.store / "fixes").resolve()
    dirs = _partition_dirs(harness)
    assert len(dirs) == 1 + len(ids)  # species folder + one per individual
    for d in dirs:
        assert root in d.resolve().parents and ".." not in d.name.split("=")[-1].split("-")
    assert sorted(os.listdir(harness.folder)) == sorted(["store", "traversal.csv"])


def test_html_in_ids_is_stored_as_text(harness):
    ids = ["<script>alert(1)</script>", '<img src=x onerror="alert(1)">']
    rows = [fix(i, **{MB_ID: ident}) for i, ident in enumerate(ids)]
    harness.ingest(harness.write(rows, name="html.csv"))
    assert sorted(harness.fixes()[S.INDIVIDUAL_ID]) == sorted(ids)
    for d in _partition_dirs(harness):
        assert not set(d.name) & set("<>\"'/ ")


def test_spreadsheet_formula_strings_are_stored_verbatim(harness):
    ids = ['=HYPERLINK("http://x.example")', "+cmd", "@SUM(A1)", "-2+3"]
    rows = [fix(i, **{MB_ID: ident}) for i, ident in enumerate(ids)]
    report = harness.ingest(harness.write(rows, name="formula.csv"))
    assert file_report(report, "formula.csv").rows_kept == 4
    assert sorted(harness.fixes()[S.INDIVIDUAL_ID]) == sorted(ids)


def test_exact_duplicate_rows_are_counted_not_stored_twice(harness):
    rows = good_rows(3) + [fix(1)]
    report = harness.ingest(harness.write(rows, name="dups.csv"))
    fr = file_report(report, "dups.csv")
    assert (fr.rows_read, fr.rows_kept, fr.rows_duplicate, fr.rows_quarantined) == (4, 3, 1, 0)
    assert len(harness.fixes()) == 3


def test_crlf_line_endings_are_accepted(harness):
    report = harness.ingest(harness.write(good_rows(3), name="crlf.csv", newline="\r\n"))
    assert file_report(report, "crlf.csv").rows_kept == 3
    fixes = harness.fixes()
    assert fixes[S.SOURCE_LINE].tolist() == [2, 3, 4]
    assert fixes[S.SPECIES].tolist() == [SPECIES] * 3


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_semicolon_and_tab_delimiters_are_sniffed(harness, delimiter):
    report = harness.ingest(harness.write(good_rows(3), name="delim.csv", delimiter=delimiter))
    assert file_report(report, "delim.csv").rows_kept == 3
    assert harness.fixes()[S.LAT].tolist() == [31.5, 31.501, 31.502]


def test_excel_scientific_notation_ids_stay_strings(harness):
    rows = [fix(0, **{MB_ID: "1.23E+05"}), fix(1, **{MB_ID: "007"})]
    harness.ingest(harness.write(rows, name="excel.csv"))
    assert sorted(harness.fixes()[S.INDIVIDUAL_ID]) == ["007", "1.23E+05"]


def test_very_long_ids_get_bounded_partition_names(harness):
    long_id = "crane-" + "x" * 5000
    harness.ingest(harness.write([fix(0, **{MB_ID: long_id})], name="long.csv"))
    assert harness.fixes()[S.INDIVIDUAL_ID].tolist() == [long_id]
    assert max(len(d.name) for d in _partition_dirs(harness)) < 80


def test_unknown_extra_columns_are_ignored(harness):
    header = MOVEBANK_HEADER + ("my-notes", "battery")
    rows = [fix(i, **{"my-notes": "ok", "battery": "3.9"}) for i in range(3)]
    report = harness.ingest(harness.write(rows, name="extra_cols.csv", header=header))
    assert file_report(report, "extra_cols.csv").rows_kept == 3


def test_fractional_seconds_keep_microsecond_precision(harness):
    rows = [fix(0, **{MB_TIME: "2024-03-01 06:00:00.998"}), fix(1, **{MB_TIME: "2024-03-01 06:00:01.5"})]
    harness.ingest(harness.write(rows, name="millis.csv"))
    times = harness.fixes()[S.TIMESTAMP]
    assert times.tolist() == [pd.Timestamp("2024-03-01 06:00:00.998", tz="UTC"),
                              pd.Timestamp("2024-03-01 06:00:01.5", tz="UTC")]


def test_whitespace_and_species_spelling_are_normalised(harness):
    rows = [fix(0, **{MB_ID: f" {BIRD} ", MB_LAT: " 31.5 ", MB_SPECIES: " platalea   minor "})]
    harness.ingest(harness.write(rows, name="spaces_in_cells.csv"))
    fixes = harness.fixes()
    assert fixes[S.INDIVIDUAL_ID].tolist() == [BIRD]
    assert fixes[S.SPECIES].tolist() == [SPECIES]
    assert fixes[S.LAT].tolist() == [31.5]


def test_line_break_inside_quoted_cell_keeps_line_numbers(harness):
    header = MOVEBANK_HEADER + ("comments",)
    rows = [fix(i, comments="ok") for i in range(4)]
    rows[1]["comments"] = '"seen at\nthe roost"'
    rows[3][MB_LAT] = "95"
    report = harness.ingest(harness.write(rows, name="multiline.csv", header=header))
    # rows start on lines 2, 3 (spans 3-4), 5, 6
    harness.assert_quarantined(report, "multiline.csv", Q.LAT_OUT_OF_RANGE, [6], MB_LAT, kept=3)
    assert harness.fixes()[S.SOURCE_LINE].tolist() == [2, 3, 5]


# ============================================================================ any mix of the above
CORRUPTIONS = {
    # name: (change to the row, expected reason, expected column); None = a good row
    "good": (None, None, None),
    "lat95": ({MB_LAT: "95"}, Q.LAT_OUT_OF_RANGE, MB_LAT),
    "lon200": ({MB_LON: "200"}, Q.LON_OUT_OF_RANGE, MB_LON),
    "no_coords": ({MB_LON: "", MB_LAT: ""}, Q.NON_LOCATION_RECORD, COORDS),
    "null_island": ({MB_LON: "0", MB_LAT: "0"}, Q.NULL_ISLAND, COORDS),
    "bad_time": ({MB_TIME: "yesterday"}, Q.BAD_TIMESTAMP, MB_TIME),
    "no_time": ({MB_TIME: ""}, Q.MISSING_TIMESTAMP, MB_TIME),
    "no_id": ({MB_ID: ""}, Q.MISSING_INDIVIDUAL, MB_ID),
    "epoch": ({MB_TIME: "1970-01-01 00:00:00.000"}, Q.EPOCH_DEFAULT, MB_TIME),
    "short": ("short", Q.BAD_FIELD_COUNT, ""),
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(sorted(CORRUPTIONS)), min_size=1, max_size=40),
       block_size=st.sampled_from([1024, 4096, 1 << 20]))
def test_any_mix_of_bad_rows_loses_nothing(kinds, block_size):
    """Every good row is stored at its line; every bad row is in the quarantine at its line, with its reason."""
    kinds = ["good"] + kinds  # a first good row: a file of only bad times would be rejected as a whole
    rows, expected = [], {}
    for i, kind in enumerate(kinds):
        change, reason, column = CORRUPTIONS[kind]
        row = fix(i)
        if change == "short":
            row = ",".join(list(row.values())[:3])
        elif change:
            row.update(change)
        rows.append(row)
        if reason:
            expected[line_of(i)] = (reason, column)
    with tempfile.TemporaryDirectory() as tmp:
        harness = IngestHarness(Path(tmp))
        report = harness.ingest(harness.write(rows, name="mix.csv"), block_size=block_size)
        fr = file_report(report, "mix.csv")
        assert (fr.rows_read, fr.rows_quarantined, fr.rows_duplicate) == (len(rows), len(expected), 0)
        q = harness.quarantine()
        got = {line: (reason, column) for line, reason, column in
               zip(q[S.Q_LINE], q[S.Q_REASON], q[S.Q_COLUMN])}
        assert len(q) == len(expected) and got == expected
        good = [line_of(i) for i, k in enumerate(kinds) if k == "good"]
        assert sorted(harness.fixes()[S.SOURCE_LINE]) == good
