"""Tests for helpers.checkpoints (the trained-model cache) and the shared
baseline of helpers.experiments: what every cached model's key depends on."""
from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import pytest
import torch

import helpers.experiments as ex
from helpers.checkpoints import (FORMAT, checkpoint_path, config_key, final_record, load_or_train,
                                 model_fingerprint)
from helpers.distillation import without_class
from helpers.experiments import SEEDS, get_baseline, get_baselines, get_student
from helpers.models import mlp
from helpers.training import evaluate

from conftest import same_state, subset

CONFIG = {"model": {"type": "MLP", "hidden": [4]}, "data": "toy", "recipe": {"epochs": 1},
          "seed": 0}


def all_files(root: Path) -> list[Path]:
    found = []
    for dirpath, _dirs, files in os.walk(root):
        found.extend(Path(dirpath) / f for f in files)
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
    assert ckpt["key"] == config_key(CONFIG)
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
    assert ckpt["key"] == config_key(CONFIG)
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
    torch.save({"format": FORMAT + 1, "key": config_key(CONFIG),
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
    torch.save({"format": FORMAT, "key": config_key(CONFIG), "config": CONFIG,
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
    assert p.name == f"my-net_2-{config_key(CONFIG)[:16]}.pt"


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
