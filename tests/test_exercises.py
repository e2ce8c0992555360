"""The exercises' grader (helpers.exercises): the comparison ``same``, the
off-limits watch, the check that nothing was replaced, and each exercise's
reference against the instructor's solution and against known mistakes.
The whole course, graded by nbgrader, is in test_nbgrader.py."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import helpers
from helpers import exercises

nan, inf = float("nan"), float("inf")
big = 2 ** 53

# (got, want, keyword arguments): each pair must be rejected.
WRONG = [
    (torch.tensor([nan, 5.0]), torch.tensor([nan, 1.0]), {}),            # element 1 off by 4
    (torch.tensor([1.0, 5.0]), torch.tensor([nan, 1.0]), {}),            # a number for a NaN
    (torch.tensor([nan, 1.0]), torch.tensor([2.0, 1.0]), {}),            # a NaN for a number
    (torch.tensor([-inf]), torch.tensor([inf]), {}),                     # the other infinity
    (torch.tensor([inf]), torch.tensor([1e30]), {"rtol": 1.0}),          # inf is not close to anything
    (torch.tensor([1e30]), torch.tensor([inf]), {"atol": 1e300}),
    (torch.tensor([1.0 + 2j]), torch.tensor([1.0 + 3j]), {}),            # the imaginary part differs
    (torch.tensor([1.0 + 0j]), torch.tensor([1.0 + 1e-3j]), {"atol": 1e-4}),
    (torch.tensor([big + 1]), torch.tensor([big]), {}),                  # int64 above 2**53
    (torch.tensor([big + 2]), torch.tensor([big]), {"atol": 1}),
    (torch.tensor([-(2 ** 63)]), torch.tensor([2 ** 63 - 1]), {}),       # no overflow in the difference
    (torch.tensor([1.0, 0.0]), torch.tensor([True, False]), {}),         # a float mask for a bool one
    (torch.tensor([True, False]), torch.tensor([1.0, 0.0]), {}),         # and the other way
    (torch.ones(2, dtype=torch.float64), torch.ones(2), {}),             # float64 for float32
    (torch.ones(2, dtype=torch.int32), torch.ones(2, dtype=torch.int64), {}),
    (torch.ones(3, 2), torch.ones(2, 3), {}),                            # shapes
    (torch.ones(6), torch.ones(2, 3), {}),
    (torch.ones(2) + 2e-6, torch.ones(2), {"atol": 1e-6}),
    (torch.ones(2) * (1 + 2e-4), torch.ones(2), {"rtol": 1e-4}),
    ([1.0, 2.0], torch.ones(2), {}),                                     # a list for a tensor
    (nan, 1.0, {}),                                                      # numbers
    (1.0, nan, {"atol": 1.0}),
    (-inf, inf, {}),
    (4.0, 4, {}),                                                        # a float count
    (big + 1, big, {}),
    (True, 1, {}),                                                       # a bool is not a count
    (1, True, {}),
    (1 + 1j, 1 + 2j, {}),
    (torch.tensor([1.0, 2.0]), 1.5, {}),                                 # two numbers for one
    ((1, 2), (1, 3), {}),
    ({"a": 1}, {"b": 1}, {}),
    ("fc1", "fc2", {}),
    (None, 3, {}),
    (np.array([1.0, nan]), np.array([1.0, 2.0]), {}),
]

# each pair must be accepted.
RIGHT = [
    (torch.tensor([nan, 1.0]), torch.tensor([nan, 1.0]), {}),
    (torch.tensor([inf, -inf, 2.0]), torch.tensor([inf, -inf, 2.0]), {}),
    (torch.tensor([1.0 + 2j]), torch.tensor([1.0 + 2j]), {}),
    (torch.tensor([big + 1]), torch.tensor([big + 1]), {}),
    (torch.tensor([big + 1]), torch.tensor([big]), {"atol": 1}),
    (torch.ones(2) + 5e-7, torch.ones(2), {"atol": 1e-6}),
    (torch.ones(2) * (1 + 5e-5), torch.ones(2), {"rtol": 1e-4}),
    (np.arange(4.0, dtype=np.float32), torch.arange(4.0), {}),         # an array by value
    (torch.tensor([True, False]), torch.tensor([True, False]), {}),
    (torch.tensor(0.5), 0.5, {}),                                        # one element is a number
    (3, 3.0, {}),                                                        # an int where a float is expected
    (np.int64(7), 7, {}),
    (nan, nan, {}),
    (inf, inf, {}),
    ((3, 4.0, {"a": torch.ones(2)}), (3, 4.0, {"a": torch.ones(2)}), {}),
    (torch.empty(0, 3), torch.empty(0, 3), {}),
]


def test_at_least_twenty_wrong_and_ten_right_cases():
    assert len(WRONG) >= 20 and len(RIGHT) >= 10


@pytest.mark.parametrize("got,want,kw", WRONG, ids=[f"wrong{i}" for i in range(len(WRONG))])
def test_same_rejects_a_wrong_answer(got, want, kw):
    with pytest.raises(AssertionError):
        exercises.same(got, want, "x", **kw)


@pytest.mark.parametrize("got,want,kw", RIGHT, ids=[f"right{i}" for i in range(len(RIGHT))])
def test_same_accepts_a_right_answer(got, want, kw):
    exercises.same(got, want, "x", **kw)


@pytest.mark.parametrize("bad", [nan, inf, -1, -1e-9, "0", None, True])
def test_tolerances_must_be_finite_and_non_negative(bad):
    for name in ("atol", "rtol"):
        with pytest.raises(ValueError, match=name):
            exercises.same(1.0, 1.0, **{name: bad})


def _message(got, want, **kw) -> str:
    with pytest.raises(AssertionError) as caught:
        exercises.same(got, want, "x", **kw)
    return str(caught.value)


def test_same_says_what_is_wrong():
    w = torch.arange(12.0).view(3, 4)
    assert _message(w.T, w) == "x has shape (4, 3), expected (3, 4)"
    bad = w.clone()
    bad[1, 2] += 0.5
    bad[2, 3] -= 2.0
    assert _message(bad, w) == "x[2, 3] is 9, expected 11 (off by -2; 2 of 12 elements differ)"
    assert _message(torch.tensor([nan, 5.0]), torch.tensor([nan, 1.0])) == \
        "x[1] is 5, expected 1 (off by +4; 1 of 2 elements differ)"
    assert _message(torch.tensor([1.0, 5.0]), torch.tensor([nan, 5.0])) == \
        "x[0] is 1, expected nan (1 of 2 elements differ)"
    assert _message(torch.tensor([big + 1]), torch.tensor([big])) == \
        f"x[0] is {big + 1}, expected {big} (off by +1; 1 of 1 elements differ)"
    assert _message(torch.tensor([1.0, 0.0]), torch.tensor([True, False])) == \
        "x has dtype torch.float32, expected torch.bool"
    assert _message(3, 4) == "x is 3, expected 4 (off by -1)"
    assert _message(4.0, 4) == "x should be an integer, got float 4.0"
    assert _message(0.3, 0.25, atol=0.01).startswith("x is 0.3, expected 0.25 (off by +0.05")
    assert _message((1, 2), (1, 3)) == "x[1] is 2, expected 3 (off by -1)"
    assert _message({"a": 1}, {"b": 1}) == "x should have the keys ['b'], got ['a']"
    assert _message([1], (1, 2)) == "x should have 2 items, got 1"
    assert _message(None, 3) == "x should be an integer, got NoneType None"
    assert _message([1.0, 2.0], torch.ones(2)) == "x should be a Tensor, got list"
    assert _message("fc1", "fc2") == "x is 'fc1', expected 'fc2'"


# --------------------------------------------------------------------------
# Off limits, and nothing replaced
# --------------------------------------------------------------------------

def test_an_off_limits_call_fails_under_any_name():
    evaluate = helpers.training.evaluate  # bound before the watch starts
    X, y = torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)
    model = helpers.models.baseline_mlp()

    def through_an_alias(model, X, y):
        return evaluate(model, X, y)["accuracy"]

    with pytest.raises(AssertionError, match="write this one yourself: through_an_alias calls "
                                             "helpers.training.evaluate"):
        exercises.call(through_an_alias, model, X, y, off_limits=["helpers.training.evaluate"])
    # the same function is fine where it is not off limits
    assert exercises.call(through_an_alias, model, X, y, off_limits=["helpers.pruning.rewind"]) \
        == evaluate(model, X, y)["accuracy"]


@pytest.mark.parametrize("softmax", [
    lambda z: torch.softmax(z, -1), lambda z: z.softmax(-1),
    lambda z: torch.nn.functional.softmax(z, -1), lambda z: nn.Softmax(-1)(z),
    lambda z: torch.log_softmax(z, -1).exp(), lambda z: torch.Tensor.softmax(z, -1),
    lambda z: torch.special.softmax(z, -1), lambda z: torch.special.log_softmax(z, -1).exp()])
def test_every_softmax_is_off_limits_where_the_exercise_asks_for_exp(softmax):
    with pytest.raises(AssertionError, match="torch.exp"):
        exercises.call(softmax, torch.randn(3, 4), off_limits=exercises.SOFTMAX)
    exercises.call(lambda z: z.exp() / z.exp().sum(-1, keepdim=True), torch.randn(3, 4),
                   off_limits=exercises.SOFTMAX)


@pytest.mark.parametrize("by_autograd", [
    lambda z: torch.autograd.grad((z ** 2).sum(), z)[0],
    lambda z: ((z ** 2).sum().backward(), z.grad)[1],
    lambda z: torch.func.grad(lambda t: (t ** 2).sum())(z.detach())])
def test_autograd_is_off_limits_where_the_exercise_asks_for_the_formula(by_autograd):
    z = torch.randn(3, requires_grad=True)
    with pytest.raises(AssertionError, match="formula, not autograd"):
        exercises.call(by_autograd, z, off_limits=exercises.AUTOGRAD)
    exercises.call(lambda t: 2 * t.detach(), z, off_limits=exercises.AUTOGRAD)


def test_an_off_limits_call_is_reported_even_when_the_function_then_fails():
    def calls_then_fails(layer):
        prune.l1_unstructured(layer, "weight", 0.5)
        raise RuntimeError("something else")

    with pytest.raises(AssertionError, match="torch.nn.utils.prune"):
        exercises.call(calls_then_fails, nn.Linear(3, 2), off_limits=exercises.PRUNE)
    with pytest.raises(NotImplementedError, match="not done yet"):
        exercises.call(lambda: (_ for _ in ()).throw(NotImplementedError("not done yet")),
                       off_limits=exercises.PRUNE)


def test_switching_off_the_watch_fails():
    import sys

    def sneaky():
        sys.setprofile(None)
        return 1

    with pytest.raises(AssertionError, match="switched off"):
        exercises.call(sneaky, off_limits=["helpers.pruning.rewind"])


def test_nothing_is_replaced_in_a_fresh_process_and_a_replacement_is_named(monkeypatch):
    assert exercises.replaced() == []
    monkeypatch.setattr(helpers.exercises, "same", lambda *a, **k: None)
    monkeypatch.setattr(helpers.metrics, "count_parameters", lambda m: {"total": 0})
    monkeypatch.setattr(torch, "equal", lambda a, b: True)
    monkeypatch.setattr(torch.Tensor, "abs", lambda self: self)
    found = exercises.replaced()
    assert {"helpers.exercises.same", "helpers.metrics.count_parameters", "torch.equal",
            "torch.Tensor.abs"} <= set(found), found
    with pytest.raises(AssertionError, match="replaced in this notebook"):
        exercises.exercise("csr_bytes").check(lambda w: 0, torch.ones(2, 2))


# --------------------------------------------------------------------------
# Each exercise: a right answer passes, a copy and known mistakes fail
# --------------------------------------------------------------------------

def test_every_exercise_is_named_and_unknown_names_are_refused():
    assert len(exercises.EXERCISES) == 14
    with pytest.raises(ValueError, match="name must be one of"):
        exercises.exercise("nope")


def test_params_and_bytes():
    ex = exercises.exercise("params_and_bytes")

    def mine(model):
        n = sum(p.numel() for p in model.parameters())
        return n, 4 * n

    model = nn.Sequential(nn.Linear(20, 7, bias=False), nn.ReLU(), nn.Linear(7, 3))
    ex.check(mine, model)
    with pytest.raises(AssertionError, match="write this one yourself.*count_parameters"):
        ex.check(lambda m: (helpers.metrics.count_parameters(m)["total"],) * 2, model)
    with pytest.raises(AssertionError, match="biases were left out"):
        ex.check(lambda m: (161, 4 * 161), model)    # 140 + 21 weights, no bias of 3
    with pytest.raises(AssertionError, match="should be an integer"):
        ex.check(lambda m: (164.0, 656.0), model)


def test_accuracy_keeps_the_mode_and_counts_the_last_batch():
    ex = exercises.exercise("accuracy")
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(25, 1, 28, 28, generator=g), torch.randint(0, 10, (25,), generator=g)
    with torch.random.fork_rng():  # the same network whatever ran before
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

    def right(model, X, y, batch_size=100):
        with torch.no_grad():
            return (model(X).argmax(1) == y).float().mean().item()

    ex.check(right, model, X, y, 10)

    def flips_the_mode(model, X, y, batch_size=100):
        model.eval()
        return right(model, X, y, batch_size)

    model.train()
    with pytest.raises(AssertionError, match="changed the mode of the model"):
        ex.check(flips_the_mode, model, X, y, 10)

    def drops_the_last_batch(model, X, y, batch_size=100):
        n = len(X) // batch_size * batch_size
        return right(model, X[:n], y[:n])

    with pytest.raises(AssertionError, match="last, shorter batch"):
        ex.check(drops_the_last_batch, model, X, y, 10)


def test_neuron_mask_names_an_l2_norm():
    ex = exercises.exercise("neuron_mask")
    torch.manual_seed(3)
    layer = nn.Linear(12, 20)

    def l2(layer, amount):
        norms = layer.weight.detach().norm(dim=1)
        mask = torch.ones_like(layer.weight)
        mask[norms.topk(round(amount * 20), largest=False).indices] = 0
        return mask

    def l1(layer, amount):
        norms = layer.weight.detach().abs().sum(dim=1)
        mask = torch.ones_like(layer.weight)
        mask[norms.topk(round(amount * 20), largest=False).indices] = 0
        return mask

    ex.check(l1, layer, 0.5)
    with pytest.raises(AssertionError, match="L2 norm"):
        ex.check(l2, layer, 0.5)
    with pytest.raises(AssertionError, match="write this one yourself.*ln_structured"):
        ex.check(lambda layer, a: prune.ln_structured(copy.deepcopy(layer), "weight", a, 1, 0)
                 .weight_mask, layer, 0.5)


def test_soft_targets_names_natural_logs():
    ex = exercises.exercise("soft_targets_and_entropy")
    z = torch.randn(4, 10) * 3

    def by_exp(logits, T, log=torch.log2):
        e = torch.exp(logits / T - (logits / T).max(-1, keepdim=True).values)
        p = e / e.sum(-1, keepdim=True)
        return p, -torch.where(p > 0, p * log(p), torch.zeros_like(p)).sum(-1)

    ex.check(by_exp, z, 2.0)
    with pytest.raises(AssertionError, match="nats"):
        ex.check(lambda logits, T: by_exp(logits, T, torch.log), z, 2.0)
    with pytest.raises(AssertionError, match="torch.exp, not a ready-made softmax"):
        ex.check(lambda logits, T: (torch.softmax(logits / T, -1), by_exp(logits, T)[1]), z, 2.0)


def test_sparsity_report_takes_float32_counting():
    ex = exercises.exercise("sparsity_report")
    model = helpers.pruning.magnitude_prune(helpers.models.baseline_mlp(), 0.9)

    def float32_mean(model):
        report, zeros, total = {}, 0, 0
        for name, m in model.named_modules():
            if isinstance(m, nn.Linear):
                report[name] = (m.weight == 0).float().mean()
                zeros, total = zeros + int((m.weight == 0).sum()), total + m.weight.numel()
        report["overall"] = zeros / total
        return report

    ex.check(float32_mean, model)


def test_kd_gradient_names_a_missing_batch_mean():
    ex = exercises.exercise("kd_gradient")
    g = torch.Generator().manual_seed(1)
    zs, zt = torch.randn(8, 10, generator=g), torch.randn(8, 10, generator=g)
    y = torch.randint(0, 10, (8,), generator=g)
    F = torch.nn.functional

    def formula(zs, zt, y, T, alpha, B=None):
        soft = T * (F.softmax(zs / T, 1) - F.softmax(zt / T, 1))
        hard = F.softmax(zs, 1) - F.one_hot(y, 10).float()
        return (alpha * soft + (1 - alpha) * hard) / (B or len(zs))

    ex.check(formula, zs, zt, y, 4.0, 0.7)
    with pytest.raises(AssertionError, match="batch size"):
        ex.check(lambda *a: formula(*a, B=1), zs, zt, y, 4.0, 0.7)
    with pytest.raises(AssertionError, match="write this one yourself.*distillation_loss"):
        ex.check(exercises._kd_gradient, zs, zt, y, 4.0, 0.7)

    def own_loss_by_autograd(zs, zt, y, T, alpha):
        z = zs.detach().clone().requires_grad_(True)
        soft = F.kl_div(F.log_softmax(z / T, 1), F.softmax(zt / T, 1), reduction="batchmean")
        loss = alpha * T * T * soft + (1 - alpha) * F.cross_entropy(z, y)
        return torch.autograd.grad(loss, z)[0]

    with pytest.raises(AssertionError, match="formula, not autograd"):
        ex.check(own_loss_by_autograd, zs, zt, y, 4.0, 0.7)


def test_csr_bytes_names_int64_indices():
    ex = exercises.exercise("csr_bytes")
    w = torch.tensor([[0.0, 1.5, 0.0], [0.0, 0.0, 0.0], [2.0, 0.0, -3.0]])
    ex.check(lambda w: 3 * 4 + 3 * 4 + 4 * 4, w)
    with pytest.raises(AssertionError, match="int64"):
        ex.check(lambda w: 3 * 4 + 3 * 8 + 4 * 8, w)
    with pytest.raises(AssertionError, match="final row pointer"):
        ex.check(lambda w: 3 * 4 + 3 * 4 + 3 * 4, w)
