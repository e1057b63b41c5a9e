"""Training-curve plots: people read a curve faster than a log."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless machines and CI
import matplotlib.pyplot as plt


def save_figure(figure, path: str | Path) -> Path:
    """Lay out, write as PNG (110 dpi, the size every plot of this project uses) and free `figure`."""
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_training_curves(history: Sequence[dict], keys: Sequence[str], path: str | Path) -> Path | None:
    """One panel per logged key against the step; keys absent from the log are skipped. Returns the PNG path."""
    keys = [key for key in keys if any(key in record for record in history)]
    if not history or not keys:
        return None
    figure, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for axis, key in zip(axes[0], keys, strict=True):
        points = [(record["step"], record[key]) for record in history if key in record]
        axis.plot(*zip(*points, strict=True), marker=".", linewidth=1)
        axis.set_title(key.replace("_", " "))
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        if key.endswith("loss") and all(value > 0 for _, value in points):
            axis.set_yscale("log")
    return save_figure(figure, path)


def plot_layer_accuracy(history: Sequence[dict], path: str | Path, prefix: str = "mcp_accuracy_layer") -> Path | None:
    """Masked-token accuracy of each residual layer against the step, one line per layer (coarse to fine)."""
    layers = sorted(
        {int(key[len(prefix) :]) for record in history for key in record if key.startswith(prefix)},
    )
    if not layers:
        return None
    figure, axis = plt.subplots(figsize=(6, 3.6))
    colours = plt.cm.viridis([i / max(1, len(layers) - 1) for i in range(len(layers))])
    for layer, colour in zip(layers, colours, strict=True):
        points = [(record["step"], record[f"{prefix}{layer}"]) for record in history if f"{prefix}{layer}" in record]
        axis.plot(*zip(*points, strict=True), color=colour, linewidth=1.2, label=f"layer {layer}")
    axis.set_xlabel("step")
    axis.set_ylabel("masked-token accuracy")
    axis.set_title("masked-token accuracy per residual layer (0 = coarsest)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, ncol=2)
    return save_figure(figure, path)
