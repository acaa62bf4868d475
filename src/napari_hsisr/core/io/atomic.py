"""Writing results safely: :func:`check_output` before any work, :func:`atomic_path` for the write
(the policy itself, which files may be replaced, is :mod:`..outputs`)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError
from ..outputs import claim, discard, remove_stale, storage_errors, temp_name
from .base import TIFF_SUFFIXES


def check_output(path: str | os.PathLike, inputs=(), flag: str = "--out",
                 suffixes: tuple = TIFF_SUFFIXES, fused: bool = False) -> Path:
    """Check, before any computation, that ``path`` can be written and replaces nothing of the user's.

    Refuses: a folder (other than a ``.zarr`` store), a suffix other than ``suffixes``, a missing
    parent folder (it is not created silently), a folder where nothing can be created (read-only,
    /proc), and whatever :func:`.outputs.claim` refuses: one of ``inputs`` (the same file however
    it is spelled), an existing file or store that is not a result of ours (when ``fused``, not a
    fusion result)."""
    path = Path(path)
    if path.is_dir() and path.suffix.lower() != ".zarr":
        raise InputError(f"{flag} {path} is a folder; give a file name such as {path / 'result.tif'}.")
    if path.suffix.lower() not in suffixes:
        raise InputError(f"{flag} {path}: results are written as TIFF; give a name ending in "
                         f"{' or '.join(suffixes)} (.ome.tif for OME-TIFF).")
    dest = claim(path, inputs, fused=fused, flag=flag)
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{flag} {path}: the folder {parent} does not exist; create it first (mkdir -p {parent}).")
    probe = temp_name(dest, "probe")  # named like a temporary: a killed run's is removed by the next
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        probe.unlink()
    except OSError as exc:
        raise InputError(f"{flag} {path}: cannot write in {parent} ({exc.strerror}); "
                         "choose a writable folder.") from None
    return path


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp"):
    """Yield a fresh temporary path beside ``path``; when the block succeeds it replaces ``path``,
    when it fails (or is interrupted: SIGINT, and SIGTERM/SIGHUP in the CLI) it is removed, so
    ``path`` is never left half-written. A full disk is one line (:func:`.outputs.storage_errors`).

    The temporary name carries the writer's process id: leftovers of a killed writer (SIGKILL,
    power loss) are removed when the next write to the same path starts. The file is created
    with ``os.open(..., 0o666)``, so it gets the permissions a plain ``open`` would (the umask
    applies), not ``mkstemp``'s 0600. The folder must exist: it is not created silently. This is
    the mechanism only: result files are first checked with :func:`.outputs.claim`.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"{path}: the folder {path.parent} does not exist; create it first.")
    remove_stale(path)
    tmp = None
    try:
        with storage_errors(path):
            while True:
                tmp = temp_name(path, suffix.lstrip("."))
                try:
                    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
                    break
                except FileExistsError:
                    continue
            yield tmp
            os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise
