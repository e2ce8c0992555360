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
from helpers import compare, plots, stats, widgets
from helpers import experiments as ex
from helpers import pruning as hp
from helpers.models import mlp, small_cnn
from helpers.quantization import Int8Linear, max_rounding_error, quantize_int8

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

import numpy as np  # noqa: E402 - this section's own imports, kept with its cases

import helpers._util as hutil  # noqa: E402
import helpers.checkpoints as hck  # noqa: E402
import helpers.data as hdata  # noqa: E402


def _ck_net():
    return nn.Linear(2, 2)


def _ck_no_fit(model):
    raise AssertionError("trained before the arguments were checked")


_CK_CONFIG = {"seed": 0}
_LABELS_3x5 = np.repeat(np.arange(3), 5)

refuse("load_dataset-name-unknown", hdata.load_dataset, "cifar", says=("name", "'embedded'"))
refuse("load_dataset-name-int", hdata.load_dataset, 5, says=("name", "'mnist'"))
refuse("load_dataset-timeout-zero", hdata.load_dataset, "embedded", timeout=0,
       says=("timeout", "(0, 300]"))
refuse("load_dataset-timeout-text", hdata.load_dataset, "embedded", timeout="soon",
       says=("timeout", "(0, 300]"))
refuse("load_dataset-timeout-inf", hdata.load_dataset, "embedded", timeout=math.inf,
       says=("timeout", "(0, 300]"))
refuse("load_dataset-root-int", hdata.load_dataset, "mnist", root=3,
       says=("root", "str or os.PathLike"))
refuse("load_dataset-download-text", hdata.load_dataset, "mnist", download="no",
       says=("download", "True or False"))
refuse("batches-size-zero", hdata.batches, X, DATA.y_val[:8], 0, says=("batch_size", "[1, inf]"))
refuse("batches-size-float", hdata.batches, X, DATA.y_val[:8], 2.5,
       says=("batch_size", "[1, inf]"))
refuse("batches-lengths", hdata.batches, X, DATA.y_val[:7], 2, says=("same length",))
refuse("batches-X-list", hdata.batches, [[0.0]] * 8, DATA.y_val[:8], 2,
       says=("X", "torch.Tensor"))
refuse("batches-generator-int", hdata.batches, X, DATA.y_val[:8], 2, shuffle=True,
       generator=0, says=("generator", "torch.Generator or None"))
refuse("stratified_split-negative", hdata.stratified_split, _LABELS_3x5, -1,
       says=("test_per_class", "[0, inf]"))
refuse("stratified_split-val-bool", hdata.stratified_split, _LABELS_3x5, 1, True,
       says=("val_per_class", "[0, inf]"))
refuse("stratified_split-too-many", hdata.stratified_split, _LABELS_3x5, 3, 2,
       says=("test_per_class + val_per_class",))
refuse("stratified_split-seed", hdata.stratified_split, _LABELS_3x5, 1, seed=-2, says=("seed", "[0, inf]"))
refuse("stratified_split-2d", hdata.stratified_split, _LABELS_3x5.reshape(3, 5), 1,
       says=("y", "1-D array of integer labels"))
refuse("stratified_split-float-labels", hdata.stratified_split, _LABELS_3x5 + 0.5, 1,
       says=("y", "integer labels"))
refuse("Dataset.to-bad-device", DATA.to, "gpu-please", says=("device", "'cpu'"))
refuse("checkpoint_path-empty", hck.checkpoint_path, "", _CK_CONFIG,
       says=("name", "letters, digits"))
refuse("checkpoint_path-slash", hck.checkpoint_path, "../up", _CK_CONFIG,
       says=("name", "letters, digits"))
refuse("checkpoint_path-int", hck.checkpoint_path, 7, _CK_CONFIG, says=("name", "1 to 100"))
refuse("checkpoint_path-long", hck.checkpoint_path, "n" * 101, _CK_CONFIG,
       says=("name", "1 to 100"))
refuse("checkpoint_path-unicode", hck.checkpoint_path, "n\u00e9t", _CK_CONFIG,
       says=("name", "letters, digits"))
refuse("config_key-tensor", hck.config_key, {"w": torch.zeros(5000)},
       says=("config['w']", "JSON values", "Tensor"))
refuse("config_key-nested-tensor", hck.config_key, {"r": {"w": [1, torch.ones(2)]}},
       says=("config['r']['w'][1]", "JSON values"))
refuse("config_key-array", hck.config_key, {"a": np.zeros(3)},
       says=("config['a']", "ndarray"))
refuse("config_key-int-key", hck.config_key, {"r": {1: 2}}, says=("config['r']", "str keys"))
refuse("config_key-set", hck.config_key, {"s": {1, 2}}, says=("config['s']", "JSON"))
refuse("config_key-not-dict", hck.config_key, [1, 2], says=("config", "dict"))
refuse("load_or_train-build-not-callable", hck.load_or_train, "toy", _CK_CONFIG,
       fresh(_ck_net), _ck_no_fit, says=("build", "function"))
