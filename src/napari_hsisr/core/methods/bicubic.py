"""Bicubic interpolation of the LR-HS cube to the HR grid: the floor every method must beat."""

from __future__ import annotations

import numpy as np

from .base import FusionInputs, MethodInfo, Progress, register


def upsample(cube: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic (Keys, a = -0.75) interpolation of ``(C, y, x)`` by ``scale``, pixel-area aligned.

    LR pixel ``i`` sits at the centre of the HR block it covers (HR coordinate ``i*s + (s-1)/2``),
    matching the block-centred sampling convention; edges replicate the border pixels.
    """
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(cube, dtype=np.float32))[None]
    out = F.interpolate(t, scale_factor=scale, mode="bicubic", align_corners=False)
    return out[0].numpy()


def run(inputs: FusionInputs):
    yield Progress(0, 1, message="interpolating")
    cube = upsample(inputs.lr, inputs.degradation.scale)
    yield Progress(1, 1, message="done")
    return cube


register(MethodInfo("bicubic", run, "Bicubic interpolation of the LR-HS cube (ignores the HR image).",
                    needs_srf=False, needs_psf=False, bytes_per_band=12, bytes_per_coefficient=0, fills_holes=False,
                    safe_fallbacks=()))
