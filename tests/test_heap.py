"""Freed memory kept for the next large array while a fusion runs (core/heap.py), and given back
after; a local cluster's workers start with the same settings."""

from __future__ import annotations

import os

import numpy as np
import pytest

from napari_hsisr.core import heap

glibc = pytest.mark.skipif(heap._glibc() is None, reason="glibc's malloc only")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _kept_after_free() -> int:
    """Bytes of a written and freed 64 MB array the process still holds."""
    a = np.empty(8 << 20)
    a.fill(1.0)
    held = _rss()
    del a
    return _rss() - held + (64 << 20)


MB = 1 << 20


@glibc
def test_large_arrays_reuse_freed_memory_inside_and_the_memory_goes_back_after():
    assert _kept_after_free() < 8 * MB  # glibc's default: handed back on free (and fresh pages next time)
    with heap.reused_heap():
        with heap.reused_heap():  # nested (a run inside a run): the outer one decides when it ends
            pass
        assert _kept_after_free() > 56 * MB  # kept for the next array
        held = _rss()
    assert held - _rss() > 56 * MB  # returned when the run ends
    assert _kept_after_free() < 8 * MB  # and the default is back


@glibc
def test_the_generator_form_holds_the_setting_until_it_returns_or_is_closed():
    def steps():
        yield _kept_after_free()
        yield _kept_after_free()

    gen = heap.heap_reused(steps)()
    assert next(gen) > 56 * MB and heap._users == 1
    gen.close()
    assert heap._users == 0 and _kept_after_free() < 8 * MB


def test_a_local_clusters_workers_start_with_the_settings_and_this_process_keeps_its_environment():
    """Also after a worker restart (its nanny writes the settings into this process again)."""
    from napari_hsisr.core.parallel import dask_client

    before = {k: os.environ.get(k) for k in heap.WORKER_ENV}
    with dask_client(workers=1) as client:
        seen = list(client.run(lambda: {k: os.environ.get(k) for k in heap.WORKER_ENV}).values())
        assert {k: os.environ.get(k) for k in heap.WORKER_ENV} == before
        client.restart()
        seen += list(client.run(lambda: {k: os.environ.get(k) for k in heap.WORKER_ENV}).values())
    assert seen == [heap.WORKER_ENV] * 2
    assert {k: os.environ.get(k) for k in heap.WORKER_ENV} == before
