"""Bad input to every public function the notebooks and exercises call.

Each case is a row of one of two tables:

* ``refuse(...)``: the call must raise ``ValueError`` or ``TypeError`` (or, for
  training that diverges, ``FloatingPointError``) whose message names the
  argument and the allowed range (every string of ``says`` appears in it), and
  must leave every argument it was given exactly as it was (models' state
  dicts, tensors' values, datasets' tensors);
* ``correct(...)``: the call must succeed and its result pass ``check``, an
  independent reading of what the right answer is (a formula written out, a
  value computed another way).

Arguments that a call could change are built fresh for each case with
``fresh(factory)``. The sections below are one per module.
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from helpers import distillation, metrics, models, training
from helpers.models import MLPStack, mlp

from conftest import synthetic

REFUSALS: list = []
RESULTS: list = []
RAISES = (ValueError, TypeError)


@dataclasses.dataclass(frozen=True)
class fresh:
    """An argument built anew for each run of a case (``factory()``)."""

    factory: object

    def __call__(self):
        return self.factory()


def refuse(case_id: str, fn, *args, says: tuple[str, ...], exc=RAISES, **kwargs) -> None:
    """A call ``fn(*args, **kwargs)`` that must be refused with ``exc`` naming ``says``."""
    REFUSALS.append(pytest.param(fn, args, kwargs, exc, tuple(says), id=case_id))


def correct(case_id: str, fn, *args, check, **kwargs) -> None:
    """A call that must succeed with a result for which ``check(result)`` is true."""
    RESULTS.append(pytest.param(fn, args, kwargs, check, id=case_id))


def _build(args, kwargs):
    return ([a() if isinstance(a, fresh) else a for a in args],
            {k: (v() if isinstance(v, fresh) else v) for k, v in kwargs.items()})


def _snapshot(obj):
    """What must not change: a model's state (with every buffer and mask), a
    tensor's values, a dataset's tensors, a list's items."""
    if isinstance(obj, nn.Module):
        return ("module", {k: v.detach().clone() for k, v in obj.state_dict().items()},
                {n: type(m) for n, m in obj.named_modules()})
    if isinstance(obj, torch.Tensor):
        return ("tensor", obj.detach().clone())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return ("dataclass", {f.name: _snapshot(getattr(obj, f.name))
                              for f in dataclasses.fields(obj)})
    if isinstance(obj, (list, tuple)):
        return ("seq", [_snapshot(x) for x in obj])
    if isinstance(obj, dict):
        return ("dict", {k: _snapshot(v) for k, v in obj.items()})
    return ("value", repr(obj))


def _same(a, b) -> bool:
    if a[0] != b[0]:
        return False
    if a[0] == "tensor":
        x, y = a[1], b[1]
        return x.shape == y.shape and x.dtype == y.dtype and torch.equal(
            torch.nan_to_num(x), torch.nan_to_num(y)) and torch.equal(x.isnan(), y.isnan())
    if a[0] == "module":
        return (a[2] == b[2] and a[1].keys() == b[1].keys()
                and all(_same(("tensor", a[1][k]), ("tensor", b[1][k])) for k in a[1]))
    if a[0] in ("dataclass", "dict"):
        return a[1].keys() == b[1].keys() and all(_same(a[1][k], b[1][k]) for k in a[1])
    if a[0] == "seq":
        return len(a[1]) == len(b[1]) and all(_same(x, y) for x, y in zip(a[1], b[1]))
    return a[1] == b[1]


# Shared, read-only inputs (a case that could change its input uses fresh()).
DATA = synthetic(n_train=48, n_eval=24)
X = DATA.X_val[:8]


# --- data, checkpoints and the cache ------------------------------------------


# --- models and training --------------------------------------------------------

def _net(seed: int = 0):
    return fresh(lambda: mlp(4, seed=seed))


def _pruned_then_double():
    net = mlp(4, seed=0)
    prune.l1_unstructured(net.fc1, "weight", amount=0.5)
    return net.double()  # .weight is a plain attribute: left float32 by .double()


def _nan_net():
    net = mlp(4, seed=0)
    with torch.no_grad():
        net.fc1.weight[0, 0] = float("nan")
    return net


