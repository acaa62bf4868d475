"""How many cores the computations may use.

A script uses them all. Inside a viewer one is left to the interface, so that the canvas, the
hover plots and the buttons stay responsive while a method runs (:func:`limited`): torch's
intra-op threads, the FFT workers and, when threadpoolctl is installed, the BLAS threads.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

_fft_workers: int | None = None  # None: every core


def fft_workers() -> int:
    """``workers`` for ``scipy.fft`` calls: -1 (all cores) unless :func:`limited` says otherwise."""
    return -1 if _fft_workers is None else _fft_workers


def spare_one() -> int:
    """All cores but one (at least one)."""
    return max(1, (os.cpu_count() or 2) - 1)


@contextmanager
def limited(threads: int):
    """Computations inside the block use at most ``threads`` cores (process-wide while it lasts)."""
    global _fft_workers
    import torch

    before_torch, before_fft = torch.get_num_threads(), _fft_workers
    torch.set_num_threads(int(threads))
    _fft_workers = int(threads)
    blas = None
    try:
        from threadpoolctl import threadpool_limits  # optional: BLAS threads of numpy/scipy

        blas = threadpool_limits(limits=int(threads), user_api="blas")
    except ImportError:
        pass
    try:
        yield
    finally:
        torch.set_num_threads(before_torch)
        _fft_workers = before_fft
        if blas is not None:
            blas.restore_original_limits()
