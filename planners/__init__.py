"""Model-agnostic planning algorithms over normalised action sequences (costs are minimised)."""

from planners.best_of_n import BestOfN
from planners.cem import CEM
from planners.icem import ICEM
from planners.mppi import MPPI
from planners.optimizer import Optimizer
from planners.planner import History, Planner
from planners.presets import PLANNERS, make_optimizer
from planners.protocols import Dynamics, Objective, PlanResult, Proposer, Rollout, RolloutRequest

__all__ = [
    "BestOfN",
    "CEM",
    "Dynamics",
    "History",
    "ICEM",
    "MPPI",
    "Objective",
    "Optimizer",
    "Planner",
    "PlanResult",
    "Proposer",
    "Rollout",
    "RolloutRequest",
    "PLANNERS",
    "make_optimizer",
]
