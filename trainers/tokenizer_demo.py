"""Load a trained motion tokenizer the way a Hub user would and show what it does on held-out motion.

    python -m trainers.tokenizer_demo outputs/quickstart/motion_tokenizer [--num_clips 100]

Loads the folder with `AutoModel.from_pretrained(..., trust_remote_code=True)` (the code files saved in the
folder, not this checkout's), tokenizes procedural clips it never saw, decodes them, prints the joint errors, and
writes `reconstruction.png`: true vs decoded fingertip and wrist trajectories of one clip.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from transformers import AutoModel

from dataset_scripts.procedural_motion import procedural_motion_dataset
from modeling_jala.layout_jala import CLIP_MOTION_AXES, ROW_MOTION_AXES, reorder_axes
from trainers.plotting import save_figure
from trainers.train_tokenizer import evaluate_tokenizer

logger = logging.getLogger("jala.tokenizer_demo")

#: Seed far from the training seeds, so these clips were never seen.
DEMO_SEED = 987_654


def plot_reconstruction(tokenizer: torch.nn.Module, clip: dict, path: Path) -> Path:
    """Index fingertip and wrist coordinates over time, true (solid) against decoded (dashed)."""
    motion = reorder_axes(torch.as_tensor(clip["motion"]), ROW_MOTION_AXES, CLIP_MOTION_AXES)[None]  # (1, 2, T, 162)
    hand = 1 if clip["hands_present"][1] else 0
    hand_mask = torch.as_tensor(np.asarray(clip["hands_present"], dtype=bool))[None]
    encoding = tokenizer.encode(motion, hand_mask=hand_mask)
    decoded = tokenizer.decode(encoding.ids, encoding.chunk_mask)[0, hand, : motion.shape[2]]
    true = motion[0, hand]
    seconds = torch.arange(true.shape[0]) / float(clip["fps"])
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for axis, (title, offset) in zip(axes, (("wrist", 99), ("index fingertip", 99 + 8 * 3)), strict=True):
        for dim, color in zip(range(3), ("tab:red", "tab:green", "tab:blue"), strict=True):
            axis.plot(seconds, 1000 * true[:, offset + dim], color=color, label=f"{'xyz'[dim]} true")
            axis.plot(
                seconds, 1000 * decoded[:, offset + dim], color=color, linestyle="--", label=f"{'xyz'[dim]} decoded"
            )
        axis.set_title(f"{title} position (camera frame)")
        axis.set_xlabel("seconds")
        axis.set_ylabel("mm")
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=3)
    return save_figure(figure, path)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="Folder written by trainers/train_tokenizer.py")
    parser.add_argument("--num_clips", type=int, default=100, help="Held-out procedural clips to evaluate")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not (args.folder / "config.json").exists():
        raise SystemExit(f"{args.folder} holds no config.json; train a tokenizer first (see README).")

    tokenizer = AutoModel.from_pretrained(args.folder, trust_remote_code=True).eval()
    logger.info("loaded %s from %s", type(tokenizer).__name__, args.folder)
    clips = procedural_motion_dataset(args.num_clips, seed=DEMO_SEED, prefix="demo")
    report = evaluate_tokenizer(tokenizer, clips)
    logger.info("\nheld-out reconstruction (%d procedural clips, encode -> decode)", len(clips))
    logger.info("| metric | value |\n|---|---|")
    for key, value in report.items():
        logger.info("| %s | %.3f |", key, value)
    figure = plot_reconstruction(tokenizer, clips.with_format("numpy")[0], args.folder / "reconstruction.png")
    logger.info("plot: %s", figure)
    return report


if __name__ == "__main__":
    main()
