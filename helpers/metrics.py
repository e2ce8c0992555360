"""What a model costs: parameters, file size, latency.

Latency is the median of repeated timings after a warm-up (a plain
``perf_counter`` loop; on CUDA the device is synchronised before each reading).
"""
from __future__ import annotations

import io
import statistics
import time

import torch
from torch import nn

from ._util import check_int


def count_parameters(model: nn.Module) -> dict:
    """Return ``{"total": n, "nonzero": n}`` over the model's effective weights.

    For a pruned layer (with ``weight_orig`` and ``weight_mask``) the effective
    ``weight`` is counted, not the stored original.
    """
    total = nonzero = 0
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name.endswith("_orig"):
                p = getattr(module, name[: -len("_orig")])
            total += p.numel()
            nonzero += int(torch.count_nonzero(p))
    return {"total": total, "nonzero": nonzero}


def state_dict_bytes(model: nn.Module) -> int:
    """Return the size in bytes of ``torch.save(model.state_dict())``."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


@torch.no_grad()
def latency_ms(model: nn.Module, batch_size: int = 1, *, input_shape=(1, 28, 28),
               repeats: int = 15, min_block_seconds: float = 0.01) -> float:
    """Return the median time in milliseconds of one forward pass at ``batch_size``.

    After a warm-up, ``repeats`` blocks of back-to-back calls are timed (each
    block lasts at least ``min_block_seconds``) and the median per-call time is
    returned. ``batch_size`` >= 1, ``repeats`` >= 1. The model runs in eval mode
    under ``no_grad`` and is put back in its previous mode; its weights are not
    touched.
    """
    check_int("batch_size", batch_size, 1)
    check_int("repeats", repeats, 1)
    device = next(model.parameters()).device
    x = torch.randn(batch_size, *input_shape, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    was_training = model.training
    model.eval()
    try:
        number = 1
        while True:  # warm-up, and find how many calls fill a block
            start = time.perf_counter()
            for _ in range(number):
                model(x)
            sync()
            if time.perf_counter() - start >= min_block_seconds or number >= 1 << 16:
                break
            number *= 2
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(number):
                model(x)
            sync()
            times.append((time.perf_counter() - start) / number)
        return statistics.median(times) * 1e3
    finally:
        model.train(was_training)
