"""The CSV blocks of a streaming read: read-ahead, physical line numbers, cells spanning lines.

Arrow's threaded CSV reader hands over record batches without line numbers;
these helpers number the rows (skipping lines the parser rejected), find
quoted cells holding line breaks (which push later rows down), and keep the
reader one or two blocks ahead of the work on the previous ones.
"""
from __future__ import annotations

import ctypes
import queue
import sys
import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _libc_memchr():
    """libc's ``memchr`` (a scan at memory speed that releases the GIL), or None where there is none."""
    if sys.platform.startswith("win"):
        return None
    try:
        fn = ctypes.CDLL(None).memchr
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_void_p
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    return fn


_MEMCHR = _libc_memchr()


def _holds_newline(buffer: pa.Buffer) -> bool:
    """Whether ``buffer`` holds a line feed byte (every column's text is scanned once per block)."""
    if _MEMCHR is not None and buffer.is_cpu:
        return bool(_MEMCHR(buffer.address, 10, buffer.size))
    return bool(np.any(np.frombuffer(buffer, dtype=np.uint8) == 10))


def line_breaks(batch: pa.RecordBatch) -> np.ndarray | None:
    """Line breaks inside each row's cells (quoted multi-line values), or None when there are none."""
    total = None
    for column in batch.columns:
        data = column.buffers()[2] if len(column.buffers()) > 2 else None
        if data is None or not _holds_newline(data):
            continue  # no line break anywhere in this column: skip the per-row count
        counts = pc.count_substring(column, "\n")
        if pc.max(counts).as_py():
            arr = counts.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
            total = arr if total is None else total + arr
    return total


def line_numbers(n: int, next_line: int, invalid: list):
    """Physical line numbers of ``n`` good rows from ``next_line`` on, skipping lines the parser rejected.

    ``invalid`` may already hold rejected lines of later blocks (the reader
    runs ahead); they lie beyond this batch's rows and do not shift them.
    """
    skip = [num for num, _ in list(invalid) if num is not None and num >= next_line]
    cand = np.arange(next_line, next_line + n + len(skip), dtype=np.int64)
    if skip:
        cand = cand[~np.isin(cand, skip)]
    lines = cand[:n]
    last = int(lines[-1]) + 1 if n else next_line
    return lines, last


def prefetch(reader, depth: int = 2):
    """Iterate ``reader`` in a background thread so CSV parsing overlaps our work on the previous block."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in reader:
                while not stop.is_set():
                    try:
                        q.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)
        finally:
            q.put(done)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # let a producer blocked on a full queue finish
            try:
                q.get(timeout=0.1)
            except queue.Empty:
                pass
        thread.join()
