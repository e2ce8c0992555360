"""Pruning, built on ``torch.nn.utils.prune``.

* Unstructured magnitude pruning, layer-wise or global (Han et al. 2015,
  arXiv:1506.02626); ``models.make_permanent`` bakes the masks in.
* Structured pruning of whole hidden neurons, and ``shrink``, which rebuilds a
  physically smaller MLP with exactly the logits of the masked one.
* The source article's iterative loop done right: prune a step, evaluate, roll
  the step back if accuracy fell more than a tolerance, until the target.
* Threshold pruning (after L1-regularised training).
* Soft Filter Pruning (He et al. 2018, arXiv:1808.06866), for neurons: zeroed
  neurons keep training and are re-chosen every epoch.
* Gradual pruning with the cubic schedule of Zhu & Gupta (2017,
  arXiv:1710.01878).
* A per-layer sensitivity scan.

Functions whose name ends in ``_`` change the model they are given; all others
return a pruned copy and leave their input untouched.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from ._util import check_choice, check_float, check_int, refresh_pruned_weights_, seeded
from .data import Dataset
from .models import MLP, clone, make_permanent
from .training import evaluate, train


# --- choosing layers --------------------------------------------------------

def linear_layers(model: nn.Module) -> dict[str, nn.Linear]:
    """The model's ``nn.Linear`` layers by name, in order (e.g. fc1, fc2)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}


def _module(model, name: str = "model") -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    return model


def _dataset(data) -> Dataset:
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a helpers.data.Dataset, got {type(data).__name__}")
    return data


def _layers(model: nn.Module, layers: Sequence[str] | str | None) -> dict[str, nn.Linear]:
    """Resolve layer names (None: all linear layers); a model without
    ``nn.Linear`` layers and unknown names raise ValueError."""
    available = linear_layers(_module(model))
    if not available:
        raise ValueError(f"model must contain an nn.Linear layer; {type(model).__name__} has none")
    if layers is None:
        return available
    if isinstance(layers, str):
        layers = (layers,)
    if not isinstance(layers, Iterable):
        raise TypeError(f"layers must be a layer name or a sequence of names among "
                        f"{list(available)}, got {layers!r}")
    layers = tuple(layers)
    if not layers:
        raise ValueError(f"layers must name at least one of {list(available)}, got none")
    unknown = [n for n in layers if n not in available]
    if unknown:
        raise ValueError(f"layers must be among {list(available)}, got unknown {unknown}")
    return {n: available[n] for n in layers}


def _number(name: str, value, low: float, high: float | None = None, *,
            low_open: bool = False, high_open: bool = False) -> float:
    """``check_float``, refusing also a bool, a string and a tensor of more than
    one element (``float()`` takes True, "0.5" and [0.5]); a 0-d tensor or a
    NumPy scalar counts as its value."""
    if isinstance(value, (bool, str, bytes)) or (torch.is_tensor(value) and value.ndim):
        ends = ("(" if low_open else "[", ")" if high_open or high is None else "]")
        upper = "inf" if high is None else f"{high:g}"
        raise TypeError(f"{name} must be a number in {ends[0]}{low:g}, {upper}{ends[1]}, "
                        f"got {value!r}")
    return check_float(name, value, low, high, low_open=low_open, high_open=high_open)


def _check_amount(amount, name: str = "amount") -> float:
    return _number(name, amount, 0.0, 1.0, high_open=True)


def _amounts(amounts) -> list[float]:
    """A non-empty sequence of amounts in [0, 1), as floats."""
    if isinstance(amounts, (str, bytes)) or not isinstance(amounts, Iterable) or (
            torch.is_tensor(amounts) and amounts.ndim == 0):
        raise TypeError(f"amounts must be a sequence of numbers in [0, 1), got {amounts!r}")
    out = [_check_amount(a) for a in amounts]
    if not out:
        raise ValueError("amounts must hold at least one number in [0, 1), got none")
    return out


