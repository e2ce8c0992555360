"""Tests for helpers.pruning: exact sparsity, masks against torch.nn.utils.prune,
structured shrinking, the rollback loop, the cubic schedule, soft and gradual
pruning, sensitivity, untouched inputs and argument checks (and the amount
slider's point and the regularised models of helpers.experiments, which share
the pruning's checks and its untouched-input guarantee)."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import helpers.pruning as hp
from helpers.experiments import GRADUAL, amount_point, regularised_model
from helpers.models import clone, make_permanent, make_permanent_, mlp
from helpers.quantization import quantize_int8
from helpers.pruning import (alive_neurons, cubic_sparsity, gradual_prune, iterative_prune,
                             magnitude_prune, magnitude_prune_, neuron_prune, remove_neurons,
                             rewind, sensitivity_scan, shrink, soft_filter_prune, sparsity,
                             threshold_prune)
from helpers.training import evaluate, train

from conftest import same_state, state, subset, synthetic

CPU = "cpu"
AMOUNTS = [0.0, 0.1, 0.37, 0.5, 0.9, 0.99]


def pruning_leftovers(model: nn.Module) -> list[str]:
    """Names of every trace torch.nn.utils.prune leaves on a module."""
    found = [n for n, _ in model.named_buffers() if n.endswith("_mask")]
    found += [n for n, _ in model.named_parameters() if n.endswith("_orig")]
    found += [f"{name}: pre-hook" for name, m in model.named_modules()
              for h in m._forward_pre_hooks.values() if isinstance(h, prune.BasePruningMethod)]
    return found


def zeros(t: torch.Tensor) -> int:
    return int((t == 0).sum())


def smallest_first(w: torch.Tensor, zero: torch.Tensor) -> bool:
    """Every zeroed entry had a magnitude no larger than every kept entry."""
    a = w.detach().abs().flatten()
    zero = zero.flatten()
    if not zero.any() or zero.all():
        return True
    return a[zero].max() <= a[~zero].min()


@pytest.fixture(scope="module")
def trained(embedded):
    """An MLP with 32 hidden units, trained briefly on the embedded data. Read-only."""
    net = mlp(32, seed=0)
    train(net, embedded, epochs=2, progress=False, evaluate_each_epoch=False, device=CPU)
    return net


@pytest.fixture(scope="module")
def tiny(embedded):
    return subset(embedded, 256, 200, "tiny")


# --- 1. sparsity exactly as asked -----------------------------------------------------

@pytest.mark.parametrize("amount", AMOUNTS)
def test_layer_scope_gives_exactly_the_asked_count_in_each_layer(amount):
    m = mlp(16, seed=1)
    p = magnitude_prune(m, amount, layers=("fc1", "fc2"), scope="layer")
    counts = {}
    for name in ("fc1", "fc2"):
        w, orig = getattr(p, name).weight, getattr(m, name).weight
        counts[name] = (zeros(w), w.numel())
        assert zeros(w) == round(amount * w.numel())
        assert smallest_first(orig, w == 0)
        kept = w != 0
        assert torch.equal(w[kept], orig.detach()[kept])
    s = sparsity(p)
    assert s["fc1"] == counts["fc1"][0] / counts["fc1"][1]
    assert s["fc2"] == counts["fc2"][0] / counts["fc2"][1]
    assert s["overall"] == (counts["fc1"][0] + counts["fc2"][0]) / (counts["fc1"][1] + counts["fc2"][1])


@pytest.mark.parametrize("amount", [0.0, 0.3, 0.8, 0.98])
def test_global_scope_gives_exactly_the_asked_count_pooled(amount):
    m = mlp(16, seed=2)
    with torch.no_grad():
        m.fc2.weight.mul_(4.0)  # fc2's weights larger: the layers end up unequally sparse
    p = magnitude_prune(m, amount, layers=("fc1", "fc2"), scope="global")
    w1, w2 = p.fc1.weight, p.fc2.weight
    total = w1.numel() + w2.numel()
    assert zeros(w1) + zeros(w2) == round(amount * total)
    pooled_orig = torch.cat([m.fc1.weight.flatten(), m.fc2.weight.flatten()])
    pooled_zero = torch.cat([(w1 == 0).flatten(), (w2 == 0).flatten()])
    assert smallest_first(pooled_orig, pooled_zero)
    assert sparsity(p)["overall"] == (zeros(w1) + zeros(w2)) / total
    if 0 < amount < 0.99:
        assert sparsity(p)["fc1"] > sparsity(p)["fc2"]


def test_default_prunes_fc1_only():
    m = mlp(16, seed=1)
    p = magnitude_prune(m, 0.5)
    assert zeros(p.fc1.weight) == round(0.5 * p.fc1.weight.numel())
    assert not hasattr(p.fc2, "weight_mask")
    assert torch.equal(p.fc2.weight, m.fc2.weight)


def test_sparsity_agrees_with_a_hand_count():
    m = mlp(16, seed=4)
    with torch.no_grad():
        m.fc1.weight[:3] = 0          # 3 rows of 784
        m.fc1.weight[5, :10] = 0      # + 10
        m.fc2.weight[:, 0] = 0        # 10 of 160
        m.fc2.weight[7, 1:4] = 0      # + 3
    z1, z2 = 3 * 784 + 10, 10 + 3
    n1, n2 = 16 * 784, 10 * 16
    s = sparsity(m)
    assert s == {"fc1": z1 / n1, "fc2": z2 / n2, "overall": (z1 + z2) / (n1 + n2)}
    assert sparsity(m, "fc2") == {"fc2": z2 / n2, "overall": z2 / n2}


def test_repruning_in_place_reaches_the_new_absolute_amount_and_keeps_old_zeros():
    m = mlp(16, seed=5)
    p = magnitude_prune(m, 0.5, layers=("fc1", "fc2"))
    old = {n: getattr(p, n).weight.detach().clone() for n in ("fc1", "fc2")}
    assert magnitude_prune_(p, 0.8, layers=("fc1", "fc2")) is p
    for name in ("fc1", "fc2"):
        w = getattr(p, name).weight
        assert zeros(w) == round(0.8 * w.numel())  # absolute, not 0.5 + 0.8 * 0.5
        assert (w[old[name] == 0] == 0).all()
        assert smallest_first(getattr(m, name).weight, w == 0)
        # one mask per weight, not a chain of them
        hooks = [h for h in getattr(p, name)._forward_pre_hooks.values()
                 if isinstance(h, prune.BasePruningMethod)]
        assert len(hooks) == 1 and not isinstance(hooks[0], prune.PruningContainer)


def _fresh_then_magnitude(m):
    p = magnitude_prune(m, 0.5)
    first = p.fc1.weight.detach().clone()
    q = magnitude_prune(p, 0.8)
    assert zeros(q.fc1.weight) == round(0.8 * first.numel())
    assert (q.fc1.weight[first == 0] == 0).all()
    assert torch.equal(p.fc1.weight, first)  # the input stays at 0.5
    assert zeros(p.fc1.weight) == round(0.5 * first.numel())


def _fresh_then_make_permanent(m):
    p = magnitude_prune(m, 0.5)
    q = make_permanent(p)
    assert pruning_leftovers(q) == []
    assert torch.equal(q.fc1.weight, p.fc1.weight)
    assert hasattr(p.fc1, "weight_mask")  # the input keeps its masks
    assert torch.equal(p.fc1.weight_orig, m.fc1.weight)


def _fresh_then_neuron(m):
    p = neuron_prune(m, 0.25)
    first_dead = set(range(16)) - set(alive_neurons(p).tolist())
    q = neuron_prune(p, 0.5)
    dead = set(range(16)) - set(alive_neurons(q).tolist())
    assert len(first_dead) == 4 and len(dead) == 8 and first_dead <= dead
    assert set(range(16)) - set(alive_neurons(p).tolist()) == first_dead


def _fresh_then_threshold(m):
    p = magnitude_prune(m, 0.5)
    t = float(p.fc1.weight.detach().abs().max()) / 2
    q = threshold_prune(p, t)
    assert torch.equal(q.fc1.weight == 0, p.fc1.weight.abs() <= t)


def _fresh_then_scan(m):
    p = magnitude_prune(m, 0.5)
    data = synthetic()
    out = sensitivity_scan(p, data, [0.0], layers="fc2")
    assert out["fc2"] == [evaluate(p, data.X_val, data.y_val)["accuracy"]]


def _fresh_then_clone(m):
    p = magnitude_prune(m, 0.5)
    q = clone(p)
    assert same_state(q.state_dict(), p.state_dict())
    with torch.no_grad():
        q.fc1.weight_orig.add_(1.0)
    assert torch.equal(p.fc1.weight_orig, m.fc1.weight)  # a real copy, not shared storage


@pytest.mark.parametrize("check", [_fresh_then_magnitude, _fresh_then_make_permanent,
                                   _fresh_then_neuron, _fresh_then_threshold, _fresh_then_scan,
                                   _fresh_then_clone],
                         ids=["magnitude_prune", "make_permanent", "neuron_prune",
                              "threshold_prune", "sensitivity_scan", "clone"])
def test_copying_functions_accept_a_freshly_pruned_model(check):
    """Straight after pruning, a layer's ``weight`` is a non-leaf tensor (orig * mask
    with autograd on), which plain ``copy.deepcopy`` refuses."""
    m = mlp(16, seed=6)
    fresh = magnitude_prune(m, 0.5)
    assert not fresh.fc1.weight.is_leaf  # the situation this test is about
    check(m)


# --- 2. masks equal torch.nn.utils.prune's ----------------------------------------------

@pytest.mark.parametrize("amount", [0.0, 0.25, 0.6, 0.99])
def test_layer_masks_equal_torch_l1_unstructured(amount):
    m = mlp(16, seed=7)
    p = magnitude_prune(m, amount, layers=("fc1", "fc2"), scope="layer")
    ref = copy.deepcopy(m)
    for name in ("fc1", "fc2"):
        prune.l1_unstructured(getattr(ref, name), "weight", amount=amount)
        assert torch.equal(getattr(p, name).weight_mask, getattr(ref, name).weight_mask)
        assert torch.equal(getattr(p, name).weight, getattr(ref, name).weight)


@pytest.mark.parametrize("amount", [0.1, 0.5, 0.95])
def test_global_masks_equal_torch_global_unstructured(amount):
    m = mlp(16, seed=8)
    p = magnitude_prune(m, amount, layers=("fc1", "fc2"), scope="global")
    ref = copy.deepcopy(m)
    prune.global_unstructured([(ref.fc1, "weight"), (ref.fc2, "weight")],
                              pruning_method=prune.L1Unstructured, amount=amount)
    for name in ("fc1", "fc2"):
        assert torch.equal(getattr(p, name).weight_mask, getattr(ref, name).weight_mask)


@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("amount", [0.25, 0.5, 0.8])
def test_neuron_masks_equal_torch_ln_structured(amount, norm):
    m = mlp(16, seed=9)
    p = neuron_prune(m, amount, norm=norm)
    ref = copy.deepcopy(m)
    prune.ln_structured(ref.fc1, "weight", amount=amount, n=norm, dim=0)
    assert torch.equal(p.fc1.weight_mask, ref.fc1.weight_mask)
    dead_rows = (ref.fc1.weight_mask == 0).all(dim=1)
    assert int(dead_rows.sum()) == round(amount * 16)
    assert torch.equal(p.fc1.bias_mask, (~dead_rows).float())
    assert (p.fc1.bias[dead_rows] == 0).all()
    assert torch.equal(p.fc1.bias[~dead_rows], m.fc1.bias[~dead_rows])
    assert pruning_leftovers(p.fc2) == []


# --- 3. structured pruning: the small model has the masked model's logits ---------------

def _top_rows(weight: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices (ascending) of the ``keep`` rows with the largest L1 norm, by hand."""
    norms = [sum(abs(v) for v in row) for row in weight.detach().tolist()]
    order = sorted(range(len(norms)), key=lambda i: norms[i], reverse=True)
    return torch.tensor(sorted(order[:keep]))