def _nan_pixel(X):
    X = X.clone()
    X[3, 0, 5, 5] = float("nan")
    return X


EMPTY_TRAIN = dataclasses.replace(DATA, X_train=DATA.X_train[:0], y_train=DATA.y_train[:0])
IGNORED_LABELS = dataclasses.replace(DATA, y_train=torch.full_like(DATA.y_train, -100))
LABEL_10 = dataclasses.replace(DATA, y_train=torch.full_like(DATA.y_train, 10))
NAN_PIXEL = dataclasses.replace(DATA, X_train=_nan_pixel(DATA.X_train))
Y8 = DATA.y_val[:8]
TR = {"epochs": 1, "batch_size": 16, "device": "cpu"}
SEED_RANGE = "[0, 4294967295]"

refuse("train-lr-1e30-diverges", training.train, _net(), DATA, **{**TR, "lr": 1e30},
       says=("epoch 1, batch 2", "lr", "1e+30"), exc=FloatingPointError)
refuse("train-lam-1e300-diverges", training.train, _net(), DATA, penalty="l1", lam=1e300, **TR,
       says=("epoch 1, batch 1", "lam", "1e+300"), exc=FloatingPointError)
refuse("train-empty-split", training.train, _net(), EMPTY_TRAIN, **TR,
       says=("data.X_train", "at least one sample"))
refuse("train-labels--100", training.train, _net(), IGNORED_LABELS, **TR,
       says=("data.y_train", "[0, 9]", "-100"))
refuse("train-label-10", training.train, _net(), LABEL_10, **TR,
       says=("data.y_train", "[0, 9]", "10"))
refuse("train-nan-pixel", training.train, _net(), NAN_PIXEL, **TR,
       says=("data.X_train", "finite"))
refuse("train-nan-weights", training.train, fresh(_nan_net), DATA, **TR, says=("model", "finite"))
refuse("train-no-parameters", training.train, nn.ReLU(), DATA, **TR,
       says=("model", "parameter"))
refuse("train-model-none", training.train, None, DATA, **TR, says=("model", "nn.Module"))
refuse("train-data-tuple", training.train, _net(), (X, Y8), **TR, says=("data", "Dataset"))
refuse("train-epochs-bool", training.train, _net(), DATA, epochs=True,
       says=("epochs", "[1, inf]"))
refuse("train-epochs-0", training.train, _net(), DATA, epochs=0, says=("epochs", "[1, inf]"))
refuse("train-lr-nan", training.train, _net(), DATA, **TR, lr=float("nan"), says=("lr", "(0, inf)"))
refuse("train-lr-inf", training.train, _net(), DATA, **TR, lr=float("inf"), says=("lr", "(0, inf)"))
refuse("train-lr-zero", training.train, _net(), DATA, **TR, lr=0, says=("lr", "(0, inf)"))
refuse("train-batch_size-0", training.train, _net(), DATA, batch_size=0,
       says=("batch_size", "[1, inf]"))
refuse("train-batch_size-float", training.train, _net(), DATA, batch_size=1.5,
       says=("batch_size", "[1, inf]"))
refuse("train-seed-2**32", training.train, _net(), DATA, **TR, seed=2**32,
       says=("seed", SEED_RANGE))
refuse("train-seed-negative", training.train, _net(), DATA, **TR, seed=-1,
       says=("seed", SEED_RANGE))
refuse("train-stack-seed-2**32", training.train, fresh(lambda: MLPStack([mlp(4), mlp(4)])), DATA,
       epochs=1, seed=[0, 2**32], says=("seed", SEED_RANGE))
refuse("train-momentum-1", training.train, _net(), DATA, optimizer="sgd", momentum=1.0,
       says=("momentum", "[0, 1)"))
refuse("train-lam-negative", training.train, _net(), DATA, penalty="l2", lam=-1e-3,
       says=("lam", "[0, inf)"))
refuse("train-schedule", training.train, _net(), DATA, schedule="step",
       says=("schedule", "cosine"))
refuse("train-augment-string", training.train, _net(), DATA, augment="yes",
       says=("augment", "True or False"))
refuse("train-loss_fn-not-callable", training.train, _net(), DATA, loss_fn="ce",
       says=("loss_fn", "function"))
