"""The interface every fusion method implements, and the registry that lists them.

A method is a generator function ``run(inputs, **options)`` that yields :class:`Progress`
records and finally *returns* the fused cube ``(C, Y, X)`` float32 (the generator's return
value), or ``(cube, extras)`` where ``extras`` is a dict of by-products (e.g. the PSF and SRF a
blind method estimated) that ends up in :attr:`FusionResult.extras`. The caller may stop at any
yield by simply not resuming it (or calling ``.close()``):
nothing half-made is ever returned. :func:`napari_hsisr.core.api.fuse_iter` wraps a method with
input validation, seeding and timing, and turns its return value into a :class:`FusionResult`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from typing import Any

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


def monotone(gen: Generator) -> Generator:
    """``gen``'s reports with a step that never goes back: a stage that counts from 0 again (blind's
    estimation 1..8, then its solver 1..226; a tiled run's scene context, then its tiles) goes on
    after the previous one (9..234). Returns what ``gen`` returns; closing it closes ``gen``."""
    base = last = 0
    try:
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                return stop.value
            if base + p.step < last:  # a new stage: it continues from the last step shown
                base = last
            last = base + p.step
            yield replace(p, step=last, total=base + p.total if p.total else 0)
    finally:
        gen.close()


def run_to_end(gen: Generator, progress: Callable | None = None):
    """Drive a generator to its return value, calling ``progress`` with each item it yields (the
    one loop every front end and method uses); an exception or interrupt in between closes it."""
    try:
        while True:
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            if progress is not None:
                progress(item)
    finally:
        gen.close()


def relayed(gen: Generator, transform: Callable) -> Generator:
    """``gen``'s items passed through ``transform`` (e.g. a tile's progress as the scene's); returns
    what ``gen`` returns; closing this closes ``gen``."""
    try:
        while True:
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            yield transform(item)
    finally:
        gen.close()


PREVIEW_EVERY_S = 2.0  # methods send an intermediate estimate at most this often


def small_preview(cube: np.ndarray, max_side: int = 128) -> np.ndarray:
    """A ``(C, y, x)`` float32 preview of a cube: block means, at most ``max_side`` pixels a side
    (a few hundred kB for a viewer's live layer, whatever the scene's size)."""
    C, Y, X = cube.shape
    f = max(1, -(-max(Y, X) // max_side))
    y, x = Y // f, X // f
    return cube[:, : y * f, : x * f].reshape(C, y, f, x, f).mean(axis=(2, 4)).astype(np.float32)


@dataclass(frozen=True)
class SceneContext:
    """What a tiled run computes once for the whole scene and every tile shares (:mod:`..tiling`),
    read-only; a tile gets a copy with its own part (:meth:`for_tile`). A method's
    ``MethodInfo.scene_setup`` fills the scene-level fields it needs."""

    hr_clip: float | None = None  # a float HR image's clipping level (the scene's, not a tile's maximum)
    subspace: dict | None = None  # fast.scene_subspace of the whole LR cube: weights, rank, eps, nsr, E
    consistency_E: np.ndarray | None = None  # the networks' consistency step's subspace
    prior_guided_weight: float | None = None  # the guided/CS prior mixture chosen for the scene
    guide_variance: dict | None = None  # {"radius", "value"}: the guided prior's regularisation scale
    refit_variance: dict | None = None  # {"radius", "value"}: the HR-grid refits'
    prior_check: dict | None = None  # the learned prior's self-check on the scene's central crop (msfn.self_check)
    prior_level: float | None = None  # the learned prior's input level for every tile (the LR cube's mean)
    # one tile's part
    keep: tuple | None = None  # the part of the window the tile keeps (judged by the fit on checked tiles)
    skip_fit: bool = False  # no fit report on this tile (a tiled run checks a sample of its tiles)
    solve_region: tuple | None = None  # where a consistency step must hold (the kept part and fast's halo)

    def for_tile(self, keep: tuple, skip_fit: bool, solve_region: tuple) -> SceneContext:
        return replace(self, keep=keep, skip_fit=skip_fit, solve_region=solve_region)


@dataclass(frozen=True)
class SceneRequest:
    """What a method's ``scene_setup`` / ``scene_estimate`` hooks are given by :mod:`..tiling`:
    the scene (lazy arrays), the degradation, the options, and how to compute what is streamed."""

    hr: Any
    lr: Any
    degradation: Degradation
    options: dict
    crop_inputs: Callable[..., FusionInputs]  # (degradation, method, scene=None): the central crop, prepared
    full_lr: Callable[[], tuple]  # () -> (the whole LR cube float64 with non-finite values 0, valid mask or None)
    guide_variance: Callable[..., Generator] | None  # (radius, refit_radius) -> generator of (lr value, hr value)
    scale: int = 1


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
    scene: SceneContext | None = None  # what a tiled run computed once for the whole scene, and this tile's part
    encoding_given: bool = False  # the HR image's encoding was given, not decided from its type (blind keeps it)

    def crop(self, region: tuple[slice, slice]) -> FusionInputs:
        """These inputs on an HR ``region`` (row and column slices on LR pixel edges)."""
        from dataclasses import replace

        s = self.degradation.scale
        lr_region = tuple(slice(r.start // s, r.stop // s) for r in region)
        hr_idx, lr_idx = (slice(None),) + tuple(region), (slice(None),) + lr_region

        def part(a, index):
            return None if a is None else a[index]

        return replace(self, hr=self.hr[hr_idx], lr=self.lr[lr_idx], hr_valid=part(self.hr_valid, tuple(region)),
                       lr_valid=part(self.lr_valid, lr_region), hr_display=part(self.hr_display, hr_idx))


@dataclass
class FusionResult:
    """A fused cube and the complete record of what made it."""

    cube: np.ndarray  # (C, Y, X) float32
    settings: dict
    extras: dict = field(default_factory=dict)  # e.g. estimated PSF/SRF for blind methods


@dataclass(frozen=True)
class Option:
    """A user-facing option of a method (drives CLI flags and widgets). Its type is the default's.

    :meth:`parse` is the one place where a value (a Python value or text from the CLI or a form)
    becomes that type and is checked against ``choices`` and ``minimum``/``maximum`` (``auto``, when
    set, is the one value outside them that is accepted: "chosen from the data")."""

    name: str
    default: Any
    help: str
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    auto: float | None = None  # a value meaning "chosen from the data" (e.g. 0), accepted outside the bounds

    def range_text(self) -> str:
        """The accepted range as ``hsisr methods`` shows it, e.g. ``" [1e-06..1000, or 0: automatic]"``."""
        if self.minimum is None and self.maximum is None:
            return ""
        lo = "" if self.minimum is None else f"{self.minimum:g}"
        hi = "" if self.maximum is None else f"{self.maximum:g}"
        auto = "" if self.auto is None else f", or {self.auto:g}: automatic"
        return f" [{lo}..{hi}{auto}]"

    def parse(self, value, method: str = ""):
        """``value`` as this option's type, checked; raises ``InputError`` saying what to give."""
        import math

        from ..errors import InputError

        where = f"option {self.name!r}" + (f" of method {method!r}" if method else "")
        kind = type(self.default)
        if isinstance(value, str):
            value = value.strip()
        if kind is bool:
            text = str(value).lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise InputError(f"{where} is true or false, got {value!r}.")
        if kind is int:
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise InputError(f"{where} is a whole number, got {value!r}.") from None
            if not (math.isfinite(number) and number.is_integer()):
                raise InputError(f"{where} is a whole number, got {value!r}.")
            value = int(number)
        elif kind is float:
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise InputError(f"{where} is a number, got {value!r}.") from None
            if not math.isfinite(value):
                raise InputError(f"{where} must be finite, got {value!r}.")
        else:
            value = str(value)
            if self.choices and value not in self.choices:
                raise InputError(f"{where} is one of {', '.join(map(repr, self.choices))}, got {value!r}.")
            return value
        if self.auto is not None and value == self.auto:
            return value
        auto = "" if self.auto is None else f" (or {self.auto:g}: chosen from the data)"
        if self.minimum is not None and value < self.minimum:
            raise InputError(f"{where} must be >= {self.minimum:g}{auto}, got {value:g}.")
        if self.maximum is not None and value > self.maximum:
            raise InputError(f"{where} must be <= {self.maximum:g}{auto}, got {value:g}.")
        return value


