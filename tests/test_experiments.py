"""Tests for helpers.experiments: each per-seed run equals the steps done by
hand, and a second call reads the cache; the regularisation sweep equals its
cached models."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from helpers import experiments as ex
from helpers import distillation, pruning
from helpers.experiments import NEAR_ZERO, regularisation_sweep, regularised_model
from helpers.models import baseline_mlp, mlp
from helpers.training import evaluate, train

from conftest import subset


@pytest.fixture(scope="module")
def tiny(embedded):
    return subset(embedded, 256, 200, "tiny")


@pytest.fixture
def small(embedded, monkeypatch):
    """A small split, baselines trained for one epoch, fine-tuning of one epoch."""
    data = subset(embedded, 400, 200, "experiments")

    def fake_baseline(d, seed):
        net = baseline_mlp(seed=seed)
        train(net, d, epochs=1, seed=seed, device="cpu")
        return net, {"test_accuracy": evaluate(net, d.X_test, d.y_test)["accuracy"]}

    monkeypatch.setattr(ex, "get_baseline", fake_baseline)
    monkeypatch.setattr(ex, "FINETUNE", {**ex.FINETUNE, "epochs": 1})
    return data, fake_baseline


@pytest.mark.parametrize("kind", ["unstructured", "structured"])
def test_prune_then_finetune_runs_equal_the_steps_by_hand(small, kind):
    data, baseline = small
    runs = (ex.unstructured_runs(data, seeds=(0, 1)) if kind == "unstructured"
            else ex.structured_runs(data, seeds=(0, 1)))
    for i, seed in enumerate((0, 1)):
        base, rec = baseline(data, seed)
        net = (pruning.magnitude_prune(base, ex.PRUNE_AMOUNT) if kind == "unstructured"
               else pruning.remove_neurons(base, ex.STRUCTURED_KEEP))
        assert runs["baseline"][i] == rec["test_accuracy"]
        assert runs["pruned"][i] == evaluate(net, data.X_test, data.y_test)["accuracy"]
        train(net, data, seed=seed, **{**ex.FINETUNE, "epochs": 1})
        assert runs["finetuned"][i] == evaluate(net, data.X_test, data.y_test)["accuracy"]


def test_regularisation_sweep_rows_match_the_cached_models(tiny):
    lams = [1e-4, 1e-3]
    rows = regularisation_sweep(tiny, "l1", lams)
    assert [r["lam"] for r in rows] == lams
    for r in rows:
        w = r["weights"]
        assert w.device.type == "cpu" and tuple(w.shape) == (128, 784)
        by_hand = sum(1 for v in w.flatten().tolist() if abs(v) < NEAR_ZERO) / w.numel()
        assert r["near_zero"] == pytest.approx(by_hand, abs=1e-6)  # one weight: 1e-5
        net, rec = regularised_model(tiny, "l1", r["lam"])
        assert rec["cached"] is True
        assert torch.equal(net.fc1.weight.detach().cpu(), w)
        assert r["accuracy"] == evaluate(net, tiny.X_test, tiny.y_test)["accuracy"]
        assert r["val_accuracy"] == evaluate(net, tiny.X_val, tiny.y_val)["accuracy"]
    assert not torch.equal(rows[0]["weights"], rows[1]["weights"])


@pytest.mark.parametrize("kind", ["sfp", "gradual"])
def test_same_budget_runs_equal_the_steps_by_hand(small, kind):
    """Soft vs hard at the same epochs and rate: each side, done by hand."""
    data, baseline = small
    if kind == "sfp":
        runs = ex.sfp_vs_hard_runs(data, seeds=(0, 1))
    else:
        runs = ex.gradual_vs_oneshot_runs(data, seeds=(0, 1))
    recipe = ex.SFP if kind == "sfp" else ex.GRADUAL
    for i, seed in enumerate((0, 1)):
        base, _ = baseline(data, seed)
        if kind == "sfp":
            soft, _ = pruning.soft_filter_prune(base, data, seed=seed, **recipe)
            hard = pruning.neuron_prune(base, recipe["amount"])
        else:
            soft, _ = pruning.gradual_prune(base, data, seed=seed, **recipe)
            hard = pruning.magnitude_prune(base, recipe["final"])
        train(hard, data, seed=seed, progress=False, **{
            **ex.FINETUNE, "epochs": recipe["epochs"], "lr": recipe["lr"], "keep_best": False,
            "evaluate_each_epoch": False})
        # the trained model's logits, which shrinking must keep
        with torch.no_grad():
            trained_logits = hard(data.X_test)
        if kind == "sfp":
            soft, hard = pruning.shrink(soft), pruning.shrink(hard)
            with torch.no_grad():  # shrinking leaves the trained model's logits as they were
                assert torch.allclose(hard(data.X_test), trained_logits, atol=1e-5)
                assert torch.allclose(ex._hard_pruned("sfp", base, data, seed)(data.X_test),
                                      trained_logits, atol=1e-5)
        got = runs["sfp"] if kind == "sfp" else runs["gradual"]
        other = runs["hard"] if kind == "sfp" else runs["one_shot"]
        assert got[i] == evaluate(soft, data.X_test, data.y_test)["accuracy"]
        assert other[i] == evaluate(hard, data.X_test, data.y_test)["accuracy"]


def _no_training(monkeypatch):
    """Make every trainer the runs could call raise: what follows must come
    from the cache."""
    def fail(*args, **kwargs):
        raise AssertionError("trained again instead of reading the cache")

    monkeypatch.setattr(ex, "train", fail)
    for name in ("soft_filter_prune", "gradual_prune"):
        monkeypatch.setattr(pruning, name, fail)
    monkeypatch.setattr(distillation, "distill", fail)


@pytest.mark.parametrize("kind", ["sfp", "gradual"])
def test_same_budget_runs_are_cached(small, kind, monkeypatch):
    """A second call trains nothing and returns the same accuracies."""
    data, _ = small
    runs = ex.sfp_vs_hard_runs if kind == "sfp" else ex.gradual_vs_oneshot_runs
    first = runs(data, seeds=(0, 1))
    _no_training(monkeypatch)
    assert runs(data, seeds=(0, 1)) == first


def test_structured_kd_grid_and_runs_equal_the_steps_by_hand(small, monkeypatch):
    """Each grid row and each run: the baseline cut to 32 neurons, distilled
    with FINETUNE's budget at that (T, alpha), done by hand; then cached."""
    data, baseline = small
    teacher = mlp(16, seed=99)
    train(teacher, data, epochs=1, seed=99, device="cpu")
    pairs = [(2.0, 0.5), (8.0, 0.9)]
    rows = ex.structured_kd_grid(data, [2, 8], [0.5, 0.9], seed=1, teacher=teacher)
    assert [(r["T"], r["alpha"]) for r in rows] == [(2.0, 0.5), (2.0, 0.9), (8.0, 0.5),
                                                     (8.0, 0.9)]
    budget = {k: v for k, v in ex.FINETUNE.items() if k != "optimizer"}
    assert budget["epochs"] == 1 and budget["keep_best"] is True  # the fixture's FINETUNE

    def by_hand(seed, T, alpha):
        base, _ = baseline(data, seed)
        net = pruning.remove_neurons(base, ex.STRUCTURED_KEEP)
        distillation.distill(net, teacher, data, T=T, alpha=alpha, seed=seed, **budget)
        return net

    for r in rows:
        net = by_hand(1, r["T"], r["alpha"])
        val = evaluate(net, data.X_val, data.y_val)
        assert r["val_accuracy"] == val["accuracy"]
        assert r["val_loss"] == pytest.approx(val["loss"], rel=1e-6)
    runs = {p: ex.structured_kd_runs(data, *p, seeds=(0, 1), teacher=teacher) for p in pairs}
    for (T, alpha), accs in runs.items():
        assert accs == [evaluate(by_hand(s, T, alpha), data.X_test, data.y_test)["accuracy"]
                        for s in (0, 1)]
    _no_training(monkeypatch)
    assert ex.structured_kd_grid(data, [2, 8], [0.5, 0.9], seed=1, teacher=teacher) == rows
    assert ex.structured_kd_runs(data, 8, 0.9, seeds=(0, 1), teacher=teacher) == runs[pairs[1]]


def test_structured_kd_grid_reads_no_test_label(small):
    """The grid (and so the choice of T and alpha) is the same with the test
    labels scrambled: it reads the validation split only."""
    data, _ = small
    teacher = mlp(16, seed=99)
    rows = ex.structured_kd_grid(data, [2, 8], [0.9], teacher=teacher)
    g = torch.Generator().manual_seed(0)
    scrambled = dataclasses.replace(data, name="experiments-scrambled",
                                    y_test=data.y_test[torch.randperm(len(data.y_test),
                                                                      generator=g)])
    assert ex.structured_kd_grid(scrambled, [2, 8], [0.9], teacher=teacher) == rows
    assert ex.choose_T_alpha(rows) in [(2.0, 0.9), (8.0, 0.9)]
