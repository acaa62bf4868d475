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


@pytest.fixture
def rng():
    return np.random.default_rng(0)