def _weight(module: nn.Module, name: str = "weight") -> torch.Tensor:
    """``module.<name>`` as the next forward pass computes it, detached: for a
    pruned one ``<name>_orig * <name>_mask`` (``.weight`` itself is refreshed
    only by a forward pass, so it is stale after ``.double()`` or ``.to()``)."""
    if is_pruned(module, name):
        return (getattr(module, f"{name}_orig") * getattr(module, f"{name}_mask")).detach()
    return getattr(module, name).detach()


def _check_leaves_weights(mods: dict[str, nn.Linear], amount: float, scope: str = "layer",
                          name: str = "amount") -> None:
    """Refuse an ``amount`` whose pruning would leave a layer without any weight
    (``torch.nn.utils.prune`` removes ``round(amount * n)`` of ``n``)."""
    if scope == "layer":
        for layer, m in mods.items():
            n = m.weight.numel()
            if round(amount * n) >= n:
                raise ValueError(f"{name} must leave at least one of {layer}'s {n} weights: "
                                 f"at most {(n - 1) / n:.10g}, got {amount!r}")
        return
    scores = [_weight(m).abs().flatten() for m in mods.values()]
    pooled = torch.cat(scores)  # as prune.global_unstructured pools them
    kept = prune.L1Unstructured(amount).compute_mask(pooled, torch.ones_like(pooled))
    for (layer, _), part, w in zip(mods.items(), kept.split([len(w) for w in scores]), scores):
        if not part.any():
            most = int((pooled < w.max()).sum()) / len(pooled)
            raise ValueError(f"{name} must leave at least one weight of {layer} with "
                             f"scope='global': at most about {most:.10g}, got {amount!r}")


# --- unstructured magnitude pruning -----------------------------------------

def is_pruned(module: nn.Module, name: str = "weight") -> bool:
    """True if ``module.<name>`` is currently under a pruning mask."""
    return hasattr(module, f"{name}_mask")


def magnitude_prune_(model: nn.Module, amount: float, *, layers: Sequence[str] | str = ("fc1",),
                     scope: str = "layer") -> nn.Module:
    """Zero the smallest-magnitude weights of ``layers`` in place; return the model.

    ``amount`` in [0, 1) is the fraction of weights that are zero afterwards,
    counting weights an earlier mask already removed. ``scope="layer"`` applies
    it to each layer, ``"global"`` to all named layers pooled together (so small
    layers may keep more or fewer). The masks stay (``weight_orig`` and
    ``weight_mask``): the pruning is reversible until ``make_permanent``.
    ``amount`` may be a 0-d tensor; one that would leave a layer without any
    weight is refused. Every argument is checked before the model is touched:
    a refused call leaves it as it was.
    """
    amount = _check_amount(amount)
    check_choice("scope", scope, ("layer", "global"))
    mods = _layers(model, layers)
    _check_leaves_weights(mods, amount, scope)
    for m in mods.values():  # start from the current effective weights
        if is_pruned(m):
            prune.remove(m, "weight")
    if scope == "layer":
        for m in mods.values():
            prune.l1_unstructured(m, "weight", amount=amount)
    else:
        prune.global_unstructured([(m, "weight") for m in mods.values()],
                                  pruning_method=prune.L1Unstructured, amount=amount)
    return model


def magnitude_prune(model: nn.Module, amount: float, *, layers: Sequence[str] | str = ("fc1",),
                    scope: str = "layer") -> nn.Module:
    """Return a pruned copy of ``model`` (see :func:`magnitude_prune_`)."""
    return magnitude_prune_(clone(_module(model)), amount, layers=layers, scope=scope)


