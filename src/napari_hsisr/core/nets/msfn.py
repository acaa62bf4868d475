"""Multi-scale fusion network (MSFN) for HR RGB/MSI + LR-HS fusion.

* **Encoder** on the HR image ``y`` (k, Y, X): a conv block at full resolution, then one stage per
  scale factor, each a learned strided convolution (kernel = stride = f) followed by a conv block,
  so the features keep the HR image's detail while shrinking to the LR grid.
* **Decoder** on the LR-HS cube ``x`` (C, Y/s, X/s): starts at the LR grid (no interpolation of the
  cube beforehand, so the first layers are cheap), and at each stage grows the features with a
  learned transposed convolution (kernel = 2f, stride = f), concatenates the encoder's features of
  that scale and refines them with a conv block.
* **Heads**: every decoder level predicts the HS cube at its own resolution, as the previous level's
  prediction grown by a per-band learned transposed convolution (bilinear at start) plus a residual
  from the features; training puts a loss on every level (multi-level supervision).

Scale factors: ``s`` is split into prime factors, 2s first, then the rest in increasing order, one
stage each: 8 = 2*2*2, 32 = 2^5, 12 = 2*2*3, 6 = 2*3, 5 = 5 (one stage of x5). Any number of HS
bands ``C`` and HR channels ``k``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def stage_factors(scale: int) -> list[int]:
    """Prime factors of ``scale``, ascending (so 2s come first): one decoder stage each."""
    scale = int(scale)
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    out, f = [], 2
    while scale > 1:
        while scale % f == 0:
            out.append(f)
            scale //= f
        f += 1
    return out


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True))


def _bilinear_up(channels: int, f: int) -> nn.ConvTranspose2d:
    """Per-channel transposed convolution of stride ``f`` initialised to bilinear interpolation."""
    up = nn.ConvTranspose2d(channels, channels, 2 * f, stride=f, padding=f // 2, groups=channels, bias=False)
    k = 2 * f
    centre = f - 1 if f % 2 else f - 0.5  # tap that lands on the LR pixel's centre (padding f // 2)
    t = 1 - torch.abs(torch.arange(k, dtype=torch.float32) - centre) / f
    with torch.no_grad():
        up.weight.copy_((t[:, None] * t[None, :]).clamp_min(0).expand(channels, 1, k, k))
    return up


def _up_crop(up: nn.ConvTranspose2d, x: torch.Tensor, f: int, replicate: bool = False) -> torch.Tensor:
    """Transposed conv with the output cropped to exactly ``f`` times the input size. With
    ``replicate`` the input is edge-padded by one pixel first, so that interpolation does not fade
    towards zero at the image borders."""
    h, w = x.shape[-2] * f, x.shape[-1] * f
    if replicate:
        x = F.pad(x, (1, 1, 1, 1), mode="replicate")
    out = up(x)
    dy, dx = (out.shape[-2] - h) // 2, (out.shape[-1] - w) // 2
    return out[..., dy:dy + h, dx:dx + w]


class MSFN(nn.Module):
    def __init__(self, bands: int, channels: int, scale: int, width: int = 16, max_width: int = 64,
                 residual: bool = True):
        super().__init__()
        self.bands, self.channels, self.scale = int(bands), int(channels), int(scale)
        self.width, self.max_width, self.residual = int(width), int(max_width), bool(residual)
        self.factors = stage_factors(scale)
        n = len(self.factors)
        # channels per level, LR grid first: the full-resolution levels are the costly ones, so
        # they are the narrowest (width), doubling per coarser level up to max_width
        w = [min(self.width * 2 ** (n - i), self.max_width) for i in range(n + 1)]
        self.level_widths = w
        self.enc_in = _block(channels, w[n])
        # encoder: full resolution down to the LR grid (decoder factors in reverse)
        self.enc_down = nn.ModuleList(nn.Conv2d(w[i + 1], w[i], f, stride=f)
                                      for i, f in reversed(list(enumerate(self.factors))))
        self.enc_blocks = nn.ModuleList(_block(w[i], w[i]) for i in reversed(range(n)))
        self.dec_in = _block(bands + w[0], w[0])
        self.dec_up = nn.ModuleList(nn.ConvTranspose2d(w[i], w[i + 1], 2 * f, stride=f, padding=f // 2)
                                    for i, f in enumerate(self.factors))
        extra = bands if self.residual else 0  # the base estimate, fed to every decoder block
        self.dec_blocks = nn.ModuleList(_block(2 * w[i + 1] + extra, w[i + 1]) for i in range(n))
        self.pred_up = nn.ModuleList(() if self.residual else (_bilinear_up(bands, f) for f in self.factors))
        self.heads = nn.ModuleList(nn.Conv2d(w[i + 1], bands, 3, padding=1) for i in range(n))
        for head in self.heads:  # start as pure interpolation of the previous level's prediction
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def config(self) -> dict:
        return {"bands": self.bands, "channels": self.channels, "scale": self.scale, "width": self.width,
                "max_width": self.max_width, "residual": self.residual}

    def forward(self, hr: torch.Tensor, lr: torch.Tensor, base: torch.Tensor | None = None) -> list[torch.Tensor]:
        """``hr`` (B, k, Y, X), ``lr`` (B, C, Y/s, X/s) -> predictions from coarse to fine; the last
        is (B, C, Y, X).

        A ``residual`` network also takes ``base`` (B, C, Y, X), a model-based estimate (the fast
        method's cube): every level then predicts a correction of ``base`` block-averaged to its
        resolution, and sees that average as an input.
        """
        if self.residual != (base is not None):
            raise ValueError("a residual MSFN needs `base` (and a plain one takes none)")
        bases = self.level_targets(base) if self.residual else None
        feats = [self.enc_in(hr)]
        for down, block in zip(self.enc_down, self.enc_blocks):
            feats.append(block(down(feats[-1])))
        feats = feats[::-1]  # feats[0] on the LR grid, feats[-1] full resolution
        h = self.dec_in(torch.cat([lr, feats[0]], 1))
        pred = lr
        preds = []
        for i, f in enumerate(self.factors):
            h = _up_crop(self.dec_up[i], h, f)
            if self.residual:
                h = self.dec_blocks[i](torch.cat([h, feats[i + 1], bases[i]], 1))
                pred = bases[i] + self.heads[i](h)
            else:
                h = self.dec_blocks[i](torch.cat([h, feats[i + 1]], 1))
                pred = _up_crop(self.pred_up[i], pred, f, replicate=True) + self.heads[i](h)
            preds.append(pred)
        return preds

    def level_targets(self, cube: torch.Tensor) -> list[torch.Tensor]:
        """Reference at every level's resolution (block averages), coarse to fine."""
        out, size = [], 1
        for f in reversed(self.factors):
            out.append(cube if size == 1 else F.avg_pool2d(cube, size))
            size *= f
        return out[::-1]
