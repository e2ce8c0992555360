"""What a model costs: parameters, multiply-accumulates, file size, latency.

File sizes are measured on the model's *effective* weights (pruning masks
baked in), in three formats: ``"raw"`` (``torch.save`` of the state dict),
``"gzip"`` (the same bytes gzip-compressed) and ``"sparse"`` (2-D tensors
that are at least half zeros stored in CSR with int32 indices).

Latency is measured with ``torch.utils.benchmark`` (``Timer.blocked_autorange``)
at a fixed thread count: the median and the interquartile range of blocks of
repeated forward passes. At batch 1 on a CPU it is mostly Python and dispatch
overhead, not arithmetic.
"""
from __future__ import annotations

import gzip
import io
import logging
import warnings
from typing import Sequence

import torch
from torch import nn

# torch.utils.benchmark imports torch.utils.cpp_extension, which logs a warning
# naming the machine's CUDA_HOME when a CUDA build of torch finds no GPU; it
# says nothing about latency, so it is silenced for this one import.
_cpp_log = logging.getLogger("torch.utils.cpp_extension")
_cpp_level = _cpp_log.level
_cpp_log.setLevel(logging.ERROR)
from torch.utils import benchmark  # noqa: E402
_cpp_log.setLevel(_cpp_level)

from ._util import check_choice, check_float, check_int, check_model, check_module
from .models import make_permanent
from .quantization import Int8Linear


@torch.no_grad()
def count_parameters(model: nn.Module) -> dict:
    """Return ``{"total": n, "nonzero": n}`` over the model's effective weights.

    For a pruned layer (with ``weight_orig`` and ``weight_mask``) the effective
    ``weight`` is counted, not the stored original; an int8 weight counts as
    one parameter per entry. The effective weight is computed afresh, as
    ``weight_orig * weight_mask``: ``.weight`` itself is refreshed only at the
    next forward pass, so it is stale after ``weight_orig`` or a mask is set by
    hand, or after ``.to()``.
    """
    check_module("model", model)
    total = nonzero = 0
    for module in model.modules():
        tensors = []
        for name, p in module.named_parameters(recurse=False):
            base = name[:-5]
            masked = name.endswith("_orig") and hasattr(module, base + "_mask")
            tensors.append(p * getattr(module, base + "_mask") if masked else p)
        if hasattr(module, "weight_int8"):  # quantization.Int8Linear keeps its weight as a buffer
            tensors.append(module.weight_int8)
        for t in tensors:
            total += t.numel()
            nonzero += int(torch.count_nonzero(t))
    return {"total": total, "nonzero": nonzero}


FORMATS = ("raw", "gzip", "sparse")


def effective_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of ``model`` with any pruning masks baked in (a copy;
    ``make_permanent`` computes each masked weight afresh)."""
    return {k: v.detach().clone() for k, v in make_permanent(model).state_dict().items()}


def _csr(v: torch.Tensor) -> torch.Tensor:
    """The 2-D tensor ``v`` in CSR with int32 indices, as the ``"sparse"`` format stores it."""
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        csr = v.to_sparse_csr()
    return torch.sparse_csr_tensor(csr.crow_indices().int(), csr.col_indices().int(),
                                   csr.values(), size=v.shape, check_invariants=True)


def _check_shape(name: str, shape) -> tuple[int, ...]:
    """Return ``shape`` as a tuple if it is a non-empty sequence of ints >= 1."""
    dims = tuple(shape) if isinstance(shape, Sequence) and not isinstance(shape, str) else ()
    if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
        raise ValueError(f"{name} must be a non-empty sequence of integers in [1, inf), "
                         f"got {shape!r}")
    return dims


def _to_sparse(sd: dict, min_zeros: float = 0.5) -> dict:
    out = {}
    for k, v in sd.items():
        sparse = v.dim() == 2 and v.numel() and (v == 0).float().mean().item() >= min_zeros
        out[k] = _csr(v) if sparse else v
    return out


def csr_bytes(weight: torch.Tensor) -> int:
    """Bytes of the numbers that the ``"sparse"`` format stores for the matrix
    ``weight`` (a 2-D tensor) in CSR: its non-zero values in its own dtype (4
    bytes each for float32, 1 for int8), an int32 column index for each, and
    int32 row pointers (rows + 1). Counted on the very tensors that
    :func:`serialize` saves; ``torch.save``'s own framing is not included."""
    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"weight must be a 2-D tensor, got {type(weight).__name__}")
    if weight.layout != torch.strided or weight.dim() != 2:
        raise ValueError(f"weight must be a dense 2-D tensor, got a {weight.dim()}-D "
                         f"{weight.layout} tensor")
    csr = _csr(weight.detach())
    return sum(t.numel() * t.element_size()
               for t in (csr.values(), csr.col_indices(), csr.crow_indices()))


def serialize(model: nn.Module, fmt: str = "raw") -> bytes:
    """The bytes of ``model``'s effective state dict in format ``fmt``
    (``"raw"``, ``"gzip"`` or ``"sparse"``)."""
    check_module("model", model)
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
    (what a perfect sparse kernel would). ``input_shape`` is the shape of the
    batch passed through (a sequence of ints >= 1, batch first); the model
    needs at least one parameter (the input takes its device and dtype).
    """
    first = check_model("model", model)
    shape = _check_shape("input_shape", input_shape)
    dtype = first.dtype if first.is_floating_point() else torch.float32
    counts = {"dense": 0, "nonzero": 0}

    def hook(module, inputs, output):
        w = module.weight
        per_weight = output[0, 0].numel() if isinstance(module, nn.Conv2d) else 1
        counts["dense"] += w.numel() * per_weight
        counts["nonzero"] += int(torch.count_nonzero(w)) * per_weight

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Linear, nn.Conv2d, Int8Linear))]
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(shape, device=first.device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return counts


def state_dict_bytes(model: nn.Module) -> int:
    """Return the size in bytes of ``torch.save(model.state_dict())``."""
    check_module("model", model)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def latency(model: nn.Module, batch_size: int = 1, *, input_shape: Sequence[int] = (1, 28, 28),
            threads: int = 1, min_run_time: float = 0.2) -> dict:
    """Time one forward pass of ``model`` on a random batch with ``torch.utils.benchmark``.

    Returns ``{"median_ms", "iqr_ms", "threads", "batch_size"}``: the median and
    the interquartile range (ms) over the blocks of ``Timer.blocked_autorange``,
    run with ``threads`` intra-op threads for at least ``min_run_time`` seconds.
    ``batch_size`` >= 1, ``threads`` >= 1, ``min_run_time`` > 0, ``input_shape``
    a sequence of positive ints (one sample's shape). The model (with at least
    one parameter) runs in eval mode under ``no_grad`` and is put back in its
    previous mode; its weights are not touched. The batch is drawn from a
    generator of its own: the global random state is left alone.
    """
    first = check_model("model", model)
    check_int("batch_size", batch_size, 1)
    check_int("threads", threads, 1)
    min_run_time = check_float("min_run_time", min_run_time, 0.0, low_open=True)
    shape = _check_shape("input_shape", input_shape)
    dtype = first.dtype if first.is_floating_point() else torch.float32
    x = torch.randn(batch_size, *shape, generator=torch.Generator().manual_seed(0)).to(
        first.device, dtype)
    timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x},
                            num_threads=threads)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            m = timer.blocked_autorange(min_run_time=min_run_time)
    finally:
        model.train(was_training)
    return {"median_ms": m.median * 1e3, "iqr_ms": m.iqr * 1e3, "threads": threads,
            "batch_size": batch_size}