refuse("load_or_train-fit-not-callable", hck.load_or_train, "toy", _CK_CONFIG, _ck_net,
       {"epochs": 1}, says=("fit", "function"))
refuse("load_or_train-build-returns-number", hck.load_or_train, "toy", _CK_CONFIG,
       lambda: 3, _ck_no_fit, says=("build", "torch.nn.Module"))
refuse("load_or_train-bad-name", hck.load_or_train, "a b", _CK_CONFIG, _ck_net, _ck_no_fit,
       says=("name",))
refuse("load_checkpoint-config-tensor", hck.load_checkpoint, "toy",
       {"w": torch.ones(3)}, _ck_net, says=("config['w']", "JSON values"))
refuse("check_int-float", hutil.check_int, "epochs", 2.5, 1, says=("epochs", "[1, inf]"))
refuse("check_float-nan", hutil.check_float, "lr", math.nan, 0.0, 1.0, says=("lr", "[0, 1]"))
refuse("check_choice-unknown", hutil.check_choice, "optimizer", "rmsprop", ("sgd", "adam"),
       says=("optimizer", "'sgd'", "'adam'"))

correct("config_key-order-free", hck.config_key, {"b": [1, 2.5], "a": {"y": None, "x": True}},
        check=lambda k: k == hck.config_key({"a": {"x": True, "y": None},
                                                     "b": [1, 2.5]}))
correct("config_key-tuple-as-list", hck.config_key, {"h": (64,)},
        check=lambda k: k == hck.config_key({"h": [64]}))
correct("code_version-own-name", hck.code_version, "my-own", check=lambda v: v == 0)
correct("stratified_split-counts", hdata.stratified_split, _LABELS_3x5, 1, 1,
        check=lambda parts: [len(p) for p in parts] == [9, 3, 3]
        and sorted(np.concatenate(parts).tolist()) == list(range(15)))
correct("batches-last-short", lambda *a: list(hdata.batches(*a)), X, DATA.y_val[:8], 3,
        check=lambda got: [len(xb) for xb, _ in got] == [3, 3, 2])
correct("Dataset.to-same-device", DATA.to, "cpu", check=lambda d: d is DATA)


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
refuse("train-stack-seed-2**32", training.train_stack, fresh(lambda: MLPStack([mlp(4), mlp(4)])),
       DATA, epochs=1, seeds=[0, 2**32], says=("seeds[1]", SEED_RANGE))
refuse("train-a-stack", training.train, fresh(lambda: MLPStack([mlp(4), mlp(4)])), DATA,
       epochs=1, says=("model", "MLPStack", "train_stack"))
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

def _with_weight(value):
    """An 8-unit MLP whose fc1.weight[0, 0] is ``value``."""
    def make():
        net = mlp(8)
        with torch.no_grad():
            net.fc1.weight[0, 0] = value
        return net
    return fresh(make)


for _v, _id in ((0.5, "scalar"), ("12", "string"), ([0.5], "one"), ([math.nan, 1.0], "nan"),
                ([math.inf, 1.0], "inf"), ([True, False], "bools"), ([None, 1.0], "none"),
                ([1.7e308, -1.7e308], "spread-overflows")):
    refuse(f"mean_std-{_id}", stats.mean_std, _v, says=("values",))
refuse("pm-digits-negative", stats.pm, [0.9, 0.92], digits=-1, says=("digits", "[0, 15]"))
refuse("pm-digits-bool", stats.pm, [0.9, 0.92], digits=True, says=("digits", "[0, 15]"))
refuse("pm-digits-float", stats.pm, [0.9, 0.92], digits=1.5, says=("digits", "[0, 15]"))
refuse("pm-scale-string", stats.pm, [0.9, 0.92], scale="100", says=("scale", "> 0"))
refuse("pm-scale-nan", stats.pm, [0.9, 0.92], scale=math.nan, says=("scale", "> 0"))
refuse("pm-scale-zero", stats.pm, [0.9, 0.92], scale=0, says=("scale", "> 0"))
refuse("pm-unit-int", stats.pm, [0.9, 0.92], unit=5, says=("unit", "str"))
refuse("difference-lengths", stats.difference, [0.9, 0.91, 0.92], [0.9, 0.91],
       says=("a and b", "one value per seed"))
refuse("difference-nan", stats.difference, [0.9, math.nan], [0.9, 0.91], says=("a", "finite"))
refuse("difference-overflows", stats.difference, [1e308, 1e308], [-1e308, -1e308],
       says=("a - b", "finite"))
refuse("verdict-scale-negative", stats.verdict, [0.9, 0.92], [0.9, 0.91], scale=-1,
       says=("scale", "> 0"))
refuse("verdict-unit-none", stats.verdict, [0.9, 0.92], [0.9, 0.91], unit=None,
       says=("unit", "str"))
correct("mean_std-huge", stats.mean_std, [1e308, 1e308], check=lambda r: r == (1e308, 0.0))
correct("mean_std-huge-spread", stats.mean_std, [1e308, -1e308],
        check=lambda r: r[0] == 0.0 and r[1] == pytest.approx(math.sqrt(2) * 1e308))
