"""Protocols, results and shared machinery for model-agnostic planners.

Conventions used by every file in `planners`:
- Costs are minimised. A non-finite cost becomes +inf and is never chosen.
- Actions inside planners are normalised to [-1, 1]; env units are
  low + (a + 1) / 2 * (high - low).
- Shapes: N population size, H horizon in actions, A action dim, T frames, S state dim.
"""

from __future__ import annotations

import inspect
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

CostFn = Callable[[Tensor], Tensor]  # (N, H, A) -> (N,)


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
        """Predict what actions (N, H, A), normalised to [-1, 1], do from context."""
        ...


@runtime_checkable
class Objective(Protocol):
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


def shift_plan(actions: Tensor, n_steps: int) -> Tensor:
    """Drop the first n_steps of (..., H, A) and pad at the end by repeating the last action."""
    check_int("n_steps", n_steps, 0)
    horizon = actions.shape[-2]
    index = (torch.arange(horizon, device=actions.device) + n_steps).clamp(max=horizon - 1)
    return actions.index_select(-2, index)


def _as_bound(name: str, value: float | Tensor) -> Tensor:
    bound = torch.as_tensor(value, dtype=torch.float32).detach().clone()
    if bound.ndim > 1:
        raise ValueError(f"{name} must be a float or an (A,) tensor, got {tuple(bound.shape)=}")
    if not torch.isfinite(bound).all():
        raise ValueError(f"{name} must be finite, got {name}={value!r}")
    return bound


class _Trace:
    """Per-search bookkeeping: best candidate seen, per-iteration best costs and timings."""

    def __init__(self) -> None:
        self.best_actions: Tensor | None = None  # (H, A)
        self.best_cost = math.inf
        self.iteration_costs: list[float] = []
        self.iteration_seconds: list[float] = []
        self.start = self.tick = time.perf_counter()

    def record(self, population: Tensor, costs: Tensor) -> None:
        """Log one iteration: population (N, H, A), costs (N,) with non-finite already +inf."""
        best = int(torch.argmin(costs))
        best_cost = float(costs[best])
        if best_cost < self.best_cost:
            self.best_cost, self.best_actions = best_cost, population[best].clone()
        now = time.perf_counter()
        self.iteration_costs.append(best_cost)
        self.iteration_seconds.append(now - self.tick)
        self.tick = now

    def result(self, optimizer: Optimizer, actions: Tensor | None = None, cost: float | None = None,
               **info: Any) -> PlanResult:
        """Build the PlanResult; by default the plan is the best candidate ever seen."""
        if actions is None:
            actions, cost = self.best_actions, self.best_cost
        info.update(
            iteration_costs=self.iteration_costs,
            iteration_seconds=self.iteration_seconds,
            n_evaluations=optimizer.n_evaluations,
            n_cost_calls=optimizer.n_cost_calls,
            seconds=time.perf_counter() - self.start,
        )
        return PlanResult(actions=actions, cost=float(cost), info=info)


