"""The kit's experiments: every recipe, every cached model, every sweep.

The method modules (``pruning``, ``distillation``, ``quantization``) hold the
methods only; this module holds what the notebooks do with them:

* the recipes, as named constants, each with a comment on where its numbers
  come from;
* the models every notebook shares (the baselines and the teachers) and the
  students, trained once and then read from the checkpoint cache;
* the sweeps behind the sliders (λ, the pruned share) and the grid of T and α;
* the headline comparisons of notebooks 01 to 04, each repeated over
  :data:`SEEDS`, returning plain lists of accuracies (one per seed) for
  ``stats.pm`` and ``stats.verdict``;
* notebook 04's models (``build_models``), the structured student's own
  choice of T and alpha (``structured_kd_grid``) and its sparsity curves.

Choices (λ, the threshold, the fine-tuning epochs, T and α, the omitted-digit
bias) read the validation split only; each final model is evaluated once on
the test split.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterable, Mapping, Sequence

import torch
from torch import nn

from . import distillation, metrics, pruning
from ._util import check_choice, check_float, check_int, refresh_pruned_weights_
from .checkpoints import (checkpoint_lock, config_key, final_record, load_checkpoint,
                          load_or_train, model_fingerprint, save_checkpoint)
from .data import Dataset, load_dataset
from .distillation import stacked_distillation_loss
from .models import MLP, Ensemble, MLPStack, baseline_mlp, make_permanent, mlp, small_cnn
from .pruning import _amounts, _check_amount, _dataset, _number
from .quantization import quantize_int8
from .training import best_epoch, evaluate, get_device, logits_of, train, train_stack

# --- the recipes -----------------------------------------------------------------

# The seeds over which every headline comparison is repeated (mean ± std).
SEEDS = (0, 1, 2, 3, 4)
# "The baseline": the article's 784-128-10 MLP, 15 epochs of Adam at 1e-3.
BASELINE_RECIPE = {"epochs": 15, "lr": 1e-3, "optimizer": "adam", "batch_size": 64}
# "The teacher": the small CNN, shifted inputs (up to 2 pixels) and a cosine-decayed
# learning rate from 2e-3, chosen among three recipes by mean validation accuracy
# over five seeds (benchmarks/bench_teacher.py).
TEACHER_RECIPE = {"epochs": 15, "lr": 2e-3, "optimizer": "adam", "batch_size": 64,
                  "augment": True, "schedule": "cosine"}
# The student: a 784-64-10 MLP (4x fewer parameters than the CNN teacher),
# trained as long as distillation needs (Beyer et al. 2022: be patient).
STUDENT_RECIPE = {"hidden": 64, "epochs": 60, "lr": 1e-3, "batch_size": 64}
# Fine-tuning after pruning: up to 5 epochs at half the training rate; the
# epoch kept is the one with the best validation accuracy (keep_best).
FINETUNE = {"epochs": 5, "lr": 5e-4, "optimizer": "adam", "batch_size": 64, "keep_best": True}
# Unstructured: the share of fc1 removed. Han et al. (2015) remove about 92% of
# LeNet-300-100's first layer; 90% is the round figure of the curriculum.
PRUNE_AMOUNT = 0.9
# Structured: hidden neurons kept of 128 (a quarter: the curriculum's target).
STRUCTURED_KEEP = 32
# Soft Filter Pruning vs hard: 75% of the neurons (128 -> 32, as above), for
# 8 epochs at the training rate, the same budget for both methods.
SFP = {"amount": 0.75, "epochs": 8, "lr": 1e-3}
# Gradual vs one-shot: 90% of fc1, 10 epochs at 5e-4 for both; the cubic
# schedule reaches 90% two epochs before the end.
GRADUAL = {"final": 0.9, "epochs": 10, "lr": 5e-4}
# The λ slider's stops: log-spaced, half a decade apart, from 1e-5 to 1e-3
# (notebook 01 shows what each does to fc1's weights and to accuracy).
REG_LAMBDAS = (1e-5, 10 ** -4.5, 1e-4, 10 ** -3.5, 1e-3)
# |w| below this counts as "near zero" in the λ slider's histogram.
NEAR_ZERO = 1e-3
# L1 + threshold: the thresholds tried with each λ; the choice is the sparsest
# (λ, threshold) whose validation accuracy stays within TOLERANCE of the plain
# baseline's (five validation digits of 500 = 1 point).
L1_THRESHOLDS = (0.005, 0.01, 0.02, 0.03)
TOLERANCE = 0.005
# The pruned-share slider: fine-tuning epochs after each point (FINETUNE's
# rate, no choice on validation), fewer than FINETUNE's 5 so that a slider
# move answers within a second or two.
AMOUNT_FINETUNE_EPOCHS = 3
# Distillation: T and alpha as notebook 03 chooses them on validation (the
# lowest validation loss over its grid, choose_T_alpha); the comparison of
# notebook 04 distils with them without rerunning the grid.
KD = {"T": 8.0, "alpha": 0.9}
# Notebook 04's structured student distilled with FINETUNE's budget: T and alpha
# chosen again for it, on validation (choose_T_alpha, seed 0), over notebook
# 03's grid; KD's values were chosen for a 60-epoch student from scratch.
STRUCTURED_KD_GRID = {"T": (1.0, 2.0, 4.0, 8.0), "alpha": (0.5, 0.9)}
# Omitted digit: Hinton et al. leave out the 3s; T = 8 softens the teacher
# enough for the student to learn about 3s from the other digits.
OMITTED = {"cls": 3, "T": 8.0, "alpha": 0.9}
# Notebook 04's sparsity curves: fine-tuning epochs at each amount (FINETUNE's
# rate and keep_best), fewer than FINETUNE's 5 to keep the sweep within seconds.
CURVE_EPOCHS = 3
# Latency: batch 1 (one request; mostly Python overhead on a CPU) and batch 256
# (enough arithmetic for the matrix multiply to dominate).
LATENCY_BATCHES = (1, 256)
# Latency threads: one intra-op thread, so that the figures do not depend on
# how many cores the machine has or how busy the others are.
LATENCY_THREADS = 1


# --- checks shared by the functions below ----------------------------------------------

def _sequence(name: str, values, what: str) -> list:
    """``values`` as a non-empty list (a str, a number or a 0-d tensor is refused)."""
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable) or (
            isinstance(values, torch.Tensor) and values.ndim == 0):
        raise TypeError(f"{name} must be a sequence of {what}, got {values!r}")
    values = list(values)
    if not values:
        raise ValueError(f"{name} must hold at least one of {what}, got none")
    return values


def _seeds(seeds) -> list[int]:
    """A non-empty sequence of seeds, each an integer >= 0."""
    return [check_int("each item of seeds", s, 0) for s in _sequence("seeds", seeds, "integers >= 0")]


def _numbers(name: str, values, low: float, high: float | None = None,
             **open_ends) -> list[float]:
    """A non-empty sequence of finite numbers >= ``low`` (> ``low`` if ``low_open``),
    and at most ``high`` when given."""
    what = f"numbers {'>' if open_ends.get('low_open') else '>='} {low:g}"
    what += "" if high is None else f" and <= {high:g}"
    return [_number(f"each item of {name}", v, low, high, **open_ends)
            for v in _sequence(name, values, what)]


# --- the shared models: baselines and teachers ---------------------------------------

def _recipe_model(name: str, build, recipe: dict, data: Dataset | None, seed: int,
                  progress: bool, device) -> tuple[nn.Module, dict]:
    """``build(seed=seed)`` trained with ``recipe`` on ``data``, through the cache."""
    check_int("seed", seed, 0)
    data = load_dataset() if data is None else data
    config = {"model": build(seed=seed).config, "data": data.fingerprint, "recipe": recipe,
              "seed": seed}
    return load_or_train(name, config, lambda: build(seed=seed),
                         lambda m: final_record(m, data, train(m, data, seed=seed,
                                                               progress=progress, **recipe)),
                         device=device)


def get_baseline(data: Dataset | None = None, *, seed: int = 0, progress: bool = False,
                 device=None) -> tuple[nn.Module, dict]:
    """Return ``(net, record)``: the article's 784-128-10 MLP trained with
    ``BASELINE_RECIPE`` on ``data`` (default: ``load_dataset()``), cached.

    ``record`` has ``test_accuracy``, ``test_loss``, ``history``, ``train_seconds``
    and ``cached``. Each call returns a new model object, so changing it never
    changes the cached baseline.
    """
    return _recipe_model("baseline", baseline_mlp, BASELINE_RECIPE, data, seed, progress,
                         device)


def get_teacher(data: Dataset | None = None, *, seed: int = 0, progress: bool = False,
                device=None) -> tuple[nn.Module, dict]:
    """Return ``(teacher, record)``: the small CNN trained with ``TEACHER_RECIPE``, cached."""
    return _recipe_model("teacher", small_cnn, TEACHER_RECIPE, data, seed, progress, device)


def get_teachers(data: Dataset | None = None, *, seeds=SEEDS, progress: bool = False,
                 device=None) -> list[tuple[nn.Module, dict]]:
    """:func:`get_teacher` for each of ``seeds`` (default :data:`SEEDS`), cached."""
    return [get_teacher(data, seed=s, progress=progress, device=device) for s in _seeds(seeds)]


def get_teacher_ensemble(data: Dataset | None = None, *, seeds=SEEDS, progress: bool = False,
                         device=None) -> tuple[Ensemble, list[dict]]:
    """Return ``(ensemble, records)``: the teachers of ``seeds`` answering
    together (the mean of their logits), the teacher the kit's students imitate,
    and each teacher's record."""
    pairs = get_teachers(data, seeds=seeds, progress=progress, device=device)
    return Ensemble([t for t, _ in pairs]).eval(), [r for _, r in pairs]


