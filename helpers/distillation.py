"""Knowledge distillation (Hinton, Vinyals & Dean 2015, arXiv:1503.02531).

A small *student* learns from a trained *teacher*'s softened outputs
``p_T = softmax(z / T)`` as well as from the labels:

    L = alpha * T^2 * KL(p_T(teacher) || p_T(student)) + (1 - alpha) * CE(student, y)

The T^2 factor keeps the soft term's gradients at the same scale as T changes
(they shrink as 1/T^2 otherwise). The KL term is computed from log-softmaxes
with ``F.kl_div(..., log_target=True)``, which stays finite for any T > 0 and
any logits. The teacher is frozen and in eval mode; because the inputs do not
change from epoch to epoch, its logits are computed once.

Also here: the bias correction of Hinton et al.'s omitted-digit experiment.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from ._util import check_float, check_int, get_device
from .data import Dataset, batches
from .training import evaluate, logits_of, make_optimizer, train


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
            seed: int = 0, progress: bool = True, logits: torch.Tensor | None = None,
            device=None) -> list[dict]:
    """Train ``student`` in place to imitate ``teacher`` on ``data``'s training
    split; return the history (one dict per epoch, as ``training.train``).

    ``T`` > 0, ``alpha`` in [0, 1], ``epochs`` >= 1. The teacher is frozen
    (``requires_grad`` off during the call, restored after) and in eval mode;
    its logits on the training inputs are computed once, or taken from
    ``logits`` (N_train, classes) when given. Same ``seed``, same result.
    """
    T = _check_T(T)
    alpha = check_float("alpha", alpha, 0.0, 1.0)
    check_int("epochs", epochs, 1)
    check_float("lr", lr, 0.0, low_open=True)
    check_int("batch_size", batch_size, 1)
    check_int("seed", seed, 0)
    device = get_device(device)
    student.to(device)
    data = data.to(device)
    if logits is None:
        teacher.to(device)
        logits = logits_of(teacher, data.X_train)
    if logits.shape[0] != len(data.X_train):
        raise ValueError(f"logits must have one row per training sample ({len(data.X_train)}), "
                         f"got {logits.shape[0]}")
    logits = logits.to(device)
    opt = make_optimizer(student, "adam", lr)
    frozen = [(p, p.requires_grad) for p in teacher.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    index = torch.arange(len(data.X_train), device=device)
    history = []

    from tqdm.auto import tqdm

    bar = tqdm(range(1, epochs + 1), desc="distilling", disable=not progress, leave=False)
    try:
        for epoch in bar:
            student.train()
            start = time.perf_counter()
            total = torch.zeros((), device=device)
            for xb, ib in batches(data.X_train, index, batch_size, shuffle=True, generator=gen):
                loss = distillation_loss(student(xb), logits[ib], data.y_train[ib],
                                         T=T, alpha=alpha)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach() * len(ib)
            ev = evaluate(student, data.X_test, data.y_test)
            history.append({"epoch": epoch, "train_loss": total.item() / len(index),
                            "seconds": time.perf_counter() - start,
                            "test_accuracy": ev["accuracy"], "test_loss": ev["loss"]})
            bar.set_postfix(acc=f"{ev['accuracy']:.3f}")
    finally:
        bar.close()
        for p, flag in frozen:
            p.requires_grad_(flag)
    student.eval()
    return history


# --- Hinton's omitted-digit experiment ---------------------------------------

def without_class(data: Dataset, cls: int) -> Dataset:
    """``data`` with every training sample of class ``cls`` removed (test kept);
    its name says so (``"embedded-without-3"``), so caches keep them apart."""
    check_int("cls", cls, 0, len(data.classes) - 1)
    from dataclasses import replace

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
    """Return a copy of ``model`` whose last layer's bias for ``cls`` is raised by ``shift``."""
    import copy

    net = copy.deepcopy(model)
    last = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
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

STUDENT_RECIPE = {"hidden": 64, "epochs": 60, "lr": 1e-3, "batch_size": 64}


def get_student(data: Dataset, *, T: float = 4.0, alpha: float = 0.9, seed: int = 0,
                teacher: nn.Module | None = None, recipe: dict | None = None,
                progress: bool = False) -> tuple[nn.Module, dict]:
    """Return ``(student, record)``: a 784-64-10 MLP distilled from the kit's
    teacher (``checkpoints.get_teacher``) with ``T`` and ``alpha``, cached.

    ``alpha = 0`` is the student trained from the labels alone, through the
    same loop, seed and batches. ``record`` has ``history``, ``test_accuracy``
    and ``cached``. Pass ``teacher`` to reuse one already loaded (it must be the
    kit's teacher for ``data``, which the cache key assumes).
    """
    from .checkpoints import get_teacher, load_or_train
    from .models import mlp

    T, alpha = _check_T(T), check_float("alpha", alpha, 0.0, 1.0)
    recipe = {**STUDENT_RECIPE, **(recipe or {})}
    unknown = set(recipe) - set(STUDENT_RECIPE)
    if unknown:
        raise ValueError(f"recipe keys must be among {sorted(STUDENT_RECIPE)}, got {sorted(unknown)}")
    check_int("recipe['hidden']", recipe["hidden"], 1)
    check_int("recipe['epochs']", recipe["epochs"], 1)
    check_float("recipe['lr']", recipe["lr"], 0.0, low_open=True)
    check_int("recipe['batch_size']", recipe["batch_size"], 1)
    if alpha == 0:
        T = 1.0  # the temperature plays no part without the soft term
    config = {"model": mlp(recipe["hidden"], seed=seed).config, "data": data.name,
              "teacher": "kit-teacher", "recipe": recipe, "T": T, "alpha": alpha, "seed": seed}

    def fit(student):
        nonlocal teacher
        kwargs = {k: v for k, v in recipe.items() if k != "hidden"}
        if alpha == 0:  # labels only: the same loop, seed and batches, no teacher needed
            history = train(student, data, optimizer="adam", seed=seed, progress=progress,
                            **kwargs)
        else:
            if teacher is None:
                teacher, _ = get_teacher(data)
            history = distill(student, teacher, data, T=T, alpha=alpha, seed=seed,
                              progress=progress, **kwargs)
        return {"history": history, "test_accuracy": history[-1]["test_accuracy"]}

    return load_or_train("student", config, lambda: mlp(recipe["hidden"], seed=seed), fit)


def distillation_grid(data: Dataset, temperatures, alphas, *, seed: int = 0,
                      teacher: nn.Module | None = None) -> list[dict]:
    """One cached student per (T, alpha); return rows with ``T``, ``alpha``,
    ``test_accuracy`` and ``history``."""
    rows = []
    for T in temperatures:
        for alpha in alphas:
            _, rec = get_student(data, T=T, alpha=alpha, seed=seed, teacher=teacher)
            rows.append({"T": float(T), "alpha": float(alpha),
                         "test_accuracy": rec["test_accuracy"], "history": rec["history"]})
    return rows
