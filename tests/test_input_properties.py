"""Property-based tests (hypothesis) of the input checks: whatever a caller passes, over dtypes
(integers, floats, bool, complex, text, dates, objects), shapes (0-D to 4-D, empty, mis-ordered)
and values (NaN, Inf, negative, huge), the API entry points and the readers either work or raise
an ``InputError`` whose message is one line; never another exception type, never a silent NaN.

Each property is checked on a bounded number of examples with a fixed derandomised seed, so the
suite is reproducible and takes seconds. A deeper, random search: ``HSISR_PROPERTY_EXAMPLES=2000
HSISR_PROPERTY_RANDOM=1 python -m pytest tests/test_input_properties.py``."""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import (  # noqa: E402
    HealthCheck,
    given,
    settings,
    strategies as st,
)
from hypothesis.extra import numpy as hnp  # noqa: E402

import napari_hsisr as hsisr  # noqa: E402
from napari_hsisr import Degradation, InputError  # noqa: E402

SCALE = int(os.environ.get("HSISR_PROPERTY_EXAMPLES", "60")) / 60
PROPS = settings(max_examples=int(60 * SCALE), deadline=None, database=None,
                 derandomize=not os.environ.get("HSISR_PROPERTY_RANDOM"),
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                        HealthCheck.filter_too_much])


