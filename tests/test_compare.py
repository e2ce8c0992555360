"""Tests for what notebook 04 measures: metrics (MACs, sizes, formats),
int8 quantisation, and the comparison table."""
from __future__ import annotations

import csv
import math

import pytest
import torch
from matplotlib.figure import Figure

from helpers import compare, metrics, plots
from helpers.models import baseline_mlp, mlp, small_cnn
from helpers.pruning import magnitude_prune, make_permanent, remove_neurons
from helpers.quantization import Int8Linear, max_rounding_error, quantize_int8


def test_macs_and_parameters_of_the_article_network_by_hand():
    net = baseline_mlp()
    assert metrics.macs(net) == {"dense": 784 * 128 + 128 * 10,
                                 "nonzero": 784 * 128 + 128 * 10}
    assert metrics.count_parameters(net)["total"] == 784 * 128 + 128 + 128 * 10 + 10
    pruned = magnitude_prune(net, 0.9)  # 90,317 of fc1's 100,352 weights zeroed
    zeroed = round(0.9 * 784 * 128)
    assert metrics.macs(pruned) == {"dense": 101_632, "nonzero": 101_632 - zeroed}
    small = remove_neurons(net, 32)
    assert metrics.macs(small)["dense"] == 784 * 32 + 32 * 10


def test_macs_of_the_cnn_by_hand():
    # conv: output positions x (in_channels x 3 x 3) per output channel
    conv1 = 28 * 28 * 16 * (1 * 9)
    conv2 = 14 * 14 * 32 * (16 * 9)
    fcs = 32 * 7 * 7 * 128 + 128 * 10
    assert metrics.macs(small_cnn())["dense"] == conv1 + conv2 + fcs


def _same_logits(a, b, X):
    with torch.no_grad():
        return torch.equal(a(X), b(X))


@pytest.mark.parametrize("fmt", metrics.FORMATS)
@pytest.mark.parametrize("kind", ["dense", "pruned", "int8", "int8-pruned"])
def test_saved_and_reloaded_in_each_format_gives_the_same_logits(fmt, kind):
    net = mlp(32, seed=1)
    X = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    model = {"dense": lambda: net, "pruned": lambda: magnitude_prune(net, 0.8),
             "int8": lambda: quantize_int8(net),
             "int8-pruned": lambda: quantize_int8(magnitude_prune(net, 0.8))}[kind]()
    blob = metrics.serialize(model, fmt)
    skeleton = quantize_int8(mlp(32, seed=9)) if kind.startswith("int8") else mlp(32, seed=9)
    skeleton.load_state_dict(metrics.deserialize(blob, fmt))
    assert _same_logits(skeleton, model, X)


def test_file_sizes_follow_the_formats():
    net = mlp(64, seed=0)
    dense = metrics.file_sizes(net)
    assert dense["sparse"] == dense["raw"]  # nothing sparse enough to convert
    # raw bytes hold the float32 payload plus some framing
    payload = metrics.count_parameters(net)["total"] * 4
    assert payload < dense["raw"] < payload + 4096
    pruned = metrics.file_sizes(magnitude_prune(net, 0.9))
    assert pruned["raw"] == dense["raw"]  # zeros cost as much as any float32
    # CSR: 4-byte value + 4-byte column index per non-zero, for fc1's 10% left
    nnz = round(0.1 * 784 * 64)
    rest = (64 + 64 * 10 + 10) * 4
    assert pruned["sparse"] < (8 * nnz + rest) + 4096
    assert pruned["gzip"] < dense["gzip"] / 3
    masked = magnitude_prune(net, 0.9)
    assert metrics.state_dict_bytes(masked) > 1.9 * dense["raw"]  # orig + mask saved as is


