"""A checkpoint cache for trained models, keyed by their full configuration.

``load_or_train`` returns a cached model when a checkpoint with the same key
exists, and trains (then saves) one otherwise. The key is a hash of everything
that determines the weights: model config, the data split's fingerprint
(``Dataset.fingerprint``), the training recipe, the seed and the fingerprint
of every model the weights were trained from (:func:`model_fingerprint`). A
file is written atomically (temporary file, then rename); a corrupt or stale
file is detected, reported with a warning, and replaced by a fresh training.

What is cached (the baselines, teachers, students and the rest, with their
recipes) is in ``experiments``; this module only stores and finds.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from typing import Callable

import torch
from torch import nn

from ._util import atomic_torch_save, cache_dir
from .data import Dataset
from .training import evaluate, get_device

FORMAT = 2

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


def config_key(config: dict) -> str:
    """Return a stable hash (hex) of a JSON-serialisable configuration dict."""
    blob = json.dumps({"format": FORMAT, **config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def checkpoint_path(name: str, config: dict):
    """Where the checkpoint of ``name`` under ``config`` lives in the cache."""
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(f"name must be non-empty and use only letters, digits, '-' and '_', got {name!r}")
    return cache_dir() / "checkpoints" / f"{name}-{config_key(config)[:16]}.pt"


def _read(path, key: str, model: nn.Module, device) -> dict | None:
    """Load a checkpoint into ``model``; return its record, or None (with a warning)."""
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
            raise ValueError("unknown checkpoint format")
        if ckpt.get("key") != key:
            raise ValueError("its configuration differs from the one asked for (stale)")
        model.load_state_dict(ckpt["state_dict"])
        return ckpt["record"]
    except Exception as exc:
        warnings.warn(f"checkpoint {path.name} could not be used ({exc}); training again",
                      RuntimeWarning, stacklevel=3)
        return None


def load_checkpoint(name: str, config: dict, build: Callable[[], nn.Module], *,
                    device=None) -> tuple[nn.Module, dict] | None:
    """The cached ``(model, record)`` of ``name`` under ``config``, or None when
    there is none (or it is unusable: then a warning says why)."""
    device = get_device(device)
    path = checkpoint_path(name, config)
    if not path.exists():
        return None
    model = build().to(device)
    record = _read(path, config_key(config), model, device)
    if record is None:
        return None
    return model.eval(), {**record, "cached": True}


def save_checkpoint(name: str, config: dict, model: nn.Module, record: dict) -> None:
    """Store ``model``'s weights and its JSON-like ``record`` under ``config``
    (atomically: a temporary file, then a rename)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save({"format": FORMAT, "key": config_key(config), "config": config,
                       "state_dict": state, "record": record}, checkpoint_path(name, config))


def load_or_train(name: str, config: dict, build: Callable[[], nn.Module],
                  fit: Callable[[nn.Module], dict], *, device=None) -> tuple[nn.Module, dict]:
    """Return ``(model, record)``, from the cache if possible.

    ``config`` must hold everything that determines the trained weights.
    ``build()`` returns a fresh model; ``fit(model)`` trains it in place and
    returns a JSON-like record (numbers, strings, lists, dicts) that is stored
    with the weights. ``record["cached"]`` says whether the cache was used.
    """
    device = get_device(device)
    cached = load_checkpoint(name, config, build, device=device)
    if cached is not None:
        return cached
    model = build().to(device)  # fresh: a failed load may have left weights half-set
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