refuse("train-device-gpu", training.train, _net(), DATA, device="gpu", says=("device", "'cpu'"))
refuse("train-device-int", training.train, _net(), DATA, device=3.0, says=("device", "'cpu'"))
refuse("evaluate-all-labels--100", training.evaluate, _net(), X, torch.full((8,), -100),
       says=("y", "[0, 9]", "-100"))
refuse("evaluate-label-10", training.evaluate, _net(), X, torch.full((8,), 10),
       says=("y", "[0, 9]", "10"))
refuse("evaluate-empty", training.evaluate, _net(), X[:0], Y8[:0], says=("X", "at least one"))
refuse("evaluate-y-short", training.evaluate, _net(), X, Y8[:7], says=("y", "(8)"))
refuse("evaluate-y-float", training.evaluate, _net(), X, Y8.float(), says=("y", "integer"))
refuse("evaluate-y-list", training.evaluate, _net(), X, Y8.tolist(), says=("y", "Tensor"))
refuse("evaluate-no-parameters", training.evaluate, nn.ReLU(), X, Y8, says=("model", "parameter"))
refuse("evaluate-batch_size-0", training.evaluate, _net(), X, Y8, batch_size=0,
       says=("batch_size", "[1, inf]"))
refuse("logits_of-no-parameters", training.logits_of, nn.ReLU(), X, says=("model", "parameter"))
refuse("logits_of-empty", training.logits_of, _net(), X[:0], says=("X", "at least one"))
refuse("logits_of-uint8", training.logits_of, _net(), X.to(torch.uint8),
       says=("X", "floating-point"))
refuse("logits_of-list", training.logits_of, _net(), X.tolist(), says=("X", "Tensor"))
refuse("logits_of-scalar", training.logits_of, _net(), torch.tensor(1.0), says=("X", "axes"))
refuse("get_device-gpu", training.get_device, "gpu", says=("prefer", "'cpu'", "'cuda'"))
refuse("get_device-cuda-99", training.get_device, "cuda:99", says=("prefer", "'cpu'"))
refuse("get_device-float", training.get_device, 0.5, says=("prefer", "torch.device"))
refuse("best_epoch-empty", training.best_epoch, [], says=("history", "val_accuracy"))
refuse("weight_penalty-kind", training.weight_penalty, _net(), "l3", says=("kind", "'l1'"))
refuse("weight_penalty-no-model", training.weight_penalty, None, "l1", says=("model", "Module"))
refuse("mlp-hidden-float", models.mlp, 1.5, says=("hidden", "[1, inf)"))
refuse("mlp-hidden-string", models.mlp, "128", says=("hidden", "[1, inf)"))
refuse("mlp-hidden-0", models.mlp, 0, says=("hidden", "[1, inf]"))
refuse("mlp-hidden-empty", models.mlp, [], says=("hidden", "non-empty"))
refuse("mlp-hidden-negative-in-list", models.mlp, [16, -1], says=("hidden", "[1, inf]"))
refuse("mlp-seed-2**32", models.mlp, 8, seed=2**32, says=("seed", SEED_RANGE))
refuse("mlp-seed-bool", models.mlp, 8, seed=True, says=("seed", SEED_RANGE))
refuse("baseline_mlp-seed-negative", models.baseline_mlp, seed=-1, says=("seed", SEED_RANGE))
refuse("small_cnn-one-channel", models.small_cnn, channels=(16,), says=("channels", "pair"))
refuse("small_cnn-channels-int", models.small_cnn, channels=16, says=("channels", "pair"))
refuse("small_cnn-channel-0", models.small_cnn, channels=(0, 4), says=("channels[0]", "[1, inf]"))
refuse("small_cnn-hidden-0", models.small_cnn, hidden=0, says=("hidden", "[1, inf]"))
refuse("small_cnn-seed-2**32", models.small_cnn, seed=2**32, says=("seed", SEED_RANGE))
refuse("clone-not-a-model", models.clone, None, says=("model", "nn.Module"))
refuse("make_permanent-not-a-model", models.make_permanent, "net", says=("model", "nn.Module"))


def _hand_accuracy(net, X, y):
    with torch.no_grad():
        return (net(X).argmax(1) == y).float().mean().item()