def test_int8_quantisation_error_is_bounded():
    net = mlp(64, seed=3)
    q = quantize_int8(net)
    assert all(isinstance(m, Int8Linear) for m in (q.fc1, q.fc2))
    for fc, qfc in ((net.fc1, q.fc1), (net.fc2, q.fc2)):
        w = fc.weight.detach()
        scale = w.abs().amax(dim=1) / 127  # written out: symmetric, per row
        assert torch.allclose(qfc.scale, scale)
        assert torch.equal(qfc.weight_int8, torch.round(w / scale[:, None]).to(torch.int8))
        assert (qfc.weight - w).abs().le(scale[:, None] / 2 + 1e-7).all()
    largest = max(net.fc1.weight.abs().max().item(), net.fc2.weight.abs().max().item())
    assert max_rounding_error(net, q) <= largest / 254 + 1e-7  # half a step of max|w|/127
    # stated tolerance: logits within 0.05 of the float ones on typical inputs
    X = torch.randn(256, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        gap = (q(X) - net(X)).abs().max().item()
        agree = (q(X).argmax(1) == net(X).argmax(1)).float().mean().item()
    assert gap < 0.05 and agree >= 0.99
    assert metrics.file_sizes(q)["raw"] < metrics.file_sizes(net)["raw"] / 3.5


def test_int8_keeps_pruned_zeros_and_leaves_the_original_alone():
    net = mlp(32, seed=0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    pruned = magnitude_prune(net, 0.75)
    q = quantize_int8(pruned)
    zeros = make_permanent(pruned).fc1.weight == 0
    assert (q.fc1.weight_int8[zeros] == 0).all()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert hasattr(pruned.fc1, "weight_mask")  # the pruned input keeps its mask too
    with pytest.raises(ValueError, match="linear"):
        Int8Linear(torch.nn.Conv2d(1, 1, 3))
    with pytest.raises(ValueError, match="nn.Linear"):
        quantize_int8(torch.nn.Sequential(torch.nn.ReLU()))


def test_bad_format_is_rejected():
    with pytest.raises(ValueError, match="fmt"):
        metrics.serialize(mlp(4), "zip")
    with pytest.raises(ValueError, match="fmt"):
        metrics.deserialize(b"", "zip")


def test_measure_rows_csv_and_table(embedded, tmp_path):
    small_data = embedded
    models = {"a": mlp(8, seed=0), "b": magnitude_prune(mlp(8, seed=0), 0.5)}
    rows = compare.compare(models, small_data, latency=True)
    assert [r["model"] for r in rows] == ["a", "b"]
    for r, m in zip(rows, models.values()):
        assert r["params"] == metrics.count_parameters(m)["total"]
        assert r["raw_kb"] == metrics.file_sizes(m)["raw"] / 1000
        assert r["latency_b1_ms"] > 0 and r["latency_b256_ms"] > 0
    assert rows[1]["nonzero"] == rows[0]["params"] - round(0.5 * 784 * 8)
    path = compare.write_csv(rows, tmp_path / "out" / "t.csv")
    with open(path, newline="") as fh:
        back = list(csv.DictReader(fh))
    assert [b["model"] for b in back] == ["a", "b"]
    assert math.isclose(float(back[0]["accuracy"]), rows[0]["accuracy"], abs_tol=1e-6)
    assert not list(path.parent.glob("*.tmp"))
    text = compare.format_table(rows, ["model", "params"])
    assert text.splitlines()[1].split()[-1] == f"{rows[0]['params']:,}"
    with pytest.raises(ValueError, match="rows"):
        compare.write_csv([], tmp_path / "x.csv")


def test_comparison_figures():
    rows = [{"model": "a", "accuracy": 0.9, "kb": 10.0}, {"model": "b", "accuracy": 0.95, "kb": 100.0},
            {"model": "c", "accuracy": 0.8, "kb": 50.0}]
    fig = plots.pareto(rows, x="kb")
    assert isinstance(fig, Figure)
    front = fig.axes[0].lines[0].get_xydata().tolist()
    assert [p[0] for p in front] == [10.0, 100.0]  # c is dominated by a
    with pytest.raises(ValueError, match="x"):
        plots.pareto(rows, x="nope")
    curves = [{"amount": 0.5, "unstructured": 0.9, "structured": 0.8,
               "structured_latency_ms": 0.1}]
    assert len(plots.structure_curves(curves).axes) == 2
