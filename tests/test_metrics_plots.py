"""Tests for helpers.metrics, helpers.plots and helpers.exercises."""
from __future__ import annotations

import io

import pytest
import torch
from matplotlib.figure import Figure
from torch.nn.utils import prune

from helpers import exercises, metrics, plots
from helpers.models import baseline_mlp, mlp


def test_count_parameters_matches_hand_count_and_sees_masks():
    net = baseline_mlp()
    assert metrics.count_parameters(net) == {"total": 101_770, "nonzero": 101_770}
    prune.l1_unstructured(net.fc1, "weight", amount=0.5)  # masks 50,176 weights
    counts = metrics.count_parameters(net)
    assert counts["total"] == 101_770
    assert counts["nonzero"] == 101_770 - 784 * 128 // 2


def test_state_dict_bytes_is_the_saved_size():
    net = mlp(32)
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    assert metrics.state_dict_bytes(net) == len(buf.getvalue())
    # float32 payload: (784*32 + 32 + 32*10 + 10) * 4 bytes, plus a little framing
    payload = (784 * 32 + 32 + 32 * 10 + 10) * 4
    assert payload < metrics.state_dict_bytes(net) < payload + 4096


def test_latency_is_positive_and_leaves_the_model_alone():
    net = baseline_mlp()
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ms = metrics.latency_ms(net, batch_size=4, repeats=3)
    assert ms > 0
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="batch_size"):
        metrics.latency_ms(net, batch_size=0)


def test_plots_return_figures_and_check_arguments():
    w = torch.randn(10, 10)
    fig = plots.weight_histogram({"a": w, "b": w * 2}, near_zero=0.1)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    share = (w.abs() < 0.1).float().mean().item()
    assert f"{share:.0%}" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="bins"):
        plots.weight_histogram(w, bins=1)
    with pytest.raises(ValueError, match="weights"):
        plots.weight_histogram({})
    hist = [{"epoch": 1, "train_loss": 1.0, "test_accuracy": 0.5},
            {"epoch": 2, "train_loss": 0.5, "test_accuracy": 0.7}]
    assert len(plots.training_curves(hist).axes) == 2
    X, y = torch.zeros(20, 1, 28, 28), torch.arange(20) % 10
    assert len(plots.digit_grid(X, y, [str(i) for i in range(10)], per_class=2).axes) == 20
    with pytest.raises(ValueError, match="per_class"):
        plots.digit_grid(X, y, [str(i) for i in range(10)], per_class=0)


def test_exercise_check_says_right_wrong_or_unanswered():
    assert exercises.check(None, 3).startswith("Not answered")
    assert exercises.check(3, 3).startswith("Right")
    assert exercises.check(2, 3, hint="h").startswith("Not quite")
    assert "Hint: h" in exercises.check(2, 3, hint="h")
    assert exercises.check(0.951, 0.95, abs_tol=0.005).startswith("Right")
    assert exercises.check(True, 1).startswith("Not quite")  # a bool is not a count
    with pytest.raises(ValueError, match="rel_tol"):
        exercises.check(1, 1, rel_tol=-1)
