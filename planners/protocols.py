"""The three protocols a planner is built from, and what flows between them.

Conventions used by every file in `planners`:
- Costs are minimised. A non-finite cost becomes +inf and is never chosen.
- Actions inside planners are normalised to [-1, 1]; env units are
  low + (a + 1) / 2 * (high - low) (``unnormalize_actions``; ``normalize_actions`` inverts it).
- Shapes: N population size, H horizon in actions, A action dim, T frames, S state dim.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from torch import Tensor

CostFn = Callable[[Tensor], Tensor]  # (N, H, A) -> (N,)

IMAGINE = ("video", "poses", "both")


def normalize_actions(actions: np.ndarray | Tensor, low, high):
    """Env units -> [-1, 1]."""
    return 2.0 * (actions - low) / (high - low) - 1.0


def unnormalize_actions(actions: np.ndarray | Tensor, low, high):
    """[-1, 1] -> env units."""
    return low + (actions + 1.0) / 2.0 * (high - low)


@dataclass(frozen=True)
class RolloutRequest:
    """What an objective reads from a rollout, so that the dynamics can skip the rest.

    An objective declares it as its ``request`` attribute; ``Planner`` passes it on as
    ``model.rollout(context, actions, request=...)``. A dynamics that cannot honour a request
    raises a ValueError saying so.
    """

    # The future frames the objective reads (indices into the rollout's T axis); None: all.
    # The dynamics may leave the others unfinished (UVA returns them as NaN).
    frames: tuple[int, ...] | None = None
    # "video": the dynamics' own prediction (latents, frames or states); "poses": object poses
    # in ``extras["poses"]`` (N, T, P) instead of it; "both": the two.
    imagine: str = "video"

    def __post_init__(self) -> None:
        if self.frames is not None:
            frames = self.frames if isinstance(self.frames, (tuple, list)) else None
            if not frames or any(isinstance(f, bool) or not isinstance(f, (int, np.integer)) for f in frames):
                raise ValueError(f"frames must be None or a non-empty sequence of frame indices (e.g. (-1,)), "
                                 f"got frames={self.frames!r}")
            object.__setattr__(self, "frames", tuple(int(f) for f in frames))
        if self.imagine not in IMAGINE:
            raise ValueError(f"imagine must be 'video', 'poses' or 'both', got {self.imagine!r}")


@dataclass
class Rollout:
    """What a dynamics model predicts for a batch of action sequences."""

    actions: Tensor  # (N, H, A) normalised actions that produced this rollout
    states: Tensor | None = None  # (N, T, S) predicted or simulated object states
    latents: Tensor | None = None  # (N, T, ...) imagined latents
    frames: Tensor | None = None  # (N, T, H, W, 3) decoded frames (H, W here are pixels)
    context: Any = None  # the context the rollout started from
    extras: dict = field(default_factory=dict)


@runtime_checkable
class Proposer(Protocol):
    def sample(self, context: Any, n: int) -> Tensor:
        """Draw n action sequences (n, H, A), normalised to [-1, 1]."""
        ...


@runtime_checkable
class Dynamics(Protocol):
    n_history: int  # observations a context is built from
    action_low: np.ndarray | Tensor  # (A,) env units
    action_high: np.ndarray | Tensor  # (A,) env units

    def context(self, history: Sequence[dict]) -> Any:
        """Build a context from the last n_history observation dicts, oldest first."""
        ...

    def rollout(self, context: Any, actions: Tensor) -> Rollout:
        """Predict what actions (N, H, A), normalised to [-1, 1], do from context.

        A dynamics that serves objectives with a ``request`` also takes
        ``request: RolloutRequest | None = None``.
        """
        ...


@runtime_checkable
class Objective(Protocol):
    # Optional: ``request: RolloutRequest``, what the objective reads (see RolloutRequest).

    def cost(self, rollout: Rollout) -> Tensor:
        """Cost (N,) of each rolled-out candidate; lower is better."""
        ...


@dataclass
class PlanResult:
    actions: Tensor  # (H, A) the chosen plan, normalised
    cost: float  # its cost
    # iteration_costs (best cost of each iteration's population), iteration_seconds,
    # n_evaluations (candidates scored), n_cost_calls, seconds (total), plus per-optimiser extras.
    info: dict = field(default_factory=dict)
