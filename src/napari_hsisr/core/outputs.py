"""Where results may be written: one policy for every writer and front end.

``hsisr fuse``/``batch``/``demo``/``simulate``, ``fuse(out=...)``, :func:`.io.write_tiff`,
:func:`.io.write_image`, :func:`.io.write_zarr`, the tiled outputs and the docks' Save all call
:func:`claim` before they write, so that nothing a user has is ever lost:

- an output is never one of the inputs (same file however it is spelled: resolved path or inode);
- a name from a manifest is confined to its folder (:func:`confine_name`: no separators, no ``..``);
- an existing output is replaced only when it is a result of ours (:func:`result_kind`: the JSON
  our TIFF writers store, the attributes of our Zarr stores); a fusion result replaces only a
  fusion result, never a cube we simulated (that is someone's input); anything else is refused;
- an output given as a symbolic link is written where the link points (the link stays);
- temporaries are named ``.<name>.<pid>-<hex>.<tag>`` beside the output: on an error or a signal
  the writer removes its own (:func:`discard`), and whatever a killed writer (SIGKILL, power loss)
  left is removed by the next run that writes there, once its process is gone (:func:`remove_stale`);
- a full disk (ENOSPC, a quota, a file size limit) is one line (:func:`storage_errors`).
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError

STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
# the tags of our temporaries (.tmp.tif, .tmp.zarr, .sums.zarr, .old, .probe, an atomic file's .tmp...):
# nothing else beside an output is ever removed
_TAGS = r"(tmp(\.[A-Za-z0-9]+)?|sums\.zarr|old|probe)"
# what a Zarr store of ours holds at its top: metadata and levels "0", "1"... (or a plain array's chunks:
# "c" in Zarr v3, "0.0.0" in v2)
_ZARR_ENTRIES = re.compile(r"^(zarr\.json|\.zattrs|\.zgroup|\.zarray|\.zmetadata|\d+(\.\d+)*|c)$")


# --------------------------------------------------------------------------- names and inputs
def confine_name(name, what: str = "name") -> str:
    """``name`` as a file name inside its folder: refused when empty, hidden (``.x``: the namespace of
    our temporaries), or holding a path separator, ``..`` or a NUL (it would write elsewhere)."""
    text = str(name).strip() if name is not None else ""
    bad = not text or text in (".", "..") or text.startswith(".") or "\x00" in text
    bad = bad or any(sep and sep in text for sep in ("/", "\\", os.sep, os.altsep))
    if bad:
        raise InputError(f"{what} {text!r} is not a plain file name (no '/', '\\', leading '.' or '..'); outputs "
                         "stay in the output folder. Give a name such as 'scene1'.")
    return text


def same_file(a, b) -> bool:
    """Whether two paths name one file or folder (resolved spelling, or the same inode)."""
    a, b = Path(a), Path(b)
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def array_files(obj, _depth: int = 0) -> list[Path]:
    """The files a lazy array reads (a memory-mapped ``.npy``/ENVI file, a Zarr store, a TIFF opened
    as Zarr, and those under a dask array), so that ``fuse(out=...)`` refuses to write over its own
    input; [] for arrays in memory."""
    import numpy as np

    found: list[Path] = []
    if _depth > 3 or obj is None:
        return found
    try:
        base = obj
        while isinstance(base, np.ndarray):
            if isinstance(base, np.memmap) and getattr(base, "filename", None):
                found.append(Path(base.filename))
                break
            base = base.base
        store = getattr(obj, "store", None)
        if store is not None and not callable(store):
            root = getattr(store, "root", None)
            if root is not None:
                found.append(Path(str(root)))
            for series in getattr(store, "_data", None) or ():  # tifffile's ZarrTiffStore: its pages' file
                handle = getattr(getattr(series, "parent", None), "filehandle", None)
                if getattr(handle, "path", None):
                    found.append(Path(handle.path))
        graph = getattr(obj, "__dask_graph__", None)
        if callable(graph):
            for value in dict(graph()).values():
                if hasattr(value, "store") or isinstance(value, np.memmap):
                    found.extend(array_files(value, _depth + 1))
    except Exception:  # noqa: BLE001 - best effort: an unknown array type has no known file
        return list(dict.fromkeys(found))
    return list(dict.fromkeys(found))


def target(path) -> Path:
    """Where writing ``path`` puts the data: the end of a symbolic link (so the link still points to
    the result and no ``.old`` of the link is left), else ``path``."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