def threshold_prune(model: nn.Module, threshold: float, *,
                    layers: Sequence[str] | str | None = ("fc1",)) -> nn.Module:
    """Return a copy whose weights with ``|w| <= threshold`` (>= 0) are masked
    to zero; a threshold that would leave a layer without any weight is refused."""
    threshold = _number("threshold", threshold, 0.0)
    for name, m in _layers(model, layers).items():
        w = _weight(m).abs()
        if not (w > threshold).any():  # compared in w's dtype, as the mask is
            top = w.max().item()
            raise ValueError(f"threshold must be below {name}'s largest |w| ({top:.6g}) to "
                             f"leave it a weight, got {threshold!r}")
    net = clone(model)
    for m in _layers(net, layers).values():
        keep = _weight(m).abs() > threshold
        if is_pruned(m):
            prune.remove(m, "weight")
        prune.custom_from_mask(m, "weight", mask=keep)
    return net


@torch.no_grad()
def sparsity(model: nn.Module, layers: Sequence[str] | str | None = None) -> dict[str, float]:
    """Fraction of zero weights per linear layer, and ``"overall"`` across them.

    The model must have at least one ``nn.Linear`` layer (a quantised model,
    whose layers are ``Int8Linear``, has none: count its zeros with
    ``metrics.count_parameters``).
    """
    out, zeros, total = {}, 0, 0
    for name, m in _layers(model, layers).items():
        w = _weight(m)
        z = int((w == 0).sum())
        out[name] = z / w.numel()
        zeros, total = zeros + z, total + w.numel()
    out["overall"] = zeros / total
    return out


# --- structured: whole neurons ----------------------------------------------

def _hidden_layer(model: nn.Module, layer: str) -> tuple[nn.Linear, nn.Linear]:
    """Return (layer, the layer after it) for a hidden layer of an MLP."""
    if not isinstance(model, MLP):
        raise ValueError(f"model must be a helpers.models.MLP, got {type(model).__name__}")
    names = [f"fc{i + 1}" for i in range(model.num_layers - 1)]
    if layer not in names:
        raise ValueError(f"layer must be a hidden layer, one of {names}, got {layer!r}")
    i = int(layer[2:])
    return getattr(model, layer), getattr(model, f"fc{i + 1}")


def _check_norm(norm) -> int:
    if isinstance(norm, bool) or norm not in (1, 2):
        raise ValueError(f"norm must be 1 or 2, got {norm!r}")
    return norm


def _check_leaves_neurons(fc: nn.Linear, layer: str, amount: float) -> None:
    n = fc.out_features
    if round(amount * n) >= n:
        raise ValueError(f"amount must leave at least one of {layer}'s {n} neurons: "
                         f"at most {(n - 1) / n:.10g}, got {amount!r}")


def neuron_prune_(model: MLP, amount: float, *, layer: str = "fc1", norm: int = 1) -> MLP:
    """Mask whole neurons of hidden ``layer`` in place; return the model.

    The ``round(amount * n)`` neurons whose incoming weight rows have the
    smallest L``norm`` norm (``norm`` 1 or 2) get their row and their bias
    masked to zero, so they output ReLU(0) = 0 and contribute nothing. An
    ``amount`` that would mask every neuron is refused; a refused call leaves
    the model as it was.
    """
    amount = _check_amount(amount)
    _check_norm(norm)
    fc, _ = _hidden_layer(model, layer)
    _check_leaves_neurons(fc, layer, amount)
    for name in ("weight", "bias"):
        if is_pruned(fc, name):
            prune.remove(fc, name)
    prune.ln_structured(fc, "weight", amount=amount, n=norm, dim=0)
    row_alive = fc.weight_mask[:, 0].clone()  # (out_features,) 1 = kept
    prune.custom_from_mask(fc, "bias", mask=row_alive)
    return model


def neuron_prune(model: MLP, amount: float, *, layer: str = "fc1", norm: int = 1) -> MLP:
    """Return a copy with whole neurons masked (see :func:`neuron_prune_`)."""
    return neuron_prune_(clone(_module(model)), amount, layer=layer, norm=norm)


