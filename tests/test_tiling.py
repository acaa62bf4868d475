"""Tiled fusion (memory bounded by the tile), OME-Zarr and BigTIFF results, lazy inputs, and many pairs
on dask."""

import numpy as np
import pytest

import napari_hsisr as hsisr
from napari_hsisr.core.errors import InputError
from napari_hsisr.core.sample import sample_pair
from napari_hsisr.core.tiling import blend_weights, fuse_tiled, fuse_tiled_iter, plan_tiles

PAIR_SIZE = 128  # the shared `pair` fixture (conftest.py): x8, LR 16 x 16


def _psnr(cube, pair):
    return hsisr.evaluate(np.asarray(cube), pair.reference, scale=8)["psnr"]


@pytest.mark.parametrize("shape,scale,tile,halo,blend", [((128, 128), 8, 32, 48, 16), ((200, 136), 8, 48, 16, 8),
                                                        ((96, 160), 4, 20, 8, 8)])
def test_tiles_cover_the_grid_and_their_weights_sum_to_one(shape, scale, tile, halo, blend):
    tiles = plan_tiles(shape, scale, tile, halo, blend)
    total = np.zeros(shape)
    for t in tiles:
        for sl in t.core + t.window + t.keep:
            assert sl.start % scale == 0 and sl.stop % scale == 0 or sl.stop in shape
        total[t.keep] += blend_weights(t, shape, blend)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert len(tiles) >= 4


@pytest.mark.parametrize("method,opts,tol", [
    ("bicubic", {}, 1e-6),
    ("fast", {}, 0.05),
    ("unsupervised", {"refits": 2, "steps": 5, "patch": 32}, 0.15),
    ("msfn", {}, 0.1),
    ("blind", {"solver": "fast"}, 0.3),
])
def test_tiled_equals_whole_frame(pair, method, opts, tol):
    """4 tiles of 64 HR pixels with the default halo: the same PSNR as the whole frame within
    ``tol`` dB (bicubic: the same values). The subspace, prior choice, gains and blind's estimate
    are the scene's."""
    whole = hsisr.fuse(pair.hr, pair.lr, pair.degradation, method=method, device="cpu", **opts)
    steps = []
    tiled = fuse_tiled(pair.hr, pair.lr, pair.degradation, method=method, tile=64, device="cpu",
                       progress=steps.append, **opts)
    assert tiled.settings["tiling"]["tiles"] == 4
    assert any(p.message.startswith("tile 4/4") for p in steps)  # progress per tile
    if method == "bicubic":
        np.testing.assert_allclose(np.asarray(tiled.cube), whole.cube, atol=1e-5)
    assert abs(_psnr(tiled.cube, pair) - _psnr(whole.cube, pair)) < tol
    # the fit, from the tiles, tells the same story as the whole frame's
    assert tiled.settings["fit"]["lr"]["relative"] < 1.2 * whole.settings["fit"]["lr"]["relative"] + 1e-3


@pytest.mark.parametrize("method,opts", [("fast", {}), ("msfn", {}), ("unsupervised", {"refits": 2, "steps": 0})])
def test_tiled_values_equal_the_whole_frame(pair, method, opts):
    """16 tiles of 32 HR pixels: every value within 1e-3 of the whole frame's (measured 2.1e-4,
    2.3e-4 and 2.6e-6), not just the PSNR. The guided prior and the refits of every tile are
    regularised with the scene's guide variances: with each tile's own, values moved by up to
    1.1e-2 (fast) and 4.4e-3 (msfn) here, and the refits by 9.4e-3 (256^2, 64-pixel tiles)."""
    whole = hsisr.fuse(pair.hr, pair.lr, pair.degradation, method=method, device="cpu", **opts)
    tiled = fuse_tiled(pair.hr, pair.lr, pair.degradation, method=method, tile=32, device="cpu", **opts)
    assert tiled.settings["tiling"]["tiles"] == 16
    assert np.abs(np.asarray(tiled.cube) - whole.cube).max() < 1e-3
    assert abs(_psnr(tiled.cube, pair) - _psnr(whole.cube, pair)) < 0.005


