"""Promises of the docstrings that the other tests could not tell from a bug:
each test here fails on a hand-planted mutation of ``helpers`` (issue 20,
item 8) and checks the public functions against a reference computed apart
(a twin model trained by hand, a formula written out).

* ``iterative_prune`` fine-tunes after every step it tries;
* ``train(keep_best=True)`` keeps the *earliest* of epochs tied on validation;
* ``train_loss`` is the mean over the epoch's samples, a partial last batch
  weighing by its size;
* ``alive_neurons`` (and so ``shrink``) counts a neuron alive while any of its
  incoming weights is non-zero;
* a cached pruned model is keyed on its baseline's weights.
"""
from __future__ import annotations

import pytest
import torch

from helpers import distillation
from helpers import experiments as ex
from helpers.models import baseline_mlp, mlp
from helpers.pruning import (alive_neurons, iterative_prune, magnitude_prune, neuron_prune,
                             remove_neurons, shrink)
from helpers.training import best_epoch, evaluate, get_device, train

from conftest import close_state, same_state, state, subset, synthetic

CPU = "cpu"


# --- iterative_prune: every step it tries is fine-tuned ---------------------------------

def test_iterative_prune_fine_tunes_every_step_like_train_by_hand():
    """Two steps (25 %, then 50 % of fc1), each kept (tolerance 1) and each
    followed by one epoch of ``train``. The 48 training images fit in one
    batch of 64, so the shuffle (and so the seed of each try) changes only
    the order of a sum: the run by hand agrees to rounding. (iterative_prune
    trains on the default device: the model starts there too.)"""
    data, lr = synthetic(48, 24), 1e-2
    net = mlp(8, seed=0).to(get_device())
    pruned, trace = iterative_prune(net, data, target=0.5, step=0.25, tolerance=1.0,
                                    finetune_epochs=1, lr=lr)
    assert [r["sparsity"] for r in trace] == [0.0, 0.25, 0.5]
    assert all(r["kept"] for r in trace)

    ref, accs = net, []
    for amount in (0.25, 0.5):
        ref = magnitude_prune(ref, amount)
        train(ref, data, epochs=1, lr=lr, evaluate_each_epoch=False)
        accs.append(evaluate(ref, data.X_val, data.y_val)["accuracy"])
    assert close_state(state(pruned), state(ref), atol=1e-5)
    assert [r["accuracy"] for r in trace[1:]] == accs
    # what the steps give without fine-tuning is far from it
    untuned = magnitude_prune(net, 0.5)
    assert not close_state(state(pruned), state(untuned), atol=1e-3)
    assert torch.equal(pruned.fc1.weight_mask, ref.fc1.weight_mask)


# --- keep_best: the earliest of tied epochs ------------------------------------------------

def test_keep_best_keeps_the_earliest_of_epochs_tied_on_validation():
    """SGD at 1e-2 moves the weights but not one prediction on these 24
    validation images: all three epochs tie. The model must end with epoch
    1's weights (the twin trained one epoch), not a later tied epoch's."""
    data = synthetic(48, 24)
    kw = {"lr": 1e-2, "optimizer": "sgd", "batch_size": 16, "seed": 0, "device": CPU}
    net = mlp(8, seed=0)
    hist = train(net, data, epochs=3, keep_best=True, **kw)
    accs = [r["val_accuracy"] for r in hist]
    earliest = accs.index(max(accs)) + 1  # the docstring's rule, written out
    assert accs.count(max(accs)) >= 2 and earliest < len(accs)  # a tie, with a later epoch
    assert best_epoch(hist) == earliest
    twin = mlp(8, seed=0)
    train(twin, data, epochs=earliest, **kw)
    assert same_state(state(net), state(twin))
    last = mlp(8, seed=0)
    train(last, data, epochs=3, **kw)
    assert not torch.equal(state(last)["fc1.weight"], state(net)["fc1.weight"])


# --- train_loss: a mean over samples, not over batches ---------------------------------

