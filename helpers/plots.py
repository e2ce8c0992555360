"""Figures for the notebooks. Each function returns a matplotlib ``Figure``.

Figures are built with ``matplotlib.figure.Figure`` rather than ``pyplot``, so
nothing is drawn twice or kept alive by pyplot's global state; a notebook shows
one by leaving it as the cell's last value (or with ``display(fig)``).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from matplotlib.figure import Figure

from ._util import check_float, check_int


def digit_grid(X: torch.Tensor, y: torch.Tensor, classes: Sequence[str], *,
               per_class: int = 8, mean: float = 0.0, std: float = 1.0) -> Figure:
    """A grid of ``per_class`` images of each class: one row per class."""
    check_int("per_class", per_class, 1, 30)
    n_cls = len(classes)
    fig = Figure(figsize=(per_class * 0.55, n_cls * 0.55), dpi=80)
    axes = fig.subplots(n_cls, per_class, squeeze=False)
    for c in range(n_cls):
        idx = torch.nonzero(y == c).flatten()[:per_class]
        for j, ax in enumerate(axes[c]):
            ax.set_axis_off()
            if j < len(idx):
                img = X[idx[j]].reshape(28, 28) * std + mean
                ax.imshow(img.cpu().numpy(), cmap="gray_r", vmin=0, vmax=1)
        axes[c][0].text(-6, 14, classes[c], ha="right", va="center", fontsize=8)
    fig.subplots_adjust(left=0.12, right=0.99, top=0.99, bottom=0.01, wspace=0.05, hspace=0.05)
    return fig


def weight_histogram(weights: torch.Tensor | Mapping[str, torch.Tensor], *, bins: int = 100,
                     near_zero: float = 0.01, log: bool = False, title: str | None = None) -> Figure:
    """Histogram(s) of weight values, each panel marking the band |w| < ``near_zero``.

    ``weights`` is one tensor or a mapping ``{label: tensor}`` (one panel each).
    The panel title gives the share of weights inside the band.
    """
    check_int("bins", bins, 2, 10_000)
    check_float("near_zero", near_zero, 0.0)
    if isinstance(weights, torch.Tensor):
        weights = {"weights": weights}
    if not weights:
        raise ValueError("weights must hold at least one tensor, got an empty mapping")
    n = len(weights)
    fig = Figure(figsize=(4.2 * n, 3.0), dpi=80, layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (label, w) in zip(axes, weights.items()):
        w = w.detach().flatten().cpu()
        share = (w.abs() < near_zero).float().mean().item()
        ax.hist(w.numpy(), bins=bins, color="tab:blue", log=log)
        if near_zero > 0:
            ax.axvspan(-near_zero, near_zero, color="tab:orange", alpha=0.25,
                       label=f"|w| < {near_zero:g}")
            ax.legend(loc="upper right", fontsize=8)
        ax.set_title(f"{label}: {share:.0%} of {w.numel():,} near zero", fontsize=10)
        ax.set_xlabel("weight value")
        ax.set_ylabel("count" + (" (log)" if log else ""))
    if title:
        fig.suptitle(title)
    return fig


def training_curves(history: Sequence[Mapping], *, title: str | None = None) -> Figure:
    """Training loss and (when recorded) test accuracy against the epoch."""
    if not history:
        raise ValueError("history must hold at least one epoch, got none")
    epochs = [r["epoch"] for r in history]
    has_acc = "test_accuracy" in history[0]
    fig = Figure(figsize=(8 if has_acc else 4.2, 3.0), dpi=80, layout="constrained")
    axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False)[0]
    axes[0].plot(epochs, [r["train_loss"] for r in history], marker="o")
    axes[0].set(xlabel="epoch", ylabel="training loss")
    if has_acc:
        axes[1].plot(epochs, [100 * r["test_accuracy"] for r in history], marker="o",
                     color="tab:green")
        axes[1].set(xlabel="epoch", ylabel="test accuracy (%)")
    if title:
        fig.suptitle(title)
    return fig