def test_dark_and_nodata_tiles_do_not_stop_a_scene(pair):
    """A scene's tiles may be dark (noise around zero) or wholly nodata where the scene as a whole
    is fine: the run goes on (it refused both before), a nodata tile's result is 0 and counted."""
    rng = np.random.default_rng(0)
    dark = pair.reference.copy()
    dark[:, :, :64] *= 0.05
    hr, lr = hsisr.simulate(dark, pair.degradation, seed=0)
    hr = hr + rng.normal(0, 0.003, hr.shape).astype(np.float32)  # negative values in the dark tiles
    lr = lr + rng.normal(0, 0.003, lr.shape).astype(np.float32)
    whole = hsisr.fuse(hr, lr, pair.degradation, method="fast")
    tiled = fuse_tiled(hr, lr, pair.degradation, method="fast", tile=32)
    assert np.abs(np.asarray(tiled.cube) - whole.cube).max() < 1e-3  # measured 1.9e-4

    hr, lr = pair.hr.copy(), pair.lr.copy()
    hr[:, :88], lr[:, :, :11] = 0, 0  # a flight line's nodata wedge over whole tiles
    tiled = fuse_tiled(hr, lr, pair.degradation, method="fast", tile=32)
    cube = np.asarray(tiled.cube)
    assert tiled.settings["tiling"]["tiles_without_data"] == 4  # the first column: windows 0..80
    assert np.isfinite(cube).all() and not cube[:, :, :16].any()  # beyond 16, the neighbours' ramps
    assert any("no valid HR or LR pixel" in n for n in tiled.settings["estimation_notes"])
    ref = hsisr.evaluate(cube[:, :, 96:], pair.reference[:, :, 96:])["psnr"]
    assert ref > 40  # the observed part is fused (measured 44.0 dB)


def test_a_float_images_clipping_level_is_the_scenes(pair):
    """A float HR image clips where a plateau of pixels shares the maximum. A tile must use the
    scene's maximum: a corner whose own maximum is a plateau (here 0.3, the scene reaching 0.77)
    was masked as saturated in its tiles (values off by up to 0.39; measured 3.1e-4 now)."""
    hr = pair.hr.astype(np.float32).copy()
    hr[:80, :80] = np.minimum(hr[:80, :80], 0.3)
    whole = hsisr.fuse(hr, pair.lr, pair.degradation, method="fast")
    tiled = fuse_tiled(hr, pair.lr, pair.degradation, method="fast", tile=32)
    assert np.abs(np.asarray(tiled.cube) - whole.cube).max() < 1e-3


def test_tiled_gsa_adapts_locally_and_is_not_worse(pair):
    """GSA's injection gains are fitted per tile (a local GSA): not equal to the global one, and
    not worse."""
    whole = hsisr.fuse(pair.hr, pair.lr, pair.degradation, method="gsa")
    tiled = fuse_tiled(pair.hr, pair.lr, pair.degradation, method="gsa", tile=32)
    assert _psnr(tiled.cube, pair) > _psnr(whole.cube, pair) - 0.1


def test_zarr_result_round_trips_and_a_stopped_run_leaves_nothing(pair, tmp_path):
    from napari_hsisr._reader import napari_get_reader
    from napari_hsisr.core.io import open_cube_lazy, read_cube

    out = tmp_path / "result.zarr"
    res = fuse_tiled(pair.hr, pair.lr, pair.degradation, tile=32, out=str(out))
    back = read_cube(out)
    np.testing.assert_allclose(back.wavelengths, pair.degradation.wavelengths)
    np.testing.assert_array_equal(back.data, np.asarray(res.cube))
    assert back.metadata["settings"]["tiling"]["tiles"] == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.zarr"]  # no temporaries left
    # napari opens it as a lazy (dask) layer with its wavelengths
    data, kwargs, kind = napari_get_reader(str(out))(str(out))[0]
    assert type(data).__module__.startswith("dask") and data.shape == (31, 128, 128) and kind == "image"
    assert kwargs["metadata"]["wavelengths"][0] == 400
    # stopped after the second tile: nothing at the new path, no temporary
    gen = fuse_tiled_iter(pair.hr, pair.lr, pair.degradation, tile=32, out=str(tmp_path / "stopped.zarr"))
    for p in gen:
        if p.message.startswith("tile 2/"):
            break
    gen.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.zarr"]
    assert open_cube_lazy(out).data.shape == (31, 128, 128)