correct("mean_std-0d-tensors", stats.mean_std, [torch.tensor(0.5), torch.tensor(0.7)],
        check=lambda r: r == pytest.approx((0.6, math.sqrt(0.02))))
correct("pm-digits0", stats.pm, [0.9, 0.92], digits=0, check=lambda r: r == "91 ± 1%")

refuse("quantize-inf-weight", quantize_int8, _with_weight(math.inf),
       says=("model", "finite", "fc1.weight"))
refuse("quantize-nan-weight", quantize_int8, _with_weight(math.nan),
       says=("model", "finite", "fc1.weight"))
refuse("quantize-not-a-model", quantize_int8, "net", says=("model", "torch.nn.Module"))
refuse("quantize-no-linear", quantize_int8, fresh(lambda: nn.Sequential(nn.ReLU())),
       says=("model", "nn.Linear"))
refuse("int8linear-conv", Int8Linear, fresh(lambda: nn.Conv2d(1, 2, 3)),
       says=("linear", "nn.Linear"))
refuse("int8linear-inf", Int8Linear, fresh(lambda: _with_weight(math.inf)().fc1),
       says=("linear", "finite"))
refuse("rounding-error-not-quantised", max_rounding_error, fresh(lambda: mlp(8)),
       fresh(lambda: mlp(8)), says=("quantized", "Int8Linear"))
refuse("rounding-error-other-model", max_rounding_error, fresh(lambda: mlp(8)),
       fresh(lambda: quantize_int8(mlp(4))), says=("quantized", "quantize_int8(model)"))


# --- pruning --------------------------------------------------------------------------

FC1 = 784 * 8  # fc1's weights in mlp(8)
ONE_LEFT = (FC1 - 1) / FC1  # the largest amount that leaves fc1 a weight


def _pruned(kind: str = "magnitude"):
    """A fresh mlp(8) under masks: fc1 magnitude-pruned by half, or half its
    neurons masked (``kind="neuron"``)."""
    if kind == "neuron":
        return fresh(lambda: hp.neuron_prune_(mlp(8), 0.5))
    return fresh(lambda: hp.magnitude_prune_(mlp(8), 0.5, layers=("fc1", "fc2")))


def _doubled_neuron_pruned():
    net = hp.neuron_prune_(mlp(8), 0.5)
    return net.double()  # the masked .weight stays float32 until a forward pass


def _logits_kept(net):
    """shrink(net) gives net's logits, in net's dtype."""
    small = hp.shrink(net)
    x = X.to(net.fc1.weight_orig.dtype)
    return small.fc1.out_features == 4 and torch.allclose(small(x), net(x), atol=1e-6)


def _sparsity_is(layer: str, want: float):
    return lambda net: hp.sparsity(net)[layer] == want


NOT_A_LIST = 5
for _a, _id, _says in ((torch.tensor([0.6, 0.7]), "tensor-1d", ("amount", "[0, 1)")),
                       (1.0, "one", ("amount", "[0, 1)")), (True, "bool", ("amount", "[0, 1)")),
                       ("0.6", "string", ("amount", "[0, 1)")),
                       (math.nan, "nan", ("amount", "[0, 1)")),
                       (0.99999999, "all", ("amount", f"at most {ONE_LEFT:.10g}"))):
    refuse(f"magnitude_prune_-amount-{_id}", hp.magnitude_prune_, _pruned(), _a, says=_says)
refuse("magnitude_prune_-scope", hp.magnitude_prune_, _pruned(), 0.6, scope="local",
       says=("scope", "layer", "global"))
refuse("magnitude_prune_-layer-unknown", hp.magnitude_prune_, _pruned(), 0.6, layers="fc9",
       says=("layers", "fc1"))
refuse("magnitude_prune_-layers-int", hp.magnitude_prune_, _pruned(), 0.6, layers=NOT_A_LIST,
       says=("layers", "fc1"))
refuse("magnitude_prune_-global-empties-fc1", hp.magnitude_prune_, _pruned(), 0.999,
       layers=("fc1", "fc2"), scope="global", says=("amount", "global", "at most"))
refuse("magnitude_prune-no-linear", hp.magnitude_prune, fresh(lambda: nn.Sequential(nn.ReLU())),
       0.5, layers=None, says=("model", "nn.Linear"))
refuse("magnitude_prune-not-a-model", hp.magnitude_prune, "net", 0.5,
       says=("model", "torch.nn.Module"))
correct("magnitude_prune_-0d-tensor-after-a-mask", hp.magnitude_prune_, _pruned(),
        torch.tensor(0.6), check=_sparsity_is("fc1", round(0.6 * FC1) / FC1))
correct("magnitude_prune-one-left", hp.magnitude_prune, fresh(lambda: mlp(8)), ONE_LEFT,
        check=_sparsity_is("fc1", ONE_LEFT))

refuse("neuron_prune_-all", hp.neuron_prune_, _pruned("neuron"), 0.99,
       says=("amount", "at most 0.875"))