@pytest.mark.parametrize("keep", [1, 5, 16, 32])
def test_shrink_and_remove_neurons_give_the_masked_logits(trained, embedded, keep):
    X = embedded.X_test[:300]
    n = trained.fc1.out_features
    masked = neuron_prune(trained, (n - keep) / n)
    expected = _top_rows(trained.fc1.weight, keep)
    assert torch.equal(alive_neurons(masked), expected)
    with torch.no_grad():
        want = masked(X)
        if keep < n:
            assert not torch.allclose(want, trained(X), atol=1e-3)
    for small in (shrink(masked), remove_neurons(trained, keep)):
        assert small.fc1.out_features == keep and small.fc2.in_features == keep
        assert small.hidden == (keep,)
        assert torch.equal(small.fc1.weight, trained.fc1.weight[expected])
        assert torch.equal(small.fc1.bias, trained.fc1.bias[expected])
        assert torch.equal(small.fc2.weight, trained.fc2.weight[:, expected])
        assert torch.equal(small.fc2.bias, trained.fc2.bias)
        assert pruning_leftovers(small) == []
        with torch.no_grad():
            torch.testing.assert_close(small(X), want, atol=1e-5, rtol=0)


def test_two_hidden_layers_prune_the_second_hidden_layer(embedded):
    X = embedded.X_test[:300]
    m = mlp([32, 16], seed=10)
    keep = 6
    masked = neuron_prune(m, (16 - keep) / 16, layer="fc2")
    assert pruning_leftovers(masked.fc1) == [] and pruning_leftovers(masked.fc3) == []
    expected = _top_rows(m.fc2.weight, keep)
    assert torch.equal(alive_neurons(masked, "fc2"), expected)
    with torch.no_grad():
        want = masked(X)
        assert not torch.allclose(want, m(X), atol=1e-4)
    for small in (shrink(masked, layer="fc2"), shrink(masked), remove_neurons(m, keep, layer="fc2")):
        assert small.hidden == (32, keep)
        assert small.fc2.out_features == keep and small.fc3.in_features == keep
        assert torch.equal(small.fc1.weight, m.fc1.weight)
        assert torch.equal(small.fc2.weight, m.fc2.weight[expected])
        assert torch.equal(small.fc3.weight, m.fc3.weight[:, expected])
        with torch.no_grad():
            torch.testing.assert_close(small(X), want, atol=1e-5, rtol=0)


