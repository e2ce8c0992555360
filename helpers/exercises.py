"""The check that the exercises' test cells call.

``same(got, want, what)`` compares a student's result with the kit's
reference and, when they differ, raises an ``AssertionError`` that says what
is wrong (the type, the shape, which element and by how much) instead of a
bare ``assert``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch


def _number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def same(got, want, what: str = "the result", *, atol: float = 0.0, rtol: float = 0.0) -> None:
    """Raise ``AssertionError`` unless ``got`` equals ``want`` (numbers and
    tensors within ``atol + rtol * |want|``; anything else exactly).

    Tensors and arrays must have the same shape; then the message names the
    element that is furthest off. Tuples, lists and dicts are compared item by
    item, each named in the message (``what[1]``, ``what['fc1']``).
    """
    if atol < 0 or rtol < 0:
        raise ValueError(f"atol and rtol must be >= 0, got {atol!r}, {rtol!r}")
    if isinstance(want, (torch.Tensor, np.ndarray)):
        _same_array(got, want, what, atol, rtol)
    elif isinstance(want, Mapping):
        if not isinstance(got, Mapping):
            raise AssertionError(f"{what} should be a dict, got {type(got).__name__}")
        if set(got) != set(want):
            raise AssertionError(f"{what} should have the keys {sorted(want)}, got {sorted(got)}")
        for k in want:
            same(got[k], want[k], f"{what}[{k!r}]", atol=atol, rtol=rtol)
    elif isinstance(want, Sequence) and not isinstance(want, str):
        if not isinstance(got, Sequence) or isinstance(got, str):
            raise AssertionError(f"{what} should be a {type(want).__name__} of {len(want)}, "
                                 f"got {type(got).__name__}")
        if len(got) != len(want):
            raise AssertionError(f"{what} should have {len(want)} items, got {len(got)}")
        for i, (g, w) in enumerate(zip(got, want)):
            same(g, w, f"{what}[{i}]", atol=atol, rtol=rtol)
    elif _number(want):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not _number(got):
            raise AssertionError(f"{what} should be a number, got {type(got).__name__} {got!r}")
        if isinstance(want, (int, np.integer)) and atol == rtol == 0 and got != want:
            raise AssertionError(f"{what} is {got!r}, expected {want!r} (off by {got - want:+})")
        if not math.isclose(got, want, rel_tol=rtol, abs_tol=atol):
            raise AssertionError(f"{what} is {got!r}, expected {want!r} "
                                 f"(off by {got - want:+.3g}; allowed {atol + rtol * abs(want):.3g})")
    elif got != want:
        raise AssertionError(f"{what} is {got!r}, expected {want!r}")


def _same_array(got, want, what, atol, rtol) -> None:
    if not isinstance(got, (torch.Tensor, np.ndarray)):
        raise AssertionError(f"{what} should be a {type(want).__name__}, got {type(got).__name__}")
    g = torch.as_tensor(got).detach().cpu()
    w = torch.as_tensor(want).detach().cpu()
    if tuple(g.shape) != tuple(w.shape):
        raise AssertionError(f"{what} has shape {tuple(g.shape)}, expected {tuple(w.shape)}")
    if g.dtype == torch.bool or w.dtype == torch.bool:
        g, w = g.to(torch.int64), w.to(torch.int64)
    gd, wd = g.double(), w.double()
    if torch.isnan(gd).any() and not torch.isnan(wd).any():
        at = tuple(torch.nonzero(torch.isnan(gd))[0].tolist())
        raise AssertionError(f"{what}{list(at)} is nan, expected {wd[at].item():.6g}")
    allowed = atol + rtol * wd.abs()
    excess = (gd - wd).abs() - allowed
    if w.numel() and excess.max() > 0:
        at = tuple(torch.nonzero(excess == excess.max())[0].tolist())
        bad = int((excess > 0).sum())
        raise AssertionError(
            f"{what}{list(at)} is {gd[at].item():.6g}, expected {wd[at].item():.6g} "
            f"(off by {(gd[at] - wd[at]).item():+.3g}; {bad} of {w.numel()} elements differ)")