refuse("neuron_prune_-norm3", hp.neuron_prune_, _pruned("neuron"), 0.25, norm=3,
       says=("norm", "1 or 2"))
refuse("neuron_prune_-norm-bool", hp.neuron_prune_, _pruned("neuron"), 0.25, norm=True,
       says=("norm", "1 or 2"))
refuse("neuron_prune_-output-layer", hp.neuron_prune_, _pruned("neuron"), 0.25, layer="fc2",
       says=("layer", "fc1"))
refuse("neuron_prune_-amount-bool", hp.neuron_prune_, _pruned("neuron"), False,
       says=("amount", "[0, 1)"))
refuse("neuron_prune-cnn", hp.neuron_prune, fresh(small_cnn), 0.5, says=("model", "MLP"))
correct("neuron_prune-one-left", hp.neuron_prune, fresh(lambda: mlp(8)), 0.875,
        check=lambda net: len(hp.alive_neurons(net)) == 1)

_TOP = mlp(8).fc1.weight.abs().max()  # float32
refuse("threshold_prune-above-every-weight", hp.threshold_prune, fresh(lambda: mlp(8)), 10.0,
       says=("threshold", "largest |w|"))
refuse("threshold_prune-negative", hp.threshold_prune, fresh(lambda: mlp(8)), -0.1,
       says=("threshold", "[0, inf)"))
refuse("threshold_prune-nan", hp.threshold_prune, fresh(lambda: mlp(8)), math.nan,
       says=("threshold", "[0, inf)"))
refuse("threshold_prune-string", hp.threshold_prune, fresh(lambda: mlp(8)), "0.01",
       says=("threshold", "[0, inf)"))
correct("threshold_prune-one-left", hp.threshold_prune, fresh(lambda: mlp(8)),
        torch.nextafter(_TOP, torch.tensor(0.0)).item(), check=_sparsity_is("fc1", ONE_LEFT))
refuse("threshold_prune-rounds-to-the-largest", hp.threshold_prune, fresh(lambda: mlp(8)),
       math.nextafter(_TOP.item(), 0.0), says=("threshold", "largest |w|"))

refuse("sparsity-no-linear", hp.sparsity, fresh(lambda: nn.Sequential(nn.ReLU())),
       says=("model", "nn.Linear"))
refuse("sparsity-quantised", hp.sparsity, fresh(lambda: quantize_int8(mlp(8))),
       says=("model", "nn.Linear"))
refuse("alive_neurons-output-layer", hp.alive_neurons, fresh(lambda: mlp(8)), "fc2",
       says=("layer", "fc1"))
refuse("shrink-cnn", hp.shrink, fresh(small_cnn), says=("model", "MLP"))
refuse("shrink-output-layer", hp.shrink, fresh(lambda: mlp(8)), layer="fc2",
       says=("layer", "fc1"))
correct("shrink-after-double", _logits_kept, fresh(_doubled_neuron_pruned), check=bool)
correct("sparsity-after-double", hp.sparsity, fresh(lambda: _pruned()().double()),
        check=lambda s: s["fc1"] == round(0.5 * FC1) / FC1)
for _k in (0, 9, True):
    refuse(f"remove_neurons-keep-{_k}", hp.remove_neurons, fresh(lambda: mlp(8)), _k,
           says=("keep", "[1, 8]"))

for _kw, _says in (({"tolerance": -0.1}, ("tolerance", "[0, 1]")),
                   ({"tolerance": math.nan}, ("tolerance", "[0, 1]")),
                   ({"tolerance": True}, ("tolerance", "[0, 1]")),
                   ({"step": 0.0}, ("step", "(0, 1]")), ({"step": 1.5}, ("step", "(0, 1]")),
                   ({"step": 0.1, "min_step": 0.5}, ("min_step", "at most step")),
                   ({"val": (X,)}, ("val", "(X, y)")),
                   ({"val": (X, DATA.y_val[:3])}, ("val", "as many labels")),
                   ({"target": 1.0}, ("target", "[0, 1)")),
                   ({"target": 0.99999999}, ("target", f"at most {ONE_LEFT:.10g}")),
                   ({"finetune_epochs": -1}, ("finetune_epochs", "[0, inf]")),
                   ({"lr": 0.0}, ("lr", "(0, inf)"))):
    _name = "-".join(f"{k}={v!r}"[:20] for k, v in _kw.items())
    refuse(f"iterative_prune-{_name}", hp.iterative_prune, fresh(lambda: mlp(8)), DATA,
           **{"target": 0.5, **_kw}, says=_says)
refuse("iterative_prune-data", hp.iterative_prune, fresh(lambda: mlp(8)), "data", target=0.5,
       says=("data", "Dataset"))

_CUBIC = {"initial": 0.0, "final": 0.9, "t0": 1, "n": 4}
for _kw, _says in (({"initial": 0.5, "final": 0.2}, ("final", "at least initial")),
                   ({"n": 0}, ("n", "[1, inf]")), ({"dt": 0}, ("dt", "[1, inf]")),
                   ({"initial": math.nan}, ("initial", "[0, 1)")),
                   ({"t0": True}, ("t0", "[0, inf]"))):
    refuse(f"cubic_sparsity-{'-'.join(_kw)}", hp.cubic_sparsity, 3, **{**_CUBIC, **_kw},
           says=_says)
