"""Transparent huge pages off while an ingest runs (Linux), restored afterwards.

Arrow's allocator (mimalloc 3, which asks for transparent huge pages) spreads
the many short-lived buffers of an ingest over fresh 2 MiB regions. With huge
pages each first touch of such a region makes the kernel zero all 2 MiB,
however little of it is used: on the 1M-fix benchmark that zeroing was about
a sixth of ingest's CPU time (``clear_page_erms`` under
``do_huge_pmd_anonymous_page`` in ``perf``), and turning huge pages off for
the process cut its CPU time by ~12 % and its peak RSS by ~60 MB.

``prctl(PR_SET_THP_DISABLE)`` is a per-process switch, so this is scoped: it
is set only if it was not set already, and cleared again on the way out.
Elsewhere (not Linux, no libc, an old kernel) it does nothing.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import sys
from typing import Iterator

log = logging.getLogger(__name__)

PR_SET_THP_DISABLE = 41
PR_GET_THP_DISABLE = 42


@contextlib.contextmanager
def no_huge_pages() -> Iterator[None]:
    """Disable transparent huge pages for this process inside the block (Linux only)."""
    prctl = _prctl()
    if prctl is None or prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) != 0:
        yield  # unsupported, or already disabled by someone else: leave it as it is
        return
    if prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0:
        yield
        return
    try:
        yield
    finally:
        if prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0) != 0:
            log.debug("could not re-enable transparent huge pages (errno %d)", ctypes.get_errno())


def huge_pages_disabled() -> bool | None:
    """Whether THP is disabled for this process (None where that cannot be asked)."""
    prctl = _prctl()
    return None if prctl is None else prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1


def _prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return fn
