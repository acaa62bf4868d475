"""The output policy (core/outputs.py): nothing a user has is lost, whatever the command, the name,
the signal or the disk; temporaries never stay. Every bad command runs under ``nothing_lost``: the
working folder's files are hashed before and after."""

import contextlib
import errno
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from nothing_lost import nothing_lost, snapshot

from napari_hsisr.cli import main
from napari_hsisr.core.errors import InputError
from napari_hsisr.core.io import read_cube, write_tiff, write_zarr
from napari_hsisr.core.outputs import confine_name, remove_stale, result_kind
from napari_hsisr.core.srf import NIKON_D700_CAVE

DEG = ["--scale", "8", "--psf", "gaussian", "--psf-sigma", "2", "--srf", NIKON_D700_CAVE]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A simulated 128 x 128 pair (x8: LR 16 x 16, 31 bands), a fused result, a foreign TIFF."""
    import tifffile

    from napari_hsisr.core.sample import sample_scene

    folder = tmp_path_factory.mktemp("pair")
    ref, wl = sample_scene(128)
    write_tiff(folder / "ref.tif", ref, wavelengths=wl)
    assert main(["simulate", str(folder / "ref.tif"), "--out-hr", str(folder / "hr.tif"), "--out-lr",
                 str(folder / "lr.tif"), *DEG]) == 0
    assert main(["fuse", "--hr", str(folder / "hr.tif"), "--lr", str(folder / "lr.tif"), "--out",
                 str(folder / "fused.tif")]) == 0
    tifffile.imwrite(folder / "camera.tif", np.full((8, 8), 7, np.uint16))  # someone else's file
    (folder / "ref.tif").unlink()
    return folder


@pytest.fixture
def work(made, tmp_path, monkeypatch):
    """A fresh copy of the pair as the working folder (the current directory)."""
    for name in ("hr.tif", "lr.tif", "fused.tif", "camera.tif"):
        shutil.copy(made / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _fuse(work, out, *more):
    return ["fuse", "--hr", str(work / "hr.tif"), "--lr", str(work / "lr.tif"), "--out", str(out), *more]


# ---------------------------------------------------------------------- the policy, piece by piece
@pytest.mark.parametrize("name", ["", " ", ".", "..", "../hr", "a/b", "a\\b", ".hidden", "x\x00y", "/etc/passwd"])
def test_names_are_confined_to_their_folder(name):
    with pytest.raises(InputError, match="plain file name"):
        confine_name(name)


def test_what_is_ours(work):
    import tifffile

    assert result_kind(work / "fused.tif") == "fused"
    assert result_kind(work / "lr.tif") == "ours" and result_kind(work / "hr.tif") == "ours"  # simulated: inputs
    assert result_kind(work / "camera.tif") is None
    (work / "empty.tif").write_bytes(b"")
    assert result_kind(work / "empty.tif") == "empty"
    (work / "junk.tif").write_bytes(b"II*\x00" + b"\x00" * 20)
    assert result_kind(work / "junk.tif") is None
    tifffile.imwrite(work / "described.tif", np.zeros((4, 4), np.uint8), description='{"other": 1}')
    assert result_kind(work / "described.tif") is None
    write_zarr(np.ones((2, 8, 8), np.float32), work / "r.zarr", settings={"method": "fast"})
    assert result_kind(work / "r.zarr") == "fused"
    (work / "r.zarr" / "thesis.txt").write_text("mine")  # a user's file inside: no longer ours to delete
    assert result_kind(work / "r.zarr") is None
    (work / "notes.zarr").mkdir()
    assert result_kind(work / "notes.zarr") is None


def test_writers_replace_only_results_of_ours(work):
    cube = np.ones((2, 8, 8), np.float32)
    with nothing_lost(work, may_write=["new.tif", "fused.tif"]):
        with pytest.raises(InputError, match="did not write"):
            write_tiff(work / "camera.tif", cube)
        with pytest.raises(InputError, match="not a fusion result"):  # a fusion result over a simulated input
            write_tiff(work / "lr.tif", cube, settings={"method": "fast"})
        with pytest.raises(InputError, match="is an input"):
            write_tiff(work / "new.tif", cube, inputs=[work / "new.tif"])
        write_tiff(work / "fused.tif", cube, settings={"method": "fast"})  # ours: replaced
        write_tiff(work / "new.tif", cube)
    assert read_cube(work / "fused.tif").data.shape == (2, 8, 8)


def test_an_output_through_a_symbolic_link_is_written_where_it_points(work):
    """A link to a folder (a Zarr result elsewhere) or a file: the result goes there, the link stays,
    and no '.old' is left beside either."""
    (work / "store").mkdir()
    write_zarr(np.zeros((2, 8, 8), np.float32), work / "store" / "r.zarr", settings={"method": "fast"})
    (work / "link.zarr").symlink_to(work / "store" / "r.zarr")
    write_zarr(np.ones((2, 8, 8), np.float32), work / "link.zarr", settings={"method": "fast"})
    assert (work / "link.zarr").is_symlink() and read_cube(work / "store" / "r.zarr").data.max() == 1
    (work / "link.tif").symlink_to(work / "fused.tif")
    write_tiff(work / "link.tif", np.full((2, 8, 8), 3, np.float32), settings={"method": "fast"})
    assert (work / "link.tif").is_symlink() and read_cube(work / "fused.tif").data.max() == 3
    assert main(_fuse(work, work / "link.zarr", "--tile", "32")) == 0  # the CLI's tiled result too
    assert (work / "link.zarr").is_symlink() and read_cube(work / "store" / "r.zarr").data.shape == (31, 128, 128)
    leftovers = [p.name for d in (work, work / "store") for p in d.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_what_a_killed_writer_left_goes_at_the_next_write(work):
    """SIGKILL leaves named temporaries; the next run writing there removes those of dead
    processes (a temporary store, a summing store, an .old store, a temporary file), not a live one's."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    for tag in ("tmp.zarr", "sums.zarr", "old"):
        store = work / f".out.zarr.{dead}-0123456789ab.{tag}"
        (store / "0" / "c").mkdir(parents=True)
        (store / "0" / "c" / "0").write_bytes(b"x" * 1000)
    (work / f".out.zarr.{dead}-0123456789ab.tmp.tif").write_bytes(b"half")
    live = work / f".out.zarr.{os.getpid()}-0123456789ab.tmp.zarr"
    live.mkdir()
    write_zarr(np.ones((2, 8, 8), np.float32), work / "out.zarr")
    assert sorted(p.name for p in work.iterdir() if p.name.startswith(".")) == [live.name]
    live.rmdir()
    assert remove_stale(work / "out.zarr") == []


