"""npe2 sample data: the synthetic sample pair and its reference."""

from __future__ import annotations

from .core.sample import sample_pair


def make_sample_pair():
    pair = sample_pair()
    s, off = pair.degradation.scale, pair.degradation.lr_offset
    meta = {"wavelengths": pair.wavelengths.tolist(), "wavelength_units": "nm"}
    return [
        (pair.hr, {"name": "sample_rgb", "rgb": True}, "image"),
        (pair.lr, {"name": "sample_lr_hs", "scale": (1, s, s), "translate": (0, off, off),
                   "metadata": {**meta, "degradation": pair.degradation.settings()}}, "image"),
        (pair.reference, {"name": "sample_reference", "metadata": meta, "visible": False}, "image"),
    ]
