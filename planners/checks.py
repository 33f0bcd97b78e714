"""Argument validators shared by `planners` and `uva_plan`: each raises a ValueError that names
the bad value and what was expected."""

from __future__ import annotations

import math
from typing import Any


def check_int(name: str, value: Any, minimum: int) -> None:
    """Raise ValueError unless value is an int >= minimum."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {name}={value!r}")


def check_float(name: str, value: Any, low: float, high: float = math.inf, *,
                open_low: bool = False, open_high: bool = False) -> None:
    """Raise ValueError unless value is a real number in the interval from low to high."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{name} must be a number, got {name}={value!r}")
    too_low = value <= low if open_low else value < low
    too_high = value >= high if open_high else value > high
    if too_low or too_high:
        interval = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {name}={value!r}")


def check_population(n_samples: Any, n_elites: Any, n_iterations: Any) -> None:
    """Validate the population arguments every iterative sampler shares."""
    check_int("n_samples", n_samples, 1)
    check_int("n_elites", n_elites, 1)
    if n_elites > n_samples:
        raise ValueError(f"n_elites must be <= n_samples, got {n_elites=} > {n_samples=}")
    check_int("n_iterations", n_iterations, 1)


def check_n_central(n_central: int | None, n_samples: int) -> None:
    """n_central is None or an int in [1, n_samples]; else a ValueError naming both."""
    if n_central is not None:
        check_int("n_central", n_central, 1)
        if n_central > n_samples:
            raise ValueError(f"n_central must be <= {n_samples} (the proposals ranked), got {n_central=}")