refuse("cubic_sparsity-t-bool", hp.cubic_sparsity, True, **_CUBIC, says=("t", "[0, inf]"))
correct("cubic_sparsity-flat", hp.cubic_sparsity, 3, initial=0.3, final=0.3, t0=1, n=4,
        check=lambda s: s == 0.3)
correct("cubic_sparsity-at-the-end", hp.cubic_sparsity, 5, **_CUBIC, check=lambda s: s == 0.9)

_SCHEDULE = ("start_epoch", "prune_epochs", "epochs")
for _kw in ({"epochs": 1}, {"start_epoch": 5, "epochs": 3}, {"prune_epochs": 10, "epochs": 3}):
    refuse(f"gradual_prune-{'-'.join(f'{k}{v}' for k, v in _kw.items())}", hp.gradual_prune,
           fresh(lambda: mlp(8)), DATA, final=0.9, **_kw, says=_SCHEDULE)
refuse("gradual_prune-initial-above-final", hp.gradual_prune, fresh(lambda: mlp(8)), DATA,
       final=0.2, initial=0.5, epochs=3, says=("final", "at least initial"))
refuse("gradual_prune-final-all", hp.gradual_prune, fresh(lambda: mlp(8)), DATA,
       final=0.99999999, epochs=3, says=("final", f"at most {ONE_LEFT:.10g}"))
refuse("gradual_prune-data", hp.gradual_prune, fresh(lambda: mlp(8)), None, final=0.5, epochs=3,
       says=("data", "Dataset"))
correct("gradual_prune-one-epoch-reaches-final", lambda *a, **k: hp.gradual_prune(*a, **k)[1],
        fresh(lambda: mlp(8)), DATA, final=0.5, epochs=1, start_epoch=0,
        check=lambda h: h[-1]["sparsity"] == 0.5)

refuse("soft_filter_prune-all", hp.soft_filter_prune, fresh(lambda: mlp(8)), DATA, amount=0.99,
       epochs=1, says=("amount", "at most 0.875"))
refuse("soft_filter_prune-cnn", hp.soft_filter_prune, fresh(small_cnn), DATA, amount=0.5,
       epochs=1, says=("model", "MLP"))
refuse("soft_filter_prune-every0", hp.soft_filter_prune, fresh(lambda: mlp(8)), DATA,
       amount=0.5, epochs=1, every=0, says=("every", "[1, inf]"))
refuse("soft_filter_prune-epochs0", hp.soft_filter_prune, fresh(lambda: mlp(8)), DATA,
       amount=0.5, epochs=0, says=("epochs", "[1, inf]"))

for _a, _id in ((0.5, "scalar"), ([], "empty"), ("0.5", "string"), (torch.tensor(0.5), "0d")):
    refuse(f"sensitivity_scan-amounts-{_id}", hp.sensitivity_scan, fresh(lambda: mlp(8)), DATA,
           _a, says=("amounts", "[0, 1)"))
refuse("sensitivity_scan-amount-one", hp.sensitivity_scan, fresh(lambda: mlp(8)), DATA,
       [0.5, 1.0], says=("amount", "[0, 1)"))
correct("sensitivity_scan-0d-tensor-items", hp.sensitivity_scan, fresh(lambda: mlp(8)), DATA,
        [torch.tensor(0.0), 0.5], check=lambda s: list(s) == ["fc1", "fc2"]
        and all(len(v) == 2 for v in s.values()))

refuse("rewind-deeper-init", hp.rewind, _pruned(), fresh(lambda: mlp([8, 8])),
       says=("init", "same architecture"))
refuse("rewind-cnn-init", hp.rewind, _pruned(), fresh(small_cnn),
       says=("init", "same architecture"))
refuse("rewind-narrower-init", hp.rewind, _pruned(), fresh(lambda: mlp(4)),
       says=("init", "same architecture"))
refuse("rewind-init-not-a-model", hp.rewind, _pruned(), "init",
       says=("init", "torch.nn.Module"))
correct("rewind-to-a-pruned-init", hp.rewind, _pruned(), _pruned("neuron"),
        check=lambda t: torch.equal(t.fc1.weight_orig, hp.neuron_prune_(mlp(8), 0.5).fc1.weight))


# --- experiments, plots, widgets and compare -----------------------------------------

LAM_ROWS = [{"lam": lam, "accuracy": 0.9, "near_zero": 0.1, "weights": torch.ones(4, 3)}
            for lam in (1e-4, 1e-3)]
GRID_ROWS = [{"T": T, "alpha": a, "val_loss": 0.5 + T / 10 + a, "val_accuracy": 0.9,
              "test_accuracy": 0.9, "history": [{"epoch": 1, "val_accuracy": 0.9}]}
             for T in (1.0, 4.0) for a in (0.5, 0.9)]
