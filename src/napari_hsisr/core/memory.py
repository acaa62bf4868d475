"""How much memory a fusion needs, and how much there is: refuse before starting, not after a
minute with a MemoryError traceback.

The estimate is per HR pixel, from peak resident memory measured on this project's 2-core
machine (docs/benchmarks.md, scaling tables): ``fast`` at 1024^2 with 31 bands and rank 20 peaks at
2.3 GB for the whole process, about 1.9 kB per pixel above the interpreter and torch; the
iterative methods hold a few more fields of the same size.
"""

from __future__ import annotations

from .errors import InputError


def estimate_bytes(method: str, hr_pixels: int, bands: int, rank: int = 20) -> int:
    """Peak memory a fusion adds, in bytes, for ``hr_pixels`` HR pixels and ``bands`` bands: what
    the method declares per HR pixel, per band of the cube and per subspace coefficient (rank <= 20
    by default; ``MethodInfo.bytes_per_band``, ``bytes_per_coefficient``)."""
    from .methods import get_method

    try:
        info = get_method(method)
        per_band, per_coefficient = info.bytes_per_band, info.bytes_per_coefficient
    except InputError:  # an unknown method is refused where it runs; here: a generous guess
        per_band = per_coefficient = 64
    return int(hr_pixels * (per_band * bands + per_coefficient * min(rank, bands)))


def available_bytes() -> int | None:
    """Memory this process may still take: the smallest of the system's available memory, what its
    cgroup limit leaves and what its address-space limit (``ulimit -v``) leaves (None when none
    can be read)."""
    import resource

    found = []
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft not in (resource.RLIM_INFINITY, -1):
        try:
            with open("/proc/self/statm") as fh:
                used = int(fh.read().split()[0]) * resource.getpagesize()
            found.append(soft - used)
        except OSError:
            found.append(soft)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = open(limit_file).read().strip()
            usage = int(open(usage_file).read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            found.append(int(limit) - usage)
        break
    return min(found) if found else None


def fits(method: str, hr_shape: tuple, bands: int, rank: int = 20) -> bool:
    """Whether a whole-frame fusion of this size fits in the memory there is (True when unknown)."""
    Y, X = hr_shape[-2:]
    free = available_bytes()
    return free is None or estimate_bytes(method, Y * X, bands, rank) <= 0.9 * free


# What one tile's window may take, whatever the machine: a scene fused in tiles runs in bounded
# memory (hsisr fuse of 4096^2 x 31 bands, fast, to .tif: benchmarks/big_scene.py, docs/benchmarks.md)
TILE_WINDOW_BUDGET = 1.5 * 2**30
_HALO_PIXELS = 9  # per unit of scale: room for the halo and the blending band around a tile


def suggest_tile(method: str, bands: int, scale: int, rank: int = 20, cap: int = 1024) -> int:
    """A tile side (HR pixels, a multiple of the scale) whose window, halo included, takes at most
    half the free memory and :data:`TILE_WINDOW_BUDGET` (the result itself is written to disk in a
    tiled run); at most ``cap``."""
    free = available_bytes()
    budget = min(0.5 * free, TILE_WINDOW_BUDGET) if free is not None else TILE_WINDOW_BUDGET
    per_pixel = max(estimate_bytes(method, 1, bands, rank), 1)
    side = int((budget / per_pixel) ** 0.5) - 2 * _HALO_PIXELS * scale
    return max(4 * scale, min(cap, side) // scale * scale)


def tiles_fit(method: str, bands: int, scale: int, rank: int = 20) -> bool:
    """Whether the smallest tile's window fits in the memory there is (True when unknown)."""
    free = available_bytes()
    side = 4 * scale + 2 * _HALO_PIXELS * scale
    return free is None or estimate_bytes(method, side * side, bands, rank) <= 0.9 * free


def check_fits(method: str, hr_shape: tuple, bands: int, scale: int, rank: int = 20) -> None:
    """Refuse, in one line that says what to do, a whole-frame fusion that would not fit in memory."""
    Y, X = hr_shape[-2:]
    if fits(method, hr_shape, bands, rank):
        return
    need, free = estimate_bytes(method, Y * X, bands, rank), available_bytes()
    tile = suggest_tile(method, bands, scale, rank)
    raise InputError(f"method {method!r} needs about {need / 2**30:.1f} GB for a {Y}x{X} HR image with {bands} bands; "
                     f"{free / 2**30:.1f} GB are free. Fuse it in tiles: tile={tile} (hsisr fuse --tile {tile}, "
                     "or --tile auto) with out='result.zarr' for a result larger than memory, or crop the pair.")