def refused_in_one_line(call):
    """Run ``call``; return its value, or None when it raised an ``InputError`` with a one-line,
    non-empty message. Any other exception fails the test (it propagates)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RuntimeWarnings of NaN arithmetic are not the point here
        try:
            return call()
        except InputError as exc:
            text = str(exc)
            assert text and "\n" not in text and "\r" not in text, repr(text)
            return None


# ---------------------------------------------------------------------- strategies
REAL_DTYPES = [np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64, np.uint64, np.float16, np.float32,
               np.float64]


def _elements(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return st.floats(allow_nan=True, allow_infinity=True, width=min(64, dtype.itemsize * 8))
    return None  # hypothesis' default for the dtype (its whole range)


@st.composite
def any_array(draw, shape=None, min_dims=0, max_dims=4, max_side=6):
    """An array of any dtype a caller might pass, real or not, of any (small) shape."""
    if shape is None:
        shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=max_side))
    kind = draw(st.sampled_from(["real"] * 6 + ["bool", "complex", "text", "date", "object"]))
    if kind == "real":
        dtype = draw(st.sampled_from(REAL_DTYPES))
        return draw(hnp.arrays(dtype, shape, elements=_elements(dtype)))
    if kind == "bool":
        return draw(hnp.arrays(np.bool_, shape))
    if kind == "complex":
        return draw(hnp.arrays(np.complex64, shape, elements=st.complex_numbers(width=64, allow_nan=True,
                                                                              allow_infinity=True)))
    if kind == "text":
        return draw(hnp.arrays(np.dtype("U3"), shape))
    if kind == "date":
        return np.zeros(shape, dtype="datetime64[s]")
    return draw(hnp.arrays(object, shape, elements=st.one_of(st.none(), st.floats(), st.text(max_size=3),
                                                              st.integers(-5, 5))))


def bad_values(dtype=np.float32):
    """Floats with the values a real file may hold: NaN, +-Inf, negatives, huge, tiny, zero."""
    return st.one_of(st.floats(0, 1, width=32), st.sampled_from([np.nan, np.inf, -np.inf, -1.0, 0.0, 1e38, -1e38,
                                                                1e-38, 1e30]))


@st.composite
def pair_arrays(draw):
    """An HR image and an LR cube that are often almost right: the expected shapes (Y, X, 3) and
    (C, y, x) at scale 4 with values that may be NaN/Inf/negative, or one of them replaced by an
    array of any dtype and shape, or the two given in another axis order."""
    C = draw(st.sampled_from([2, 5, 31]))
    hr = draw(hnp.arrays(np.float32, (16, 16, 3), elements=bad_values()))
    lr = draw(hnp.arrays(np.float32, (C, 4, 4), elements=bad_values()))
    change = draw(st.sampled_from(["values", "hr", "lr", "both", "swap", "bands-last", "hr-first", "int"]))
    if change == "hr":
        hr = draw(any_array())
    elif change == "lr":
        lr = draw(any_array())
    elif change == "both":
        hr, lr = draw(any_array()), draw(any_array())
    elif change == "swap":
        hr, lr = lr, hr
    elif change == "bands-last":
        lr = np.moveaxis(lr, 0, -1)
    elif change == "hr-first":
        hr = np.moveaxis(hr, -1, 0)
    elif change == "int":
        dtype = draw(st.sampled_from([np.uint8, np.uint16, np.int16, np.int32]))
        hr = draw(hnp.arrays(dtype, (16, 16, 3)))
        lr = draw(hnp.arrays(dtype, (C, 4, 4)))
    return hr, lr


# ---------------------------------------------------------------------- core/validation.py
@PROPS
@given(any_array(), st.booleans())
def test_to_unit_float_returns_finite_float32_or_refuses(a, allow_nan):
    from napari_hsisr.core.validation import to_unit_float

    got = refused_in_one_line(lambda: to_unit_float(a, "HR image", allow_nan=allow_nan))
    if got is None:
        return
    out, info = got
    assert out.dtype == np.float32 and out.shape == np.shape(a) and out.size > 0
    assert np.isfinite(out).any()
    if not allow_nan:
        assert np.isfinite(out).all()
    if np.issubdtype(np.asarray(a).dtype, np.integer):
        assert "scaled_by" in info and np.nanmax(np.abs(out)) <= 1.01  # signed: -128 / 127


@PROPS
@given(any_array())
def test_every_check_refuses_in_one_line_or_passes(a):
    from napari_hsisr.core.validation import (
        as_array,
        check_finite_cube,
        check_layout,
        check_lr,
        check_values,
        hr_to_channels_first,
        to_unit_float,
    )

    refused_in_one_line(lambda: as_array(a, "x"))
    refused_in_one_line(lambda: check_finite_cube(a, "reference cube"))
    got = refused_in_one_line(lambda: to_unit_float(a, "LR-HS cube", allow_nan=True))
    if got is not None:
        arr = got[0]
        refused_in_one_line(lambda: check_values(arr, "LR-HS cube"))
        refused_in_one_line(lambda: check_lr(arr))
        refused_in_one_line(lambda: hr_to_channels_first(arr))
        refused_in_one_line(lambda: check_layout(arr.shape, arr.shape))


@PROPS
@given(st.one_of(st.none(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=5), st.booleans(), st.lists(st.integers(0, 3), max_size=2)))
def test_seeds_and_snrs_are_numbers_or_refused(value):
    from napari_hsisr.core.validation import check_seed, check_snr

    seed = refused_in_one_line(lambda: check_seed(value))
    if seed is not None:
        assert isinstance(seed, int) and 0 <= seed < 2**63
    snr = refused_in_one_line(lambda: check_snr(value, "snr"))
    if snr is not None:
        assert np.isfinite(snr) and -20 <= snr <= 200


@PROPS
@given(st.sampled_from([(o, m.name) for m in hsisr.list_methods() for o in m.options]),
       st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**12, 10**12),
                 st.sampled_from(["nan", "inf", "-1", "1e-30", "1e30", "abc", "", "true", "0", "3.5", " 8 "]),
                 st.none(), st.lists(st.integers(), max_size=2)))
def test_method_options_parse_to_their_bounds_or_refuse(option_and_method, value):
    """Every option of every method: a value in its declared bounds (or its 'automatic' value),
    or one line naming the option."""
    option, method = option_and_method
    got = refused_in_one_line(lambda: option.parse(value, method))
    if got is None or option.choices or isinstance(option.default, (bool, str)):
        return
    assert np.isfinite(got)
    if option.auto is not None and got == option.auto:
        return
    assert option.minimum is None or got >= option.minimum
    assert option.maximum is None or got <= option.maximum


# ---------------------------------------------------------------------- the API
@PROPS
@given(pair_arrays(), st.sampled_from(["bicubic", "gsa", "fast"]))
def test_fuse_works_or_refuses_in_one_line(pair, method):
    hr, lr = pair
    C = lr.shape[0] if np.ndim(lr) == 3 else 31
    wl = np.linspace(400, 700, C) if C >= 2 else None
    deg = Degradation(scale=4, psf_sigma=1.0, srf="Nikon D700" if wl is not None else None, wavelengths=wl)
    result = refused_in_one_line(lambda: hsisr.fuse(hr, lr, deg, method=method, device="cpu"))
    if result is not None:  # a result is finite and on the HR grid
        assert np.isfinite(result.cube).all() and result.cube.shape[1:] == np.shape(hr)[:2]


def test_gsa_on_an_almost_black_hr_image_is_finite_or_refused():
    """Found by test_fuse_works_or_refuses_in_one_line: the result check kept gsa's all-NaN cube for
    an HR image black but one pixel (fixed in the result check: a safe method's NaN cube fails)."""
    from napari_hsisr.core.validation import check_result

    hr = np.zeros((16, 16, 3), np.float32)
    hr[0, 0, 0] = 1
    deg = Degradation(scale=4, psf_sigma=1.0, srf="Nikon D700", wavelengths=np.linspace(400, 700, 5))
    result = refused_in_one_line(lambda: hsisr.fuse(hr, np.ones((5, 4, 4), np.float32), deg, method="gsa"))
    if result is not None:
        check_result(result.cube, "gsa")  # raises when the cube holds NaN/Inf


@PROPS
@given(any_array(min_dims=0, max_dims=4, max_side=9),
       st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["30", "x"])),
       st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
       st.one_of(st.none(), st.integers(-3, 2**64), st.floats(allow_nan=True), st.text(max_size=2)))
