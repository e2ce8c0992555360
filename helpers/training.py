"""One training loop and one evaluation for every notebook.

``train`` optimises cross-entropy, optionally plus an L1 or L2 penalty on the
weights of the linear and convolutional layers:

    L1:  L = CE + lam * sum |w|        L2:  L = CE + lam * sum w^2

Data stay in memory; each step takes an index slice (see ``data.batches``).
Under a fixed ``seed`` the shuffling, and so the result, repeats exactly on the
same machine. ``get_device`` picks where models run (CUDA, then MPS, then CPU).

Training that diverges says so: the first non-finite batch loss stops ``train``
with a ``FloatingPointError`` naming the epoch, the batch and the likely cause,
and the model gets back the weights it had before the call.
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ._util import (check_bool, check_choice, check_finite, check_float, check_int, check_labels,
                    check_model, check_module, check_seed, check_tensor, refresh_pruned_weights_)
from .data import Dataset, batches
from .models import MLPStack

OPTIMIZERS = ("sgd", "adam")
EVAL_BATCH = 250  # rows per forward pass when evaluating: bounds the CNN's activation memory
PENALTIES = (None, "l1", "l2")
SCHEDULES = (None, "cosine")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def get_device(prefer: str | torch.device | None = None, *, name: str = "prefer") -> torch.device:
    """Return the device to use: ``prefer`` if given, else CUDA, then MPS, then CPU.

    ``prefer`` is a device name (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``,
    ``"meta"``, ...) or a ``torch.device``; a CUDA or MPS device must be present
    on this machine. ``name`` is what an error calls the argument.
    """
    if prefer is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    if not isinstance(prefer, (str, torch.device)):
        raise TypeError(f"{name} must be a device name such as 'cpu' or 'cuda', or a "
                        f"torch.device, got {type(prefer).__name__}")
    try:
        device = torch.device(prefer)
    except RuntimeError:
        raise ValueError(f"{name} must name a device such as 'cpu', 'cuda', 'cuda:0' or "
                         f"'mps', got {prefer!r}") from None
    present = {"cuda": torch.cuda.device_count(), "mps": int(_mps_available())}
    if device.type in present and (device.index or 0) >= present[device.type]:
        raise ValueError(f"{name} is {prefer!r}, but this machine has {present[device.type]} "
                         f"{device.type} device(s): use 'cpu' or None (the best present)")
    return device


def penalized_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weight tensors a penalty acts on: those of Linear and Conv2d layers."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def weight_penalty(model: nn.Module, kind: str) -> torch.Tensor:
    """Return sum |w| (``kind="l1"``) or sum w^2 (``kind="l2"``) over the weights."""
    check_module("model", model)
    check_choice("kind", kind, ("l1", "l2"))
    ws = penalized_weights(model)
    if kind == "l1":
        return sum(w.abs().sum() for w in ws)
    return sum(w.pow(2).sum() for w in ws)


def random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Shift a batch of images (B, C, H, W) by the same random offset of at most
    ``max_shift`` pixels along each axis (wrapping round the border, which is
    background in MNIST-like digits); ``max_shift`` >= 0."""
    check_int("max_shift", max_shift, 0)
    dy, dx = torch.randint(-max_shift, max_shift + 1, (2,), generator=generator).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


def make_optimizer(model: nn.Module, name: str, lr: float, momentum: float = 0.0):
    """Return an SGD or Adam optimiser over the model's trainable parameters."""
    check_choice("optimizer", name, OPTIMIZERS)
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    return torch.optim.Adam(params, lr=lr)


def _check_inputs(X) -> torch.Tensor:
    check_tensor("X", X, (2, 3, 4))
    if not X.is_floating_point():
        raise TypeError(f"X must be a floating-point tensor (images, normalised), got {X.dtype}")
    return X


