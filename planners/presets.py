"""Optimisers by name at a given budget: what the examples and the ablations sweep over."""

from __future__ import annotations

from planners.best_of_n import BestOfN
from planners.cem import CEM
from planners.checks import check_int
from planners.icem import ICEM
from planners.mppi import MPPI
from planners.optimizer import Optimizer

PLANNERS = ("best_of_n", "cem", "mppi", "icem")


def make_optimizer(name: str, n_samples: int, seed: int = 0, max_batch: int | None = None,
                   n_central: int | None = None) -> Optimizer:
    """``name`` at a budget of about ``n_samples`` scored candidates per iteration.

    best_of_n ranks ``n_samples`` proposals once (with ``n_central``, only the n_central most
    typical of them: ``BestOfN``). CEM, iCEM and MPPI are seeded by the
    proposer: each of their 2 iterations scores half proposals, half Gaussian samples around
    the current mean (std 0.1 in normalised units, about 25 px), keeping the best tenth as
    elites; MPPI's temperature (0.3) suits costs of order 1 (the learned objectives').
    """
    if name not in PLANNERS:
        raise ValueError(f"planner must be one of {PLANNERS}, got {name!r}")
    check_int("n_samples", n_samples, 4)
    if n_central is not None and name != "best_of_n":
        raise ValueError(f"n_central filters best_of_n's proposals; planner {name!r} takes none, got {n_central=}")
    if name == "best_of_n":
        return BestOfN(n_samples=n_samples, seed=seed, max_batch=max_batch, n_central=n_central)
    n_proposals, n_noise = (n_samples + 1) // 2, n_samples // 2
    n_elites = max(2, n_samples // 10)
    common = dict(n_elites=n_elites, n_iterations=2, init_std=0.1, min_std=0.02, seed=seed, max_batch=max_batch)
    if name == "cem":
        return CEM(n_samples=n_noise, n_proposals=n_proposals, **common)
    if name == "icem":
        return ICEM(n_samples=n_noise, n_proposals=n_proposals, **common)
    return MPPI(n_samples=n_samples, n_proposals=n_proposals, temperature=0.3, max_std=0.5, **common)
