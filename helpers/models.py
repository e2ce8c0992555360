"""The kit's networks: the source article's 784-128-10 MLP, wider/narrower MLPs,
and a small CNN that later serves as the distillation teacher.

Layer names follow the article (``fc1``, ``fc2``, ...) so that code like
``net.fc1.weight`` reads the same in the notebooks as in the article.

Also here, because pruning, metrics and quantization all need them:
``clone`` (a copy that works on a freshly pruned model) and ``make_permanent``
(pruning masks baked into plain weights).
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn
from torch.nn.utils import prune

from ._util import check_int, check_module, check_seed, refresh_pruned_weights_, seeded

IN_FEATURES = 28 * 28
NUM_CLASSES = 10


class MLP(nn.Module):
    """Fully connected ReLU network: 784 -> hidden... -> 10, layers fc1, fc2, ..."""

    def __init__(self, hidden: Sequence[int] = (128,), in_features: int = IN_FEATURES,
                 num_classes: int = NUM_CLASSES):
        super().__init__()
        hidden = tuple(hidden)
        check_int("in_features", in_features, 1)
        check_int("num_classes", num_classes, 2)
        for h in hidden:
            check_int("hidden size", h, 1)
        self.hidden = hidden
        sizes = (in_features, *hidden, num_classes)
        for i in range(len(sizes) - 1):
            setattr(self, f"fc{i + 1}", nn.Linear(sizes[i], sizes[i + 1]))
        self.num_layers = len(sizes) - 1

    def layers(self) -> list[nn.Linear]:
        """The linear layers in order: [fc1, fc2, ...]."""
        return [getattr(self, f"fc{i + 1}") for i in range(self.num_layers)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)  # (B, 1, 28, 28) -> (B, 784)
        *hidden, last = self.layers()
        for fc in hidden:
            x = torch.relu(fc(x))
        return last(x)  # (B, num_classes) logits

    @property
    def config(self) -> dict:
        return {"type": "MLP", "in_features": self.fc1.in_features,
                "hidden": list(self.hidden), "num_classes": self.layers()[-1].out_features}


class SmallCNN(nn.Module):
    """Two 3x3 conv blocks (with max-pooling) and two linear layers."""

    def __init__(self, channels: tuple[int, int] = (16, 32), hidden: int = 128,
                 num_classes: int = NUM_CLASSES):
        super().__init__()
        if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence) \
                or len(channels) != 2:
            raise ValueError(f"channels must be a pair of integers in [1, inf), got {channels!r}")
        c1, c2 = channels
        for n, v in (("channels[0]", c1), ("channels[1]", c2), ("hidden", hidden)):
            check_int(n, v, 1)
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.fc1 = nn.Linear(c2 * 7 * 7, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)  # (B, c1, 14, 14)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)  # (B, c2, 7, 7)
        x = torch.relu(self.fc1(torch.flatten(x, 1)))        # (B, hidden)
        return self.fc2(x)                                    # (B, 10) logits

    @property
    def config(self) -> dict:
        return {"type": "SmallCNN", "channels": [self.conv1.out_channels, self.conv2.out_channels],
                "hidden": self.fc1.out_features, "num_classes": self.fc2.out_features}


class MLPStack(nn.Module):
    """Several MLPs of one shape, trained side by side as one module.

    Member ``m``'s layer ``i`` is ``weight_i[m]`` (out, in) and ``bias_i[m]``.
    The input is either one batch per member, (S, B, ...), or one batch for
    all, (B, ...); the output is (S, B, num_classes). One optimiser step
    updates every member with exactly its own gradient (the losses add up), so
    training S seeds costs little more than one: the per-step overhead of a
    small network is paid once.
    """

    def __init__(self, members: Sequence[MLP]):
        super().__init__()
        members = list(members)
        if not members or not all(isinstance(m, MLP) for m in members):
            raise ValueError("members must be a non-empty list of helpers.models.MLP")
        shapes = {tuple(l.weight.shape for l in m.layers()) for m in members}
        if len(shapes) != 1:
            raise ValueError(f"members must all have one shape, got {sorted(shapes)}")
        self.size, self.num_layers = len(members), members[0].num_layers
        self.hidden = members[0].hidden
        for i in range(self.num_layers):
            layers = [m.layers()[i] for m in members]
            self.register_parameter(f"weight_{i + 1}", nn.Parameter(
                torch.stack([l.weight.detach() for l in layers]).clone()))  # (S, out, in)
            self.register_parameter(f"bias_{i + 1}", nn.Parameter(
                torch.stack([l.bias.detach() for l in layers]).clone()))    # (S, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() in (3, 5):  # one batch per member: (S, B, in) or (S, B, 1, 28, 28)
            h = x.flatten(2)                                         # (S, B, in)
        else:                  # one batch for all: (B, in) or (B, 1, 28, 28)
            h = x.flatten(1).unsqueeze(0).expand(self.size, -1, -1)  # (S, B, in)
        for i in range(1, self.num_layers + 1):
            w, b = getattr(self, f"weight_{i}"), getattr(self, f"bias_{i}")
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))  # (S, B, out)
            if i < self.num_layers:
                h = torch.relu(h)
        return h

    @torch.no_grad()
    def member(self, m: int) -> MLP:
        """Member ``m`` (in [0, size - 1]) as a plain :class:`MLP` (a copy)."""
        check_int("m", m, 0, self.size - 1)
        with seeded(0):  # its initial values are all overwritten; leave the global RNG alone
            net = MLP(self.hidden, in_features=self.weight_1.shape[2],
                      num_classes=getattr(self, f"weight_{self.num_layers}").shape[1])
        net.to(self.weight_1)  # the stack's device and dtype
        for i, layer in enumerate(net.layers(), 1):
            layer.weight.copy_(getattr(self, f"weight_{i}")[m])
            layer.bias.copy_(getattr(self, f"bias_{i}")[m])
        return net.eval()

    def unstack(self) -> list[MLP]:
        """Every member as a plain :class:`MLP`, in order."""
        return [self.member(m) for m in range(self.size)]


class Ensemble(nn.Module):
    """Several trained models answering together: the mean of their logits.

    Hinton et al. (2015) distil an ensemble into one small network; averaging
    the logits of a few teachers gives a stronger, better calibrated teacher.
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("members must hold at least one model, got none")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)  # (B, num_classes)


