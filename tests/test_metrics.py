"""Tests for uva_plan.metrics: the Wilson interval (scipy's) against values worked out by hand."""

from __future__ import annotations

import pytest

from uva_plan.metrics import wilson_interval


def test_wilson_interval_matches_the_closed_form():
    # (p + z^2 / 2n) / (1 + z^2 / n) -+ z sqrt(p (1 - p) / n + z^2 / 4n^2) / (1 + z^2 / n), z = 1.96,
    # evaluated in 40-digit decimal arithmetic: 38 of 100 -> [0.29097449200, 0.47790426179].
    assert wilson_interval(38, 100) == pytest.approx((0.2909744920013438, 0.4779042617928966), abs=1e-12)
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775401687666168, abs=1e-12))
    assert wilson_interval(10, 10) == (pytest.approx(0.7224598312333832, abs=1e-12), 1.0)
    low, high = wilson_interval(38, 100, z=2.576)  # a wider interval at 99 %
    assert low < 0.2909 and high > 0.4780


def test_wilson_interval_edge_cases_and_bad_input():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    for successes, n in ((11, 10), (-1, 10), (1, -1), (1.5, 10)):
        with pytest.raises(ValueError, match="successes"):
            wilson_interval(successes, n)
    with pytest.raises(ValueError, match="z must be positive"):
        wilson_interval(1, 2, z=0.0)