def get_baselines(data: Dataset | None = None, *, seeds=SEEDS, progress: bool = False,
                  device=None) -> list[tuple[nn.Module, dict]]:
    """:func:`get_baseline` for each of ``seeds`` (default :data:`SEEDS`), cached."""
    return [get_baseline(data, seed=s, progress=progress, device=device) for s in _seeds(seeds)]


# --- students, distilled or from the labels alone ---------------------------------

def _student_recipe(recipe: dict | None) -> dict:
    recipe = {**STUDENT_RECIPE, **(recipe or {})}
    unknown = set(recipe) - set(STUDENT_RECIPE)
    if unknown:
        raise ValueError(f"recipe keys must be among {sorted(STUDENT_RECIPE)}, got {sorted(unknown)}")
    check_int("recipe['hidden']", recipe["hidden"], 1)
    check_int("recipe['epochs']", recipe["epochs"], 1)
    check_float("recipe['lr']", recipe["lr"], 0.0, low_open=True)
    check_int("recipe['batch_size']", recipe["batch_size"], 1)
    return recipe


def train_students(data: Dataset, specs, *, teacher: nn.Module | None = None,
                   recipe: dict | None = None) -> list[tuple[nn.Module, dict]]:
    """Return ``(student, record)`` for each ``(T, alpha, seed)`` of ``specs``:
    784-64-10 MLPs distilled from ``teacher`` (default: the kit's five teachers
    together, ``get_teacher_ensemble(data)``), cached one by one.

    ``alpha = 0`` is a student trained from the labels alone, through the same
    loop, seed and batches (no teacher is keyed). Students not in the cache
    are trained together as one :class:`~helpers.models.MLPStack` (each with
    its own seed's initialisation and batches, its own T and alpha), which
    costs far less than one after the other. The record has ``history``
    (validation accuracy and loss per epoch), ``test_accuracy`` (the last
    epoch's model), ``best_epoch`` (highest validation accuracy, the earliest
    on a tie), ``test_accuracy_best`` (that epoch's model) and ``cached``. The
    cache key holds the data split's and the teacher's fingerprints.
    """
    recipe = _student_recipe(recipe)
    _dataset(data)
    checked = []
    for spec in _sequence("specs", specs, "(T, alpha, seed) triples"):
        if not isinstance(spec, (tuple, list)) or len(spec) != 3:
            raise ValueError(f"specs must hold (T, alpha, seed) triples, got {spec!r}")
        T, a, s = spec
        T, a = _number("T", T, 0.0, distillation.T_MAX, low_open=True), _number("alpha", a, 0.0, 1.0)
        checked.append((1.0 if a == 0 else T, a, check_int("seed", s, 0)))  # T unused at 0
    specs = checked
    if teacher is None and any(a for _, a, _ in specs):
        teacher, _ = get_teacher_ensemble(data)
    teacher_key = None if teacher is None else model_fingerprint(teacher)

    def config(T, a, s):
        return {"model": mlp(recipe["hidden"], seed=s).config, "data": data.fingerprint,
                "teacher": None if a == 0 else teacher_key, "recipe": recipe, "T": T,
                "alpha": a, "seed": s}

    def build(s):
        return lambda: mlp(recipe["hidden"], seed=s)

    out = [load_checkpoint("student", config(*spec), build(spec[2])) for spec in specs]
    todo = [i for i, got in enumerate(out) if got is None]
    if not todo:
        return out
    with contextlib.ExitStack() as locks:  # another kernel training them: wait, then load
        for i in sorted(todo, key=lambda i: config_key(config(*specs[i]), "student")):
            locks.enter_context(checkpoint_lock("student", config(*specs[i])))
        for i in todo:
            out[i] = load_checkpoint("student", config(*specs[i]), build(specs[i][2]))
        todo = [i for i in todo if out[i] is None]
        if todo:
            for i, pair in zip(todo, _train_stack(data, [specs[i] for i in todo], teacher,
                                                  recipe)):
                save_checkpoint("student", config(*specs[i]), *pair)
                out[i] = (pair[0], {**pair[1], "cached": False})
    return out