# --------------------------------------------------------------------------- whose is it
def result_kind(path) -> str | None:
    """``"fused"`` for a fusion result of napari-hsisr, ``"ours"`` for another file our writers made
    (a simulated pair, a saved layer), ``"empty"`` for a 0-byte file (nothing to lose), None for
    anything else (someone's data, or a file too damaged to tell)."""
    path = Path(path)
    try:
        if path.is_dir():
            return _zarr_kind(path)
        if path.stat().st_size == 0:
            return "empty"
        if path.suffix.lower() in (".tif", ".tiff"):
            return _tiff_kind(path)
    except (OSError, ValueError):
        return None
    return None


def is_fusion_settings(settings) -> bool:
    """Whether settings stored with a result are a fusion's (they name the method)."""
    return isinstance(settings, dict) and "method" in settings


def _kind_of(settings) -> str:
    return "fused" if is_fusion_settings(settings) else "ours"


HSISR_TAG = 65000  # the private TIFF tag holding our JSON record (OME-TIFF, GeoTIFF)


def tiff_record(tif) -> dict | None:
    """The JSON record :func:`.io.write_tiff` stored (ImageJ Info or :data:`HSISR_TAG`), if any: what
    marks a TIFF as ours, read by the TIFF readers too."""
    texts = []
    if tif.is_imagej and tif.imagej_metadata:
        texts.append(tif.imagej_metadata.get("Info"))
    tag = tif.pages[0].tags.get(HSISR_TAG)
    if tag is not None:
        texts.append(tag.value)
    for text in texts:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if isinstance(text, str) and text.strip().startswith("{"):
            try:
                obj = json.loads(text)
            except ValueError:
                continue
            if isinstance(obj, dict) and "wavelengths" in obj:
                return obj
    return None


def _tiff_kind(path: Path) -> str | None:
    import logging

    import tifffile

    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # a damaged file is judged here, not reported
    try:
        with tifffile.TiffFile(str(path)) as tif:
            info = tiff_record(tif)
            if info is not None:
                return _kind_of(info.get("settings"))
            text = tif.pages[0].description if len(tif.pages) else ""  # write_image's JSON
    except Exception:  # noqa: BLE001 - unreadable: not known to be ours
        return None
    finally:
        logger.setLevel(level)
    try:
        obj = json.loads(text) if text.strip().startswith("{") else None
    except ValueError:
        return None
    return "ours" if isinstance(obj, dict) and "settings" in obj else None


def _zarr_kind(path: Path) -> str | None:
    """A store we wrote: only Zarr metadata and levels at its top (a user's file inside makes it
    someone's), with our attributes (``wavelengths`` and ``settings``)."""
    entries = os.listdir(path)
    if not entries or any(not _ZARR_ENTRIES.match(e) for e in entries):
        return None
    if "zarr.json" in entries:
        attrs = json.loads((path / "zarr.json").read_text()).get("attributes") or {}
    elif ".zattrs" in entries:
        attrs = json.loads((path / ".zattrs").read_text())
    else:
        return None
    if not isinstance(attrs, dict) or "settings" not in attrs or "wavelengths" not in attrs:
        return None
    return _kind_of(attrs.get("settings"))


# --------------------------------------------------------------------------- the policy
def claim(path, inputs=(), *, fused: bool = False, flag: str = "") -> Path:
    """Check, before writing, that ``path`` may be written, and return where to write (the end of a
    symbolic link). Refuses, in one line: one of ``inputs``; an existing output that is not a
    result of ours (or, when ``fused``, not a fusion result). Removes what killed writers left
    beside it. ``flag`` names the option in messages (``--out``)."""
    path = Path(path)
    where = f"{flag} {path}" if flag else str(path)
    dest = target(path)
    for other in inputs or ():
        if other is not None and (same_file(path, other) or _inside(other, dest)):
            raise InputError(f"{where} is an input ({other}); writing there would destroy it. Choose another name.")
    if dest.exists() or dest.is_symlink():
        kind = result_kind(dest)
        if kind is None:
            what = "a folder" if dest.is_dir() else "a file"
            raise InputError(f"{where} exists and is {what} napari-hsisr did not write (or cannot read back); it is "
                             "not replaced. Move it away or choose another name.")
        if fused and kind == "ours":
            raise InputError(f"{where} exists and holds a cube napari-hsisr wrote that is not a fusion result (a "
                             "simulated pair or a saved layer: likely an input); it is not replaced. Choose another "
                             "name.")
    if dest.parent.is_dir():
        remove_stale(dest)
    return dest


