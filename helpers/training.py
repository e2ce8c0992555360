"""The training loop and the evaluation every notebook uses.

``train`` minimises a batch loss (default: cross-entropy), optionally plus an
L1 or L2 penalty on the Linear and Conv2d weights:

    L1:  L = CE + lam * sum |w|        L2:  L = CE + lam * sum w^2

``train_stack`` trains the members of a ``models.MLPStack`` side by side, one
seed each. Batches are index slices of in-memory tensors, so a fixed seed
repeats a run exactly on one machine.
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

    ``prefer``: a device name (``"cpu"``, ``"cuda:1"``, ``"mps"``, ``"meta"``, ...)
    or a ``torch.device``, CUDA and MPS only if present; ``name``: what errors call it.
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
    """Return the weight tensors a penalty acts on: those of Linear and Conv2d layers."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def weight_penalty(model: nn.Module, kind: str) -> torch.Tensor:
    """Return sum |w| (``kind="l1"``) or sum w^2 (``kind="l2"``) over
    :func:`penalized_weights`, a scalar tensor."""
    check_module("model", model)
    check_choice("kind", kind, ("l1", "l2"))
    ws = penalized_weights(model)
    if kind == "l1":
        return sum(w.abs().sum() for w in ws)
    return sum(w.pow(2).sum() for w in ws)


def random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Return the images ``x`` (..., H, W) rolled by one random offset of up to
    ``max_shift`` >= 0 pixels per axis (the border wraps: it is background in digits)."""
    check_int("max_shift", max_shift, 0)
    dy, dx = torch.randint(-max_shift, max_shift + 1, (2,), generator=generator).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


def make_optimizer(model: nn.Module, name: str, lr: float, momentum: float = 0.0):
    """Return an SGD or Adam optimiser over the model's trainable parameters.

    ``name``: "sgd" (with ``momentum``) or "adam"; ``lr`` and ``momentum`` go to torch."""
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
    """Return the logits of ``model`` for ``X`` (N, ...): (N, C), or (S, N, C) for a stack.

    ``model`` has a parameter (its device is where ``X`` goes); ``X`` is a float tensor
    of N >= 1 samples, ``batch_size`` >= 1 rows a pass; eval mode, then the mode it had.
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

    ``y``: one class index in [0, C - 1] per sample of ``X``, for C outputs. For an
    :class:`~helpers.models.MLPStack` both are lists, one per member. Eval mode, then
    the mode it had.
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
    """Return the default batch loss: the mean cross-entropy of ``model(xb)`` against
    ``yb``, a scalar, or (S,) for an :class:`~helpers.models.MLPStack` (one per member)."""
    out = model(xb)
    if out.dim() == 3:  # (S, B, C) against (S, B)
        return F.cross_entropy(out.transpose(1, 2), yb, reduction="none").mean(1)
    return F.cross_entropy(out, yb)


EpochHook = Callable[[nn.Module, int], "dict | None"]


def _stacked_batches(n: int, batch_size: int, generators: list, device):
    """Yield index batches (S, B) for a stack: member m draws its own permutation
    from ``generators[m]``, exactly as a single model with that seed would."""
    order = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(device)
    for i in range(0, n, batch_size):
        yield order[:, i:i + batch_size]


def best_epoch(history: list[dict]) -> int:
    """Return the epoch (1-based) with the highest ``val_accuracy`` (the earliest on a tie)."""
    if not history or "val_accuracy" not in history[0]:
        raise ValueError("history must hold rows with 'val_accuracy' (train with "
                         "evaluate_each_epoch=True)")
    return max(history, key=lambda r: (r["val_accuracy"], -r["epoch"]))["epoch"]


def _all_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _divergence(xb, data_loss, epoch, batch, lr, penalty, lam, *,
                seen: str = "the loss is") -> FloatingPointError:
    """Return the error for a non-finite loss at ``batch`` of ``epoch`` (or what else
    is ``seen`` non-finite after it), naming the likely cause: data, lam or lr."""
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


