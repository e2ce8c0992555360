"""Mean and spread over seeds, and differences judged against their spread.

One run on 1,000 test images has a standard error of about 0.7 accuracy
points, so the kit reports every headline figure as mean ± standard deviation
over several seeds (``experiments.SEEDS``), and calls a difference real only
when its mean is larger than its spread.
"""
from __future__ import annotations

import math
import statistics
from typing import Iterable, Sequence


def _number(v) -> bool:
    """A real number (a 0-d tensor or a NumPy scalar too), not a bool or a string."""
    if isinstance(v, (bool, str, bytes)) or getattr(v, "ndim", 0):
        return False
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def _values(values: Sequence[float], name: str = "values") -> list[float]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a sequence of at least 2 finite numbers, got {values!r}")
    vals = list(values)
    if not all(_number(v) for v in vals):
        raise TypeError(f"{name} must be a sequence of at least 2 finite numbers, got {vals!r}")
    vals = [float(v) for v in vals]
    if len(vals) < 2:
        raise ValueError(f"{name} must hold at least 2 numbers (one per seed), got {len(vals)}")
    if any(not math.isfinite(v) for v in vals):
        raise ValueError(f"{name} must be finite numbers, got {vals}")
    return vals


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Return ``(mean, sample standard deviation)`` of at least two finite numbers."""
    vals = _values(values)
    try:
        return statistics.fmean(vals), statistics.stdev(vals)
    except OverflowError:  # sums past the largest float: the same sums on vals / 2**k, exact
        k = math.frexp(max(abs(v) for v in vals))[1]
        m, s = mean_std([math.ldexp(v, -k) for v in vals])
        try:
            return math.ldexp(m, k), math.ldexp(s, k)
        except OverflowError:
            raise ValueError(f"values must spread less than the largest float: their standard "
                             f"deviation is {s:g} * 2**{k}") from None


def _format(scale, digits, unit) -> None:
    if not _number(scale) or not math.isfinite(float(scale)) or float(scale) <= 0:
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    if isinstance(digits, bool) or not isinstance(digits, int) or not 0 <= digits <= 15:
        raise ValueError(f"digits must be an integer in [0, 15], got {digits!r}")
    if not isinstance(unit, str):
        raise TypeError(f"unit must be a str, got {unit!r}")


def pm(values: Sequence[float], *, scale: float = 100.0, digits: int = 1,
       unit: str = "%") -> str:
    """``"95.1 ± 0.3%"``: mean ± standard deviation of ``values`` times ``scale``
    (> 0), with ``digits`` (0 to 15) decimals and ``unit`` (a str) appended."""
    _format(scale, digits, unit)
    m, s = mean_std(values)
    return f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}{unit}"


def difference(a: Sequence[float], b: Sequence[float]) -> dict:
    """Paired difference ``a - b`` over seeds (``a[i]`` and ``b[i]`` share seed i).

    Returns ``mean`` and ``std`` of the per-seed differences, ``n``, and
    ``clear``: True when ``|mean|`` exceeds ``std`` (the difference is larger
    than its spread), else False.
    """
    a, b = _values(a, "a"), _values(b, "b")
    if len(a) != len(b):
        raise ValueError(f"a and b must have one value per seed each, got {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b)]
    if not all(math.isfinite(d) for d in diffs):
        raise ValueError(f"a - b must be finite for every seed, got {diffs}")
    m, s = mean_std(diffs)
    return {"mean": m, "std": s, "n": len(a), "clear": abs(m) > s}


def verdict(a: Sequence[float], b: Sequence[float], *, scale: float = 100.0,
            unit: str = " points") -> str:
    """A one-line reading of :func:`difference`: the paired difference with its
    spread, and whether it is larger than the spread (``scale`` > 0, ``unit`` a str)."""
    _format(scale, 1, unit)
    d = difference(a, b)
    word = "larger than its spread" if d["clear"] else "within its spread: no clear difference"
    return (f"{d['mean'] * scale:+.1f} ± {d['std'] * scale:.1f}{unit} over {d['n']} seeds "
            f"({word})")