def _train_stack(data, specs, teacher, recipe) -> list[tuple[nn.Module, dict]]:
    """Train the students of ``specs`` together; return (model, record) for each."""
    device = get_device()
    stack = MLPStack([mlp(recipe["hidden"], seed=s) for _, _, s in specs]).to(device)
    Ts = torch.tensor([T for T, _, _ in specs], device=device)
    alphas = torch.tensor([a for _, a, _ in specs], device=device)
    targets = (logits_of(teacher, data.X_train).to(device) if teacher is not None
               else torch.zeros(len(data.X_train), len(data.classes), device=device))

    def loss(model, xb, yb, idx):
        return stacked_distillation_loss(model(xb), targets[idx], yb, T=Ts, alpha=alphas)

    best = {"accuracy": [-1.0] * len(specs), "state": [None] * len(specs)}

    def validate(model, epoch):  # validation per member, and each member's best weights
        ev = evaluate(model, data.X_val, data.y_val)
        for m, acc in enumerate(ev["accuracy"]):
            if acc > best["accuracy"][m]:
                best["accuracy"][m], best["state"][m] = acc, model.member(m).state_dict()
        return {"val_accuracy": ev["accuracy"], "val_loss": ev["loss"]}

    kwargs = {k: v for k, v in recipe.items() if k != "hidden"}
    history = train_stack(stack, data, seeds=[s for _, _, s in specs], optimizer="adam",
                          loss_fn=loss, evaluate_each_epoch=False, on_epoch_end=validate,
                          device=device, **kwargs)
    results = []
    for m in range(len(specs)):
        own = [{"epoch": r["epoch"], "train_loss": r["train_loss"][m], "seconds": r["seconds"],
                "val_accuracy": r["val_accuracy"][m], "val_loss": r["val_loss"][m]}
               for r in history]
        student = stack.member(m)
        record = final_record(student, data, own)
        at_best = mlp(recipe["hidden"]).to(device)
        at_best.load_state_dict(best["state"][m])
        record.update(best_epoch=best_epoch(own), test_accuracy_best=evaluate(
            at_best, data.X_test, data.y_test)["accuracy"])
        results.append((student, record))
    return results


def get_student(data: Dataset, *, T: float = 4.0, alpha: float = 0.9, seed: int = 0,
                teacher: nn.Module | None = None,
                recipe: dict | None = None) -> tuple[nn.Module, dict]:
    """Return ``(student, record)``: one student of :func:`train_students`."""
    return train_students(data, [(T, alpha, seed)], teacher=teacher, recipe=recipe)[0]


def distillation_grid(data: Dataset, temperatures, alphas, *, seed: int = 0,
                      teacher: nn.Module | None = None, recipe: dict | None = None) -> list[dict]:
    """One cached student per (T, alpha); return rows with ``T``, ``alpha``,
    ``val_accuracy`` and ``val_loss`` (the last epoch's, on the validation
    split: what a choice may read), ``test_accuracy`` and ``history``."""
    temperatures = _numbers("temperatures", temperatures, 0.0, distillation.T_MAX, low_open=True)
    alphas = _numbers("alphas", alphas, 0.0)
    pairs = [(T, alpha) for T in temperatures for alpha in alphas]
    students = train_students(data, [(T, a, seed) for T, a in pairs], teacher=teacher,
                              recipe=recipe)
    rows = []
    for (T, alpha), (_, rec) in zip(pairs, students):
        rows.append({"T": T, "alpha": alpha,
                     "val_accuracy": rec["history"][-1]["val_accuracy"],
                     "val_loss": rec["history"][-1]["val_loss"],
                     "test_accuracy": rec["test_accuracy"], "history": rec["history"]})
    return rows


