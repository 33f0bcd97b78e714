"""The env-facing receding-horizon planner and the observation history it keeps."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from planners.best_of_n import BestOfN
from planners.checks import check_int, check_observation
from planners.optimizer import Optimizer, shift_plan
from planners.protocols import Dynamics, Objective, PlanResult, Proposer, RolloutRequest, unnormalize_actions

T = TypeVar("T")


class History:
    """The last ``n`` observation dicts, oldest first.

    The first observation of an episode stands in for the ``n - 1`` steps before it, as
    Diffusion Policy pads, so a full history is there from the first step on. Indexing,
    ``len`` and iteration work as on a list; ``list(history)`` is a copy.
    """

    def __init__(self, n: int) -> None:
        check_int("n", n, 1)
        self.n = n
        self._observations: deque[dict] = deque(maxlen=n)

    def append(self, obs: dict) -> None:
        """Record the newest observation (the first of an episode fills every slot) once it
        passes ``check``: a bad one raises and is not recorded."""
        self.check(obs)
        self._record(obs)

    def record(self, obs: dict, make_context: Callable[[list[dict]], T]) -> T:
        """``make_context`` of the history that ``obs`` completes, then ``obs`` is recorded: an
        observation that ``check`` or ``make_context`` refuses leaves the history as it was."""
        self.check(obs)
        context = make_context(self.after(obs))
        self._record(obs)
        return context

    def after(self, obs: dict) -> list[dict]:
        """What the history would hold after ``append(obs)``, oldest first; nothing is recorded."""
        if not self._observations:
            return [obs] * self.n
        return (list(self._observations) + [obs])[-self.n:]

    def _record(self, obs: dict) -> None:
        if not self._observations:
            self._observations.extend([obs] * self.n)
        else:
            self._observations.append(obs)

    def check(self, obs: dict) -> None:
        """``check_observation`` against this episode's newest observation (a ValueError naming
        a non-dict, a non-finite entry, or keys and shapes that differ from the episode's)."""
        check_observation(obs, self._observations[-1] if self._observations else None)

    def clear(self) -> None:
        self._observations.clear()

    def __len__(self) -> int:
        return len(self._observations)

    def __iter__(self) -> Iterator[dict]:
        return iter(self._observations)

    def __getitem__(self, index: int) -> dict:
        return self._observations[index]


