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