# ---------------------------------------------------------------------- the issue's data losses
def test_fuse_out_on_a_folder_that_is_not_a_result_is_refused(work, capsys):
    """--out notes.zarr (and fuse(out=...), write_zarr) on a folder holding a user's files: one line,
    exit 2, the folder untouched. It was deleted, with exit 0."""
    import napari_hsisr as hsisr

    notes = work / "notes.zarr"
    (notes / "sub").mkdir(parents=True)
    (notes / "thesis.txt").write_text("four years")
    (notes / "sub" / "raw.bin").write_bytes(os.urandom(1000))
    with nothing_lost(work):
        assert main(_fuse(work, notes, "--tile", "32")) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "did not write" in err, err
        assert main(_fuse(work, notes)) == 2  # a .zarr --out is tiled even without --tile
        capsys.readouterr()
        with pytest.raises(InputError, match="did not write"):
            write_zarr(np.ones((2, 8, 8), np.float32), notes)
        lr, hr = read_cube(work / "lr.tif"), read_cube(work / "hr.tif")
        deg = hsisr.Degradation(scale=8, psf_sigma=2, wavelengths=lr.wavelengths)
        with pytest.raises(InputError, match="did not write"):
            hsisr.fuse(np.moveaxis(hr.data, 0, -1), lr.data, deg, tile=32, out=str(notes))


def test_fuse_out_on_an_input_is_refused_from_python(work, capsys):
    """fuse(out=<an input>): the lazy input's own file (same inode), and a simulated cube read into
    memory (ours, but not a fusion result) are refused; nothing changes."""
    import napari_hsisr as hsisr
    from napari_hsisr.core.io import open_cube_lazy, open_image_lazy

    lr = read_cube(work / "lr.tif")
    deg = hsisr.Degradation(scale=8, psf_sigma=2, wavelengths=lr.wavelengths)
    hr = np.moveaxis(read_cube(work / "hr.tif").data, 0, -1)
    os.link(work / "lr.tif", work / "lr_hardlink.tif")
    write_zarr(lr.data, work / "lr.zarr", wavelengths=lr.wavelengths, settings={"method": "fast"})  # a result as input
    with nothing_lost(work):
        lazy = open_cube_lazy(work / "lr.tif")
        with pytest.raises(InputError, match="is an input"):
            hsisr.fuse(hr, lazy.data, deg, tile=32, out=str(work / "lr_hardlink.tif"))
        with pytest.raises(InputError, match="is an input"):
            hsisr.fuse(open_image_lazy(work / "hr.tif"), lr.data, deg, tile=32, out=str(work / "hr.tif"))
        with pytest.raises(InputError, match="not a fusion result"):
            hsisr.fuse(hr, lr.data, deg, tile=32, out=str(work / "lr.tif"))
        with pytest.raises(InputError, match="is an input"):  # its level 0 read lazily: inside the store
            hsisr.fuse(hr, open_cube_lazy(work / "lr.zarr").data, deg, tile=32, out=str(work / "lr.zarr"))
        assert main(_fuse(work, work / "lr_hardlink.tif")) == 2  # the CLI compares inodes too
    assert "is an input" in capsys.readouterr().err