def test_train_loss_weighs_a_partial_last_batch_by_its_size():
    """A loss whose value on a batch is the mean of its row numbers (and which
    leaves the weights alone) has, over an epoch, the mean of 0..N-1 whatever
    the shuffle: (N - 1) / 2. Batches of 20, 20 and 8 averaged per batch give
    another number."""
    data = synthetic(48, 24)
    n = len(data.X_train)
    assert n % 20 == 8

    def row_number_loss(model, xb, yb, idx):
        return idx.float().mean() + 0 * model(xb).sum()

    hist = train(mlp(8, seed=0), data, epochs=3, batch_size=20, loss_fn=row_number_loss,
                 evaluate_each_epoch=False, device=CPU)
    for row in hist:
        assert row["train_loss"] == pytest.approx((n - 1) / 2, rel=1e-6)


def test_train_loss_is_the_per_sample_mean_of_the_recorded_batch_losses():
    """With the default cross-entropy: each batch's loss, recorded as train
    computes it, weighted by the batch's size, summed and divided by N."""
    data = synthetic(48, 24)
    seen = []

    def recorded_cross_entropy(model, xb, yb, idx):
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        seen.append((loss.item(), len(idx)))
        return loss

    hist = train(mlp(8, seed=0), data, epochs=2, batch_size=20, loss_fn=recorded_cross_entropy,
                 evaluate_each_epoch=False, device=CPU)
    per_epoch = [seen[:3], seen[3:]]
    assert [[b for _, b in e] for e in per_epoch] == [[20, 20, 8]] * 2
    for row, batches in zip(hist, per_epoch):
        want = sum(loss * b for loss, b in batches) / len(data.X_train)
        assert row["train_loss"] == pytest.approx(want, rel=1e-6)
        per_batch = sum(loss for loss, _ in batches) / len(batches)
        assert row["train_loss"] != pytest.approx(per_batch, rel=1e-6)


# --- alive_neurons: alive while any incoming weight is non-zero ---------------------------

def test_a_neuron_with_some_zero_weights_is_alive_and_shrink_keeps_it():
    """Half of fc1's weights masked one by one, then 2 of 8 neurons masked
    whole: 6 neurons keep some weights and stay; shrink keeps exactly those
    and the masked model's logits."""
    data = synthetic(48, 24)
    masked = neuron_prune(magnitude_prune(mlp(8, seed=3), 0.5), 0.25)
    w = (masked.fc1.weight_orig * masked.fc1.weight_mask).tolist()
    by_hand = [i for i, row in enumerate(w) if any(v != 0 for v in row)]
    assert len(by_hand) == 6 and all(0 in row for row in w)  # every row lost some weights
    assert alive_neurons(masked).tolist() == by_hand
    small = shrink(masked)
    assert small.hidden == (6,)
    with torch.no_grad():
        torch.testing.assert_close(small(data.X_val), masked(data.X_val), atol=1e-5, rtol=0)


# --- the cache of pruned models is keyed on the baseline's weights ----------------------

def test_a_cached_pruned_model_is_never_served_for_another_baseline(embedded, monkeypatch):
    """Two baselines with the same data and seed but other weights (one
    epoch of training, then two): the structured student distilled from the
    second must be its own, as done by hand, not the first one's from the
    cache."""
    data = subset(embedded, 300, 100, "baseline-key")
    teacher = mlp(16, seed=99)
    epochs = {"n": 1}

    def baseline(d, seed=0):
        net = baseline_mlp(seed=seed)
        train(net, d, epochs=epochs["n"], seed=seed, device=CPU)
        return net, {}

    monkeypatch.setattr(ex, "get_baseline", baseline)
    budget = {k: v for k, v in ex.FINETUNE.items() if k != "optimizer"}

    def by_hand():
        net = remove_neurons(baseline(data)[0], ex.STRUCTURED_KEEP)
        distillation.distill(net, teacher, data, T=2.0, alpha=0.5, seed=0, **budget)
        return evaluate(net, data.X_val, data.y_val)["loss"]

    first = ex.structured_kd_grid(data, [2.0], [0.5], teacher=teacher)
    assert first[0]["val_loss"] == pytest.approx(by_hand(), rel=1e-6)
    epochs["n"] = 2
    second = ex.structured_kd_grid(data, [2.0], [0.5], teacher=teacher)
    assert second[0]["val_loss"] == pytest.approx(by_hand(), rel=1e-6)
    assert second[0]["val_loss"] != pytest.approx(first[0]["val_loss"], rel=1e-4)