@torch.no_grad()
def logits_of(model: nn.Module, X: torch.Tensor, *, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """The logits of ``model`` for all of ``X``, ``batch_size`` rows at a time
    (eval mode, no gradients; the model's mode is restored afterwards).

    ``model`` has at least one parameter (its device is where ``X`` goes);
    ``X`` is a floating-point tensor of at least one sample, (N, ...).
    """
    device = check_model("model", model).device
    _check_inputs(X)
    check_int("batch_size", batch_size, 1)
    was_training = model.training
    model.eval()
    try:  # rows are the second-to-last axis: (N, C), or (S, N, C) for an MLPStack
        return torch.cat([model(xb.to(device)) for xb, _ in
                          batches(X, torch.empty(len(X)), batch_size)], dim=-2)
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *,
             batch_size: int = EVAL_BATCH) -> dict:
    """Return ``{"accuracy": fraction correct, "loss": mean cross-entropy}`` on (X, y).

    ``y`` holds one class index per sample of ``X``, each in [0, C - 1] for a
    model of C outputs. For an :class:`~helpers.models.MLPStack` both results
    are lists, one per member. The model is put in eval mode for the pass and
    its mode restored afterwards.
    """
    check_model("model", model)
    _check_inputs(X)
    check_tensor("y", y)
    check_int("batch_size", batch_size, 1)
    out = logits_of(model, X, batch_size=batch_size)
    y = check_labels("y", y, out.shape[-1], len(X)).to(out.device)
    if out.dim() == 3:  # (S, N, C): one result per member of a stack
        return {"accuracy": [(pred == y).sum().item() / len(X) for pred in out.argmax(-1)],
                "loss": [F.cross_entropy(o, y).item() for o in out]}
    return {"accuracy": (out.argmax(1) == y).sum().item() / len(X),
            "loss": F.cross_entropy(out, y, reduction="sum").item() / len(X)}


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy_loss(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor,
                       idx: torch.Tensor) -> torch.Tensor:
    """The default batch loss: mean cross-entropy of ``model(xb)`` against ``yb``
    (for an :class:`~helpers.models.MLPStack`, one mean per member, shape (S,))."""
    out = model(xb)
    if out.dim() == 3:  # (S, B, C) against (S, B)
        return F.cross_entropy(out.transpose(1, 2), yb, reduction="none").mean(1)
    return F.cross_entropy(out, yb)


def _stacked_batches(n: int, batch_size: int, generators: list, device):
    """Index batches (S, B) for a stack: member m draws its own permutation
    from ``generators[m]``, exactly as a single model with that seed would."""
    order = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(device)
    for i in range(0, n, batch_size):
        yield order[:, i:i + batch_size]


def best_epoch(history: list[dict]) -> int:
    """The epoch (1-based) with the highest ``val_accuracy`` (the earliest on a tie)."""
    if not history or "val_accuracy" not in history[0]:
        raise ValueError("history must hold rows with 'val_accuracy' (train with "
                         "evaluate_each_epoch=True)")
    return max(history, key=lambda r: (r["val_accuracy"], -r["epoch"]))["epoch"]


def _all_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _divergence(xb, data_loss, epoch, batch, lr, penalty, lam, *,
                seen: str = "the loss is") -> FloatingPointError:
    """The error for a non-finite loss at ``batch`` of ``epoch`` (or what else is
    ``seen`` non-finite after it), naming the likely cause: data, lam or lr."""
    lower = f"lower lr (now {lr:g})" + (f" or lam (now {lam:g})" if penalty else "")
    if seen != "the loss is":
        cause = f"lr: the updates made the weights blow up; {lower}"
    elif not bool(torch.isfinite(xb).all()):
        cause = "data: the batch's inputs hold NaN or infinite values"
    elif bool(torch.isfinite(data_loss).all()):
        cause = f"lam: the {penalty} penalty times lam = {lam:g} is not finite; lower lam"
    elif epoch == 1 and batch == 1:
        cause = "data: the loss is not finite before any update; check the targets"
    else:
        cause = f"lr: the updates made the weights blow up; {lower}"
    return FloatingPointError(
        f"training diverged: {seen} not finite at epoch {epoch}, batch {batch}; likely cause "
        f"{cause}. The model keeps the weights it had before train was called.")


@contextlib.contextmanager
def _restored_on_error(model: nn.Module, device) -> Iterator[None]:
    """Give ``model`` back the weights, device and mode it had, if the block raises."""
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    mode = model.training
    try:
        yield
    except Exception as error:
        if list(model.state_dict()) != list(saved):
            error.add_note("The model could not be restored: its parameters changed names "
                           "during training (pruning masks added by on_epoch_end).")
        else:
            model.to(device).load_state_dict(saved)
            refresh_pruned_weights_(model)
            model.train(mode)
        raise