def _check_train_args(model, data, seed, device, *, stack: bool, epochs, lr, batch_size,
                      momentum, schedule, evaluate_each_epoch, progress, loss_fn, on_epoch_end,
                      penalty=None, lam=0.0, augment=False, keep_best=False
                      ) -> tuple[torch.device, torch.device]:
    """Return ``(the device model is on, the device to train on)`` once the arguments
    of :func:`train` (or, with ``stack``, of :func:`train_stack`, whose ``seeds`` is
    ``seed``) are good; else raise ValueError or TypeError, the model untouched."""
    name = "stack" if stack else "model"
    home = check_model(name, model)
    if stack and not isinstance(model, MLPStack):
        raise TypeError(f"stack must be a helpers.models.MLPStack, got {type(model).__name__}")
    if not stack and isinstance(model, MLPStack):
        raise ValueError("model is an MLPStack: train it with train_stack(model, data, "
                         "seeds=[...]), one seed per member")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"{name} must have trainable parameters, {type(model).__name__} has none")
    if not _all_finite(model):
        raise ValueError(f"{name} must have finite weights, it holds NaN or infinite values")
    for arg, flag in (("augment", augment), ("evaluate_each_epoch", evaluate_each_epoch),
                      ("keep_best", keep_best), ("progress", progress)):
        check_bool(arg, flag)
    _check_data(data, evaluate_each_epoch)
    check_int("epochs", epochs, 1)
    check_float("lr", lr, 0.0, low_open=True)
    check_int("batch_size", batch_size, 1)
    check_float("momentum", momentum, 0.0, 1.0, high_open=True)
    check_choice("penalty", penalty, PENALTIES)
    check_float("lam", lam, 0.0)
    if not stack:
        check_seed("seed", seed)
    elif not isinstance(seed, (list, tuple)) or len(seed) != model.size:
        raise ValueError(f"seeds must be a sequence of {model.size} seeds for a stack of "
                         f"{model.size} members, got {seed!r}")
    else:
        for i, s in enumerate(seed):
            check_seed(f"seeds[{i}]", s)
    check_choice("schedule", schedule, SCHEDULES)
    for arg, fn in (("loss_fn", loss_fn), ("on_epoch_end", on_epoch_end)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{arg} must be a function or None, got {type(fn).__name__}")
    if penalty is None and lam != 0:
        raise ValueError(f"lam must be 0 when penalty is None, got {lam!r}")
    if keep_best and not evaluate_each_epoch:
        raise ValueError("keep_best needs evaluate_each_epoch=True (validation picks the epoch)")
    return home.device, get_device(device, name="device")


def _start(model, data, device, optimizer, lr, momentum, schedule, epochs, batch_size):
    """Return ``(data, optimiser, scheduler or None)``, ``model`` and ``data`` on ``device``."""
    model.to(device)
    data = data.to(device)
    opt = make_optimizer(model, optimizer, lr, momentum)
    steps = epochs * -(-len(data.X_train) // batch_size)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
             if schedule == "cosine" else None)
    return data, opt, sched


def _update_(opt, sched, loss: torch.Tensor, fail: Callable[[], Exception]) -> None:
    """Step ``opt`` (and ``sched``) on the scalar ``loss``; raise ``fail()`` if it is not finite."""
    if not math.isfinite(loss.item()):  # a sync per step: microseconds on a CPU
        raise fail()
    loss.backward()
    opt.step()
    if sched is not None:
        sched.step()


def _epoch_end(model, data, epoch, on_epoch_end, evaluate_each_epoch, fail) -> dict:
    """Return what an epoch's row gains after its updates: the dict ``on_epoch_end``
    returns, then ``val_accuracy`` and ``val_loss`` (lists for a stack)."""
    row = {}
    if on_epoch_end is not None:
        row.update(on_epoch_end(model, epoch) or {})
    if evaluate_each_epoch:
        ev = evaluate(model, data.X_val, data.y_val)
        losses = ev["loss"] if isinstance(ev["loss"], list) else [ev["loss"]]  # a list for a stack
        if not all(map(math.isfinite, losses)):
            raise fail("the validation loss is")
        row.update(val_accuracy=ev["accuracy"], val_loss=ev["loss"])
    return row


def _finish_(model, best_state: dict | None, fail) -> None:
    """Leave ``model`` as training ends: weights checked, ``best_state`` loaded if
    given, masked weights refreshed, eval mode."""
    if not _all_finite(model):  # the very last step: no loss after it to see it
        raise fail("the weights are")
    if best_state is not None:
        model.load_state_dict(best_state)
    # A masked weight is stale after an optimiser step (or a load) until the
    # next forward pass: leave the model as that pass will see it.
    refresh_pruned_weights_(model)
    model.eval()


def train(model: nn.Module, data: Dataset, *, epochs: int = 10, lr: float = 1e-3,
          optimizer: str = "adam", batch_size: int = 64, momentum: float = 0.0,
          penalty: str | None = None, lam: float = 0.0, seed: int = 0,
          augment: bool = False, schedule: str | None = None,
          evaluate_each_epoch: bool = True, keep_best: bool = False,
          progress: bool = False, loss_fn: LossFn | None = None,
          on_epoch_end: EpochHook | None = None,
          device: str | torch.device | None = None) -> list[dict]:
    """Return the history (a row per epoch) of training ``model`` in place on ``data``.

    ``epochs`` >= 1; ``lr`` > 0; ``optimizer`` "sgd" (``momentum`` in [0, 1)) or "adam";
    ``penalty`` None, "l1" or "l2", weighted by ``lam`` >= 0 (0 with None); ``seed`` in
    [0, 2**32 - 1]; ``schedule`` None or "cosine" (``lr`` to 0 on a half cosine);
    ``augment`` applies :func:`random_shift`. ``loss_fn(model, xb, yb, idx)`` is the batch
    loss (default cross-entropy; ``idx``: rows of the training split). A row: ``epoch``,
    ``train_loss`` (mean batch loss, no penalty), ``seconds`` (the updates), the dict
    ``on_epoch_end(model, epoch)`` returns after them and, if ``evaluate_each_epoch``,
    ``val_accuracy`` and ``val_loss`` (validation split). ``keep_best``: end on the
    weights of :func:`best_epoch`. The model ends on ``device`` (default :func:`get_device`)
    in eval mode. A non-finite loss raises ``FloatingPointError`` (epoch, batch, likely
    cause); on an error (not ``KeyboardInterrupt``) the model gets back weights, device, mode.
    """
    home, device = _check_train_args(model, data, seed, device, stack=False, epochs=epochs,
                                     lr=lr, batch_size=batch_size, momentum=momentum,
                                     schedule=schedule, evaluate_each_epoch=evaluate_each_epoch,
                                     progress=progress, loss_fn=loss_fn, on_epoch_end=on_epoch_end,
                                     penalty=penalty, lam=lam, augment=augment, keep_best=keep_best)
    loss_fn = cross_entropy_loss if loss_fn is None else loss_fn

    def fail(seen="the loss is"):  # the error at the latest batch
        return _divergence(xb, data_loss, epoch, batch, lr, penalty, lam, seen=seen)

    with _restored_on_error(model, home):
        data, opt, sched = _start(model, data, device, optimizer, lr, momentum, schedule,
                                  epochs, batch_size)
        gen = torch.Generator().manual_seed(seed)
        index = torch.arange(len(data.X_train), device=device)
        history, best = [], None
        bar = tqdm(range(1, epochs + 1), desc="epochs", disable=not progress, leave=False)
        for epoch in bar:
            model.train()
            start, total = time.perf_counter(), torch.zeros((), device=device)
            for batch, (xb, idx) in enumerate(
                    batches(data.X_train, index, batch_size, shuffle=True, generator=gen), 1):
                xb = random_shift(xb, gen) if augment else xb
                opt.zero_grad(set_to_none=True)
                data_loss = loss_fn(model, xb, data.y_train[idx], idx)
                loss = data_loss + lam * weight_penalty(model, penalty) if penalty else data_loss
                _update_(opt, sched, loss, fail)
                total += data_loss.detach() * len(idx)
            row = {"epoch": epoch, "train_loss": (total / len(index)).item(),
                   "seconds": time.perf_counter() - start}
            row.update(_epoch_end(model, data, epoch, on_epoch_end, evaluate_each_epoch, fail))
            history.append(row)
            if evaluate_each_epoch:
                bar.set_postfix(loss=f"{row['train_loss']:.3f}", val=f"{row['val_accuracy']:.3f}")
            if keep_best and (best is None or row["val_accuracy"] > best[0]):
                best = (row["val_accuracy"], copy.deepcopy(model.state_dict()))
        _finish_(model, best[1] if keep_best else None, fail)
    return history


def train_stack(stack: MLPStack, data: Dataset, *, seeds: Sequence[int], epochs: int = 10,
                lr: float = 1e-3, optimizer: str = "adam", batch_size: int = 64,
                momentum: float = 0.0, schedule: str | None = None,
                evaluate_each_epoch: bool = True, progress: bool = False,
                loss_fn: LossFn | None = None, on_epoch_end: EpochHook | None = None,
                device: str | torch.device | None = None) -> list[dict]:
    """Return the history of training the S members of ``stack`` in place, member m
    on the batches :func:`train` gives a single model with ``seed=seeds[m]``.

    ``seeds``: S ints in [0, 2**32 - 1]; the other arguments as in :func:`train`
    (no penalty, augment or keep_best). ``loss_fn`` returns one loss per member,
    shape (S,); they are summed, so each member gets exactly its own gradient.
    A row's ``train_loss``, ``val_accuracy`` and ``val_loss`` are lists of S.
    """
    home, device = _check_train_args(stack, data, seeds, device, stack=True, epochs=epochs,
                                     lr=lr, batch_size=batch_size, momentum=momentum,
                                     schedule=schedule, evaluate_each_epoch=evaluate_each_epoch,
                                     progress=progress, loss_fn=loss_fn, on_epoch_end=on_epoch_end)
    loss_fn = cross_entropy_loss if loss_fn is None else loss_fn

    def fail(seen="the loss is"):  # the error at the latest batch
        return _divergence(xb, data_loss, epoch, batch, lr, None, 0.0, seen=seen)

    with _restored_on_error(stack, home):
        data, opt, sched = _start(stack, data, device, optimizer, lr, momentum, schedule,
                                  epochs, batch_size)
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        history = []
        for epoch in tqdm(range(1, epochs + 1), desc="epochs", disable=not progress, leave=False):
            stack.train()
            start, total = time.perf_counter(), torch.zeros(stack.size, device=device)
            for batch, idx in enumerate(_stacked_batches(len(data.X_train), batch_size, gens,
                                                         device), 1):  # idx: (S, B)
                xb = data.X_train[idx]  # (S, B, ...): member m's own batch
                opt.zero_grad(set_to_none=True)
                data_loss = loss_fn(stack, xb, data.y_train[idx], idx)  # (S,)
                _update_(opt, sched, data_loss.sum(), fail)
                total += data_loss.detach() * idx.shape[-1]
            history.append({"epoch": epoch, "train_loss": (total / len(data.X_train)).tolist(),
                            "seconds": time.perf_counter() - start,
                            **_epoch_end(stack, data, epoch, on_epoch_end, evaluate_each_epoch,
                                         fail)})
        _finish_(stack, None, fail)
    return history