# --- 4. iterative pruning: rollback never keeps a step that broke the tolerance ----------

@pytest.mark.parametrize("finetune_epochs", [0, 1])
def test_iterative_prune_rolls_back_every_step_beyond_tolerance(trained, embedded,
                                                                finetune_epochs):
    target, step0, tol, min_step = 0.99, 0.3, 0.002, 0.0125
    X, y = embedded.X_val, embedded.y_val  # the loop decides on validation
    before = state(trained)
    base = evaluate(trained, X, y)["accuracy"]
    pruned, trace = iterative_prune(trained, embedded, target=target, step=step0,
                                    tolerance=tol, min_step=min_step,
                                    finetune_epochs=finetune_epochs)

    assert trace[0] == {"sparsity": 0.0, "accuracy": base, "kept": True, "step": 0.0}
    tries = trace[1:]
    assert any(not r["kept"] for r in tries), "choose settings that force a rollback"
    # kept == (base - accuracy <= tolerance), counted in test samples so that float
    # rounding cannot blur it; a drop of exactly the tolerance is the boundary case
    # of test_iterative_prune_keeps_a_step_that_costs_exactly_the_tolerance
    allowed = round(tol * len(y))
    for r in trace:
        drop = round((base - r["accuracy"]) * len(y))
        assert drop == pytest.approx((base - r["accuracy"]) * len(y), abs=1e-6)
        if drop != allowed:
            assert r["kept"] == (drop < allowed)

    # the tried sparsities and the steps follow the loop's rule, replayed by hand
    # (after a rollback the step is halved and kept below the failed gap, so the
    # sparsity that just failed is never tried again)
    reached, step, failed = 0.0, step0, None
    for r in tries:
        assert r["step"] == pytest.approx(step, abs=1e-12)
        assert r["sparsity"] == pytest.approx(min(target, reached + step), abs=1e-12)
        if failed is not None:
            assert r["sparsity"] < failed
        if r["kept"]:
            reached, failed = r["sparsity"], None
        else:
            step, failed = min(step, r["sparsity"] - reached) / 2, r["sparsity"]
    assert reached >= target or step < min_step  # why the loop stopped

    if finetune_epochs == 0:  # no training: each try is the input pruned to that sparsity
        for r in tries:
            twin = magnitude_prune(trained, r["sparsity"])
            assert r["accuracy"] == evaluate(twin, X, y)["accuracy"]

    kept = [r for r in tries if r["kept"]]
    best = max(kept, key=lambda r: r["sparsity"])
    n = pruned.fc1.weight.numel()
    assert zeros(pruned.fc1.weight) == round(best["sparsity"] * n)
    assert best["sparsity"] < max(r["sparsity"] for r in tries)  # a rolled-back try was larger
    acc = evaluate(pruned, X, y)["accuracy"]
    assert acc == best["accuracy"]
    assert round((base - acc) * len(y)) <= allowed
    assert same_state(trained.state_dict(), before)
    assert pruning_leftovers(trained) == []



def test_iterative_prune_keeps_a_step_that_costs_exactly_the_tolerance(monkeypatch):
    data = synthetic(n_train=32, n_eval=1000)
    correct = iter([896, 894, 894, 894, 894, 894, 894, 894])  # base, then every try

    def scripted_evaluate(model, X, y, **kw):
        return {"accuracy": next(correct) / len(X), "loss": 0.0}

    monkeypatch.setattr(hp, "evaluate", scripted_evaluate)
    _, trace = iterative_prune(mlp(8), data, target=0.5, step=0.5, tolerance=2 / 1000,
                               finetune_epochs=0)
    # one try, costing 2 samples of 1000 = the tolerance: kept
    assert [r["kept"] for r in trace] == [True, True]


