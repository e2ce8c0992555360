"""Figures for the notebooks. Each function returns a matplotlib ``Figure``.

Figures are built with ``matplotlib.figure.Figure`` rather than ``pyplot``, so
nothing is drawn twice or kept alive by pyplot's global state; a notebook shows
one by leaving it as the cell's last value (or with ``display(fig)``).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ._util import check_float, check_int
from .distillation import entropy, soft_targets
from .experiments import NEAR_ZERO, nearest_row


def digit_grid(X: torch.Tensor, y: torch.Tensor, classes: Sequence[str], *,
               per_class: int = 8, mean: float = 0.0, std: float = 1.0) -> Figure:
    """A grid of ``per_class`` images of each class: one row per class.
    ``X``: (N, 784) or (N, 1, 28, 28) images; ``y``: their N labels."""
    check_int("per_class", per_class, 1, 30)
    if not len(classes):
        raise ValueError("classes must name at least one class, got none")
    if not (torch.is_tensor(X) and torch.is_tensor(y) and X.ndim >= 2 and len(X) == len(y)
            and X[0].numel() == 784):
        raise ValueError("X must be N images of 28 x 28 pixels and y their N labels, got "
                         f"shapes {getattr(X, 'shape', X)} and {getattr(y, 'shape', y)}")
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


def _check_weights(weights: Mapping[str, torch.Tensor]) -> None:
    if not weights:
        raise ValueError("weights must hold at least one tensor, got an empty mapping")
    for label, w in weights.items():
        if not torch.is_tensor(w) or not w.numel():
            raise ValueError(f"weights must be non-empty tensors; {label!r} is {w!r}"[:200])


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
    _check_weights(weights)
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
    """Training loss and (when recorded) validation accuracy against the epoch."""
    if not history:
        raise ValueError("history must hold at least one epoch, got none")
    epochs = [r["epoch"] for r in history]
    has_acc = "val_accuracy" in history[0]
    fig = Figure(figsize=(8 if has_acc else 4.2, 3.0), dpi=80, layout="constrained")
    axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False)[0]
    axes[0].plot(epochs, [r["train_loss"] for r in history], marker="o")
    axes[0].set(xlabel="epoch", ylabel="training loss")
    if has_acc:
        axes[1].plot(epochs, [100 * r["val_accuracy"] for r in history], marker="o",
                     color="tab:green")
        axes[1].set(xlabel="epoch", ylabel="validation accuracy (%)")
    if title:
        fig.suptitle(title)
    return fig


def regularisation_view(rows: Sequence[Mapping], lam: float, *, label: str = "L1",
                        near_zero: float = NEAR_ZERO, reference: torch.Tensor | None = None) -> Figure:
    """Left: fc1's weights at the λ nearest ``lam`` (and, faint, the unregularised
    ``reference``); right: test accuracy and near-zero share against λ.

    ``rows`` come from ``experiments.regularisation_sweep`` (keys lam, accuracy,
    near_zero, weights); ``lam`` > 0.
    """
    check_float("near_zero", near_zero, 0.0)
    row = nearest_row(rows, "lam", lam, log=True)
    fig = Figure(figsize=(9, 3.2), dpi=80, layout="constrained")
    ax_h, ax_c = fig.subplots(1, 2)
    w = row["weights"].flatten().numpy()
    lim = max(float(abs(w).max()), 1e-6)
    if reference is not None:
        lim = max(lim, reference.abs().max().item())
    bins = torch.linspace(-lim, lim, 121).numpy()
    if reference is not None:
        ax_h.hist(reference.flatten().cpu().numpy(), bins=bins, color="0.7", label="λ = 0")
    ax_h.hist(w, bins=bins, color="tab:blue", alpha=0.85, label=f"{label}, λ = {row['lam']:.0e}")
    ax_h.set_yscale("log")
    ax_h.set(xlabel="fc1 weight value", ylabel="count (log)",
             title=f"{row['near_zero']:.0%} of fc1 weights have |w| < {near_zero:g}")
    ax_h.legend(fontsize=8)
    lams = [r["lam"] for r in rows]
    ax_c.plot(lams, [100 * r["accuracy"] for r in rows], marker="o", color="tab:green",
              label="test accuracy (%)")
    ax_c.plot(lams, [100 * r["near_zero"] for r in rows], marker="s", color="tab:orange",
              label=f"|w| < {near_zero:g} (%)")
    ax_c.axvline(row["lam"], color="k", lw=1, ls="--")
    ax_c.set(xscale="log", xlabel=f"λ ({label} weight)", ylabel="%", ylim=(0, 100))
    ax_c.legend(fontsize=8, loc="center left")
    return fig


def amount_view(grid: Sequence[Mapping], current: Mapping) -> Figure:
    """Left: the surviving (non-zero) weights at ``current["amount"]``; right:
    accuracy against the pruned share, with and without fine-tuning.

    ``grid`` and ``current`` are rows of ``experiments.amount_sweep``.
    """
    if not grid:
        raise ValueError("grid must hold at least one row of experiments.amount_sweep, got none")
    fig = Figure(figsize=(9, 3.2), dpi=80, layout="constrained")
    ax_h, ax_c = fig.subplots(1, 2)
    surv = current["surviving"].flatten().numpy()
    ax_h.hist(surv, bins=100, color="tab:blue")
    ax_h.set(xlabel="surviving fc1 weight value", ylabel="count",
             title=f"{current['amount']:.0%} pruned: {surv.size:,} weights left")
    amounts = [100 * r["amount"] for r in grid]
    ax_c.plot(amounts, [100 * r["accuracy"] for r in grid], marker="o", color="tab:red",
              label="pruned, no fine-tuning")
    ax_c.plot(amounts, [100 * r["accuracy_finetuned"] for r in grid], marker="s",
              color="tab:green", label="pruned, then fine-tuned")
    ax_c.plot([100 * current["amount"]] * 2,
              [100 * current["accuracy"], 100 * current["accuracy_finetuned"]],
              "k*", markersize=12, label="slider")
    ax_c.set(xlabel="share of fc1 weights pruned (%)", ylabel="test accuracy (%)")
    ax_c.legend(fontsize=8, loc="lower left")
    return fig


def rollback_trace(trace: Sequence[Mapping], *, tolerance: float | None = None) -> Figure:
    """The iterative loop's tries: sparsity tried and validation accuracy (the
    split ``pruning.iterative_prune`` decides on), kept vs rolled back."""
    if not trace:
        raise ValueError("trace must hold at least one row, got none")
    if tolerance is not None:
        check_float("tolerance", tolerance, 0.0, 1.0)
    fig = Figure(figsize=(9, 3.2), dpi=80, layout="constrained")
    ax_s, ax_a = fig.subplots(1, 2)
    tries = range(len(trace))
    for ax, key, scale, label in ((ax_s, "sparsity", 100, "fc1 sparsity tried (%)"),
                                  (ax_a, "accuracy", 100, "validation accuracy (%)")):
        ax.plot(tries, [scale * r[key] for r in trace], color="0.6", lw=1)
        for kept, marker, color, name in ((True, "o", "tab:green", "kept"),
                                          (False, "X", "tab:red", "rolled back")):
            pts = [(i, scale * r[key]) for i, r in enumerate(trace) if r["kept"] == kept]
            if pts:
                ax.scatter(*zip(*pts), marker=marker, color=color, s=50, label=name, zorder=3)
        ax.set(xlabel="try", ylabel=label)
    if tolerance is not None:
        ax_a.axhline(100 * (trace[0]["accuracy"] - tolerance), color="tab:red", ls="--", lw=1,
                     label="tolerance")
    ax_a.legend(fontsize=8)
    return fig


def sensitivity_curves(amounts: Sequence[float], scan: Mapping[str, Sequence[float]]) -> Figure:
    """Validation accuracy (as ``pruning.sensitivity_scan`` measures it) against
    the share pruned, one line per layer pruned alone."""
    if not len(amounts) or not scan:
        raise ValueError("amounts and scan must hold at least one amount and one layer")
    for layer, accs in scan.items():
        if len(accs) != len(amounts):
            raise ValueError(f"scan must hold one accuracy per amount; {layer!r} has "
                             f"{len(accs)} for {len(amounts)} amounts")
    fig = Figure(figsize=(4.5, 3.2), dpi=80, layout="constrained")
    ax = fig.subplots()
    for layer, accs in scan.items():
        ax.plot([100 * a for a in amounts], [100 * a for a in accs], marker="o", label=layer)
    ax.set(xlabel="share of the layer's weights pruned (%)", ylabel="validation accuracy (%)",
           title="sensitivity: one layer pruned at a time")
    ax.legend(fontsize=8)
    return fig


def gradual_curves(history: Sequence[Mapping], *, title: str | None = None) -> Figure:
    """Sparsity (left) and validation accuracy (right) per epoch of gradual
    pruning (rows of ``pruning.gradual_prune``'s history)."""
    if not history:
        raise ValueError("history must hold at least one epoch, got none")
    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(9, 3.0), dpi=80, layout="constrained")
    ax_s, ax_a = fig.subplots(1, 2)
    ax_s.plot(epochs, [100 * r["sparsity"] for r in history], marker="o", color="tab:purple")
    ax_s.set(xlabel="epoch", ylabel="fc1 sparsity (%)", ylim=(0, 100))
    ax_a.plot(epochs, [100 * r["val_accuracy"] for r in history], marker="o", color="tab:green")
    ax_a.set(xlabel="epoch", ylabel="validation accuracy (%)")
    if title:
        fig.suptitle(title)
    return fig


