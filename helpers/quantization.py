"""Int8 weight quantisation of linear layers (weights only, symmetric, one
scale per output row).

Each weight row ``w`` is stored as ``q = round(w / s)`` in int8 with
``s = max|w| / 127``, and used as ``q * s``. Zeros stay exactly zero, so a
pruned layer keeps its sparsity. The file shrinks about 4x; the arithmetic is
still float32 (real int8 kernels, not used here, would be needed for speed).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .models import make_permanent


class Int8Linear(nn.Module):
    """A linear layer whose weight is kept as int8 plus one float scale per row."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        w = linear.weight.detach().float()
        if not torch.isfinite(w).all():
            raise ValueError("linear must have finite weights to quantise (no inf or NaN)")
        scale = w.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / 127  # (out,)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_int8",
                             torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())

    @property
    def weight(self) -> torch.Tensor:
        """The dequantised weight, ``weight_int8 * scale`` (float32)."""
        return self.weight_int8.float() * self.scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights"


def quantize_int8(model: nn.Module) -> nn.Module:
    """Return a copy of ``model`` with every ``nn.Linear`` replaced by :class:`Int8Linear`.

    Pruning masks are baked in first, so pruned weights quantise to exact zeros.
    ``model`` must have at least one ``nn.Linear`` layer, every weight finite.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    net = make_permanent(model)
    targets = [(name, m) for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not targets:
        raise ValueError("model must contain at least one nn.Linear layer")
    for name, m in targets:
        if not torch.isfinite(m.weight).all():
            raise ValueError(f"model must have finite weights to quantise; {name}.weight "
                             "holds inf or NaN")
    for name, m in targets:
        parent = net.get_submodule(name.rpartition(".")[0]) if "." in name else net
        setattr(parent, name.rpartition(".")[2], Int8Linear(m))
    return net.eval()


def max_rounding_error(model: nn.Module, quantized: nn.Module) -> float:
    """The largest |w - dequantised w| over the quantised layers (at most scale / 2);
    ``quantized`` must be ``quantize_int8(model)``."""
    ref = dict(make_permanent(model).named_modules())
    layers = {n: m for n, m in quantized.named_modules() if isinstance(m, Int8Linear)}
    for name, m in layers.items():
        if not isinstance(ref.get(name), nn.Linear) or ref[name].weight.shape != m.weight.shape:
            raise ValueError(f"quantized must be quantize_int8(model); its {name} matches no "
                             "linear layer of model")
    if not layers:
        raise ValueError("quantized must be quantize_int8(model), with Int8Linear layers; "
                         "it has none")
    return max((ref[n].weight.detach() - m.weight).abs().max().item() for n, m in layers.items())