def _rows(rows, keys: Sequence[str], what: str = "rows") -> list[Mapping]:
    """``rows`` as a non-empty list of mappings, each with a real number under every key."""
    rows = _sequence("rows", rows, what)
    for r in rows:
        if not isinstance(r, Mapping) or any(k not in r for k in keys):
            raise ValueError(f"rows must be mappings with keys {list(keys)}, got {r!r}"[:300])
        for k in keys:
            if isinstance(r[k], bool) or not isinstance(r[k], (int, float)):
                raise ValueError(f"rows must hold numbers under {k!r}, got {r[k]!r}")
    return rows


def choose_T_alpha(rows) -> tuple[float, float]:
    """The (T, alpha) of the grid row with the lowest validation loss
    (cross-entropy of the student on the validation split after its last
    epoch; ties: the lower T, then the lower alpha). Reads no test figure.

    Loss, not accuracy: on 500 validation images one image is 0.2 points, and
    several students usually tie or differ by a digit or two in accuracy; the
    loss also weighs how confident each answer is, so it ranks them with
    less noise.
    """
    rows = _rows(rows, ("T", "alpha", "val_loss"), "distillation_grid rows")
    nan = [r for r in rows if not math.isfinite(r["val_loss"])]
    if nan:
        raise ValueError(f"rows must have a finite val_loss each; T={nan[0]['T']}, "
                         f"alpha={nan[0]['alpha']} has {nan[0]['val_loss']}")
    best = min(rows, key=lambda r: (r["val_loss"], r["T"], r["alpha"]))
    return best["T"], best["alpha"]


# --- the sweeps behind the sliders ----------------------------------------------

def regularised_model(data: Dataset, penalty: str, lam: float, *, seed: int = 0,
                      progress: bool = False) -> tuple[MLP, dict]:
    """Return ``(net, record)``: the baseline MLP trained with ``BASELINE_RECIPE``
    plus an L1 or L2 penalty of weight ``lam`` >= 0; cached on disk."""
    check_choice("penalty", penalty, ("l1", "l2"))
    lam = _number("lam", lam, 0.0)
    recipe = {**BASELINE_RECIPE, "penalty": penalty if lam else None, "lam": lam}
    return _recipe_model("regularised", baseline_mlp, recipe, data, seed, progress, None)


def regularisation_sweep(data: Dataset, penalty: str, lams: Sequence[float] = REG_LAMBDAS, *,
                         seed: int = 0, near_zero: float = NEAR_ZERO) -> list[dict]:
    """Train (or load) one regularised MLP per λ; return one row per λ:
    ``lam``, ``accuracy`` (test), ``val_accuracy``, ``near_zero`` (share of fc1
    weights with ``|w| < near_zero``) and ``weights`` (fc1's weights, on the CPU).
    ``lams``: a non-empty sequence of λ > 0 (the rows feed a log-scale slider;
    λ = 0 is ``regularised_model(data, penalty, 0)``, the plain recipe)."""
    check_choice("penalty", penalty, ("l1", "l2"))
    lams = _numbers("lams", lams, 0.0, low_open=True)
    check_int("seed", seed, 0)
    _number("near_zero", near_zero, 0.0, low_open=True)
    rows = []
    for lam in lams:
        net, rec = regularised_model(data, penalty, lam, seed=seed)
        w = net.fc1.weight.detach().cpu()
        rows.append({"lam": float(lam), "accuracy": rec["test_accuracy"],
                     "val_accuracy": rec["history"][-1]["val_accuracy"],
                     "near_zero": (w.abs() < near_zero).float().mean().item(), "weights": w})
    return rows


def nearest_row(rows: Sequence[Mapping], key: str, value: float, *, log: bool = False) -> Mapping:
    """The row of a sweep whose ``row[key]`` is nearest ``value`` (in log space if
    ``log``): what a slider between a sweep's stops shows. ``value`` and every
    ``row[key]`` must be finite numbers, > 0 if ``log``."""
    rows = _rows(rows, (key,))
    low = 0.0 if log else -math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value > low):
        raise ValueError(f"{key} (value) must be a finite number{' > 0 (a log scale)' * log}, "
                         f"got {value!r}")
    bad = [r[key] for r in rows if not (math.isfinite(r[key]) and r[key] > low)]
    if bad:
        raise ValueError(f"rows' {key} must be finite numbers{' > 0 (a log scale)' * log}, "
                         f"got {bad[0]!r}")
    if log:
        return min(rows, key=lambda r: abs(math.log(r[key]) - math.log(value)))
    return min(rows, key=lambda r: abs(r[key] - value))


def amount_point(model: nn.Module, data: Dataset, amount: float, *,
                 layers: Sequence[str] | str = ("fc1",),
                 finetune_epochs: int = AMOUNT_FINETUNE_EPOCHS, lr: float = FINETUNE["lr"],
                 seed: int = 0) -> dict:
    """Prune a copy of ``model`` by ``amount``; return ``amount``, ``accuracy``
    (right after pruning), ``accuracy_finetuned`` (after ``finetune_epochs`` >= 1
    with the masks kept) and ``surviving`` (the non-zero weights of the first
    named layer after fine-tuning, on the CPU). Every argument is checked
    before any training."""
    check_int("finetune_epochs", finetune_epochs, 1)
    _number("lr", lr, 0.0, low_open=True)
    check_int("seed", seed, 0)
    _dataset(data)
    pruned = pruning.magnitude_prune(model, amount, layers=layers)  # checks amount and layers
    first = layers if isinstance(layers, str) else list(layers)[0]
    acc = evaluate(pruned, data.X_test, data.y_test)["accuracy"]
    train(pruned, data, epochs=finetune_epochs, lr=lr, seed=seed, progress=False,
          evaluate_each_epoch=False)
    w = getattr(pruned, first).weight.detach().cpu()
    return {"amount": float(amount), "accuracy": acc,
            "accuracy_finetuned": evaluate(pruned, data.X_test, data.y_test)["accuracy"],
            "surviving": w[w != 0]}