correct("evaluate-accuracy-by-hand", training.evaluate, mlp(4, seed=3), X, Y8,
        check=lambda r: r["accuracy"] == pytest.approx(_hand_accuracy(mlp(4, seed=3), X, Y8)))
correct("logits_of-is-a-forward-pass", training.logits_of, mlp(4, seed=3), X, batch_size=3,
        check=lambda z: torch.allclose(z, mlp(4, seed=3)(X).detach(), atol=1e-6))
correct("mlp-seed-2**32-1-is-its-own", models.mlp, 4, seed=2**32 - 1,
        check=lambda net: not torch.equal(net.fc1.weight, mlp(4, seed=0).fc1.weight))
correct("clone-pruned-then-double", models.clone, fresh(_pruned_then_double),
        check=lambda net: net.fc1.weight.dtype == torch.float64 and torch.equal(
            net.fc1.weight, net.fc1.weight_orig * net.fc1.weight_mask))
correct("make_permanent-pruned-then-double", models.make_permanent, fresh(_pruned_then_double),
        check=lambda net: net.fc1.weight.dtype == torch.float64
        and int((net.fc1.weight == 0).sum()) == 784 * 4 // 2)
correct("get_device-cpu", training.get_device, "cpu", check=lambda d: d == torch.device("cpu"))
correct("weight_penalty-l2-written-out", training.weight_penalty, mlp(4, seed=1), "l2",
        check=lambda v: torch.allclose(v, sum((w.detach() ** 2).sum() for w in (
            mlp(4, seed=1).fc1.weight, mlp(4, seed=1).fc2.weight))))


# --- distillation -----------------------------------------------------------------

_g = torch.Generator().manual_seed(5)
S4, T4 = torch.randn(4, 10, generator=_g) * 3, torch.randn(4, 10, generator=_g) * 3
Y4 = torch.tensor([1, 0, 7, 3])
P = torch.tensor([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]])
KD = {"T": 2.0, "alpha": 0.5}
DS = {"epochs": 1, "device": "cpu"}
loss = distillation.distillation_loss


def _hand_ce(s, y):
    return -torch.log_softmax(s.double(), 1)[torch.arange(len(y)), y].mean().item()


def _hand_kd(s, t, y, T, alpha):
    """alpha T^2 mean_b sum_i p_t,i (log p_t,i - log p_s,i) + (1 - alpha) CE, in float64."""
    lt, ls = torch.log_softmax(t.double() / T, 1), torch.log_softmax(s.double() / T, 1)
    kl = (lt.exp() * (lt - ls)).sum(1).mean().item()
    return alpha * T * T * kl + (1 - alpha) * _hand_ce(s, y)


def _low_T_gap(s, t):
    """Hinton's T -> 0 limit of T^2 KL / T: max s - s[argmax t], averaged over rows."""
    return (s.max(1).values - s[torch.arange(len(s)), t.argmax(1)]).double().mean().item()


def _pruned_fc2():
    net = mlp(4, seed=0)
    prune.l1_unstructured(net.fc2, "weight", amount=0.5)  # .weight: a non-leaf tensor
    return net


def _nan_logits():
    z = torch.zeros(len(DATA.X_train), 10)
    z[3, 4] = float("nan")
    return z


STACK = (torch.stack([S4, T4]), torch.stack([T4, S4]), torch.stack([Y4, Y4]))

refuse("loss-T-0", loss, S4, T4, Y4, T=0, alpha=0.5, says=("T", "(0, 100]"))
refuse("loss-T-nan", loss, S4, T4, Y4, T=float("nan"), alpha=0.5, says=("T", "(0, 100]"))
refuse("loss-T-inf", loss, S4, T4, Y4, T=float("inf"), alpha=0.5, says=("T", "(0, 100]"))
refuse("loss-T-1e200", loss, S4, T4, Y4, T=1e200, alpha=0.5, says=("T", "(0, 100]"))
refuse("loss-T-string", loss, S4, T4, Y4, T="4", alpha=0.5, says=("T", "(0, 100]"))
refuse("loss-alpha-1.5", loss, S4, T4, Y4, T=2.0, alpha=1.5, says=("alpha", "[0, 1]"))
refuse("loss-alpha-nan", loss, S4, T4, Y4, T=2.0, alpha=float("nan"), says=("alpha", "[0, 1]"))
refuse("loss-teacher-4x1", loss, S4, T4[:, :1], Y4, **KD, says=("teacher_logits", "(4, 10)"))
refuse("loss-teacher-1x10", loss, S4, T4[:1], Y4, **KD, says=("teacher_logits", "(4, 10)"))
refuse("loss-teacher-list", loss, S4, T4.tolist(), Y4, **KD, says=("teacher_logits", "Tensor"))
refuse("loss-student-1d", loss, S4[0], T4[0], Y4[:1], **KD, says=("student_logits", "(B, C)"))
refuse("loss-student-int", loss, S4.long(), T4, Y4, **KD,
       says=("student_logits", "floating-point"))
