"""Every telemetry set under ../shared/data/telemetry ingests with the expected counts."""
from __future__ import annotations

import flyway
from flyway import schema as S


def test_barnacle_geese(shared_data, tmp_path):
    path = shared_data / "telemetry" / "barnacle-geese-greenland" / "barnacle_geese_greenland.csv"
    rep = flyway.ingest([path], store=tmp_path / "s")
    f = rep.files[0]
    assert (f.status, f.rows_read, f.rows_kept, f.rows_quarantined, f.rows_duplicate) == ("committed", 6853, 6853, 0, 0)
    df = flyway.read_fixes(tmp_path / "s")
    assert df[S.INDIVIDUAL_ID].nunique() == 7
    assert df[S.SPECIES].unique().tolist() == ["Branta leucopsis"]
    assert df[S.STUDY].iloc[0].startswith("Migration timing in barnacle geese (Greenland) (data from Kölzsch")
    assert str(df[S.TIMESTAMP].min()) == "2008-03-27 18:00:00+00:00"
    assert df[S.LAT].between(54.1, 77.3).all() and df[S.LON].between(-29.6, -5.8).all()


def test_icarus_cuckoos_and_snipe(shared_data, tmp_path):
    path = shared_data / "telemetry" / "mongolia-cuckoos-snipe-icarus" / "icarus_mongolia_cuckoos_nymba.csv"
    rep = flyway.ingest([path], store=tmp_path / "s")
    f = rep.files[0]
    assert (f.rows_read, f.rows_kept, f.rows_quarantined) == (2334, 1193, 1141)
    assert f.quarantine_reasons == {"non_location_record": 1141}
    df = flyway.read_fixes(tmp_path / "s")
    assert df[S.INDIVIDUAL_ID].nunique() == 11
    assert df.groupby(S.SPECIES)[S.INDIVIDUAL_ID].nunique().to_dict() == {"Cuculus canorus": 7,
                                                                         "Gallinago gallinago": 4}
    assert df[S.SENSOR_TYPE].unique().tolist() == ["gps"]
    assert not df.duplicated([S.INDIVIDUAL_ID, S.TIMESTAMP]).any()
    per_bird = df.groupby(S.INDIVIDUAL_ID).size().to_dict()
    assert per_bird["B89A08"] == 206 and per_bird["B3B92C"] == 15
