"""Regenerate tests/data/msfn_x8_reference_output.npz: the shipped prior's raw output on the fast
cube of the 64x64 synthetic sample (x8; every 4th pixel), which the tests compare against after
loading the weights.

    python scripts/msfn_reference_output.py
"""

from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "msfn_x8_reference_output.npz"


def reference_output(model, pair) -> np.ndarray:
    import torch

    from napari_hsisr.core.methods.base import FusionInputs, run_to_end
    from napari_hsisr.core.methods.msfn import infer_prior, prior_base

    hr = np.ascontiguousarray(np.moveaxis(pair.hr, -1, 0))
    base, _ = run_to_end(prior_base(FusionInputs(hr, pair.lr, pair.degradation)))
    torch.set_num_threads(1)
    return infer_prior(model, base, pair.degradation.scale)[:, ::4, ::4].astype(np.float32)


def main():
    from napari_hsisr.core.methods.msfn import shipped_weights
    from napari_hsisr.core.sample import sample_pair
    from napari_hsisr.core.training import load_weights

    model, record = load_weights(shipped_weights())
    OUT.parent.mkdir(exist_ok=True)
    np.savez_compressed(OUT, output=reference_output(model, sample_pair(size=64)), sha256=record["sha256"])
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