def amount_sweep(model: nn.Module, data: Dataset, amounts: Sequence[float], **kwargs) -> list[dict]:
    """:func:`amount_point` for each of ``amounts`` (a non-empty sequence in
    [0, 1); same keyword arguments)."""
    amounts = _amounts(amounts)
    pruning._check_leaves_weights(pruning._layers(model, kwargs.get("layers", ("fc1",))),
                                  max(amounts))
    return [amount_point(model, data, a, **kwargs) for a in amounts]


# --- the comparisons over seeds --------------------------------------------------

def _test(model: nn.Module, data: Dataset) -> float:
    return evaluate(model, data.X_test, data.y_test)["accuracy"]


def _val(model: nn.Module, data: Dataset) -> float:
    return evaluate(model, data.X_val, data.y_val)["accuracy"]


def _finetune(model: nn.Module, data: Dataset, seed: int, **overrides) -> nn.Module:
    """Train ``model`` in place with FINETUNE (and ``overrides``); return it."""
    train(model, data, seed=seed, progress=False, **{**FINETUNE, **overrides})
    return model


def baseline_runs(data: Dataset, seeds: Sequence[int] = SEEDS) -> list[float]:
    """Test accuracy of the cached baseline for each seed."""
    return [get_baseline(data, seed=s)[1]["test_accuracy"] for s in _seeds(seeds)]


def _prune_finetune_runs(data: Dataset, seeds: Sequence[int], prune) -> dict[str, list[float]]:
    """``prune(baseline)`` (a pruned copy) then fine-tuned, for each seed's
    baseline: ``{"baseline", "pruned", "finetuned"}`` test accuracies."""
    out = {"baseline": [], "pruned": [], "finetuned": []}
    for s in _seeds(seeds):
        base, rec = get_baseline(data, seed=s)
        net = prune(base)
        out["baseline"].append(rec["test_accuracy"])
        out["pruned"].append(_test(net, data))
        out["finetuned"].append(_test(_finetune(net, data, s), data))
    return out


def unstructured_runs(data: Dataset, seeds: Sequence[int] = SEEDS,
                      amount: float = PRUNE_AMOUNT) -> dict[str, list[float]]:
    """``amount`` of fc1 pruned by magnitude, then fine-tuned, for each seed's
    baseline: ``{"baseline", "pruned", "finetuned"}`` test accuracies."""
    pruning._check_leaves_weights({"fc1": baseline_mlp().fc1}, _check_amount(amount))
    return _prune_finetune_runs(data, seeds, lambda b: pruning.magnitude_prune(b, amount))


def structured_runs(data: Dataset, seeds: Sequence[int] = SEEDS,
                    keep: int = STRUCTURED_KEEP) -> dict[str, list[float]]:
    """fc1 cut to its ``keep`` strongest neurons (a smaller network), then
    fine-tuned: ``{"baseline", "pruned", "finetuned"}`` test accuracies."""
    check_int("keep", keep, 1, baseline_mlp().fc1.out_features)
    return _prune_finetune_runs(data, seeds, lambda b: pruning.remove_neurons(b, keep))


def choose_l1_threshold(data: Dataset, lams: Sequence[float] = REG_LAMBDAS,
                        thresholds: Sequence[float] = L1_THRESHOLDS, *,
                        tolerance: float = TOLERANCE, seed: int = 0) -> dict:
    """Choose λ and the threshold on the validation split.

    For each λ (an L1-trained baseline, cached) and each threshold, fc1 is
    pruned by threshold and evaluated on validation. The choice is the pair
    with the highest fc1 sparsity whose validation accuracy is at most
    ``tolerance`` below the plain baseline's. Returns ``lam``, ``threshold``,
    ``sparsity`` and ``rows`` (every pair tried, with ``val_accuracy``).
    """
    lams = _numbers("lams", lams, 0.0)
    thresholds = _numbers("thresholds", thresholds, 0.0)
    _number("tolerance", tolerance, 0.0, 1.0)
    check_int("seed", seed, 0)
    base, _ = get_baseline(data, seed=seed)
    floor = _val(base, data) - tolerance
    rows = []
    for lam in lams:
        net, _ = regularised_model(data, "l1", lam, seed=seed)
        for t in thresholds:
            cut = pruning.threshold_prune(net, t)
            rows.append({"lam": float(lam), "threshold": float(t),
                         "sparsity": pruning.sparsity(cut)["fc1"], "val_accuracy": _val(cut, data)})
    ok = [r for r in rows if r["val_accuracy"] >= floor - 1e-9]
    if not ok:
        raise ValueError(f"no (λ, threshold) keeps validation accuracy within tolerance="
                         f"{tolerance}; try smaller λ or thresholds")
    best = max(ok, key=lambda r: (r["sparsity"], r["val_accuracy"]))
    return {"lam": best["lam"], "threshold": best["threshold"], "sparsity": best["sparsity"],
            "rows": rows}


def l1_vs_magnitude_runs(data: Dataset, lam: float, threshold: float,
                         seeds: Sequence[int] = SEEDS) -> dict[str, list[float]]:
    """For each seed: the L1-trained model pruned by ``threshold``, and the plain
    baseline magnitude-pruned to the same fc1 sparsity, both without
    fine-tuning: ``{"sparsity", "l1", "plain"}``."""
    lam, threshold = _number("lam", lam, 0.0), _number("threshold", threshold, 0.0)
    out = {"sparsity": [], "l1": [], "plain": []}
    for s in _seeds(seeds):
        l1_net, _ = regularised_model(data, "l1", lam, seed=s)
        cut = pruning.threshold_prune(l1_net, threshold)
        sp = pruning.sparsity(cut)["fc1"]
        base, _ = get_baseline(data, seed=s)
        out["sparsity"].append(sp)
        out["l1"].append(_test(cut, data))
        out["plain"].append(_test(pruning.magnitude_prune(base, sp), data))
    return out


