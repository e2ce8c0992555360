"""Tests for helpers.stats against hand computations: mean and sample standard
deviation, the "mean ± std" text, paired differences and their verdict."""
from __future__ import annotations

import math

import pytest

from helpers.stats import difference, mean_std, pm, verdict


def hand_mean_std(xs):
    """Mean and sample (n - 1) standard deviation, written out."""
    m = sum(xs) / len(xs)
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def test_mean_std_matches_the_formula():
    m, s = mean_std([0.90, 0.92, 0.94])
    assert m == pytest.approx(0.92, abs=1e-12)
    assert s == pytest.approx(0.02, abs=1e-12)  # sqrt((0.02^2 + 0 + 0.02^2) / 2)
    xs = [0.951, 0.948, 0.957, 0.944, 0.950]
    want = hand_mean_std(xs)
    assert mean_std(xs) == pytest.approx(want, rel=1e-12)
    assert mean_std((3, 3)) == (3.0, 0.0)  # any sequence, ints too


def test_pm_formats_mean_and_std_in_percent():
    assert pm([0.951, 0.953, 0.955]) == "95.3 ± 0.2%"
    assert pm([0.5, 0.7]) == f"60.0 ± {100 * math.sqrt(0.02):.1f}%"  # 14.1
    assert pm([1.25, 1.75], scale=1.0, digits=2, unit=" ms") == f"1.50 ± {math.sqrt(0.125):.2f} ms"


def test_difference_is_paired_by_seed():
    a = [0.95, 0.96, 0.94, 0.97]
    b = [0.93, 0.95, 0.93, 0.94]
    diffs = [x - y for x, y in zip(a, b)]  # 0.02, 0.01, 0.01, 0.03
    m, s = hand_mean_std(diffs)
    d = difference(a, b)
    assert d["n"] == 4
    assert d["mean"] == pytest.approx(m, abs=1e-12) and d["mean"] == pytest.approx(0.0175)
    assert d["std"] == pytest.approx(s, abs=1e-12)
    assert d["clear"] is True  # 0.0175 > 0.0096
    # the same accuracies, paired differently: the spread swamps the mean
    d2 = difference(a, [0.97, 0.92, 0.96, 0.92])  # diffs -0.02, 0.04, -0.02, 0.05
    assert d2["mean"] == pytest.approx(0.0125)
    assert d2["std"] == pytest.approx(hand_mean_std([-0.02, 0.04, -0.02, 0.05])[1])
    assert d2["clear"] is False
    # unpaired statistics would not see the pairing: the mean difference is the same
    assert difference(b, a)["mean"] == pytest.approx(-d["mean"])
    assert difference(b, a)["clear"] is True


def test_verdict_reads_the_difference():
    a = [0.95, 0.96, 0.94, 0.97]
    b = [0.93, 0.95, 0.93, 0.93]  # diffs 0.02, 0.01, 0.01, 0.04: mean 0.02, std sqrt(2e-4)
    assert verdict(a, b) == "+2.0 ± 1.4 points over 4 seeds (larger than its spread)"
    assert verdict(b, a) == "-2.0 ± 1.4 points over 4 seeds (larger than its spread)"
    assert verdict(a, b, scale=1.0, unit="") == "+0.0 ± 0.0 over 4 seeds (larger than its spread)"
    assert verdict(a, [0.97, 0.92, 0.96, 0.92]).endswith(
        "(within its spread: no clear difference)")
    assert verdict([0.5, 0.5], [0.5, 0.5]) == (
        "+0.0 ± 0.0 points over 2 seeds (within its spread: no clear difference)")


@pytest.mark.parametrize("bad", [[], [0.9], [0.9, float("nan")], [0.9, float("inf")],
                                 [float("-inf"), 0.9, 0.8]])
def test_fewer_than_two_values_or_non_finite_are_rejected(bad):
    with pytest.raises(ValueError, match="values"):
        mean_std(bad)
    with pytest.raises(ValueError, match="values"):
        pm(bad)
    with pytest.raises(ValueError, match=r"^a\b"):
        difference(bad, [0.5] * max(2, len(bad)))
    with pytest.raises(ValueError, match=r"^b\b"):
        verdict([0.5] * max(2, len(bad)), bad)


def test_difference_needs_one_value_per_seed_on_each_side():
    with pytest.raises(ValueError, match="a and b"):
        difference([0.9, 0.8, 0.7], [0.9, 0.8])
