"""Input files: compression sniffing (gzip, zip), content hashes, encoding checks.

A *source* is one CSV stream: a plain file, a ``.gz``, or one member of a
``.zip`` (each member is its own source with its own hash). Compression is
recognised by the file's first bytes, never by its name alone: a ``.gz`` that
is not gzip is rejected with a clear message.
"""
from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import pyarrow as pa

from flyway.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
_CHUNK = 1 << 22
# A zip member that inflates more than this many times its compressed size is
# treated as a zip bomb rather than read.
MAX_ZIP_RATIO = 200


_HASHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flyway-hash")


@dataclass(frozen=True)
class Source:
    """One CSV stream to ingest."""

    name: str  # what error messages and the ledger call it (file, or archive!member)
    path: Path
    opener: Callable[[], BinaryIO]
    sha256: str  # "" while a deferred hash is still running (see :meth:`digest`)
    size: int  # uncompressed bytes
    encoding: str = "utf-8"  # declared text encoding (checked when hashed)
    pending: Future | None = None
    key: str = ""  # unique within one ingest call (names of staged files)

    def digest(self) -> str:
        """The content's SHA-256, waiting for a deferred hash if need be."""
        return self.sha256 or self.pending.result()[0]


def open_sources(path: str | Path, encoding: str = "utf-8",
                 defer_hash: Callable[[int], bool] | None = None) -> list[Source]:
    """Sniff ``path`` and return its sources, each hashed and encoding-checked.

    ``defer_hash(size)`` may allow a plain UTF-8 file's hash to run in the
    background while it is being read (the caller knows no stored file has
    that size, so it cannot be a re-submission); the digest is then taken
    with :meth:`Source.digest` before the ledger commit.

    Raises
    ------
    InputError
        Missing or empty file, a ``.gz``/``.zip`` name whose content is not
        that format, a corrupt archive, or bytes that are not valid in the
        declared encoding (with line and byte offset).
    """
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise InputError("no such file", file=name)
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        raise InputError("file is empty (0 bytes); expected a CSV header line", file=name)
    lower = name.lower()
    if head.startswith(GZIP_MAGIC):
        sources = [_make(name, path, lambda: gzip.open(path, "rb"), encoding)]
    elif head.startswith(ZIP_MAGIC):
        sources = _zip_sources(path, encoding)
    elif lower.endswith((".gz", ".gzip")):
        raise InputError(f"not a gzip file although named .gz (starts with bytes {head[:4]!r})", file=name)
    elif lower.endswith(".zip"):
        raise InputError(f"not a zip archive although named .zip (starts with bytes {head[:4]!r})", file=name)
    else:
        size = path.stat().st_size
        # Arrow's own file: the CSV reader reads it into pooled buffers without the GIL (a Python
        # file object hands over a fresh bytes object per block: 1 page fault per 4 KiB read)
        opener = lambda: pa.OSFile(str(path))  # noqa: E731
        utf8 = codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")
        if defer_hash is not None and utf8 and defer_hash(size):
            pending = _HASHER.submit(_hash_and_check, name, opener, encoding, False)
            return [Source(name=name, path=path, opener=opener, sha256="", size=size, encoding=encoding,
                           pending=pending)]
        sources = [_make(name, path, opener, encoding)]
    return sources


def _zip_sources(path: Path, encoding: str) -> list[Source]:
    try:
        zf = zipfile.ZipFile(path)
        infos = [i for i in zf.infolist() if not i.is_dir() and not i.filename.startswith(("__MACOSX/", "."))]
    except zipfile.BadZipFile as exc:
        raise InputError(f"corrupt zip archive ({exc})", file=path.name) from exc
    if not infos:
        raise InputError("zip archive holds no files", file=path.name)
    out = []
    for info in infos:
        if info.compress_size and info.file_size / info.compress_size > MAX_ZIP_RATIO:
            raise InputError(
                f"member {info.filename} inflates {info.file_size / info.compress_size:.0f}x "
                f"(limit {MAX_ZIP_RATIO}x); refusing a possible zip bomb",
                file=path.name,
            )

        def opener(member=info.filename) -> BinaryIO:
            return zipfile.ZipFile(path).open(member)

        out.append(_make(f"{path.name}!{info.filename}", path, opener, encoding))
    return out


