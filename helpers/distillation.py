"""Knowledge distillation (Hinton, Vinyals & Dean 2015, arXiv:1503.02531).

A small *student* learns from a trained *teacher*'s softened outputs
``p_T = softmax(z / T)`` as well as from the labels:

    L = alpha * T^2 * KL(p_T(teacher) || p_T(student)) + (1 - alpha) * CE(student, y)

The T^2 factor keeps the soft term's gradients at the same scale as T changes
(they shrink as 1/T^2 otherwise). The KL term is computed from log-softmaxes
with ``F.kl_div(..., log_target=True)``, each logit's row maximum subtracted
before dividing by T, so it stays finite however small T is. T is at most
``T_MAX`` (100): as T grows p_T nears uniform and float32 rounding takes over
the soft term (off by about 1e-4 of its value at T = 100, 1e-2 at 1000).

The teacher only answers: its logits on the training inputs are computed
once, in eval mode and without gradients (the inputs do not change from
epoch to epoch), and the student trains through ``training.train`` with
this loss. ``stacked_distillation_loss`` is the same loss for several
students trained together as one ``models.MLPStack`` (see
``experiments.train_students``).

Also here: the bias correction of Hinton et al.'s omitted-digit experiment.
"""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from . import training
from ._util import check_finite, check_float, check_int, check_labels, check_module, check_tensor
from .data import Dataset
from .models import clone

T_MAX = 100.0  # float32 keeps the loss within 1e-4 of float64 up to here (at 1e3: 1e-2)
PROB_TOL = 1e-3  # how far from 1 a row of probabilities may sum


def _check_T(T) -> float:
    return check_float("T", T, 0.0, T_MAX, low_open=True)


def _scaled(logits: torch.Tensor, T) -> torch.Tensor:
    """``(logits - row max) / T``: at most 0, so no T > 0 overflows it to +inf
    (T is kept above the dtype's smallest normal number, where 0 / T is 0)."""
    d = logits - logits.amax(-1, keepdim=True).detach()  # softmax ignores the shift
    tiny = torch.finfo(d.dtype).tiny
    return d / (T.clamp_min(tiny) if isinstance(T, torch.Tensor) else max(T, tiny))


def _check_logits(name: str, logits) -> torch.Tensor:
    check_tensor(name, logits)
    if not logits.is_floating_point() or logits.dim() == 0 or logits.shape[-1] == 0:
        raise ValueError(f"{name} must be a floating-point tensor with classes on its last "
                         f"axis, got {logits.dtype} of shape {tuple(logits.shape)}")
    return logits


