"""Tests for helpers.widgets and the plot helpers behind them: setting a slider
updates the row, the summary and the figure; experiments.nearest_row; the two views."""
from __future__ import annotations

import math

import pytest
import torch
from matplotlib.figure import Figure

import helpers.widgets as hw
from helpers import plots
from helpers.experiments import amount_sweep, nearest_row
from helpers.models import mlp
from helpers.pruning import magnitude_prune
from helpers.training import evaluate, train
from helpers.widgets import AmountExplorer, LambdaExplorer

from conftest import subset

CPU = "cpu"
L1_LAMS = [1e-5, 1e-4, 1e-3]
L2_LAMS = [1e-5, 10 ** -4.5, 1e-4, 10 ** -3.5, 1e-3]


def fake_rows(lams, acc0, seed):
    """Sweep rows as ``experiments.regularisation_sweep`` makes them, without training."""
    g = torch.Generator().manual_seed(seed)
    return [{"lam": lam, "accuracy": acc0 - 0.013 * i, "near_zero": 0.07 + 0.11 * i,
             "weights": torch.randn(8, 20, generator=g) * 10 ** (-i / 2)}
            for i, lam in enumerate(lams)]


def nearest_log(rows, value):
    """The row nearest ``value`` on a log scale, by hand."""
    dist = [abs(math.log10(r["lam"]) - math.log10(value)) for r in rows]
    return rows[dist.index(min(dist))]


def hist_total(ax) -> float:
    """Sum of the bar heights of an axes' histogram(s)."""
    return sum(p.get_height() for p in ax.patches)


def summary_of(row, name):
    return (f"<b>{name}, λ = {row['lam']:.0e}</b>: test accuracy {row['accuracy']:.1%}, "
            f"{row['near_zero']:.0%} of fc1 weights near zero")


@pytest.fixture
def sweeps():
    return {"l1": fake_rows(L1_LAMS, 0.95, seed=0), "l2": fake_rows(L2_LAMS, 0.90, seed=1)}


# --- experiments.nearest_row ----------------------------------------------------------------

def test_nearest_row_linear_and_log():
    rows = [{"x": 1.0, "id": "a"}, {"x": 10.0, "id": "b"}, {"x": 100.0, "id": "c"}]
    # 4 is nearer 1 on a line (3 < 6) but nearer 10 on a log scale (log 2.5 < log 4)
    assert nearest_row(rows, "x", 4.0)["id"] == "a"
    assert nearest_row(rows, "x", 4.0, log=True)["id"] == "b"
    # 40 is nearer 10 on a line (30 < 60) but nearer 100 on a log scale (log 2.5 < log 4)
    assert nearest_row(rows, "x", 40.0)["id"] == "b"
    assert nearest_row(rows, "x", 40.0, log=True)["id"] == "c"
    assert nearest_row(rows, "x", 1e9, log=True)["id"] == "c"
    assert nearest_row(rows, "x", -5.0)["id"] == "a"
    assert nearest_row(rows, "x", 10.0, log=True) is rows[1]


def test_nearest_row_rejects_empty_rows():
    with pytest.raises(ValueError, match=r"^rows\b"):
        nearest_row([], "x", 1.0)
    with pytest.raises(ValueError, match=r"^rows\b"):
        nearest_row([], "x", 1.0, log=True)


@pytest.mark.parametrize("value", [0.0, -1e-3])
def test_nearest_row_rejects_non_positive_value_on_log_scale(value):
    rows = [{"lam": 1e-4}, {"lam": 1e-3}]
    with pytest.raises(ValueError, match=r"^lam\b"):
        nearest_row(rows, "lam", value, log=True)
    assert nearest_row(rows, "lam", value) is rows[0]  # fine on a line


# --- the views ---------------------------------------------------------------------------

def test_regularisation_view_shows_the_nearest_row(sweeps):
    rows = sweeps["l2"]
    row = nearest_log(rows, 2.5e-4)
    assert row["lam"] == 10 ** -3.5
    ref = row["weights"].flip(0) * 0.5  # inside the row's range
    fig = plots.regularisation_view(rows, 2.5e-4, label="L2", reference=ref)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    ax_h, ax_c = fig.axes
    # left: the reference and the row's weights, every weight in a bin
    assert hist_total(ax_h) == ref.numel() + row["weights"].numel()
    assert ax_h.get_title().startswith(f"{row['near_zero']:.0%}")
    # right: both curves over all λ, and the marker line at the row's λ
    curves = {tuple(l.get_ydata()) for l in ax_c.lines if len(l.get_xdata()) == len(rows)}
    assert tuple(100 * r["accuracy"] for r in rows) in curves
    assert tuple(100 * r["near_zero"] for r in rows) in curves
    vlines = [l for l in ax_c.lines if len(set(l.get_xdata())) == 1]
    assert [l.get_xdata()[0] for l in vlines] == [row["lam"]]



def test_regularisation_view_shows_every_reference_weight(sweeps):
    rows = sweeps["l1"]
    row = rows[2]  # the strongest λ: the smallest weights
    ref = torch.randn(8, 20, generator=torch.Generator().manual_seed(5))
    assert ref.abs().max() > row["weights"].abs().max()  # the unregularised net is wider
    fig = plots.regularisation_view(rows, row["lam"], reference=ref)
    assert hist_total(fig.axes[0]) == ref.numel() + row["weights"].numel()


