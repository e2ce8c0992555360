"""Shared fixtures and helpers: an isolated cache per test, the embedded data
loaded once, small datasets cut from it, a small trained teacher, IDX files
written by hand, model-state comparisons, a free local port and the
scripts in ``scripts/`` loaded as modules.

Test files import the plain helpers with ``from conftest import ...``.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import socket
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import helpers.data as hdata
from helpers.data import Dataset
from helpers.models import mlp
from helpers.training import train

DIGIT_NAMES = tuple(str(i) for i in range(10))


def subset(data: Dataset, n_train: int, n_eval: int, name: str = "subset") -> Dataset:
    """The first ``n_train`` training images of ``data`` and the first ``n_eval``
    of both its validation and its test splits, under a new name."""
    return dataclasses.replace(
        data, name=name, X_train=data.X_train[:n_train], y_train=data.y_train[:n_train],
        X_val=data.X_val[:n_eval], y_val=data.y_val[:n_eval],
        X_test=data.X_test[:n_eval], y_test=data.y_test[:n_eval])


def synthetic(n_train: int = 48, n_eval: int = 24, seed: int = 0) -> Dataset:
    """A small learnable task on random images: the label is the argmax of a
    fixed random linear map of the pixels. Validation and test have ``n_eval``
    images each, disjoint from training."""
    g = torch.Generator().manual_seed(seed)
    R = torch.randn(784, 10, generator=g)
    X = torch.randn(n_train + 2 * n_eval, 1, 28, 28, generator=g)
    y = (X.reshape(len(X), -1) @ R).argmax(1)
    a, b = n_train, n_train + n_eval
    return Dataset("synthetic", X[:a], y[:a], X[a:b], y[a:b], X[b:], y[b:],
                   DIGIT_NAMES, 0.0, 1.0)


def write_idx_images(path: Path, images: np.ndarray) -> None:
    """Write uint8 images (N, H, W) as an IDX file, the format of the MNIST files."""
    n, h, w = images.shape
    header = struct.pack(">iiii", 0x00000803, n, h, w)
    path.write_bytes(header + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    """Write labels (N,) as an IDX file of uint8."""
    header = struct.pack(">ii", 0x00000801, len(labels))
    path.write_bytes(header + labels.astype(np.uint8).tobytes())


def write_fake_idx_set(root: Path, folder: str, seed: int, *, per_class: int,
                       n_test: int) -> tuple:
    """Tiny MNIST-format IDX files under ``root/folder/raw``: ``per_class``
    random training images of each digit (shuffled) and ``n_test`` test
    images. Returns ``(x_train, y_train, x_test, y_test)``."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    xtr = rng.integers(0, 256, size=(10 * per_class, 28, 28), dtype=np.uint8)
    ytr = rng.permutation(np.repeat(np.arange(10), per_class))
    xte = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    yte = rng.integers(0, 10, size=n_test)
    write_idx_images(raw / "train-images-idx3-ubyte", xtr)
    write_idx_labels(raw / "train-labels-idx1-ubyte", ytr)
    write_idx_images(raw / "t10k-images-idx3-ubyte", xte)
    write_idx_labels(raw / "t10k-labels-idx1-ubyte", yte)
    return xtr, ytr, xte, yte


def hand_softmax(z: torch.Tensor) -> torch.Tensor:
    """softmax along the last axis, written out (max subtracted for stability)."""
    e = torch.exp(z - z.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def state(model: torch.nn.Module) -> dict:
    """A detached copy of ``model``'s state dict."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a: dict, b: dict) -> bool:
    """True if two state dicts have the same keys, in order, and equal tensors."""
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def close_state(a: dict, b: dict, atol: float = 1e-6) -> bool:
    """True if two state dicts have the same keys, in order, and tensors equal
    to within ``atol`` (a stack of students computes the same sums in another
    order than one student alone: they agree to rounding)."""
    return list(a) == list(b) and all(torch.allclose(a[k], b[k], rtol=0, atol=atol) for k in a)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def single_thread_torch():
    """Run torch on one intra-op thread during the tests.

    The models here are tiny, so one thread is about as fast as two; but with
    torch's default (one thread per core) any other busy process on this 2-core
    machine makes the OpenMP threads wait on each other, and training slows down
    by 20-100x. Results are compared within one process, so this changes nothing
    that a test asserts.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own empty cache folder and an empty dataset memo."""
    cache = tmp_path / "kit-cache"
    monkeypatch.setenv("KIT_CACHE_DIR", str(cache))
    monkeypatch.delenv("KIT_DATASET", raising=False)
    hdata._memo.clear()
    yield cache
    hdata._memo.clear()


@pytest.fixture(scope="session")
def embedded_cache_file(tmp_path_factory):
    """Path of a valid on-disk cache of the embedded set (written by a real load)."""
    cache = tmp_path_factory.mktemp("embedded-session-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KIT_CACHE_DIR", str(cache))
        saved = dict(hdata._memo)
        hdata._memo.clear()
        try:
            data = hdata.load_dataset("embedded")
        finally:
            hdata._memo.clear()
            hdata._memo.update(saved)
    path = cache / hdata._EMBEDDED_CACHE
    assert path.is_file()
    return path, data


@pytest.fixture(scope="session")
def embedded(embedded_cache_file):
    """The embedded dataset (3,500 / 500 / 1,000), parsed once per session. Read-only."""
    return embedded_cache_file[1]


@pytest.fixture
def warm_embedded_cache(embedded_cache_file, isolated_cache):
    """Copy the session's valid embedded cache file into this test's cache folder."""
    src = embedded_cache_file[0]
    isolated_cache.mkdir(parents=True, exist_ok=True)
    dst = isolated_cache / src.name
    shutil.copyfile(src, dst)
    return dst


@pytest.fixture(scope="session")
def small(embedded):
    """300 training images, 200 validation and 200 test, for distillation tests. Read-only."""
    return subset(embedded, 300, 200, "distill-subset")


@pytest.fixture(scope="session")
def teacher(small):
    """A tiny MLP teacher (784-16-10) trained one epoch on ``small``. Read-only."""
    net = mlp(16, seed=1)
    train(net, small, epochs=1, progress=False, evaluate_each_epoch=False, device="cpu")
    return net


def load_script(name: str):
    """``scripts/<name>.py`` as a module (loaded once; ``scripts/`` is no package)."""
    if name not in sys.modules:
        path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # dataclasses look their module up
        spec.loader.exec_module(mod)
    return sys.modules[name]
