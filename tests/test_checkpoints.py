"""Tests for helpers.checkpoints (the trained-model cache) and the shared
baseline of helpers.experiments: what every cached model's key depends on."""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import importlib
import inspect
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch

import helpers.checkpoints as hck
import helpers.experiments as ex
from helpers.checkpoints import (FORMAT, checkpoint_path, code_version, config_key, final_record,
                                 load_or_train, model_fingerprint)
from helpers.distillation import without_class
from helpers.experiments import SEEDS, get_baseline, get_baselines, get_student
from helpers.models import mlp
from helpers.training import evaluate

from conftest import same_state, subset

CONFIG = {"model": {"type": "MLP", "hidden": [4]}, "data": "toy", "recipe": {"epochs": 1},
          "seed": 0}


def all_files(root: Path) -> list[Path]:
    """Every file below ``root`` but the (empty) lock files of load_or_train."""
    found = []
    for dirpath, _dirs, files in os.walk(root):
        found.extend(Path(dirpath) / f for f in files if not f.endswith(".lock"))
    return sorted(found)


class CountingFit:
    """A stand-in for training: changes every parameter in a fixed way and counts calls."""

    def __init__(self, fail: bool = False):
        self.calls = 0
        self.fail = fail

    def __call__(self, model):
        self.calls += 1
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(-2.0).add_(0.25)
        if self.fail:
            raise RuntimeError("training blew up")
        return {"score": 0.5, "notes": ["trained"], "calls": self.calls}


def build():
    return mlp(4, seed=0)


def fitted_state():
    """What CountingFit makes of a freshly built model, computed on its own."""
    return {k: v * -2.0 + 0.25 for k, v in build().state_dict().items()}


@pytest.fixture
def ckpt_dir(isolated_cache):
    return isolated_cache / "checkpoints"


def test_first_call_trains_second_loads(ckpt_dir):
    fit = CountingFit()
    m1, r1 = load_or_train("toy", CONFIG, build, fit, device="cpu")
    assert fit.calls == 1
    assert r1["cached"] is False and r1["score"] == 0.5 and r1["notes"] == ["trained"]
    files = all_files(ckpt_dir)
    assert files == [checkpoint_path("toy", CONFIG)]
    assert same_state(m1.state_dict(), fitted_state())
    assert not m1.training

    m2, r2 = load_or_train("toy", CONFIG, build, fit, device="cpu")
    assert fit.calls == 1  # not trained again
    assert r2["cached"] is True
    assert {k: v for k, v in r2.items() if k != "cached"} == \
        {k: v for k, v in r1.items() if k != "cached"}
    assert m2 is not m1
    assert same_state(m2.state_dict(), m1.state_dict())
    assert not m2.training
    assert all_files(ckpt_dir) == files


def test_stored_checkpoint_content(ckpt_dir):
    load_or_train("toy", CONFIG, build, CountingFit(), device="cpu")
    ckpt = torch.load(checkpoint_path("toy", CONFIG), weights_only=True)
    assert ckpt["format"] == FORMAT
    assert ckpt["key"] == config_key(CONFIG, "toy")
    assert ckpt["config"] == CONFIG
    assert same_state(ckpt["state_dict"], fitted_state())
    assert ckpt["record"]["score"] == 0.5 and "cached" not in ckpt["record"]


def test_config_key_ignores_dict_order_and_sees_every_value():
    reordered = {k: CONFIG[k] for k in reversed(list(CONFIG))}
    assert config_key(reordered) == config_key(CONFIG)
    assert checkpoint_path("toy", reordered) == checkpoint_path("toy", CONFIG)
    changed = {**CONFIG, "recipe": {"epochs": 2}}
    assert config_key(changed) != config_key(CONFIG)


def test_other_config_or_name_gets_its_own_file(ckpt_dir):
    fit = CountingFit()
    load_or_train("toy", CONFIG, build, fit, device="cpu")
    other = {**CONFIG, "seed": 1}
    _, r = load_or_train("toy", other, build, fit, device="cpu")
    assert r["cached"] is False and fit.calls == 2
    _, r = load_or_train("toy2", CONFIG, build, fit, device="cpu")
    assert r["cached"] is False and fit.calls == 3
    files = all_files(ckpt_dir)
    assert len(files) == 3
    assert set(files) == {checkpoint_path("toy", CONFIG), checkpoint_path("toy", other),
                          checkpoint_path("toy2", CONFIG)}


