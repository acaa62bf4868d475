"""The interface every fusion method implements, and the registry that lists them.

A method is a generator function ``run(inputs, **options)`` that yields :class:`Progress`
records and finally *returns* the fused cube ``(C, Y, X)`` float32 (the generator's return
value), or ``(cube, extras)`` where ``extras`` is a dict of by-products (e.g. the PSF and SRF a
blind method estimated) that ends up in :attr:`FusionResult.extras`. The caller may stop at any yield by simply not resuming it (or calling ``.close()``):
nothing half-made is ever returned. :func:`napari_hsisr.core.api.fuse_iter` wraps a method with
input validation, seeding and timing, and turns its return value into a :class:`FusionResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generator

import numpy as np

from ..degradation import Degradation


@dataclass(frozen=True)
class Progress:
    """One progress report: ``step`` of ``total``, an optional loss, message and small preview."""

    step: int
    total: int
    loss: float | None = None
    message: str = ""
    preview: np.ndarray | None = None  # small (C, y, x) float32 cube or None


@dataclass
class FusionInputs:
    """Validated inputs, channels first, float32 in [0, 1] nominally.

    ``hr`` is ``(k, Y, X)`` in linear light with the degradation's gain and offset removed (the API
    takes napari's ``(Y, X, k)``, decodes and corrects a copy: :mod:`..observations`), so that
    ``hr = R^T z`` as in a simulation; ``lr`` is ``(C, y, x)``, nodata pixels filled. The masks
    say which pixels may count in data terms (None: all). ``device`` is a torch device string
    resolved from "auto".
    """

    hr: np.ndarray
    lr: np.ndarray
    degradation: Degradation
    seed: int = 0
    device: str = "cpu"
    value_scaling: dict = field(default_factory=dict)  # how integer inputs were scaled to [0, 1]
    hr_valid: np.ndarray | None = None  # (Y, X) bool: False where the HR image is saturated/NaN
    lr_valid: np.ndarray | None = None  # (y, x) bool: False where the LR cube is nodata
    hr_display: np.ndarray | None = None  # (k, Y, X) the HR image as given (display-encoded), for blind


@dataclass
class FusionResult:
    """A fused cube and the complete record of what made it."""

    cube: np.ndarray  # (C, Y, X) float32
    settings: dict
    extras: dict = field(default_factory=dict)  # e.g. estimated PSF/SRF for blind methods


@dataclass(frozen=True)
class Option:
    """A user-facing option of a method (drives CLI flags and, later, widgets)."""

    name: str
    default: Any
    help: str
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class MethodInfo:
    name: str
    run: Callable[..., Generator[Progress, None, np.ndarray]]
    summary: str
    options: tuple[Option, ...] = ()
    needs_srf: bool = True  # uses the spectral response of the degradation
    needs_psf: bool = True  # uses the PSF of the degradation
    uses_torch: bool = False

    def defaults(self) -> dict:
        return {o.name: o.default for o in self.options}


_REGISTRY: dict[str, MethodInfo] = {}


def register(info: MethodInfo) -> MethodInfo:
    _REGISTRY[info.name] = info
    return info


def get_method(name: str) -> MethodInfo:
    from . import _load_builtin

    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown method {name!r}; available: {', '.join(sorted(_REGISTRY))}.") from None


def list_methods() -> list[MethodInfo]:
    from . import _load_builtin

    _load_builtin()
    return list(_REGISTRY.values())
