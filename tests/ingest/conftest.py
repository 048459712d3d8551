"""Fixtures for the ingest tests: small Movebank CSVs written from rows, a store, checks.

Files are written byte for byte (cells joined with the delimiter, no CSV
quoting added), so a test controls exactly which bad bytes reach the reader.
Every ingest through :class:`IngestHarness` checks the accounting invariant
(nothing accepted is lost, nothing rejected disappears without a reason).
"""
from __future__ import annotations

import datetime as dt
import gzip
import io
import zipfile
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pandas as pd
import pytest

from flyway import schema as S
from flyway.ingest import quarantine as Q
from flyway.ingest.pipeline import FileReport, IngestReport, ingest
from flyway.store import STATUS_COMMITTED, STATUS_REJECTED, Store, read_fixes

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
SPECIES = "Platalea minor"
BIRD = "BFS-01"
TAG = "T01"
T0 = pd.Timestamp("2024-03-01 06:00:00", tz="UTC")

# Movebank attribute names, from the schema contract (never spelled out here)
MB_EVENT = S.FIXES[S.EVENT_ID].movebank
MB_TIME = S.FIXES[S.TIMESTAMP].movebank
MB_LON = S.FIXES[S.LON].movebank
MB_LAT = S.FIXES[S.LAT].movebank
MB_ID = S.FIXES[S.INDIVIDUAL_ID].movebank
MB_TAG = S.FIXES[S.TAG_ID].movebank
MB_SPECIES = S.FIXES[S.SPECIES].movebank
MB_SENSOR = S.FIXES[S.SENSOR_TYPE].movebank
MB_HDOP = S.FIXES[S.HDOP].movebank
MB_SATS = S.FIXES[S.SATELLITES].movebank
MB_ALT = S.FIXES[S.ALTITUDE_M].movebank
MB_SPEED = S.FIXES[S.GROUND_SPEED_MS].movebank
MOVEBANK_HEADER = (MB_EVENT, MB_TIME, MB_LON, MB_LAT, MB_ID, MB_TAG, MB_SPECIES)


def shared_data() -> Path:
    """``../shared/data`` next to the repository (real data sets; may be absent)."""
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def fix(i: int, **cells: str) -> dict[str, str]:
    """Cells of a good Movebank row number ``i`` (hourly fixes of one spoonbill), overridden by ``cells``.

    Keys are Movebank attribute names (``MB_*``); values are the cell text.
    """
    row = {
        MB_EVENT: str(1000 + i),
        MB_TIME: (T0 + pd.Timedelta(hours=i)).strftime("%Y-%m-%d %H:%M:%S.000"),
        MB_LON: f"{121.80 + 0.001 * i:.4f}",
        MB_LAT: f"{31.50 + 0.001 * i:.4f}",
        MB_ID: BIRD,
        MB_TAG: TAG,
        MB_SPECIES: SPECIES,
    }
    row.update(cells)
    return row


def csv_text(rows: Iterable[Mapping[str, str] | Sequence[str] | str], header: Sequence[str] = MOVEBANK_HEADER,
             delimiter: str = ",", newline: str = "\n", final_newline: bool = True) -> str:
    """CSV text: the header, then each row (a dict by header name, a list of cells, or a raw line)."""
    lines = [delimiter.join(header)]
    for row in rows:
        if isinstance(row, str):
            lines.append(row)
        elif isinstance(row, Mapping):
            lines.append(delimiter.join(row.get(h, "") for h in header))
        else:
            lines.append(delimiter.join(row))
    return newline.join(lines) + (newline if final_newline else "")


