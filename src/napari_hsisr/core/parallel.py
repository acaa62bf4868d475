"""How many cores the computations may use.

A script uses them all. Inside a viewer one is left to the interface, so that the canvas, the
hover plots and the buttons stay responsive while a method runs (:func:`limited`): torch's
intra-op threads, the FFT workers and, when threadpoolctl is installed, the BLAS threads.
"""

from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager

_fft_workers: int | None = None  # None: every core


def fft_workers() -> int:
    """``workers`` for ``scipy.fft`` calls: -1 (all cores) unless :func:`limited` says otherwise."""
    return -1 if _fft_workers is None else _fft_workers


def spare_one() -> int:
    """All cores but one (at least one)."""
    return max(1, (os.cpu_count() or 2) - 1)


@contextmanager
def limited(threads: int, torch_too: bool = True):
    """Computations inside the block use at most ``threads`` cores (process-wide while it lasts).
    ``torch_too=False``: torch's threads are left alone and torch is not imported (seconds of a
    fresh process's time, e.g. a dask worker running a numpy method)."""
    global _fft_workers
    torch = None
    if torch_too:
        import torch

        before_torch = torch.get_num_threads()
        torch.set_num_threads(int(threads))
    before_fft = _fft_workers
    _fft_workers = int(threads)
    try:
        # the engine's one controller, as a context: a `threadpool_limits` object made and restored
        # in a Qt worker thread left OpenBLAS ignoring later limits set from the main thread
        with _blas_controller().limit(limits=int(threads), user_api="blas"):
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before_torch)
        _fft_workers = before_fft


# ---------------------------------------------------------------------- determinism
# A BLAS reduction split over n threads adds its partial sums in another order than over one
# thread: a result differed in its last bit (1 ulp, on 5 % of the values) between a dask worker
# (one BLAS thread) and the same pair fused in a process with two. The engine therefore runs
# every fusion step with ONE BLAS thread, whatever the process or its environment
# (OPENBLAS_NUM_THREADS, MKL_NUM_THREADS) say: the same inputs, options and seed give the same
# bits at any thread count. The matrices BLAS sees are small (bands x bands, rank x pixels); the
# heavy parts (FFTs, guided filters, convolutions) keep their own workers, so one thread costs
# little (a 512x512 x8 'fast' fusion: 4.8 s with one thread, 7.6 s with two on a shared 2-core
# machine). Torch's intra-op threads are not pinned: the torch methods are reproducible per
# machine and thread count (docs/methods.md, Determinism).
_controller = None


def _blas_controller():
    global _controller
    if _controller is None:
        import numpy  # noqa: F401 - their BLAS libraries must be loaded for the controller to see them
        import scipy.linalg  # noqa: F401
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


@contextmanager
def one_blas_thread():
    """Inside the block numpy's and scipy's BLAS/LAPACK run on one thread (restored after)."""
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


def blas_pinned(genfunc):
    """Decorate a generator function so that each of its steps (up to each ``yield`` and to its
    return) runs under :func:`one_blas_thread`; the caller's code between the steps keeps its own
    thread count. Closing the wrapper closes the generator."""
    import functools

    @functools.wraps(genfunc)
    def wrapper(*args, **kwargs):
        gen = genfunc(*args, **kwargs)
        try:
            while True:
                with one_blas_thread():
                    try:
                        item = next(gen)
                    except StopIteration as stop:
                        return stop.value
                yield item
        finally:
            gen.close()

    return wrapper


# ---------------------------------------------------------------------- dask.distributed
@contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None, client=None, warm=None):
    """A ``distributed.Client``: ``client`` itself, else one connected to ``scheduler`` (an
    address), else a ``LocalCluster`` of ``workers`` single-threaded processes (default: one per
    core; one thread each so that the engine's steps are the same as in one process). ``warm``: a
    function each new local worker runs at start (e.g. :func:`.tiling.warm_worker`). What this
    opens it closes."""
    if client is not None:
        yield client
        return
    from distributed import Client, LocalCluster

    with ExitStack() as stack:
        cluster = None
        if scheduler:
            own = Client(scheduler)
        else:
            import dask

            from .heap import WORKER_ENV

            n = int(workers or os.cpu_count() or 1)
            # the workers keep freed memory for the next array (heap.py): set before they start
            spawn_env = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **WORKER_ENV}
            # every nanny writes it into this process's environment when it starts a worker (a restart
            # too): what this process launches after the cluster must not inherit it
            restore_environ = stack.enter_context(_environ_kept(spawn_env))
            with dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_env}):
                # no dashboard; its HTTP server (which starts anyway) on a free port, not 8787: two
                # clusters at once (two runs, a test beside a run) would otherwise warn that the port is in use
                cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                                       scheduler_kwargs={"dashboard": False})
            restore_environ()  # now, and again when the cluster closes
            own = Client(cluster)
            if warm is not None:  # each worker runs it now, not waited for: imports overlap the caller's work
                from distributed import fire_and_forget

                for address in own.scheduler_info().get("workers", {}):
                    fire_and_forget(own.submit(warm, workers=[address], allow_other_workers=False, pure=False))
        try:
            yield own
        finally:
            own.close()
            if cluster is not None:
                cluster.close()


@contextmanager
def dask_client_soon(*args, **kwargs):
    """:func:`dask_client` started in a background thread: yields at once a
    ``concurrent.futures.Future`` of the client, which :func:`.tiling.fuse_tiled_iter` waits for
    only when its tiles are ready to go. A local cluster takes 1.5-2 s to start (processes,
    imports); the scene context (about as long at 2048^2) is computed meanwhile. On exit the
    client is closed as :func:`dask_client` closes it (after its start, if still starting)."""
    import threading
    from concurrent.futures import Future

    started, leave = Future(), threading.Event()

    def hold() -> None:
        try:
            with dask_client(*args, **kwargs) as client:
                started.set_result(client)
                leave.wait()
        except Exception as exc:  # the start's error reaches whoever waits for the client
            if started.done():
                raise
            started.set_exception(exc)

    thread = threading.Thread(target=hold, name="hsisr-dask-client", daemon=True)
    thread.start()
    try:
        yield started
    finally:
        leave.set()
        thread.join()


def ready_client(client):
    """``client`` itself, or the client a Future from :func:`dask_client_soon` resolves to."""
    from concurrent.futures import Future

    return client.result() if isinstance(client, Future) else client


@contextmanager
def _environ_kept(keys):
    """This process's environment variables ``keys`` as they were before the block, after it; the
    block gets the function that puts them back (to call earlier as well)."""
    before = {k: os.environ.get(k) for k in keys}

    def restore() -> None:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    try:
        yield restore
    finally:
        restore()