# The hard side of a same-budget comparison trains all its epochs, as the soft
# side does: no epoch is picked on validation.
_NO_CHOICE = {"keep_best": False, "evaluate_each_epoch": False}


def _copied(make):
    """A ``fit`` for :func:`_cached`: a method that returns a new model, its
    weights copied into the model being built."""
    return lambda model: model.load_state_dict(make().state_dict())


def _soft_pruned(kind: str, base: nn.Module, data: Dataset, seed: int) -> nn.Module:
    """The soft side of a same-budget comparison, from ``base``, cached: gradual
    pruning (:data:`GRADUAL`, ``kind="gradual"``) or Soft Filter Pruning shrunk
    to its kept neurons (:data:`SFP`, ``kind="sfp"``). The rows of notebook
    04's table are these very models (the same cache entries)."""
    check_choice("kind", kind, ("gradual", "sfp"))
    if kind == "gradual":
        return _cached("compare-gradual", lambda: pruning.magnitude_prune(base, GRADUAL["final"]),
                       _copied(lambda: pruning.gradual_prune(base, data, seed=seed,
                                                             **GRADUAL)[0]),
                       data=data, base=base, recipe=GRADUAL, seed=seed, teacher=None)
    return _cached("compare-sfp", lambda: pruning.remove_neurons(base, STRUCTURED_KEEP),
                   _copied(lambda: pruning.shrink(pruning.soft_filter_prune(base, data, seed=seed,
                                                                            **SFP)[0])),
                   data=data, base=base, recipe=SFP, seed=seed, teacher=None)


def _hard_pruned(kind: str, base: nn.Module, data: Dataset, seed: int) -> nn.Module:
    """The hard side of a same-budget comparison, cached: ``base`` pruned at
    once (90% of fc1 by magnitude for ``"gradual"``, whole neurons masked for
    ``"sfp"``, then shrunk), fine-tuned for the soft side's epochs at its rate,
    every epoch trained (no choice on validation)."""
    check_choice("kind", kind, ("gradual", "sfp"))
    recipe = GRADUAL if kind == "gradual" else SFP
    budget = {"epochs": recipe["epochs"], "lr": recipe["lr"], **_NO_CHOICE}
    if kind == "gradual":
        name, build = "same-budget-oneshot", lambda: pruning.magnitude_prune(base, GRADUAL["final"])
        what = {"final": GRADUAL["final"]}
    else:
        name, build = "same-budget-hard", lambda: pruning.neuron_prune(base, SFP["amount"])
        what = {"amount": SFP["amount"]}
    net = _cached(name, build, lambda model: _finetune(model, data, seed, **budget), data=data,
                  base=base, recipe={**what, **FINETUNE, **budget}, seed=seed, teacher=None)
    return net if kind == "gradual" else pruning.shrink(net)


def _same_budget_runs(data: Dataset, seeds: Sequence[int], kind: str,
                      names: tuple[str, str]) -> dict[str, list[float]]:
    """For each seed's baseline: the soft method of ``kind`` (it trains as it
    prunes, :func:`_soft_pruned`) against the same pruning done at once and
    fine-tuned for the same epochs at the same rate (:func:`_hard_pruned`);
    the test accuracy of each, under ``names`` (soft first). Every model is
    cached."""
    out = {names[0]: [], names[1]: []}
    for s in _seeds(seeds):
        base, _ = get_baseline(data, seed=s)
        out[names[0]].append(_test(_soft_pruned(kind, base, data, s), data))
        out[names[1]].append(_test(_hard_pruned(kind, base, data, s), data))
    return out


def sfp_vs_hard_runs(data: Dataset, seeds: Sequence[int] = SEEDS) -> dict[str, list[float]]:
    """Soft Filter Pruning vs hard neuron pruning plus fine-tuning, same
    sparsity and epochs (:data:`SFP`), both shrunk: ``{"sfp", "hard"}``; cached."""
    return _same_budget_runs(data, seeds, "sfp", ("sfp", "hard"))


def gradual_vs_oneshot_runs(data: Dataset, seeds: Sequence[int] = SEEDS) -> dict[str, list[float]]:
    """Gradual pruning (cubic schedule) vs one-shot pruning plus fine-tuning,
    same final sparsity and epochs (:data:`GRADUAL`): ``{"gradual", "one_shot"}``;
    cached. The gradual models are notebook 04's table row."""
    return _same_budget_runs(data, seeds, "gradual", ("gradual", "one_shot"))


def _teacher_logits(teacher: nn.Module, data: Dataset, given: torch.Tensor | None = None):
    """A function that returns the teacher's logits on the training split
    (``given`` if not None), computed at the first call only (the cache may
    need none)."""
    memo = [] if given is None else [given]

    def get():
        if not memo:
            memo.append(logits_of(teacher, data.X_train))
        return memo[0]
    return get


def _structured_kd(data: Dataset, base: nn.Module, teacher: nn.Module, T: float, alpha: float,
                   seed: int, logits) -> nn.Module:
    """``base`` cut to :data:`STRUCTURED_KEEP` neurons and distilled from
    ``teacher`` at (``T``, ``alpha``) with FINETUNE's budget (same epochs,
    rate, batches, keep_best on validation), cached; ``logits()`` gives the
    teacher's logits on the training split. At :data:`KD` this is the table's
    "structured 32 + distillation" (the same cache entry)."""
    T, alpha = float(T), float(alpha)
    # distill trains with Adam itself (FINETUNE's optimizer); the rest of FINETUNE as is
    kd_ft = {k: v for k, v in FINETUNE.items() if k != "optimizer"}

    def fit(model):
        distillation.distill(model, teacher, data, logits=logits(), seed=seed, progress=False,
                             T=T, alpha=alpha, **kd_ft)

    return _cached("compare-structured-kd", lambda: pruning.remove_neurons(base, STRUCTURED_KEEP),
                   fit, data=data, base=base,
                   recipe={"keep": STRUCTURED_KEEP, **FINETUNE, "T": T, "alpha": alpha},
                   seed=seed, teacher=teacher)


