"""Tests for helpers.training: learning, determinism, evaluate, penalties, one SGD
step against a hand-made reference, the history, and argument checks."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from helpers.models import MLPStack, baseline_mlp, mlp, small_cnn
from helpers.training import (best_epoch, evaluate, get_device, logits_of, train, train_stack,
                              weight_penalty)

from conftest import same_state, state, subset, synthetic

CPU = "cpu"


# --- learning ------------------------------------------------------------------

def test_training_reduces_loss_and_reaches_good_accuracy(embedded):
    net = baseline_mlp(seed=0)
    before = evaluate(net, embedded.X_train, embedded.y_train)
    history = train(net, embedded, epochs=3, seed=0, progress=False, device=CPU)
    after_train = evaluate(net, embedded.X_train, embedded.y_train)
    after_val = evaluate(net, embedded.X_val, embedded.y_val)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert after_train["loss"] < 0.5 * before["loss"]
    assert after_val["accuracy"] > 0.85
    assert history[-1]["val_accuracy"] == after_val["accuracy"]


def test_same_seed_is_bitwise_reproducible_and_other_seed_differs(embedded):
    data = subset(embedded, 600, 100)
    runs = {}
    for tag, seed in (("a", 3), ("b", 3), ("c", 4)):
        net = baseline_mlp(seed=0)
        hist = train(net, data, epochs=2, batch_size=32, seed=seed, progress=False, device=CPU)
        runs[tag] = (state(net), [r["train_loss"] for r in hist],
                     [r["val_loss"] for r in hist])
    (sa, la, ta), (sb, lb, tb), (sc, lc, _) = runs["a"], runs["b"], runs["c"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert la == lb and ta == tb
    assert not torch.equal(sa["fc1.weight"], sc["fc1.weight"])
    assert la != lc


# --- evaluate --------------------------------------------------------------------

def _dropout_net():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(),
                             nn.Dropout(0.5), nn.Linear(32, 10))


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("bs", [7, 1000])
def test_evaluate_matches_hand_computation_and_restores_mode(mode, bs):
    net = _dropout_net()
    g = torch.Generator().manual_seed(1)
    X = torch.randn(50, 1, 28, 28, generator=g)
    net.eval()
    with torch.no_grad():
        logits = net(X)  # dropout off: what evaluate must see
    # half the labels agree with the network, half are random: accuracy in (0, 1)
    y = torch.where(torch.arange(50) % 2 == 0, logits.argmax(1),
                    torch.randint(0, 10, (50,), generator=g))
    want_acc = (logits.argmax(1) == y).sum().item() / 50
    want_loss = (-torch.log_softmax(logits.double(), 1).gather(1, y[:, None])).mean().item()
    assert 0 < want_acc < 1

    net.train(mode == "train")
    got = evaluate(net, X, y, batch_size=bs)
    assert net.training == (mode == "train")
    assert got["accuracy"] == want_acc
    assert got["loss"] == pytest.approx(want_loss, rel=1e-5)


def test_evaluate_rejects_empty_and_bad_batch_size():
    net = baseline_mlp()
    with pytest.raises(ValueError, match="X"):
        evaluate(net, torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(net, torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long), batch_size=0)


# --- penalties -------------------------------------------------------------------

def test_weight_penalty_is_sum_over_weights_only():
    net = baseline_mlp(seed=2)
    W1, W2 = net.fc1.weight.detach(), net.fc2.weight.detach()
    l1 = W1.abs().sum() + W2.abs().sum()
    l2 = (W1 * W1).sum() + (W2 * W2).sum()
    torch.testing.assert_close(weight_penalty(net, "l1").detach(), l1)
    torch.testing.assert_close(weight_penalty(net, "l2").detach(), l2)
    # biases are excluded: adding them would change the value noticeably
    with_bias = l1 + net.fc1.bias.detach().abs().sum() + net.fc2.bias.detach().abs().sum()
    assert abs(with_bias.item() - weight_penalty(net, "l1").item()) > 0.1


def test_weight_penalty_covers_conv_and_linear_weights():
    net = small_cnn(seed=0, channels=(2, 3), hidden=5)
    ws = [net.conv1.weight, net.conv2.weight, net.fc1.weight, net.fc2.weight]
    want = sum(w.detach().pow(2).sum() for w in ws)
    torch.testing.assert_close(weight_penalty(net, "l2").detach(), want)


def test_weight_penalty_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        weight_penalty(baseline_mlp(), "l3")


def test_l1_penalty_makes_weights_sparse(embedded):
    def near_zero_fraction(penalty, lam):
        net = baseline_mlp(seed=0)
        train(net, embedded, epochs=3, seed=0, penalty=penalty, lam=lam,
              evaluate_each_epoch=False, progress=False, device=CPU)
        return (net.fc1.weight.detach().abs() < 1e-3).float().mean().item()

    plain = near_zero_fraction(None, 0.0)
    l1 = near_zero_fraction("l1", 1e-3)
    l2 = near_zero_fraction("l2", 1e-2)  # ten times the weight, still few zeros
    assert l1 > 0.3
    assert l1 > 5 * plain
    assert l1 > 2 * l2


# --- one SGD step against a hand-made reference ----------------------------------

@pytest.mark.parametrize("penalty, lam", [(None, 0.0), ("l2", 0.05), ("l1", 0.01)])
def test_one_full_batch_sgd_step_matches_hand_computation(penalty, lam):
    data = synthetic(n_train=48, n_eval=24)
    net = mlp(16, seed=0)
    ref = copy.deepcopy(net)
    lr = 0.3

    hist = train(net, data, epochs=1, lr=lr, optimizer="sgd", batch_size=len(data.X_train),
                 penalty=penalty, lam=lam, seed=0, progress=False, device=CPU)

    params = dict(ref.named_parameters())
    ce = F.cross_entropy(ref(data.X_train), data.y_train)
    grads = dict(zip(params, torch.autograd.grad(ce, list(params.values()))))
    for name, p in params.items():
        W, g = p.detach(), grads[name]
        if name.endswith("weight") and penalty == "l2":
            g = g + 2 * lam * W
        elif name.endswith("weight") and penalty == "l1":
            g = g + lam * torch.sign(W)
        want = W - lr * g
        torch.testing.assert_close(net.state_dict()[name], want, rtol=0, atol=1e-6)
    # the reported train loss is the cross-entropy of the weights before the step
    assert hist[0]["train_loss"] == pytest.approx(ce.item(), rel=1e-5)


# --- history -----------------------------------------------------------------------

def test_history_rows_and_keys():
    data = synthetic()
    net = mlp(8, seed=0)
    net.train()
    hist = train(net, data, epochs=3, batch_size=16, progress=False, device=CPU)
    assert len(hist) == 3
    assert [r["epoch"] for r in hist] == [1, 2, 3]
    for r in hist:
        assert set(r) == {"epoch", "train_loss", "seconds", "val_accuracy", "val_loss"}
        assert r["seconds"] >= 0 and r["train_loss"] > 0
        assert 0 <= r["val_accuracy"] <= 1
    assert not net.training  # the model ends in eval mode
    ev = evaluate(net, data.X_val, data.y_val)  # the validation split, not the test split
    assert hist[-1]["val_accuracy"] == ev["accuracy"]
    assert hist[-1]["val_loss"] == pytest.approx(ev["loss"], rel=1e-6)


def test_history_without_evaluation():
    hist = train(mlp(8), synthetic(), epochs=2, batch_size=16, evaluate_each_epoch=False,
                 progress=False, device=CPU)
    assert len(hist) == 2
    assert all(set(r) == {"epoch", "train_loss", "seconds"} for r in hist)


# --- keep_best: validation picks the epoch -------------------------------------------

def test_keep_best_ends_with_the_weights_of_the_best_validation_epoch():
    # lr 0.05 on this tiny task: validation accuracy peaks at epoch 2 of 6.
    data, kw = synthetic(48, 24), {"lr": 0.05, "batch_size": 16, "seed": 0, "device": CPU}
    net = mlp(8, seed=0)
    hist = train(net, data, epochs=6, keep_best=True, **kw)
    best = best_epoch(hist)
    assert len(hist) == 6 and 1 <= best < 6
    assert hist[best - 1]["val_accuracy"] > hist[-1]["val_accuracy"]
    # The reference: the same run stopped at that epoch.
    ref = mlp(8, seed=0)
    ref_hist = train(ref, data, epochs=best, **kw)
    assert ref_hist == [{**r, "seconds": q["seconds"]} for r, q in zip(hist[:best], ref_hist)]
    got, want = state(net), state(ref)
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in got)
    last = mlp(8, seed=0)
    train(last, data, epochs=6, **kw)
    assert not torch.equal(state(last)["fc1.weight"], got["fc1.weight"])
    assert evaluate(net, data.X_val, data.y_val)["accuracy"] == hist[best - 1]["val_accuracy"]
    assert not net.training


def test_best_epoch_is_the_earliest_highest_validation_accuracy():
    rows = [{"epoch": e, "val_accuracy": a} for e, a in enumerate([0.5, 0.7, 0.6, 0.7], 1)]
    assert best_epoch(rows) == 2
    with pytest.raises(ValueError, match="val_accuracy"):
        best_epoch([{"epoch": 1, "train_loss": 0.3}])
    with pytest.raises(ValueError, match="val_accuracy"):
        best_epoch([])


def test_cosine_schedule_changes_the_result_and_stays_deterministic():
    data = synthetic(48, 24)
    runs = []
    for schedule in (None, "cosine", "cosine"):
        net = mlp(8, seed=0)
        train(net, data, epochs=2, lr=0.05, batch_size=16, schedule=schedule, device=CPU)
        runs.append(state(net))
    assert not torch.equal(runs[0]["fc1.weight"], runs[1]["fc1.weight"])
    assert all(torch.equal(runs[1][k], runs[2][k]) for k in runs[1])


# --- argument checks -----------------------------------------------------------------

@pytest.mark.parametrize("kwargs, word", [
    ({"epochs": 0}, "epochs"),
    ({"epochs": 1.5}, "epochs"),
    ({"lr": 0}, "lr"),
    ({"lr": -1}, "lr"),
    ({"optimizer": "rmsprop"}, "optimizer"),
    ({"penalty": "l3"}, "penalty"),
    ({"penalty": "l1", "lam": -0.1}, "lam"),
    ({"lam": 0.1}, "lam"),
    ({"optimizer": "sgd", "momentum": 1.0}, "momentum"),
    ({"optimizer": "sgd", "momentum": -0.1}, "momentum"),
    ({"batch_size": 0}, "batch_size"),
    ({"seed": -1}, "seed"),
    ({"schedule": "step"}, "schedule"),
    ({"keep_best": True, "evaluate_each_epoch": False}, "keep_best"),
], ids=["epochs0", "epochs-float", "lr0", "lr-neg", "optimizer", "penalty", "lam-neg",
        "lam-without-penalty", "momentum1", "momentum-neg", "batch_size0", "seed-neg",
        "schedule", "keep_best-without-evaluation"])
def test_bad_arguments_raise_value_error_naming_them(kwargs, word):
    with pytest.raises(ValueError, match=word):
        train(mlp(4), synthetic(), progress=False, device=CPU, **kwargs)


@pytest.mark.parametrize("bad", [None, (1, 2), "embedded"])
def test_data_must_be_a_dataset(bad):
    with pytest.raises(ValueError, match="data"):
        train(mlp(4), bad, progress=False, device=CPU)


# --- a stack of seeds trained together ---------------------------------------------

def test_a_stack_trains_each_member_as_a_single_model_with_its_seed(embedded):
    data = subset(embedded, 300, 100, "stack")
    stack = MLPStack([mlp(16, seed=s) for s in (3, 4)])
    history = train_stack(stack, data, epochs=2, seeds=[3, 4], device="cpu")
    for m, s in enumerate((3, 4)):
        ref = mlp(16, seed=s)
        ref_hist = train(ref, data, epochs=2, seed=s, device="cpu")
        got = stack.member(m)
        for a, b in zip(got.parameters(), ref.parameters()):
            assert torch.allclose(a, b, rtol=0, atol=1e-6)
        assert [r["val_accuracy"][m] for r in history] == [r["val_accuracy"] for r in ref_hist]
        assert [r["train_loss"][m] for r in history] == pytest.approx(
            [r["train_loss"] for r in ref_hist], rel=1e-5)


def test_a_stack_needs_one_seed_per_member_and_no_per_model_extras(embedded):
    data = subset(embedded, 64, 32, "stack-args")
    stack = MLPStack([mlp(8, seed=s) for s in (0, 1)])
    for bad in (0, [0], [0, 1, 2], [0, -1]):
        with pytest.raises(ValueError, match="seed"):
            train_stack(stack, data, epochs=1, seeds=bad)
    with pytest.raises(TypeError, match="keep_best"):
        train_stack(stack, data, epochs=1, seeds=[0, 1], keep_best=True)
    with pytest.raises(ValueError, match="MLPStack.*train_stack"):
        train(stack, data, epochs=1, seed=0)
    with pytest.raises(TypeError, match="stack must be a helpers.models.MLPStack"):
        train_stack(mlp(8), data, epochs=1, seeds=[0])


# --- get_device ---------------------------------------------------------------------

def _accelerator_present() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or (mps is not None and mps.is_available())


@pytest.mark.skipif(_accelerator_present(), reason="a GPU is present: the default is not CPU")
def test_get_device_defaults_to_cpu_without_accelerator():
    assert get_device() == torch.device("cpu")


@pytest.mark.parametrize("prefer, want", [
    ("cpu", torch.device("cpu")),
    ("meta", torch.device("meta")),
    (torch.device("cpu"), torch.device("cpu")),
])
def test_get_device_honours_prefer(prefer, want):
    assert get_device(prefer) == want


# --- bad input gets a clear answer (issue 19) ---------------------------------------

def _with(data, **tensors):
    return dataclasses.replace(data, **tensors)


def _nan_pixel(X):
    X = X.clone()
    X[5, 0, 3, 3] = float("nan")
    return X


@pytest.mark.parametrize("kwargs, says", [
    ({"lr": 1e30}, ("epoch 1, batch 2", "lr", "1e+30")),
    ({"penalty": "l1", "lam": 1e300}, ("epoch 1, batch 1", "lam", "1e+300")),
], ids=["lr-1e30", "lam-1e300"])
def test_training_that_diverges_says_where_and_why_and_restores_the_model(kwargs, says):
    net = mlp(8, seed=0)
    net.train()
    before = state(net)
    with pytest.raises(FloatingPointError) as info:
        train(net, synthetic(), epochs=2, batch_size=16, device=CPU, **kwargs)
    assert all(s in str(info.value) for s in says), str(info.value)
    assert same_state(state(net), before) and net.training


def test_a_non_finite_loss_from_the_targets_is_blamed_on_the_data():
    net = mlp(8, seed=0)
    before = state(net)
    nan_targets = lambda m, xb, yb, idx: m(xb).sum() * float("nan")  # noqa: E731
    with pytest.raises(FloatingPointError, match=r"epoch 1, batch 1; likely cause data"):
        train(net, synthetic(), epochs=1, batch_size=16, loss_fn=nan_targets, device=CPU)
    assert same_state(state(net), before)


def test_weights_made_non_finite_at_the_last_step_are_caught_and_restored():
    net = mlp(8, seed=0)
    before = state(net)

    def spoil(m, epoch):
        with torch.no_grad():
            m.fc1.weight[0, 0] = float("inf")

    with pytest.raises(FloatingPointError, match=r"weights are not finite at epoch 1, batch 3"):
        train(net, synthetic(), epochs=1, batch_size=16, on_epoch_end=spoil,
              evaluate_each_epoch=False, device=CPU)
    assert same_state(state(net), before)


def test_a_single_step_that_blows_the_weights_up_is_seen_by_validation():
    net = mlp(8, seed=0)
    before = state(net)
    # one batch: the weights reach 1e30 (finite), the validation loss is NaN
    with pytest.raises(FloatingPointError,
                       match=r"validation loss is not finite at epoch 1, batch 1; likely cause lr"):
        train(net, synthetic(), epochs=1, lr=1e30, batch_size=64, device=CPU)
    assert same_state(state(net), before)


def test_a_failed_call_restores_a_pruned_model_with_its_masks():
    net = mlp(8, seed=0)
    prune.l1_unstructured(net.fc1, "weight", amount=0.5)
    before = state(net)
    with pytest.raises(FloatingPointError):
        train(net, synthetic(), epochs=1, lr=1e30, batch_size=16, device=CPU)
    assert same_state(state(net), before)
    assert torch.equal(net.fc1.weight, net.fc1.weight_orig * net.fc1.weight_mask)


@pytest.mark.parametrize("spoil, says", [
    (lambda d: _with(d, X_train=d.X_train[:0], y_train=d.y_train[:0]), ("data.X_train", "0")),
    (lambda d: _with(d, y_train=torch.full_like(d.y_train, -100)), ("data.y_train", "[0, 9]")),
    (lambda d: _with(d, y_train=d.y_train + 1), ("data.y_train", "[0, 9]", "10")),
    (lambda d: _with(d, y_train=d.y_train.float()), ("data.y_train", "integer")),
    (lambda d: _with(d, y_train=d.y_train[:-1]), ("data.y_train", "48")),
    (lambda d: _with(d, X_train=_nan_pixel(d.X_train)), ("data.X_train", "finite", "1 NaN")),
    (lambda d: _with(d, X_val=d.X_val[:0], y_val=d.y_val[:0]), ("data.y_val",)),
], ids=["empty", "labels-100", "label-10", "float-labels", "short-labels", "nan-pixel",
        "empty-val"])
def test_training_data_that_cannot_train_is_refused_before_training(spoil, says):
    net = mlp(8, seed=0)
    before = state(net)
    with pytest.raises((ValueError, TypeError)) as info:
        train(net, spoil(synthetic()), epochs=1, device=CPU)
    assert all(s in str(info.value) for s in says), str(info.value)
    assert same_state(state(net), before)


@pytest.mark.parametrize("y, says", [
    (torch.full((8,), -100), ("y", "[0, 9]", "-100")),
    (torch.arange(8) + 3, ("y", "[0, 9]", "10")),
    (torch.zeros(7, dtype=torch.long), ("y", "8")),
    (torch.zeros(8), ("y", "integer")),
], ids=["all-ignored", "out-of-range", "short", "float"])
def test_evaluate_refuses_labels_that_are_not_class_indices(y, says):
    with pytest.raises((ValueError, TypeError)) as info:
        evaluate(mlp(8), torch.zeros(8, 1, 28, 28), y)
    assert all(s in str(info.value) for s in says), str(info.value)


def test_logits_of_refuses_a_model_without_parameters_and_empty_inputs():
    with pytest.raises(ValueError, match=r"^model .*ReLU"):
        logits_of(nn.ReLU(), torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"^X\b"):
        logits_of(mlp(4), torch.zeros(0, 1, 28, 28))
    with pytest.raises(TypeError, match=r"^X\b"):
        logits_of(mlp(4), torch.zeros(2, 784, dtype=torch.uint8))


def test_seeds_beyond_32_bits_are_refused_not_aliased():
    # torch's CPU generator keeps 32 bits: 2**32 draws what 0 draws
    assert torch.equal(torch.rand(3, generator=torch.Generator().manual_seed(2**32)),
                       torch.rand(3, generator=torch.Generator().manual_seed(0)))
    for call in (lambda: train(mlp(4), synthetic(), epochs=1, seed=2**32, device=CPU),
                 lambda: mlp(4, seed=2**32), lambda: small_cnn(seed=2**32)):
        with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 4294967295\]"):
            call()
    with pytest.raises(ValueError, match=r"seeds\[1\] must be an integer in \[0, 4294967295\]"):
        train_stack(MLPStack([mlp(4), mlp(4)]), synthetic(), seeds=[0, 2**32])
    assert torch.equal(state(mlp(4, seed=2**32 - 1))["fc1.weight"],
                       state(mlp(4, seed=2**32 - 1))["fc1.weight"])


@pytest.mark.parametrize("prefer, exc", [("gpu", ValueError), ("cuda:99", ValueError),
                                         (0.5, TypeError)])
def test_get_device_refuses_names_that_are_no_device_here(prefer, exc):
    with pytest.raises(exc, match=r"^prefer\b"):
        get_device(prefer)
    with pytest.raises(exc, match=r"^device\b"):
        train(mlp(4), synthetic(), epochs=1, device=prefer)
