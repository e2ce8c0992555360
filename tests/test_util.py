"""Tests for helpers._util: argument checks, atomic writes, seeding, device, cache dir."""
from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import torch

import helpers._util as util
from helpers._util import (atomic_torch_save, atomic_write_bytes, cache_dir, check_choice,
                           check_float, check_int, seeded)


# --- check_int -------------------------------------------------------------------

def test_check_int_accepts_and_returns_values_in_range():
    assert check_int("n", 1, 1) == 1
    assert check_int("n", 10**9, 1) == 10**9
    assert check_int("n", 5, 1, 5) == 5
    assert check_int("n", -3, -3, 0) == -3


@pytest.mark.parametrize("value, low, high, rng", [
    (0, 1, None, "[1, inf]"),
    (-7, 0, None, "[0, inf]"),
    (6, 1, 5, "[1, 5]"),
])
def test_check_int_message_has_name_value_and_range(value, low, high, rng):
    with pytest.raises(ValueError) as info:
        check_int("epochs", value, low, high)
    msg = str(info.value)
    assert "epochs" in msg and repr(value) in msg and rng in msg


@pytest.mark.parametrize("value", [True, False, 2.0, "3", None])
def test_check_int_rejects_non_integers(value):
    with pytest.raises(ValueError, match="epochs"):
        check_int("epochs", value, 0)


# --- check_float -----------------------------------------------------------------

def test_check_float_accepts_and_returns_float():
    v = check_float("lr", 3, 0.0, low_open=True)
    assert v == 3.0 and isinstance(v, float)
    assert check_float("x", 0.0, 0.0) == 0.0            # closed lower end included
    assert check_float("x", 300, 0.0, 300.0) == 300.0   # closed upper end included
    assert check_float("x", 0.999, 0.0, 1.0, high_open=True) == 0.999


@pytest.mark.parametrize("name, value, kw, rng", [
    ("lr", 0, {"low": 0.0, "low_open": True}, "(0, inf)"),
    ("lr", -1, {"low": 0.0, "low_open": True}, "(0, inf)"),
    ("lam", -0.1, {"low": 0.0}, "[0, inf)"),
    ("momentum", 1.0, {"low": 0.0, "high": 1.0, "high_open": True}, "[0, 1)"),
    ("timeout", 301, {"low": 0.0, "high": 300.0, "low_open": True}, "(0, 300]"),
    ("timeout", 0.0, {"low": 0.0, "high": 300.0, "low_open": True}, "(0, 300]"),
])
def test_check_float_message_has_name_value_and_range(name, value, kw, rng):
    with pytest.raises(ValueError) as info:
        check_float(name, value, **kw)
    msg = str(info.value)
    assert name in msg and repr(value) in msg and rng in msg


@pytest.mark.parametrize("value", ["abc", None, [1.0], float("nan")])
def test_check_float_rejects_non_numbers_and_nan(value):
    with pytest.raises(ValueError, match="lr"):
        check_float("lr", value, 0.0, 1.0)


# --- check_choice ----------------------------------------------------------------

def test_check_choice_accepts_members():
    assert check_choice("optimizer", "sgd", ("sgd", "adam")) == "sgd"
    assert check_choice("penalty", None, (None, "l1", "l2")) is None


def test_check_choice_message_has_name_value_and_choices():
    with pytest.raises(ValueError) as info:
        check_choice("optimizer", "rmsprop", ("sgd", "adam"))
    msg = str(info.value)
    assert "optimizer" in msg and "'rmsprop'" in msg and "'sgd'" in msg and "'adam'" in msg


def test_check_choice_with_none_among_choices_raises_value_error():
    with pytest.raises(ValueError) as info:
        check_choice("penalty", "l3", (None, "l1", "l2"))
    msg = str(info.value)
    assert "penalty" in msg and "'l3'" in msg and "None" in msg and "'l1'" in msg


# --- atomic writes ----------------------------------------------------------------

def test_atomic_write_bytes_writes_and_creates_folders(tmp_path):
    path = tmp_path / "a" / "b" / "file.bin"
    atomic_write_bytes(path, b"hello\x00world")
    assert path.read_bytes() == b"hello\x00world"
    atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.bin"]


@pytest.mark.parametrize("where", ["replace", "fsync"])
def test_atomic_write_failure_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch, where):
    path = tmp_path / "file.bin"
    path.write_bytes(b"old content")

    def boom(*args, **kwargs):
        raise OSError(f"simulated failure in {where}")

    monkeypatch.setattr(util.os, where, boom)
    with pytest.raises(OSError, match="simulated"):
        atomic_write_bytes(path, b"new content that must not appear")
    monkeypatch.undo()
    assert path.read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]


def test_atomic_write_failure_on_new_file_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("simulated")

    monkeypatch.setattr(util.os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "new.bin", b"data")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_atomic_torch_save_round_trip(tmp_path):
    obj = {"w": torch.arange(6.0).reshape(2, 3), "n": 3, "s": ["x"]}
    path = tmp_path / "obj.pt"
    atomic_torch_save(obj, path)
    back = torch.load(path, weights_only=True)
    assert torch.equal(back["w"], obj["w"]) and back["n"] == 3 and back["s"] == ["x"]
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    assert torch.equal(torch.load(buf, weights_only=True)["w"], back["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["obj.pt"]


# --- seeded -------------------------------------------------------------------------

def test_seeded_draws_like_manual_seed_and_restores_state():
    torch.manual_seed(99)
    before = torch.get_rng_state().clone()
    with seeded(5):
        inside = torch.rand(4)
    assert torch.equal(inside, torch.rand(4, generator=torch.Generator().manual_seed(5)))
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(99)))


def test_seeded_restores_state_after_an_exception():
    torch.manual_seed(7)
    before = torch.get_rng_state().clone()
    with pytest.raises(KeyError):
        with seeded(1):
            torch.rand(10)
            raise KeyError("x")
    assert torch.equal(torch.get_rng_state(), before)


# --- cache_dir ---------------------------------------------------------------------

def test_cache_dir_honours_env_and_creates_it(tmp_path, monkeypatch):
    target = tmp_path / "deep" / "cache"
    monkeypatch.setenv("KIT_CACHE_DIR", str(target))
    assert cache_dir() == target
    assert target.is_dir()


def test_autouse_fixture_isolates_the_cache(isolated_cache):
    assert os.environ["KIT_CACHE_DIR"] == str(isolated_cache)
    assert cache_dir() == Path(isolated_cache)