AMOUNT_ROW = {"amount": 0.5, "accuracy": 0.8, "accuracy_finetuned": 0.85,
              "surviving": torch.ones(3)}
TABLE_ROWS = [{"model": "a", "accuracy_mean": 0.9, "accuracy_std": 0.01, "sparse_kb": 0.0},
              {"model": "b", "accuracy_mean": 0.8, "accuracy_std": 0.01, "sparse_kb": 2.0}]

for _v, _id, _says in ((math.inf, "inf", ("lam", "finite")), (math.nan, "nan", ("lam", "finite")),
                       ("1e-4", "string", ("lam", "finite"))):
    refuse(f"nearest_row-{_id}", ex.nearest_row, LAM_ROWS, "lam", _v, says=_says)
refuse("nearest_row-log-zero", ex.nearest_row, LAM_ROWS, "lam", 0.0, log=True,
       says=("lam", "> 0"))
refuse("nearest_row-log-row-zero", ex.nearest_row, [{"lam": 0.0}, {"lam": 1e-3}], "lam", 1e-4,
       log=True, says=("lam", "> 0"))
refuse("nearest_row-row-nan", ex.nearest_row, [{"lam": math.nan}, {"lam": 1e-3}], "lam", 1e-4,
       says=("lam", "finite"))
refuse("nearest_row-empty", ex.nearest_row, [], "lam", 1e-4, says=("rows", "at least one"))
refuse("nearest_row-key-missing", ex.nearest_row, LAM_ROWS, "T", 1.0, says=("rows", "'T'"))
correct("nearest_row-log", ex.nearest_row, LAM_ROWS, "lam", 3e-4, log=True,
        check=lambda r: r["lam"] == 1e-4)

refuse("choose_T_alpha-nan", ex.choose_T_alpha,
       [{**GRID_ROWS[0], "val_loss": math.nan}, *GRID_ROWS[1:]], says=("val_loss", "finite"))
refuse("choose_T_alpha-empty", ex.choose_T_alpha, [], says=("rows", "at least one"))
refuse("choose_T_alpha-no-val_loss", ex.choose_T_alpha, [{"T": 1.0, "alpha": 0.5}],
       says=("rows", "val_loss"))
correct("choose_T_alpha", ex.choose_T_alpha, GRID_ROWS, check=lambda r: r == (1.0, 0.5))

for _lams, _id, _says in (([], "empty", ("lams", "at least one")), (0.5, "scalar", ("lams",)),
                          ([0.0], "zero", ("lams", "(0, inf)")),
                          ([1e-4, -1.0], "negative", ("lams", "(0, inf)"))):
    refuse(f"regularisation_sweep-{_id}", ex.regularisation_sweep, DATA, "l1", _lams, says=_says)
refuse("regularisation_sweep-penalty", ex.regularisation_sweep, DATA, "l3", [1e-4],
       says=("penalty", "l1"))
refuse("regularised_model-nan", ex.regularised_model, DATA, "l1", math.nan,
       says=("lam", "[0, inf)"))
for _a, _id, _says in (([], "empty", ("amounts", "at least one")), (0.5, "scalar", ("amounts",)),
                       ([0.5, 1.0], "one", ("amount", "[0, 1)"))):
    refuse(f"amount_sweep-{_id}", ex.amount_sweep, fresh(lambda: mlp(8)), DATA, _a, says=_says)
refuse("amount_point-finetune0", ex.amount_point, fresh(lambda: mlp(8)), DATA, 0.5,
       finetune_epochs=0, says=("finetune_epochs", "[1, inf]"))
refuse("amount_point-lr0", ex.amount_point, fresh(lambda: mlp(8)), DATA, 0.5, lr=0.0,
       says=("lr", "(0, inf)"))
refuse("amount_point-data", ex.amount_point, fresh(lambda: mlp(8)), "data", 0.5,
       says=("data", "Dataset"))
refuse("distillation_grid-scalar-T", ex.distillation_grid, DATA, 4.0, [0.5],
       says=("temperatures",))
refuse("distillation_grid-no-T", ex.distillation_grid, DATA, [], [0.5],
       says=("temperatures", "at least one"))
refuse("distillation_grid-alpha", ex.distillation_grid, DATA, [4.0], [1.5],
       says=("alpha", "[0, 1]"))
refuse("train_students-empty", ex.train_students, DATA, [], says=("specs", "at least one"))
refuse("train_students-pair", ex.train_students, DATA, [(4.0, 0.5)], says=("specs", "triples"))
refuse("train_students-T0", ex.train_students, DATA, [(0.0, 0.5, 0)], says=("T", "(0, 100]"))
refuse("train_students-T-huge", ex.train_students, DATA, [(1e3, 0.5, 0)], says=("T", "(0, 100]"))
refuse("get_student-T-huge", ex.get_student, DATA, T=1e3, says=("T", "(0, 100]"))
refuse("distillation_grid-T-huge", ex.distillation_grid, DATA, [4.0, 1e3], [0.5],
       says=("temperatures", "(0, 100]"))