class Planner:
    """Receding-horizon planner: the env-facing object that keeps history and warm starts.

    `model` implements Dynamics; when it also has `sample` it is the default proposer, when
    it has `default_objective()` that is the default objective, `default_optimizer(max_batch)`
    the default optimizer (else best of 100), and when it has
    `initial_plan(context, horizon) -> (H, A)` that is the first mean of an episode (else zeros).
    An objective with a `request` (a `RolloutRequest`: the frames it reads, what to imagine)
    has it passed to `model.rollout(context, actions, request=...)`.
    `reset()` also resets the proposer when it has a `reset()`. `plan(obs)` returns the first
    n_action_steps actions of the plan, in env units, as float64 (n_action_steps, A).
    """

    def __init__(self, model: Dynamics, optimizer: Optimizer | None = None,
                 proposer: Proposer | None = None, objective: Objective | None = None,
                 horizon: int = 16, n_action_steps: int = 8, warm_start: bool = True,
                 max_batch: int | None = None) -> None:
        check_int("horizon", horizon, 1)
        check_int("n_action_steps", n_action_steps, 1)
        if n_action_steps > horizon:
            raise ValueError(f"n_action_steps must be <= horizon, got {n_action_steps=}, "
                             f"{horizon=}")
        check_int("model.n_history", model.n_history, 1)
        if proposer is None and callable(getattr(model, "sample", None)):
            proposer = model
        if objective is None and callable(getattr(model, "default_objective", None)):
            objective = model.default_objective()
        if objective is None:
            raise ValueError("objective is None and the model has no default_objective(); "
                             "pass objective=... (anything with cost(rollout) -> (N,))")
        if optimizer is None and callable(getattr(model, "default_optimizer", None)):
            optimizer = model.default_optimizer(max_batch=max_batch)
        elif optimizer is None:
            optimizer = BestOfN(n_samples=100, max_batch=max_batch)
        elif max_batch is not None:
            raise ValueError(f"max_batch={max_batch} only sizes the default optimizer; "
                             "set max_batch on the optimizer you pass instead")
        self.model, self.optimizer = model, optimizer
        self.proposer, self.objective = proposer, objective
        self.horizon, self.n_action_steps, self.warm_start = horizon, n_action_steps, warm_start
        self.action_low = np.asarray(torch.as_tensor(model.action_low).cpu(), dtype=np.float64)
        self.action_high = np.asarray(torch.as_tensor(model.action_high).cpu(), dtype=np.float64)
        if self.action_low.ndim != 1 or self.action_low.shape != self.action_high.shape:
            raise ValueError(f"model.action_low/high must both be (A,), got "
                             f"{self.action_low.shape} and {self.action_high.shape}")
        self.action_dim = self.action_low.shape[0]
        # What the objective reads (e.g. only the last frame, or poses instead of video), so the
        # model can skip the work on the rest.
        self.request: RolloutRequest | None = getattr(objective, "request", None)
        if self.request is not None and not isinstance(self.request, RolloutRequest):
            raise ValueError(f"objective.request must be a RolloutRequest or None, got "
                             f"{type(objective).__name__}.request={self.request!r}")
        self.reset()

    def reset(self) -> None:
        """Start a new episode: forget history, the previous plan, the last result and context,
        and elites."""
        self.history = History(self.model.n_history)
        self.queue: deque[np.ndarray] = deque()  # planned actions not yet taken (select_action)
        self.previous_plan: Tensor | None = None  # (H, A) normalised
        self.last_result: PlanResult | None = None
        self.last_context: Any = None  # the context the last plan was made from
        self.optimizer.reset()
        if callable(getattr(self.proposer, "reset", None)):
            self.proposer.reset()

    def observe(self, obs: dict) -> None:
        """Record an observation that no plan is asked for (a step inside an executed chunk).

        ``model.n_history`` counts control steps, so a model whose context spans several steps
        (UVA: one frame every 4 steps) needs every step's observation: call ``observe`` after
        each env step whose observation does not go to ``plan`` (``run_episode`` does).
        Without it such a model sees only the planning steps' observations. A bad observation
        (``History.check``) raises and is not recorded.
        """
        self.history.append(obs)

    def select_action(self, obs: dict) -> np.ndarray:
        """One action (A,) in env units for this env step (LeRobot's convention): call it with
        every step's observation. It plans a chunk when no planned action is left, otherwise it
        records the observation (``observe``) and takes the next planned action, so the model's
        history holds every step. Takes the same actions as ``plan`` driven by ``run_episode``."""
        if self.queue:
            self.observe(obs)
        else:
            self.queue.extend(self.plan(obs))
        return self.queue.popleft()

    @torch.no_grad()
    def plan(self, obs: dict) -> np.ndarray:
        """Plan from the newest observation; return (n_action_steps, A) float64 env-unit actions.

        The observation is recorded once the model has made its context from it: one that the
        checks or the model refuse leaves the history as it was."""
        context = self.last_context = self.history.record(obs, self.model.context)
        request = self.request

        def cost(actions: Tensor) -> Tensor:
            if request is None:
                return self.objective.cost(self.model.rollout(context, actions))
            return self.objective.cost(self.model.rollout(context, actions, request=request))

        n_proposals = getattr(self.optimizer, "n_proposals", 0)
        proposals = None
        if self.proposer is not None and n_proposals > 0:
            proposals = self.proposer.sample(context, n_proposals)  # (n, H, A)
        if self.warm_start and self.previous_plan is not None:
            init = shift_plan(self.previous_plan, self.n_action_steps)
        elif callable(getattr(self.model, "initial_plan", None)):
            init = self.model.initial_plan(context, self.horizon)  # e.g. hold the current position
        else:
            device = getattr(self.model, "device", "cpu") if proposals is None else proposals.device
            init = torch.zeros(self.horizon, self.action_dim, device=device)
        result = self.optimizer.search(cost, init, proposals)
        self.last_result, self.previous_plan = result, result.actions
        self.optimizer.advance(self.n_action_steps)
        chunk = result.actions[: self.n_action_steps].detach().cpu().double().numpy()
        return unnormalize_actions(chunk, self.action_low, self.action_high)
