"""Where a tiled fusion's blended tiles go: memory, an OME-Zarr store or a tiled BigTIFF.

On disk, tiles are summed into the chunks of a Zarr array that they touch and every chunk is
written whole (a partial chunk update makes Zarr hold, decode and re-encode whole chunks). A chunk
is written as soon as every tile that touches it has come; one that the next tile does not touch
but a tile still to come does (the band under a row of tiles) is written with its partial sum and
read back when such a tile comes. Tiles may come in any order (a cluster's, as they finish).
Memory therefore holds the chunks around one or two tiles, not a row of tiles
at the scene's width. Results go to a temporary name that is renamed to ``out`` at the end: a
stopped or failed run leaves nothing there, and no temporary (:mod:`.outputs`: the same policy as
every writer: ``out`` replaces no input and nothing that is not a result of ours).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError
from .outputs import claim, discard, replace_store, storage_errors, temp_name

CHUNK = 256  # HR pixels a side of a chunk (Zarr) or a tile (TIFF)


def check_out(out, inputs=()) -> Path | None:
    """``out`` checked before any work (suffix, folder, :func:`.outputs.claim`); where to write."""
    if out is None:
        return None
    path = Path(out)
    if path.suffix.lower() not in (".zarr", ".tif", ".tiff"):
        raise InputError(f"Tiled results are written to a Zarr store or a TIFF: give out=<name>.zarr or "
                         f"<name>.tif, got {path}.")
    dest = claim(path, inputs, fused=True, flag="out")
    if not dest.parent.is_dir():
        raise InputError(f"Folder {dest.parent} does not exist; create it or choose another out path.")
    return dest


def make_output(shape: tuple[int, int, int], out, keeps: list[tuple[slice, slice]], inputs=()):
    """The sink for a (C, Y, X) result whose tiles cover ``keeps`` (in the order they come)."""
    path = check_out(out, inputs)
    if path is None:
        return MemoryOutput(shape)
    with storage_errors(out):
        if path.suffix.lower() == ".zarr":
            return ZarrOutput(shape, path, keeps)
        return TiffOutput(shape, path, keeps)


class MemoryOutput:
    def __init__(self, shape):
        # written now, in one pass (np.zeros would leave its pages untouched): 0.1 s for 31 x 2048^2,
        # against 1.1 s of this process's CPU when the tiles' adds touched them first (two workers running)
        self.array = np.full(shape, 0.0, np.float32)

    def add(self, index: int, region: tuple[slice, slice], values: np.ndarray) -> None:
        self.array[(slice(None),) + region] += values

    def commit(self, attrs: dict):
        return self.array

    def discard(self) -> None:
        pass


class ChunkSums:
    """Tiles summed into whole chunks of a Zarr ``array`` (see the module docstring)."""

    def __init__(self, array, keeps: list[tuple[slice, slice]]):
        self.array = array
        self.shape = array.shape
        self.grid = tuple(array.chunks[1:])
        self.waiting: dict[tuple[int, int], set[int]] = {}  # chunk -> tiles touching it that have not come
        for i, (rows, cols) in enumerate(keeps):
            for key in self._keys(rows, cols):
                self.waiting.setdefault(key, set()).add(i)
        self.open: dict[tuple[int, int], np.ndarray] = {}
        self.spilled: set[tuple[int, int]] = set()

    def _keys(self, rows: slice, cols: slice):
        ch, cw = self.grid
        return [(a, b) for a in range(rows.start // ch, (rows.stop - 1) // ch + 1)
                for b in range(cols.start // cw, (cols.stop - 1) // cw + 1)]

    def _box(self, key) -> tuple[slice, slice]:
        (ch, cw), (_, Y, X) = self.grid, self.shape
        return (slice(key[0] * ch, min(Y, (key[0] + 1) * ch)), slice(key[1] * cw, min(X, (key[1] + 1) * cw)))

    def add(self, index: int, region: tuple[slice, slice], values: np.ndarray) -> None:
        rows, cols = region
        for key in self._keys(rows, cols):
            br, bc = self._box(key)
            acc = self.open.get(key)
            if acc is None:
                acc = (np.array(self.array[:, br, bc], np.float32) if key in self.spilled
                       else np.zeros((self.shape[0], br.stop - br.start, bc.stop - bc.start), np.float32))
                self.open[key] = acc
            r0, r1 = max(rows.start, br.start), min(rows.stop, br.stop)
            c0, c1 = max(cols.start, bc.start), min(cols.stop, bc.stop)
            acc[:, r0 - br.start:r1 - br.start, c0 - bc.start:c1 - bc.start] += \
                values[:, r0 - rows.start:r1 - rows.start, c0 - cols.start:c1 - cols.start]
            self.waiting[key].discard(index)
        for key in list(self.open):  # complete chunks, and those the next tile leaves alone, go to disk
            waiting = self.waiting[key]
            if not waiting or min(waiting) > index + 1:
                self.array[(slice(None),) + self._box(key)] = self.open.pop(key)
                if waiting:
                    self.spilled.add(key)

    def finish(self) -> None:
        if self.open:  # every tile has come, so nothing can be open (a bug, not the user's error)
            raise RuntimeError(f"{len(self.open)} chunks were never completed")


class ZarrOutput:
    """An OME-Zarr (NGFF 0.5) multiscale image: level 0 summed from the tiles, then the 2x2-mean
    levels built from it chunk by chunk (:func:`.io.build_pyramid`)."""

    def __init__(self, shape, path: Path, keeps):
        from .io import create_ome_zarr

        self.path = path
        self.temp = temp_name(path, "tmp.zarr")
        try:
            self.group, level0 = create_ome_zarr(self.temp, shape, CHUNK)
        except BaseException:
            discard(self.temp)
            raise
        self.sums = ChunkSums(level0, keeps)

    def add(self, index, region, values) -> None:
        with storage_errors(self.path):
            self.sums.add(index, region, values)

    def commit(self, attrs: dict):
        import zarr

        from .io import finish_ome_zarr

        self.sums.finish()
        with storage_errors(self.path):
            finish_ome_zarr(self.group, attrs)
        claim(self.path, fused=True)  # still ours to replace (another program may have written there meanwhile)
        replace_store(self.temp, self.path)
        self.temp = None
        return zarr.open_array(str(self.path / "0"), mode="r")

    def discard(self) -> None:
        if self.temp is not None:
            discard(self.temp)
            self.temp = None


class TiffOutput:
    """A tiled OME BigTIFF. TIFF stores band after band, tiles come place after place: they are
    summed into a temporary uncompressed Zarr array chunked band by band, which is then streamed
    into the TIFF one tile at a time (:func:`.io.write_tiff_tiles`)."""

    def __init__(self, shape, path: Path, keeps):
        import zarr

        self.path = path
        self.temp = temp_name(path, "sums.zarr")
        try:
            array = zarr.create_array(str(self.temp), shape=shape, dtype="float32", chunks=(1, CHUNK, CHUNK),
                                      fill_value=0.0, compressors=None, overwrite=True)
        except BaseException:
            discard(self.temp)
            raise
        self.sums = ChunkSums(array, keeps)

    def add(self, index, region, values) -> None:
        with storage_errors(self.path):
            self.sums.add(index, region, values)

    def commit(self, attrs: dict):
        from .io import open_cube_lazy, write_tiff_tiles

        self.sums.finish()
        settings = attrs.get("settings") or {}  # output_geo: the result grid's GeoTIFF tags, when the caller knows
        write_tiff_tiles(self.path, self.sums.array, CHUNK, attrs.get("wavelengths"), settings,
                         geo=settings.get("output_geo"))
        self.discard()
        return open_cube_lazy(self.path).data

    def discard(self) -> None:
        if self.temp is not None:
            discard(self.temp)
            self.temp = None