def structured_kd_grid(data: Dataset, temperatures: Sequence[float] = STRUCTURED_KD_GRID["T"],
                       alphas: Sequence[float] = STRUCTURED_KD_GRID["alpha"], *, seed: int = 0,
                       teacher: nn.Module | None = None) -> list[dict]:
    """The structured student of notebook 04 distilled with FINETUNE's budget
    (:func:`_structured_kd`), one cached model per (T, alpha), from the
    baseline of ``seed``; ``teacher`` defaults to the kit's teacher ensemble.
    Returns rows with ``T``, ``alpha``, ``val_loss`` and ``val_accuracy``
    (the kept epoch's model on the validation split), ready for
    :func:`choose_T_alpha`. Reads no test figure."""
    check_int("seed", seed, 0)
    temperatures = _numbers("temperatures", temperatures, 0.0, distillation.T_MAX, low_open=True)
    alphas = [_number("each item of alphas", a, 0.0, 1.0) for a in
              _sequence("alphas", alphas, "numbers in [0, 1]")]
    if teacher is None:
        teacher, _ = get_teacher_ensemble(data)
    base, _ = get_baseline(data, seed=seed)
    logits = _teacher_logits(teacher, data)
    rows = []
    for T in temperatures:
        for alpha in alphas:
            net = _structured_kd(data, base, teacher, T, alpha, seed, logits)
            val = evaluate(net, data.X_val, data.y_val)
            rows.append({"T": float(T), "alpha": float(alpha), "val_loss": val["loss"],
                         "val_accuracy": val["accuracy"]})
    return rows


def structured_kd_runs(data: Dataset, T: float, alpha: float, seeds: Sequence[int] = SEEDS, *,
                       teacher: nn.Module | None = None) -> list[float]:
    """Test accuracy, for each seed's baseline, of the structured student
    distilled at (``T``, ``alpha``) with FINETUNE's budget (cached), the budget
    of "structured 128 -> 32 neurons"."""
    T, alpha = _number("T", T, 0.0, distillation.T_MAX, low_open=True), _number("alpha", alpha, 0.0, 1.0)
    seeds = _seeds(seeds)
    if teacher is None:
        teacher, _ = get_teacher_ensemble(data)
    logits = _teacher_logits(teacher, data)
    out = []
    for s in seeds:
        base, _ = get_baseline(data, seed=s)
        out.append(_test(_structured_kd(data, base, teacher, T, alpha, s, logits), data))
    return out


def omitted_digit_runs(data: Dataset, seeds: Sequence[int] = SEEDS, *,
                       cls: int = OMITTED["cls"], T: float = OMITTED["T"],
                       alpha: float = OMITTED["alpha"]) -> dict[str, dict[str, list[float]]]:
    """Hinton's omitted-digit experiment over seeds.

    Students (cached) never see class ``cls``: one from labels only, one
    distilled from the kit's teacher ensemble (trained on all digits). The
    bias of ``cls`` is then shifted so that the mean predicted probability of
    ``cls`` over the *unlabelled validation images* is 1/classes (no label is
    read). Returns, for ``"labels only"`` and
    ``"distilled"``: ``recall_before``, ``recall_after`` (share of the test
    images of ``cls`` recognised), ``others_before``, ``others_after``
    (accuracy on the other test images) and ``shift``.
    """
    seeds = _seeds(seeds)
    T, alpha = _number("T", T, 0.0, distillation.T_MAX, low_open=True), _number("alpha", alpha, 0.0, 1.0)
    without = distillation.without_class(data, cls)
    teacher, _ = get_teacher_ensemble(data)
    prior = 1 / len(data.classes)
    others = data.y_test != cls
    out = {}
    trained = train_students(  # all ten students trained together
        without, [(T, a, s) for a in (0.0, alpha) for s in seeds], teacher=teacher)
    for k, name in enumerate(("labels only", "distilled")):
        res = {k: [] for k in ("recall_before", "recall_after", "others_before", "others_after",
                               "shift")}
        for student, _ in trained[k * len(seeds):(k + 1) * len(seeds)]:
            shift = distillation.bias_for_prior(student, data.X_val, cls, prior)
            fixed = distillation.shift_bias(student, cls, shift)
            res["shift"].append(shift)
            for when, m in (("before", student), ("after", fixed)):
                res[f"recall_{when}"].append(
                    distillation.class_recall(m, data.X_test, data.y_test, cls))
                res[f"others_{when}"].append(
                    evaluate(m, data.X_test[others], data.y_test[others])["accuracy"])
        out[name] = res
    return out


def student_runs(data: Dataset, T: float, alpha: float,
                 seeds: Sequence[int] = SEEDS) -> dict[str, dict[str, list[float]]]:
    """Scratch (labels only) and distilled students over seeds, same recipe and
    batches; every distilled seed imitates the kit's teacher ensemble. For each:
    ``last`` (test accuracy after the last epoch), ``best`` (after the epoch of
    best validation accuracy), ``best_epoch`` and ``val_curves`` (each seed's
    validation accuracy per epoch)."""
    out, seeds = {}, _seeds(seeds)
    trained = train_students(data, [(T, a, s) for a in (0.0, alpha) for s in seeds])
    for k, name in enumerate(("labels only", "distilled")):
        recs = [r for _, r in trained[k * len(seeds):(k + 1) * len(seeds)]]
        out[name] = {"last": [r["test_accuracy"] for r in recs],
                     "best": [r["test_accuracy_best"] for r in recs],
                     "best_epoch": [r["best_epoch"] for r in recs],
                     "val_curves": [[h["val_accuracy"] for h in r["history"]] for r in recs]}
    return out


# --- notebook 04's models and curves ------------------------------------------------

