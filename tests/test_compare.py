"""Tests for what notebook 04 measures: metrics (MACs, sizes, formats),
int8 quantisation, and the comparison table."""
from __future__ import annotations

import csv
import math

import pytest
import torch
from matplotlib.figure import Figure

from helpers import compare, distillation, metrics, plots, pruning, stats
from helpers import experiments as ex
from helpers.experiments import FINETUNE, GRADUAL, KD, PRUNE_AMOUNT, SFP, STRUCTURED_KEEP
from helpers.models import baseline_mlp, make_permanent, mlp, small_cnn
from helpers.pruning import magnitude_prune, remove_neurons
from helpers.training import evaluate
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


def _acc(model, data):
    return evaluate(model, data.X_test, data.y_test)["accuracy"]


def test_measure_gives_counts_sizes_and_latency_with_iqr():
    m = magnitude_prune(mlp(8, seed=0), 0.5)
    row = compare.measure("b", m, threads=1, min_run_time=0.01)
    assert row["params"] == metrics.count_parameters(m)["total"]
    assert row["nonzero"] == row["params"] - round(0.5 * 784 * 8)
    assert row["raw_kb"] == metrics.file_sizes(m)["raw"] / 1000  # KB = 1000 bytes
    assert row["macs"] == 784 * 8 + 8 * 10 and row["threads"] == 1
    for b in ex.LATENCY_BATCHES:
        assert row[f"latency_b{b}_ms"] > 0 and row[f"latency_b{b}_iqr_ms"] >= 0
    assert "latency_b1_ms" not in compare.measure("b", m, latency=False)
    with pytest.raises(ValueError, match="threads"):
        compare.measure("b", m, threads=0)


def _fake_training(monkeypatch, calls):
    """Replace every trainer build_models calls by a recorder (no training)."""
    def fake_train(model, data, **kw):
        calls.append(("train", kw))
        return []

    def fake_distill(student, teacher, data, **kw):
        calls.append(("distill", kw))
        return []

    def fake_sfp(base, data, *, amount, seed, **kw):
        calls.append(("sfp", {"amount": amount, "seed": seed, **kw}))
        return pruning.neuron_prune(base, amount), []

    def fake_gradual(base, data, *, final, seed, **kw):
        calls.append(("gradual", {"final": final, "seed": seed, **kw}))
        return magnitude_prune(base, final), []

    monkeypatch.setattr(ex, "train", fake_train)
    monkeypatch.setattr(distillation, "distill", fake_distill)
    monkeypatch.setattr(pruning, "soft_filter_prune", fake_sfp)
    monkeypatch.setattr(pruning, "gradual_prune", fake_gradual)
    monkeypatch.setattr(ex, "get_baseline", lambda data, seed: (baseline_mlp(seed=seed), {}))
    monkeypatch.setattr(ex, "get_teacher_ensemble", lambda data: (mlp(16, seed=99), []))
    monkeypatch.setattr(ex, "get_student",
                        lambda data, seed, teacher, **kw: (mlp(64, seed=seed), {}))


def test_build_models_uses_the_recipes_and_equal_budgets(embedded, monkeypatch):
    calls = []
    _fake_training(monkeypatch, calls)
    models = ex.build_models(embedded, seed=3, teacher=mlp(16, seed=99))
    assert tuple(models) == ex.NAMES[:-1]
    base = baseline_mlp(seed=3)
    assert torch.equal(models["dense baseline 784-128-10"].fc1.weight, base.fc1.weight)
    assert pruning.sparsity(models["unstructured 90% of fc1, mask removed"])["fc1"] == \
        pytest.approx(PRUNE_AMOUNT, abs=1e-4)
    assert models["structured 128 -> 32 neurons"].fc1.out_features == STRUCTURED_KEEP
    assert models["soft filter pruning -> 32 neurons"].fc1.out_features == STRUCTURED_KEEP
    kinds = [k for k, _ in calls]
    assert kinds == ["train", "train", "sfp", "gradual", "distill"]
    structured, kd = calls[1][1], calls[4][1]
    budget = ("epochs", "lr", "batch_size", "keep_best", "seed")
    assert {k: structured[k] for k in budget} == {k: kd[k] for k in budget}
    assert {k: structured[k] for k in budget} == {**{k: FINETUNE[k] for k in budget[:4]},
                                                  "seed": 3}
    assert kd["keep_best"] is True and (kd["T"], kd["alpha"]) == (KD["T"], KD["alpha"])
    assert calls[2][1] == {**SFP, "seed": 3} and calls[3][1] == {**GRADUAL, "seed": 3}
    # int8 rows quantise the matching float models
    assert isinstance(models["int8 + structured 32"].fc1, Int8Linear)
    assert models["int8 + structured 32"].fc1.out_features == STRUCTURED_KEEP