def mlp(hidden: Sequence[int] | int = 128, *, seed: int = 0) -> MLP:
    """Return a freshly initialised MLP; ``hidden`` is one size or a non-empty
    sequence of sizes, each an int >= 1; ``seed`` in [0, 2**32 - 1]."""
    check_seed("seed", seed)
    if isinstance(hidden, int):
        hidden = (hidden,)
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence) or not hidden:
        raise ValueError(f"hidden must be an integer in [1, inf) or a non-empty sequence of "
                         f"them, got {hidden!r}")
    with seeded(seed):
        return MLP(hidden)


def baseline_mlp(*, seed: int = 0) -> MLP:
    """Return the source article's network: 784-128-10, layers ``fc1`` and ``fc2``;
    ``seed`` in [0, 2**32 - 1]."""
    return mlp(128, seed=seed)


def small_cnn(*, seed: int = 0, channels: tuple[int, int] = (16, 32), hidden: int = 128) -> SmallCNN:
    """Return a freshly initialised :class:`SmallCNN` (the distillation teacher);
    ``channels`` a pair and ``hidden`` an int, all >= 1; ``seed`` in [0, 2**32 - 1]."""
    check_seed("seed", seed)
    with seeded(seed):
        return SmallCNN(channels, hidden)


# --- copies, and pruning masks baked in ----------------------------------------

@torch.no_grad()
def clone(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` that also works on a freshly pruned model.

    A pruned layer's ``weight`` is recomputed from ``weight_orig * weight_mask``
    at each forward pass; straight after pruning it is a non-leaf tensor that
    ``copy.deepcopy`` refuses; after ``.to()``, ``.double()`` or ``.cuda()`` it
    still has the old device and dtype (it is a plain attribute). It is
    refreshed from the moved ``weight_orig`` and mask first (same values, no
    graph), so the copy's weights are the ones its next forward pass uses.
    """
    check_module("model", model)
    return copy.deepcopy(refresh_pruned_weights_(model))


def make_permanent_(model: nn.Module) -> nn.Module:
    """Bake every pruning mask into its weight (``prune.remove``, which computes
    ``weight_orig * weight_mask`` afresh); return the model."""
    check_module("model", model)
    for module in model.modules():
        for name in [n[:-5] for n, _ in module.named_buffers(recurse=False) if n.endswith("_mask")]:
            prune.remove(module, name)
    return model


def make_permanent(model: nn.Module) -> nn.Module:
    """Return a copy of ``model`` with its masks baked into plain dense weights."""
    return make_permanent_(clone(model))
