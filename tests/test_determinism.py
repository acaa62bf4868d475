"""Determinism at any thread count: the same inputs, options and seed give the same bits whether
numpy's BLAS runs one thread or several, in this process or another (a dask worker runs one, a
script as many as the machine has). The engine runs every fusion step, and simulate, with one BLAS
thread (core/parallel.py), so results are compared exactly, not to a tolerance."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

import napari_hsisr as hsisr  # noqa: E402
from napari_hsisr import Degradation  # noqa: E402
from napari_hsisr.core.sample import sample_pair  # noqa: E402


def _batch_pair():
    """The pair of the local-cluster batch test, whose 'fast' result differed in the last bit of
    6,079 values between one and two BLAS threads before the engine pinned them."""
    p = sample_pair(size=64, scale=4)
    hr = (np.clip(p.hr, 0, 1) * 255).round().astype(np.uint8)
    deg = Degradation(scale=4, psf_sigma=1.0, hr_encoding="linear", srf="Nikon D700 (CAVE fusion papers)",
                      wavelengths=p.degradation.wavelengths)
    return hr, p.lr, deg


def _blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


@pytest.mark.parametrize("tile", [None, 32])
def test_fuse_has_the_same_bits_with_one_or_two_blas_threads(tile):
    hr, lr, deg = _batch_pair()
    cubes = []
    for n in (1, 2):
        with threadpool_limits(n, user_api="blas"):
            cubes.append(np.asarray(hsisr.fuse(hr, lr, deg, method="fast", rank=8, tile=tile).cube))
    np.testing.assert_array_equal(cubes[0], cubes[1])


def test_simulate_has_the_same_bits_with_one_or_two_blas_threads():
    p = sample_pair(size=64, scale=4)
    outs = []
    for n in (1, 2):
        with threadpool_limits(n, user_api="blas"):
            outs.append(hsisr.simulate(p.reference, p.degradation, noise_snr_db=30, seed=3))
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


def test_the_pin_holds_inside_the_steps_and_is_restored_between_them():
    """Inside a method step BLAS runs one thread; the caller's code between the steps (a progress
    callback, a viewer) and after the run keeps its own count."""
    import napari_hsisr.core.parallel as parallel

    hr, lr, deg = _batch_pair()
    with threadpool_limits(2, user_api="blas"):
        outer = _blas_threads()
        seen_inside, seen_between = [], []
        original = parallel.one_blas_thread

        def spy():
            cm = original()

            class Spy:
                def __enter__(self):
                    cm.__enter__()
                    seen_inside.append(_blas_threads())

                def __exit__(self, *exc):
                    return cm.__exit__(*exc)

            return Spy()

        parallel.one_blas_thread = spy
        try:
            hsisr.fuse(hr, lr, deg, method="fast", rank=8, progress=lambda p: seen_between.append(_blas_threads()))
        finally:
            parallel.one_blas_thread = original
        assert seen_inside and all(set(t) == {1} for t in seen_inside)
        assert seen_between and all(t == outer for t in seen_between)
        assert _blas_threads() == outer


_CHILD = """
import hashlib, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_determinism import _batch_pair
import napari_hsisr as hsisr
hr, lr, deg = _batch_pair()
print(hashlib.sha256(np.ascontiguousarray(hsisr.fuse(hr, lr, deg, method="fast", rank=8).cube).tobytes()).hexdigest())
"""


def test_other_processes_with_other_blas_thread_counts_give_the_same_bits():
    """What the batch test does through dask, in two plain processes: OPENBLAS_NUM_THREADS=1 and 2
    (the environment that decides a fresh process's count) give the bits this process gives."""
    hr, lr, deg = _batch_pair()
    here = hashlib.sha256(np.ascontiguousarray(hsisr.fuse(hr, lr, deg, method="fast", rank=8).cube).tobytes())
    code = _CHILD.format(tests=os.path.dirname(__file__))
    children = {}
    for threads in ("1", "2"):  # both at once: each spends seconds importing
        env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        children[threads] = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True, env=env)
    for threads, child in children.items():
        stdout, stderr = child.communicate(timeout=300)
        assert child.returncode == 0, stderr[-2000:]
        assert stdout.strip().splitlines()[-1] == here.hexdigest(), f"OPENBLAS_NUM_THREADS={threads}"


def test_the_pin_holds_after_limits_set_in_a_qt_worker_thread(qtbot):
    """The dock runs the engine in a Qt worker thread under ``limited()``. A threadpoolctl limit
    made and restored there once left OpenBLAS ignoring every later limit set from the main
    thread: the pin reported 2 threads, and a fusion after a dock run could differ in its last bit."""
    from napari.qt.threading import thread_worker

    import napari_hsisr.core.parallel as parallel

    def work():
        with parallel.limited(1, torch_too=False):
            np.ones((200, 200)) @ np.ones((200, 200))

    worker = thread_worker(work)()
    with qtbot.waitSignal(worker.finished, timeout=30000):
        worker.start()
    with threadpool_limits(2, user_api="blas"), parallel.one_blas_thread():
        assert set(_blas_threads()) == {1}
