"""Argument validators shared by `planners` and `uva_plan`: each raises a ValueError that names
the bad value and what was expected."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

# Observation entries whose shape is fixed for an episode.
FIXED_SHAPE_KEYS = ("image", "agent_pos")


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


def check_observation(obs: Any, previous: Mapping | None = None) -> None:
    """An observation is a dict whose float entries are finite and, when ``previous`` (an earlier
    observation of the same episode) is given, holds every key of it, with the image and the
    agent position in the same shapes; else a ValueError naming what is wrong. A tuple is most
    likely ``env.reset()``'s ``(obs, info)``."""
    if isinstance(obs, tuple):
        raise ValueError(f"obs must be an observation dict, got a tuple of {len(obs)} (env.reset() returns "
                         "(obs, info): pass obs, e.g. obs, info = env.reset(); planner.plan(obs))")
    if not isinstance(obs, Mapping):
        raise ValueError(f"obs must be an observation dict, got {type(obs).__name__}")
    for key, value in obs.items():
        array = np.asarray(value) if isinstance(value, (np.ndarray, float, list, tuple)) else None
        if array is not None and array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ValueError(f"obs[{key!r}] must be finite, got NaN or inf: {array!r}")
    if previous is None:
        return
    missing = sorted(set(previous) - set(obs))
    if missing:
        raise ValueError(f"obs lacks {missing}, which the episode's earlier observations hold; got keys {sorted(obs)}")
    for key in FIXED_SHAPE_KEYS:  # (a full simulator state's length may vary from step to step)
        if key in obs and np.shape(obs[key]) != np.shape(previous[key]):
            raise ValueError(f"obs[{key!r}] must keep the shape of the episode's earlier observations "
                             f"{np.shape(previous[key])}, got {np.shape(obs[key])}")
