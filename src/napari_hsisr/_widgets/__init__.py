"""napari dock widgets: fusion, spectrum probe, quality.

Layout (careamics-napari style): ``_layers`` (pure helpers on napari layers), ``_fusion_worker``
(request -> degradation, the thread worker and a Qt-free controller with psygnal signals),
``fusion_widget`` / ``spectrum_widget`` / ``quality_widget`` (Qt layout only) and
``_wavelength_overlay`` (band/wavelength text on the canvas) and ``_truecolour`` (cube -> sRGB,
pure numpy). No science here: the core does it.
"""

from __future__ import annotations

__all__ = ["FusionWidget", "QualityWidget", "SpectrumWidget"]


def __getattr__(name):  # keep `import napari_hsisr._widgets` light
    if name == "FusionWidget":
        from .fusion_widget import FusionWidget

        return FusionWidget
    if name == "SpectrumWidget":
        from .spectrum_widget import SpectrumWidget

        return SpectrumWidget
    if name == "QualityWidget":
        from .quality_widget import QualityWidget

        return QualityWidget
    raise AttributeError(name)