# --- 5. the cubic schedule ----------------------------------------------------------------

SCHEDULES = [  # initial, final, t0, n, dt
    (0.0, 0.9, 1, 5, 1),
    (0.2, 0.7, 0, 4, 2),
    (0.0, 0.5, 3, 1, 1),
    (0.1, 0.9, 3, 10, 1),
    (0.3, 0.95, 2, 6, 3),
]


@pytest.mark.parametrize("initial, final, t0, n, dt", SCHEDULES)
def test_cubic_starts_at_initial_and_stays_there_before(initial, final, t0, n, dt):
    kw = dict(initial=initial, final=final, t0=t0, n=n, dt=dt)
    for t in (t0, t0 - 1, t0 - 7):
        if t >= 0:  # t counts steps: negative t is rejected (test_cubic_rejects_negative_steps)
            assert cubic_sparsity(t, **kw) == initial


@pytest.mark.parametrize("initial, final, t0, n, dt", SCHEDULES)
def test_cubic_ends_at_final_and_stays_there(initial, final, t0, n, dt):
    kw = dict(initial=initial, final=final, t0=t0, n=n, dt=dt)
    end = t0 + n * dt
    for t in (end, end + 1, end + dt, end + 100):
        assert cubic_sparsity(t, **kw) == final


@pytest.mark.parametrize("initial, final, t0, n, dt", SCHEDULES)
def test_cubic_in_between_follows_the_formula_and_never_decreases(initial, final, t0, n, dt):
    kw = dict(initial=initial, final=final, t0=t0, n=n, dt=dt)
    end = t0 + n * dt
    for t in range(t0, end + 1):
        want = final + (initial - final) * (1 - (t - t0) / (n * dt)) ** 3
        assert cubic_sparsity(t, **kw) == pytest.approx(want, abs=1e-12)
    lead = min(3, t0)  # up to 3 steps before t0 (t >= 0)
    values = [cubic_sparsity(t, **kw) for t in range(t0 - lead, end + 4)]
    assert all(a <= b for a, b in zip(values, values[1:]))
    if n > 1:  # the cubic front-loads the pruning: the first step is the largest
        gains = [b - a for a, b in zip(values[lead:], values[lead + 1:end - t0 + lead + 1])]
        assert gains[0] == max(gains)


@pytest.mark.parametrize("initial, final, epochs, start_epoch, prune_epochs", [
    (0.0, 0.9, 4, 1, None),
    (0.2, 0.8, 5, 1, 3),
    (0.0, 0.5, 4, 2, 2),
])
def test_gradual_prune_follows_the_cubic_schedule(tiny, initial, final, epochs, start_epoch,
                                                  prune_epochs):
    m = mlp(16, seed=11)
    before = state(m)
    net, history = gradual_prune(m, tiny, final=final, initial=initial, epochs=epochs,
                                 start_epoch=start_epoch, prune_epochs=prune_epochs)
    n_weights = m.fc1.weight.numel()
    n_sched = prune_epochs if prune_epochs is not None else max(1, epochs - start_epoch - 2)
    assert [r["epoch"] for r in history] == list(range(1, epochs + 1))
    for r in history:
        want = cubic_sparsity(r["epoch"], initial=initial, final=final, t0=start_epoch,
                              n=n_sched)
        assert abs(r["sparsity"] - want) <= 1 / n_weights
    assert abs(history[-1]["sparsity"] - final) <= 1 / n_weights
    assert zeros(net.fc1.weight) == round(final * n_weights)
    assert sparsity(net, "fc1")["fc1"] == history[-1]["sparsity"]
    # the history's accuracy is measured after that epoch's pruning
    assert history[-1]["val_accuracy"] == evaluate(net, tiny.X_val, tiny.y_val)["accuracy"]
    assert same_state(m.state_dict(), before)


# --- soft filter pruning and the training hook it relies on --------------------------------

def test_train_on_epoch_end_runs_after_updates_and_before_evaluation(tiny):
    net = mlp(16, seed=12)
    seen = []

    def hook(model, epoch):
        seen.append(epoch)
        with torch.no_grad():  # all-zero logits: every prediction is class 0
            model.fc2.weight.zero_()
            model.fc2.bias.zero_()
        return {"marker": 10 * epoch}

    history = train(net, tiny, epochs=3, progress=False, device=CPU, on_epoch_end=hook)
    assert seen == [1, 2, 3]
    share_of_zeros = int((tiny.y_val == 0).sum()) / len(tiny.y_val)
    for r in history:
        assert r["marker"] == 10 * r["epoch"]
        assert r["val_accuracy"] == pytest.approx(share_of_zeros, abs=1e-12)
        assert r["val_loss"] == pytest.approx(math.log(10), rel=1e-6)
    # the model kept training between hooks: fc1 moved away from its initial values
    assert not torch.equal(net.fc1.weight, mlp(16, seed=12).fc1.weight)