class Optimizer:
    """Shared machinery for sampling-based trajectory optimisers.

    Subclasses implement `search`. Every random draw goes through `self.generator` (a CPU
    generator, so a seed gives the same plan on any device); every candidate is clipped to
    [low, high] and scored through `_evaluate`, which batches, chunks and sanitises costs.
    """

    n_proposals: int = 0  # how many proposer samples `search` wants; Planner asks for this many

    def __init__(self, low: float | Tensor = -1.0, high: float | Tensor = 1.0, seed: int = 0,
                 max_batch: int | None = None, rescore_proposals: bool = False) -> None:
        self.low, self.high = _as_bound("low", low), _as_bound("high", high)
        if not (self.low < self.high).all():
            raise ValueError(f"low must be < high in every action dim, got {low=} and {high=}")
        check_int("seed", seed, 0)
        if max_batch is not None:
            check_int("max_batch", max_batch, 1)
        # The proposals are the same rows in every iteration of a search: scored once per search
        # unless asked (a stochastic cost then gets a fresh draw in each iteration).
        if not isinstance(rescore_proposals, bool):
            raise ValueError(f"rescore_proposals must be a bool, got {rescore_proposals=}")
        self.seed, self.max_batch, self.rescore_proposals = seed, max_batch, rescore_proposals
        self.generator = torch.Generator().manual_seed(seed)
        self.n_evaluations = 0  # candidates scored in the current search
        self.n_cost_calls = 0
        self._proposal_costs: Tensor | None = None  # this search's proposals' costs

    def reset(self) -> None:
        """Re-seed and forget carried state: afterwards behave exactly like a fresh optimiser."""
        self.generator.manual_seed(self.seed)
        self.n_evaluations = self.n_cost_calls = 0

    def advance(self, n_steps: int) -> None:
        """Shift carried state by n executed steps (nothing is carried by default)."""

    def optimize(self, cost: CostFn, init: Tensor) -> Tensor:
        """Minimise cost starting from init (H, A); return the plan (H, A)."""
        return self.search(cost, init).actions

    def search(self, cost: CostFn, init: Tensor, proposals: Tensor | None = None) -> PlanResult:
        """Minimise cost: (N, H, A) -> (N,) from mean init (H, A), mixing in proposals (M, H, A)."""
        raise NotImplementedError

    def _start(self) -> _Trace:
        self.n_evaluations = self.n_cost_calls = 0
        self._proposal_costs = None
        return _Trace()

    def _randn(self, *shape: int, like: Tensor) -> Tensor:
        """Standard normal noise drawn from self.generator, on like's device and dtype."""
        noise = torch.randn(shape, generator=self.generator, dtype=torch.float32)
        return noise.to(device=like.device, dtype=like.dtype)

    def _clip(self, actions: Tensor) -> Tensor:
        """Clamp (..., A) actions to [low, high], per action dim when the bounds are (A,)."""
        return torch.clamp(actions, min=self.low.to(actions), max=self.high.to(actions))

    def _check_init(self, init: Tensor) -> Tensor:
        if not isinstance(init, Tensor) or init.ndim != 2:
            shape = tuple(init.shape) if isinstance(init, Tensor) else type(init).__name__
            raise ValueError(f"init must be an (H, A) tensor, got {shape}")
        action_dim = init.shape[1]
        for name, bound in (("low", self.low), ("high", self.high)):
            if bound.ndim == 1 and bound.shape[0] != action_dim:
                raise ValueError(f"{name} has {bound.shape[0]} action dims, init has {action_dim}")
        init = init.detach()
        return self._clip(init if init.is_floating_point() else init.float())

    def _take_proposals(self, proposals: Tensor | None, init: Tensor) -> Tensor | None:
        """The first n_proposals rows of proposals (all of them when n_proposals is 0), clipped."""
        if proposals is None:
            return None
        if proposals.ndim != 3 or proposals.shape[1:] != init.shape:
            raise ValueError(f"proposals must be (M, H, A) = (M, {tuple(init.shape)}), "
                             f"got {tuple(proposals.shape)}")
        if self.n_proposals > 0:
            proposals = proposals[: self.n_proposals]
        return self._clip(proposals.detach().to(init))

    @torch.no_grad()
    def _evaluate(self, cost: CostFn, actions: Tensor, require_finite: bool = True) -> Tensor:
        """Score actions (N, H, A) -> (N,) in chunks of max_batch; non-finite costs become +inf.

        Raises RuntimeError when every cost is non-finite, unless require_finite is False.
        """
        n_candidates = actions.shape[0]
        chunk = self.max_batch or n_candidates
        costs = []
        for start in range(0, n_candidates, chunk):
            batch = actions[start : start + chunk]
            batch_costs = cost(batch)
            if not isinstance(batch_costs, Tensor) or batch_costs.shape != (batch.shape[0],):
                got = tuple(batch_costs.shape) if isinstance(batch_costs, Tensor) else batch_costs
                raise ValueError(f"cost must return shape (N,) = ({batch.shape[0]},), got {got!r}")
            costs.append(batch_costs.detach())
            self.n_cost_calls += 1
        costs = torch.cat(costs).to(actions.device)
        costs = costs if costs.is_floating_point() else costs.float()
        self.n_evaluations += n_candidates
        # A diverged rollout must rank last, never first (NaN -> 0 would make it a winner).
        costs = torch.where(torch.isfinite(costs), costs, torch.full_like(costs, math.inf))
        if require_finite and torch.isinf(costs).all():
            raise RuntimeError(f"all {n_candidates} candidates evaluated have a non-finite cost")
        return costs

    def _evaluate_population(self, cost: CostFn, parts: list[Tensor],
                             proposals: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The population torch.cat(parts) (N, H, A) and its costs (N,), in that order.

        ``proposals``, when given, is one of ``parts`` (the same tensor object in every
        iteration of a search): its costs from the search's first call are reused unless
        ``rescore_proposals``. The other parts are scored together in one ``_evaluate``.
        Raises RuntimeError when every cost is non-finite.
        """
        population = torch.cat(parts)
        known = None if self.rescore_proposals else self._proposal_costs

        def reused(part: Tensor) -> bool:
            return part is proposals and known is not None

        fresh = [part for part in parts if not reused(part) and len(part)]
        fresh_costs = self._evaluate(cost, torch.cat(fresh), require_finite=False) if fresh else None
        costs, start = [], 0
        for part in parts:
            if reused(part):
                costs.append(known)
            elif len(part):  # an empty part (e.g. MPPI with only proposals) adds no rows
                costs.append(fresh_costs[start: start + len(part)])
                start += len(part)
                if part is proposals:
                    self._proposal_costs = costs[-1]
        costs = torch.cat(costs)
        if torch.isinf(costs).all():
            raise RuntimeError(f"all {costs.shape[0]} candidates evaluated have a non-finite cost")
        return population, costs

    @staticmethod
    def _select_elites(population: Tensor, costs: Tensor, n_elites: int) -> tuple[Tensor, Tensor]:
        """The n_elites cheapest finite candidates, cheapest first: (K, H, A) and (K,)."""
        n_elites = min(n_elites, population.shape[0])
        elite_costs, index = torch.topk(costs, n_elites, largest=False, sorted=True)
        finite = torch.isfinite(elite_costs)  # _evaluate guarantees at least one
        return population[index[finite]], elite_costs[finite]


class Planner:
    """Receding-horizon planner: the env-facing object that keeps history and warm starts.

    `model` implements Dynamics; when it also has `sample` it is the default proposer, when
    it has `default_objective()` that is the default objective, `default_optimizer(max_batch)`
    the default optimizer (else best of 100), and when it has
    `initial_plan(context, horizon) -> (H, A)` that is the first mean of an episode (else zeros).
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
            from planners.best_of_n import BestOfN  # here, not at the top: best_of_n imports base

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
        # A model whose rollout takes ``frames`` (UVA) is told which frames the objective reads,
        # so it can skip the work on the others.
        frames = getattr(objective, "frames", None)
        takes_frames = "frames" in inspect.signature(model.rollout).parameters
        self._rollout_kwargs = {"frames": tuple(frames)} if frames is not None and takes_frames else {}
        # An objective that reads something other than video (``imagine``, e.g. "poses": a pose
        # head on UVA's joint latent) asks a model whose rollout takes ``imagine`` for just that.
        imagine = getattr(objective, "imagine", None)
        if imagine is not None:
            if "imagine" not in inspect.signature(model.rollout).parameters:
                raise ValueError(f"the objective {type(objective).__name__} reads imagined {imagine!r}, but "
                                 f"{type(model).__name__}.rollout does not take imagine=")
            self._rollout_kwargs["imagine"] = imagine
        self.reset()

    def reset(self) -> None:
        """Start a new episode: forget history, the previous plan, the last result and context,
        and elites."""
        self.history: deque[dict] = deque(maxlen=self.model.n_history)
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
        Without it such a model sees only the planning steps' observations.
        """
        if not self.history:  # the first obs of an episode stands in for the steps before it,
            self.history.extend([obs] * self.model.n_history)  # as Diffusion Policy pads
        else:
            self.history.append(obs)

    @torch.no_grad()
    def plan(self, obs: dict) -> np.ndarray:
        """Plan from the newest observation; return (n_action_steps, A) float64 env-unit actions."""
        self.observe(obs)
        context = self.last_context = self.model.context(list(self.history))

        def cost(actions: Tensor) -> Tensor:
            return self.objective.cost(self.model.rollout(context, actions, **self._rollout_kwargs))

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
        return self.action_low + (chunk + 1.0) / 2.0 * (self.action_high - self.action_low)
