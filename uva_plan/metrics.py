"""Summary statistics shared by data collection, evaluation and the benchmarks."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson, 1927); z=1.96 gives 95 %.

    Unlike the normal approximation it stays inside [0, 1] and is not degenerate at 0 or n
    successes, which is where small evaluation runs often land. ``n == 0`` carries no
    information and gives the whole interval (0, 1).
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes=}, {n=}")
    if z <= 0:
        raise ValueError(f"z must be positive, got {z=}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time in milliseconds of ``repeats`` calls of ``fn`` after one warm-up call."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats=}")
    fn()  # warm-up: lazy initialisation, JIT, allocator
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)