refuse("loss-student-empty", loss, S4[:0], T4[:0], Y4[:0], **KD,
       says=("student_logits", "at least one"))
refuse("loss-labels-4x1", loss, S4, T4, Y4[:, None], **KD, says=("labels", "(4,)"))
refuse("loss-labels-short", loss, S4, T4, Y4[:3], **KD, says=("labels", "(4,)"))
refuse("loss-labels--100", loss, S4, T4, torch.full((4,), -100), **KD,
       says=("labels", "[0, 9]", "-100"))
refuse("loss-labels-10", loss, S4, T4, torch.full((4,), 10), **KD, says=("labels", "[0, 9]"))
refuse("loss-labels-float", loss, S4, T4, Y4.float(), **KD, says=("labels", "integer"))
refuse("stacked-T--1-alpha-5", distillation.stacked_distillation_loss, *STACK,
       T=torch.tensor([-1.0, 2.0]), alpha=torch.tensor([5.0, 0.5]), says=("T", "(0, 100]"))
refuse("stacked-alpha-5", distillation.stacked_distillation_loss, *STACK,
       T=torch.tensor([1.0, 2.0]), alpha=torch.tensor([5.0, 0.5]), says=("alpha", "[0, 1]"))
refuse("stacked-T-one-for-two", distillation.stacked_distillation_loss, *STACK,
       T=torch.tensor([1.0]), alpha=torch.tensor([0.5, 0.5]), says=("T", "2 values"))
refuse("stacked-T-float", distillation.stacked_distillation_loss, *STACK,
       T=2.0, alpha=torch.tensor([0.5, 0.5]), says=("T", "Tensor"))
refuse("stacked-teacher-shape", distillation.stacked_distillation_loss, STACK[0], STACK[1][:1],
       STACK[2], T=torch.tensor([1.0, 2.0]), alpha=torch.tensor([0.5, 0.5]),
       says=("teacher_logits", "(2, 4, 10)"))
refuse("stacked-labels-shape", distillation.stacked_distillation_loss, *STACK[:2], Y4,
       T=torch.tensor([1.0, 2.0]), alpha=torch.tensor([0.5, 0.5]), says=("labels", "(2, 4)"))
refuse("entropy-unnormalised", distillation.entropy, torch.tensor([0.5, 0.6]),
       says=("probs", "sum to 1"))
refuse("entropy-row-unnormalised", distillation.entropy, torch.tensor([[0.5, 0.5], [0.2, 0.2]]),
       says=("probs", "sum to 1", "0.4"))
refuse("entropy-negative", distillation.entropy, torch.tensor([1.5, -0.5]),
       says=("probs", "[0, 1]"))
refuse("entropy-nan", distillation.entropy, torch.tensor([float("nan"), 1.0]),
       says=("probs", "finite"))
refuse("entropy-list", distillation.entropy, [0.5, 0.5], says=("probs", "Tensor"))
refuse("soft_targets-inf", distillation.soft_targets, torch.tensor([[1.0, float("inf")]]), 2.0,
       says=("logits", "finite"))
refuse("soft_targets-T-0", distillation.soft_targets, T4, 0.0, says=("T", "(0, inf)"))
refuse("soft_targets-int", distillation.soft_targets, Y4, 2.0, says=("logits", "floating-point"))
refuse("distill-augment", distillation.distill, _net(), _net(1), DATA, **DS, augment=True,
       says=("augment", "unshifted"))
