"""The Fusion dock's evented state: what a run is doing, and what the last blind run estimated.

The views observe it (``state.events.<field>.connect``) and the controller's signals write it, so
no view needs to know another (the careamics-napari split of state, controller and views).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psygnal import evented

READY, RUNNING, STOPPING, DONE, FAILED, STOPPED = "ready", "running", "stopping", "done", "failed", "stopped"


@evented
@dataclass
class FusionState:
    status: str = READY
    step: int = 0
    total: int = 0
    message: str = "ready"
    estimates: dict | None = None  # {"psf", "srf", "tone", "gain", "offset"} of the last blind run
    last_result: str = ""  # name of the last result layer
    notes: list = field(default_factory=list)  # one-line remarks about the chosen pair (e.g. ratio)

    @property
    def running(self) -> bool:
        return self.status in (RUNNING, STOPPING)

    def update(self, **fields) -> None:
        """Set several fields; ``status`` last, so that its observers see the others updated."""
        status = fields.pop("status", None)
        for name, value in fields.items():
            setattr(self, name, value)
        if status is not None:
            self.status = status
