"""Mean and spread over seeds, and differences judged against their spread.

One run on 1,000 test images has a standard error of about 0.7 accuracy
points, so the kit reports every headline figure as mean ± standard deviation
over several seeds (``experiments.SEEDS``), and calls a difference real only
when its mean is larger than its spread.
"""
from __future__ import annotations

import math
import statistics
from typing import Sequence


def _values(values: Sequence[float], name: str = "values") -> list[float]:
    vals = [float(v) for v in values]
    if len(vals) < 2:
        raise ValueError(f"{name} must hold at least 2 numbers (one per seed), got {len(vals)}")
    if any(not math.isfinite(v) for v in vals):
        raise ValueError(f"{name} must be finite numbers, got {vals}")
    return vals


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Return ``(mean, sample standard deviation)`` of at least two numbers."""
    vals = _values(values)
    return statistics.fmean(vals), statistics.stdev(vals)


def pm(values: Sequence[float], *, scale: float = 100.0, digits: int = 1,
       unit: str = "%") -> str:
    """``"95.1 ± 0.3%"``: mean ± standard deviation of ``values`` times ``scale``."""
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
    m, s = mean_std([x - y for x, y in zip(a, b)])
    return {"mean": m, "std": s, "n": len(a), "clear": abs(m) > s}


def verdict(a: Sequence[float], b: Sequence[float], *, scale: float = 100.0,
            unit: str = " points") -> str:
    """A one-line reading of :func:`difference`: the paired difference with its
    spread, and whether it is larger than the spread."""
    d = difference(a, b)
    word = "larger than its spread" if d["clear"] else "within its spread: no clear difference"
    return (f"{d['mean'] * scale:+.1f} ± {d['std'] * scale:.1f}{unit} over {d['n']} seeds "
            f"({word})")
