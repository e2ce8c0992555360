"""The grader of the notebooks' exercises.

Each exercise's test cell reloads this module (so that no earlier cell can
have replaced anything in it) and calls::

    grader = importlib.reload(importlib.import_module("helpers.exercises"))
    grader.exercise("params_and_bytes").check(params_and_bytes, model, what="...")

``check`` does four things, in this order:

1. It verifies that the kit and the parts of PyTorch and Python the test
   relies on are the originals (a function defined in a notebook cell and put
   in their place fails the test: "replaced in this notebook").
2. It runs the student's function while the kit's reference for the exercise
   (and whatever the exercise's text rules out, such as ``torch.softmax`` or
   autograd) is off limits: a call to one of them, under any name, fails the
   test with "write this one yourself".
3. It checks that the arguments are as they were (unless the exercise is to
   change them).
4. It compares the result with the reference's, with :func:`same`, and where
   the result matches a known mistake (a natural log where bits need log2, an
   L2 norm for an L1 norm) it names the mistake.

``same(got, want, what)`` is the comparison: numbers and tensors within
``atol + rtol * |want|``, NaN and infinities only where ``want`` has the same,
dtypes and shapes equal; it raises an ``AssertionError`` that says what
differs (the type, dtype, shape, which element and by how much).

What the grader does not defend against: a student who rewrites Python's
import system, or writes a file into the kit's or PyTorch's own directories.
Code that runs in the grading kernel can always do that; read any submission
whose full marks look odd.
"""
from __future__ import annotations

import ast
import copy
import importlib
import math
import os
import sys
import sysconfig
import threading
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------
# same: the comparison
# --------------------------------------------------------------------------

_INTEGER_DTYPES = {torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64}


