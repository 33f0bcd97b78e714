"""Summary statistics shared by data collection, evaluation and the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson, 1927); z=1.96 gives 95 %.

    Unlike the normal approximation it stays inside [0, 1] and is not degenerate at 0 or n
    successes, which is where small evaluation runs often land. ``n == 0`` carries no
    information and gives the whole interval (0, 1). Computed by scipy
    (``binomtest(...).proportion_ci(method="wilson")``) at the confidence level of ``z``.
    """
    from scipy.stats import binomtest, norm

    if n < 0 or not 0 <= successes <= n or successes != int(successes) or n != int(n):
        raise ValueError(f"need integers 0 <= successes <= n, got {successes=}, {n=}")
    if z <= 0:
        raise ValueError(f"z must be positive, got {z=}")
    if n == 0:
        return 0.0, 1.0
    confidence = 1.0 - 2.0 * norm.sf(z)  # the two-sided level whose critical value is z
    interval = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


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


def paired_comparison(base: list[dict], other: list[dict], key: str = "success") -> dict:
    """Two runs over the same seeds, episode by episode: how many seeds each one alone solved,
    and the exact two-sided McNemar p-value (a binomial test on those discordant seeds).

    ``base`` / ``other``: per-episode records (a results.json's ``episodes``) with ``seed`` and
    ``key``. Only seeds in both count; a seed twice in one run is refused. A paired test sees
    far smaller differences than two independent Wilson intervals when the runs share seeds.
    """
    from scipy.stats import binomtest

    def by_seed(episodes: list[dict], name: str) -> dict[int, bool]:
        out: dict[int, bool] = {}
        for e in episodes:
            if "seed" not in e or key not in e:
                raise ValueError(f"every {name} episode needs 'seed' and {key!r}, got keys {sorted(e)}")
            if int(e["seed"]) in out:
                raise ValueError(f"{name} holds seed {e['seed']} twice")
            out[int(e["seed"])] = bool(e[key])
        return out

    a, b = by_seed(base, "base"), by_seed(other, "other")
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError(f"the runs share no seed (base {len(a)} episodes, other {len(b)})")
    only_base = sum(a[s] and not b[s] for s in seeds)
    only_other = sum(b[s] and not a[s] for s in seeds)
    discordant = only_base + only_other
    p = binomtest(only_other, discordant, 0.5).pvalue if discordant else 1.0
    return {"n": len(seeds), "base": sum(a[s] for s in seeds), "other": sum(b[s] for s in seeds),
            "only_base": only_base, "only_other": only_other, "difference": (only_other - only_base) / len(seeds),
            "mcnemar_p": float(p)}
