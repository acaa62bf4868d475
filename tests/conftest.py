from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CAVE = SHARED / "cave" / "complete_ms_data"


@pytest.fixture
def cave_dir():
    if not CAVE.is_dir():
        pytest.skip(f"CAVE data not found at {CAVE} (../shared/data); real-data test skipped")
    return CAVE


@pytest.fixture(scope="module")
def pair(request):
    """The bundled synthetic pair (:func:`napari_hsisr.core.sample.sample_pair`: reference, Nikon D700
    RGB, noise-free LR-HS), made once per test module so that no module sees another's changes:
    64 x 64 at x8 unless the module sets ``PAIR_SIZE`` / ``PAIR_SCALE``."""
    from napari_hsisr.core.sample import sample_pair

    return sample_pair(size=getattr(request.module, "PAIR_SIZE", 64), scale=getattr(request.module, "PAIR_SCALE", 8))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def evaluate_quality(qtbot):
    """Start a Quality dock's metrics worker and wait for its result (the GUI is not blocked
    meanwhile); ``{}`` when it refused."""
    def run(widget):
        got = []
        widget.evaluated.connect(got.append)
        worker = widget.evaluate()
        if worker is not None:
            qtbot.waitUntil(lambda: bool(got) and not widget.running, timeout=20000)
        widget.evaluated.disconnect(got.append)
        return got[-1] if got else {}

    return run