def _check_data(data, evaluate_each_epoch: bool) -> None:
    """Refuse a training split that cannot train: empty, labels out of range, NaN pixels."""
    if not isinstance(data, Dataset):
        raise ValueError(f"data must be a helpers.data.Dataset, got {type(data).__name__}")
    if not len(data.X_train):
        raise ValueError("data.X_train must hold at least one sample, got 0 (the training "
                         "split is empty)")
    splits = ("train", "val") if evaluate_each_epoch else ("train",)
    for split in splits:
        X = getattr(data, f"X_{split}")
        check_labels(f"data.y_{split}", getattr(data, f"y_{split}"), len(data.classes), len(X))
        check_finite(f"data.X_{split}", X)


def train(model: nn.Module, data: Dataset, *, epochs: int = 10, lr: float = 1e-3,
          optimizer: str = "adam", batch_size: int = 64, momentum: float = 0.0,
          penalty: str | None = None, lam: float = 0.0, seed: int | Sequence[int] = 0,
          augment: bool = False, schedule: str | None = None,
          evaluate_each_epoch: bool = True, keep_best: bool = False,
          progress: bool = False, loss_fn: LossFn | None = None,
          on_epoch_end: Callable[[nn.Module, int], dict | None] | None = None,
          device: str | torch.device | None = None) -> list[dict]:
    """Train ``model`` in place on ``data``'s training split; return the history.

    ``epochs`` >= 1; ``lr`` > 0; ``optimizer`` is ``"sgd"`` (with ``momentum`` in
    [0, 1)) or ``"adam"``; ``penalty`` is ``None``, ``"l1"`` or ``"l2"`` with
    weight ``lam`` >= 0. ``augment`` shifts each batch by up to 2 pixels in
    each direction (see :func:`random_shift`). ``schedule="cosine"`` lowers the
    learning rate from ``lr`` to 0 along a half cosine over all steps
    (``None``: constant).

    ``loss_fn(model, xb, yb, idx)`` is the batch loss (default: cross-entropy);
    ``idx`` holds the batch's row numbers in the training split, so a loss can
    look up per-sample targets computed once (distillation does).

    An :class:`~helpers.models.MLPStack` of S members trains with one seed per
    member (``seed`` a sequence of S ints): member m sees the batches a single
    model with ``seed[m]`` would see, ``loss_fn`` returns one loss per member
    (S,), and the history's ``train_loss``, ``val_accuracy`` and ``val_loss``
    are lists, one entry per member (no ``keep_best``, penalty or augment).

    The history holds one dict per epoch: ``epoch``; ``train_loss``, the mean
    of ``loss_fn`` over the epoch's samples (the penalty excluded);
    ``seconds``, the time of the epoch's updates (evaluation excluded); and,
    when ``evaluate_each_epoch``, ``val_accuracy`` and ``val_loss`` on the
    *validation* split. The test split is never read here. With ``keep_best``
    the model ends with the weights of :func:`best_epoch` (validation decides
    how many epochs to keep). The model ends on ``device`` (default: CUDA, MPS
    or CPU, whichever is present), in eval mode.

    ``on_epoch_end(model, epoch)``, if given, runs after each epoch's updates and
    before its evaluation, with the same optimiser kept across epochs (this is
    how soft and gradual pruning re-choose their masks); a dict it returns is
    merged into that epoch's history row.

    Bad arguments are refused before the model is touched: an empty training
    split, labels outside [0, len(data.classes) - 1], NaN or infinite pixels,
    a model without trainable parameters or with non-finite weights, ``seed``
    outside [0, 2**32 - 1]. A batch whose loss is not finite stops training
    with a ``FloatingPointError`` naming the epoch, the batch and the likely
    cause (data, ``lr`` or ``lam``). If ``train`` raises, the model gets back
    the weights, device and mode it had before the call (a ``KeyboardInterrupt``
    keeps the weights reached so far).
    """
    home = check_model("model", model)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"model must have trainable parameters, {type(model).__name__} has none")
    if not _all_finite(model):
        raise ValueError("model must have finite weights, it holds NaN or infinite values")
    for name, flag in (("augment", augment), ("evaluate_each_epoch", evaluate_each_epoch),
                       ("keep_best", keep_best), ("progress", progress)):
        check_bool(name, flag)
    _check_data(data, evaluate_each_epoch)
    check_int("epochs", epochs, 1)
    check_float("lr", lr, 0.0, low_open=True)
    check_int("batch_size", batch_size, 1)
    check_float("momentum", momentum, 0.0, 1.0, high_open=True)
    check_choice("penalty", penalty, PENALTIES)
    check_float("lam", lam, 0.0)
    stacked = isinstance(model, MLPStack)
    if stacked:
        seeds = list(seed) if isinstance(seed, (list, tuple)) else None
        if seeds is None or len(seeds) != model.size:
            raise ValueError(f"seed must be a sequence of {model.size} seeds for a stack of "
                             f"{model.size} members, got {seed!r}")
        for s in seeds:
            check_seed("seed", s)
        if keep_best or penalty or augment:
            raise ValueError("keep_best, penalty and augment are not available for an MLPStack")
    else:
        check_seed("seed", seed)
    check_choice("schedule", schedule, SCHEDULES)
    for name, fn in (("loss_fn", loss_fn), ("on_epoch_end", on_epoch_end)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be a function or None, got {type(fn).__name__}")
    if penalty is None and lam != 0:
        raise ValueError(f"lam must be 0 when penalty is None, got {lam!r}")
    if keep_best and not evaluate_each_epoch:
        raise ValueError("keep_best needs evaluate_each_epoch=True (validation picks the epoch)")
    loss_fn = cross_entropy_loss if loss_fn is None else loss_fn
    device = get_device(device, name="device")

    with _restored_on_error(model, home.device):
        model.to(device)
        data = data.to(device)
        opt = make_optimizer(model, optimizer, lr, momentum)
        steps = epochs * -(-len(data.X_train) // batch_size)
        sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
                 if schedule == "cosine" else None)
        if stacked:
            gens = [torch.Generator().manual_seed(s) for s in seeds]
        else:
            gen = torch.Generator().manual_seed(seed)
        index = torch.arange(len(data.X_train), device=device)
        history, best = [], None

        bar = tqdm(range(1, epochs + 1), desc="epochs", disable=not progress, leave=False)
        for epoch in bar:
            model.train()
            start = time.perf_counter()
            total = torch.zeros(model.size if stacked else (), device=device)
            steps = ((data.X_train[idx], idx) for idx in
                     _stacked_batches(len(index), batch_size, gens, device)) if stacked else \
                batches(data.X_train, index, batch_size, shuffle=True, generator=gen)
            for batch, (xb, idx) in enumerate(steps, 1):
                if augment:
                    xb = random_shift(xb, gen)
                opt.zero_grad(set_to_none=True)
                data_loss = loss_fn(model, xb, data.y_train[idx], idx)  # (S,) for a stack
                loss = data_loss.sum() if stacked else data_loss
                if penalty:
                    loss = loss + lam * weight_penalty(model, penalty)
                if not math.isfinite(loss.item()):  # a sync per step: microseconds on a CPU
                    raise _divergence(xb, data_loss, epoch, batch, lr, penalty, lam)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                total += data_loss.detach() * idx.shape[-1]
            mean_loss = total / len(index)
            row = {"epoch": epoch,
                   "train_loss": mean_loss.tolist() if stacked else mean_loss.item(),
                   "seconds": time.perf_counter() - start}
            if on_epoch_end is not None:
                row.update(on_epoch_end(model, epoch) or {})
            if evaluate_each_epoch:
                ev = evaluate(model, data.X_val, data.y_val)
                if not all(map(math.isfinite, ev["loss"] if stacked else [ev["loss"]])):
                    raise _divergence(xb, data_loss, epoch, batch, lr, penalty, lam,
                                      seen="the validation loss is")
                row.update(val_accuracy=ev["accuracy"], val_loss=ev["loss"])
                if not stacked:
                    bar.set_postfix(loss=f"{row['train_loss']:.3f}", val=f"{ev['accuracy']:.3f}")
                if keep_best and (best is None or ev["accuracy"] > best[0]):
                    best = (ev["accuracy"], copy.deepcopy(model.state_dict()))
            history.append(row)
        bar.close()
        if not _all_finite(model):  # the very last step: no loss after it to see it
            raise _divergence(xb, data_loss, epochs, batch, lr, penalty, lam,
                              seen="the weights are")
        if keep_best:
            model.load_state_dict(best[1])
        # A masked weight is stale after an optimiser step (or a load) until the
        # next forward pass: leave the model as that pass will see it.
        refresh_pruned_weights_(model)
        model.eval()
        return history
