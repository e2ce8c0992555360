"""Shared fixtures: an isolated cache per test, and the embedded data loaded once."""
from __future__ import annotations

import shutil

import pytest
import torch

import helpers.data as hdata


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
    """The embedded dataset (4,000 / 1,000), parsed once per session. Read-only."""
    return embedded_cache_file[1]


@pytest.fixture
def warm_embedded_cache(embedded_cache_file, isolated_cache):
    """Copy the session's valid embedded cache file into this test's cache folder."""
    src = embedded_cache_file[0]
    isolated_cache.mkdir(parents=True, exist_ok=True)
    dst = isolated_cache / src.name
    shutil.copyfile(src, dst)
    return dst
