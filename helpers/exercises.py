"""Self-checks for the notebooks' exercises: compare an answer, say right or wrong."""
from __future__ import annotations

import math


def check(answer, expected, *, rel_tol: float = 0.0, abs_tol: float = 0.0,
          hint: str = "") -> str:
    """Return a one-line verdict on ``answer`` against ``expected``.

    ``None`` means "not answered yet". Numbers match within ``rel_tol`` /
    ``abs_tol`` (both >= 0); anything else must be equal. The hint is shown
    when the answer is wrong.
    """
    if rel_tol < 0 or abs_tol < 0:
        raise ValueError(f"rel_tol and abs_tol must be >= 0, got {rel_tol!r}, {abs_tol!r}")
    if answer is None:
        return "Not answered yet: replace None with your answer and run the cell again."
    if isinstance(answer, bool) != isinstance(expected, bool):
        ok = False  # True is not the count 1
    elif isinstance(expected, (int, float)) and isinstance(answer, (int, float)):
        ok = math.isclose(answer, expected, rel_tol=rel_tol, abs_tol=abs_tol)
    else:
        ok = answer == expected
    if ok:
        return f"Right: {answer!r}."
    return f"Not quite: {answer!r} is not the answer." + (f" Hint: {hint}" if hint else "")