@dataclass(frozen=True)
class MethodInfo:
    name: str
    run: Callable[..., Generator[Progress, None, np.ndarray]]
    summary: str
    options: tuple[Option, ...] = ()
    needs_srf: bool = True  # uses the spectral response of the degradation
    needs_psf: bool = True  # uses the PSF of the degradation
    uses_torch: bool = False
    # what the method needs, asked by tiling, memory checks, the fit report and the result contract
    receptive_field: int = 0  # HR pixels of context beyond the PSF and the guided prior's window (a CNN's)
    bytes_per_band: int = 64  # peak memory per HR pixel and band (:mod:`..memory`)
    bytes_per_coefficient: int = 64  # ... and per subspace coefficient
    fit_uses_response: bool = False  # the fit judges the HR side too though needs_srf is False (blind's estimate)
    fills_holes: bool = True  # large unusable HR regions are filled from the LR cube after the method
    safe_fallbacks: tuple = ("gsa", "fast")  # the result contract's candidates (none: nothing safer)
    whole_frame_only: str = ""  # why the method cannot run in tiles ('' : it can)
    # hooks for a scene fused in tiles: scene_estimate(request) -> generator returning (degradation,
    # tile method, tile options, notes, extras): what the tiles run (blind: its solver with its estimate);
    # scene_setup(request, scene) -> generator returning the SceneContext the tiles share
    scene_estimate: Callable | None = None
    scene_setup: Callable | None = None

    def defaults(self) -> dict:
        return {o.name: o.default for o in self.options}

    def parse_options(self, options: dict) -> dict:
        """All options with the given ones parsed and checked (unknown names refused)."""
        from ..errors import InputError

        known = {o.name: o for o in self.options}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise InputError(f"method {self.name!r} has no option(s) {unknown}; "
                             f"its options are {sorted(known) or 'none'}.")
        return {**self.defaults(), **{k: known[k].parse(v, self.name) for k, v in options.items()}}


_REGISTRY: dict[str, MethodInfo] = {}


def register(info: MethodInfo) -> MethodInfo:
    _REGISTRY[info.name] = info
    return info


def get_method(name: str) -> MethodInfo:
    from . import load_builtin

    load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        from ..errors import InputError  # a ValueError too, for callers that catch that

        raise InputError(f"Unknown method {name!r}; available: {', '.join(sorted(_REGISTRY))} "
                         "(`hsisr methods` lists them with their options).") from None


def list_methods() -> list[MethodInfo]:
    from . import load_builtin

    load_builtin()
    return list(_REGISTRY.values())
