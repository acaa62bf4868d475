"""napari-hsisr: hyperspectral super-resolution by fusing an HR RGB/MSI image with an LR-HS cube.

Importing this package imports neither torch nor Qt; the public API is loaded on first use::

    import napari_hsisr as hsisr
    deg = hsisr.Degradation(scale=8, psf="gaussian", psf_sigma=2, srf="Nikon D700", wavelengths=wl)
    rgb, lr = hsisr.simulate(cube, deg, seed=0)
    result = hsisr.fuse(rgb, lr, deg, method="fast")
    hsisr.evaluate(result.cube, cube, scale=8)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "Degradation": "core.degradation", "simulate": "core.simulate", "fuse": "core.api",
    "fuse_iter": "core.api", "evaluate": "core.api", "InputError": "core.errors",
    "Progress": "core.methods", "FusionResult": "core.methods", "list_methods": "core.methods",
    "get_method": "core.methods", "gaussian_psf": "core.psf", "box_psf": "core.psf", "load_psf": "core.psf",
    "read_cube": "core.io", "read_image": "core.io", "write_tiff": "core.io", "sample_pair": "core.sample",
    "list_presets": "core.srf", "consistency": "core.metrics", "fuse_tiled": "core.tiling",
    "fuse_many": "core.batch", "read_manifest": "core.batch", "open_cube_lazy": "core.io",
    "open_image_lazy": "core.io", "write_zarr": "core.io",
}

__all__ = sorted(_API)


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'napari_hsisr' has no attribute {name!r}")


def __dir__():
    return __all__
