from pathlib import Path

import numpy as np
import pytest

from napari_hsisr.core import srf as S
from napari_hsisr.core.errors import InputError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WL31 = np.arange(400, 701, 10)


def test_presets_listed():
    names = S.list_presets()
    cams = [n for n in names if n not in (S.NIKON_D700_CAVE, S.CIE_1931, S.SRGB)]
    assert len(cams) == 28
    assert len(set(names)) == 31
    assert "Nikon D700" in names
    assert "Canon 5DMarkII" in names  # verbatim from the camspec database
    assert S.NIKON_D700_CAVE == "Nikon D700 (CAVE fusion papers)" and S.NIKON_D700_CAVE in names
    assert "CIE 1931" in names


def test_srgb_preset_is_the_cie_colour_matching_of_linear_srgb():
    """The sRGB preset has the negative lobes of a colour-corrected camera and renders the CIE
    white point at equal channels once normalised."""
    srgb = S.get_preset("sRGB")
    assert srgb.signed and srgb.matrix.min() < 0
    wl = np.arange(400, 701, 10)
    m = S.resample_srf(srgb, wl)
    np.testing.assert_allclose(m.sum(0), 1.0)
    cie = S.resample_srf(S.get_preset("CIE 1931"), wl)
    # the same three-dimensional space as the CIE observer: sRGB = CIE x (3 x 3 matrix)
    coef, *_ = np.linalg.lstsq(cie, m, rcond=None)
    assert np.abs(cie @ coef - m).max() < 1e-9


def test_lookup_is_tolerant():
    canon = S.get_preset("Canon 5DMarkII")
    for alias in ("Canon 5D Mark II", "canon_5d_mark_ii", "CANON-5D-MARK-II"):
        assert S.get_preset(alias) is canon
    assert S.get_preset("nikon_d700_cave").name == S.NIKON_D700_CAVE
    assert S.get_preset("nikon d700").name == "Nikon D700"
    assert S.get_preset("cie_1931").channels == ("X", "Y", "Z")
    sr = S.get_preset("Nikon D700")
    assert sr.wavelengths.shape == (33,) and sr.matrix.shape == (33, 3)
    assert sr.channels == ("R", "G", "B")
    with pytest.raises(InputError, match="Nikon D700"):
        S.get_preset("Nikon D7000")


def test_nikon_cave_matches_shared_file():
    f = SHARED / "srf" / "HIFtool_srflib" / "NikonD700.npy"
    if not f.is_file():
        pytest.skip(f"shared SRF data not found at {f}; comparison skipped")
    raw = np.load(f)
    expected = raw / raw.sum(axis=0)
    m, name, channels = S.resolve_srf("nikon_d700_cave", WL31, 31)
    assert name == S.NIKON_D700_CAVE and channels == ("R", "G", "B")
    np.testing.assert_allclose(m, expected, rtol=1e-12, atol=0)
    # default wavelengths for 31 bands are 400..700 nm
    m2, _, _ = S.resolve_srf(S.NIKON_D700_CAVE, None, 31)
    np.testing.assert_allclose(m2, expected, rtol=1e-12, atol=0)


def test_canon_camspec_first_31_samples():
    sr = S.get_preset("Canon 5DMarkII")
    raw = sr.matrix[:31]  # 400..700 nm of the 400..720 table
    np.testing.assert_array_equal(sr.wavelengths[:31], WL31)
    m, name, _ = S.resolve_srf("Canon 5D Mark II", WL31, 31)
    assert name == "Canon 5DMarkII"
    np.testing.assert_allclose(m, raw / raw.sum(axis=0), rtol=1e-12)


def test_camspec_matches_shared_text():
    f = SHARED / "srf" / "camspec_database__gu_jiang_28cameras" / "camspec_database.txt"
    if not f.is_file():
        pytest.skip(f"shared SRF data not found at {f}; comparison skipped")
    lines = f.read_text().splitlines()
    i = lines.index("Nikon D700")
    rows = np.array([[float(v) for v in lines[i + j].split()] for j in (1, 2, 3)]).T
    np.testing.assert_array_equal(S.get_preset("Nikon D700").matrix, rows)


@pytest.mark.parametrize("name", ["Nikon D700", "Canon 5DMarkII", "CIE 1931", "nikon_d700_cave"])
def test_columns_sum_to_one(name):
    wl = np.linspace(420, 680, 27)
    m, _, ch = S.resolve_srf(name, wl, 27)
    assert m.shape == (27, 3) and len(ch) == 3
    np.testing.assert_allclose(m.sum(axis=0), 1.0)
    assert np.all(m >= 0)


