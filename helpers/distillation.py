"""Knowledge distillation (Hinton, Vinyals & Dean 2015, arXiv:1503.02531).

A small *student* learns from a trained *teacher*'s softened outputs
``p_T = softmax(z / T)`` as well as from the labels:

    L = alpha * T^2 * KL(p_T(teacher) || p_T(student)) + (1 - alpha) * CE(student, y)

The T^2 factor keeps the soft term's gradients at the same scale as T changes
(they shrink as 1/T^2 otherwise). The KL term is computed from log-softmaxes
with ``F.kl_div(..., log_target=True)``, which stays finite for any T > 0 and
any logits. The teacher only answers: its logits on the training inputs are
computed once, in eval mode and without gradients (the inputs do not change
from epoch to epoch), and the student trains through ``training.train`` with
this loss. Students of several seeds, or of several (T, alpha), train
together as one ``models.MLPStack`` (``train_students``).

Also here: the bias correction of Hinton et al.'s omitted-digit experiment.
"""
from __future__ import annotations

import copy
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from ._util import check_float, check_int, get_device
from .checkpoints import (SEEDS, final_record, get_teacher_ensemble, load_checkpoint,
                          model_fingerprint, save_checkpoint)
from .data import Dataset
from .models import MLPStack, mlp
from .training import best_epoch, evaluate, logits_of, train


def _check_T(T) -> float:
    return check_float("T", T, 0.0, low_open=True)


