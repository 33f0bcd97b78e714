"""Model-agnostic planning algorithms over normalised action sequences (costs are minimised)."""

from planners.base import (
    Dynamics,
    Objective,
    Optimizer,
    Planner,
    PlanResult,
    Proposer,
    Rollout,
)
from planners.best_of_n import BestOfN
from planners.cem import CEM
from planners.icem import ICEM
from planners.mppi import MPPI
from planners.presets import PLANNERS, make_optimizer

__all__ = [
    "BestOfN",
    "CEM",
    "Dynamics",
    "ICEM",
    "MPPI",
    "Objective",
    "Optimizer",
    "Planner",
    "PlanResult",
    "Proposer",
    "Rollout",
    "PLANNERS",
    "make_optimizer",
]
