"""Tests for the distillation explorers and the plots behind them: setting a
widget's value updates ``.row``, ``.summary`` and ``.figure``; the values are
checked against a hand computation (softmax, entropy in bits, runner-up class,
the gain over the label-only student)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from helpers import plots
from helpers.widgets import DistillationExplorer, TemperatureExplorer

from conftest import hand_softmax

CPU = "cpu"


def hand_bits(p) -> float:
    return -sum(v * math.log2(v) for v in p if v > 0)


def bar_heights(ax) -> list[float]:
    return [b.get_height() for b in ax.patches]




def expected_temperature(teacher, data, i, T):
    """probs, entropy (bits) and summary for test digit i at T, by hand."""
    with torch.no_grad():
        z = teacher(data.X_test[i:i + 1])[0].double()
    p = hand_softmax(z / T)
    order = sorted(range(10), key=lambda c: -p[c].item())
    label = int(data.y_test[i])
    runner = order[1]
    H = hand_bits(p.tolist())
    summary = (f"<b>digit {data.classes[label]}, T = {T:.2f}</b>: entropy {H:.2f} bits; "
               f"runner-up class {data.classes[runner]} ({p[runner].item():.1%})")
    return p, H, summary, z


# --- TemperatureExplorer ---------------------------------------------------------------------

def check_temperature(ex, teacher, data, i, T):
    p, H, summary, z = expected_temperature(teacher, data, i, T)
    assert ex.row["index"] == i and ex.row["T"] == pytest.approx(T)
    torch.testing.assert_close(ex.row["probs"].double(), p, rtol=1e-5, atol=1e-7)
    assert ex.row["entropy"] == pytest.approx(H, rel=1e-5)
    assert ex.summary.value == summary
    fig = ex.figure
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    _, ax1, axT = fig.axes
    # the middle panel is T = 1, the right one the chosen T
    assert bar_heights(ax1) == pytest.approx(hand_softmax(z).tolist(), rel=1e-5, abs=1e-7)
    assert bar_heights(axT) == pytest.approx(p.tolist(), rel=1e-5, abs=1e-7)
    assert axT.get_title().endswith(f"entropy {H:.2f} bits")
    assert ax1.get_title().endswith(f"entropy {hand_bits(hand_softmax(z).tolist()):.2f} bits")
    assert fig.axes[0].get_title() == f"input (label {data.classes[int(data.y_test[i])]})"


def test_temperature_explorer_follows_T_and_the_index(small, teacher):
    ex = TemperatureExplorer(teacher, small, index=3, T=4.0)
    check_temperature(ex, teacher, small, 3, 4.0)
    # the input image is the test digit, unnormalised
    img = ex.figure.axes[0].images[0].get_array()
    want = (small.X_test[3] * small.std + small.mean).reshape(28, 28)
    torch.testing.assert_close(torch.as_tensor(img.data, dtype=torch.float32), want)

    old_fig, old_summary, old_entropy = ex.figure, ex.summary.value, ex.row["entropy"]
    ex.T.value = 12.0
    check_temperature(ex, teacher, small, 3, 12.0)
    assert ex.figure is not old_fig and ex.summary.value != old_summary
    assert ex.row["entropy"] > old_entropy  # hotter: flatter

    old_fig = ex.figure
    ex.T.value = 0.5
    check_temperature(ex, teacher, small, 3, 0.5)
    assert ex.figure is not old_fig and ex.row["entropy"] < old_entropy

    old_fig = ex.figure
    ex.index.value = 17
    check_temperature(ex, teacher, small, 17, 0.5)
    assert ex.figure is not old_fig


def test_temperature_explorer_uses_the_logits_computed_once(small, teacher):
    calls = []
    handle = teacher.register_forward_hook(lambda m, inp, out: calls.append(len(inp[0])))
    try:
        ex = TemperatureExplorer(teacher, small, index=0, T=2.0)
        assert calls == [len(small.X_test)]
        ex.T.value = 8.0
        ex.index.value = 5
        assert calls == [len(small.X_test)]
    finally:
        handle.remove()
    check_temperature(ex, teacher, small, 5, 8.0)


def test_temperature_slider_is_clamped_to_its_range(small, teacher):
    ex = TemperatureExplorer(teacher, small, index=1, T=4.0)
    ex.T.value = 100.0
    assert ex.T.value == pytest.approx(20.0, rel=1e-6)
    check_temperature(ex, teacher, small, 1, ex.T.value)
    ex.index.value = 10_000
    assert ex.index.value == len(small.X_test) - 1
    check_temperature(ex, teacher, small, len(small.X_test) - 1, ex.T.value)


# --- plots.soft_target_bars ---------------------------------------------------------------------

def test_soft_target_bars_without_image_and_bad_T():
    z = torch.tensor([2.0, 0.5, -1.0, 0.0])
    fig = plots.soft_target_bars(z, 3.0, ["a", "b", "c", "d"], label=1)
    _, ax1, ax3 = fig.axes
    assert bar_heights(ax3) == pytest.approx(hand_softmax(z / 3).tolist(), rel=1e-6)
    assert bar_heights(ax1) == pytest.approx(hand_softmax(z).tolist(), rel=1e-6)
    assert ax3.patches[1].get_linewidth() == 1.5 and ax3.patches[0].get_linewidth() != 1.5
    assert [t.get_text() for t in ax3.get_xticklabels()] == ["a", "b", "c", "d"]
    assert ax3.get_title().startswith("T = 3:")
    for T in (0, -2.0):
        with pytest.raises(ValueError, match=r"^T\b"):
            plots.soft_target_bars(z, T, ["a", "b", "c", "d"])


# --- DistillationExplorer --------------------------------------------------------------------------

TEMPS = [1.0, 4.0, 16.0]
ALPHAS = [0.5, 0.9]


def fake_rows():
    """Rows as experiments.distillation_grid makes them, without training."""
    rows = []
    for i, T in enumerate(TEMPS):
        for j, alpha in enumerate(ALPHAS):
            acc = 0.80 + 0.031 * i + 0.017 * j
            val = acc + 0.004  # validation differs from test: the checks see which is shown
            hist = [{"epoch": e, "val_accuracy": val - 0.05 / e} for e in (1, 2, 3)]
            rows.append({"T": T, "alpha": alpha, "val_accuracy": hist[-1]["val_accuracy"],
                         "test_accuracy": acc, "history": hist})
    return rows


SCRATCH = {"test_accuracy": 0.842,
           "history": [{"epoch": e, "val_accuracy": 0.846 - 0.1 / e} for e in (1, 2, 3)]}


def find(rows, T, alpha):
    (row,) = [r for r in rows if r["T"] == T and r["alpha"] == alpha]
    return row


def check_grid(ex, rows, T, alpha, scratch):
    row = find(rows, T, alpha)
    assert ex.row is row
    text = f"<b>T = {T:g}, α = {alpha:g}</b>: test accuracy {row['test_accuracy']:.1%}"
    if scratch is not None:
        gain = (row["test_accuracy"] - scratch["test_accuracy"]) * 100
        text += f" ({gain:+.1f} points over labels only)"
    assert ex.summary.value == text
    fig = ex.figure
    assert isinstance(fig, Figure)
    ax_g, ax_c = fig.axes[:2]
    grid = ax_g.images[0].get_array()
    for i, a in enumerate(ALPHAS):
        for j, t in enumerate(TEMPS):
            assert grid[i, j] == pytest.approx(100 * find(rows, t, a)["test_accuracy"])
    curves = [list(l.get_ydata()) for l in ax_c.lines]
    want = [[100 * r["val_accuracy"] for r in row["history"]]]  # the curves: validation
    if scratch is not None:
        want.append([100 * r["val_accuracy"] for r in scratch["history"]])
    assert len(curves) == len(want)
    for got, exp in zip(curves, want):
        assert got == pytest.approx(exp)
    boxed = [t.get_text() for t in ax_g.texts if t.get_bbox_patch() is not None]
    assert boxed == [f"{100 * row['test_accuracy']:.1f}"]


def test_distillation_explorer_follows_T_and_alpha():
    rows = fake_rows()
    ex = DistillationExplorer(rows, scratch=SCRATCH)
    assert (ex.T.value, ex.alpha.value) == (TEMPS[0], ALPHAS[-1])  # defaults
    check_grid(ex, rows, 1.0, 0.9, SCRATCH)
    # by hand: 0.80 + 0.017 - 0.842 = -0.025 -> "-2.5 points"
    assert ex.summary.value.endswith("(-2.5 points over labels only)")

    old_fig = ex.figure
    ex.T.value = 16.0
    check_grid(ex, rows, 16.0, 0.9, SCRATCH)
    # by hand: 0.80 + 0.062 + 0.017 - 0.842 = +0.037 -> "+3.7 points"
    assert ex.summary.value.endswith("(+3.7 points over labels only)")
    assert ex.figure is not old_fig

    old_fig = ex.figure
    ex.alpha.value = 0.5
    check_grid(ex, rows, 16.0, 0.5, SCRATCH)
    # by hand: 0.80 + 0.062 - 0.842 = +0.020 -> "+2.0 points"
    assert ex.summary.value.endswith("(+2.0 points over labels only)")
    assert ex.figure is not old_fig


def test_distillation_explorer_without_scratch_and_with_a_start_point():
    rows = fake_rows()
    ex = DistillationExplorer(rows, T=4.0, alpha=0.5)
    check_grid(ex, rows, 4.0, 0.5, None)
    assert "points" not in ex.summary.value
    ex.alpha.value = 0.9
    check_grid(ex, rows, 4.0, 0.9, None)


def test_distillation_explorer_rejects_no_rows():
    with pytest.raises(ValueError, match=r"^rows\b"):
        DistillationExplorer([])


def test_distillation_grid_view_marks_missing_cells_and_rejects_off_grid_points():
    rows = [r for r in fake_rows() if not (r["T"] == 16.0 and r["alpha"] == 0.5)]
    fig = plots.distillation_grid_view(rows, 4.0, 0.9)
    grid = fig.axes[0].images[0].get_array()
    missing = np.ma.getmaskarray(np.ma.masked_invalid(grid))
    assert missing[0, 2] and missing.sum() == 1  # the one absent (T, alpha): nan, not drawn
    assert len(fig.axes[0].texts) == len(rows)
    with pytest.raises(ValueError, match=r"^\(T, alpha\)"):
        plots.distillation_grid_view(rows, 16.0, 0.5)
    with pytest.raises(ValueError, match=r"^\(T, alpha\)"):
        plots.distillation_grid_view(rows, 3.0, 0.9)