def _inside(inner, outer: Path) -> bool:
    """Whether ``inner`` lies inside the folder ``outer`` (an input read from a store being replaced)."""
    try:
        return outer.is_dir() and Path(inner).resolve().is_relative_to(outer.resolve())
    except OSError:
        return False


# --------------------------------------------------------------------------- temporaries
def temp_name(path, tag: str) -> Path:
    """A hidden, unique name beside ``path`` that carries this process's id, ending in ``.tag``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(6)}.{tag}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale(path) -> list[Path]:
    """Remove every ``.<name>.<pid>-<hex>.*`` beside ``path`` (a temporary file or store, a summing
    store, an ``.old`` store) whose process is gone: what a killed writer left."""
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)-[0-9a-f]{{8,12}}\.{_TAGS}$")
    removed = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for name in names:
        m = pattern.match(name)
        if m and not _alive(int(m.group(1))):
            _remove(path.parent / name)
            removed.append(path.parent / name)
    return removed


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def replace_store(temp, dest) -> None:
    """Put a finished store (a folder) or file ``temp`` at ``dest`` (a result of ours, or nothing:
    see :func:`claim`). An old store is first renamed aside and removed only after, so a failure
    between the two renames leaves the old result, not nothing."""
    temp, dest = Path(temp), Path(dest)
    if dest.is_dir() and not dest.is_symlink():
        old = temp_name(dest, "old")
        with _shielded():  # a signal between the two renames would leave no result at dest
            os.replace(dest, old)
            try:
                os.replace(temp, dest)
            except BaseException:
                os.replace(old, dest)
                raise
        discard(old)
    else:
        os.replace(temp, dest)


def discard(*paths) -> None:
    """Remove temporaries (files or stores) for good: Zarr's IO thread is first let finish what an
    interrupted call left running (it would re-create chunk folders after the removal), and a
    second Ctrl-C or SIGTERM waits until the removal is done."""
    with _shielded():
        settle_zarr_io()
        for p in paths:
            if p is not None:
                _remove(Path(p))


def settle_zarr_io(timeout: float = 30.0) -> None:
    """Wait until zarr's event loop has no task left: a KeyboardInterrupt stops the wait of a zarr
    call, not its writes, which go on in zarr's IO thread. Their exceptions are collected here, so
    asyncio does not print them as tracebacks later."""
    import sys

    zsync = sys.modules.get("zarr.core.sync")
    loop = getattr(zsync, "loop", [None])[0] if zsync is not None else None
    if loop is None or loop.is_closed() or not loop.is_running():
        return
    import asyncio

    async def drain():
        me = asyncio.current_task()
        while True:
            others = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
            if not others:
                return
            await asyncio.gather(*others, return_exceptions=True)

    try:
        asyncio.run_coroutine_threadsafe(drain(), loop).result(timeout)
    except Exception:  # noqa: BLE001 - a timeout: remove what can be removed now
        return


@contextmanager
def _shielded():
    """SIGINT/SIGTERM/SIGHUP wait until the block is done (main thread only), then act."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    names = [s for s in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, s)]
    previous = {}
    for name in names:
        sig = getattr(signal, name)
        try:
            previous[sig] = signal.signal(sig, lambda signum, frame: got.append(signum))
        except (ValueError, OSError):
            pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: a handler not set from Python, which cannot be put back
                signal.signal(sig, handler)
        if got:
            handler = previous.get(got[0])
            if callable(handler):
                handler(got[0], None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), got[0])


# --------------------------------------------------------------------------- full disks
@contextmanager
def storage_errors(path):
    """A full disk, a quota, a file size limit or a read-only file system while writing ``path``
    becomes one line (InputError) instead of a traceback."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in STORAGE_ERRNOS:
            raise
        raise InputError(f"{path}: cannot write the result ({os.strerror(exc.errno)}); nothing was written. Free "
                         "space or choose another folder.") from None