for _s, _id in ((5, "int"), ([-1], "negative"), ([], "empty"), ("01", "string"),
                ([True], "bool")):
    refuse(f"baseline_runs-seeds-{_id}", ex.baseline_runs, DATA, seeds=_s, says=("seeds",))
refuse("get_baselines-seeds-float", ex.get_baselines, DATA, seeds=[0.5], says=("seeds",))
refuse("unstructured_runs-amount1", ex.unstructured_runs, DATA, amount=1.0,
       says=("amount", "[0, 1)"))
refuse("unstructured_runs-all", ex.unstructured_runs, DATA, amount=0.99999999,
       says=("amount", "at most"))
refuse("structured_runs-keep0", ex.structured_runs, DATA, keep=0, says=("keep", "[1, 128]"))
refuse("structured_runs-keep129", ex.structured_runs, DATA, keep=129, says=("keep", "[1, 128]"))
refuse("choose_l1_threshold-no-lams", ex.choose_l1_threshold, DATA, lams=[],
       says=("lams", "at least one"))
refuse("choose_l1_threshold-tolerance", ex.choose_l1_threshold, DATA, tolerance=2.0,
       says=("tolerance", "[0, 1]"))
refuse("l1_vs_magnitude_runs-lam", ex.l1_vs_magnitude_runs, DATA, -1.0, 0.01,
       says=("lam", "[0, inf)"))
refuse("sfp_vs_hard_runs-seeds", ex.sfp_vs_hard_runs, DATA, seeds=[], says=("seeds",))
refuse("gradual_vs_oneshot_runs-seeds", ex.gradual_vs_oneshot_runs, DATA, seeds=0,
       says=("seeds",))
refuse("structured_kd_runs-T0", ex.structured_kd_runs, DATA, 0.0, 0.9, says=("T", "(0, 100]"))
refuse("omitted_digit_runs-alpha", ex.omitted_digit_runs, DATA, seeds=[0], alpha=2.0,
       says=("alpha", "[0, 1]"))
refuse("student_runs-seeds", ex.student_runs, DATA, 4.0, 0.9, seeds=0.5, says=("seeds",))
refuse("structured_kd_grid-no-T", ex.structured_kd_grid, DATA, temperatures=[],
       says=("temperatures", "at least one"))
refuse("sparsity_curves-cnn", ex.sparsity_curves, fresh(small_cnn), DATA, [0.5],
       says=("base", "MLP"))
refuse("sparsity_curves-no-amounts", ex.sparsity_curves, fresh(lambda: mlp(8)), DATA, [],
       says=("amounts", "at least one"))
refuse("sparsity_curves-threads0", ex.sparsity_curves, fresh(lambda: mlp(8)), DATA, [0.5],
       threads=0, says=("threads", "[1, inf]"))

refuse("regularisation_view-empty", plots.regularisation_view, [], 1e-4,
       says=("rows", "at least one"))
refuse("regularisation_view-lam0-row", plots.regularisation_view,
       [{**LAM_ROWS[0], "lam": 0.0}, LAM_ROWS[1]], 1e-4, says=("lam", "> 0"))
refuse("regularisation_view-lam-inf", plots.regularisation_view, LAM_ROWS, math.inf,
       says=("lam", "finite"))
refuse("regularisation_view-near_zero", plots.regularisation_view, LAM_ROWS, 1e-4,
       near_zero=-1.0, says=("near_zero", "[0, inf)"))
refuse("amount_view-empty", plots.amount_view, [], AMOUNT_ROW, says=("grid", "at least one"))
refuse("rollback_trace-empty", plots.rollback_trace, [], says=("trace", "at least one"))
refuse("rollback_trace-tolerance", plots.rollback_trace,
       [{"sparsity": 0.0, "accuracy": 0.9, "kept": True, "step": 0.0}], tolerance=2.0,
       says=("tolerance", "[0, 1]"))
refuse("sensitivity_curves-empty", plots.sensitivity_curves, [], {}, says=("amounts", "scan"))
refuse("sensitivity_curves-lengths", plots.sensitivity_curves, [0.1, 0.5], {"fc1": [0.9]},
       says=("scan", "one accuracy per amount"))
refuse("gradual_curves-empty", plots.gradual_curves, [], says=("history", "at least one"))
refuse("training_curves-empty", plots.training_curves, [], says=("history", "at least one"))
refuse("sfp_norms-empty", plots.sfp_norms, [], says=("history",))
refuse("soft_target_bars-shape", plots.soft_target_bars, torch.zeros(5), 2.0, DATA.classes,
       says=("logits", "(10,)"))
refuse("soft_target_bars-label", plots.soft_target_bars, torch.zeros(10), 2.0, DATA.classes,
       label=10, says=("label", "[0, 9]"))
refuse("soft_target_bars-T0", plots.soft_target_bars, torch.zeros(10), 0.0, DATA.classes,
       says=("T", "(0, inf)"))
refuse("distillation_grid_view-empty", plots.distillation_grid_view, [], 1.0, 0.5,
       says=("rows", "at least one"))
