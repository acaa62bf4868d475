"""A learned spectral-spatial prior that refines a model-based cube (the ``msfn`` weights since 0.5).

The network never sees the camera or the optics directly: it refines the fast method's cube,
which the known (or estimated) PSF, decimation and spectral response made, and a data-consistency
step after it (:func:`..methods.fast.project_consistent`) makes the result honour that same
degradation. So one set of weights serves every scale, PSF and camera; what it learns is what
natural cubes look like in the part neither observation constrains.

* Input: the base cube divided by its mean level (gains and exposure do not change the input),
  and one constant channel ``log2(scale) / 5`` (how coarse the LR grid was, so how much of the
  base's spatial detail came from the HR image alone).
* A three-level U-Net at the HR grid (full, 1/2, 1/4 resolution; receptive field about 40
  pixels), predicting a correction of the base; the last layer starts at zero, so an untrained
  network returns the base unchanged.
* Any image size (padded to a multiple of 4 by reflection and cropped back); a fixed number of
  bands (the weights' record says which grid).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LEVELS = 3  # full, 1/2, 1/4 resolution
MULTIPLE = 2 ** (LEVELS - 1)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True))


class SpectralPrior(nn.Module):
    def __init__(self, bands: int, width: int = 24):
        super().__init__()
        self.bands, self.width = int(bands), int(width)
        w = [self.width * 2 ** i for i in range(LEVELS)]
        self.enc = nn.ModuleList([_block(self.bands + 1, w[0])] +
                                 [_block(w[i - 1], w[i]) for i in range(1, LEVELS)])
        self.down = nn.ModuleList(nn.Conv2d(w[i], w[i], 2, stride=2) for i in range(LEVELS - 1))
        self.up = nn.ModuleList(nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2) for i in range(LEVELS - 1))
        self.dec = nn.ModuleList(_block(2 * w[i], w[i]) for i in range(LEVELS - 1))
        self.head = nn.Conv2d(w[0], self.bands, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def config(self) -> dict:
        return {"bands": self.bands, "width": self.width}

    def forward(self, base: torch.Tensor, scale: int | float, level: float | None = None) -> torch.Tensor:
        """``base`` (B, C, Y, X) -> refined cube (B, C, Y, X), in the base's units. ``level``: the
        value the input is divided by (default: each base's mean; a tiled run gives the scene's, so
        that every tile sees the same normalisation)."""
        if level is None:
            level = base.mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
        else:
            level = max(float(level), 1e-6)
        h, w = base.shape[-2:]
        ph, pw = -h % MULTIPLE, -w % MULTIPLE
        x = base / level
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate" if min(h, w) < 2 else "reflect")
        code = torch.full_like(x[:, :1], math.log2(float(scale)) / 5)
        feats, h_ = [], torch.cat([x, code], 1)
        for i, block in enumerate(self.enc):
            h_ = block(h_ if i == 0 else self.down[i - 1](feats[-1]))
            feats.append(h_)
        for i in reversed(range(LEVELS - 1)):
            h_ = self.dec[i](torch.cat([self.up[i](h_), feats[i]], 1))
        out = x + self.head(h_)
        return out[..., :h, :w] * level
