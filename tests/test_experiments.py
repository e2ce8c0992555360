"""Tests for helpers.experiments: each per-seed run equals the steps done by hand."""
from __future__ import annotations

import pytest

from helpers import experiments as ex
from helpers import pruning
from helpers.models import baseline_mlp
from helpers.training import evaluate, train

from conftest import subset


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
        train(net, data, seed=seed, **{**pruning.FINETUNE, "epochs": 1})
        assert runs["finetuned"][i] == evaluate(net, data.X_test, data.y_test)["accuracy"]