@pytest.mark.parametrize("amount", [0.25, 0.5])
def test_soft_filter_prune_zeroes_the_weakest_neurons_each_epoch(tiny, monkeypatch, amount):
    m = mlp(16, seed=13)
    before = state(m)
    calls = []
    real = hp._zero_weakest_neurons_

    def recording(fc, a):
        norms = fc.weight.detach().norm(dim=1).clone()
        bias = fc.bias.detach().clone()
        dead = real(fc, a)
        calls.append((norms, bias, dead.clone()))
        return dead

    monkeypatch.setattr(hp, "_zero_weakest_neurons_", recording)
    net, history = soft_filter_prune(m, tiny, amount=amount, epochs=3)
    k = round(amount * 16)
    assert len(calls) == 3 and len(history) == 3
    previous = None
    for (norms, bias, dead), row in zip(calls, history):
        weakest = set(sorted(range(16), key=lambda i: norms[i].item())[:k])
        assert set(torch.nonzero(dead).flatten().tolist()) == weakest
        assert "val_accuracy" in row
        if previous is None:
            assert (row["changed"], row["regrown_norm"], row["kept_min_norm"]) == (0, 0.0, 0.0)
        else:
            assert row["changed"] == len(weakest - previous)
            assert row["regrown_norm"] == pytest.approx(max(norms[i].item() for i in previous))
            assert row["kept_min_norm"] == pytest.approx(
                min(norms[i].item() for i in range(16) if i not in weakest))
            # nothing is frozen: the neurons zeroed an epoch ago trained on
            assert row["regrown_norm"] > 0
        previous = weakest
    zero_rows = (net.fc1.weight == 0).all(dim=1)
    assert int(zero_rows.sum()) == k
    assert torch.equal(zero_rows, calls[-1][2])
    assert torch.equal(net.fc1.bias, calls[-1][1])  # zeroing leaves the biases alone
    assert pruning_leftovers(net) == []
    assert same_state(m.state_dict(), before)
    # shrink drops the zeroed neurons and folds their constant ReLU(bias) into fc2's bias
    small = shrink(net)
    assert small.hidden == (16 - k,)
    X = tiny.X_test[:100]
    with torch.no_grad():
        torch.testing.assert_close(small(X), net(X), atol=1e-5, rtol=0)


# --- threshold pruning, make_permanent, reversibility ----------------------------------

def test_threshold_prune_zeroes_exactly_the_weights_at_or_below_the_threshold():
    m = mlp(16, seed=14)
    w = m.fc1.weight.detach()
    t = float(w.abs().flatten().median())  # a weight's own magnitude: tests the <= edge
    hand = w.abs() <= t
    assert int(hand.sum()) > int((w.abs() < t).sum())
    p = threshold_prune(m, t)
    assert torch.equal(p.fc1.weight == 0, hand)
    assert torch.equal(p.fc1.weight[~hand], w[~hand])
    assert torch.equal(p.fc1.weight_mask, (~hand).float())
    assert pruning_leftovers(p.fc2) == [] and torch.equal(p.fc2.weight, m.fc2.weight)

    both = threshold_prune(m, t, layers=None)
    assert torch.equal(both.fc2.weight == 0, m.fc2.weight.abs() <= t)
    assert zeros(threshold_prune(m, 0.0).fc1.weight) == zeros(w)


def test_make_permanent_removes_masks_and_keeps_the_zeros(embedded):
    m = mlp(16, seed=15)
    p = magnitude_prune(m, 0.6, layers=("fc1", "fc2"))
    masked = {n: getattr(p, n).weight.detach().clone() for n in ("fc1", "fc2")}
    X = embedded.X_test[:100]
    with torch.no_grad():
        want = p(X)
    assert make_permanent_(p) is p
    assert pruning_leftovers(p) == []
    assert sorted(p.state_dict()) == sorted(m.state_dict())
    for name in ("fc1", "fc2"):
        w = getattr(p, name).weight
        assert isinstance(w, nn.Parameter)
        assert torch.equal(w, masked[name])
        assert zeros(w) == round(0.6 * w.numel())
    with torch.no_grad():
        torch.testing.assert_close(p(X), want, atol=0, rtol=0)


def test_masked_pruning_is_reversible():
    m = mlp(16, seed=16)
    p = magnitude_prune(m, 0.7)
    assert torch.equal(p.fc1.weight_orig, m.fc1.weight)  # every original value, pruned or not
    assert torch.equal(p.fc1.weight, p.fc1.weight_orig * p.fc1.weight_mask)
    restored = mlp(16, seed=99)
    with torch.no_grad():
        restored.fc1.weight.copy_(p.fc1.weight_orig)
        restored.fc1.bias.copy_(p.fc1.bias)
        restored.fc2.weight.copy_(p.fc2.weight)
        restored.fc2.bias.copy_(p.fc2.bias)
    assert same_state(restored.state_dict(), m.state_dict())


# --- sensitivity scan -----------------------------------------------------------------

def test_sensitivity_scan_one_accuracy_per_amount_per_layer(trained, tiny):
    amounts = [0.0, 0.5, 0.95]
    before = state(trained)
    out = sensitivity_scan(trained, tiny, amounts)
    assert list(out) == ["fc1", "fc2"]
    base = evaluate(trained, tiny.X_val, tiny.y_val)["accuracy"]  # the scan reads validation
    for name in out:
        assert len(out[name]) == len(amounts)
        assert out[name][0] == base
    # a hand-masked twin: fc1 alone with its 95% smallest weights zeroed
    twin = copy.deepcopy(trained)
    with torch.no_grad():
        w = twin.fc1.weight
        k = round(0.95 * w.numel())
        idx = torch.argsort(w.abs().flatten())[:k]
        w.view(-1)[idx] = 0
    assert out["fc1"][2] == evaluate(twin, tiny.X_val, tiny.y_val)["accuracy"]
    assert out["fc1"][2] < base
    assert list(sensitivity_scan(trained, tiny, [0.0], layers="fc2")) == ["fc2"]
    assert same_state(trained.state_dict(), before)


# --- 6. the input model is never changed ------------------------------------------------

UNTOUCHED = {
    "magnitude_prune": lambda m, d: magnitude_prune(m, 0.5, layers=("fc1", "fc2")),
    "magnitude_prune_global": lambda m, d: magnitude_prune(m, 0.5, layers=("fc1", "fc2"),
                                                           scope="global"),
    "threshold_prune": lambda m, d: threshold_prune(m, 0.02, layers=None),
    "neuron_prune": lambda m, d: neuron_prune(m, 0.5),
    "remove_neurons": lambda m, d: remove_neurons(m, 4),
    "make_permanent": lambda m, d: make_permanent(m),
    "iterative_prune": lambda m, d: iterative_prune(m, d, target=0.9, step=0.45,
                                                    tolerance=0.5, finetune_epochs=1),
    "gradual_prune": lambda m, d: gradual_prune(m, d, final=0.5, epochs=2),
    "soft_filter_prune": lambda m, d: soft_filter_prune(m, d, amount=0.5, epochs=1),
    "sensitivity_scan": lambda m, d: sensitivity_scan(m, d, [0.0, 0.5]),
    "amount_point": lambda m, d: amount_point(m, d, 0.5, finetune_epochs=1),
}