def _integer(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _real(x) -> bool:
    return _integer(x) or isinstance(x, (float, np.floating))


def _check_tolerance(name: str, value) -> float:
    if isinstance(value, (bool, np.bool_)) or not _real(value) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def same(got, want, what: str = "the result", *, atol: float = 0.0, rtol: float = 0.0) -> None:
    """Raise ``AssertionError`` unless ``got`` equals ``want``.

    * Tensors and arrays: the same shape and dtype; each element within
      ``atol + rtol * |want|``; a NaN or an infinity matches only the same
      value in the same place; complex numbers by the size of the difference;
      integers exactly (no lossy cast to float). The message names the element
      that is furthest off and how many differ.
    * Numbers: an integer is expected where ``want`` is one (a float count is
      wrong), a real number where ``want`` is a float (an int is accepted),
      with the same rules for NaN and infinities; a one-element tensor counts
      as a number.
    * Tuples, lists and dicts item by item, each named in the message
      (``what[1]``, ``what['fc1']``); anything else by ``==``.

    ``atol`` and ``rtol`` must be finite and >= 0 (else ``ValueError``).
    """
    atol = _check_tolerance("atol", atol)
    rtol = _check_tolerance("rtol", rtol)
    _same(got, want, what, atol, rtol)


def _same(got, want, what, atol, rtol) -> None:
    if isinstance(want, (torch.Tensor, np.ndarray)):
        _same_array(got, want, what, atol, rtol)
    elif isinstance(want, Mapping):
        if not isinstance(got, Mapping):
            raise AssertionError(f"{what} should be a dict, got {type(got).__name__}")
        if set(got) != set(want):
            raise AssertionError(f"{what} should have the keys {sorted(want, key=repr)}, "
                                 f"got {sorted(got, key=repr)}")
        for k in want:
            _same(got[k], want[k], f"{what}[{k!r}]", atol, rtol)
    elif isinstance(want, Sequence) and not isinstance(want, (str, bytes)):
        if not isinstance(got, Sequence) or isinstance(got, (str, bytes)):
            raise AssertionError(f"{what} should be a {type(want).__name__} of {len(want)}, "
                                 f"got {type(got).__name__}")
        if len(got) != len(want):
            raise AssertionError(f"{what} should have {len(want)} items, got {len(got)}")
        for i, (g, w) in enumerate(zip(got, want)):
            _same(g, w, f"{what}[{i}]", atol, rtol)
    elif isinstance(want, (bool, np.bool_)):
        if not isinstance(got, (bool, np.bool_)) or bool(got) != bool(want):
            raise AssertionError(f"{what} is {got!r}, expected {bool(want)!r}")
    elif _real(want) or isinstance(want, complex):
        _same_number(got, want, what, atol, rtol)
    elif got != want:
        raise AssertionError(f"{what} is {got!r}, expected {want!r}")


def _same_number(got, want, what, atol, rtol) -> None:
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    elif isinstance(got, np.ndarray) and got.size == 1:
        got = got.item()
    if _integer(want):
        if not _integer(got):
            raise AssertionError(f"{what} should be an integer, got {type(got).__name__} {got!r}")
        got, want = int(got), int(want)
        if abs(got - want) > atol + rtol * abs(want):
            raise AssertionError(f"{what} is {got!r}, expected {want!r} (off by {got - want:+})")
        return
    if isinstance(want, complex):
        if not (_real(got) or isinstance(got, complex)):
            raise AssertionError(f"{what} should be a number, got {type(got).__name__} {got!r}")
        got, want = complex(got), complex(want)
        ok = _same_special(got.real, want.real) and _same_special(got.imag, want.imag)
        finite = all(math.isfinite(v) for v in (got.real, got.imag, want.real, want.imag))
        if ok and (not finite or abs(got - want) <= atol + rtol * abs(want)):
            return
        raise AssertionError(f"{what} is {got!r}, expected {want!r}")
    if not _real(got):
        raise AssertionError(f"{what} should be a number, got {type(got).__name__} {got!r}")
    got, want = float(got), float(want)
    if math.isfinite(got) and math.isfinite(want):
        if abs(got - want) <= atol + rtol * abs(want):
            return
        raise AssertionError(f"{what} is {got!r}, expected {want!r} "
                             f"(off by {got - want:+.3g}; allowed {atol + rtol * abs(want):.3g})")
    if not _same_special(got, want):
        raise AssertionError(f"{what} is {got!r}, expected {want!r}")


def _same_special(got: float, want: float) -> bool:
    """NaN matches NaN, an infinity the same infinity; finite values pass here."""
    if math.isnan(want) or math.isnan(got):
        return math.isnan(want) and math.isnan(got)
    if math.isinf(want) or math.isinf(got):
        return got == want
    return True


def _same_array(got, want, what, atol, rtol) -> None:
    if not isinstance(got, (torch.Tensor, np.ndarray)):
        raise AssertionError(f"{what} should be a {type(want).__name__}, got {type(got).__name__}")
    g = torch.as_tensor(got).detach().cpu()
    w = torch.as_tensor(want).detach().cpu()
    if tuple(g.shape) != tuple(w.shape):
        raise AssertionError(f"{what} has shape {tuple(g.shape)}, expected {tuple(w.shape)}")
    if g.dtype != w.dtype:
        raise AssertionError(f"{what} has dtype {g.dtype}, expected {w.dtype}")
    if w.numel() == 0:
        return
    if w.dtype == torch.bool:
        bad = g != w
        excess = bad.double()
    elif w.dtype in _INTEGER_DTYPES:
        excess = _integer_excess(g, w, atol, rtol)
        bad = excess > 0
    else:
        excess = _float_excess(g, w, atol, rtol)
        bad = excess > 0
    if bool(bad.any()):
        worst = excess.max()
        at = tuple(torch.nonzero(excess == worst)[0].tolist())
        n_bad = int(bad.sum())
        gv, wv = g[at].item(), w[at].item()
        count = f"{n_bad} of {w.numel()} elements differ"
        if isinstance(gv, float) and math.isfinite(gv) and math.isfinite(wv):
            detail = f" (off by {gv - wv:+.3g}; {count})"
        elif isinstance(gv, int) and not isinstance(gv, bool):
            detail = f" (off by {gv - wv:+}; {count})"
        else:
            detail = f" ({count})"
        raise AssertionError(f"{what}{list(at)} is {_show(gv)}, expected {_show(wv)}{detail}")


def _show(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _integer_excess(g: torch.Tensor, w: torch.Tensor, atol, rtol) -> torch.Tensor:
    """How far past the tolerance each element is (0 where it is within), exact
    for int64 (the few elements that differ are compared as Python integers)."""
    excess = torch.zeros(w.shape, dtype=torch.float64)
    differ = torch.nonzero(g != w)
    for index in differ.tolist():
        a, b = int(g[tuple(index)]), int(w[tuple(index)])
        over = abs(a - b) - (atol + rtol * abs(b))
        if over > 0:
            excess[tuple(index)] = max(float(over), 1e-300)
    return excess


def _float_excess(g: torch.Tensor, w: torch.Tensor, atol, rtol) -> torch.Tensor:
    if w.is_complex() or g.is_complex():
        gc, wc = g.to(torch.complex128), w.to(torch.complex128)
        parts_g, parts_w = torch.view_as_real(gc), torch.view_as_real(wc)
        special_ok = _special_ok(parts_g, parts_w).all(dim=-1)
        finite = torch.isfinite(parts_g).all(dim=-1) & torch.isfinite(parts_w).all(dim=-1)
        diff = (gc - wc).abs()
        scale = wc.abs()
    else:
        gd, wd = g.double(), w.double()
        special_ok = _special_ok(gd, wd)
        finite = torch.isfinite(gd) & torch.isfinite(wd)
        diff = (gd - wd).abs()
        scale = wd.abs()
    allowed = atol + rtol * torch.where(finite, scale, torch.zeros_like(scale))
    excess = torch.where(finite, diff - allowed, torch.zeros_like(diff))
    excess = torch.where(special_ok, excess.clamp_min(0), torch.full_like(excess, math.inf))
    return excess


def _special_ok(g: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Elementwise: NaN only against NaN, an infinity only against the same one."""
    nan_ok = torch.isnan(g) == torch.isnan(w)
    inf_g, inf_w = torch.isinf(g), torch.isinf(w)
    inf_ok = (inf_g == inf_w) & (~inf_w | (g == w))
    return nan_ok & inf_ok


# --------------------------------------------------------------------------
# The kit is intact: nothing the grader relies on was replaced by a cell
# --------------------------------------------------------------------------

_KIT_DIR = os.path.dirname(os.path.abspath(__file__))
_TRUSTED_DIRS = tuple(sorted({os.path.realpath(p) for p in (
    _KIT_DIR, sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"],
    sysconfig.get_paths()["platlib"], os.path.dirname(os.path.dirname(torch.__file__)),
    os.path.dirname(os.path.dirname(np.__file__)))}))
# The modules and classes whose functions the tests and the references call.
_GUARDED = ("builtins", "math", "copy", "sys", "importlib", "threading", "torch",
            "torch.nn.functional", "torch.nn.utils.prune", "torch.optim", "torch.autograd",
            "numpy")
_GUARDED_CLASSES = (torch.Tensor, nn.Module, nn.Linear, nn.Sequential)


def _trusted_code(code: types.CodeType) -> bool:
    path = code.co_filename
    if path.startswith("<frozen "):  # the standard library's frozen modules
        return True
    if not os.path.isabs(path):
        return False
    path = os.path.realpath(path)
    return any(path == d or path.startswith(d + os.sep) for d in _TRUSTED_DIRS)


def _foreign(value) -> bool:
    """A Python function (or method) whose code was not loaded from the kit,
    PyTorch, NumPy or the standard library: one written in a notebook cell."""
    if isinstance(value, (types.MethodType, staticmethod, classmethod)):
        value = value.__func__
    return isinstance(value, types.FunctionType) and not _trusted_code(value.__code__)


_DEFINITIONS: dict[str, list[str]] = {}


def _kit_definitions(path: str) -> list[str]:
    """The names a kit module's source defines at top level with def or class."""
    if path not in _DEFINITIONS:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
        _DEFINITIONS[path] = [n.name for n in tree.body if isinstance(
            n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    return _DEFINITIONS[path]


def replaced() -> list[str]:
    """What a notebook cell has put in place of the kit's, PyTorch's or
    Python's own functions (as dotted names); empty when nothing was."""
    found = []
    for name in sorted(sys.modules):
        module = sys.modules[name]
        kit = name == "helpers" or name.startswith("helpers.")
        if not (kit or name in _GUARDED):
            continue
        if not isinstance(module, types.ModuleType):
            found.append(name)
            continue
        if kit:
            path = getattr(module, "__file__", None)
            if not path or not os.path.realpath(path).startswith(os.path.realpath(_KIT_DIR)):
                found.append(name)
                continue
            if name == "helpers":
                for attr in getattr(module, "__all__", ()):
                    if getattr(module, attr, None) is not sys.modules.get(f"helpers.{attr}"):
                        found.append(f"helpers.{attr}")
            else:
                for attr in _kit_definitions(path):
                    value = module.__dict__.get(attr)
                    if getattr(value, "__module__", None) != name \
                            or getattr(value, "__qualname__", None) != attr or _foreign(value):
                        found.append(f"{name}.{attr}")
        for attr, value in list(vars(module).items()):
            if _foreign(value):
                found.append(f"{name}.{attr}")
    for cls in _GUARDED_CLASSES:
        for attr, value in list(vars(cls).items()):
            if _foreign(value) or _foreign(getattr(value, "fget", None)):
                found.append(f"{cls.__module__}.{cls.__qualname__}.{attr}")
    return found


def _require_intact() -> None:
    found = replaced()
    if found:
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise AssertionError(
            f"{shown} {'was' if len(found) == 1 else 'were'} replaced in this notebook; the test "
            "needs the originals. Take that code out, restart the kernel and run the notebook "
            "again from the top")


# --------------------------------------------------------------------------
# Off limits: what the student's function may not call while it runs
# --------------------------------------------------------------------------

def _resolve(dotted: str):
    """The object at a dotted name; None for a name of PyTorch's that this
    version lacks (the rule cannot be broken through it)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            break
        return obj
    if parts[0] == "torch":
        return None
    raise ValueError(f"off_limits: {dotted!r} names nothing")


def _codes_and_builtins(obj) -> tuple[set, set]:
    """The code objects that running ``obj`` executes first (for a class, its
    own methods), and the names of the C functions it is (for builtins)."""
    codes, names = set(), set()
    todo = [obj]
    while todo:
        item = todo.pop()
        item = getattr(item, "__wrapped__", item)
        if item is None:
            continue
        if isinstance(item, type):
            for value in vars(item).values():
                if isinstance(value, (staticmethod, classmethod)):
                    value = value.__func__
                if isinstance(value, property):
                    value = value.fget
                if isinstance(value, types.FunctionType):
                    todo.append(value)
        elif isinstance(item, (staticmethod, classmethod, types.MethodType)):
            todo.append(item.__func__)
        elif isinstance(getattr(item, "__code__", None), types.CodeType):
            codes.add(item.__code__)
        elif callable(item) and getattr(item, "__name__", None):
            names.add(item.__name__)
    return codes, names


def _torch_owned(c_function) -> bool:
    owner = getattr(c_function, "__self__", None)
    for thing in (c_function, owner, type(owner)):
        module = getattr(thing, "__module__", None) or getattr(thing, "__name__", "")
        if isinstance(module, str) and module.split(".")[0] == "torch":
            return True
    return owner is None


class _Watch:
    """Records the first call of an off-limits function while it is set."""

    def __init__(self, off_limits: Mapping[str, str]):
        self.codes, self.c_names = {}, {}
        for dotted, why in off_limits.items():
            codes, names = _codes_and_builtins(_resolve(dotted))
            for code in codes:
                self.codes.setdefault(code, (dotted, why))
            for name in names:
                self.c_names.setdefault(name, (dotted, why))
        self.hit = None

    def __call__(self, frame, event, arg):
        if self.hit is not None:
            return
        if event == "call":
            self.hit = self.codes.get(frame.f_code)
        elif event == "c_call":
            found = self.c_names.get(getattr(arg, "__name__", None))
            if found is not None and _torch_owned(arg):
                self.hit = found

    def run(self, fn, args, kwargs):
        setprofile, getprofile, thread_setprofile = sys.setprofile, sys.getprofile, \
            threading.setprofile
        previous = getprofile()
        thread_setprofile(self)
        setprofile(self)
        try:
            result = fn(*args, **kwargs)
            still = getprofile() is self
        finally:
            setprofile(previous)
            thread_setprofile(None)
        if not still and self.hit is None:
            raise AssertionError(f"{_name(fn)} switched off the test's watch (sys.setprofile): "
                                 "leave it alone")
        return result


def _name(fn) -> str:
    return getattr(fn, "__name__", "your function")


def call(fn: Callable, *args, off_limits: Mapping[str, str] | Sequence[str] = (), **kwargs):
    """``fn(*args, **kwargs)``, while the functions named in ``off_limits``
    (dotted names, or a mapping of them to the reason) may not be called:
    calling one, under any name or through any alias, raises an
    ``AssertionError`` that names it once ``fn`` returns."""
    if not isinstance(off_limits, Mapping):
        off_limits = {name: "the exercise asks you to write it yourself" for name in off_limits}
    watch = _Watch(off_limits)
    error = None
    try:
        result = watch.run(fn, args, kwargs)
    except Exception as raised:  # the student's own error, unless an off-limits call came first
        if watch.hit is None:
            raise
        error = raised
    if watch.hit is not None:
        dotted, why = watch.hit
        raise AssertionError(f"write this one yourself: {_name(fn)} calls {dotted}, and {why}") \
            from error
    return result


# --------------------------------------------------------------------------
# Arguments unchanged
# --------------------------------------------------------------------------

def _snapshot(value):
    if isinstance(value, torch.Tensor):
        return ("tensor", value.detach().clone())
    if isinstance(value, nn.Module):
        return ("module", {k: v.detach().clone() for k, v in value.state_dict().items()},
                [(n, m.training) for n, m in value.named_modules()],
                sorted(n for n, _ in value.named_parameters()))
    if isinstance(value, Mapping):
        return ("dict", {k: _snapshot(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return ("list", [_snapshot(v) for v in value])
    try:
        return ("value", copy.deepcopy(value))
    except Exception:  # noqa: BLE001 (an object that cannot be copied is not compared)
        return ("opaque", None)


def _differs(before, value) -> str | None:
    kind = before[0]
    if kind == "tensor":
        if not isinstance(value, torch.Tensor) or value.shape != before[1].shape \
                or value.dtype != before[1].dtype or not _equal(value.detach(), before[1]):
            return "its values"
    elif kind == "module":
        _, state, modes, params = before
        now = value.state_dict()
        if set(now) != set(state) or any(not _equal(now[k].detach(), v) for k, v in state.items()):
            return "its weights"
        if sorted(n for n, _ in value.named_parameters()) != params:
            return "its parameters"
        changed = [(n or "the model", mode) for (n, mode), (_, m) in
                   zip(modes, value.named_modules()) if m.training != mode]
        if changed:
            name, mode = changed[0]
            return (f"the mode of {name} (it was in {'training' if mode else 'evaluation'} mode, "
                    f"it is now in {'evaluation' if mode else 'training'} mode)")
    elif kind == "dict":
        if set(value) != set(before[1]):
            return "its keys"
        for k, b in before[1].items():
            why = _differs(b, value[k])
            if why:
                return f"{why} at [{k!r}]"
    elif kind == "list":
        if len(value) != len(before[1]):
            return "its length"
        for i, (b, v) in enumerate(zip(before[1], value)):
            why = _differs(b, v)
            if why:
                return f"{why} at [{i}]"
    elif kind == "value":
        was = before[1]
        if isinstance(was, float) and isinstance(value, float) and math.isnan(was) \
                and math.isnan(value):
            return None
        try:
            if value != was:
                return "its value"
        except Exception:  # noqa: BLE001
            return None
    return None


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all()) \
        if a.is_floating_point() else torch.equal(a, b)


# --------------------------------------------------------------------------
# The exercises
# --------------------------------------------------------------------------

REFERENCE = "the test compares your result with it"


@dataclass(frozen=True)
class Exercise:
    """One exercise: the reference the student's function is compared with,
    what is off limits while it runs, the tolerances and the known mistakes.

    ``observe(run, *args)``, where given, turns a function into what is
    compared: it gets ``run`` (the student's function under watch, or the
    reference) and the test's arguments. ``mistakes`` are pairs of (what the
    mistake is, a function that makes it): a result that matches one is
    named in the message."""

    name: str
    reference: Callable
    off_limits: Mapping[str, str]
    atol: float = 0.0
    rtol: float = 0.0
    changes_arguments: bool = False
    observe: Callable | None = None
    mistakes: tuple = field(default_factory=tuple)

    def check(self, fn: Callable, *args, what: str | None = None) -> None:
        """Run the student's ``fn(*args)`` under the rules and compare its result
        with the reference's; raise ``AssertionError`` saying what is wrong."""
        same_, call_, require_intact = same, call, _require_intact  # held before fn runs
        what = what or f"{self.name}(...)"
        require_intact()
        if not callable(fn):
            raise AssertionError(f"{self.name} should be a function, got {type(fn).__name__}")
        before = None if self.changes_arguments else [_snapshot(a) for a in args]

        def run(*a):
            return call_(fn, *a, off_limits=self.off_limits)

        got = self.observe(run, *args) if self.observe else run(*args)
        require_intact()
        if before is not None:
            for i, (b, a) in enumerate(zip(before, args)):
                why = _differs(b, a)
                if why:
                    raise AssertionError(f"{what} changed {why} of its argument {i + 1} "
                                         f"({type(a).__name__}); it must leave it as it was")
        want = self.observe(self.reference, *args) if self.observe else self.reference(*args)
        try:
            same_(got, want, what, atol=self.atol, rtol=self.rtol)
        except AssertionError as wrong:
            for mistake, make in self.mistakes:
                try:
                    mistaken = self.observe(make, *args) if self.observe else make(*args)
                    same_(got, mistaken, what, atol=self.atol, rtol=self.rtol)
                except Exception:  # noqa: BLE001 (not this mistake)
                    continue
                raise AssertionError(f"{wrong}. It looks like {mistake}") from None
            raise


def exercise(name: str) -> Exercise:
    """The exercise called ``name`` (the function the student writes)."""
    if name not in EXERCISES:
        raise ValueError(f"name must be one of {sorted(EXERCISES)}, got {name!r}")
    return EXERCISES[name]()


def _kit():
    return importlib.import_module("helpers")


AUTOGRAD = {
    "torch.autograd.grad": "the exercise asks for the formula, not autograd",
    "torch.autograd.backward": "the exercise asks for the formula, not autograd",
    "torch.Tensor.backward": "the exercise asks for the formula, not autograd",
    "torch.autograd.Variable._execution_engine.run_backward":
        "the exercise asks for the formula, not autograd",
    "torch.func.grad": "the exercise asks for the formula, not autograd",
    "torch.func.vjp": "the exercise asks for the formula, not autograd",
}
SOFTMAX = {name: "the exercise asks for torch.exp, not a ready-made softmax" for name in (
    "torch.softmax", "torch.Tensor.softmax", "torch.nn.functional.softmax",
    "torch.log_softmax", "torch.Tensor.log_softmax", "torch.nn.functional.log_softmax",
    "torch._softmax", "torch.special.softmax", "torch.special.log_softmax",
    "torch.nn.Softmax", "torch.nn.LogSoftmax",
    "torch.distributions.Categorical")}
PRUNE = {f"torch.nn.utils.prune.{name}": REFERENCE for name in (
    "BasePruningMethod", "PruningContainer", "global_unstructured", "l1_unstructured",
    "ln_structured", "random_unstructured", "random_structured", "identity",
    "custom_from_mask", "remove")}


# 00 · parameters and bytes, accuracy ------------------------------------------

def _params_and_bytes(model):
    params = _kit().metrics.count_parameters(model)["total"]
    return params, sum(p.numel() * p.element_size() for p in model.parameters())


def _ex_params_and_bytes():
    def weights_only(model):
        n = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
        return n, 4 * n

    def bytes_as_params(model):
        n = _params_and_bytes(model)[0]
        return n, n

    return Exercise("params_and_bytes", _params_and_bytes,
                    {"helpers.metrics.count_parameters": REFERENCE,
                     "helpers.metrics.state_dict_bytes": REFERENCE,
                     "helpers.metrics.serialize": REFERENCE,
                     "helpers.metrics.file_sizes": REFERENCE},
                    mistakes=(("the biases were left out", weights_only),
                              ("the bytes are the number of parameters: a float32 takes 4 bytes",
                               bytes_as_params)))


def _accuracy(model, X, y, batch_size=100):
    return _kit().training.evaluate(model, X, y, batch_size=batch_size)["accuracy"]


def _ex_accuracy():
    def full_batches_only(model, X, y, batch_size=100):
        n = len(X) // batch_size * batch_size
        return _accuracy(model, X[:n], y[:n], batch_size) if n else 0.0

    return Exercise("accuracy", _accuracy,
                    {"helpers.training.evaluate": REFERENCE,
                     "helpers.training.logits_of": REFERENCE,
                     "helpers.distillation.class_recall": REFERENCE},
                    atol=1e-6,  # a float32 mean is fine; one sample in 10,000 is 1e-4
                    mistakes=(("the last, shorter batch was left out", full_batches_only),))


# 01 · global masks, neuron mask, sparsity report ------------------------------

def _global_masks(weights, amount):
    layers = {}
    for name, w in weights.items():
        layers[name] = nn.Linear(w.shape[1], w.shape[0], bias=False)
        with torch.no_grad():
            layers[name].weight.copy_(w)
    torch.nn.utils.prune.global_unstructured([(m, "weight") for m in layers.values()],
                                             pruning_method=torch.nn.utils.prune.L1Unstructured,
                                             amount=amount)
    return {name: m.weight_mask for name, m in layers.items()}


def _ex_global_masks():
    def layer_by_layer(weights, amount):
        return {name: _global_masks({name: w}, amount)[name] for name, w in weights.items()}

    return Exercise("global_masks", _global_masks,
                    {**PRUNE, "helpers.pruning.magnitude_prune": REFERENCE,
                     "helpers.pruning.magnitude_prune_": REFERENCE,
                     "helpers.pruning.threshold_prune": REFERENCE},
                    mistakes=(("each tensor was pruned on its own; global pruning ranks the "
                               "weights of all the tensors together", layer_by_layer),))


def _neuron_mask(layer, amount, n=1):
    twin = copy.deepcopy(layer)
    torch.nn.utils.prune.ln_structured(twin, "weight", amount=amount, n=n, dim=0)
    return twin.weight_mask


def _ex_neuron_mask():
    def columns(layer, amount):
        twin = copy.deepcopy(layer)
        torch.nn.utils.prune.ln_structured(twin, "weight", amount=amount, n=1, dim=1)
        return twin.weight_mask

    return Exercise("neuron_mask", _neuron_mask,
                    {**PRUNE, "helpers.pruning.neuron_prune": REFERENCE,
                     "helpers.pruning.neuron_prune_": REFERENCE,
                     "helpers.pruning.remove_neurons": REFERENCE},
                    mistakes=(("the rows were ranked by their L2 norm; the exercise asks for "
                               "the L1 norm, the sum of |w|", lambda layer, a: _neuron_mask(layer, a, 2)),
                              ("columns (inputs) were pruned; a neuron is a row of the weight",
                               columns)))


def _sparsity_report(model):
    return _kit().pruning.sparsity(model)


def _ex_sparsity_report():
    def mean_of_layers(model):
        report = dict(_sparsity_report(model))
        layers = [v for k, v in report.items() if k != "overall"]
        report["overall"] = sum(layers) / len(layers)
        return report

    return Exercise("sparsity_report", _sparsity_report,
                    {"helpers.pruning.sparsity": REFERENCE,
                     "helpers.metrics.count_parameters": REFERENCE},
                    atol=1e-6,  # what a float32 mean of a few thousand 0/1 values gives
                    mistakes=(('"overall" is the mean of the layers\' shares; it is the share '
                               "of zeros among all their weights together", mean_of_layers),))


# 02 · a mask by hand, penalty descent, rewind ---------------------------------

def _observe_mask(mask_weight_, layer, mask, x):
    """What a masked layer shows: its names, the mask's dtype, the weight, the
    output (as masked, after weight_orig changes, with the mask off) and the
    gradient of weight_orig."""
    net = _kit().models.clone(layer)
    returned = mask_weight_(net, mask.clone())
    seen = {"the layer it returns is the layer it was given": returned is net,
            "parameter names": sorted(n for n, _ in net.named_parameters()),
            "buffer names": sorted(n for n, _ in net.named_buffers())}
    names = ("weight_mask's dtype", "weight straight after masking", "output",
             "output after weight_orig changed", "output with the mask off",
             "gradient of weight_orig")
    if not isinstance(getattr(net, "weight_orig", None), torch.Tensor) \
            or not isinstance(getattr(net, "weight_mask", None), torch.Tensor):
        return {**seen, **dict.fromkeys(names)}
    seen[names[0]] = str(net.weight_mask.dtype)
    seen[names[1]] = torch.as_tensor(net.weight).detach().clone()
    seen[names[2]] = net(x).detach()
    with torch.no_grad():
        net.weight_orig.add_(0.5)
    seen[names[3]] = net(x).detach()
    with torch.no_grad():
        net.weight_mask.fill_(1)
    seen[names[4]] = net(x).detach()
    net.weight_orig.grad = None
    (net(x) ** 2).sum().backward()
    seen[names[5]] = net.weight_orig.grad
    return seen


def _mask_weight_(layer, mask):
    return torch.nn.utils.prune.custom_from_mask(layer, "weight", mask)


def _ex_mask_weight():
    return Exercise("mask_weight_", _mask_weight_, PRUNE, atol=1e-5, rtol=1e-5,
                    observe=_observe_mask)


def _penalty_descent(w, kind, lam, lr, steps):
    layer = nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(w)
    opt = torch.optim.SGD(layer.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        (lam * _kit().training.weight_penalty(layer, kind)).backward()
        opt.step()
    return layer.weight.detach()


def _ex_penalty_descent():
    def l2_without_2(w, kind, lam, lr, steps):
        return _penalty_descent(w, kind, lam / 2 if kind == "l2" else lam, lr, steps)

    by_hand = "the exercise asks for the gradients of section 2, by hand"
    return Exercise("penalty_descent", _penalty_descent,
                    {"helpers.training.weight_penalty": REFERENCE,
                     "helpers.training.penalized_weights": REFERENCE,
                     "torch.optim.SGD": REFERENCE, "torch.optim.Optimizer": REFERENCE,
                     **{k: by_hand for k in AUTOGRAD}},
                    atol=1e-6, rtol=1e-4,
                    mistakes=(("the L2 gradient lacks its factor 2: the gradient of "
                               "λ·w² is 2λw", l2_without_2),))


def _rewind(pruned, init):
    return _kit().pruning.rewind(pruned, init)


def _observe_rewind(rewind, pruned, init):
    kit = _kit()
    got = rewind(pruned, init)
    if not isinstance(got, nn.Module):
        raise AssertionError(f"rewind should return a network (an nn.Module), "
                             f"got {type(got).__name__}")
    seen = {"state_dict": dict(got.state_dict())}
    modules = dict(got.named_modules())
    for name in kit.pruning.linear_layers(pruned):
        layer = modules.get(name)
        seen[f"{name}.weight"] = getattr(layer, "weight", None)
        seen[f"{name}.bias"] = getattr(layer, "bias", None)
    with torch.no_grad():
        seen["logits"] = got(torch.linspace(-1, 1, 2 * 784).view(2, 1, 28, 28))
    return seen


def _ex_rewind():
    return Exercise("rewind", _rewind, {"helpers.pruning.rewind": REFERENCE},
                    observe=_observe_rewind, atol=1e-6)


# 03 · soft targets, the KD gradient, recall after the bias shift ---------------

def _soft_targets_and_entropy(logits, T):
    kit = _kit()
    p = kit.distillation.soft_targets(logits, T)
    return p, kit.distillation.entropy(p)


def _ex_soft_targets():
    def nats(logits, T):
        p, bits = _soft_targets_and_entropy(logits, T)
        return p, bits * math.log(2)

    def no_temperature(logits, T):
        return _soft_targets_and_entropy(logits, 1.0)

    return Exercise("soft_targets_and_entropy", _soft_targets_and_entropy,
                    {"helpers.distillation.soft_targets": REFERENCE,
                     "helpers.distillation.entropy": REFERENCE, **SOFTMAX},
                    atol=1e-5,
                    mistakes=(("the entropy is in nats (natural log); bits need log2, a factor "
                               "1 / ln 2 = 1.44 larger", nats),
                              ("the logits were not divided by T", no_temperature)))


def _kd_gradient(student_logits, teacher_logits, labels, T, alpha):
    z = student_logits.detach().clone().requires_grad_(True)
    loss = _kit().distillation.distillation_loss(z, teacher_logits, labels, T=T, alpha=alpha)
    return torch.autograd.grad(loss, z)[0]


def _ex_kd_gradient():
    def scaled(soft_factor, batch_mean=True):
        def wrong(zs, zt, y, T, alpha):
            B, C = zs.shape
            soft = soft_factor(T) * (F.softmax(zs / T, 1) - F.softmax(zt / T, 1))
            hard = F.softmax(zs, 1) - F.one_hot(y, C).to(zs.dtype)
            return (alpha * soft + (1 - alpha) * hard) / (B if batch_mean else 1)
        return wrong

    return Exercise("kd_gradient", _kd_gradient,
                    {"helpers.distillation.distillation_loss": REFERENCE,
                     "helpers.distillation.stacked_distillation_loss": REFERENCE, **AUTOGRAD},
                    atol=1e-6,
                    mistakes=(("the rows were not divided by the batch size B",
                               scaled(lambda T: T, batch_mean=False)),
                              ("the soft term lacks the T² of the loss: it should be "
                               "α·T·(p_student − p_teacher)", scaled(lambda T: 1 / T)),
                              ("the soft term has T² where the chain rule leaves T",
                               scaled(lambda T: T * T))))


def _recall_and_others(model, X, y, cls, shift):
    kit = _kit()
    shifted = kit.distillation.shift_bias(model, cls, shift)
    others = y != cls
    return (kit.distillation.class_recall(shifted, X, y, cls),
            kit.training.evaluate(shifted, X[others], y[others])["accuracy"])


def _ex_recall_and_others():
    def all_samples(model, X, y, cls, shift):
        kit = _kit()
        shifted = kit.distillation.shift_bias(model, cls, shift)
        return (kit.distillation.class_recall(shifted, X, y, cls),
                kit.training.evaluate(shifted, X, y)["accuracy"])

    return Exercise("recall_and_others", _recall_and_others,
                    {"helpers.distillation.shift_bias": REFERENCE,
                     "helpers.distillation.class_recall": REFERENCE,
                     "helpers.distillation.bias_for_prior": REFERENCE,
                     "helpers.training.evaluate": REFERENCE},
                    atol=1e-6,
                    mistakes=(("the second number is the accuracy on all the samples; it is the "
                               "accuracy on the samples of the other classes", all_samples),))


# 04 · int8 per column, CSR bytes, the Pareto front -----------------------------

def _int8_per_column(w):
    layer = nn.Linear(w.shape[0], w.shape[1], bias=False)
    layer.weight = nn.Parameter(w.T.clone())  # the kit quantises the rows of w.T
    w_back = _kit().quantization.Int8Linear(layer).weight.T
    return w_back, (w - w_back).abs().amax(dim=0)


def _observe_int8(int8_per_column, w):
    got = int8_per_column(w)
    if isinstance(got, tuple) and len(got) == 2 and isinstance(got[1], torch.Tensor) \
            and got[1].shape == w.shape[1:]:
        scale = w.abs().amax(dim=0).clamp_min(torch.finfo(torch.float32).tiny) / 127
        if not bool((got[1] <= scale / 2 * 1.001).all()):  # 0.1% spare for float32 rounding
            raise AssertionError("an error exceeds half a step (s_j / 2)")
    return got


def _ex_int8_per_column():
    def per_row(w):
        back, _ = _int8_per_column(w.T)
        back = back.T
        return back, (w - back).abs().amax(dim=0)

    return Exercise("int8_per_column", _int8_per_column,
                    {"helpers.quantization.Int8Linear": REFERENCE,
                     "helpers.quantization.quantize_int8": REFERENCE,
                     "torch.quantize_per_channel": REFERENCE,
                     "torch.quantize_per_tensor": REFERENCE,
                     "torch.fake_quantize_per_channel_affine": REFERENCE},
                    observe=_observe_int8, atol=1e-6,
                    mistakes=(("each row got its own scale; the exercise asks for one per column",
                               per_row),))


def _csr_bytes(w):
    return _kit().metrics.csr_bytes(w)


def _ex_csr_bytes():
    def int64_indices(w):
        nnz, rows = int(torch.count_nonzero(w)), w.shape[0]
        return nnz * w.element_size() + 8 * nnz + 8 * (rows + 1)

    def no_end_pointer(w):
        return _csr_bytes(w) - 4

    def float32_values(w):
        nnz = int(torch.count_nonzero(w))
        return _csr_bytes(w) - nnz * w.element_size() + 4 * nnz

    return Exercise("csr_bytes", _csr_bytes,
                    {"helpers.metrics.csr_bytes": REFERENCE, "helpers.metrics._csr": REFERENCE,
                     "helpers.metrics.serialize": REFERENCE,
                     "helpers.metrics.file_sizes": REFERENCE},
                    mistakes=(("the indices were counted as int64 (8 bytes); CSR here stores "
                               "int32 (4 bytes)", int64_indices),
                              ("the final row pointer is missing: rows + 1 pointers",
                               no_end_pointer),
                              ("every value was counted as 4 bytes; use w.element_size()",
                               float32_values)))


def _pareto_front(rows, x):
    fig = _kit().plots.pareto(rows, x=x)
    line = next(li for li in fig.axes[0].get_lines() if li.get_label() == "Pareto front")
    return [(c, a / 100) for c, a in zip(line.get_xdata().tolist(), line.get_ydata().tolist())]


def _ex_pareto_front():
    return Exercise("pareto_front", _pareto_front, {"helpers.plots.pareto": REFERENCE},
                    rtol=1e-12)


EXERCISES: dict[str, Callable[[], Exercise]] = {
    "params_and_bytes": _ex_params_and_bytes,
    "accuracy": _ex_accuracy,
    "global_masks": _ex_global_masks,
    "neuron_mask": _ex_neuron_mask,
    "sparsity_report": _ex_sparsity_report,
    "mask_weight_": _ex_mask_weight,
    "penalty_descent": _ex_penalty_descent,
    "rewind": _ex_rewind,
    "soft_targets_and_entropy": _ex_soft_targets,
    "kd_gradient": _ex_kd_gradient,
    "recall_and_others": _ex_recall_and_others,
    "int8_per_column": _ex_int8_per_column,
    "csr_bytes": _ex_csr_bytes,
    "pareto_front": _ex_pareto_front,
}

