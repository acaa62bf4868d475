"""How much memory a fusion needs, and how much there is: refuse before starting, not after a
minute with a MemoryError traceback.

The estimate is per HR pixel, from peak resident memory measured on this project's 2-core
machine (docs/benchmarks.md, scaling tables): ``fast`` at 1024^2 with 31 bands and rank 20 peaks at
2.3 GB for the whole process, about 1.9 kB per pixel above the interpreter and torch; the
iterative methods hold a few more fields of the same size.
"""

from __future__ import annotations

from .errors import InputError

# bytes per HR pixel: per band of the cube, and per subspace coefficient (rank <= 20 by default)
_PER_BAND = {"bicubic": 12, "gsa": 40, "fast": 40, "unsupervised": 48, "blind": 56, "msfn": 56,
             "msfn-zeroshot": 64}
_PER_COEFFICIENT = {"bicubic": 0, "gsa": 0, "fast": 40, "unsupervised": 64, "blind": 72, "msfn": 48,
                    "msfn-zeroshot": 56}


def estimate_bytes(method: str, hr_pixels: int, bands: int, rank: int = 20) -> int:
    """Peak memory a fusion adds, in bytes, for ``hr_pixels`` HR pixels and ``bands`` bands."""
    per_band = _PER_BAND.get(method, 64)
    per_coefficient = _PER_COEFFICIENT.get(method, 64)
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


def check_fits(method: str, hr_shape: tuple, bands: int, scale: int, rank: int = 20) -> None:
    """Refuse, in one line that says what fits, a fusion that would not fit in memory."""
    Y, X = hr_shape[-2:]
    need = estimate_bytes(method, Y * X, bands, rank)
    free = available_bytes()
    if free is None or need <= 0.9 * free:
        return
    fits = int((0.9 * free / max(need / (Y * X), 1)) ** 0.5) // scale * scale
    raise InputError(f"method {method!r} needs about {need / 2**30:.1f} GB for a {Y}x{X} HR image with {bands} bands; "
                     f"{free / 2**30:.1f} GB are free. Crop the pair to about {fits}x{fits} HR pixels or fewer "
                     "(a multiple of the scale), fuse it in parts, or free memory.")

