"""Large arrays reuse freed memory during a fusion instead of fresh pages from the kernel.

glibc's malloc serves every request over 128 KiB (numpy's large arrays) with fresh pages from the
kernel and hands them back on free, so every first touch of them is a page fault. The engine's
steps allocate and free arrays of tens of MB by the thousand. On the project's 2-core VM, with
freed memory kept for the next array (the same bits): a 1024^2 x8 ``fast`` fusion in one process
5.3-5.7 s -> 4.9-5.3 s (kernel time 1.6 -> 1.0 s, 66,000 -> 6,000-9,000 page faults); a 2048^2
scene's 16 tiles on one single-threaded dask worker 32-42 s -> 22-24 s, on two 22-26 s -> 19-20 s.

:func:`reused_heap` raises glibc's thresholds while a fusion runs (process-wide, counted: nested
and concurrent runs share one setting) and, when the last run ends, lowers them again (to what
glibc's own adjustment reaches, see :data:`_AFTER`) and returns what is free to the system
(``malloc_trim``): a viewer does not keep a fusion's peak memory.
Arrays allocated by a thread other than the main one come from a per-thread heap of at most
64 MB, so above that they still get fresh pages; the dask workers this project starts therefore
get the same settings as environment variables (:data:`WORKER_ENV`), with one heap for all
threads. Elsewhere than glibc (macOS, Windows, musl) nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import threading
from contextlib import contextmanager

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters
# After a run: glibc adjusts its thresholds as large blocks are freed (up to a 32 MB mmap threshold
# and twice that for trimming), but any mallopt of them turns that off for good; these are the
# values that adjustment reaches in a numpy process, so the host (a viewer) is not left with
# fresh pages for every array over 128 KiB.
_AFTER = {_M_MMAP_THRESHOLD: 32 << 20, _M_TRIM_THRESHOLD: 64 << 20, _M_TOP_PAD: 128 * 1024}
_DURING = {_M_MMAP_THRESHOLD: 256 << 20, _M_TRIM_THRESHOLD: 1 << 30, _M_TOP_PAD: 64 << 20}
_ENV_NAMES = {_M_MMAP_THRESHOLD: "MALLOC_MMAP_THRESHOLD_", _M_TRIM_THRESHOLD: "MALLOC_TRIM_THRESHOLD_",
              _M_TOP_PAD: "MALLOC_TOP_PAD_"}

#: Environment of a dask worker process this project starts (read by glibc when the process starts).
WORKER_ENV = {"MALLOC_ARENA_MAX": "1", **{_ENV_NAMES[k]: str(v) for k, v in _DURING.items()}}

# the process's own values, read before a dask cluster's start writes its workers' into os.environ
_AT_START = {param: os.environ.get(name) for param, name in _ENV_NAMES.items()}
_lock = threading.Lock()
_users = 0
_libc = None


def _glibc():
    """glibc's ``mallopt`` and ``malloc_trim``, or None elsewhere."""
    global _libc
    if _libc is None:
        _libc = False
        name = ctypes.util.find_library("c")
        try:
            lib = ctypes.CDLL(name or "libc.so.6")
            if hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim") and hasattr(lib, "gnu_get_libc_version"):
                _libc = lib
        except OSError:
            pass
    return _libc or None


def _restored(param: int) -> int:
    """What ``param`` goes back to: the process's environment variable when set, else :data:`_AFTER`."""
    try:
        return int(_AT_START[param])
    except (TypeError, ValueError):
        return _AFTER[param]


@contextmanager
def reused_heap(trim: bool = True):
    """Inside the block freed memory up to 256 MB a block is kept for the next allocation
    (glibc only; see the module docstring). ``trim=False``: what is free is not returned to the
    system at the end (a dask worker's next tile needs it again)."""
    global _users
    lib = _glibc()
    if lib is None:
        yield
        return
    with _lock:
        _users += 1
        if _users == 1:
            for param, value in _DURING.items():
                lib.mallopt(param, value)
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                for param in _DURING:
                    lib.mallopt(param, _restored(param))
                if trim:
                    lib.malloc_trim(0)


def heap_reused(genfunc):
    """Decorate a generator function so that it runs inside :func:`reused_heap` from its first
    step to its return or close."""

    @functools.wraps(genfunc)
    def wrapper(*args, **kwargs):
        with reused_heap():
            return (yield from genfunc(*args, **kwargs))

    return wrapper