@pytest.mark.parametrize("name", list(UNTOUCHED))
def test_the_input_model_is_unchanged(name, embedded):
    data = subset(embedded, 128, 100)
    m = mlp(16, seed=17)
    before = state(m)
    out = UNTOUCHED[name](m, data)
    result = out[0] if isinstance(out, tuple) else out
    assert result is not m
    assert same_state(m.state_dict(), before)
    assert pruning_leftovers(m) == []
    assert [n for n, _ in m.named_parameters()] == ["fc1.weight", "fc1.bias",
                                                    "fc2.weight", "fc2.bias"]


# --- 8. bad arguments name the argument --------------------------------------------------

def _net():
    return mlp(16, seed=18)


def _non_mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))


TOY = synthetic()
BAD = []
for _a in (-0.1, 1.0, 1.5):
    BAD += [
        pytest.param(lambda a=_a: magnitude_prune(_net(), a), "amount", id=f"magnitude-amount{_a}"),
        pytest.param(lambda a=_a: neuron_prune(_net(), a), "amount", id=f"neuron-amount{_a}"),
        pytest.param(lambda a=_a: amount_point(_net(), TOY, a), "amount", id=f"point-amount{_a}"),
        pytest.param(lambda a=_a: sensitivity_scan(_net(), TOY, [0.0, a]), "amount",
                     id=f"scan-amount{_a}"),
    ]
for _l in ("fc9", "conv1"):
    BAD += [
        pytest.param(lambda l=_l: magnitude_prune(_net(), 0.5, layers=l), "layers",
                     id=f"magnitude-{_l}"),
        pytest.param(lambda l=_l: magnitude_prune(_net(), 0.5, layers=("fc1", l)), "layers",
                     id=f"magnitude-fc1+{_l}"),
        pytest.param(lambda l=_l: sensitivity_scan(_net(), TOY, [0.5], layers=l), "layers",
                     id=f"scan-{_l}"),
        pytest.param(lambda l=_l: neuron_prune(_net(), 0.5, layer=l), "layer", id=f"neuron-{_l}"),
    ]
BAD += [
    pytest.param(lambda: magnitude_prune(_net(), 0.5, layers=()), "layers", id="magnitude-none"),
    pytest.param(lambda: neuron_prune(_net(), 0.5, layer="fc2"), "layer", id="neuron-output"),
    pytest.param(lambda: remove_neurons(_net(), 4, layer="fc2"), "layer", id="remove-output"),
    pytest.param(lambda: regularised_model(TOY, "l1", -1e-4), "lam", id="lam-negative"),
    pytest.param(lambda: regularised_model(TOY, "l3", 1e-4), "penalty", id="penalty"),
    pytest.param(lambda: threshold_prune(_net(), -0.01), "threshold", id="threshold-negative"),
    pytest.param(lambda: magnitude_prune(_net(), 0.5, scope="local"), "scope", id="scope"),
    pytest.param(lambda: neuron_prune(_net(), 0.5, norm=3), "norm", id="norm"),
    pytest.param(lambda: remove_neurons(_net(), 0), "keep", id="keep0"),
    pytest.param(lambda: remove_neurons(_net(), 17), "keep", id="keep>n"),
    pytest.param(lambda: iterative_prune(_net(), TOY, target=1.0), "target", id="target1"),
    pytest.param(lambda: iterative_prune(_net(), TOY, target=1.5), "target", id="target1.5"),
    pytest.param(lambda: iterative_prune(_net(), TOY, target=0.5, step=0.0), "step", id="step0"),
    pytest.param(lambda: iterative_prune(_net(), TOY, target=0.5, step=-0.1), "step",
                 id="step-neg"),
    pytest.param(lambda: iterative_prune(_net(), TOY, target=0.5, layers="fc9"), "layers",
                 id="iterative-fc9"),
    pytest.param(lambda: cubic_sparsity(3, initial=0.0, final=0.9, t0=0, n=0), "n", id="cubic-n0"),
    pytest.param(lambda: cubic_sparsity(3, initial=0.0, final=0.9, t0=-1, n=2), "t0",
                 id="cubic-t0-neg"),
    pytest.param(lambda: cubic_sparsity(-1, initial=0.0, final=0.9, t0=0, n=2), "t",
                 id="cubic-t-neg"),
    pytest.param(lambda: gradual_prune(_net(), TOY, final=1.0, epochs=3), "final",
                 id="gradual-final1"),
    pytest.param(lambda: gradual_prune(_net(), TOY, final=-0.1, epochs=3), "final",
                 id="gradual-final-neg"),
    pytest.param(lambda: gradual_prune(_net(), TOY, final=0.5, epochs=3, initial=1.0), "initial",
                 id="gradual-initial1"),
    pytest.param(lambda: gradual_prune(_net(), TOY, final=0.5, epochs=3, initial=-0.2),
                 "initial", id="gradual-initial-neg"),
    pytest.param(lambda: soft_filter_prune(_net(), TOY, amount=0.5, epochs=1, every=0), "every",
                 id="soft-every0"),
    pytest.param(lambda: sparsity(quantize_int8(_net())), "model", id="sparsity-quantised"),
    pytest.param(lambda: gradual_prune(_net(), TOY, final=0.5, epochs=3, layers="fc9"), "layers",
                 id="gradual-fc9"),
    pytest.param(lambda: soft_filter_prune(_net(), TOY, amount=1.0, epochs=1), "amount",
                 id="soft-amount1"),
    pytest.param(lambda: neuron_prune(_non_mlp(), 0.5), "model", id="neuron-non-mlp"),
    pytest.param(lambda: remove_neurons(_non_mlp(), 4), "model", id="remove-non-mlp"),
]


