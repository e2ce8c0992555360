"""A checkpoint cache for trained models, keyed by their full configuration.

``load_or_train`` returns a cached model when a checkpoint with the same key
exists, and trains (then saves) one otherwise. The key is a hash of everything
that determines the weights: model config, the data split's fingerprint
(``Dataset.fingerprint``), the training recipe, the seed, the fingerprint of
every model the weights were trained from (:func:`model_fingerprint`) and the
version of the code that trains the checkpoint's name (:data:`CODE_VERSIONS`).
A file is written atomically (temporary file, then rename) and carries a
sha256 of its weights and record; a corrupt, stale or altered file is
detected, reported with a warning, and replaced by a fresh training. Two
processes asking for the same model train it once: the second waits on a lock
file (``<checkpoint>.lock``, where ``fcntl`` exists) and then loads. A save
that fails (a read-only or full disk) warns, and the trained model is still
returned.

What is cached (the baselines, teachers, students and the rest, with their
recipes) is in ``experiments``; this module only stores and finds.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from ._util import (atomic_torch_save, cache_dir, remove_stale_temporaries,
                    usable_cache_file)
from .data import Dataset
from .training import evaluate, get_device

try:  # the lock that lets two kernels share one cache
    import fcntl
except ImportError:  # Windows: no lock; two kernels may then both train one model
    fcntl = None

FORMAT = 3

# The code behind each checkpoint name the kit uses: a version, and the
# functions and classes whose behaviour determines the weights. When one of
# them changes what it computes, bump the version (old checkpoints are then
# trained again) and regenerate the record the tests compare it with:
#     PYTHONPATH=. python tests/test_checkpoints.py --record
# A name not listed here (one of your own) has version 0.
_TRAIN = ("helpers.training.train", "helpers.training._start", "helpers.training._update_",
          "helpers.training._epoch_end", "helpers.training._finish_",
          "helpers.training.cross_entropy_loss", "helpers.training.make_optimizer",
          "helpers.training.evaluate", "helpers.data.batches")
_MLP = ("helpers.models.MLP", "helpers.models.mlp", "helpers.models.baseline_mlp")
_RECIPE = _MLP + _TRAIN + ("helpers.experiments._recipe_model",)
_FINETUNED = _TRAIN + ("helpers.models.clone", "helpers.experiments._cached",
                       "helpers.experiments._finetune")
_NEURONS = ("helpers.pruning.remove_neurons", "helpers.pruning.neuron_prune",
            "helpers.pruning.neuron_prune_", "helpers.pruning.shrink")
_MAGNITUDE = ("helpers.pruning.magnitude_prune", "helpers.pruning.magnitude_prune_")
CODE_VERSIONS: dict[str, tuple[int, tuple[str, ...]]] = {
    "baseline": (1, _RECIPE),
    "regularised": (1, _RECIPE + ("helpers.training.weight_penalty",
                                  "helpers.training.penalized_weights")),
    "teacher": (1, _TRAIN + ("helpers.models.SmallCNN", "helpers.models.small_cnn",
                             "helpers.training.random_shift",
                             "helpers.experiments._recipe_model")),
    "student": (1, _MLP + _TRAIN + ("helpers.models.MLPStack", "helpers.training.train_stack",
                                    "helpers.training._stacked_batches",
                                    "helpers.distillation.stacked_distillation_loss",
                                    "helpers.experiments.train_students",
                                    "helpers.experiments._train_stack")),
    "compare-masked": (1, _FINETUNED + _MAGNITUDE),
    "compare-structured": (1, _FINETUNED + _NEURONS),
    "compare-structured-kd": (1, _FINETUNED + _NEURONS + (
        "helpers.distillation.distill", "helpers.distillation.distillation_loss",
        "helpers.experiments._structured_kd")),
    "compare-sfp": (1, _FINETUNED + _NEURONS + (
        "helpers.pruning.soft_filter_prune", "helpers.pruning._zero_weakest_neurons_",
        "helpers.experiments._soft_pruned", "helpers.experiments._copied")),
    "compare-gradual": (1, _FINETUNED + _MAGNITUDE + (
        "helpers.pruning.gradual_prune", "helpers.pruning.cubic_sparsity",
        "helpers.experiments._soft_pruned", "helpers.experiments._copied")),
    "same-budget-oneshot": (1, _FINETUNED + _MAGNITUDE + ("helpers.experiments._hard_pruned",)),
    "same-budget-hard": (1, _FINETUNED + _NEURONS + ("helpers.experiments._hard_pruned",)),
}
_JSON = "None, bool, int, float, str, and lists, tuples and str-keyed dicts of them"


def code_version(name: str) -> int:
    """The version of the code that trains checkpoint ``name`` (0 if unlisted)."""
    return CODE_VERSIONS.get(name, (0, ()))[0]


def _tensor_bytes(t: torch.Tensor) -> bytes:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def model_fingerprint(model: nn.Module) -> str:
    """A short hash of ``model``'s state dict (names, shapes and exact values).

    A checkpoint trained from another model (a student from its teacher) keys
    on it, so a changed teacher never reuses old students.
    """
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:16]


def _check_json(where: str, value) -> None:
    """Raise TypeError unless ``value`` is made of JSON values only."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_json(f"{where}[{i}]", v)
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where} must have str keys, got {k!r}")
            _check_json(f"{where}[{k!r}]", v)
    else:
        raise TypeError(f"{where} must hold JSON values only ({_JSON}), got a "
                        f"{type(value).__name__}; a tensor's text would not name its values, "
                        "so key on a fingerprint of it (e.g. model_fingerprint)")