def _manifest(work, rows, name="pairs.csv"):
    (work / name).write_text("name,hr,lr,scale,psf_sigma\n" + "".join(f"{n},{h},{lr},8,2\n" for n, h, lr in rows))
    return work / name


def test_batch_names_cannot_reach_inputs(work, capsys):
    """Batch outputs checked before any work starts: a name naming an input (empty names used to be
    the LR stem: with --out . the result replaced the LR input), '../hr', two rows with one output,
    a foreign file in the way: one line, exit 2, nothing written."""
    (work / "sub").mkdir()
    cases = [
        ([("lr", "hr.tif", "lr.tif")], "is pair 'lr''s input", "."),
        ([("../hr", "hr.tif", "lr.tif")], "plain file name", "sub"),
        ([("a", "hr.tif", "lr.tif"), ("A", "hr.tif", "lr.tif")], "names must be unique", "."),
        ([("camera", "hr.tif", "lr.tif")], "did not write", "."),
        ([("lr", "hr.tif", "lr.tif")], "is pair 'lr''s input", "sub/.."),
        ([("hr2", "hr.tif", "lr.tif")], "not a fusion result", "."),
    ]
    shutil.copy(work / "hr.tif", work / "hr2.tif")  # a simulated image, not an input here: still not replaced
    for rows, message, out in cases:
        manifest = _manifest(work, rows)
        with nothing_lost(work):
            assert main(["batch", str(manifest), "--out", out, "--workers", "1"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_batch_with_empty_names_into_the_inputs_folder_loses_nothing(work, capsys):
    """The issue's case: empty names, --out . (the inputs' folder). The default name is the LR stem
    + '_fused', so the LR file stays; both pairs are done and a rerun skips them."""
    shutil.copy(work / "lr.tif", work / "lr2.tif")
    manifest = _manifest(work, [("", "hr.tif", "lr.tif"), ("", "hr.tif", "lr2.tif")])
    with nothing_lost(work, may_write=["lr_fused.tif", "lr2_fused.tif"]):
        assert main(["batch", str(manifest), "--out", ".", "--workers", "1"]) == 0
    assert "2 done" in capsys.readouterr().err
    assert read_cube(work / "lr_fused.tif").data.shape == (31, 128, 128)
    with nothing_lost(work):
        assert main(["batch", str(manifest), "--out", ".", "--workers", "1"]) == 0
    assert "2 skipped" in capsys.readouterr().err


def test_batch_rerun_redoes_a_damaged_or_different_output(work):
    """A kept output must read back whole and record the same request (row, seed, inputs): a
    truncated one, or one made with another seed, is redone in place."""
    from napari_hsisr.core.batch import fuse_pair, read_manifest

    (row,) = read_manifest(_manifest(work, [("p", "hr.tif", "lr.tif")]))
    (work / "out").mkdir()
    assert fuse_pair(row, str(work / "out")).status == "done"
    good, values = (work / "out" / "p.tif").read_bytes(), read_cube(work / "out" / "p.tif").data
    assert fuse_pair(row, str(work / "out")).status == "skipped"
    for cut in (len(good) - 100, len(good) // 2, 20000):  # into the last directory, the pixels, the first
        (work / "out" / "p.tif").write_bytes(good[:cut])
        outcome = fuse_pair(row, str(work / "out"))
        assert outcome.status == "done", (cut, outcome.message)
        np.testing.assert_array_equal(read_cube(work / "out" / "p.tif").data, values)
    # cut inside our metadata, it can no longer be told from someone else's file: not kept, not replaced
    (work / "out" / "p.tif").write_bytes(good[:4096])
    with nothing_lost(work):
        outcome = fuse_pair(row, str(work / "out"))
    assert outcome.status == "failed" and "cannot read back" in outcome.message
    (work / "out" / "p.tif").write_bytes(good)
    assert fuse_pair(row, str(work / "out"), seed=1).status == "done"  # another request: redone


# ---------------------------------------------------------------------- clipping
def test_uint16_output_keeps_physical_values(work, capsys):
    """--dtype uint16 on a cube in physical units: every level kept (it was clipped to 1: 7
    distinct values), the scale stored and undone by read_cube."""
    lr = read_cube(work / "lr.tif")
    write_tiff(work / "radiance.tif", lr.data * 4000, wavelengths=lr.wavelengths, settings=lr.metadata["settings"])
    args = ["fuse", "--hr", str(work / "hr.tif"), "--lr", str(work / "radiance.tif"), "--out", str(work / "u.tif")]
    assert main([*args, "--dtype", "uint16"]) == 0
    assert main([*args[:-1], str(work / "f.tif")]) == 0
    u, f = read_cube(work / "u.tif"), read_cube(work / "f.tif")
    assert f.data.max() > 100 and u.metadata["value_scale"] > 1 / 65535
    assert np.abs(u.data - f.data).max() <= u.metadata["value_scale"]  # within a step, nothing clipped
    assert np.unique(u.data).size > 1000


def test_integer_inputs_say_how_they_were_scaled(work, capsys):
    """12-bit data stored in uint16 come out at 1/16 of their level: a note says so and how to scale
    them; the scale used is recorded with the result."""
    import tifffile

    lr = read_cube(work / "lr.tif")
    tifffile.imwrite(work / "lr12.tif", np.round(lr.data / lr.data.max() * 4095).astype(np.uint16))
    args = ["fuse", "--hr", str(work / "hr.tif"), "--lr", str(work / "lr12.tif"), "--out", str(work / "o.tif"),
            "--scale", "8", "--psf-sigma", "2", "--wavelengths", "400:700:10", "--srf", NIKON_D700_CAVE]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "12-bit data?" in err and "--value-scale 0.0002442" in err, err
    scaling = read_cube(work / "o.tif").metadata["settings"]["input_scaling"]["lr"]
    assert scaling["scaled_by"] == pytest.approx(1 / 65535) and "12-bit" in scaling["note"]


# ---------------------------------------------------------------------- full disks
def _disk_full_after(monkeypatch, n):
    import zarr.storage._local as local

    real, calls = local.LocalStore.set, [0]

    async def full(self, key, value, *a, **k):
        calls[0] += 1
        if calls[0] > n:
            raise OSError(errno.ENOSPC, "No space left on device")
        return await real(self, key, value, *a, **k)

    monkeypatch.setattr(local.LocalStore, "set", full)


@pytest.mark.parametrize("out,n", [("out.zarr", 3), ("out.tif", 2), ("big.zarr", 5)])
def test_a_full_disk_is_one_line_and_leaves_nothing(work, monkeypatch, capfd, out, n):
    """ENOSPC while tiling (Zarr, tiled TIFF's summing store) or writing a store: one line, exit 2, no
    temporary, no asyncio traceback."""
    import gc

    _disk_full_after(monkeypatch, n)
    with nothing_lost(work):
        if out == "big.zarr":
            with pytest.raises(InputError, match="No space left"):
                write_zarr(np.ones((40, 600, 600), np.float32), work / out)
        else:
            assert main(_fuse(work, work / out, "--tile", "32")) == 2
        gc.collect()  # an unretrieved task exception would be printed now
    err = capfd.readouterr().err
    assert "Traceback" not in err and "asyncio" not in err and "Task exception" not in err, err
    if out != "big.zarr":
        assert "No space left on device" in err and err.count("error:") == 1


def test_a_full_disk_while_writing_a_whole_tiff(work, monkeypatch, capsys):
    import tifffile

    def full(path, *a, **k):
        Path(path).write_bytes(b"II*\x00partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tifffile, "imwrite", full)
    with nothing_lost(work):
        assert main(_fuse(work, work / "out.tif")) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "nothing was written" in err and "Traceback" not in err


# ---------------------------------------------------------------------- signals at random points
SLOW_WRITES = """
import os
if os.environ.get("HSISR_TEST_SLOW"):
    # a test's hook (tests/test_outputs.py): writes go slowly, so that a signal lands inside them
    import sys, time
    said = []

    def _slow():  # read at each write: a run forked from the waiting process sets its own
        return float(os.environ["HSISR_TEST_SLOW"])

    def _say():
        if not said:
            said.append(1)
            print("hsisr-test: writing", file=sys.stderr, flush=True)

    import tifffile
    _imwrite = tifffile.imwrite

    def imwrite(*a, **k):
        _say()
        out = _imwrite(*a, **k)
        time.sleep(_slow())
        return out

    tifffile.imwrite = imwrite
    import asyncio
    import zarr.storage._local as _local
    _set = _local.LocalStore.set

    async def store_set(self, key, value, *a, **k):  # in zarr's IO thread: the caller waits for it
        _say()
        await asyncio.sleep(_slow() / 10)
        return await _set(self, key, value, *a, **k)

    _local.LocalStore.set = store_set
    import napari_hsisr.core.tiled_output as _tiled
    _tiled.CHUNK = 32  # a chunk per tile: a write in flight after every tile, as in large scenes
"""

# Each run is `hsisr` in a process of its own, forked from one that has already imported what the
# runs import (torch, zarr, the engine: ~3 s each time otherwise). The forked run starts at
# `main(cmd)` as `python -c "...; sys.exit(main(cmd))"` did, with its stderr on a FIFO that the
# test reads to its end (the run's worker processes included) and the default signal handlers;
# it leaves the interpreter as a fresh process does (SystemExit, atexit, finalisation).
FORKER = """
import json, os, sys
import distributed, napari_hsisr.cli, napari_hsisr.core.api, napari_hsisr.core.batch, torch, zarr  # noqa
while line := sys.stdin.readline():
    slow, cwd, fifo, cmd = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.environ["HSISR_TEST_SLOW"] = slow
        os.chdir(cwd)
        for fd, name, mode in ((0, os.devnull, os.O_RDONLY), (1, os.devnull, os.O_WRONLY), (2, fifo, os.O_WRONLY)):
            opened = os.open(name, mode)
            os.dup2(opened, fd)
            os.close(opened)
        sys.exit(napari_hsisr.cli.main(cmd))
    print("pid", pid, flush=True)
    print("exit", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


@pytest.fixture(scope="module")
def forker(tmp_path_factory):
    """The process that the signal tests' runs are forked from (see FORKER)."""
    hook = tmp_path_factory.mktemp("hsisr-hook")
    (hook / "sitecustomize.py").write_text(SLOW_WRITES)
    env = {**os.environ, "HSISR_TEST_SLOW": "1",
           "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", FORKER], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    replies = queue.Queue()
    threading.Thread(target=lambda: [replies.put(line) for line in proc.stdout], daemon=True).start()
    yield proc, replies
    proc.stdin.close()
    proc.wait(60)


def _reply(replies, what, timeout):
    kind, value = replies.get(timeout=timeout).split()
    assert kind == what, f"the forking process said {kind} {value}, expected {what}"
    return int(value)


def _signal_during(forker, cmd, cwd, sig, delay, slow, timeout=240):
    """Run ``hsisr`` with slow writes; ``delay`` s after its first write starts, send ``sig``."""
    proc, replies = forker
    with tempfile.TemporaryDirectory(prefix="hsisr-err-") as folder:
        fifo = Path(folder) / "stderr"
        os.mkfifo(fifo)
        started, lines = threading.Event(), []

        def read():
            with open(fifo) as err:  # until the run and every process it started have closed it
                for line in err:
                    lines.append(line)
                    if "hsisr-test: writing" in line:
                        started.set()
            started.set()  # ended without writing: fail now, not after the timeout

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        proc.stdin.write(json.dumps([str(slow), str(cwd), str(fifo), cmd]) + "\n")
        proc.stdin.flush()
        pid = _reply(replies, "pid", timeout)
        try:
            started.wait(timeout)
            assert any("hsisr-test: writing" in line for line in lines), "".join(lines)[-3000:]
            time.sleep(delay)
            with contextlib.suppress(ProcessLookupError):  # already ended: nothing to stop
                os.kill(pid, sig)
        except BaseException:  # the run must end before the next one is asked for
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            raise
        finally:
            returncode = _reply(replies, "exit", timeout)
            reader.join(10)
    return returncode, "".join(lines)


def _complete(path, shape=(31, 128, 128)):
    cube = read_cube(path)
    assert cube.data.shape == shape and np.isfinite(cube.data).all()
    assert cube.metadata["settings"]["method"] == "fast"


SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]


@pytest.mark.parametrize("kind", ["whole.tif", "tiled.zarr", "tiled.tif"])
def test_a_signal_at_a_random_point_of_a_write_leaves_no_temporary(work, kind, forker):
    """SIGINT, SIGTERM and SIGHUP, each at a random point of a whole TIFF, tiled Zarr or tiled TIFF
    write: exit 130 (or 0 when the write had finished), no temporary, the output absent or whole."""
    rng = random.Random(f"{kind}-21")  # reproducible 'random' points; the delays are in the message
    out = work / kind
    tile = [] if kind == "whole.tif" else ["--tile", "32"]
    slow, span = (0.4, 0.5) if kind == "whole.tif" else (0.3, 2.5)
    for sig in SIGNALS:
        delay = rng.uniform(0, span)
        with nothing_lost(work, may_write=[kind]):
            rc, err = _signal_during(forker, _fuse(work, out, *tile), work, sig, delay, slow)
        what = f"{sig.name} after {delay:.2f} s: rc {rc}\n{err[-2000:]}"
        assert rc in (0, 130, -sig), what
        assert "Traceback" not in err, what
        if rc == 130:
            assert "stopped: nothing was written" in err, what
        if out.exists():
            _complete(out)
        assert rc == 130 or out.exists(), what


def test_a_signal_during_a_batch_leaves_no_temporary(work, forker):
    """A batch (a local cluster, one worker) stopped at a random point while its worker writes: exit
    130, no temporary in --out (a stopped worker's is removed once its process is gone), each
    output absent or whole."""
    rng = random.Random("batch-21")
    (work / "out").mkdir()
    manifest = _manifest(work, [(f"p{i}", "hr.tif", "lr.tif") for i in range(3)])
    for sig in (signal.SIGTERM, rng.choice(SIGNALS)):
        delay = rng.uniform(0, 1.0)
        before = snapshot(work / "out")
        with nothing_lost(work, may_write=["out"]):
            batch = ["batch", str(manifest), "--out", "out", "--workers", "1"]
            rc, err = _signal_during(forker, batch, work, sig, delay, 1.5)
        what = f"{sig.name} after {delay:.2f} s: rc {rc}\n{err[-2000:]}"
        assert rc in (0, 130, -sig), what
        left = sorted(p.name for p in (work / "out").iterdir())
        assert not [n for n in left if n.startswith(".")], what + f"\n{left}"
        for name in left:
            _complete(work / "out" / name)
        assert set(before) <= set(left), what
        if rc == 130:  # the stop message names the pairs it kept, and each is there, whole
            line = [x for x in err.splitlines() if x.startswith("stopped:")][-1]
            assert "nothing was written" not in line, what
            kept = re.search(r"kept \(([^)]*)\)", line)
            for name in kept.group(1).split(", ") if kept else []:
                assert any(n.startswith(f"{name}.") for n in left), what



@pytest.mark.parametrize("kind", ["tiled.zarr", "tiled.tif"])
def test_what_sigkill_leaves_goes_at_the_next_run(work, kind, forker):
    """SIGKILL cannot be caught: the killed run's temporaries (a temporary or summing store) stay, and
    the next run writing there removes them (their process is gone) and writes a whole result."""
    out = work / kind
    rc, err = _signal_during(forker, _fuse(work, out, "--tile", "32"), work, signal.SIGKILL, 0.3, 0.3)
    assert rc == -signal.SIGKILL, err[-2000:]
    left = [p.name for p in work.iterdir() if p.name.startswith(f".{kind}.")]
    assert left, "the kill should have left a temporary"
    with nothing_lost(work, may_write=[kind, *left]):
        assert main(_fuse(work, out, "--tile", "32")) == 0
    assert not [p.name for p in work.iterdir() if p.name.startswith(".")]
    _complete(out)


def test_the_docks_save_scales_uint16_and_replaces_only_ours(work):
    """The Fusion dock's Save (no viewer needed): uint16 keeps values beyond 1; a foreign file stays."""
    from napari.layers import Image

    from napari_hsisr._widgets._fusion_worker import save_layer

    cube = np.linspace(0, 3000, 2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)  # physical units
    layer = Image(cube, name="r", metadata={"wavelengths": [500.0, 600.0], "settings": {"method": "fast"}})
    back = read_cube(save_layer(layer, work / "d.tif", dtype="uint16"))
    assert np.abs(back.data - cube).max() <= 3000 / 65535
    assert back.metadata["value_scale"] == pytest.approx(3000 / 65535)
    with nothing_lost(work), pytest.raises(InputError, match="did not write"):
        save_layer(layer, work / "camera.tif")
