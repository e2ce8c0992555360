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


# --- distillation -----------------------------------------------------------------


# --- metrics ------------------------------------------------------------------------


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
