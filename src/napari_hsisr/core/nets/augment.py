"""The 8 flips/rotations of a square patch, shared by supervised training (:mod:`..training`) and the
zero-shot fit of the MSFN method: a network helper, so neither imports the other for it."""

from __future__ import annotations


def augment(t, code: int):
    """One of the 8 flips/rotations of a (B, C, P, P) tensor: bit 2 of ``code`` flips the columns, bits
    0-1 rotate by that many quarter turns."""
    import torch

    if code & 4:
        t = torch.flip(t, (-1,))
    return torch.rot90(t, code & 3, (-2, -1))