TEACHER = "teacher: 5 CNNs together (reference)"
NAMES = ("dense baseline 784-128-10", "unstructured 90% of fc1, masked",
         "unstructured 90% of fc1, mask removed", "structured 128 -> 32 neurons",
         "soft filter pruning -> 32 neurons", "gradual pruning 90% of fc1",
         "distilled student 784-64-10", "structured 32 + distillation", "int8 baseline",
         "int8 + unstructured 90%", "int8 + structured 32", TEACHER)


def build_models(data: Dataset, *, seed: int = 0, teacher: nn.Module | None = None,
                 teacher_logits: torch.Tensor | None = None) -> dict[str, nn.Module]:
    """Return ``{name: model}`` for every row of the comparison but the teacher,
    for one ``seed``, in table order (:data:`NAMES`).

    The baseline of ``seed`` and the distilled student (from ``teacher``,
    default the kit's teacher ensemble) come from the cache; the pruned variants are
    fine-tuned from the baseline (and cached too): :data:`FINETUNE` after
    one-shot pruning, :data:`SFP` and :data:`GRADUAL` for soft and gradual
    pruning (the very models of :func:`sfp_vs_hard_runs` and
    :func:`gradual_vs_oneshot_runs`). "structured 32 + distillation" gets exactly
    the budget of "structured 128 -> 32 neurons" (FINETUNE: same epochs, rate,
    batches, keep_best on validation); only its loss is the distillation loss
    (:data:`KD`). ``teacher_logits`` (the teacher's logits on the training
    split) may be passed to skip recomputing them.
    """
    check_int("seed", seed, 0)
    if teacher is None:
        teacher, _ = get_teacher_ensemble(data)
    base, _ = get_baseline(data, seed=seed)
    student, _ = get_student(data, seed=seed, teacher=teacher, **KD)

    def finetuned(model):
        _finetune(model, data, seed)

    made = {}
    for key, build, recipe in (
            ("masked", lambda: pruning.magnitude_prune(base, PRUNE_AMOUNT),
             {"amount": PRUNE_AMOUNT, **FINETUNE}),
            ("structured", lambda: pruning.remove_neurons(base, STRUCTURED_KEEP),
             {"keep": STRUCTURED_KEEP, **FINETUNE})):
        made[key] = _cached(f"compare-{key}", build, finetuned, data=data, base=base,
                            recipe=recipe, seed=seed, teacher=None)
    made["sfp"] = _soft_pruned("sfp", base, data, seed)
    made["gradual"] = _soft_pruned("gradual", base, data, seed)
    made["structured-kd"] = _structured_kd(data, base, teacher, KD["T"], KD["alpha"], seed,
                                           _teacher_logits(teacher, data, teacher_logits))
    masked, structured = made["masked"], made["structured"]
    return dict(zip(NAMES, (
        base, masked, make_permanent(masked), structured, made["sfp"],
        made["gradual"], student, made["structured-kd"], quantize_int8(base),
        quantize_int8(masked), quantize_int8(structured))))


def _cached(name: str, build, fit, *, data: Dataset, base: nn.Module, recipe: dict, seed: int,
            teacher: nn.Module | None) -> nn.Module:
    """``build()`` trained by ``fit(model)`` (in place), through the checkpoint
    cache, keyed on the data, the baseline's and teacher's weights, the recipe
    and the seed."""
    config = {"data": data.fingerprint, "base": model_fingerprint(base), "recipe": recipe,
              "seed": seed, "teacher": None if teacher is None else model_fingerprint(teacher)}

    def fit_record(model):
        fit(model)
        return {}

    model, _ = load_or_train(name, config, build, fit_record,
                             device=next(base.parameters()).device)
    return refresh_pruned_weights_(model)  # a loaded mask is multiplied in now


def sparsity_curves(base: nn.Module, data: Dataset, amounts: Sequence[float], *,
                    seed: int = 0, threads: int = LATENCY_THREADS,
                    min_run_time: float = 0.2) -> list[dict]:
    """Unstructured vs structured pruning of fc1 at each share in ``amounts``.

    For each amount: ``unstructured`` and ``structured``, the test accuracy
    after fine-tuning (:data:`CURVE_EPOCHS` epochs at FINETUNE's rate, the
    epoch kept chosen on validation) of fc1 pruned by single weights (mask
    removed, still dense) and by whole neurons (a smaller network); and
    ``unstructured_latency_ms`` / ``structured_latency_ms`` with their
    ``..._iqr_ms``, the batch-256 forward pass of each at ``threads`` threads.
    One seed (``seed``): a curve, not a comparison over seeds. ``base``: an
    MLP; ``amounts``: a non-empty sequence in [0, 1).
    """
    amounts = _amounts(amounts)
    if not isinstance(base, MLP):
        raise ValueError(f"base must be a helpers.models.MLP, got {type(base).__name__}")
    pruning._check_leaves_weights({"fc1": base.fc1}, max(amounts))
    check_int("seed", seed, 0)
    check_int("threads", threads, 1)
    _number("min_run_time", min_run_time, 0.0, low_open=True)
    _dataset(data)
    rows = []
    n = base.fc1.out_features
    for a in amounts:
        un = make_permanent(_finetune(pruning.magnitude_prune(base, a), data, seed,
                                      epochs=CURVE_EPOCHS))
        st = _finetune(pruning.remove_neurons(base, max(1, round(n * (1 - a)))), data, seed,
                       epochs=CURVE_EPOCHS)
        row = {"amount": float(a), "unstructured": _test(un, data),
               "structured": _test(st, data), "threads": threads}
        for key, m in (("unstructured", un), ("structured", st)):
            lat = metrics.latency(m, LATENCY_BATCHES[-1], threads=threads,
                                  min_run_time=min_run_time)
            row[f"{key}_latency_ms"] = lat["median_ms"]
            row[f"{key}_latency_iqr_ms"] = lat["iqr_ms"]
        rows.append(row)
    return rows