def test_comparison_reports_mean_and_std_over_seeds(embedded, monkeypatch):
    def fake_build(data, *, seed, teacher, teacher_logits):
        return {name: mlp(8, seed=10 * seed + i) for i, name in enumerate(ex.NAMES[:-1])}

    teacher = mlp(16, seed=99)
    monkeypatch.setattr(compare, "build_models", fake_build)
    monkeypatch.setattr(compare, "get_teacher_ensemble", lambda data: (teacher, []))
    rows, models, acc = compare.comparison(embedded, seeds=(0, 1, 2), latency=False)
    assert [r["model"] for r in rows] == list(ex.NAMES)
    for i, name in enumerate(ex.NAMES[:-1]):
        ref = [_acc(mlp(8, seed=10 * s + i), embedded) for s in (0, 1, 2)]
        assert acc[name] == ref
        m, sd = stats.mean_std(ref)
        assert rows[i]["accuracy_mean"] == pytest.approx(m)
        assert rows[i]["accuracy_std"] == pytest.approx(sd)
        assert rows[i]["seeds"] == 3
        # sizes come from the first seed's model
        assert torch.equal(models[name].fc1.weight, mlp(8, seed=i).fc1.weight)
    assert rows[-1]["seeds"] == 1 and math.isnan(rows[-1]["accuracy_std"])
    assert rows[-1]["accuracy_mean"] == _acc(teacher, embedded)
    with pytest.raises(ValueError, match="seeds"):
        compare.comparison(embedded, seeds=(0,))


def test_table_and_csv(tmp_path):
    rows = [{"model": "a", "accuracy_mean": 0.95, "accuracy_std": 0.005, "seeds": 5,
             "params": 1234, "threads": 1, "latency_b1_ms": 0.0312, "latency_b1_iqr_ms": 0.0004},
            {"model": "t", "accuracy_mean": 0.976, "accuracy_std": math.nan, "seeds": 1,
             "params": 10, "threads": 1, "latency_b1_ms": 1.5, "latency_b1_iqr_ms": 0.25}]
    lines = compare.format_table(rows).splitlines()
    assert lines[0].split() == ["model", "accuracy", "params", "threads", "latency_b1_ms"]
    assert "95.0% ± 0.5" in lines[1] and "0.031 (IQR 0.000)" in lines[1]
    assert "97.6% (1 run)" in lines[2] and "1.500 (IQR 0.250)" in lines[2]
    assert compare.format_table(rows, ["model", "params"]).splitlines()[1].split()[-1] == "1,234"
    path = compare.write_csv(rows, tmp_path / "out" / "t.csv")
    with open(path, newline="") as fh:
        back = list(csv.DictReader(fh))
    assert list(back[0]) == ["model", "accuracy_mean", "accuracy_std", "seeds", "params",
                             "threads", "latency_b1_ms", "latency_b1_iqr_ms"]
    assert float(back[0]["accuracy_std"]) == 0.005 and back[1]["accuracy_std"] == ""
    assert back[0]["threads"] == "1"
    assert not list(path.parent.glob("*.tmp"))
    with pytest.raises(ValueError, match="rows"):
        compare.write_csv([], tmp_path / "x.csv")


def test_sparsity_curves_time_both_kinds(embedded, monkeypatch):
    monkeypatch.setattr(ex, "train", lambda model, data, **kw: [])  # no fine-tuning
    base = mlp(16, seed=0)
    rows = ex.sparsity_curves(base, embedded, [0.5, 0.75], threads=1, min_run_time=0.01)
    assert [r["amount"] for r in rows] == [0.5, 0.75]
    for r in rows:
        un = make_permanent(magnitude_prune(base, r["amount"]))
        st = remove_neurons(base, round(16 * (1 - r["amount"])))
        assert r["unstructured"] == _acc(un, embedded)
        assert r["structured"] == _acc(st, embedded)
        assert r["threads"] == 1
        for k in ("unstructured", "structured"):
            assert r[f"{k}_latency_ms"] > 0 and r[f"{k}_latency_iqr_ms"] >= 0


def test_comparison_figures():
    rows = [{"model": "a", "accuracy": 0.9, "kb": 10.0}, {"model": "b", "accuracy": 0.95, "kb": 100.0},
            {"model": "c", "accuracy": 0.8, "kb": 50.0}]
    fig = plots.pareto(rows, x="kb")
    assert isinstance(fig, Figure)
    front = fig.axes[0].lines[0].get_xydata().tolist()
    assert [p[0] for p in front] == [10.0, 100.0]  # c is dominated by a
    with pytest.raises(ValueError, match="x"):
        plots.pareto(rows, x="nope")
    mean_rows = [{"model": "a", "accuracy_mean": 0.9, "accuracy_std": 0.01, "kb": 10.0},
                 {"model": "b", "accuracy_mean": 0.8, "accuracy_std": math.nan, "kb": 5.0}]
    ax = plots.pareto(mean_rows, x="kb").axes[0]
    assert [p[1] for p in ax.lines[0].get_xydata().tolist()] == [80.0, 90.0]
    curves = [{"amount": 0.5, "unstructured": 0.9, "structured": 0.8,
               "unstructured_latency_ms": 0.3, "structured_latency_ms": 0.1},
              {"amount": 0.9, "unstructured": 0.85, "structured": 0.6,
               "unstructured_latency_ms": 0.31, "structured_latency_ms": 0.05}]
    fig = plots.structure_curves(curves)
    assert len(fig.axes) == 2
    lat = [line.get_ydata().tolist() for line in fig.axes[1].lines]
    assert lat == [[0.3, 0.31], [0.1, 0.05]]
