"""HR RGB/MSI images (PNG, BMP, JPEG, TIFF, ``.npy``) as (Y, X, k), read and written."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..outputs import claim
from .atomic import atomic_path
from .base import TIFF_SUFFIXES, ImageFile, read_error, to_jsonable
from .geotiff import tiff_geo
from .tiff import LogErrors, check_complete


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an HR RGB/MSI image (PNG/BMP/TIFF/JPEG) as (Y, X, k) in its native dtype."""
    return read_image_file(path).data


def read_image_file(path: str | os.PathLike) -> ImageFile:
    """Read an HR image as :class:`ImageFile`: data (Y, X, k) native dtype plus metadata
    (``format``, ``source``; TIFF: ``geo`` and ``nodata`` when present, see :func:`geo_transform`)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give the HR image file itself (PNG, BMP, TIFF, JPEG or .npy).")
    if not path.is_file():
        raise InputError(f"{path}: file not found. Check the path and try again.")
    meta: dict[str, Any] = {"format": path.suffix.lower().lstrip("."), "source": str(path)}
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            errors = LogErrors()  # tifffile logs, rather than raises, on a truncated file
            logger = logging.getLogger("tifffile")
            logger.addHandler(errors)
            try:
                with tifffile.TiffFile(path) as tif:
                    img = tif.asarray()
                    check_complete(tif, path)
                    meta.update(format="tiff", **tiff_geo(tif.pages[0]))
            finally:
                logger.removeHandler(errors)
            if errors.messages:
                raise ValueError("; ".join(errors.messages[:3]))
        elif path.suffix.lower() == ".npy":  # as open_image_lazy reads it: (Y, X) or (Y, X, k)
            img = np.load(path, allow_pickle=False)
        else:
            import imageio.v3 as iio
            img = np.asarray(iio.imread(path))
    except Exception as exc:
        raise read_error(path, exc) from exc
    return ImageFile(as_yxk(img, path), meta)


def as_yxk(img: np.ndarray, path: Path) -> np.ndarray:
    img = np.squeeze(img) if img.ndim > 3 else img
    if img.ndim == 2:
        return img[..., np.newaxis]
    if img.ndim != 3:
        raise InputError(f"{path}: image has shape {img.shape}; expected (Y, X) or (Y, X, k). "
                         "Save the image as a single 2-D or multi-channel picture.")
    if img.shape[0] <= 16 and img.shape[0] < min(img.shape[1:]) and img.shape[2] > 16:
        img = np.moveaxis(img, 0, -1)
    if img.shape[2] == 4 and path.suffix.lower() != ".tif" and path.suffix.lower() != ".tiff":
        img = img[..., :3]
    return img


def write_image(path: str | os.PathLike, image: np.ndarray, settings: dict | None = None) -> Path:
    """Atomically write an HR image ``(Y, X, k)`` (or ``(Y, X)``) as a TIFF that image viewers and
    :func:`read_image` see as one multi-channel picture (RGB when k is 3), float32 or the input's
    integer type; ``settings`` go into the description as JSON."""
    import tifffile

    path = Path(path)
    img = np.asarray(image)
    if img.ndim not in (2, 3):
        raise InputError(f"{path}: an image is (Y, X) or (Y, X, k), got shape {img.shape}.")
    if np.issubdtype(img.dtype, np.floating):
        img = img.astype(np.float32)
        if not np.all(np.isfinite(img)):
            raise InputError(f"{path}: the image contains NaN or Inf; replace them before saving.")
    photometric = "rgb" if img.ndim == 3 and img.shape[-1] == 3 else "minisblack"
    extra = {"planarconfig": "contig"} if img.ndim == 3 else {}
    description = json.dumps({"settings": to_jsonable(settings)}) if settings else None
    dest = claim(path)
    with atomic_path(dest, suffix=".tmp.tif") as tmp:
        tifffile.imwrite(tmp, img, photometric=photometric, description=description, metadata=None, **extra)
    return path
