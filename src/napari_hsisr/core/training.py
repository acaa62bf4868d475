"""Supervised training of the multi-scale fusion network (MSFN) on reference cubes.

Pairs are simulated on the fly by the shared forward model: random ``patch`` x ``patch`` crops of
the reference cubes (offsets multiples of ``s``), a random flip/rotation, then the degradation's
spatial operator (PSF + decimation, its boundary rule at the crop's edges) and spectral response,
plus optional Gaussian noise at a given SNR. The loss is the L1 error at every decoder level
against the block-averaged reference (multi-level supervision), the finest level weighted most.

:func:`train_iter` is a generator (yields :class:`TrainProgress`, returns the trained model) so the
CLI shows a progress bar and a caller can stop at any step; a checkpoint is written atomically
after every epoch and ``resume=True`` continues from it (model, optimiser, RNG states, history).
Deterministic for a seed on the CPU.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .degradation import Degradation
from .errors import InputError
from .io import atomic_path
from .nets.augment import augment
from .validation import check_finite_cube, check_seed, check_snr

LEVEL_WEIGHT_DECAY = 0.5  # coarser levels weigh 1/2, 1/4, ... of the finest


@dataclass(frozen=True)
class TrainProgress:
    epoch: int
    step: int
    total: int
    loss: float | None = None
    message: str = ""
    val: dict | None = None  # {"psnr": .., "sam": ..} at the end of an epoch


@dataclass
class TrainSettings:
    epochs: int = 20
    steps_per_epoch: int = 100
    patch: int = 64
    batch: int = 8
    lr_rate: float = 1e-3
    width: int = 16
    residual: bool = True
    seed: int = 0
    noise_snr_db: float | None = None
    device: str = "cpu"

    def as_dict(self) -> dict:
        return asdict(self)


def atomic_torch_save(obj, path: Path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_tensors(path: Path, what: str, fix: str) -> dict:
    """A torch file of tensors, read with ``weights_only=True`` (a crafted pickle cannot run code);
    a file that is not one (truncated, another format, a crafted pickle, a folder) is an
    ``InputError`` naming it and ``fix``, never a multi-line unpickling error."""
    import torch

    if Path(path).is_dir():
        raise InputError(f"{what} {path} is a folder; give the file itself.")
    import re
    import warnings

    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the refusal below says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError, struct.error, OSError
        text = str(exc)
        refused = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\s*\n|Check the documentation|$)", text, re.S)
        why = (f"the safe loader refused it: {refused.group(1).strip()}" if refused else
               f"{type(exc).__name__}: {(text.strip().splitlines() or [''])[0][:160]}")
        raise InputError(f"{what} {path} is not a plain file of torch tensors ({why}); it is damaged, not from "
                         f"this program, or crafted, and is not loaded; {fix}.") from None
    if not isinstance(state, dict):
        raise InputError(f"{what} {path} holds a {type(state).__name__}, not a dict of tensors; {fix}.")
    return state


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def simulate_batch(ref, deg: Degradation, noise_snr_db=None, generator=None):
    """(B, C, P, P) reference crops -> (hr (B, k, P, P), lr (B, C, P/s, P/s)) torch tensors."""
    import torch

    from .degradation import spatial_op

    kernel = torch.as_tensor(deg.kernel, dtype=ref.dtype, device=ref.device)
    srf = torch.as_tensor(deg.srf, dtype=ref.dtype, device=ref.device)
    lr = spatial_op(ref, kernel, deg.scale, deg.boundary)
    hr = torch.einsum("ck,bcyx->bkyx", srf, ref)
    if noise_snr_db is not None:
        def noisy(t):
            sigma = torch.sqrt((t ** 2).mean(dim=(-2, -1), keepdim=True) / 10 ** (noise_snr_db / 10))
            return t + sigma * torch.randn(t.shape, generator=generator, dtype=t.dtype).to(t.device)
        lr, hr = noisy(lr), noisy(hr)
    return hr, lr


def fast_base(hr, lr, deg: Degradation):
    """The fast method's estimate for each pair of a batch (torch in, torch out): the base a
    residual MSFN refines."""
    import torch

    from .methods.fast import estimate

    h, l_ = hr.detach().cpu().numpy(), lr.detach().cpu().numpy()
    out = np.stack([estimate(deg, h[i], l_[i]) for i in range(len(h))])
    return torch.as_tensor(out, dtype=hr.dtype, device=hr.device)


def multilevel_loss(model, preds, reference):
    """L1 error of every level's prediction against the block-averaged reference, the finest
    level weighted 1 and each coarser one ``LEVEL_WEIGHT_DECAY`` times the next."""
    import torch

    n = len(preds)
    return sum(LEVEL_WEIGHT_DECAY ** (n - 1 - i) * torch.mean(torch.abs(p - t))
               for i, (p, t) in enumerate(zip(preds, model.level_targets(reference))))


def validate(model, val_pairs, device) -> dict:
    """Mean PSNR (peak 1) and SAM over full-frame validation pairs ``[(hr, lr, base, ref)]`` (numpy;
    ``base`` None for a plain network)."""
    import torch

    from .metrics import psnr, sam

    model.eval()
    psnrs, sams = [], []
    with torch.no_grad():
        for hr, lr, base, ref in val_pairs:
            t = lambda a: None if a is None else torch.as_tensor(a[None], device=device)  # noqa: E731
            out = model(t(hr), t(lr), t(base))[-1]
            cube = out[0].float().clamp_min(0).cpu().numpy()
            psnrs.append(float(psnr(cube, ref, peak=1.0)))
            sams.append(float(sam(cube, ref)))
    model.train()
    return {"psnr": float(np.mean(psnrs)), "sam": float(np.mean(sams))}


def train_iter(train_cubes: list[np.ndarray], val_cubes: list[np.ndarray], deg: Degradation,
               settings: TrainSettings, checkpoint: str | Path | None = None, resume: bool = False):
    """Train an MSFN for ``deg``; yields :class:`TrainProgress`, returns the model (eval mode)."""
    import torch

    from .nets.msfn import MSFN
    from .simulate import simulate

    st = settings
    s = deg.scale
    if st.patch % s or st.patch < 2 * s:
        raise InputError(f"patch must be a multiple of the scale {s} and at least {2 * s}, got {st.patch}.")
    if not train_cubes:
        raise InputError("no training cubes given.")
    if min(st.epochs, st.steps_per_epoch, st.batch) < 1:
        raise InputError(f"epochs, steps per epoch and batch must be at least 1 (got {st.epochs}, "
                         f"{st.steps_per_epoch}, {st.batch}).")
    if not 4 <= st.width <= 256:
        raise InputError(f"width (channels at full resolution) must be between 4 and 256, got {st.width}.")
    if not (math.isfinite(st.lr_rate) and 0 < st.lr_rate <= 1):
        raise InputError(f"learning rate must be a number in (0, 1] (e.g. 1e-3), got {st.lr_rate}.")
    check_snr(st.noise_snr_db, "noise SNR")
    check_seed(st.seed)  # as fuse and simulate take it: 0 <= seed < 2**63
    train_cubes = [check_finite_cube(c, f"training cube {i}", float64=False) for i, c in enumerate(train_cubes)]
    val_cubes = [check_finite_cube(c, f"validation cube {i}", float64=False) for i, c in enumerate(val_cubes)]
    C = train_cubes[0].shape[0]
    for i, cube in enumerate(list(train_cubes) + list(val_cubes)):
        if cube.ndim != 3 or cube.shape[0] != C:
            raise InputError(f"cube {i} has shape {cube.shape}; all cubes must be (C={C}, Y, X).")
        if min(cube.shape[1:]) < st.patch:
            raise InputError(f"cube {i} ({cube.shape[1]}x{cube.shape[2]}) is smaller than the patch "
                             f"({st.patch}); use a smaller --patch.")
    if deg.srf is None or deg.srf.shape[0] != C:
        raise InputError(f"the degradation's spectral response must have {C} rows (one per band).")
    device = torch.device(st.device)
    torch.manual_seed(st.seed)
    model = MSFN(C, deg.srf.shape[1], s, st.width, residual=st.residual).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=st.lr_rate)
    total_steps = st.epochs * st.steps_per_epoch
    # cosine decay to 5 % over the whole run, in closed form, so a resumed run (even with more
    # epochs) follows the same schedule as an uninterrupted one
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(i, total_steps) / total_steps)))
    gen = torch.Generator().manual_seed(st.seed)
    refs = [torch.as_tensor(np.ascontiguousarray(c), dtype=torch.float32) for c in train_cubes]
    val_pairs = []
    for i, cube in enumerate(val_cubes):
        Y, X = (np.array(cube.shape[1:]) // s) * s
        cube = np.ascontiguousarray(cube[:, :Y, :X])
        rgb, lr = simulate(cube, deg, noise_snr_db=st.noise_snr_db, hr_snr_db=st.noise_snr_db, seed=1000 + i)
        hr = np.ascontiguousarray(np.moveaxis(rgb, -1, 0))
        base = None
        if st.residual:
            from .methods.fast import estimate

            base = estimate(deg, hr, lr)
        val_pairs.append((hr, lr, base, cube))
    history, start_epoch = [], 0
    run_id = json.dumps({"degradation": deg.settings(), **{k: v for k, v in st.as_dict().items()
                                                          if k not in ("epochs", "device")}}, sort_keys=True)
    if checkpoint is not None and resume and Path(checkpoint).exists():
        # RNG states must stay CPU tensors; the optimiser moves its state to the parameters' device
        fix = "start without --resume (or give another --checkpoint)"
        state = load_tensors(Path(checkpoint), "checkpoint", fix)
        missing = {"model", "optimizer", "scheduler", "generator", "torch_rng", "history", "epoch",
                   "model_config"} - set(state)
        if missing:
            raise InputError(f"checkpoint {checkpoint} is not a training checkpoint of this program (no "
                             f"{', '.join(sorted(missing))}); {fix}.")
        if state["model_config"] != model.config():
            raise InputError(f"checkpoint {checkpoint} is for {state['model_config']}, not {model.config()}; "
                             "start without --resume or change the output path.")
        if state.get("run") != run_id:
            raise InputError(f"checkpoint {checkpoint} was made with another degradation or other training "
                             "settings; resume with the same ones, or start without --resume.")
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            gen.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            history = json.loads(state["history"])
            start_epoch = int(state["epoch"])
        except (TypeError, KeyError, ValueError, RuntimeError, AttributeError) as exc:
            raise InputError(f"checkpoint {checkpoint} is damaged ({type(exc).__name__}: {exc}); {fix}.") from None
    P = st.patch
    model.train()
    for epoch in range(start_epoch, st.epochs):
        t0, run_loss = time.perf_counter(), 0.0
        for it in range(st.steps_per_epoch):
            crops = []
            for _ in range(st.batch):
                ref = refs[int(torch.randint(len(refs), (1,), generator=gen))]
                _, Yc, Xc = ref.shape
                iy = int(torch.randint((Yc - P) // s + 1, (1,), generator=gen)) * s
                ix = int(torch.randint((Xc - P) // s + 1, (1,), generator=gen)) * s
                code = int(torch.randint(8, (1,), generator=gen))
                crops.append(augment(ref[None, :, iy:iy + P, ix:ix + P], code))
            ref_b = torch.cat(crops).to(device)
            hr_b, lr_b = simulate_batch(ref_b, deg, st.noise_snr_db, gen)
            preds = model(hr_b, lr_b, fast_base(hr_b, lr_b, deg) if st.residual else None)
            loss = multilevel_loss(model, preds, ref_b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run_loss += float(loss.detach())
            step = epoch * st.steps_per_epoch + it + 1
            yield TrainProgress(epoch + 1, step, total_steps, loss=run_loss / (it + 1),
                                message=f"epoch {epoch + 1}/{st.epochs}")
        val = validate(model, val_pairs, device) if val_pairs else None
        scores = {"val_" + k: v for k, v in val.items()} if val else {}
        history.append({"epoch": epoch + 1, "train_loss": run_loss / st.steps_per_epoch,
                        "seconds": time.perf_counter() - t0, **scores})
        if checkpoint is not None:
            atomic_torch_save({
                "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "generator": gen.get_state(), "torch_rng": torch.get_rng_state(), "epoch": epoch + 1,
                "history": json.dumps(history), "model_config": model.config(), "run": run_id,
            }, Path(checkpoint))
        yield TrainProgress(epoch + 1, (epoch + 1) * st.steps_per_epoch, total_steps, loss=history[-1]["train_loss"],
                            message=f"epoch {epoch + 1}/{st.epochs} done", val=val)
    model.eval()
    model.history = history
    return model


def export_weights(model, path: str | Path, record: dict, half: bool = True) -> dict:
    """Write the model's weights (a plain tensor dict, loadable with ``weights_only=True``) and a
    JSON record next to them (``<path>.json``: model config, degradation, data, history, sha256)."""

    path = Path(path)
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous().cpu()
             for k, v in model.state_dict().items()}
    atomic_torch_save(state, path)
    record = {**record, "model_config": model.config(), "file": path.name, "sha256": sha256(path),
              "dtype": "float16" if half else "float32"}
    with atomic_path(path.with_name(path.name + ".json")) as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    return record


def load_weights(path: str | Path, device: str = "cpu", expected_sha256: str | None = None):
    """Load exported weights; refuses a file whose SHA-256 differs from its record (or from
    ``expected_sha256``). Returns ``(model, record)``."""
    from .nets.msfn import MSFN

    path = Path(path)
    meta_path = path.with_name(path.name + ".json")
    if path.is_dir():
        raise InputError(f"weights {path} is a folder; give the weights file (.pt) itself.")
    if not path.exists() or not meta_path.exists():
        raise InputError(f"weights {path} or their record {meta_path.name} not found.")
    try:
        record = json.loads(meta_path.read_text())
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"the record {meta_path.name} of weights {path.name} is damaged ({exc}); export the weights "
                         "again (hsisr train) or restore the file.") from None
    want = expected_sha256 or record.get("sha256")
    got = sha256(path)
    if want != got:
        raise InputError(f"weights file {path} does not match its checksum (sha256 {got[:12]}..., expected "
                         f"{str(want)[:12]}...); the file is damaged or was modified. Re-install the package "
                         "or re-export the weights.")
    state = load_tensors(path, "weights", "export the weights again (hsisr train) or use weights='auto'")
    try:
        if record.get("kind") == "spectral_prior":
            from .nets.prior import SpectralPrior

            model = SpectralPrior(**record["model_config"])
        else:
            model = MSFN(**record["model_config"])
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except (TypeError, KeyError, ValueError, RuntimeError, AttributeError) as exc:
        raise InputError(f"{path} is not weights this version can read ({exc}).") from None
    return model.to(device).eval(), record
