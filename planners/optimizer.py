"""The optimiser base: seeding, clipping, batched and sanitised scoring, per-search bookkeeping."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor

from planners.checks import check_int
from planners.protocols import CostFn, PlanResult


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
        if init.shape[0] < 1 or init.shape[1] < 1:
            raise ValueError(f"init must be an (H, A) tensor with H >= 1 and A >= 1, got {tuple(init.shape)}")
        if not torch.isfinite(init).all():
            raise ValueError(f"init must be finite (the plan starts from it), got NaN or inf in {init!r}")
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
        if proposals.shape[0] < 1:
            raise ValueError(f"proposals must hold at least one chunk (pass None for none), got "
                             f"{tuple(proposals.shape)}")
        if not torch.isfinite(proposals).all():
            bad = sorted({int(i) for i in torch.nonzero(~torch.isfinite(proposals))[:, 0]})
            raise ValueError(f"proposals must be finite, got NaN or inf in proposals {bad[:10]} of {proposals.shape[0]}")
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