def _make(name: str, path: Path, opener: Callable[[], BinaryIO], encoding: str) -> Source:
    # UTF-8 files are validated by the CSV reader itself (a failure there calls
    # check_encoding for the line and byte offset); other declared encodings are
    # checked here, before they are transcoded while streaming.
    utf8 = codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")
    digest, size = _hash_and_check(name, opener, encoding, check=not utf8)
    if size == 0:
        raise InputError("file is empty (0 bytes after decompression); expected a CSV header line", file=name)
    return Source(name=name, path=path, opener=opener, sha256=digest, size=size, encoding=encoding)


def check_encoding(source: Source) -> None:
    """Raise :class:`InputError` naming the line and byte offset of the first undecodable bytes."""
    _hash_and_check(source.name, source.opener, source.encoding, check=True)


def _hash_and_check(name: str, opener: Callable[[], BinaryIO], encoding: str,
                    check: bool = True) -> tuple[str, int]:
    """SHA-256 of the (decompressed) content; with ``check``, also that it decodes in ``encoding``."""
    sha = hashlib.sha256()
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    size = 0
    lines = 1
    buffer = memoryview(bytearray(_CHUNK))  # one buffer for the whole file: no fresh pages per chunk
    try:
        with opener() as fh:
            while True:
                n = fh.readinto(buffer)
                if not n:
                    break
                sha.update(buffer[:n])
                if not check:
                    size += n
                    continue
                chunk = bytes(buffer[:n])
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    offset = size + exc.start
                    line = lines + chunk.count(b"\n", 0, exc.start)
                    bad = chunk[exc.start: exc.start + 4]
                    raise InputError(
                        f"byte offset {offset}: bytes {bad!r} are not valid {encoding}; "
                        "save the file as UTF-8 or declare its encoding in a column mapping "
                        "(e.g. encoding = \"gb18030\")",
                        file=name,
                        line=line,
                    ) from None
                lines += chunk.count(b"\n")
                size += len(chunk)
            if check:
                decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise InputError(f"file ends inside a multi-byte {encoding} character (truncated?)",
                         file=name, line=lines) from None
    except (OSError, EOFError, zipfile.BadZipFile, gzip.BadGzipFile) as exc:
        raise InputError(f"cannot read compressed data ({exc}); the archive is corrupt or truncated",
                         file=name) from exc
    return sha.hexdigest(), size


def read_head(source: Source, n_bytes: int = 1 << 16) -> bytes:
    """About the first ``n_bytes`` of a source, decompressed and as UTF-8.

    Text in another declared encoding (e.g. GB18030 headers) is transcoded, so
    the header line reads the same as the rows that :func:`text_stream` yields.
    """
    with text_stream(source, source.encoding) as fh:
        return fh.read(n_bytes)


def text_stream(source: Source, encoding: str) -> BinaryIO:
    """A binary UTF-8 stream of the source, transcoding when ``encoding`` is not UTF-8."""
    raw = source.opener()
    if codecs.lookup(encoding).name in ("utf-8", "utf-8-sig"):
        return raw
    return io.BufferedReader(_Transcoder(raw, encoding))  # type: ignore[arg-type]


class _Transcoder(io.RawIOBase):
    """Decode ``encoding`` and re-encode as UTF-8, streaming."""

    def __init__(self, raw: BinaryIO, encoding: str) -> None:
        self._raw = raw
        self._dec = codecs.getincrementaldecoder(encoding)()
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        while not self._buf:
            chunk = self._raw.read(_CHUNK)
            if not chunk:
                self._buf = self._dec.decode(b"", final=True).encode("utf-8")
                if not self._buf:
                    return 0
                break
            self._buf = self._dec.decode(chunk).encode("utf-8")
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()