refuse("distillation_grid_view-off-grid", plots.distillation_grid_view, GRID_ROWS, 2.0, 0.5,
       says=("(T, alpha)", "grid point"))
refuse("distillation_sweeps-empty", plots.distillation_sweeps, [], says=("rows", "at least one"))
refuse("pareto-empty", plots.pareto, [], says=("rows", "at least one"))
refuse("pareto-log-zero", plots.pareto, TABLE_ROWS, says=("sparse_kb", "> 0", "log"))
refuse("pareto-x-missing", plots.pareto, TABLE_ROWS, x="macs", says=("x", "'macs'"))
refuse("structure_curves-empty", plots.structure_curves, [], says=("rows", "at least one"))
refuse("weight_histogram-empty", plots.weight_histogram, {}, says=("weights", "at least one"))
refuse("weight_histogram-empty-tensor", plots.weight_histogram, torch.zeros(0),
       says=("weights", "non-empty"))
refuse("weight_histogram-bins1", plots.weight_histogram, torch.ones(4), bins=1,
       says=("bins", "[2, 10000]"))
refuse("abs_weight_histogram-empty-tensor", plots.abs_weight_histogram, {"w": torch.zeros(0)},
       says=("weights", "non-empty"))
refuse("digit_grid-lengths", plots.digit_grid, X, DATA.y_val[:3], DATA.classes,
       says=("X", "y", "N labels"))
refuse("digit_grid-pixels", plots.digit_grid, torch.zeros(8, 10), DATA.y_val[:8],
       DATA.classes, says=("X", "28 x 28"))
refuse("digit_grid-no-classes", plots.digit_grid, X, DATA.y_val[:8], (),
       says=("classes", "at least one"))
refuse("digit_grid-per_class0", plots.digit_grid, X, DATA.y_val[:8], DATA.classes, per_class=0,
       says=("per_class", "[1, 30]"))

refuse("LambdaExplorer-empty", widgets.LambdaExplorer, {}, says=("sweeps", "l1"))
refuse("LambdaExplorer-penalty", widgets.LambdaExplorer, {"l3": LAM_ROWS}, says=("sweeps", "l1"))
refuse("LambdaExplorer-lam0", widgets.LambdaExplorer,
       {"l1": [{**LAM_ROWS[0], "lam": 0.0}, LAM_ROWS[1]]}, says=("lam", "> 0"))
refuse("AmountExplorer-no-grid", widgets.AmountExplorer, fresh(lambda: mlp(8)), DATA, [],
       says=("grid", "at least one"))
refuse("AmountExplorer-value", widgets.AmountExplorer, fresh(lambda: mlp(8)), DATA,
       [AMOUNT_ROW], value=1.5, says=("value", "[0, 0.99]"))
refuse("AmountExplorer-finetune0", widgets.AmountExplorer, fresh(lambda: mlp(8)), DATA,
       [AMOUNT_ROW], finetune_epochs=0, says=("finetune_epochs", "[1, inf]"))
refuse("AmountExplorer-cnn", widgets.AmountExplorer, fresh(lambda: nn.Sequential(nn.ReLU())),
       DATA, [AMOUNT_ROW], value=0.5, says=("model", "nn.Linear"))
for _kw, _says in (({"index": -1}, ("index", "[0, 23]")), ({"index": 24}, ("index", "[0, 23]")),
                   ({"T": 100.0}, ("T", "[0.5, 20]"))):
    refuse(f"TemperatureExplorer-{'-'.join(f'{k}{v}' for k, v in _kw.items())}",
           widgets.TemperatureExplorer, fresh(lambda: mlp(8)), DATA, **_kw, says=_says)
refuse("DistillationExplorer-empty", widgets.DistillationExplorer, [],
       says=("rows", "at least one"))
refuse("DistillationExplorer-T", widgets.DistillationExplorer, GRID_ROWS, T=2.0,
       says=("T", "[1.0, 4.0]"))

refuse("accuracy_columns-empty", compare.accuracy_columns, [], says=("accuracies", "at least one"))
refuse("accuracy_columns-nan", compare.accuracy_columns, [math.nan], says=("accuracies", "finite"))
refuse("format_table-empty", compare.format_table, [], says=("rows", "at least one"))
refuse("format_table-columns-string", compare.format_table, TABLE_ROWS, "model",
       says=("columns", "sequence"))
refuse("write_csv-empty", compare.write_csv, [], "unused.csv", says=("rows", "at least one"))
refuse("comparison-one-seed", compare.comparison, DATA, seeds=[0], says=("seeds", "at least 2"))
refuse("comparison-seeds-int", compare.comparison, DATA, seeds=5, says=("seeds",))
refuse("measure-threads0", compare.measure, "net", fresh(lambda: mlp(8)), threads=0,
       says=("threads", "[1, inf]"))
correct("accuracy_columns-one-run", compare.accuracy_columns, [0.9],
        check=lambda r: r["accuracy_mean"] == 0.9 and math.isnan(r["accuracy_std"]))


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
