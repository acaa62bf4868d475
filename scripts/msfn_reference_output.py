"""Regenerate tests/data/msfn_x8_reference_output.npz: the shipped x8 network's raw output on the
64x64 synthetic sample (every 4th pixel), which the tests compare against after loading the weights.

    python scripts/msfn_reference_output.py
"""

from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "msfn_x8_reference_output.npz"


def reference_output(model, pair) -> np.ndarray:
    import torch

    from napari_hsisr.core.methods.msfn import _base

    hr = np.ascontiguousarray(np.moveaxis(pair.hr, -1, 0))
    base = _base(model, pair.degradation, hr, pair.lr)
    t = lambda a: None if a is None else torch.as_tensor(a, dtype=torch.float32)[None]  # noqa: E731
    with torch.no_grad():
        out = model(t(hr), t(pair.lr), t(base))[-1][0].numpy()
    return out[:, ::4, ::4].astype(np.float32)


def main():
    from napari_hsisr.core.methods.msfn import shipped_weights
    from napari_hsisr.core.sample import sample_pair
    from napari_hsisr.core.training import load_weights

    model, record = load_weights(shipped_weights(8))
    OUT.parent.mkdir(exist_ok=True)
    np.savez_compressed(OUT, output=reference_output(model, sample_pair(size=64)), sha256=record["sha256"])
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