@pytest.mark.parametrize("call, arg", BAD)
def test_bad_arguments_raise_value_error_naming_the_argument(call, arg, monkeypatch,
                                                             isolated_cache):
    def no_training(*args, **kwargs):
        raise AssertionError("training started before the arguments were checked")

    monkeypatch.setattr(hp, "train", no_training)
    with pytest.raises(ValueError, match=rf"^{arg}\b"):
        call()
    assert not (isolated_cache / "checkpoints").exists()


# --- 9. fixed bugs ---------------------------------------------------------------------------

def test_rewind_shows_the_rewound_weights_without_a_forward_pass():
    trained_net, init = mlp(16, seed=20), mlp(16, seed=21)
    pruned = magnitude_prune(trained_net, 0.6, layers=("fc1", "fc2"))
    ticket = rewind(pruned, init)  # no forward pass after this
    for name in ("fc1", "fc2"):
        m, ref = getattr(ticket, name), getattr(init, name)
        mask = getattr(pruned, name).weight_mask
        assert torch.equal(m.weight_mask, mask)  # the masks are kept
        assert torch.equal(m.weight_orig, ref.weight)
        assert torch.equal(m.weight, mask * ref.weight)  # not the trained values
        assert torch.equal(m.bias, ref.bias)
    # and the forward pass agrees: the masked initial network, by hand
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0)).flatten(1)
    w1 = pruned.fc1.weight_mask * init.fc1.weight
    w2 = pruned.fc2.weight_mask * init.fc2.weight
    with torch.no_grad():
        want = torch.relu(x @ w1.T + init.fc1.bias) @ w2.T + init.fc2.bias
        torch.testing.assert_close(ticket(x.reshape(3, 1, 28, 28)), want)


def test_shrink_leaves_the_global_rng_untouched():
    masked = neuron_prune(mlp(16, seed=22), 0.5)
    torch.manual_seed(123)
    want = torch.rand(5)
    torch.manual_seed(123)
    small = shrink(masked)
    got = torch.rand(5)
    assert small.hidden == (8,)
    assert torch.equal(got, want)


def test_sparsity_rejects_a_model_without_linear_layers():
    q = quantize_int8(mlp(16, seed=23))
    with pytest.raises(ValueError, match="nn.Linear"):
        sparsity(q)


