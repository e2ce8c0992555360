"""One training loop and one evaluation for every notebook.

``train`` optimises cross-entropy, optionally plus an L1 or L2 penalty on the
weights of the linear and convolutional layers:

    L1:  L = CE + lam * sum |w|        L2:  L = CE + lam * sum w^2

Data stay in memory; each step takes an index slice (see ``data.batches``).
Under a fixed ``seed`` the shuffling, and so the result, repeats exactly on the
same machine.
"""
from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ._util import check_choice, check_float, check_int, get_device
from .data import Dataset, batches

OPTIMIZERS = ("sgd", "adam")
EVAL_BATCH = 250  # rows per forward pass when evaluating: bounds the CNN's activation memory
PENALTIES = (None, "l1", "l2")


def penalized_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weight tensors a penalty acts on: those of Linear and Conv2d layers."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def weight_penalty(model: nn.Module, kind: str) -> torch.Tensor:
    """Return sum |w| (``kind="l1"``) or sum w^2 (``kind="l2"``) over the weights."""
    check_choice("kind", kind, ("l1", "l2"))
    ws = penalized_weights(model)
    if kind == "l1":
        return sum(w.abs().sum() for w in ws)
    return sum(w.pow(2).sum() for w in ws)


def random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Shift a batch of images (B, C, H, W) by the same random offset of at most
    ``max_shift`` pixels along each axis (wrapping round the border, which is
    background in MNIST-like digits)."""
    dy, dx = torch.randint(-max_shift, max_shift + 1, (2,), generator=generator).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


def make_optimizer(model: nn.Module, name: str, lr: float, momentum: float = 0.0):
    """Return an SGD or Adam optimiser over the model's trainable parameters."""
    check_choice("optimizer", name, OPTIMIZERS)
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    return torch.optim.Adam(params, lr=lr)


@torch.no_grad()
def logits_of(model: nn.Module, X: torch.Tensor, *, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """The logits of ``model`` for all of ``X``, ``batch_size`` rows at a time
    (eval mode, no gradients; the model's mode is restored afterwards)."""
    check_int("batch_size", batch_size, 1)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        return torch.cat([model(xb.to(device)) for xb, _ in
                          batches(X, torch.empty(len(X)), batch_size)])
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *,
             batch_size: int = EVAL_BATCH) -> dict:
    """Return ``{"accuracy": fraction correct, "loss": mean cross-entropy}`` on (X, y).

    The model is put in eval mode for the pass and its mode restored afterwards.
    """
    check_int("batch_size", batch_size, 1)
    if len(X) == 0:
        raise ValueError("X must hold at least one sample, got 0")
    if len(y) != len(X):
        raise ValueError(f"X and y must have the same length, got {len(X)} and {len(y)}")
    out = logits_of(model, X, batch_size=batch_size)
    y = y.to(out.device)
    return {"accuracy": (out.argmax(1) == y).sum().item() / len(X),
            "loss": F.cross_entropy(out, y, reduction="sum").item() / len(X)}


def train(model: nn.Module, data: Dataset, *, epochs: int = 10, lr: float = 1e-3,
          optimizer: str = "adam", batch_size: int = 64, momentum: float = 0.0,
          penalty: str | None = None, lam: float = 0.0, seed: int = 0,
          augment: bool = False, evaluate_each_epoch: bool = True, progress: bool = True,
          on_epoch_end: Callable[[nn.Module, int], dict | None] | None = None,
          device: str | torch.device | None = None) -> list[dict]:
    """Train ``model`` in place on ``data``'s training split; return the history.

    ``epochs`` >= 1; ``lr`` > 0; ``optimizer`` is ``"sgd"`` (with ``momentum`` in
    [0, 1)) or ``"adam"``; ``penalty`` is ``None``, ``"l1"`` or ``"l2"`` with
    weight ``lam`` >= 0. ``augment`` shifts each batch by up to 2 pixels in
    each direction (see :func:`random_shift`). The history holds one dict per epoch: ``epoch``,
    ``train_loss`` (mean cross-entropy, penalty excluded), ``seconds`` and, when
    ``evaluate_each_epoch``, ``test_accuracy`` and ``test_loss``. The model ends
    on ``device`` (default: CUDA, MPS or CPU, whichever is present).

    ``on_epoch_end(model, epoch)``, if given, runs after each epoch's updates and
    before its evaluation, with the same optimiser kept across epochs (this is
    how soft and gradual pruning re-choose their masks); a dict it returns is
    merged into that epoch's history row.
    """
    if not isinstance(data, Dataset):
        raise ValueError(f"data must be a helpers.data.Dataset, got {type(data).__name__}")
    check_int("epochs", epochs, 1)
    check_float("lr", lr, 0.0, low_open=True)
    check_int("batch_size", batch_size, 1)
    check_float("momentum", momentum, 0.0, 1.0, high_open=True)
    check_choice("penalty", penalty, PENALTIES)
    check_float("lam", lam, 0.0)
    check_int("seed", seed, 0)
    if penalty is None and lam != 0:
        raise ValueError(f"lam must be 0 when penalty is None, got {lam!r}")

    device = get_device(device)
    model.to(device)
    data = data.to(device)
    opt = make_optimizer(model, optimizer, lr, momentum)
    gen = torch.Generator().manual_seed(seed)
    history = []

    from tqdm.auto import tqdm

    bar = tqdm(range(1, epochs + 1), desc="epochs", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        start = time.perf_counter()
        total = torch.zeros((), device=device)
        for xb, yb in batches(data.X_train, data.y_train, batch_size, shuffle=True, generator=gen):
            if augment:
                xb = random_shift(xb, gen)
            opt.zero_grad(set_to_none=True)
            ce = F.cross_entropy(model(xb), yb)
            loss = ce + lam * weight_penalty(model, penalty) if penalty else ce
            loss.backward()
            opt.step()
            total += ce.detach() * len(yb)
        row = {"epoch": epoch, "train_loss": total.item() / len(data.X_train),
               "seconds": time.perf_counter() - start}
        if on_epoch_end is not None:
            row.update(on_epoch_end(model, epoch) or {})
        if evaluate_each_epoch:
            ev = evaluate(model, data.X_test, data.y_test)
            row.update(test_accuracy=ev["accuracy"], test_loss=ev["loss"])
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", acc=f"{ev['accuracy']:.3f}")
        history.append(row)
    bar.close()
    model.eval()
    return history