def soft_targets(logits: torch.Tensor, T: float) -> torch.Tensor:
    """Return ``softmax(logits / T)`` along the last axis; ``T`` > 0 (any size:
    a tiny T gives the one-hot of the argmax), ``logits`` finite."""
    T = check_float("T", T, 0.0, low_open=True)
    check_finite("logits", _check_logits("logits", logits))
    return torch.softmax(_scaled(logits, T), dim=-1)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in bits of each probability vector (last axis).

    ``probs`` holds finite entries >= 0, each row summing to 1 (within 1e-3).
    """
    _check_logits("probs", probs)
    check_finite("probs", probs)
    if bool((probs < 0).any()):
        raise ValueError(f"probs must hold probabilities in [0, 1], got a minimum of "
                         f"{probs.min().item():g}")
    sums = probs.sum(-1).flatten()
    worst = sums[(sums - 1).abs().argmax()].item()
    if abs(worst - 1) > PROB_TOL:
        raise ValueError(f"probs must sum to 1 along the last axis (within {PROB_TOL:g}), "
                         f"got a row summing to {worst:g}")
    p = probs.clamp_min(1e-30)
    return -(probs * p.log2()).sum(-1)


def _soft_term(student_logits, teacher_logits, T) -> torch.Tensor:
    """T^2 KL(p_T(teacher) || p_T(student)) of each row (the last axis summed).

    Log-probabilities below the dtype's lowest number (a tiny T) are clamped
    there, and T multiplies each term before the sum, so nothing overflows:
    as T -> 0 the term goes to 0 like T times the gap between the logits.
    """
    lowest = torch.finfo(student_logits.dtype).min
    ls = F.log_softmax(_scaled(student_logits, T), dim=-1).clamp_min(lowest)
    lt = F.log_softmax(_scaled(teacher_logits, T), dim=-1).clamp_min(lowest)
    return (T * (T * F.kl_div(ls, lt, log_target=True, reduction="none"))).sum(-1)


def _check_batch(student_logits, teacher_logits, labels, shape: str) -> None:
    """Refuse logits of another shape than ``shape`` ("(B, C)" or "(S, B, C)"),
    a teacher of another shape than the student, labels not one per row."""
    dims = shape.count(",") + 1
    _check_logits("student_logits", student_logits)
    if student_logits.dim() != dims:
        raise ValueError(f"student_logits must have shape {shape}, got "
                         f"{tuple(student_logits.shape)}")
    _check_logits("teacher_logits", teacher_logits)
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher_logits must have the shape of student_logits "
                         f"{tuple(student_logits.shape)}, got {tuple(teacher_logits.shape)}")
    check_tensor("labels", labels)
    if labels.shape != student_logits.shape[:-1]:
        raise ValueError(f"labels must have shape {tuple(student_logits.shape[:-1])} (one per "
                         f"row of student_logits), got {tuple(labels.shape)}")
    check_labels("labels", labels.reshape(-1), student_logits.shape[-1])


def _loss(student_logits, teacher_logits, labels, T: float, alpha: float) -> torch.Tensor:
    ce = F.cross_entropy(student_logits, labels)
    if alpha == 0:
        return ce
    soft = _soft_term(student_logits, teacher_logits, T).mean()
    return alpha * soft + (1 - alpha) * ce


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      labels: torch.Tensor, *, T: float, alpha: float) -> torch.Tensor:
    """Hinton et al.'s loss, averaged over the batch.

    ``alpha * T**2 * KL(p_T(teacher) || p_T(student)) + (1 - alpha) * CE``
    with ``T`` in (0, ``T_MAX``] and ``alpha`` in [0, 1]; both logits (B, C),
    ``labels`` (B,) class indices in [0, C - 1]. At ``alpha = 0`` it is plain
    cross-entropy on the labels. Finite for finite logits, however small T.
    """
    T = _check_T(T)
    alpha = check_float("alpha", alpha, 0.0, 1.0)
    _check_batch(student_logits, teacher_logits, labels, "(B, C)")
    return _loss(student_logits, teacher_logits, labels, T, alpha)


def stacked_distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                              labels: torch.Tensor, *, T: torch.Tensor,
                              alpha: torch.Tensor) -> torch.Tensor:
    """:func:`distillation_loss` for S students at once, each with its own T and
    alpha: logits (S, B, C), labels (S, B), ``T`` (S,) in (0, ``T_MAX``] and
    ``alpha`` (S,) in [0, 1]; returns the S losses, each averaged over its batch."""
    _check_batch(student_logits, teacher_logits, labels, "(S, B, C)")
    S = len(student_logits)
    for name, v, low, high in (("T", T, "(0", T_MAX), ("alpha", alpha, "[0", 1.0)):
        check_tensor(name, v, (1,))
        inside = (v > 0) if name == "T" else (v >= 0)
        if len(v) != S or not bool((inside & (v <= high)).all()):
            raise ValueError(f"{name} must hold {S} values (one per student) in "
                             f"{low}, {high:g}], got {v.tolist()}")
    ce = F.cross_entropy(student_logits.transpose(1, 2), labels, reduction="none").mean(1)
    soft = _soft_term(student_logits, teacher_logits, T.view(-1, 1, 1)).mean(1)
    return alpha * soft + (1 - alpha) * ce


def distill(student: nn.Module, teacher: nn.Module, data: Dataset, *, T: float = 4.0,
            alpha: float = 0.9, epochs: int = 60, lr: float = 1e-3, batch_size: int = 64,
            seed: int = 0, progress: bool = False, logits: torch.Tensor | None = None,
            **train_kwargs) -> list[dict]:
    """Train ``student`` in place to imitate ``teacher`` on ``data``'s training
    split; return the history of ``training.train`` (``train_loss`` is the mean
    distillation loss).

    ``T`` in (0, ``T_MAX``], ``alpha`` in [0, 1], ``epochs`` >= 1. The
    teacher's logits on the training inputs are computed once, in eval mode
    under ``no_grad`` (so the teacher is never changed), or taken from
    ``logits`` (N_train, classes) when given; either way they must be finite.
    Other keyword arguments (``keep_best``, ``on_epoch_end``, ``device``, ...)
    go to ``training.train``, except ``augment``: a shifted batch would be
    matched with the teacher's logits of the unshifted images. Same ``seed``,
    same result.
    """
    T = _check_T(T)
    alpha = check_float("alpha", alpha, 0.0, 1.0)
    check_module("student", student)
    if not isinstance(data, Dataset):
        raise ValueError(f"data must be a helpers.data.Dataset, got {type(data).__name__}")
    if train_kwargs.get("augment"):
        raise ValueError("augment must be False for distill: the teacher's logits are computed "
                         "once, on the unshifted training images, so a shifted batch would be "
                         "matched with the wrong targets")
    device = training.get_device(train_kwargs.pop("device", None), name="device")
    name = "logits"
    if logits is None:
        name = "the teacher's logits on data.X_train"
        logits = training.logits_of(teacher, data.X_train)  # on the teacher's device; not moved
    _check_logits("logits", logits)
    n, c = len(data.X_train), len(data.classes)
    if logits.shape != (n, c):
        raise ValueError(f"logits must have shape ({n}, {c}): one row per training sample, "
                         f"one column per class; got {tuple(logits.shape)}")
    check_finite(name, logits)
    targets = logits.detach().to(device)

    def kd_loss(model, xb, yb, idx):
        out, target = model(xb), targets[idx]
        if out.shape != target.shape:
            raise ValueError(f"student must output one logit per class, shape "
                             f"{tuple(target.shape)} as the teacher's; got {tuple(out.shape)}")
        return _loss(out, target, yb, T, alpha)

    return training.train(student, data, epochs=epochs, lr=lr, optimizer="adam",
                          batch_size=batch_size, seed=seed, progress=progress, loss_fn=kd_loss,
                          device=device, **train_kwargs)


# --- Hinton's omitted-digit experiment ---------------------------------------

def without_class(data: Dataset, cls: int) -> Dataset:
    """``data`` with every training sample of class ``cls`` removed (test kept);
    its name says so (``"embedded-without-3"``), so caches keep them apart.
    ``cls`` in [0, len(data.classes) - 1]."""
    if not isinstance(data, Dataset):
        raise ValueError(f"data must be a helpers.data.Dataset, got {type(data).__name__}")
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
    net = clone(model)  # copy.deepcopy refuses a freshly pruned model
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
    """Share of the samples of class ``cls`` in (X, y) that ``model`` labels ``cls``;
    ``y`` holds one label per row of ``X``, and at least one is ``cls``."""
    check_int("cls", cls, 0)
    check_tensor("X", X)
    check_tensor("y", y, (1,))
    if len(y) != len(X):
        raise ValueError(f"y must hold one label per row of X ({len(X)}), got {len(y)}")
    sel = y == cls
    if not bool(sel.any()):
        raise ValueError(f"y must contain class {cls}, it does not")
    return (training.logits_of(model, X[sel]).argmax(1) == cls).float().mean().item()