@torch.no_grad()
def alive_neurons(model: MLP, layer: str = "fc1") -> torch.Tensor:
    """Indices of the neurons of ``layer`` whose incoming weight row is non-zero."""
    fc, _ = _hidden_layer(model, layer)
    return torch.nonzero((_weight(fc) != 0).any(dim=1)).flatten()


@torch.no_grad()
def shrink(model: MLP, *, layer: str | None = None) -> MLP:
    """Return a physically smaller MLP without the dead neurons of hidden layers.

    A neuron is dead when its incoming weight row is all zero: it then outputs
    the constant ReLU(bias), which is folded into the next layer's bias (zero
    after :func:`neuron_prune`, which masks the bias too). Dropping the neuron
    and its column in the next layer leaves the logits unchanged. ``layer``
    limits this to one hidden layer. The result has the model's dtype and
    device; ``model`` must be a ``helpers.models.MLP``.
    """
    if not isinstance(model, MLP):
        raise ValueError(f"model must be a helpers.models.MLP, got {type(model).__name__}")
    hidden_names = [f"fc{i + 1}" for i in range(model.num_layers - 1)]
    targets = hidden_names if layer is None else [layer]
    for name in targets:
        _hidden_layer(model, name)  # validates
    keep = {name: alive_neurons(model, name) for name in targets}
    sizes = [len(keep[n]) if n in keep else getattr(model, n).out_features for n in hidden_names]
    if any(s == 0 for s in sizes):
        raise ValueError("model must keep at least one neuron in every hidden layer")
    ref = _weight(model.fc1)
    with seeded(0):  # its initial values are all overwritten; leave the global RNG alone
        small = MLP(sizes, in_features=model.fc1.in_features,
                    num_classes=model.layers()[-1].out_features)
    small.to(device=ref.device, dtype=ref.dtype)
    prev_keep, prev_const = None, None
    for i, (src, dst) in enumerate(zip(model.layers(), small.layers())):
        w, b = _weight(src), _weight(src, "bias").clone()  # as the forward pass uses them
        if prev_keep is not None:
            b += w @ prev_const  # the dead neurons' constant outputs
            w = w[:, prev_keep]
        rows = keep.get(f"fc{i + 1}")
        prev_keep, prev_const = rows, None
        if rows is not None:
            dead = torch.ones(len(b), dtype=torch.bool, device=b.device)
            dead[rows] = False
            prev_const = torch.where(dead, torch.relu(b), torch.zeros_like(b))
            w, b = w[rows], b[rows]
        dst.weight.copy_(w)
        dst.bias.copy_(b)
    return small.eval()


def remove_neurons(model: MLP, keep: int, *, layer: str = "fc1", norm: int = 1) -> MLP:
    """Return a smaller MLP keeping the ``keep`` strongest neurons of ``layer``.

    Equivalent to ``shrink(neuron_prune(model, 1 - keep / n, layer=layer))``.
    """
    fc, _ = _hidden_layer(model, layer)
    n = fc.out_features
    check_int("keep", keep, 1, n)
    return shrink(neuron_prune(model, (n - keep) / n, layer=layer, norm=norm), layer=layer)


# --- the article's loop, done right -----------------------------------------

def _check_val(val) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(val, (tuple, list)) and len(val) == 2
            and all(torch.is_tensor(t) and t.ndim for t in val)
            and len(val[0]) == len(val[1]) > 0):
        raise ValueError("val must be a pair (X, y) of tensors with as many labels as images "
                         f"(at least one), got {type(val).__name__}")
    return val[0], val[1]