def soft_target_bars(logits: torch.Tensor, T: float, classes: Sequence[str], *,
                     label: int | None = None, image: torch.Tensor | None = None) -> Figure:
    """The teacher's softmax(z / T) for one input as bars, beside softmax(z) at
    T = 1, each titled with its entropy in bits; the image itself on the left."""
    check_float("T", T, 0.0, low_open=True)
    if not torch.is_tensor(logits) or logits.shape != (len(classes),):
        raise ValueError(f"logits must be one input's logits, shape ({len(classes)},), got "
                         f"{getattr(logits, 'shape', logits)}")
    if label is not None:
        check_int("label", label, 0, len(classes) - 1)

    panels = [(1.0, "tab:gray"), (T, "tab:blue")]
    fig = Figure(figsize=(10, 2.8), dpi=80, layout="constrained")
    axes = fig.subplots(1, 3, width_ratios=[1, 2.2, 2.2])
    if image is not None:
        axes[0].imshow(image.reshape(28, 28).cpu().numpy(), cmap="gray_r")
        axes[0].set_title("input" + (f" (label {classes[label]})" if label is not None else ""))
    axes[0].set_axis_off()
    xs = range(len(classes))
    for ax, (temp, color) in zip(axes[1:], panels):
        p = soft_targets(logits, temp)
        bars = ax.bar(xs, p.cpu().numpy(), color=color)
        if label is not None:
            bars[label].set_edgecolor("k")
            bars[label].set_linewidth(1.5)
        ax.set_xticks(list(xs), list(classes), fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(f"T = {temp:.3g}: entropy {entropy(p).item():.2f} bits")
        ax.set_ylabel("probability")
        for x, v in zip(xs, p.tolist()):
            if 0.005 <= v < 0.9:
                ax.text(x, v + 0.02, f"{v:.2f}", ha="center", fontsize=7)
    return fig


def distillation_grid_view(rows: Sequence[Mapping], T: float, alpha: float, *,
                           scratch: Mapping | None = None) -> Figure:
    """Left: the student's test accuracy over the (T, alpha) grid, the chosen
    cell marked; right: its validation accuracy per epoch, with the label-only
    student's."""
    if not rows:
        raise ValueError("rows must hold at least one distillation_grid row, got none")
    temps = sorted({r["T"] for r in rows})
    alphas = sorted({r["alpha"] for r in rows})
    acc = {(r["T"], r["alpha"]): r for r in rows}
    if (T, alpha) not in acc:
        raise ValueError(f"(T, alpha) must be a grid point, got ({T}, {alpha})")
    fig = Figure(figsize=(10, 3.2), dpi=80, layout="constrained")
    ax_g, ax_c = fig.subplots(1, 2)
    grid = [[100 * acc[(t, a)]["test_accuracy"] if (t, a) in acc else float("nan")
             for t in temps] for a in alphas]
    im = ax_g.imshow(grid, cmap="viridis", aspect="auto", origin="lower")
    for i, a in enumerate(alphas):
        for j, t in enumerate(temps):
            if (t, a) in acc:
                ax_g.text(j, i, f"{grid[i][j]:.1f}", ha="center", va="center", fontsize=8,
                          color="w" if (t, a) != (T, alpha) else "k",
                          bbox=None if (t, a) != (T, alpha) else {"fc": "w", "ec": "k"})
    ax_g.set_xticks(range(len(temps)), [f"{t:g}" for t in temps])
    ax_g.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
    ax_g.set(xlabel="temperature T", ylabel="α (weight of the soft term)",
             title="distilled student: test accuracy (%)")
    fig.colorbar(im, ax=ax_g, shrink=0.8)
    hist = acc[(T, alpha)]["history"]
    ax_c.plot([r["epoch"] for r in hist], [100 * r["val_accuracy"] for r in hist],
              color="tab:blue", label=f"distilled, T = {T:g}, α = {alpha:g}")
    if scratch is not None:
        sh = scratch["history"]
        ax_c.plot([r["epoch"] for r in sh], [100 * r["val_accuracy"] for r in sh],
                  color="tab:gray", label="labels only (α = 0)")
    ax_c.set(xlabel="epoch", ylabel="validation accuracy (%)")
    ax_c.legend(fontsize=8, loc="lower right")
    return fig


def distillation_sweeps(rows: Sequence[Mapping], *, scratch_accuracy: float | None = None,
                        teacher_accuracy: float | None = None) -> Figure:
    """Student test accuracy against T, one line per α (from grid rows)."""
    if not rows:
        raise ValueError("rows must hold at least one row, got none")
    fig = Figure(figsize=(5, 3.2), dpi=80, layout="constrained")
    ax = fig.subplots()
    for alpha in sorted({r["alpha"] for r in rows}):
        pts = sorted((r["T"], 100 * r["test_accuracy"]) for r in rows if r["alpha"] == alpha)
        ax.plot(*zip(*pts), marker="o", label=f"distilled, α = {alpha:g}")
    if scratch_accuracy is not None:
        ax.axhline(100 * scratch_accuracy, color="tab:gray", ls="--", label="labels only")
    if teacher_accuracy is not None:
        ax.axhline(100 * teacher_accuracy, color="k", ls=":", label="teacher")
    ax.set(xscale="log", xlabel="temperature T", ylabel="test accuracy (%)",
           title="784-64-10 student, 60 epochs")
    temps = sorted({r["T"] for r in rows})
    ax.set_xticks(temps, [f"{t:g}" for t in temps])
    ax.legend(fontsize=8, loc="lower right")
    return fig


def pareto(rows: Sequence[Mapping], *, x: str = "sparse_kb", xlabel: str | None = None,
           log: bool = True) -> Figure:
    """Accuracy against a cost column (``x``) for every row, the Pareto front
    (no other model is both cheaper and more accurate) drawn as a line.

    Accuracy is ``accuracy_mean`` where a row has it (with ``accuracy_std`` as
    an error bar, none where it is NaN), else ``accuracy``.
    """
    if not rows:
        raise ValueError("rows must hold at least one row, got none")
    if any(x not in r for r in rows):
        raise ValueError(f"x must be a column of every row, {x!r} is missing")
    if log and any(not r[x] > 0 for r in rows):
        raise ValueError(f"rows' {x} must be > 0 on a log scale (log=True), got "
                         f"{[r[x] for r in rows if not r[x] > 0]}")
    fig = Figure(figsize=(7.5, 4.2), dpi=80, layout="constrained")
    ax = fig.subplots()
    pts = [(r[x], 100 * r.get("accuracy_mean", r.get("accuracy")), r["model"]) for r in rows]
    front, best = [], -1.0
    for c, a, _ in sorted(pts, key=lambda p: (p[0], -p[1])):
        if a > best:
            front.append((c, a))
            best = a
    ax.step(*zip(*front), where="post", color="tab:green", alpha=0.5, label="Pareto front")
    for i, ((c, a, name), r) in enumerate(zip(pts, rows)):
        std = r.get("accuracy_std", float("nan"))
        ax.errorbar(c, a, yerr=None if std != std else 100 * std, fmt="o", ms=6, capsize=3,
                    zorder=3)
        ax.annotate(str(i + 1), (c, a), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ylabel = "test accuracy (%)" + (", mean ± std over seeds" if "accuracy_mean" in rows[0]
                                    else "")
    ax.set(xscale="log" if log else "linear", xlabel=xlabel or x, ylabel=ylabel)
    if log:  # plain numbers at 1, 2, 5 x 10^k instead of crowded powers of ten

        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.text(1.01, 1.0, "\n".join(f"{i + 1}  {name}" for i, (_, _, name) in enumerate(pts)),
            transform=ax.transAxes, va="top", fontsize=7)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def structure_curves(rows: Sequence[Mapping]) -> Figure:
    """Accuracy after fine-tuning against the share of fc1 removed, single
    weights (unstructured, mask removed) vs whole neurons (structured); and
    the batch-256 latency of both (``unstructured_latency_ms``,
    ``structured_latency_ms``; the thread count from ``threads`` if given)."""
    if not rows:
        raise ValueError("rows must hold at least one row, got none")
    fig = Figure(figsize=(9, 3.2), dpi=80, layout="constrained")
    ax_a, ax_l = fig.subplots(1, 2)
    xs = [100 * r["amount"] for r in rows]
    ax_a.plot(xs, [100 * r["unstructured"] for r in rows], marker="o", label="unstructured")
    ax_a.plot(xs, [100 * r["structured"] for r in rows], marker="s", label="structured")
    ax_a.set(xlabel="share of fc1 removed (%)", ylabel="test accuracy after fine-tuning (%)")
    ax_a.legend(fontsize=8)
    for key, marker in (("unstructured", "o"), ("structured", "s")):
        ax_l.plot(xs, [r[f"{key}_latency_ms"] for r in rows], marker=marker, label=key)
    threads = rows[0].get("threads")
    ax_l.set(xlabel="share of fc1 removed (%)",
             ylabel="latency, batch 256 (ms)" + (f", {threads} thread(s)" if threads else ""),
             title="zeros stay as slow; fewer neurons are faster", ylim=(0, None))
    ax_l.legend(fontsize=8)
    return fig


def abs_weight_histogram(weights: Mapping[str, torch.Tensor], *, near_zero: float = 1e-3,
                         lowest: float = 1e-9) -> Figure:
    """Histogram of |w| on a log scale, one panel per ``{label: tensor}``.

    Bins are log-spaced from ``lowest`` to the largest |w|; weights exactly 0
    cannot sit on a log axis, so each panel's title counts them instead, next
    to the share below ``near_zero`` (marked by a dashed line).
    """
    check_float("near_zero", near_zero, 0.0, low_open=True)
    check_float("lowest", lowest, 0.0, low_open=True)
    _check_weights(weights)
    mags = {k: w.detach().flatten().abs().cpu() for k, w in weights.items()}
    top = max(max(m.max().item() for m in mags.values()), lowest * 10)
    bins = torch.logspace(math.log10(lowest), math.log10(top), 81).numpy()
    fig = Figure(figsize=(4.2 * len(mags), 3.0), dpi=80, layout="constrained")
    axes = fig.subplots(1, len(mags), squeeze=False)[0]
    for ax, (label, m) in zip(axes, mags.items()):
        zero = int((m == 0).sum())
        below = (m < near_zero).float().mean().item()
        ax.hist(m[m > 0].clamp(min=lowest).numpy(), bins=bins, color="tab:blue")
        ax.axvline(near_zero, color="tab:orange", ls="--", lw=1, label=f"|w| = {near_zero:g}")
        ax.set(xscale="log", xlabel="|w| (log scale)", ylabel="count")
        ax.set_title(f"{label}: {below:.0%} below {near_zero:g}, {zero:,} exactly 0",
                     fontsize=10)
        ax.legend(fontsize=8, loc="upper left")
    return fig


def sfp_norms(history: Sequence[Mapping], *, title: str | None = None) -> Figure:
    """Soft Filter Pruning per epoch: the largest norm a zeroed neuron's weight row
    grew back to, against the smallest norm among the kept rows (rows of
    ``pruning.soft_filter_prune``'s history; epochs with no earlier choice are
    skipped). A zeroed neuron is chosen again only when the first line
    crosses the second."""
    rows = [r for r in history if r["kept_min_norm"] > 0]
    if not rows:
        raise ValueError("history has no epoch with an earlier choice to compare with")
    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(4.8, 3.0), dpi=80, layout="constrained")
    ax = fig.subplots()
    ax.plot(epochs, [r["kept_min_norm"] for r in rows], marker="o", color="tab:green",
            label="smallest kept row")
    ax.plot(epochs, [r["regrown_norm"] for r in rows], marker="s", color="tab:red",
            label="largest regrown row")
    ax.set(xlabel="epoch", ylabel="weight-row L2 norm", ylim=(0, None))
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig
