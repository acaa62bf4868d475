"""Responses on a cube's bands from a band table's FWHM (issue 25, EnMAP/PRISMA style tables)."""

import numpy as np
import pytest

from napari_hsisr.cli import main
from napari_hsisr.core.band_responses import (
    cube_band_srf,
    gaussian_band_responses,
    read_band_fwhm,
)
from napari_hsisr.core.io import read_cube
from napari_hsisr.core.srf import resolve_srf


def test_gaussian_bands_and_the_integrated_response():
    grid = np.arange(400.0, 801.0)
    g = gaussian_band_responses([500, 600], [20, 40], grid)
    assert np.allclose(g.sum(0), 1) and grid[g.argmax(0)].tolist() == [500, 600]
    half = g[:, 1] >= g[:, 1].max() / 2  # the FWHM is the width at half maximum
    assert np.ptp(grid[half]) == pytest.approx(40, abs=2)
    wl = np.arange(410.0, 700.0, 30.0)
    wide, _ = cube_band_srf("Nikon D700", wl, np.full(wl.size, 60.0))
    narrow, _ = cube_band_srf("Nikon D700", wl, np.full(wl.size, 1.0))
    sampled = resolve_srf("Nikon D700", wl, wl.size)[0]
    assert np.abs(narrow - sampled).max() < 0.02  # narrow bands: the response at the centres
    assert np.abs(wide - sampled).max() > 0.03  # wide bands see their neighbours' light
    assert cube_band_srf("estimate", wl, np.ones(wl.size)) is None


def test_fuse_integrates_the_response_over_the_band_table_fwhm(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "lr.npy", rng.random((20, 8, 8)).astype(np.float32))
    np.save(tmp_path / "hr.npy", rng.random((32, 32, 3)).astype(np.float32))
    rows = ["band,wavelength_um,fwhm_um,bad"]
    rows += [f"{i + 1},{0.42 + 0.015 * i:.3f},0.025,{int(i == 4)}" for i in range(20)]
    (tmp_path / "bands.csv").write_text("\n".join(rows) + "\n")
    assert read_band_fwhm(tmp_path / "bands.csv") == pytest.approx(np.full(20, 25.0))
    assert main(["fuse", "--hr", str(tmp_path / "hr.npy"), "--lr", str(tmp_path / "lr.npy"), "--band-table",
                 str(tmp_path / "bands.csv"), "--drop-bands", "auto", "--srf", "Nikon D700", "--method", "bicubic",
                 "--out", str(tmp_path / "o.tif")]) == 0
    assert "integrated over each band's Gaussian (FWHM 25-25 nm" in capsys.readouterr().err
    assert read_cube(tmp_path / "o.tif").data.shape == (19, 32, 32)