def _check_ngff_05(store):
    """The OME-NGFF 0.5 rules a multiscale image must follow (zarr.json of a Zarr v3 group)."""
    import json

    group = json.loads((store / "zarr.json").read_text())
    assert group["zarr_format"] == 3 and group["node_type"] == "group"
    ome = group["attributes"]["ome"]
    assert ome["version"] == "0.5" and len(ome["multiscales"]) == 1
    ms = ome["multiscales"][0]
    assert [(a["name"], a["type"]) for a in ms["axes"]] == [("c", "channel"), ("y", "space"), ("x", "space")]
    previous = None
    for d in ms["datasets"]:
        array = json.loads((store / d["path"] / "zarr.json").read_text())
        assert array["node_type"] == "array" and len(array["shape"]) == len(ms["axes"])
        assert array["dimension_names"] == ["c", "y", "x"]
        (transform,) = d["coordinateTransformations"]
        assert transform["type"] == "scale" and len(transform["scale"]) == 3
        if previous is not None:  # ordered from the largest to the smallest
            assert transform["scale"][1] > previous[1] and array["shape"][1] < previous[0]
        previous = (array["shape"][1], transform["scale"][1])
    return group["attributes"], [d["path"] for d in ms["datasets"]]


def test_ome_zarr_result_is_a_multiscale_image(pair, tmp_path, monkeypatch):
    """An OME-Zarr (NGFF 0.5) multiscale image: level 0 equals the in-memory tiled result (chunks
    that straddle rows of tiles are written, read back and completed), the lower levels are 2x2
    means, our wavelengths and settings are kept, and napari opens it as a multiscale layer."""
    import zarr

    from napari_hsisr._reader import napari_get_reader
    from napari_hsisr.core import tiled_output
    from napari_hsisr.core.io import ome_zarr as io, read_cube

    monkeypatch.setattr(io, "PYRAMID_MIN", 64)  # 128 -> 64 -> 32, as 4096 -> ... -> 512 in use
    monkeypatch.setattr(tiled_output, "CHUNK", 48)  # chunks that no tile edge falls on
    memory = np.asarray(fuse_tiled(pair.hr, pair.lr, pair.degradation, tile=32).cube)
    out = tmp_path / "result.zarr"
    res = fuse_tiled(pair.hr, pair.lr, pair.degradation, tile=32, out=str(out))
    attrs, paths = _check_ngff_05(out)
    assert paths == ["0", "1", "2"] and attrs["wavelengths"][0] == 400 and attrs["settings"]["tiling"]["tiles"] == 16
    levels = [np.asarray(zarr.open_array(str(out / p), mode="r")) for p in paths]
    assert [a.shape for a in levels] == [(31, 128, 128), (31, 64, 64), (31, 32, 32)]
    assert zarr.open_array(str(out / "0"), mode="r").chunks == (31, 48, 48)
    np.testing.assert_array_equal(levels[0], memory)
    np.testing.assert_array_equal(np.asarray(res.cube), memory)
    for big, small in zip(levels, levels[1:]):
        np.testing.assert_allclose(small, big.reshape(31, small.shape[1], 2, small.shape[2], 2).mean(axis=(2, 4)),
                                   rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(read_cube(out).data, memory)  # readers take level 0
    layers, kwargs, kind = napari_get_reader(str(out))(str(out))[0]
    assert kwargs["multiscale"] and kind == "image" and [lv.shape for lv in layers] == [a.shape for a in levels]
    assert all(type(lv).__module__.startswith("dask") for lv in layers)
    assert kwargs["metadata"]["wavelengths"][:2] == [400.0, 410.0]


def test_tiled_bigtiff_result_streams_and_a_stopped_run_leaves_nothing(pair, tmp_path, monkeypatch):
    """out='x.tif': a tiled OME BigTIFF written tile by tile, equal to the in-memory tiled result,
    read back with its wavelengths and settings; a stopped run leaves nothing at the path."""
    import tifffile

    from napari_hsisr.core import tiled_output
    from napari_hsisr.core.io import read_cube

    monkeypatch.setattr(tiled_output, "CHUNK", 48)  # TIFF tiles are multiples of 16
    memory = np.asarray(fuse_tiled(pair.hr, pair.lr, pair.degradation, tile=32).cube)
    out = tmp_path / "result.tif"
    res = fuse_tiled(pair.hr, pair.lr, pair.degradation, tile=32, out=str(out))
    with tifffile.TiffFile(out) as tif:
        assert tif.is_bigtiff and tif.is_ome and tif.pages[0].is_tiled and tif.pages[0].tilelength == 48
    back = read_cube(out)
    np.testing.assert_array_equal(back.data, memory)
    np.testing.assert_array_equal(np.asarray(res.cube), memory)
    np.testing.assert_allclose(back.wavelengths, pair.degradation.wavelengths)
    assert back.metadata["settings"]["tiling"]["tiles"] == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.tif"]  # no temporaries left
    gen = fuse_tiled_iter(pair.hr, pair.lr, pair.degradation, tile=32, out=str(out))  # would replace it
    for p in gen:
        if p.message.startswith("tile 3/"):
            break
    gen.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.tif"]
    np.testing.assert_array_equal(read_cube(out).data, memory)  # the old result is untouched


def test_lazy_inputs_give_the_same_result(pair, tmp_path):
    """A tiled TIFF image and a TIFF cube opened lazily (read tile by tile) fuse like arrays."""
    import tifffile

    from napari_hsisr.core.io import open_cube_lazy, open_image_lazy, write_tiff

    hr8 = (np.clip(pair.hr, 0, 1) * 255).round().astype(np.uint8)
    tifffile.imwrite(tmp_path / "hr.tif", hr8, photometric="rgb", tile=(32, 32), compression="zlib")
    write_tiff(tmp_path / "lr.tif", pair.lr, wavelengths=pair.degradation.wavelengths)
    hr_lazy, lr_lazy = open_image_lazy(tmp_path / "hr.tif"), open_cube_lazy(tmp_path / "lr.tif")
    assert not isinstance(hr_lazy, np.ndarray) and isinstance(lr_lazy.data, np.memmap)  # decoded / mapped
    deg = pair.degradation.with_(hr_encoding="linear")
    a = fuse_tiled(hr_lazy, lr_lazy.data, deg, tile=32)
    b = fuse_tiled(hr8, pair.lr, deg, tile=32)
    np.testing.assert_allclose(np.asarray(a.cube), np.asarray(b.cube), atol=1e-6)


def test_an_uncompressed_tiff_is_memory_mapped_read_only_and_a_compressed_one_decoded(pair, tmp_path):
    """A window of a mapped file costs no decoding (a float image written as one strip was decoded
    whole for every window through zarr); the map cannot write to the user's file."""
    import tifffile

    from napari_hsisr.core.io import open_cube_lazy, open_image_lazy, write_tiff

    hr = pair.hr.astype(np.float32)
    tifffile.imwrite(tmp_path / "plain.tif", hr, photometric="rgb")
    tifffile.imwrite(tmp_path / "zlib.tif", hr, photometric="rgb", compression="zlib")
    write_tiff(tmp_path / "lr.tif", pair.lr, wavelengths=pair.degradation.wavelengths)
    plain, packed = open_image_lazy(tmp_path / "plain.tif"), open_image_lazy(tmp_path / "zlib.tif")
    assert isinstance(plain, np.memmap) and not plain.flags.writeable and not isinstance(packed, np.ndarray)
    np.testing.assert_array_equal(plain[8:40, 16:48], hr[8:40, 16:48])
    np.testing.assert_array_equal(np.asarray(packed[8:40, 16:48]), hr[8:40, 16:48])
    lr = open_cube_lazy(tmp_path / "lr.tif").data
    assert isinstance(lr, np.memmap) and lr.shape == pair.lr.shape
    np.testing.assert_allclose(np.asarray(lr), pair.lr, rtol=1e-6)


def test_tiles_refuse_what_they_cannot_do(pair, monkeypatch):
    from napari_hsisr.core.methods import base

    whole = base.MethodInfo("whole-only", base.get_method("fast").run, "learns from the whole pair",
                            whole_frame_only="whole-only learns from the whole pair and cannot run in tiles.")
    monkeypatch.setitem(base._REGISTRY, "whole-only", whole)
    with pytest.raises(InputError, match="cannot run in tiles"):
        fuse_tiled(pair.hr, pair.lr, pair.degradation, method="whole-only", tile=32)
    with pytest.raises(InputError, match="at least 4 LR pixels"):
        fuse_tiled(pair.hr, pair.lr, pair.degradation, tile=16)
    with pytest.raises(InputError, match="Zarr store or a TIFF"):
        fuse_tiled(pair.hr, pair.lr, pair.degradation, tile=32, out="result.h5")
    with pytest.raises(InputError, match="grid='hr'"):
        hsisr.fuse(pair.hr, pair.lr, pair.degradation, tile=32, grid="lr")


# ---------------------------------------------------------------------- many pairs on dask.distributed
def _write_pairs(folder, n=3):
    import tifffile

    from napari_hsisr.core.io import write_tiff

    rows = ["name,hr,lr,method,scale,psf_sigma,hr_encoding,options"]
    for i in range(n):
        p = sample_pair(size=64, scale=4)
        tifffile.imwrite(folder / f"hr{i}.tif", (np.clip(p.hr, 0, 1) * 255).round().astype(np.uint8), photometric="rgb")
        write_tiff(folder / f"lr{i}.tif", p.lr, wavelengths=p.degradation.wavelengths)
        lr = f"lr{i}.tif" if i != 1 else "missing.tif"  # the second pair is broken
        rows.append(f"p{i},hr{i}.tif,{lr},fast,4,1.0,linear,rank=8")
    (folder / "pairs.csv").write_text("\n".join(rows) + "\n")
    return folder / "pairs.csv"


@pytest.fixture(scope="module")
def cluster():
    """A client of one local cluster (2 single-threaded worker processes) that the module's cluster
    tests share: starting one, and the engine's imports in its workers, take seconds."""
    from napari_hsisr.core.parallel import dask_client

    with dask_client(workers=2) as client:  # as the CLI's --workers starts one
        yield client


def test_batch_on_a_local_cluster_reports_failures_and_skips_done_pairs(tmp_path, cluster):
    import json
    import os
    import subprocess
    import sys

    from napari_hsisr.core.batch import fuse_many, read_manifest, summary_table
    from napari_hsisr.core.io import read_cube

    manifest = _write_pairs(tmp_path)
    # each output equals the same pair fused in a fresh process with two BLAS threads (the workers
    # run one). Fresh: after a fusion run by the Fusion dock in the same process (earlier GUI tests),
    # `fast` was seen to differ by up to 3e-7 (1 ulp) on 26 % of the values: the BLAS pin had stopped
    # working after the dock's worker thread restored a threadpoolctl limit (fixed in
    # parallel.limited, test_determinism); a fresh process stays the stricter comparison.
    # Started first: it runs while the cluster fuses.
    single = tmp_path / "single"
    single.mkdir()
    row = read_manifest(manifest)[0]
    code = ("import json, sys; from napari_hsisr.core.batch import fuse_pair; "
            "print(fuse_pair(json.loads(sys.argv[1]), sys.argv[2]).status)")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}
    fresh = subprocess.Popen([sys.executable, "-c", code, json.dumps(row), str(single)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = tmp_path / "out"
    out.mkdir()
    seen = []
    first = fuse_many(manifest, out, client=cluster, progress=lambda d, t, o: seen.append((d, t, o.name)))
    assert [o.status for o in first] == ["done", "failed", "done"]
    assert "missing.tif" in first[1].message and len(seen) == 3 and seen[-1][:2] == (3, 3)
    again = fuse_many(manifest, out, client=cluster)
    assert [o.status for o in again] == ["skipped", "failed", "skipped"]
    assert sorted(p.name for p in out.iterdir()) == ["p0.tif", "p2.tif"]
    stdout, stderr = fresh.communicate(timeout=300)
    assert stdout.strip().splitlines()[-1] == "done", stderr[-2000:]
    np.testing.assert_array_equal(read_cube(out / "p0.tif").data, read_cube(single / "p0.tif").data)
    assert "| p1 | failed |" in summary_table(first)


def test_manifest_errors_are_one_line(tmp_path):
    from napari_hsisr.core.batch import read_manifest

    (tmp_path / "bad.csv").write_text("name,hr,lr,colour\na,x.tif,y.tif,red\n")
    with pytest.raises(InputError, match="unknown column"):
        read_manifest(tmp_path / "bad.csv")
    (tmp_path / "dup.yaml").write_text("- {name: a, hr: x.tif, lr: y.tif}\n- {name: a, hr: z.tif, lr: w.tif}\n")
    with pytest.raises(InputError, match="names must be unique"):
        read_manifest(tmp_path / "dup.yaml")
    (tmp_path / "nolr.csv").write_text("name,hr\na,x.tif\n")
    with pytest.raises(InputError, match="no 'lr' path"):
        read_manifest(tmp_path / "nolr.csv")


def test_one_scenes_tiles_on_a_local_cluster_equal_the_tiles_in_process(pair, tmp_path, cluster):
    """fuse(..., client=): tiles as tasks on 2 worker processes, blended and written here; the same
    cube (to 1e-5) and fit as the tiles fused in this process; a progress report per finished
    tile; a stopped run cancels what is pending and leaves nothing at ``out``."""
    here = hsisr.fuse(pair.hr, pair.lr, pair.degradation, tile=32)
    seen = []
    there = hsisr.fuse(pair.hr, pair.lr, pair.degradation, tile=32, client=cluster, progress=seen.append,
                       out=str(tmp_path / "there.zarr"))  # written here, in the order the tiles finish
    steps = [p.step for p in seen]
    assert steps == sorted(steps) and sum("on the cluster" in p.message for p in seen) == 16
    assert there.settings["tiling"]["workers"] == 2 and there.settings["tiling"]["tiles"] == 16
    assert there.settings["device"] == here.settings["device"] == "cpu"  # where the tiles ran, not "auto"
    (tmp_path / "stop").mkdir()
    gen = hsisr.fuse_iter(pair.hr, pair.lr, pair.degradation, tile=32, client=cluster,
                          out=str(tmp_path / "stop" / "stopped.zarr"))
    for p in gen:
        if "on the cluster" in p.message:
            break
    gen.close()
    assert not any((tmp_path / "stop").iterdir())
    np.testing.assert_allclose(np.asarray(there.cube), np.asarray(here.cube), atol=1e-5, rtol=0)
    assert there.settings["fit"] == here.settings["fit"]


def test_a_cluster_started_in_the_background_is_waited_for_and_its_failure_stops_the_run(pair, tmp_path,
                                                                                        monkeypatch):
    """dask_client_soon (the CLI's --workers, --scheduler): the run computes its scene context while
    the cluster starts and waits for it before the tiles; a cluster that fails to start stops the
    run with that error, leaves nothing at ``out``, and the context still exits."""
    from contextlib import contextmanager

    from napari_hsisr.core import parallel, tiling

    calls = []
    scene_context = tiling.scene_context

    def counted(*args, **kwargs):
        calls.append("scene context")
        return (yield from scene_context(*args, **kwargs))

    @contextmanager
    def unreachable(*args, **kwargs):
        calls.append("cluster start")
        raise OSError("Timed out trying to connect to tcp://10.0.0.5:8786")
        yield  # a context manager that never yields

    monkeypatch.setattr(tiling, "scene_context", counted)
    monkeypatch.setattr(parallel, "dask_client", unreachable)
    with parallel.dask_client_soon(scheduler="tcp://10.0.0.5:8786") as soon:
        with pytest.raises(OSError, match="10.0.0.5:8786"):
            hsisr.fuse(pair.hr, pair.lr, pair.degradation, tile=32, client=soon, out=str(tmp_path / "out.tif"))
    assert sorted(calls) == ["cluster start", "scene context"] and not any(tmp_path.iterdir())


def test_automatic_tiles_on_a_cluster_do_not_depend_on_the_workers():
    """tile='auto' with a client: at least 16 tiles on a 2048^2 scene (so 2 workers share them),
    never larger than what memory allows, never under 32 LR pixels; no worker count involved."""
    from napari_hsisr.core.api import _tile_for_cluster
    from napari_hsisr.core.tiling import plan_tiles

    tile = _tile_for_cluster((2048, 2048), 744, 8)
    assert len(plan_tiles((2048, 2048), 8, tile, 32, 16)) >= 16
    assert _tile_for_cluster((2048, 2048), 200, 8) == 200  # memory's size is the limit
    assert _tile_for_cluster((512, 512), 1024, 8) == 256  # 32 LR pixels at least


@pytest.mark.parametrize("suffix", [".zarr", ".tif"])
def test_tiles_written_in_any_order_sum_as_in_memory(tmp_path, monkeypatch, suffix):
    """A cluster's tiles come as they finish: the chunk sums on disk equal the in-memory sum
    whatever the order (a chunk was written early, and its other tiles lost, when a later tile
    came first)."""
    from napari_hsisr.core import tiled_output
    from napari_hsisr.core.tiled_output import make_output

    monkeypatch.setattr(tiled_output, "CHUNK", 48)
    shape, rng = (3, 160, 192), np.random.default_rng(0)
    tiles = plan_tiles(shape[1:], 8, 48, 16, 8)
    pieces = [rng.random((3,) + tuple(k.stop - k.start for k in t.keep), dtype=np.float32) for t in tiles]
    memory = make_output(shape, None, [t.keep for t in tiles])
    disk = make_output(shape, str(tmp_path / f"out{suffix}"), [t.keep for t in tiles])
    for i in rng.permutation(len(tiles)):
        memory.add(int(i), tiles[i].keep, pieces[i])
        disk.add(int(i), tiles[i].keep, pieces[i])
    np.testing.assert_allclose(np.asarray(disk.commit({"wavelengths": None, "settings": {}})), memory.commit({}),
                               atol=1e-6)
