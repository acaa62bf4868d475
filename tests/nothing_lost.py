"""A test helper: nothing in a folder changes but what a command is meant to write.

    with nothing_lost(tmp_path, may_write=["out.tif"]):
        main(["fuse", ...])

hashes every file under the folder (sub-folders, stores and hidden files included; a symbolic
link by where it points) before and after the block and fails when any file changed or vanished,
or a file appeared, outside ``may_write`` (names relative to the folder; a name covers everything
under it, so ``"out.zarr"`` allows the whole store). Temporaries left behind are new files, so
they fail it too.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path


def snapshot(folder) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder``; links as ``link:<target>``."""
    folder = Path(folder)
    out: dict[str, str] = {}
    for root, dirs, files in os.walk(folder):
        for name in list(dirs):
            p = Path(root) / name
            if p.is_symlink():  # not followed: recorded as a link
                out[p.relative_to(folder).as_posix()] = f"link:{os.readlink(p)}"
                dirs.remove(name)
        for name in files:
            p = Path(root) / name
            rel = p.relative_to(folder).as_posix()
            if p.is_symlink():
                out[rel] = f"link:{os.readlink(p)}"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _allowed(rel: str, may_write) -> bool:
    return any(rel == m or rel.startswith(m.rstrip("/") + "/") for m in may_write)


@contextmanager
def nothing_lost(folder, may_write=()):
    """Fail when a file under ``folder`` outside ``may_write`` changed, vanished or appeared."""
    before = snapshot(folder)
    yield before
    after = snapshot(folder)
    may_write = [str(m) for m in may_write]
    changed = sorted(r for r, h in before.items() if after.get(r) != h and not _allowed(r, may_write))
    new = sorted(r for r in after.keys() - before.keys() if not _allowed(r, may_write))
    assert not changed, f"changed or removed: {changed}"
    assert not new, f"appeared (a temporary?): {new}"