refuse("distill-nan-logits", distillation.distill, _net(), _net(1), DATA, **DS,
       logits=fresh(_nan_logits), says=("logits", "finite"))
refuse("distill-logits-shape", distillation.distill, _net(), _net(1), DATA, **DS,
       logits=torch.zeros(len(DATA.X_train), 3), says=("logits", "(48, 10)"))
refuse("distill-lr-1e30-diverges", distillation.distill, _net(), _net(1), DATA, **DS, lr=1e30,
       says=("epoch 1", "lr"), exc=FloatingPointError)
refuse("distill-T-0", distillation.distill, _net(), _net(1), DATA, **DS, T=0,
       says=("T", "(0, 100]"))
refuse("distill-seed-2**32", distillation.distill, _net(), _net(1), DATA, **DS, seed=2**32,
       says=("seed", SEED_RANGE))
refuse("distill-data-tuple", distillation.distill, _net(), _net(1), (X, Y8), **DS,
       says=("data", "Dataset"))
refuse("without_class-cls-10", distillation.without_class, DATA, 10, says=("cls", "[0, 9]"))
refuse("without_class-data-tuple", distillation.without_class, (X, Y8), 3,
       says=("data", "Dataset"))
refuse("bias_for_prior-prior-0", distillation.bias_for_prior, _net(), X, 3, 0,
       says=("prior", "(0, 1)"))
refuse("bias_for_prior-cls--1", distillation.bias_for_prior, _net(), X, -1, 0.1,
       says=("cls", "[0, inf]"))
refuse("bias_for_prior-empty-X", distillation.bias_for_prior, _net(), X[:0], 3, 0.1,
       says=("X", "at least one"))
refuse("shift_bias-cls-10", distillation.shift_bias, _net(), 10, 1.0, says=("cls", "[0, 9]"))
refuse("shift_bias-shift-nan", distillation.shift_bias, _net(), 3, float("nan"), says=("shift",))
refuse("shift_bias-no-bias", distillation.shift_bias, nn.ReLU(), 3, 1.0,
       says=("model", "bias vector"))
refuse("class_recall-y-short", distillation.class_recall, _net(), X, Y8[:5], int(Y8[0]),
       says=("y", "(8)"))
refuse("class_recall-class-absent", distillation.class_recall, _net(), X, torch.zeros(8).long(),
       4, says=("y", "4"))

correct("loss-T-1e-300-finite", loss, S4, T4, Y4, T=1e-300, alpha=0.5,
        check=lambda v: v.item() == pytest.approx(0.5 * _hand_ce(S4, Y4), rel=1e-5))
correct("loss-T-1e-20-low-T-limit", loss, S4, T4, Y4, T=1e-20, alpha=1.0,
        check=lambda v: v.item() == pytest.approx(1e-20 * _low_T_gap(S4, T4), rel=1e-5))
correct("loss-T-2-written-out", loss, S4, T4, Y4, T=2.0, alpha=0.7,
        check=lambda v: v.item() == pytest.approx(_hand_kd(S4, T4, Y4, 2.0, 0.7), rel=1e-5))
correct("loss-T-100-written-out", loss, S4, T4, Y4, T=100.0, alpha=1.0,
        check=lambda v: v.item() == pytest.approx(_hand_kd(S4, T4, Y4, 100.0, 1.0), rel=1e-3))
correct("stacked-each-student", distillation.stacked_distillation_loss, *STACK,
        T=torch.tensor([1e-30, 3.0]), alpha=torch.tensor([0.5, 0.9]),
        check=lambda v: v.tolist() == pytest.approx(
            [0.5 * _hand_ce(S4, Y4), _hand_kd(T4, S4, Y4, 3.0, 0.9)], rel=1e-5))
correct("entropy-written-out", distillation.entropy, P,
        check=lambda h: h.tolist() == pytest.approx(
            [-sum(v * math.log2(v) for v in row) for row in P.tolist()], rel=1e-6))
correct("soft_targets-T-1e-300-one-hot", distillation.soft_targets, T4, 1e-300,
        check=lambda p: torch.equal(p, nn.functional.one_hot(T4.argmax(1), 10).float()))
