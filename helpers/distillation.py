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
this loss. ``stacked_distillation_loss`` is the same loss for several
students trained together as one ``models.MLPStack`` (see
``experiments.train_students``).

Also here: the bias correction of Hinton et al.'s omitted-digit experiment.
"""
from __future__ import annotations

import copy
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from . import training
from ._util import check_float, check_int
from .data import Dataset


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
    device = training.get_device(train_kwargs.pop("device", None))
    if logits is None:
        logits = training.logits_of(teacher, data.X_train)  # on the teacher's device; not moved
    if logits.shape[0] != len(data.X_train):
        raise ValueError(f"logits must have one row per training sample ({len(data.X_train)}), "
                         f"got {logits.shape[0]}")
    targets = logits.detach().to(device)

    def kd_loss(model, xb, yb, idx):
        return distillation_loss(model(xb), targets[idx], yb, T=T, alpha=alpha)

    return training.train(student, data, epochs=epochs, lr=lr, optimizer="adam",
                          batch_size=batch_size, seed=seed, progress=progress, loss_fn=kd_loss,
                          device=device, **train_kwargs)


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
    z = training.logits_of(model, X)
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
    return (training.logits_of(model, X[sel]).argmax(1) == cls).float().mean().item()
