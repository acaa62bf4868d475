"""Plot the learned prior's training curves (docs/images/prior_training.png) from the runs' logs.

    python scripts/plot_prior_training.py [build/prior_runs] [docs/images/prior_training.png] [build/prior_runs2]

Left: training loss (L1 relative to the crop's level) per run. Right: the raw network's PSNR gain
over the fast cube it refines, on the held-out scenes of each fold (solid) and on the held-out
cameras (dashed; for the shipped run, which holds out no scene, only these). A third folder: the
fine-tunes of those runs (configs/msfn_prior_finetune.json), drawn after them (their loss also
counts the procedural scenes' crops).
"""

import json
import sys
from pathlib import Path


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = Path(sys.argv[1] if len(sys.argv) > 1 else "build/prior_runs")
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "docs/images/prior_training.png")
    tuned = Path(sys.argv[3]) if len(sys.argv) > 3 else None
    fig, (ax_loss, ax_gain) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    for i, log in enumerate(sorted(runs.glob("*.log.jsonl"))):
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        if tuned is not None and (tuned / log.name).exists():
            last = rows[-1]["step"]
            more = [json.loads(line) for line in (tuned / log.name).read_text().splitlines() if line.strip()]
            rows += [{**r, "step": last + r["step"]} for r in more]
        name = log.name.removesuffix(".log.jsonl").replace("msfn_prior", "all 19 (shipped)")
        steps = [r["step"] for r in rows]
        color = f"C{i}"
        ax_loss.plot(steps, [r["train_loss"] for r in rows], color=color, label=name)
        scenes = [r["held_out_scenes"].get("gain_db") for r in rows]
        if any(v is not None for v in scenes):
            ax_gain.plot(steps, scenes, color=color, label=f"{name}: held-out scenes")
        ax_gain.plot(steps, [r["held_out_cameras"].get("gain_db") for r in rows], color=color, ls="--",
                     label=f"{name}: held-out cameras")
    if tuned is not None:
        for ax in (ax_loss, ax_gain):
            ax.axvline(last, color="gray", lw=0.8, ls=":")
        ax_gain.text(last, ax_gain.get_ylim()[0], " fine-tune with\n procedural scenes", fontsize=7, va="bottom")
    ax_loss.set(xlabel="step", ylabel="training loss (relative L1)", title="training loss")
    ax_gain.axhline(0, color="k", lw=0.5)
    ax_gain.set(xlabel="step", ylabel="dB over fast (raw network)", title="validation: gain over fast")
    ax_loss.legend(fontsize=7)
    ax_gain.legend(fontsize=6, ncol=2)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