correct("shift_bias-freshly-pruned", distillation.shift_bias, fresh(_pruned_fc2), 3, 2.0,
        check=lambda net: net.fc2.bias[3].item() == pytest.approx(
            _pruned_fc2().fc2.bias[3].item() + 2.0))


# --- metrics ------------------------------------------------------------------------

def _stale_pruned():
    net = mlp(4, seed=0)
    prune.l1_unstructured(net.fc1, "weight", amount=0.5)
    with torch.no_grad():
        net.fc1.weight_orig.zero_()  # .weight keeps the old values until a forward pass
    return net


W = torch.tensor([[0.0, 1.5, 0.0], [2.0, 0.0, -1.0]])

refuse("macs-no-parameters", metrics.macs, nn.ReLU(), says=("model", "parameter"))
refuse("macs-input_shape-empty", metrics.macs, _net(), (), says=("input_shape", "[1, inf)"))
refuse("macs-input_shape-0", metrics.macs, _net(), (1, 0, 28, 28),
       says=("input_shape", "[1, inf)"))
refuse("macs-input_shape-string", metrics.macs, _net(), "1x784",
       says=("input_shape", "[1, inf)"))
refuse("latency-no-parameters", metrics.latency, nn.ReLU(), says=("model", "parameter"))
refuse("latency-batch_size-0", metrics.latency, _net(), 0, says=("batch_size", "[1, inf]"))
refuse("latency-threads-bool", metrics.latency, _net(), threads=True, says=("threads", "[1, inf]"))
refuse("latency-min_run_time-nan", metrics.latency, _net(), min_run_time=float("nan"),
       says=("min_run_time", "(0, inf)"))
refuse("csr_bytes-1d", metrics.csr_bytes, torch.zeros(3), says=("weight", "2-D"))
refuse("csr_bytes-list", metrics.csr_bytes, [[0.0]], says=("weight", "2-D"))
refuse("serialize-fmt", metrics.serialize, _net(), "zip", says=("fmt", "'raw'"))
refuse("count_parameters-not-a-model", metrics.count_parameters, None, says=("model", "Module"))
refuse("state_dict_bytes-not-a-model", metrics.state_dict_bytes, {}, says=("model", "Module"))
refuse("file_sizes-not-a-model", metrics.file_sizes, None, says=("model", "Module"))

correct("count_parameters-stale-weight", metrics.count_parameters, fresh(_stale_pruned),
        check=lambda c: c == {"total": 784 * 4 + 4 + 4 * 10 + 10, "nonzero": 4 + 4 * 10 + 10})
correct("count_parameters-no-parameters", metrics.count_parameters, nn.ReLU(),
        check=lambda c: c == {"total": 0, "nonzero": 0})
correct("macs-double-model", metrics.macs, fresh(lambda: mlp(4).double()),
        check=lambda c: c == {"dense": 784 * 4 + 4 * 10, "nonzero": 784 * 4 + 4 * 10})
correct("macs-stale-pruned", metrics.macs, fresh(_stale_pruned),
        check=lambda c: c == {"dense": 784 * 4 + 4 * 10, "nonzero": 4 * 10})
correct("csr_bytes-written-out", metrics.csr_bytes, W,
        check=lambda n: n == 4 * 3 + 4 * 3 + 4 * (2 + 1))


# --- stats and quantization ----------------------------------------------------------


# --- pruning --------------------------------------------------------------------------


# --- experiments, plots, widgets and compare -----------------------------------------


# --- the runners --------------------------------------------------------------------


@pytest.mark.parametrize("fn,args,kwargs,exc,says", REFUSALS)
def test_refused_clearly(fn, args, kwargs, exc, says):
    args, kwargs = _build(args, kwargs)
    before = _snapshot((args, kwargs))
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    missing = [s for s in says if s not in message]
    assert not missing, f"message {message!r} lacks {missing}"
    assert _same(before, _snapshot((args, kwargs))), "a refused call changed its arguments"


@pytest.mark.parametrize("fn,args,kwargs,check", RESULTS)
def test_correct_result(fn, args, kwargs, check):
    args, kwargs = _build(args, kwargs)
    result = fn(*args, **kwargs)
    assert check(result), f"wrong result: {result!r}"