class IngestHarness:
    """Write input files into a folder, ingest them into one store, inspect the result."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.store = folder / "store"

    # -- writing inputs ------------------------------------------------------
    def write_bytes(self, name: str, data: bytes) -> Path:
        path = self.folder / name
        path.write_bytes(data)
        return path

    def write(self, rows: Iterable, name: str = "tags.csv", header: Sequence[str] = MOVEBANK_HEADER,
              delimiter: str = ",", newline: str = "\n", final_newline: bool = True, encoding: str = "utf-8",
              prefix: bytes = b"", compress: str | None = None) -> Path:
        """Write a CSV from rows; ``compress`` is ``None``, ``"gzip"`` or ``"zip"`` (one member)."""
        data = prefix + csv_text(rows, header, delimiter, newline, final_newline).encode(encoding)
        if compress == "gzip":
            data = gzip.compress(data)
        elif compress == "zip":
            data = zip_bytes({Path(name).stem + ".csv": data})
        return self.write_bytes(name, data)

    # -- ingest and accounting -----------------------------------------------
    def ingest(self, paths: Path | Sequence[Path], **kwargs) -> IngestReport:
        kwargs.setdefault("now", NOW)
        report = ingest(paths, self.store, **kwargs)
        for fr in report.files:
            check_accounting(fr)
        return report

    def fixes(self) -> pd.DataFrame:
        if not Store(self.store).path.is_dir():
            return pd.DataFrame(columns=S.FIXES.names)
        return read_fixes(self.store)

    def quarantine(self) -> pd.DataFrame:
        return Store(self.store).read_quarantine().to_pandas()

    # -- expected handling ---------------------------------------------------
    def assert_rejected(self, report: IngestReport, name: str, *, line: int | None = None,
                        mentions: Sequence[str] = ()) -> FileReport:
        """REJECT: one clear line naming the file (and line), nothing of the file stored."""
        fr = file_report(report, name)
        assert fr.status == STATUS_REJECTED, fr
        msg = fr.message
        assert "\n" not in msg, f"not one line: {msg!r}"
        where = f"{name}:{line}: " if line is not None else f"{name}: "
        assert msg.startswith(where), f"{msg!r} does not start with {where!r}"
        for word in mentions:
            assert word in msg, f"{word!r} not in {msg!r}"
        assert fr.rows_kept == fr.rows_quarantined == fr.rows_duplicate == 0
        self.assert_nothing_stored_from(name)
        if fr.sha256:
            assert fr.sha256 not in Store(self.store).committed_hashes(), "a rejected file was committed"
        return fr

    def assert_nothing_stored_from(self, name: str) -> None:
        fixes = self.fixes()
        assert not (fixes[S.SOURCE_FILE] == name).any(), "a rejected file left fixes in the store"
        q = self.quarantine()
        assert not (q[S.SOURCE_FILE] == name).any(), "a rejected file left rows in the quarantine"

    def assert_quarantined(self, report: IngestReport, name: str, reason: str, lines: Sequence[int],
                           column: str, kept: int, action: str = Q.ROW) -> pd.DataFrame:
        """QUAR: reason, lines and column in the quarantine; the good rows of the file stored."""
        fr = file_report(report, name)
        assert fr.status == STATUS_COMMITTED, fr
        q = self.quarantine()
        mine = q[(q[S.SOURCE_FILE] == name) & (q[S.Q_REASON] == reason)]
        assert sorted(mine[S.Q_LINE].tolist()) == sorted(lines), mine
        assert set(mine[S.Q_COLUMN]) == {column}, mine
        assert set(mine[S.Q_ACTION]) == {action}, mine
        assert fr.quarantine_reasons.get(reason) == len(lines), fr.quarantine_reasons
        assert fr.rows_kept == kept
        stored = self.fixes()
        stored = stored[stored[S.SOURCE_FILE] == name]
        assert len(stored) == kept
        if action == Q.ROW:
            assert not set(stored[S.SOURCE_LINE]) & set(lines), "a quarantined row is also stored"
        return mine


def check_accounting(fr: FileReport) -> None:
    """Nothing lost: every row read is kept, quarantined or a counted duplicate; a rejection has a reason."""
    if fr.status == STATUS_REJECTED:
        assert fr.message.strip(), f"{fr.file}: rejected without a reason"
        assert fr.rows_kept == fr.rows_quarantined == fr.rows_duplicate == 0
    else:
        assert fr.rows_read == fr.rows_kept + fr.rows_quarantined + fr.rows_duplicate, fr


def file_report(report: IngestReport, name: str) -> FileReport:
    matches = [f for f in report.files if f.file == name]
    assert len(matches) == 1, f"{name}: {len(matches)} file reports in {[f.file for f in report.files]}"
    return matches[0]


def zip_bytes(members: Mapping[str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return buf.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """An empty store folder."""
    return tmp_path / "store"


@pytest.fixture
def harness(tmp_path: Path) -> IngestHarness:
    """Input folder + store; ``harness.write(rows)``, ``harness.ingest(path)``, ``harness.fixes()``."""
    return IngestHarness(tmp_path / "inputs")