def test_simulate_gives_finite_data_or_refuses(cube, snr, hr_snr, seed):
    deg = Degradation(scale=2, psf="box")  # no spectral response: any band count
    deg_rgb = Degradation(scale=2, psf_sigma=0.5, srf="Nikon D700", wavelengths=np.linspace(400, 700, 31))
    for d in (deg, deg_rgb):
        got = refused_in_one_line(lambda d=d: hsisr.simulate(cube, d, noise_snr_db=snr, hr_snr_db=hr_snr, seed=seed))
        if got is not None:  # never a silent NaN
            hr, lr = got
            assert np.isfinite(hr).all() and np.isfinite(lr).all()


@PROPS
@given(hnp.arrays(np.float64, (31, 8, 8), elements=bad_values()),
       st.sampled_from([None, 20.0, float("nan"), float("inf"), -float("inf"), 1e6, -1e6]))
def test_simulate_never_returns_nan(cube, snr):
    """The issue's case: a cube holding NaN, or snr=nan, gave NaN outputs without a word."""
    deg = Degradation(scale=4, psf_sigma=1.0, srf="Nikon D700", wavelengths=np.linspace(400, 700, 31))
    got = refused_in_one_line(lambda: hsisr.simulate(cube, deg, noise_snr_db=snr))
    if got is not None:
        assert np.isfinite(got[0]).all() and np.isfinite(got[1]).all()
    if not np.isfinite(cube).all() or (snr is not None and not np.isfinite(snr)):
        assert got is None


@PROPS
@given(any_array(min_dims=0, max_dims=4, max_side=12), any_array(min_dims=0, max_dims=4, max_side=12),
       st.one_of(st.none(), st.integers(-2, 5), st.floats(allow_nan=True), st.text(max_size=2)))
