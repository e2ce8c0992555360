"""Tests for helpers.metrics and helpers.plots (helpers.exercises: test_exercises.py)."""
from __future__ import annotations

import io
import warnings

import pytest
import torch
from matplotlib.figure import Figure
from torch.nn.utils import prune

from helpers import metrics, plots
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


def test_csr_bytes_is_values_plus_int32_indices_and_row_pointers():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(7, 11, generator=g) * (torch.rand(7, 11, generator=g) < 0.3)
    w[2] = 0  # an empty row still has its row pointer
    nnz, rows = int((w != 0).sum()), w.shape[0]
    # the formula written out: values (float32) + column indices + row pointers (int32)
    assert metrics.csr_bytes(w) == 4 * nnz + 4 * nnz + 4 * (rows + 1)
    # torch's own CSR tensors hold the same numbers (with int64 indices: counted as int32 here)
    csr = w.to_sparse_csr()
    assert metrics.csr_bytes(w) == (csr.values().numel() * csr.values().element_size()
                                    + 4 * csr.col_indices().numel() + 4 * csr.crow_indices().numel())
    assert metrics.csr_bytes(w.double()) == 8 * nnz + 4 * nnz + 4 * (rows + 1)
    assert metrics.csr_bytes((3 * w.sign()).to(torch.int8)) == 1 * nnz + 4 * nnz + 4 * (rows + 1)
    assert metrics.csr_bytes(torch.zeros(3, 5)) == 4 * 4
    assert metrics.csr_bytes(torch.ones(3, 5, requires_grad=True)) == 8 * 15 + 4 * 4
    # and it is what the "sparse" format saves for a matrix that is at least half zeros
    net = baseline_mlp()
    prune.l1_unstructured(net.fc1, "weight", amount=0.9)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        saved = torch.load(io.BytesIO(metrics.serialize(net, "sparse")), weights_only=True)
    fc1 = saved["fc1.weight"]
    assert fc1.layout == torch.sparse_csr
    assert metrics.csr_bytes(net.fc1.weight) == sum(
        t.numel() * t.element_size() for t in (fc1.values(), fc1.col_indices(), fc1.crow_indices()))
    for bad in (torch.zeros(3), torch.zeros(2, 2, 2), [[0.0]], torch.zeros(2, 2).to_sparse()):
        with pytest.raises(ValueError, match="weight"):
            metrics.csr_bytes(bad)


def test_latency_is_positive_and_leaves_the_model_alone():
    net = baseline_mlp()
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    threads_before = torch.get_num_threads()
    lat = metrics.latency(net, batch_size=4, threads=2, min_run_time=0.01)
    assert set(lat) == {"median_ms", "iqr_ms", "threads", "batch_size"}
    assert lat["median_ms"] > 0 and lat["iqr_ms"] >= 0
    assert lat["threads"] == 2 and lat["batch_size"] == 4
    assert net.training  # mode restored
    assert torch.is_grad_enabled()
    assert torch.get_num_threads() == threads_before  # the Timer restores the thread count
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    net.eval()
    metrics.latency(net, min_run_time=0.01)
    assert not net.training


def test_latency_agrees_with_a_plain_timer_within_an_order_of_magnitude():
    # independent reference: timeit's own loop over the same call
    import timeit

    net = baseline_mlp().eval()
    x = torch.randn(64, 1, 28, 28)
    with torch.no_grad():
        ref = min(timeit.repeat(lambda: net(x), number=20, repeat=3)) / 20 * 1e3
    ms = metrics.latency(net, 64, threads=torch.get_num_threads(), min_run_time=0.05)["median_ms"]
    assert ref / 10 < ms < ref * 10


@pytest.mark.parametrize("kwargs, name", [
    ({"batch_size": 0}, "batch_size"), ({"batch_size": 2.5}, "batch_size"),
    ({"threads": 0}, "threads"), ({"min_run_time": 0}, "min_run_time"),
    ({"min_run_time": float("nan")}, "min_run_time"), ({"input_shape": (1, 0, 28)}, "input_shape"),
    ({"input_shape": ()}, "input_shape")])
def test_latency_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        metrics.latency(mlp(4), **kwargs)


def test_no_hand_written_timing_loop_in_metrics():
    import inspect

    src = inspect.getsource(metrics)
    assert "perf_counter" not in src and "latency_ms" not in src
    assert not hasattr(metrics, "latency_ms")


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
    hist = [{"epoch": 1, "train_loss": 1.0, "val_accuracy": 0.5},
            {"epoch": 2, "train_loss": 0.5, "val_accuracy": 0.7}]
    assert len(plots.training_curves(hist).axes) == 2
    X, y = torch.zeros(20, 1, 28, 28), torch.arange(20) % 10
    assert len(plots.digit_grid(X, y, [str(i) for i in range(10)], per_class=2).axes) == 20
    with pytest.raises(ValueError, match="per_class"):
        plots.digit_grid(X, y, [str(i) for i in range(10)], per_class=0)


