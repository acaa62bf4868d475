"""Fusion methods. Each module registers a :class:`MethodInfo` on import."""

from .base import FusionInputs, FusionResult, MethodInfo, Option, Progress, get_method, list_methods, register

_BUILTIN = ("bicubic", "gsa", "fast", "unsupervised", "blind", "msfn")


def load_builtin() -> None:
    import importlib

    for name in _BUILTIN:
        importlib.import_module(f"{__name__}.{name}")


__all__ = ["FusionInputs", "FusionResult", "MethodInfo", "Option", "Progress", "get_method", "list_methods",
           "register"]