def iterative_prune(model: nn.Module, data: Dataset, *, target: float, step: float = 0.1,
                    tolerance: float = 0.005, min_step: float = 0.0125,
                    layers: Sequence[str] | str = ("fc1",), finetune_epochs: int = 1,
                    lr: float = 5e-4, seed: int = 0, val: tuple | None = None
                    ) -> tuple[nn.Module, list[dict]]:
    """Prune towards ``target`` sparsity in steps, rolling back any step that
    costs more than ``tolerance`` accuracy; return ``(pruned copy, trace)``.

    Each try raises the sparsity of ``layers`` by ``step`` (capped at
    ``target``), fine-tunes for ``finetune_epochs`` (0 for none) with the masks
    kept, and evaluates on ``val`` = (X, y) (default: the validation split;
    the test split is never read). A try
    whose accuracy is more than ``tolerance`` below the unpruned model's is
    rolled back and the step halved (and kept below the failed gap); the loop ends at ``target`` or when the
    step falls below ``min_step``. Each trace row: ``sparsity`` tried,
    ``accuracy``, ``kept``, and ``step``. ``target`` in [0, 1) must leave each
    layer a weight; ``step`` and ``min_step`` in (0, 1], ``min_step <= step``;
    ``tolerance`` in [0, 1].
    """
    target = _check_amount(target, "target")
    step = _number("step", step, 0.0, 1.0, low_open=True)
    _number("tolerance", tolerance, 0.0, 1.0)
    min_step = _number("min_step", min_step, 0.0, 1.0, low_open=True)
    if min_step > step:
        raise ValueError(f"min_step must be at most step ({step:g}), got {min_step:g}")
    check_int("finetune_epochs", finetune_epochs, 0)
    _number("lr", lr, 0.0, low_open=True)
    check_int("seed", seed, 0)
    _check_leaves_weights(_layers(model, layers), target, name="target")
    X, y = _check_val(val) if val is not None else (_dataset(data).X_val, data.y_val)
    _dataset(data)
    base = evaluate(model, X, y)["accuracy"]
    current, reached = clone(model), 0.0
    trace = [{"sparsity": 0.0, "accuracy": base, "kept": True, "step": 0.0}]
    while reached < target and step >= min_step:
        trying = min(target, reached + step)
        candidate = magnitude_prune(current, trying, layers=layers)
        if finetune_epochs:
            train(candidate, data, epochs=finetune_epochs, lr=lr, seed=seed + len(trace),
                  evaluate_each_epoch=False, progress=False)
        acc = evaluate(candidate, X, y)["accuracy"]
        kept = base - acc <= tolerance + 1e-9  # a drop of exactly `tolerance` is allowed
        trace.append({"sparsity": trying, "accuracy": acc, "kept": kept, "step": step})
        if kept:
            current, reached = candidate, trying
        else:  # halve, and never retry the sparsity that just failed
            step = min(step, trying - reached) / 2
    return current, trace


# --- soft and gradual pruning -----------------------------------------------

def _check_schedule(initial, final) -> tuple[float, float]:
    initial = _check_amount(initial, "initial")
    final = _check_amount(final, "final")
    if final < initial:
        raise ValueError(f"final must be at least initial ({initial:g}): the schedule only "
                         f"prunes, got final={final:g}")
    return initial, final


def cubic_sparsity(t: int, *, initial: float, final: float, t0: int, n: int, dt: int = 1) -> float:
    """Zhu & Gupta's schedule: ``s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3``.

    Before ``t0`` the sparsity is ``initial``; after ``t0 + n*dt`` it is ``final``.
    ``t`` and ``t0`` >= 0, ``n`` and ``dt`` >= 1; ``initial <= final``, both in
    [0, 1) (the schedule only prunes).
    """
    check_int("t", t, 0)
    check_int("t0", t0, 0)
    initial, final = _check_schedule(initial, final)
    check_int("n", n, 1)
    check_int("dt", dt, 1)
    progress = (t - t0) / (n * dt)
    if progress <= 0:
        return initial
    if progress >= 1:
        return final
    return final + (initial - final) * (1.0 - progress) ** 3


