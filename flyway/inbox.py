"""The nightly inbox: which files are complete, and where each one ends up.

An upload in progress must not be ingested, so a file is taken only when

* its name is not hidden (``.name``) and does not end in ``.part`` / ``.tmp``
  (the usual names of partial uploads of rsync, scp, browsers, curl);
* its size and modification time are the same at two looks ``settle_s``
  seconds apart.

After the ingest batch has committed, each file is moved into
``INBOX/processed/`` or ``INBOX/failed/`` (with ``<name>.reason.txt`` beside
it). Nothing is ever deleted or overwritten: a name already taken gets a
``.1``, ``.2`` ... suffix before its extension. A move is a hard link
followed by an unlink, so a crash between the two leaves the same inode in
both places, which the next run recognises and finishes (no second copy).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from flyway.geoparquet import fsync_dir

log = logging.getLogger(__name__)

PROCESSED_DIR = "processed"
FAILED_DIR = "failed"
REASON_SUFFIX = ".reason.txt"
PARTIAL_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload")


@dataclass(frozen=True)
class InboxFile:
    """A complete file of the inbox, as seen at its second look."""

    path: Path
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return self.path.name


def _candidates(inbox: Path) -> dict[Path, tuple[int, int]]:
    out: dict[Path, tuple[int, int]] = {}
    if not inbox.is_dir():
        return out
    with os.scandir(inbox) as it:
        for entry in it:
            name = entry.name
            if name.startswith(".") or name.lower().endswith(PARTIAL_SUFFIXES) or name.endswith(REASON_SUFFIX):
                continue
            if not entry.is_file(follow_symlinks=False):
                continue  # processed/, failed/, other folders, symlinks
            st = entry.stat(follow_symlinks=False)
            out[Path(entry.path)] = (st.st_size, st.st_mtime_ns)
    return out


def settled_files(inbox: str | os.PathLike[str], settle_s: float = 10.0) -> list[InboxFile]:
    """The complete files of ``inbox`` (see the module docstring), sorted by name.

    Parameters
    ----------
    inbox : path
        The inbox folder (not searched recursively).
    settle_s : float
        Seconds between the two looks; a file whose size or modification
        time changed in between is still being written and is left for the
        next run. 0 takes every candidate at once.

    Returns
    -------
    list of InboxFile
    """
    if settle_s < 0:
        raise ValueError(f"settle_s = {settle_s!r}: expected seconds >= 0")
    inbox = Path(inbox)
    first = _candidates(inbox)
    if first and settle_s > 0:
        time.sleep(settle_s)
    second = _candidates(inbox) if settle_s > 0 else first
    files = []
    for path, stat in second.items():
        if first.get(path) != stat:
            log.info("%s: still being written (size or time changed), left for the next run", path.name)
            continue
        files.append(InboxFile(path, stat[0], stat[1]))
    return sorted(files, key=lambda f: f.name)


def _free_name(folder: Path, name: str) -> Path:
    """``folder/name`` or, when taken, ``folder/<stem>.<k><suffixes>`` with the smallest free k."""
    target = folder / name
    if not target.exists() and not target.is_symlink():
        return target
    stem, dot, ext = name.partition(".")  # keep ".csv.gz" together
    k = 1
    while True:
        candidate = folder / (f"{stem}.{k}{dot}{ext}" if dot else f"{name}.{k}")
        if not candidate.exists() and not candidate.is_symlink():
            return candidate
        k += 1


def _already_there(src: Path, folder: Path) -> Path | None:
    """A file in ``folder`` that is ``src`` itself (hard link left by an interrupted move)."""
    stem = src.name.partition(".")[0]
    for candidate in folder.glob(f"{stem}*"):
        try:
            if candidate != src and os.path.samefile(candidate, src):
                return candidate
        except OSError:
            continue
    return None


def move_file(src: str | os.PathLike[str], folder: str | os.PathLike[str], reason: str | None = None) -> Path:
    """Move ``src`` into ``folder`` without ever overwriting; returns where it went.

    With ``reason``, ``<final name>.reason.txt`` is written beside it first
    (one line saying why the file was rejected).
    """
    src, folder = Path(src), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    done = _already_there(src, folder)
    if done is None:
        target = _free_name(folder, src.name)
        if reason is not None:
            _write_reason(target, reason)
        try:
            os.link(src, target)  # fails if target exists: never overwrites
        except OSError as exc:
            if isinstance(exc, FileExistsError):
                raise
            # no hard links on this file system: a rename (target is free; we hold the nightly lock)
            os.rename(src, target)
            fsync_dir(folder)
            return target
        fsync_dir(folder)
    else:
        target = done
        if reason is not None and not target.with_name(target.name + REASON_SUFFIX).exists():
            _write_reason(target, reason)
    src.unlink()
    fsync_dir(src.parent)
    return target


def _write_reason(target: Path, reason: str) -> None:
    path = target.with_name(target.name + REASON_SUFFIX)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(reason.rstrip("\n") + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
