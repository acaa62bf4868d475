"""The fit report: how well a cube explains the pair it came from, and what it names as the cause
when it does not (core/fit_report.py), on the noise-free sample pair whose truth is known."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_hsisr.core import fit_report
from napari_hsisr.core.physics import ToneCurve
from napari_hsisr.core.simulate import simulate


def _inputs(pair, hr=None, lr=None, hr_valid=None):
    """What the report reads of a run's inputs: the observations (HR channels first) and masks."""
    hr = np.moveaxis(pair.hr, -1, 0).astype(np.float64) if hr is None else hr
    return SimpleNamespace(lr=pair.lr if lr is None else lr, lr_valid=None, hr_valid=hr_valid, hr_display=hr)


def test_the_truth_explains_both_observations(pair):
    fit, warnings = fit_report.report(pair.reference, _inputs(pair), pair.degradation, "truth")
    assert fit["lr"]["relative"] < 1e-5 and fit["hr"]["relative"] < 1e-5
    assert fit["lr"]["pixels"] == pair.lr.shape[1] * pair.lr.shape[2] and fit["hr"]["encoding"] == "linear"
    assert warnings == []
    assert fit_report.describe(fit) == "LR cube 0.00 %, HR image 0.00 %"


def test_the_residual_grows_with_the_perturbation_and_warns_past_the_threshold(pair):
    """Multiplicative noise of 1, 5 and 20 %: the residuals grow with it (measured 0.16/0.81/3.2 % on
    the LR cube, 0.28/1.4/5.5 % on the HR image); the 20 % cube no longer explains the HR image."""
    rng = np.random.default_rng(0)
    fits = []
    for amount in (0.01, 0.05, 0.2):
        cube = pair.reference * (1 + amount * rng.standard_normal(pair.reference.shape))
        fit, warnings = fit_report.report(cube, _inputs(pair), pair.degradation, "noisy")
        fits.append((fit["lr"]["relative"], fit["hr"]["relative"], warnings))
    for side in (0, 1):
        assert fits[0][side] < fits[1][side] < fits[2][side]
    assert fits[1][1] == pytest.approx(0.0141, rel=0.1) and fits[2][1] > fit_report.WARN_AT
    assert fits[1][2] == [] and "does not explain the HR image" in fits[2][2][0]


def test_no_cause_is_named_for_a_consistent_pair(pair):
    assert fit_report.likely_causes(_inputs(pair), pair.degradation) == []


def test_a_display_encoded_image_taken_as_linear_names_the_encoding(pair):
    srgb = ToneCurve.parse("srgb").encode(np.moveaxis(pair.hr, -1, 0).astype(np.float64))
    causes = fit_report.likely_causes(_inputs(pair, hr=srgb), pair.degradation)
    assert any(c.startswith("encoding:") and "hr_encoding='srgb'" in c for c in causes), causes


def test_a_displaced_lr_cube_names_the_misregistration(pair):
    _, shifted_lr = simulate(pair.reference, pair.degradation.with_(shift=(0.0, 4.0)), seed=1)
    causes = fit_report.likely_causes(_inputs(pair, lr=shifted_lr), pair.degradation)
    found = [c for c in causes if c.startswith("misregistration:")]
    assert found and "+0.0, +" in found[0], causes  # displaced along x, to the right


def test_masked_hr_pixels_are_named(pair):
    valid = np.ones(pair.hr.shape[:2], bool)
    valid[:10, :10] = False
    causes = fit_report.likely_causes(_inputs(pair, hr_valid=valid), pair.degradation)
    assert causes == [f"masked pixels: {100 * 100 / valid.size:.1f} % of the HR image is unusable (saturated, NaN "
                      "or nodata); the result there comes from the LR cube alone"]


@pytest.mark.parametrize("psf_size", [8, 16, 40])
def test_the_lr_residual_is_the_same_by_sums_or_by_fft(pair, monkeypatch, psf_size):
    """The LR prediction is summed over the kernel (K <= 4s) or taken by FFT (larger kernels): the
    two agree on every pixel the report uses, so the figures do not depend on the route."""
    from napari_hsisr.core.physics import SpatialOperator

    deg = pair.degradation.with_(psf_size=psf_size)
    _, lr = simulate(pair.reference, deg, noise_snr_db=None, seed=0)
    cube = pair.reference * 1.03
    inputs = _inputs(pair, lr=lr)
    chosen = fit_report.residuals(cube, inputs, deg)["lr"]
    monkeypatch.setattr(SpatialOperator, "__call__", lambda self, z: self.circular(z))  # always the FFT
    by_fft = fit_report.residuals(cube, inputs, deg)["lr"]
    assert chosen["relative"] == pytest.approx(0.03, rel=0.05)  # 3 % too bright, a linear operator
    assert chosen == by_fft