def _assert_valid_and_used(ckpt_dir, fit):
    """The file on disk is a good checkpoint: it loads, and the next call uses it."""
    path = checkpoint_path("toy", CONFIG)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["key"] == config_key(CONFIG, "toy")
    assert same_state(ckpt["state_dict"], fitted_state())
    calls = fit.calls
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m, r = load_or_train("toy", CONFIG, build, fit, device="cpu")
    assert r["cached"] is True and fit.calls == calls
    assert same_state(m.state_dict(), fitted_state())
    assert all_files(ckpt_dir) == [path]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_file_warns_retrains_and_is_replaced(ckpt_dir, damage):
    fit = CountingFit()
    load_or_train("toy", CONFIG, build, fit, device="cpu")
    path = checkpoint_path("toy", CONFIG)
    blob = path.read_bytes()
    path.write_bytes({"garbage": b"\x00garbage\xff" * 50, "truncated": blob[: len(blob) // 2],
                      "empty": b""}[damage])

    with pytest.warns(RuntimeWarning, match=path.name):
        m, r = load_or_train("toy", CONFIG, build, fit, device="cpu")
    assert r["cached"] is False and fit.calls == 2
    assert same_state(m.state_dict(), fitted_state())
    _assert_valid_and_used(ckpt_dir, fit)


def test_stale_file_warns_and_retrains(ckpt_dir):
    fit = CountingFit()
    path = checkpoint_path("toy", CONFIG)
    path.parent.mkdir(parents=True)
    bogus = {k: torch.full_like(v, 7.0) for k, v in build().state_dict().items()}
    torch.save({"format": FORMAT, "key": "0" * 64, "config": CONFIG, "state_dict": bogus,
                "record": {"score": -1.0}}, path)

    with pytest.warns(RuntimeWarning, match="stale"):
        m, r = load_or_train("toy", CONFIG, build, fit, device="cpu")
    assert r["cached"] is False and r["score"] == 0.5 and fit.calls == 1
    assert same_state(m.state_dict(), fitted_state())  # not the stale weights
    _assert_valid_and_used(ckpt_dir, fit)


def test_unknown_format_warns_and_retrains(ckpt_dir):
    fit = CountingFit()
    path = checkpoint_path("toy", CONFIG)
    path.parent.mkdir(parents=True)
    torch.save({"format": FORMAT + 1, "key": config_key(CONFIG, "toy"),
                "state_dict": build().state_dict(), "record": {}}, path)
    with pytest.warns(RuntimeWarning, match="format"):
        _, r = load_or_train("toy", CONFIG, build, fit, device="cpu")
    assert r["cached"] is False and fit.calls == 1
    _assert_valid_and_used(ckpt_dir, fit)


def test_half_loaded_weights_are_discarded(ckpt_dir):
    """A checkpoint whose state_dict only partly fits must not leak into the result."""
    fit = CountingFit()
    path = checkpoint_path("toy", CONFIG)
    path.parent.mkdir(parents=True)
    partial = {"fc1.weight": torch.full((4, 784), 9.0), "fc1.bias": torch.full((4,), 9.0)}
    torch.save({"format": FORMAT, "key": config_key(CONFIG, "toy"), "config": CONFIG,
                "state_dict": partial, "record": {}}, path)
    with pytest.warns(RuntimeWarning):
        m, r = load_or_train("toy", CONFIG, build, fit, device="cpu")
    assert r["cached"] is False
    assert same_state(m.state_dict(), fitted_state())


def test_writes_leave_no_temporary_files(ckpt_dir):
    fit = CountingFit()
    for seed in range(3):
        load_or_train("toy", {**CONFIG, "seed": seed}, build, fit, device="cpu")
    # overwrite one after damaging it
    path = checkpoint_path("toy", CONFIG)
    path.write_bytes(b"junk")
    with pytest.warns(RuntimeWarning):
        load_or_train("toy", CONFIG, build, fit, device="cpu")
    names = [p.name for p in all_files(ckpt_dir)]
    assert len(names) == 3
    assert not [n for n in names if n.endswith(".tmp") or n.startswith(".")]
    assert all(n.startswith("toy-") and n.endswith(".pt") for n in names)


def test_failing_fit_leaves_nothing_behind(isolated_cache):
    fit = CountingFit(fail=True)
    with pytest.raises(RuntimeError, match="blew up"):
        load_or_train("toy", CONFIG, build, fit, device="cpu")
    assert fit.calls == 1
    assert all_files(isolated_cache) == []


@pytest.mark.parametrize("name", ["", "a/b", "../up", "with space", "dot.name", "back\\slash"])
def test_checkpoint_path_rejects_bad_names(name):
    with pytest.raises(ValueError, match="name"):
        checkpoint_path(name, CONFIG)


def test_checkpoint_path_lives_in_the_cache(isolated_cache):
    p = checkpoint_path("my-net_2", CONFIG)
    assert p.parent == isolated_cache / "checkpoints"
    assert p.name == f"my-net_2-{config_key(CONFIG, 'my-net_2')[:16]}.pt"


# --- the shared baseline --------------------------------------------------------

def test_get_baseline_is_cached_and_returns_independent_copies(embedded, isolated_cache):
    m1, r1 = get_baseline(embedded, device="cpu")
    assert r1["cached"] is False
    assert r1["test_accuracy"] > 0.9
    ev = evaluate(m1, embedded.X_test, embedded.y_test)
    assert r1["test_accuracy"] == pytest.approx(ev["accuracy"], abs=1e-9)
    assert r1["test_loss"] == pytest.approx(ev["loss"], rel=1e-5)
    assert len(r1["history"]) == 15
    assert all({"val_accuracy", "val_loss"} <= set(r) for r in r1["history"])
    assert r1["train_seconds"] == pytest.approx(sum(r["seconds"] for r in r1["history"]))
    snapshot = {k: v.clone() for k, v in m1.state_dict().items()}

    with torch.no_grad():
        m1.fc1.weight.zero_()  # vandalise the first copy
    m2, r2 = get_baseline(embedded, device="cpu")
    assert r2["cached"] is True
    assert r2["test_accuracy"] == r1["test_accuracy"]
    assert m2 is not m1
    assert m2.fc1.weight.data_ptr() != m1.fc1.weight.data_ptr()
    assert same_state(m2.state_dict(), snapshot)

    with torch.no_grad():
        m2.fc2.bias.fill_(3.0)
    m3, _ = get_baseline(embedded, device="cpu")
    assert same_state(m3.state_dict(), snapshot)
    assert len(all_files(isolated_cache / "checkpoints")) == 1


def test_get_baseline_rejects_negative_seed(embedded):
    with pytest.raises(ValueError, match="seed"):
        get_baseline(embedded, seed=-1)


# --- what a checkpoint key depends on ---------------------------------------------

@pytest.fixture
def recorded_keys(monkeypatch):
    """Replace load_or_train and the students' load_checkpoint (where each cached
    model looks itself up) by a recorder of (name, config): nothing is trained."""
    seen = []

    def fake(name, config, build, fit, *, device=None):
        seen.append((name, config))
        return build(), {"cached": False}

    def fake_load(name, config, build, *, device=None):  # students look up their own
        seen.append((name, config))
        return build(), {"cached": True}

    monkeypatch.setattr(ex, "load_or_train", fake)
    monkeypatch.setattr(ex, "load_checkpoint", fake_load)
    return seen


def _all_keys(data, teacher, seen) -> dict:
    """The checkpoint key of every cached model the kit trains on ``data``."""
    seen.clear()
    get_baseline(data, device="cpu")
    ex.get_teacher(data, device="cpu")
    get_student(data, alpha=0.0, recipe={"hidden": 8, "epochs": 1})
    get_student(data, alpha=0.9, teacher=teacher, recipe={"hidden": 8, "epochs": 1})
    ex.regularised_model(data, "l1", 1e-4)
    assert [c["data"] for _, c in seen] == [data.fingerprint] * 5
    return {f"{name}{i}": config_key(c) for i, (name, c) in enumerate(seen)}


def test_every_checkpoint_key_changes_when_the_data_split_changes(embedded, recorded_keys):
    data = subset(embedded, 300, 100, "keys")
    teacher = mlp(16, seed=1)
    base = _all_keys(data, teacher, recorded_keys)
    assert base == _all_keys(data, teacher, recorded_keys)  # stable
    g = torch.Generator().manual_seed(0)
    variants = {
        "without_class": without_class(data, 3),
        "y_train permuted": dataclasses.replace(
            data, y_train=data.y_train[torch.randperm(len(data.y_train), generator=g)]),
        "y_val permuted": dataclasses.replace(
            data, y_val=data.y_val[torch.randperm(len(data.y_val), generator=g)]),
        "split seed": dataclasses.replace(data, split_seed=data.split_seed + 1),
    }
    for what, other in variants.items():
        keys = _all_keys(other, teacher, recorded_keys)
        assert keys.keys() == base.keys()
        same = [k for k in keys if keys[k] == base[k]]
        assert same == [], f"{what}: {same} would reuse a model trained on another split"


def test_model_fingerprint_follows_every_value():
    a = mlp(8, seed=0)
    assert model_fingerprint(a) == model_fingerprint(mlp(8, seed=0))
    b = mlp(8, seed=0)
    with torch.no_grad():
        b.fc2.bias[3] += 1e-6
    assert model_fingerprint(b) != model_fingerprint(a)
    assert model_fingerprint(mlp(8, seed=1)) != model_fingerprint(a)
    assert model_fingerprint(mlp(9, seed=0)) != model_fingerprint(a)


def test_final_record_reads_the_test_split_once(embedded):
    data = subset(embedded, 100, 100, "record")
    net = mlp(8, seed=0)
    history = [{"epoch": 1, "train_loss": 1.0, "seconds": 0.5},
               {"epoch": 2, "train_loss": 0.5, "seconds": 0.25}]
    rec = final_record(net, data, history)
    ev = evaluate(net, data.X_test, data.y_test)
    assert rec == {"history": history, "test_accuracy": ev["accuracy"], "test_loss": ev["loss"],
                   "train_seconds": 0.75}


def test_get_baselines_is_get_baseline_per_seed(embedded, recorded_keys):
    assert SEEDS == (0, 1, 2, 3, 4)
    out = get_baselines(embedded, seeds=(0, 3), device="cpu")
    assert len(out) == 2
    assert [c["seed"] for _, c in recorded_keys] == [0, 3]
    assert not same_state(out[0][0].state_dict(), out[1][0].state_dict())


# --- issue 19: the cache never serves wrong weights ----------------------------------

REPO = Path(__file__).resolve().parent.parent
RECORD = Path(__file__).resolve().parent / "code_versions.json"
RECORD_COMMAND = "PYTHONPATH=. python tests/test_checkpoints.py --record"


def test_two_flipped_bytes_are_detected_and_retrained(ckpt_dir):
    fit = CountingFit()
    load_or_train("toy", CONFIG, build, fit, device="cpu")
    path = checkpoint_path("toy", CONFIG)
    blob = bytearray(path.read_bytes())
    mid = len(blob) // 2  # inside fc1's weights: the file still loads
    blob[mid] ^= 0xFF
    blob[mid + 1] ^= 0x55
    path.write_bytes(bytes(blob))
    with pytest.warns(RuntimeWarning, match=f"{path.name}.*checksum"):
        m, r = load_or_train("toy", CONFIG, build, fit, device="cpu")
    assert r["cached"] is False and fit.calls == 2
    assert same_state(m.state_dict(), fitted_state())
    _assert_valid_and_used(ckpt_dir, fit)


def test_checkpoint_stores_the_sha256_of_its_payload(ckpt_dir):
    load_or_train("toy", CONFIG, build, CountingFit(), device="cpu")
    ckpt = torch.load(checkpoint_path("toy", CONFIG), weights_only=True)
    assert FORMAT == 3 and len(ckpt["sha256"]) == 64
    ckpt["record"]["score"] = 0.75  # a record altered by hand: caught too
    torch.save(ckpt, checkpoint_path("toy", CONFIG))
    with pytest.warns(RuntimeWarning, match="checksum"):
        _, r = load_or_train("toy", CONFIG, build, CountingFit(), device="cpu")
    assert r["cached"] is False and r["score"] == 0.5


@pytest.mark.parametrize("value", [
    torch.zeros(5000), [1, torch.ones(2)], {"w": torch.tensor(1.0)}, Path("/tmp"),
    {1, 2}, {3: "int key"}, lambda: 0, b"bytes"], ids=lambda v: type(v).__name__)
def test_config_key_refuses_values_that_are_not_json(value):
    with pytest.raises(TypeError, match=r"config\['x'\]"):
        config_key({**CONFIG, "x": value})


def test_two_tensors_differing_in_one_element_never_share_a_key():
    a, b = torch.zeros(5000), torch.zeros(5000)
    b[2500] = 1.0
    keys = set()
    for t in (a, b):
        try:
            keys.add(config_key({**CONFIG, "w": t}))
        except TypeError:
            keys.add(("refused", id(t)))
    assert len(keys) == 2


# --- temporary files, permissions, non-regular files -----------------------------------

_SLOW_WRITER = """
import os, sys, time
import helpers._util as util
from helpers.checkpoints import load_or_train
from helpers.models import mlp
def stuck(*a, **k):
    print("writing", flush=True)
    time.sleep(600)
util.os.replace = stuck  # the temporary file is written; the rename never comes
load_or_train("toy", {"seed": 0}, lambda: mlp(4, seed=0), lambda m: {}, device="cpu")
"""


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_a_killed_writer_leaves_no_temporary_file_for_long(ckpt_dir, isolated_cache):
    env = {**os.environ, "PYTHONPATH": str(REPO), "KIT_CACHE_DIR": str(isolated_cache)}
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    temps = [p for p in ckpt_dir.iterdir() if p.name.endswith(".tmp")]
    assert len(temps) == 1 and f".{proc.pid}." in temps[0].name
    load_or_train("toy", {"seed": 0}, build, CountingFit(), device="cpu")
    assert temps[0].exists()  # young: it might be a slow writer on another machine
    _age(temps[0], 3600)
    load_or_train("toy", {"seed": 0}, build, CountingFit(), device="cpu")
    assert not temps[0].exists()


def test_only_temporary_files_of_gone_writers_are_removed(ckpt_dir):
    load_or_train("toy", CONFIG, build, CountingFit(), device="cpu")
    dead = _dead_pid()
    planted = {"dead-old": (dead, 3600), "dead-young": (dead, 10),
               "alive-old": (os.getpid(), 3600), "ancient": (os.getpid(), 2 * 86400)}
    paths = {}
    for what, (pid, age) in planted.items():
        paths[what] = ckpt_dir / f".toy-{what}.pt.{pid}.abc123.tmp"
        paths[what].write_bytes(b"half a checkpoint")
        _age(paths[what], age)
    other = ckpt_dir / "notes.tmp"  # not a temporary name of the kit: kept
    other.write_bytes(b"x")
    _age(other, 2 * 86400)
    load_or_train("toy", CONFIG, build, CountingFit(), device="cpu")
    assert {w for w, p in paths.items() if p.exists()} == {"dead-young", "alive-old"}
    assert other.exists()


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_cache_files_get_the_permissions_of_the_umask(ckpt_dir, umask):
    old = os.umask(umask)
    try:
        load_or_train("toy", CONFIG, build, CountingFit(), device="cpu")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(checkpoint_path("toy", CONFIG).stat().st_mode)
    assert mode == 0o666 & ~umask


def _in_thread(fn, seconds: float = 30):
    """Run ``fn()`` in a daemon thread; return what it returned, or fail if it hangs."""
    out = {}

    def run():
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out["result"] = fn()
            out["warnings"] = [str(w.message) for w in caught]
        except BaseException as exc:  # noqa: BLE001 - reported below
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    return t.is_alive(), out


def _unblock(fifo: Path) -> None:
    """Open and close the FIFO's other end, so that a reader blocked on it returns."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def test_a_fifo_at_the_checkpoint_path_is_skipped_not_read(ckpt_dir):
    path = checkpoint_path("toy", CONFIG)
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    try:
        hung, out = _in_thread(lambda: load_or_train("toy", CONFIG, build, CountingFit(),
                                                     device="cpu"))
    finally:
        _unblock(path)
    assert not hung, "load_or_train blocked on a FIFO"
    assert "error" not in out, out
    assert any(path.name in w and "not a regular file" in w for w in out["warnings"])
    m, r = out["result"]
    assert r["cached"] is False and same_state(m.state_dict(), fitted_state())
    assert path.is_file()  # the FIFO was replaced by the checkpoint
    _assert_valid_and_used(ckpt_dir, CountingFit())


def test_a_link_out_of_the_cache_is_not_followed(ckpt_dir, tmp_path):
    fit = CountingFit()
    load_or_train("toy", CONFIG, build, fit, device="cpu")
    path = checkpoint_path("toy", CONFIG)
    outside = tmp_path / "outside.pt"
    os.replace(path, outside)  # a valid checkpoint, but not in the cache
    before = outside.read_bytes()
    path.symlink_to(outside)
    with pytest.warns(RuntimeWarning, match=f"{path.name}.*outside"):
        _, r = load_or_train("toy", CONFIG, build, fit, device="cpu")
    assert r["cached"] is False and fit.calls == 2
    assert not path.is_symlink() and path.is_file()
    assert outside.read_bytes() == before  # the link's target is never written


def test_a_link_inside_the_cache_is_followed(ckpt_dir):
    fit = CountingFit()
    load_or_train("toy", CONFIG, build, fit, device="cpu")
    path = checkpoint_path("toy", CONFIG)
    inside = ckpt_dir / "kept" / "toy.pt"
    inside.parent.mkdir()
    os.replace(path, inside)
    path.symlink_to(inside)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, r = load_or_train("toy", CONFIG, build, fit, device="cpu")
    assert r["cached"] is True and fit.calls == 1


# --- a cache that cannot be written ------------------------------------------------------

def test_a_file_where_the_cache_should_be_warns_once_and_the_kit_runs(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file, where KIT_CACHE_DIR points")
    monkeypatch.setenv("KIT_CACHE_DIR", str(blocker))
    fit = CountingFit()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m, r = load_or_train("toy", CONFIG, build, fit, device="cpu")
        m2, r2 = load_or_train("toy", CONFIG, build, fit, device="cpu")
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and str(blocker) in messages[0], messages
    assert "cannot be written" in messages[0]
    assert r["cached"] is False and same_state(m.state_dict(), fitted_state())
    assert r2["cached"] is True and fit.calls == 1  # the temporary cache serves this session
    assert blocker.read_text() == "a file, where KIT_CACHE_DIR points"


def test_a_failed_save_warns_and_still_returns_the_trained_model(ckpt_dir, monkeypatch):
    def disk_full(obj, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hck, "atomic_torch_save", disk_full)
    fit = CountingFit()
    with pytest.warns(RuntimeWarning, match="could not be saved.*No space left"):
        m, r = load_or_train("toy", CONFIG, build, fit, device="cpu")
    assert r["cached"] is False and fit.calls == 1
    assert same_state(m.state_dict(), fitted_state()) and not m.training
    assert all_files(ckpt_dir) == []


# --- two kernels, one cache ---------------------------------------------------------------

_KERNEL = """
import os, sys, time
from pathlib import Path
from helpers.checkpoints import load_or_train, model_fingerprint
from helpers.models import mlp
import torch
log, go = Path(sys.argv[1]), Path(sys.argv[2])
def fit(model):
    with open(log, "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(-2.0).add_(0.25)
    time.sleep(1.0)  # long enough for the other kernel to ask meanwhile
    return {"trained_by": os.getpid()}
print("ready", flush=True)
while not go.exists():
    time.sleep(0.01)
model, record = load_or_train("toy", {"seed": 0}, lambda: mlp(4, seed=0), fit, device="cpu")
print(model_fingerprint(model), record["cached"], flush=True)
"""


def test_two_processes_train_an_uncached_model_once(isolated_cache, tmp_path):
    log, go = tmp_path / "trainings.log", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO), "KIT_CACHE_DIR": str(isolated_cache)}
    procs = [subprocess.Popen([sys.executable, "-c", _KERNEL, str(log), str(go)], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        assert [p.stdout.readline().strip() for p in procs] == ["ready", "ready"]
        go.touch()
        outs = [p.communicate(timeout=120)[0].split() for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert len(log.read_text().split()) == 1  # trained once in all
    assert outs[0][0] == outs[1][0]  # identical weights
    assert sorted(o[1] for o in outs) == ["False", "True"]


def test_a_lock_holder_that_dies_releases_the_lock(isolated_cache):
    env = {**os.environ, "PYTHONPATH": str(REPO), "KIT_CACHE_DIR": str(isolated_cache)}
    holder = ("import time\nfrom helpers.checkpoints import checkpoint_lock\n"
              f"with checkpoint_lock('toy', {CONFIG!r}):\n"
              "    print('holding', flush=True)\n    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", holder], env=env, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "holding"
    finally:
        proc.kill()
        proc.wait()
    hung, out = _in_thread(lambda: load_or_train("toy", CONFIG, build, CountingFit(),
                                                 device="cpu"))
    assert not hung and out["result"][1]["cached"] is False


# --- code versions in checkpoint keys ---------------------------------------------------------

def _source_sha256(dotted: str) -> str:
    module, _, attr = dotted.rpartition(".")
    source = inspect.getsource(getattr(importlib.import_module(module), attr))
    return hashlib.sha256(source.encode()).hexdigest()


def current_code_versions() -> dict:
    """What tests/code_versions.json should hold for the code as it is now."""
    return {name: {"version": version, "source_sha256": {d: _source_sha256(d) for d in code}}
            for name, (version, code) in sorted(hck.CODE_VERSIONS.items())}


def record_code_versions() -> None:
    """Write tests/code_versions.json from the code as it is now."""
    RECORD.write_text(json.dumps(current_code_versions(), indent=1, sort_keys=True) + "\n")


def test_every_checkpoint_name_of_the_kit_has_a_code_version(embedded, recorded_keys):
    data = subset(embedded, 300, 100, "names")
    teacher = mlp(16, seed=1)
    _all_keys(data, teacher, recorded_keys)
    ex.build_models(data, teacher=teacher)
    base = get_baseline(data)[0]
    for kind in ("gradual", "sfp"):
        ex._hard_pruned(kind, base, data, 0)
    names = {name for name, _ in recorded_keys}
    assert names >= {"baseline", "teacher", "student", "regularised", "compare-sfp"}
    unknown = sorted(names - set(hck.CODE_VERSIONS))
    assert unknown == [], (f"add {unknown} to helpers.checkpoints.CODE_VERSIONS (a version "
                           f"and the code behind it), then run {RECORD_COMMAND}")
    for name, (version, code) in hck.CODE_VERSIONS.items():
        assert isinstance(version, int) and version >= 1 and code, name
        for dotted in code:
            _source_sha256(dotted)  # every listed function exists


def test_code_versions_match_the_record():
    recorded = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    problems = []
    for name, now in current_code_versions().items():
        then = recorded.get(name)
        if then == now:
            continue
        if then is None:
            problems.append(f"{name}: not in the record; run {RECORD_COMMAND}")
        elif then["version"] == now["version"]:
            changed = sorted(d for d in now["source_sha256"]
                             if then["source_sha256"].get(d) != now["source_sha256"][d])
            gone = sorted(set(then["source_sha256"]) - set(now["source_sha256"]))
            problems.append(
                f"{name}: the code behind it changed ({', '.join(changed + gone)}) but its "
                f"version did not: if the change can alter trained weights, bump "
                f"CODE_VERSIONS[{name!r}] in helpers/checkpoints.py to {now['version'] + 1} "
                f"(old checkpoints are then retrained); either way, then run {RECORD_COMMAND}")
        else:
            problems.append(f"{name}: version {then['version']} -> {now['version']}; "
                            f"run {RECORD_COMMAND}")
    stale = sorted(set(recorded) - set(hck.CODE_VERSIONS))
    if stale:
        problems.append(f"{stale} are no longer in CODE_VERSIONS; run {RECORD_COMMAND}")
    assert not problems, "\n".join(problems)


def test_a_bumped_code_version_moves_every_key(monkeypatch):
    before = checkpoint_path("baseline", CONFIG)
    version, code = hck.CODE_VERSIONS["baseline"]
    assert code_version("baseline") == version
    monkeypatch.setitem(hck.CODE_VERSIONS, "baseline", (version + 1, code))
    assert checkpoint_path("baseline", CONFIG) != before
    assert config_key(CONFIG, "baseline") != config_key(CONFIG)
    assert code_version("a-name-of-my-own") == 0


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit(f"usage: {RECORD_COMMAND}")
    record_code_versions()
    print(f"wrote {RECORD}")
