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


# --- models and training --------------------------------------------------------


# --- distillation -----------------------------------------------------------------


# --- metrics ------------------------------------------------------------------------


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
refuse("train_students-T0", ex.train_students, DATA, [(0.0, 0.5, 0)], says=("T", "(0, inf)"))
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
refuse("structured_kd_runs-T0", ex.structured_kd_runs, DATA, 0.0, 0.9, says=("T", "(0, inf)"))
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