def test_resample_interpolates_and_zero_outside():
    sr = S.SpectralResponse("t", [400, 500, 600], [[0, 1], [2, 1], [0, 1]], ("a", "b"))
    m = S.resample_srf(sr, [350, 450, 500, 650])
    # channel a: 0 (outside), 1, 2, 0 (outside) -> /3 ; channel b: 0, 1, 1, 0 -> /2
    np.testing.assert_allclose(m, [[0, 0], [1 / 3, 0.5], [2 / 3, 0.5], [0, 0]])
    with pytest.raises(InputError, match=r"'a'.*400\.\.600 nm.*700\.\.800 nm"):
        S.resample_srf(sr, [700, 750, 800])


def test_cie_y_peaks_near_555():
    sr = S.get_preset("CIE 1931")
    assert sr.wavelengths[0] == 360 and sr.wavelengths[-1] == 830
    y = sr.matrix[:, 1]
    assert abs(sr.wavelengths[np.argmax(y)] - 555) <= 5
    assert y.max() == pytest.approx(1.0, abs=1e-3)


def test_csv_round_trip_with_header(tmp_path):
    wl = np.arange(400, 701, 20.0)
    mat = np.stack([np.exp(-((wl - c) / 40) ** 2) for c in (600, 540, 450)], axis=1)
    p = tmp_path / "my_cam.csv"
    lines = ["wavelength,Red,Green,Blue"] + [",".join(repr(float(v)) for v in [w, *r]) for w, r in zip(wl, mat)]
    p.write_text("\n".join(lines) + "\n")
    sr = S.load_srf_file(p)
    assert sr.name == "my_cam" and sr.channels == ("Red", "Green", "Blue")
    np.testing.assert_array_equal(sr.wavelengths, wl)
    np.testing.assert_array_equal(sr.matrix, mat)
    m, name, ch = S.resolve_srf(str(p), WL31, 31)
    assert name == "my_cam" and ch == ("Red", "Green", "Blue")
    np.testing.assert_allclose(m.sum(axis=0), 1.0)


def test_txt_without_header_and_npy(tmp_path):
    arr = np.array([[400, 1, 0], [550, 2, 1], [700, 0, 3]], dtype=float)
    t = tmp_path / "s.txt"
    np.savetxt(t, arr)
    sr = S.load_srf_file(t)
    assert sr.channels == ("channel 1", "channel 2")
    np.testing.assert_array_equal(sr.matrix, arr[:, 1:])
    n = tmp_path / "s.npy"
    np.save(n, arr)
    sr2 = S.load_srf_file(n)
    np.testing.assert_array_equal(sr2.matrix, arr[:, 1:])
    m, _, _ = S.resolve_srf(n, WL31, 31)
    assert m.shape == (31, 2)


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        S.load_srf_file(tmp_path / "nope.csv")
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(InputError, match="Unsupported"):
        S.load_srf_file(bad)
    one = tmp_path / "one.npy"
    np.save(one, np.arange(5.0))
    with pytest.raises(InputError):
        S.load_srf_file(one)
    junk = tmp_path / "junk.csv"
    junk.write_text("wl,a\n400,1\n500,oops\n")
    with pytest.raises(InputError, match="line 3"):
        S.load_srf_file(junk)
    with pytest.raises(InputError, match="neither a preset"):
        S.resolve_srf(str(tmp_path / "missing.csv"), WL31, 31)


def test_direct_matrix(rng):
    a = rng.random((31, 3))
    m, name, ch = S.resolve_srf(a, None, 31)
    assert name == "user matrix" and len(ch) == 3
    np.testing.assert_allclose(m, a / a.sum(axis=0))
    a0 = a.copy()
    S.resolve_srf(a, None, 31)
    np.testing.assert_array_equal(a, a0)
    neg = a.copy()
    neg[0, 0] = -0.1
    with pytest.raises(InputError, match="negative"):
        S.resolve_srf(neg, None, 31)
    with pytest.raises(InputError, match="31 bands"):
        S.resolve_srf(rng.random((30, 3)), None, 31)
    with pytest.raises(InputError, match="transposed"):
        S.resolve_srf(a.T, None, 31)
    nan = a.copy()
    nan[1, 1] = np.nan
    with pytest.raises(InputError):
        S.resolve_srf(nan, None, 31)
    with pytest.raises(InputError, match="sum to 0"):
        S.normalize_columns(np.zeros((4, 2)))


def test_wavelengths_required_unless_31_bands():
    with pytest.raises(InputError, match="wavelengths"):
        S.resolve_srf("Nikon D700", None, 20)
    with pytest.raises(InputError, match="one per band"):
        S.resolve_srf("Nikon D700", WL31, 30)
    m, _, _ = S.resolve_srf("Nikon D700", np.linspace(400, 700, 20), 20)
    assert m.shape == (20, 3)