def gradual_prune(model: nn.Module, data: Dataset, *, final: float, epochs: int,
                  layers: Sequence[str] | str = ("fc1",), initial: float = 0.0,
                  start_epoch: int = 1, prune_epochs: int | None = None, lr: float = 5e-4,
                  seed: int = 0, progress: bool = False) -> tuple[nn.Module, list[dict]]:
    """Train a copy while its sparsity follows the cubic schedule; return (copy, history).

    At the end of epoch t the layers are pruned (masks kept) to
    ``cubic_sparsity(t, initial, final, t0=start_epoch, n=prune_epochs)``; by
    default the schedule reaches ``final`` two epochs before the end, leaving
    time to recover. The schedule must end by the last epoch
    (``start_epoch + prune_epochs <= epochs``), so the copy returned has
    ``final`` sparsity. Each history row gains ``sparsity``.
    """
    check_int("epochs", epochs, 1)
    check_int("start_epoch", start_epoch, 0)
    initial, final = _check_schedule(initial, final)
    default = prune_epochs is None
    if default:
        prune_epochs = max(1, epochs - start_epoch - 2)
    check_int("prune_epochs", prune_epochs, 1)
    if start_epoch + prune_epochs > epochs:
        raise ValueError(
            f"start_epoch + prune_epochs must be at most epochs (the schedule must end by "
            f"the last epoch), got start_epoch={start_epoch}, prune_epochs={prune_epochs}"
            f"{' (the default)' if default else ''}, epochs={epochs}: start_epoch in "
            f"[0, {epochs - 1}] and prune_epochs in [1, {max(1, epochs - start_epoch)}]")
    _check_leaves_weights(_layers(model, layers), final, name="final")
    _dataset(data)
    net = clone(model)

    def at_epoch_end(m, t):
        s = cubic_sparsity(t, initial=initial, final=final, t0=start_epoch, n=prune_epochs)
        magnitude_prune_(m, s, layers=layers)
        return {"sparsity": sparsity(m, layers)["overall"]}

    history = train(net, data, epochs=epochs, lr=lr, seed=seed, progress=progress,
                    on_epoch_end=at_epoch_end)
    return net, history


@torch.no_grad()
def _zero_weakest_neurons_(fc: nn.Linear, amount: float) -> torch.Tensor:
    """Zero the incoming weight rows of the ``round(amount * n)`` neurons of
    ``fc`` with the smallest L2 norm; return the boolean mask of those neurons.
    Biases stay: a neuron with a positive bias still passes gradients and can
    grow back, as a zeroed filter can in SFP."""
    n = fc.out_features
    k = round(amount * n)
    dead = torch.zeros(n, dtype=torch.bool, device=fc.weight.device)
    if k:
        dead[_weight(fc).norm(dim=1).argsort()[:k]] = True
        fc.weight[dead] = 0
    return dead