def test_evaluate_measures_or_refuses(est, ref, scale):
    got = refused_in_one_line(lambda: hsisr.evaluate(est, ref, scale=scale))
    if got is not None:
        assert isinstance(got, dict) and "psnr" in got


@PROPS
@given(st.fixed_dictionaries({}, optional={
    "scale": st.one_of(st.integers(-3, 5000), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=2)),
    "psf_sigma": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=2)),
    "psf_size": st.one_of(st.integers(-3, 10**6), st.floats(allow_nan=True), st.text(max_size=2)),
    "psf": st.one_of(st.sampled_from(["gaussian", "box", "nofile.npy", ""]), any_array(max_dims=3)),
    "shift": st.one_of(st.tuples(st.floats(allow_nan=True, allow_infinity=True),
                                 st.floats(allow_nan=True, allow_infinity=True)),
                       st.text(max_size=3), st.lists(st.floats(-2, 2), max_size=3)),
    "wavelengths": st.one_of(any_array(max_dims=2, max_side=40), st.text(max_size=3)),
    "srf": st.one_of(st.sampled_from(["Nikon D700", "no such camera"]), any_array(max_dims=3, max_side=4)),
    "boundary": st.text(max_size=8),
    "hr_encoding": st.one_of(st.sampled_from(["auto", "srgb", "gamma:2.2", "gamma:nan", "log"]), st.integers()),
}))
def test_degradation_is_built_or_refused(kwargs):
    kwargs.setdefault("scale", 4)
    refused_in_one_line(lambda: Degradation(**kwargs))


# ---------------------------------------------------------------------- readers
_SUFFIXES = [".npy", ".tif", ".png", ".hdr", ".mat", ".txt", ".bmp", ".jpg"]


def _readers():
    from napari_hsisr.core import io

    return [io.read_cube, io.read_image_file, io.open_cube_lazy, io.open_image_lazy]


@settings(PROPS, max_examples=max(1, int(40 * SCALE)))
@given(any_array(min_dims=0, max_dims=4, max_side=8).filter(lambda a: a.dtype.kind not in "MO"))
def test_readers_read_any_saved_array_or_refuse(a):
    """An array saved as .npy and (where tifffile takes it) as .tif: each reader returns it or
    refuses in one line; what it returns is array-like."""
    import tifffile

    with tempfile.TemporaryDirectory() as tmp:
        paths = [os.path.join(tmp, "a.npy")]
        np.save(paths[0], a)
        if a.dtype.kind in "uif" and a.size:
            try:
                tifffile.imwrite(os.path.join(tmp, "a.tif"), a)
                paths.append(os.path.join(tmp, "a.tif"))
            except Exception:  # noqa: BLE001 - a shape tifffile cannot write: nothing to read back
                pass
        for path in paths:
            for read in _readers():
                got = refused_in_one_line(lambda read=read, path=path: read(path))
                if got is not None:
                    data = got if isinstance(got, np.ndarray) or not hasattr(got, "data") else got.data
                    assert np.ndim(data) in (2, 3), (read.__name__, np.shape(data))
            _napari_reader_reads_or_refuses(path)


def _napari_reader_reads_or_refuses(path):
    """The napari reader hook never raises (None: not ours); the layers it reads are 2-D/3-D, or
    reading refuses in one line."""
    from napari_hsisr._reader import napari_get_reader

    reader = napari_get_reader(path)
    if reader is not None:
        layers = refused_in_one_line(lambda: reader(path))
        for data, _, kind in layers or []:
            assert kind == "image" and np.ndim(data) in (2, 3)