def test_soft_pruning_plots_draw_what_their_history_holds():
    w = torch.tensor([0.0, 0.0, 1e-4, 2e-3, -0.5])
    fig = plots.abs_weight_histogram({"toy": w}, near_zero=1e-3)
    title = fig.axes[0].get_title()
    assert "2 exactly 0" in title and "60% below 0.001" in title  # 3 of 5 below 1e-3
    with pytest.raises(ValueError, match="weights"):
        plots.abs_weight_histogram({})
    with pytest.raises(ValueError, match="near_zero"):
        plots.abs_weight_histogram({"toy": w}, near_zero=0)

    history = [{"epoch": 1, "regrown_norm": 0.0, "kept_min_norm": 0.0},
               {"epoch": 2, "regrown_norm": 0.2, "kept_min_norm": 1.1},
               {"epoch": 3, "regrown_norm": 0.3, "kept_min_norm": 1.2}]
    fig = plots.sfp_norms(history)
    lines = {l.get_label(): list(l.get_ydata()) for l in fig.axes[0].get_lines()}
    assert lines == {"smallest kept row": [1.1, 1.2], "largest regrown row": [0.2, 0.3]}
    with pytest.raises(ValueError, match="history"):
        plots.sfp_norms(history[:1])

    rows = [{"epoch": e, "train_loss": 1.0 / e, "sparsity": s, "val_accuracy": a}
            for e, s, a in ((1, 0.3, 0.90), (2, 0.6, 0.92))]
    fig = plots.gradual_curves(rows)
    ys = sorted(list(l.get_ydata()) for ax in fig.axes for l in ax.get_lines())
    assert [30.0, 60.0] in [[round(v, 6) for v in y] for y in ys] or [0.3, 0.6] in ys
    assert [90.0, 92.0] in [[round(v, 6) for v in y] for y in ys]


def _accuracy_labels(fig: Figure) -> list[str]:
    labels = [t for ax in fig.axes for t in (ax.get_ylabel(), ax.get_xlabel(), ax.get_title())]
    return [t for t in labels if "accuracy" in t.lower()]


def test_every_accuracy_axis_says_which_split_it_shows():
    # The loop's rollbacks and the sensitivity scan are decided on the
    # validation split (pruning.iterative_prune, pruning.sensitivity_scan):
    # their figures must not call those numbers "test".
    trace = [{"sparsity": 0.0, "accuracy": 0.95, "kept": True, "step": 0.0},
             {"sparsity": 0.5, "accuracy": 0.94, "kept": True, "step": 0.5},
             {"sparsity": 0.75, "accuracy": 0.90, "kept": False, "step": 0.25}]
    validation = {
        "rollback_trace": plots.rollback_trace(trace, tolerance=0.005),
        "sensitivity_curves": plots.sensitivity_curves([0.5, 0.9], {"fc1": [0.9, 0.8]}),
        "training_curves": plots.training_curves(
            [{"epoch": 1, "train_loss": 1.0, "val_accuracy": 0.5}]),
    }
    for name, fig in validation.items():
        labels = _accuracy_labels(fig)
        assert labels and all("validation" in t and "test" not in t for t in labels), (name, labels)
    rows = [{"T": t, "alpha": 0.5, "test_accuracy": 0.9} for t in (1.0, 4.0)]
    labels = _accuracy_labels(plots.distillation_sweeps(rows))
    assert labels and all("test" in t for t in labels), labels


# --- bad input gets a clear answer (issue 19) ---------------------------------------

def test_count_parameters_computes_pruned_weights_afresh():
    net = baseline_mlp()
    prune.l1_unstructured(net.fc1, "weight", amount=0.5)
    with torch.no_grad():
        net.fc1.weight_orig.zero_()  # .weight is stale until the next forward pass
    assert metrics.count_parameters(net)["nonzero"] == 128 * 10 + 128 + 10


def test_macs_and_latency_run_a_model_in_its_own_dtype():
    net = mlp(8).double()
    assert metrics.macs(net) == {"dense": 784 * 8 + 8 * 10, "nonzero": 784 * 8 + 8 * 10}
    assert metrics.latency(net, min_run_time=0.01)["median_ms"] > 0


def test_latency_leaves_the_global_rng_alone():
    torch.manual_seed(3)
    before = torch.get_rng_state().clone()
    metrics.latency(mlp(4), min_run_time=0.01)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("fn", [metrics.macs, metrics.latency])
def test_a_model_without_parameters_is_refused_by_name(fn):
    with pytest.raises(ValueError, match=r"^model must have at least one parameter"):
        fn(torch.nn.ReLU())
