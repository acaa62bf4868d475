"""Reading and writing hyperspectral cubes and HR images (no Qt, no napari), one module per format.

Conventions: cubes are ``(C, Y, X)`` numpy arrays (bands first); wavelengths are a float array of
length C in nm (or None). HR RGB/MSI images are ``(Y, X, k)``.

- :mod:`.cube`: :func:`read_cube`, the reader for any supported cube file (picks one below);
- :mod:`.tiff` (ImageJ, OME, GeoTIFF, tiled BigTIFF; our JSON record), :mod:`.geotiff`
  (georeferencing tags, :func:`geo_transform`, :func:`output_geo`), :mod:`.envi`, :mod:`.mat`,
  :mod:`.cave` (folders of band PNGs), :mod:`.images` (HR images), :mod:`.ome_zarr` (results);
- :mod:`.bands`: band tables and the options applied to a cube read (wavelengths, bad bands,
  nodata, value scale);
- :mod:`.lazy`: cubes and images read on demand; :mod:`.atomic`: result files checked and written
  atomically; :mod:`.base`: the dataclasses and helpers they share.

Every public name is importable from here (``from napari_hsisr.core.io import read_cube``).
"""

from ..outputs import HSISR_TAG
from .atomic import atomic_path, check_output
from .bands import apply_cube_options, documented_scale, find_band_table, parse_band_numbers, read_band_table
from .base import CUBE_SUFFIXES, TIFF_SUFFIXES, BandTable, CubeFile, ImageFile, to_jsonable
from .cave import find_cave_bands
from .cube import read_cube
from .geotiff import GDAL_METADATA_TAG, GDAL_NODATA_TAG, geo_transform, image_geo, output_geo
from .images import read_image, read_image_file, write_image
from .lazy import open_cube_lazy, open_image_lazy
from .ome_zarr import build_pyramid, create_ome_zarr, finish_ome_zarr, open_zarr_cube, open_zarr_levels, write_zarr
from .tiff import read_cube_metadata, tiff_wavelengths, write_tiff, write_tiff_tiles

__all__ = [
    "CUBE_SUFFIXES", "GDAL_METADATA_TAG", "GDAL_NODATA_TAG", "HSISR_TAG", "TIFF_SUFFIXES", "BandTable", "CubeFile",
    "ImageFile", "apply_cube_options", "atomic_path", "build_pyramid", "check_output", "create_ome_zarr",
    "documented_scale", "find_band_table", "find_cave_bands", "finish_ome_zarr", "geo_transform", "image_geo",
    "open_cube_lazy", "open_image_lazy", "open_zarr_cube", "open_zarr_levels", "output_geo", "parse_band_numbers",
    "read_band_table", "read_cube", "read_cube_metadata", "read_image", "read_image_file", "tiff_wavelengths",
    "to_jsonable", "write_image", "write_tiff", "write_tiff_tiles", "write_zarr",
]