def test_amount_view_shows_the_current_point():
    g = torch.Generator().manual_seed(6)
    grid = [{"amount": a, "accuracy": 0.9 - a / 2, "accuracy_finetuned": 0.92 - a / 4,
             "surviving": torch.randn(int(300 * (1 - a)), generator=g) + 0.1}
            for a in (0.0, 0.5, 0.9)]
    current = grid[1]
    fig = plots.amount_view(grid, current)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    ax_h, ax_c = fig.axes
    assert hist_total(ax_h) == current["surviving"].numel()
    ys = [tuple(l.get_ydata()) for l in ax_c.lines]
    assert tuple(100 * r["accuracy"] for r in grid) in ys
    assert tuple(100 * r["accuracy_finetuned"] for r in grid) in ys
    assert (100 * current["accuracy"], 100 * current["accuracy_finetuned"]) in ys


# --- LambdaExplorer ------------------------------------------------------------------------

def test_lambda_explorer_follows_the_slider_and_the_penalty(sweeps):
    ex = LambdaExplorer(sweeps)
    all_lams = sorted(set(L1_LAMS) | set(L2_LAMS))
    assert ex.penalty.value == "l1"
    assert ex.lam.value == pytest.approx(all_lams[len(all_lams) // 2])
    assert ex.row is nearest_log(sweeps["l1"], ex.lam.value)
    assert ex.summary.value == summary_of(ex.row, "L1")
    assert isinstance(ex.figure, Figure) and len(ex.figure.axes) == 2

    # move λ to the top: another L1 row, summary and figure
    old_fig, old_summary = ex.figure, ex.summary.value
    ex.lam.value = 1e-3
    assert ex.row is sweeps["l1"][2]
    assert ex.summary.value == summary_of(sweeps["l1"][2], "L1") != old_summary
    assert isinstance(ex.figure, Figure) and ex.figure is not old_fig
    assert hist_total(ex.figure.axes[0]) == ex.row["weights"].numel()

    # 4e-4: linearly nearer 1e-4, logarithmically nearer 1e-3 (L1) or 10^-3.5 (L2)
    old_fig = ex.figure
    ex.lam.value = 4e-4
    assert ex.row is sweeps["l1"][2]
    assert ex.figure is not old_fig

    old_fig = ex.figure
    ex.penalty.value = "l2"
    assert ex.row is nearest_log(sweeps["l2"], 4e-4)
    assert ex.row["lam"] == 10 ** -3.5
    assert any(ex.row is r for r in sweeps["l2"])
    assert ex.summary.value == summary_of(ex.row, "L2")
    assert ex.summary.value.startswith("<b>L2")
    assert ex.figure is not old_fig

    ex.lam.value = 1e-5
    assert ex.row is sweeps["l2"][0]
    ex.penalty.value = "l1"
    assert ex.row is sweeps["l1"][0]


def test_lambda_explorer_rejects_empty_sweeps():
    with pytest.raises(ValueError, match=r"^sweeps\b"):
        LambdaExplorer({})
    with pytest.raises(ValueError, match=r"^sweeps\b"):
        LambdaExplorer({"l1": fake_rows(L1_LAMS, 0.9, seed=0), "l2": []})


# --- AmountExplorer ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small(embedded):
    data = subset(embedded, 512, 200, "widget-subset")
    net = mlp(16, seed=0)
    train(net, data, epochs=3, progress=False, evaluate_each_epoch=False, device=CPU)
    return net, data


def test_amount_explorer_computes_new_points_and_memoises(small, monkeypatch):
    model, data = small
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grid = amount_sweep(model, data, [0.0, 0.5], finetune_epochs=1)
    calls = []
    real = hw.amount_point

    def counting(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(hw, "amount_point", counting)
    ex = AmountExplorer(model, data, grid, finetune_epochs=1, value=0.5)
    assert calls == []  # the grid's own point
    assert ex.row is grid[1]
    assert isinstance(ex.figure, Figure) and len(ex.figure.axes) == 2

    old_fig = ex.figure
    ex.amount.value = 0.8
    assert calls == [0.8]
    row = ex.row
    assert row["amount"] == 0.8
    # independent: prune the model ourselves and evaluate
    pruned = magnitude_prune(model, 0.8)
    assert row["accuracy"] == evaluate(pruned, data.X_test, data.y_test)["accuracy"]
    train(pruned, data, epochs=1, lr=5e-4, seed=0, progress=False, device=CPU)
    assert row["accuracy_finetuned"] == evaluate(pruned, data.X_test, data.y_test)["accuracy"]
    n = model.fc1.weight.numel()
    assert row["surviving"].numel() == n - round(0.8 * n)
    assert ex.summary.value == (f"<b>80% of fc1 pruned</b>: test accuracy {row['accuracy']:.1%} "
                                f"right after, {row['accuracy_finetuned']:.1%} after 1 epochs "
                                f"of fine-tuning")
    assert isinstance(ex.figure, Figure) and ex.figure is not old_fig
    assert hist_total(ex.figure.axes[0]) == row["surviving"].numel()

    # back to a grid point, then to 0.8 again: both memoised
    ex.amount.value = 0.0
    assert ex.row is grid[0] and calls == [0.8]
    assert ex.summary.value.startswith("<b>0% of fc1 pruned</b>")
    old_fig = ex.figure
    ex.amount.value = 0.8
    assert ex.row is row and calls == [0.8]
    assert ex.figure is not old_fig
    ex.update()  # a redraw without a change
    assert ex.row is row and calls == [0.8]

    assert ex.point(0.8) is row and calls == [0.8]
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_amount_explorer_rejects_an_empty_grid(small):
    model, data = small
    with pytest.raises(ValueError, match=r"^grid\b"):
        AmountExplorer(model, data, [])
