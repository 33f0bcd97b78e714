"""Optimisers by name: at a given budget (what the examples and the ablations sweep over), or at
one of the fixed budgets the guidance experiment's rows use (``BUDGETS``)."""

from __future__ import annotations

from typing import Any

from planners.best_of_n import BestOfN
from planners.cem import CEM
from planners.checks import check_int
from planners.icem import ICEM
from planners.mppi import MPPI
from planners.optimizer import Optimizer

PLANNERS = ("best_of_n", "cem", "mppi", "icem")
_CLASSES = {"best_of_n": BestOfN, "cem": CEM, "mppi": MPPI, "icem": ICEM}

# The one definition of each fixed budget: the guidance experiment's rows
# (uva_plan.experiments.guidance) and the ranking-fidelity N sweep read them from here. Over UVA
# dynamics each spends about 100-160 imagined rollouts per plan (every row reports its own).
# The seeded optimisers: 2 iterations of 64 proposals plus Gaussian samples around the mean
# (std 0.1 in normalised units, about 25 px); MPPI's temperature (0.3) suits costs of order 1.
BUDGETS: dict[str, dict[str, Any]] = {
    "best_of_100": {"planner": "best_of_n", "n_samples": 100},  # the paper's guidance recipe
    "best_of_32": {"planner": "best_of_n", "n_samples": 32},
    "best_of_8": {"planner": "best_of_n", "n_samples": 8},
    "central_10_of_100": {"planner": "best_of_n", "n_samples": 100, "n_central": 10},
    "cem_seeded": {"planner": "cem", "n_samples": 32, "n_proposals": 64, "n_elites": 8, "n_iterations": 2,
                   "init_std": 0.1, "min_std": 0.02},
    "mppi_seeded": {"planner": "mppi", "n_samples": 96, "n_proposals": 64, "n_elites": 16, "n_iterations": 2,
                    "temperature": 0.3, "init_std": 0.1, "min_std": 0.02, "max_std": 0.5},
    "icem_seeded": {"planner": "icem", "n_samples": 32, "n_proposals": 64, "n_elites": 8, "n_iterations": 2,
                    "init_std": 0.1, "min_std": 0.02},
}


def best_of_n_sizes() -> list[int]:
    """The candidate counts of the plain best-of-N budgets, ascending: [8, 32, 100]."""
    return sorted(b["n_samples"] for b in BUDGETS.values() if b["planner"] == "best_of_n" and "n_central" not in b)


def make_budget(name: str, seed: int = 0, max_batch: int | None = None) -> Optimizer:
    """The optimiser of the fixed budget ``name`` (a key of ``BUDGETS``)."""
    if name not in BUDGETS:
        raise ValueError(f"budget must be one of {tuple(BUDGETS)}, got {name!r}")
    settings = dict(BUDGETS[name])
    return _CLASSES[settings.pop("planner")](**settings, seed=seed, max_batch=max_batch)


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