@settings(PROPS, max_examples=max(1, int(40 * SCALE)))
@given(st.binary(max_size=300), st.sampled_from(_SUFFIXES))
def test_readers_refuse_corrupt_files_in_one_line(content, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x" + suffix)
        with open(path, "wb") as fh:
            fh.write(content)
        for read in _readers():
            refused_in_one_line(lambda read=read: read(path))
        _napari_reader_reads_or_refuses(path)


def test_readers_name_a_folder_and_a_missing_file():
    from napari_hsisr.core import io

    with tempfile.TemporaryDirectory() as tmp:
        for read in _readers():
            with pytest.raises(InputError, match="folder") as info:
                read(tmp)
            assert "\n" not in str(info.value)
            with pytest.raises(InputError, match="not found"):
                read(os.path.join(tmp, "missing.tif"))
        with pytest.raises(InputError, match="is a folder"):
            io.read_image(tmp)


@settings(PROPS, max_examples=max(1, int(30 * SCALE)))
@given(st.binary(max_size=200), st.booleans())
def test_weights_and_checkpoints_that_are_not_tensors_are_refused_in_one_line(content, with_record):
    """Any bytes as a weights file (with a record whose checksum matches) or as a checkpoint: one
    line, never an UnpicklingError, and never executed (weights_only)."""
    import json

    from napari_hsisr.core.training import load_tensors, load_weights, sha256

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "w.pt")
        with open(path, "wb") as fh:
            fh.write(content)
        if with_record:
            with open(path + ".json", "w") as fh:
                json.dump({"sha256": sha256(path), "model_config": {"bands": 31, "channels": 3, "scale": 8}}, fh)
        refused_in_one_line(lambda: load_weights(path))
        from pathlib import Path

        refused_in_one_line(lambda: load_tensors(Path(path), "checkpoint", "start without --resume"))


def test_a_crafted_pickle_is_refused_and_never_run(tmp_path):
    """A .pt whose pickle calls a function on load: refused in one line; the function never runs."""
    import json
    import pickle

    from napari_hsisr.core.training import load_weights, sha256

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "w.pt"
    path.write_bytes(pickle.dumps({"w": Evil()}, protocol=2))
    (tmp_path / "w.pt.json").write_text(json.dumps({"sha256": sha256(path), "model_config": {}}))
    with pytest.raises(InputError, match="not a plain file of torch tensors") as info:
        load_weights(path)
    assert "\n" not in str(info.value) and not marker.exists()


# ---------------------------------------------------------------------- the CLI
@settings(PROPS, max_examples=max(1, int(25 * SCALE)))
@given(st.sampled_from(["--snr", "--hr-snr", "--seed", "--shift", "--psf-sigma", "--psf-size", "--scale",
                        "--wavelengths"]),
       st.sampled_from(["nan", "inf", "-1", "1e9", "0", "abc", "1,2,3", "1e308", "-1e9,0", "400:700:0"]))
def test_cli_simulate_flags_are_exit_0_or_2_with_one_line(flag, value):
    from napari_hsisr.cli import main
    from napari_hsisr.core.io import write_tiff

    with tempfile.TemporaryDirectory() as tmp:
        cube = np.random.default_rng(0).random((31, 16, 16)).astype(np.float32)
        write_tiff(os.path.join(tmp, "ref.tif"), cube, wavelengths=np.linspace(400, 700, 31))
        args = ["simulate", os.path.join(tmp, "ref.tif"), "--out-hr", os.path.join(tmp, "h.tif"), "--out-lr",
                os.path.join(tmp, "l.tif"), "--psf-sigma", "1"]
        if flag != "--scale":
            args += ["--scale", "4"]
        import contextlib
        import io as _io

        err = _io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(_io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                code = main(args + [f"{flag}={value}"])
            except SystemExit as exc:  # argparse: a value of the wrong type
                code = exc.code
        lines = [line for line in err.getvalue().splitlines() if line.startswith("error")]
        assert code in (0, 2), err.getvalue()
        if code == 2:
            assert len(lines) == 1, err.getvalue()
        else:
            from napari_hsisr.core.io import read_cube

            assert np.isfinite(read_cube(os.path.join(tmp, "l.tif")).data).all()