def soft_targets(logits: torch.Tensor, T: float) -> torch.Tensor:
    """Return ``softmax(logits / T)`` along the last axis; ``T`` > 0."""
    return torch.softmax(logits / _check_T(T), dim=-1)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in bits of each probability vector (last axis)."""
    p = probs.clamp_min(1e-30)
    return -(probs * p.log2()).sum(-1)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      labels: torch.Tensor, *, T: float, alpha: float) -> torch.Tensor:
    """Hinton et al.'s loss, averaged over the batch.

    ``alpha * T**2 * KL(p_T(teacher) || p_T(student)) + (1 - alpha) * CE``
    with ``T`` > 0 and ``alpha`` in [0, 1]. At ``alpha = 0`` it is plain
    cross-entropy on the labels.
    """
    T = _check_T(T)
    alpha = check_float("alpha", alpha, 0.0, 1.0)
    ce = F.cross_entropy(student_logits, labels)
    if alpha == 0:
        return ce
    kl = F.kl_div(F.log_softmax(student_logits / T, dim=-1),
                  F.log_softmax(teacher_logits / T, dim=-1),
                  log_target=True, reduction="batchmean")
    return alpha * T * T * kl + (1 - alpha) * ce


def distill(student: nn.Module, teacher: nn.Module, data: Dataset, *, T: float = 4.0,
            alpha: float = 0.9, epochs: int = 60, lr: float = 1e-3, batch_size: int = 64,
            seed: int = 0, progress: bool = False, logits: torch.Tensor | None = None,
            **train_kwargs) -> list[dict]:
    """Train ``student`` in place to imitate ``teacher`` on ``data``'s training
    split; return the history of ``training.train`` (``train_loss`` is the mean
    distillation loss).

    ``T`` > 0, ``alpha`` in [0, 1], ``epochs`` >= 1. The teacher's logits on
    the training inputs are computed once, in eval mode under ``no_grad`` (so
    the teacher is never changed), or taken from ``logits`` (N_train, classes)
    when given. Other keyword arguments (``keep_best``, ``on_epoch_end``,
    ``device``, ...) go to ``training.train``. Same ``seed``, same result.
    """
    T = _check_T(T)
    alpha = check_float("alpha", alpha, 0.0, 1.0)
    device = get_device(train_kwargs.pop("device", None))
    if logits is None:
        logits = logits_of(teacher, data.X_train)  # on the teacher's device; not moved
    if logits.shape[0] != len(data.X_train):
        raise ValueError(f"logits must have one row per training sample ({len(data.X_train)}), "
                         f"got {logits.shape[0]}")
    targets = logits.detach().to(device)

    def kd_loss(model, xb, yb, idx):
        return distillation_loss(model(xb), targets[idx], yb, T=T, alpha=alpha)

    return train(student, data, epochs=epochs, lr=lr, optimizer="adam", batch_size=batch_size,
                 seed=seed, progress=progress, loss_fn=kd_loss, device=device, **train_kwargs)


# --- Hinton's omitted-digit experiment ---------------------------------------

def without_class(data: Dataset, cls: int) -> Dataset:
    """``data`` with every training sample of class ``cls`` removed (test kept);
    its name says so (``"embedded-without-3"``), so caches keep them apart."""
    check_int("cls", cls, 0, len(data.classes) - 1)
    keep = data.y_train != cls
    return replace(data, name=f"{data.name}-without-{cls}", X_train=data.X_train[keep],
                   y_train=data.y_train[keep])


@torch.no_grad()
def bias_for_prior(model: nn.Module, X: torch.Tensor, cls: int, prior: float, *,
                   iters: int = 60) -> float:
    """The shift of the output bias of class ``cls`` after which the model's
    mean predicted probability of ``cls`` over the unlabelled inputs ``X`` equals
    ``prior`` (in (0, 1)); found by bisection.

    A student that was never rewarded for predicting ``cls`` underrates it by a
    roughly constant log-odds offset; knowing only how common the class is (and
    some unlabelled inputs, no labels), this offset can be estimated.
    """
    check_int("cls", cls, 0)
    prior = check_float("prior", prior, 0.0, 1.0, low_open=True, high_open=True)
    check_int("iters", iters, 1)
    z = logits_of(model, X)
    if cls >= z.shape[1]:
        raise ValueError(f"cls must be < {z.shape[1]} (the number of classes), got {cls}")
    lo, hi = -50.0, 50.0
    for _ in range(iters):  # the mean probability of cls grows with the shift
        mid = (lo + hi) / 2
        shifted = z.clone()
        shifted[:, cls] += mid
        if torch.softmax(shifted, -1)[:, cls].mean() < prior:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def shift_bias(model: nn.Module, cls: int, shift: float) -> nn.Module:
    """Return a copy of ``model`` whose last layer's bias for ``cls`` is raised by ``shift``.

    The last layer is the last module with a ``bias`` vector (an ``nn.Linear``
    or a quantised linear layer); a model without one raises ValueError.
    """
    net = copy.deepcopy(model)
    layers = [m for m in net.modules()
              if isinstance(getattr(m, "bias", None), torch.Tensor) and m.bias.dim() == 1]
    if not layers:
        raise ValueError(f"model must end in a layer with a bias vector, "
                         f"{type(model).__name__} has none")
    last = layers[-1]
    check_float("shift", shift, float("-inf"))
    check_int("cls", cls, 0, last.out_features - 1)
    with torch.no_grad():
        last.bias[cls] += float(shift)
    return net


@torch.no_grad()
def class_recall(model: nn.Module, X: torch.Tensor, y: torch.Tensor, cls: int) -> float:
    """Share of the samples of class ``cls`` in (X, y) that ``model`` labels ``cls``."""
    sel = y == cls
    if not bool(sel.any()):
        raise ValueError(f"y must contain class {cls}, it does not")
    return (logits_of(model, X[sel]).argmax(1) == cls).float().mean().item()


# --- cached students -----------------------------------------------------------

# The student: a 784-64-10 MLP (4x fewer parameters than the CNN teacher),
# trained as long as distillation needs (Beyer et al. 2022: be patient).
STUDENT_RECIPE = {"hidden": 64, "epochs": 60, "lr": 1e-3, "batch_size": 64}


def stacked_distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                              labels: torch.Tensor, *, T: torch.Tensor,
                              alpha: torch.Tensor) -> torch.Tensor:
    """:func:`distillation_loss` for S students at once, each with its own T and
    alpha: logits (S, B, C), labels (S, B), ``T`` and ``alpha`` (S,); returns
    the S losses, each averaged over its batch."""
    ce = F.cross_entropy(student_logits.transpose(1, 2), labels, reduction="none").mean(1)
    t = T.view(-1, 1, 1)
    kl = F.kl_div(F.log_softmax(student_logits / t, dim=-1),
                  F.log_softmax(teacher_logits / t, dim=-1),
                  log_target=True, reduction="none").sum(-1).mean(1)
    return alpha * T * T * kl + (1 - alpha) * ce


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
    checked = []
    for T, a, s in specs:
        T, a = _check_T(T), check_float("alpha", a, 0.0, 1.0)
        checked.append((1.0 if a == 0 else T, a, check_int("seed", s, 0)))  # T unused at 0
    specs = checked
    if not specs:
        raise ValueError("specs must hold at least one (T, alpha, seed)")
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
    if todo:
        for i, pair in zip(todo, _train_stack(data, [specs[i] for i in todo], teacher, recipe)):
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
    history = train(stack, data, optimizer="adam", seed=[s for _, _, s in specs], loss_fn=loss,
                    evaluate_each_epoch=False, on_epoch_end=validate, device=device, **kwargs)
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


def get_students(data: Dataset, *, seeds=SEEDS, T: float = 4.0, alpha: float = 0.9,
                 teacher: nn.Module | None = None,
                 recipe: dict | None = None) -> list[tuple[nn.Module, dict]]:
    """The students of ``seeds`` with one T and alpha (see :func:`train_students`),
    trained together when not cached."""
    return train_students(data, [(T, alpha, s) for s in seeds], teacher=teacher, recipe=recipe)


def distillation_grid(data: Dataset, temperatures, alphas, *, seed: int = 0,
                      teacher: nn.Module | None = None, recipe: dict | None = None) -> list[dict]:
    """One cached student per (T, alpha); return rows with ``T``, ``alpha``,
    ``val_accuracy`` and ``val_loss`` (the last epoch's, on the validation
    split: what a choice may read), ``test_accuracy`` and ``history``."""
    pairs = [(float(T), float(alpha)) for T in temperatures for alpha in alphas]
    students = train_students(data, [(T, a, seed) for T, a in pairs], teacher=teacher,
                              recipe=recipe)
    rows = []
    for (T, alpha), (_, rec) in zip(pairs, students):
        rows.append({"T": T, "alpha": alpha,
                     "val_accuracy": rec["history"][-1]["val_accuracy"],
                     "val_loss": rec["history"][-1]["val_loss"],
                     "test_accuracy": rec["test_accuracy"], "history": rec["history"]})
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
    if not rows:
        raise ValueError("rows must hold at least one distillation_grid row")
    best = min(rows, key=lambda r: (r["val_loss"], r["T"], r["alpha"]))
    return best["T"], best["alpha"]
