"""What a model costs: parameters, multiply-accumulates, file size, latency.

File sizes are measured on the model's *effective* weights (pruning masks
baked in), in three formats: ``"raw"`` (``torch.save`` of the state dict),
``"gzip"`` (the same bytes gzip-compressed) and ``"sparse"`` (2-D tensors
that are at least half zeros stored in CSR with int32 indices).

Latency is the median of repeated timings after a warm-up (a plain
``perf_counter`` loop; on CUDA the device is synchronised before each reading).
"""
from __future__ import annotations

import gzip
import io
import statistics
import time
import warnings

import torch
from torch import nn

from ._util import check_choice, check_int


def count_parameters(model: nn.Module) -> dict:
    """Return ``{"total": n, "nonzero": n}`` over the model's effective weights.

    For a pruned layer (with ``weight_orig`` and ``weight_mask``) the effective
    ``weight`` is counted, not the stored original; an int8 weight counts as
    one parameter per entry.
    """
    total = nonzero = 0
    for module in model.modules():
        tensors = []
        for name, p in module.named_parameters(recurse=False):
            tensors.append(getattr(module, name[:-5]) if name.endswith("_orig") else p)
        if hasattr(module, "weight_int8"):  # quantization.Int8Linear keeps its weight as a buffer
            tensors.append(module.weight_int8)
        for t in tensors:
            total += t.numel()
            nonzero += int(torch.count_nonzero(t))
    return {"total": total, "nonzero": nonzero}


FORMATS = ("raw", "gzip", "sparse")


def effective_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of ``model`` with any pruning masks baked in (a copy)."""
    from .pruning import make_permanent

    return {k: v.detach().clone() for k, v in make_permanent(model).state_dict().items()}


def _to_sparse(sd: dict, min_zeros: float = 0.5) -> dict:
    out = {}
    for k, v in sd.items():
        if v.dim() == 2 and v.numel() and (v == 0).float().mean().item() >= min_zeros:
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
                csr = v.to_sparse_csr()
            out[k] = torch.sparse_csr_tensor(csr.crow_indices().int(), csr.col_indices().int(),
                                             csr.values(), size=v.shape, check_invariants=True)
        else:
            out[k] = v
    return out


def serialize(model: nn.Module, fmt: str = "raw") -> bytes:
    """The bytes of ``model``'s effective state dict in format ``fmt``
    (``"raw"``, ``"gzip"`` or ``"sparse"``)."""
    check_choice("fmt", fmt, FORMATS)
    sd = effective_state_dict(model)
    buf = io.BytesIO()
    torch.save(_to_sparse(sd) if fmt == "sparse" else sd, buf)
    data = buf.getvalue()
    return gzip.compress(data, mtime=0) if fmt == "gzip" else data


def deserialize(blob: bytes, fmt: str = "raw") -> dict[str, torch.Tensor]:
    """Inverse of :func:`serialize`: a dense state dict for ``load_state_dict``."""
    check_choice("fmt", fmt, FORMATS)
    if fmt == "gzip":
        blob = gzip.decompress(blob)
    with warnings.catch_warnings():  # "validating sparse tensor invariants"
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        sd = torch.load(io.BytesIO(blob), weights_only=True)
    return {k: (v.to_dense() if v.layout != torch.strided else v) for k, v in sd.items()}


def file_sizes(model: nn.Module) -> dict[str, int]:
    """Bytes of the effective weights in each format: ``{"raw", "gzip", "sparse"}``."""
    return {fmt: len(serialize(model, fmt)) for fmt in FORMATS}


@torch.no_grad()
def macs(model: nn.Module, input_shape=(1, 1, 28, 28)) -> dict[str, int]:
    """Multiply-accumulates of one forward pass for one input.

    ``"dense"`` counts every weight of every linear and convolutional layer
    (what a dense kernel computes); ``"nonzero"`` only the non-zero weights
    (what a perfect sparse kernel would).
    """
    counts = {"dense": 0, "nonzero": 0}

    def hook(module, inputs, output):
        w = module.weight
        per_weight = output[0, 0].numel() if isinstance(module, nn.Conv2d) else 1
        counts["dense"] += w.numel() * per_weight
        counts["nonzero"] += int(torch.count_nonzero(w)) * per_weight

    from .quantization import Int8Linear

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Linear, nn.Conv2d, Int8Linear))]
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(*input_shape, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return counts


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