def soft_filter_prune(model: MLP, data: Dataset, *, amount: float, epochs: int,
                      layer: str = "fc1", lr: float = 5e-4, seed: int = 0,
                      every: int | None = None, progress: bool = False
                      ) -> tuple[MLP, list[dict]]:
    """Soft Filter Pruning for the neurons of one hidden layer; return (copy, history).

    After every epoch the incoming weights of the ``amount`` fraction of
    neurons with the smallest weight-row L2 norm are zeroed, but nothing is
    frozen: zeroed neurons keep their bias, keep receiving gradients and may
    grow back, and the choice is made afresh each time. With ``every`` (>= 1)
    the choice is also made every ``every`` optimiser steps, not only at the
    end of each epoch. The returned copy has the last choice's neurons zeroed
    (``shrink`` removes them, folding their constant outputs into the next
    bias). Each history row gains ``changed`` (how many neurons were newly
    zeroed during that epoch's re-selections, compared with the choice before
    each), ``regrown_norm`` (the largest weight-row norm the neurons zeroed at
    the previous choice grew back to) and ``kept_min_norm`` (the smallest norm
    among the neurons kept by the epoch's final choice). On the first epoch
    without ``every`` there is no earlier choice: all three are 0.
    """
    amount = _check_amount(amount)
    check_int("epochs", epochs, 1)
    if every is not None:
        check_int("every", every, 1)
    _check_leaves_neurons(_hidden_layer(model, layer)[0], layer, amount)
    _dataset(data)
    net = make_permanent(model)
    fc, _ = _hidden_layer(net, layer)
    state = {"dead": None, "changed": 0, "steps": 0}

    def reselect() -> torch.Tensor:
        before = state["dead"]
        state["dead"] = _zero_weakest_neurons_(fc, amount)
        if before is not None:
            state["changed"] += int((state["dead"] & ~before).sum())
        return before

    def loss_with_reselection(m, xb, yb, idx):
        state["steps"] += 1
        if state["steps"] % every == 0:
            reselect()
        return F.cross_entropy(m(xb), yb)

    def at_epoch_end(m, t):
        norms = _weight(fc).norm(dim=1)
        before = reselect()
        changed, state["changed"] = state["changed"], 0
        if before is None or not before.any():
            return {"changed": changed, "regrown_norm": 0.0, "kept_min_norm": 0.0}
        alive = ~state["dead"]
        return {"changed": changed, "regrown_norm": norms[before].max().item(),
                "kept_min_norm": norms[alive].min().item() if alive.any() else 0.0}

    history = train(net, data, epochs=epochs, lr=lr, seed=seed, progress=progress,
                    loss_fn=None if every is None else loss_with_reselection,
                    on_epoch_end=at_epoch_end)
    return net, history


# --- sensitivity ------------------------------------------------------------

def sensitivity_scan(model: nn.Module, data: Dataset, amounts: Sequence[float], *,
                     layers: Sequence[str] | str | None = None) -> dict[str, list[float]]:
    """Validation accuracy when each layer alone is pruned by each amount (no
    fine-tuning): the scan decides how much each layer can lose, so it reads
    the validation split. Returns ``{layer: [accuracy for each amount]}``;
    ``amounts``: a non-empty sequence in [0, 1), each leaving every layer a weight.
    """
    amounts = _amounts(amounts)
    mods = _layers(model, layers)
    for a in amounts:
        _check_leaves_weights(mods, a)
    _dataset(data)
    out = {}
    for name in mods:
        out[name] = [evaluate(magnitude_prune(model, a, layers=name), data.X_val,
                              data.y_val)["accuracy"] for a in amounts]
    return out


# --- lottery tickets (Frankle & Carbin 2019, arXiv:1803.03635) -----------------

def _parameter_shapes(model: nn.Module) -> dict[str, tuple]:
    """``{"fc1.weight": shape, ...}``, a pruned parameter under its own name."""
    return {f"{mn}.{pn.removesuffix('_orig')}".lstrip("."): tuple(p.shape)
            for mn, m in model.named_modules() for pn, p in m.named_parameters(recurse=False)}


@torch.no_grad()
def rewind(pruned: nn.Module, init: nn.Module) -> nn.Module:
    """Return a copy of ``pruned`` (masks kept) whose weights are reset to
    ``init``'s values: a "winning ticket" when ``init`` is the network's own
    initialisation, a random control when it is another one. ``init`` must
    have the same parameters (names and shapes) as ``pruned``."""
    mine, theirs = _parameter_shapes(_module(pruned, "pruned")), _parameter_shapes(
        _module(init, "init"))
    if mine != theirs:
        differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        raise ValueError(f"init must have the same architecture as pruned (parameters and "
                         f"shapes); they differ in {differ}: init has "
                         f"{[theirs.get(k) for k in differ]}, "
                         f"pruned {[mine.get(k) for k in differ]}")
    net = clone(pruned)
    src = dict(init.named_modules())
    for name, m in net.named_modules():
        for pname, p in m.named_parameters(recurse=False):
            p.copy_(_weight(src[name], pname.removesuffix("_orig")))
    return refresh_pruned_weights_(net)  # .weight would show the trained values until a forward