def config_key(config: dict, name: str | None = None) -> str:
    """Return a stable hash (hex) of ``config`` and, if ``name`` is given, of
    that name's :func:`code_version`.

    ``config`` is a dict of JSON values only (None, bool, int, float, str, and
    lists, tuples and str-keyed dicts of them); anything else (a tensor, an
    array, a path) raises TypeError.
    """
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict of JSON values, got {type(config).__name__}")
    _check_json("config", config)
    code = None if name is None else [name, code_version(name)]
    blob = json.dumps({"format": FORMAT, "code": code, "config": config}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def checkpoint_path(name: str, config: dict) -> Path:
    """Where the checkpoint of ``name`` under ``config`` lives in the cache.

    ``name``: 1 to 100 letters, digits, '-' and '_'.
    """
    if not isinstance(name, str) or not 0 < len(name) <= 100 or not all(
            c.isascii() and (c.isalnum() or c in "-_") for c in name):
        raise ValueError("name must be 1 to 100 letters, digits, '-' and '_', got "
                         f"{name!r}")
    return cache_dir() / "checkpoints" / f"{name}-{config_key(config, name)[:16]}.pt"


def _payload_sha256(key: str, state: dict, record) -> str:
    """The sha256 of what a checkpoint holds: its key, weights and record."""
    h = hashlib.sha256(key.encode())
    for name, t in state.items():
        h.update(f"|{name}:{t.dtype}:{tuple(t.shape)}|".encode())
        h.update(_tensor_bytes(t))
    h.update(json.dumps(record, sort_keys=True, default=repr).encode())
    return h.hexdigest()


def _read(path, key: str, model: nn.Module, device) -> dict | None:
    """Load a checkpoint into ``model``; return its record, or None (with a warning)."""
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
            raise ValueError("unknown checkpoint format")
        if ckpt.get("key") != key:
            raise ValueError("its configuration differs from the one asked for (stale)")
        if ckpt.get("sha256") != _payload_sha256(key, ckpt["state_dict"], ckpt["record"]):
            raise ValueError("its weights or record do not match their checksum (damaged)")
        model.load_state_dict(ckpt["state_dict"])
        return ckpt["record"]
    except Exception as exc:
        warnings.warn(f"checkpoint {path.name} could not be used ({exc}); training again",
                      RuntimeWarning, stacklevel=4)
        return None


def _check_callable(what: str, fn) -> None:
    if not callable(fn) or isinstance(fn, nn.Module):  # a model is callable, but not a builder
        raise TypeError(f"{what} must be a function (build: one that returns a fresh model), "
                        f"got {type(fn).__name__}")


def _built(build) -> nn.Module:
    model = build()
    if not isinstance(model, nn.Module):
        raise TypeError(f"build must return a torch.nn.Module, got {type(model).__name__}")
    return model


def load_checkpoint(name: str, config: dict, build: Callable[[], nn.Module], *,
                    device=None) -> tuple[nn.Module, dict] | None:
    """The cached ``(model, record)`` of ``name`` under ``config``, or None when
    there is none (or it is unusable: then a warning says why). ``build()``
    returns a fresh model for the weights."""
    _check_callable("build", build)
    path = checkpoint_path(name, config)
    device = get_device(device)
    remove_stale_temporaries(path.parent)
    if not usable_cache_file(path):
        return None
    model = _built(build).to(device)
    record = _read(path, config_key(config, name), model, device)
    if record is None:
        return None
    return model.eval(), {**record, "cached": True}


def save_checkpoint(name: str, config: dict, model: nn.Module, record: dict) -> None:
    """Store ``model``'s weights and its JSON-like ``record`` under ``config``
    (atomically: a temporary file, then a rename). If the disk refuses (read-
    only, full), a RuntimeWarning says so and nothing is stored."""
    path = checkpoint_path(name, config)
    key = config_key(config, name)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    try:
        atomic_torch_save({"format": FORMAT, "key": key, "config": config, "state_dict": state,
                           "record": record, "sha256": _payload_sha256(key, state, record)},
                          path)
    except OSError as exc:
        warnings.warn(f"checkpoint {path.name} could not be saved ({exc}); the trained model "
                      "is returned but not cached", RuntimeWarning, stacklevel=2)


@contextlib.contextmanager
def checkpoint_lock(name: str, config: dict) -> Iterator[None]:
    """Hold the lock of ``name`` under ``config`` while the block runs,
    waiting for another process that holds it. Where no lock can be taken
    (no ``fcntl``, a cache that cannot be written), the block runs unlocked.
    A process that dies releases its lock."""
    lock = checkpoint_path(name, config).with_suffix(".lock")
    fd = None
    if fcntl is not None:
        with contextlib.suppress(OSError):
            lock.parent.mkdir(parents=True, exist_ok=True)
            # O_NONBLOCK: a FIFO in the lock's place fails at once instead of blocking
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK, 0o666)
            fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def load_or_train(name: str, config: dict, build: Callable[[], nn.Module],
                  fit: Callable[[nn.Module], dict], *, device=None) -> tuple[nn.Module, dict]:
    """Return ``(model, record)``, from the cache if possible.

    ``config`` must hold everything that determines the trained weights, as
    JSON values. ``build()`` returns a fresh model; ``fit(model)`` trains it
    in place and returns a JSON-like record (numbers, strings, lists, dicts)
    that is stored with the weights. ``record["cached"]`` says whether the
    cache was used. While one process trains, another asking for the same
    model waits, then loads it (:func:`checkpoint_lock`).
    """
    _check_callable("build", build)
    _check_callable("fit", fit)
    device = get_device(device)
    with checkpoint_lock(name, config):
        cached = load_checkpoint(name, config, build, device=device)
        if cached is not None:
            return cached
        model = _built(build).to(device)  # fresh: a failed load may have left weights half-set
        record = fit(model)
        save_checkpoint(name, config, model, record)
    model.eval()
    return model, {**record, "cached": False}


def final_record(model: nn.Module, data: Dataset, history: list[dict]) -> dict:
    """The record stored with a trained model: its ``history`` (validation
    figures per epoch), ``train_seconds``, and ``test_accuracy`` /
    ``test_loss``, the one reading of the test split for this final model."""
    ev = evaluate(model, data.X_test, data.y_test)
    return {"history": history, "test_accuracy": ev["accuracy"], "test_loss": ev["loss"],
            "train_seconds": sum(r["seconds"] for r in history)}