def test_soft_filter_prune_every_k_steps_matches_a_hand_count(tiny, monkeypatch):
    """With every=k the neurons are re-chosen after every k optimiser steps and at
    each epoch's end; ``changed`` counts, per epoch, the neurons newly zeroed at
    each re-choice compared with the choice just before it."""
    amount, k, epochs, bs = 0.5, 2, 2, 64
    calls = []
    real = hp._zero_weakest_neurons_

    def recording(fc, a):
        norms = fc.weight.detach().norm(dim=1).clone()
        dead = real(fc, a)
        calls.append((norms, dead.clone()))
        return dead

    monkeypatch.setattr(hp, "_zero_weakest_neurons_", recording)
    m = mlp(16, seed=24)  # a fresh initialisation: norms are close, choices move early
    # lr 0.05: two Adam steps let a zeroed neuron grow past a kept one in epoch 1
    _, history = soft_filter_prune(m, tiny, amount=amount, epochs=epochs, every=k, lr=0.05)
    steps = -(-len(tiny.X_train) // bs)  # 4 per epoch
    # by hand: which calls fall in which epoch (in-loop every k steps, then the epoch's end)
    per_epoch, step = [], 0
    for _ in range(epochs):
        n = 0
        for _ in range(steps):
            step += 1
            n += step % k == 0
        per_epoch.append(n + 1)
    assert len(calls) == sum(per_epoch)
    n_dead = round(amount * 16)
    for norms, dead in calls:  # each choice: the weakest neurons at that moment
        assert set(torch.nonzero(dead).flatten().tolist()) == set(
            sorted(range(16), key=lambda i: norms[i].item())[:n_dead])
    newly = [0] + [int((calls[i][1] & ~calls[i - 1][1]).sum()) for i in range(1, len(calls))]
    bounds = [sum(per_epoch[:e]) for e in range(epochs + 1)]
    want = [sum(newly[bounds[e]:bounds[e + 1]]) for e in range(epochs)]
    assert [r["changed"] for r in history] == want
    assert history[0]["changed"] > 0  # possible in the first epoch, unlike every=None


def test_soft_filter_prune_every_none_chooses_once_per_epoch(tiny, monkeypatch):
    calls = []
    real = hp._zero_weakest_neurons_
    monkeypatch.setattr(hp, "_zero_weakest_neurons_",
                        lambda fc, a: calls.append(1) or real(fc, a))
    _, history = soft_filter_prune(mlp(16, seed=24), tiny, amount=0.5, epochs=2)
    assert len(calls) == 2 and history[0]["changed"] == 0


def test_iterative_prune_reads_the_validation_split_by_default(trained, tiny):
    _, trace = iterative_prune(trained, tiny, target=0.5, step=0.5, tolerance=1.0,
                               finetune_epochs=0)
    pruned = magnitude_prune(trained, 0.5)
    assert trace[0]["accuracy"] == evaluate(trained, tiny.X_val, tiny.y_val)["accuracy"]
    assert trace[1]["accuracy"] == evaluate(pruned, tiny.X_val, tiny.y_val)["accuracy"]


def test_shrink_reads_the_weights_of_the_last_optimiser_step():
    # Under torch.nn.utils.prune, .weight is recomputed from weight_orig *
    # weight_mask only by a forward pass, so right after optimiser.step() it
    # is one step old; shrink must use the weights the next forward pass uses.
    torch.manual_seed(0)
    masked = neuron_prune(mlp(16, seed=0), 0.5)
    X = torch.randn(32, 1, 28, 28)
    opt = torch.optim.SGD(masked.parameters(), lr=0.5)
    nn.functional.cross_entropy(masked(X), torch.arange(32) % 10).backward()
    opt.step()  # no forward since: masked.fc1.weight still holds the old values
    stale = masked.fc1.weight.detach().clone()
    small = shrink(masked)
    with torch.no_grad():
        want = masked(X)  # the forward pre-hook refreshes .weight
        assert not torch.equal(stale, masked.fc1.weight)
        torch.testing.assert_close(small(X), want)


# --- 10. issue 19: a refusal changes nothing, every schedule reaches its target ------------

def _masks_and_hooks(model: nn.Module) -> tuple:
    """What a failed call must leave as it was: the state (masks included),
    which parameters are pruned, and the pruning hooks."""
    return (state(model), pruning_leftovers(model),
            [hp.is_pruned(m, n) for m in model.modules() for n in ("weight", "bias")])


@pytest.mark.parametrize("call", [
    lambda m: magnitude_prune_(m, torch.tensor([0.6, 0.7])),
    lambda m: magnitude_prune_(m, 0.6, scope="local"),
    lambda m: magnitude_prune_(m, 0.6, layers=("fc1", "fc9")),
    lambda m: magnitude_prune_(m, 0.99999999),
    lambda m: magnitude_prune_(m, 0.999, layers=("fc1", "fc2"), scope="global"),
    lambda m: hp.neuron_prune_(m, 0.99),
    lambda m: hp.neuron_prune_(m, 0.5, norm=3),
], ids=["tensor-1d", "scope", "layers", "all-weights", "global-empties-fc1", "all-neurons",
        "norm"])
def test_a_refused_in_place_prune_leaves_the_model_as_it_was(call):
    m = magnitude_prune_(mlp(8, seed=3), 0.5)
    before = _masks_and_hooks(m)
    with pytest.raises((ValueError, TypeError)):
        call(m)
    after = _masks_and_hooks(m)
    assert same_state(before[0], after[0]) and before[1:] == after[1:]


def test_a_0d_tensor_amount_counts_as_its_value():
    m = magnitude_prune_(mlp(8, seed=3), 0.5)
    magnitude_prune_(m, torch.tensor(0.6))
    assert zeros(m.fc1.weight) == round(0.6 * m.fc1.weight.numel())
    assert torch.equal(m.fc1.weight, magnitude_prune(mlp(8, seed=3), 0.6).fc1.weight)


@pytest.mark.parametrize("kwargs", [
    {"epochs": 1}, {"start_epoch": 5, "epochs": 3}, {"prune_epochs": 10, "epochs": 3},
    {"start_epoch": 3, "prune_epochs": 1, "epochs": 3}])
def test_gradual_prune_refuses_a_schedule_that_ends_after_the_last_epoch(kwargs, monkeypatch):
    monkeypatch.setattr(hp, "train", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(ValueError, match=r"^start_epoch \+ prune_epochs must be at most epochs"):
        gradual_prune(mlp(8), TOY, final=0.9, **kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(GRADUAL), {"final": 0.9, "epochs": 1, "start_epoch": 0},
    {"final": 0.9, "epochs": 3, "start_epoch": 2, "prune_epochs": 1}])
def test_gradual_prune_accepts_every_schedule_that_ends_in_time(kwargs, monkeypatch):
    """The kit's own recipe among them (notebook 02 and experiments call it so)."""
    monkeypatch.setattr(hp, "train", lambda *a, **k: [])
    gradual_prune(mlp(8), TOY, **kwargs)


def test_pruned_weights_are_read_as_orig_times_mask():
    """``.weight`` is stale until a forward pass once ``weight_orig`` is set by
    hand: sparsity, alive_neurons, shrink and threshold_prune read
    ``weight_orig * weight_mask``."""
    m = neuron_prune(mlp(8, seed=4), 0.5)
    alive = alive_neurons(m)
    with torch.no_grad():
        m.fc1.weight_orig[alive[0]] = 0  # one more neuron dead; .weight does not know yet
    assert alive_neurons(m).tolist() == alive[1:].tolist()
    assert sparsity(m)["fc1"] == 5 / 8
    assert shrink(m).fc1.out_features == 3
    with torch.no_grad():
        m.fc1.weight_orig[alive[1]] = 10.0
    assert threshold_prune(m, 1.0).fc1.weight_mask.sum() == 784


def test_shrink_keeps_the_dtype_of_a_model_doubled_after_pruning():
    m = hp.neuron_prune_(mlp(8, seed=5), 0.5)
    m.double()
    x = torch.randn(3, 784, dtype=torch.float64)
    small = shrink(m)
    assert small.fc1.weight.dtype == torch.float64
    assert torch.allclose(small(x), m(x), atol=1e-12)


@pytest.mark.parametrize("amount", [0.99999999, 1 - 1e-5])
def test_an_amount_that_rounds_to_every_weight_is_refused(amount):
    n = 784 * 8
    with pytest.raises(ValueError, match=rf"^amount must leave at least one of fc1's {n} weights"):
        magnitude_prune(mlp(8), amount)
    assert zeros(magnitude_prune(mlp(8), (n - 1) / n).fc1.weight) == n - 1


def test_global_scope_refuses_to_empty_a_layer():
    m = mlp(16, seed=2)
    with torch.no_grad():
        m.fc2.weight.mul_(4.0)
    with pytest.raises(ValueError, match=r"^amount must leave at least one weight of fc1"):
        magnitude_prune(m, 0.99, layers=("fc1", "fc2"), scope="global")


def test_cubic_sparsity_refuses_a_schedule_that_unprunes():
    with pytest.raises(ValueError, match=r"^final must be at least initial"):
        cubic_sparsity(2, initial=0.5, final=0.2, t0=1, n=3)
    assert cubic_sparsity(2, initial=0.4, final=0.4, t0=1, n=3) == 0.4
