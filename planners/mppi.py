"""MPPI with elites, in the variant TD-MPC2 plans with."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from planners.checks import check_float, check_int, check_population
from planners.optimizer import Optimizer
from planners.protocols import CostFn, PlanResult


class MPPI(Optimizer):
    """MPPI (Williams et al. 2017) as implemented in TD-MPC2's `_plan` (Hansen et al. 2024).

    The population has n_samples rows: the proposals (up to n_proposals of them, the same ones
    every iteration; TD-MPC2's policy trajectories) and Gaussian samples around the mean for the
    rest. Each iteration keeps the n_elites cheapest and weights them by
    w ~ exp(-temperature * (cost - min elite cost)), i.e. TD-MPC2's exp(temperature * (value -
    max value)) with value = -cost; then mean = sum w a, std = sqrt(sum w (a - mean)^2), std
    clamped to [min_std, max_std]. With sample_final (TD-MPC2) the plan is one last-iteration
    elite drawn with probability w; otherwise it is the weighted mean, scored with one more
    cost call (if that cost is non-finite, the best elite is returned instead).

    temperature is in inverse cost units: when elite costs differ by much more than
    1 / temperature the weights collapse onto the best elite and std onto min_std.
    """

    def __init__(self, n_samples: int = 512, n_elites: int = 64, n_iterations: int = 6,
                 temperature: float = 0.5, init_std: float = 2.0, min_std: float = 0.05,
                 max_std: float = 2.0, n_proposals: int = 24, sample_final: bool = True,
                 low: float | Tensor = -1.0, high: float | Tensor = 1.0, seed: int = 0,
                 max_batch: int | None = None, rescore_proposals: bool = False) -> None:
        super().__init__(low=low, high=high, seed=seed, max_batch=max_batch,
                         rescore_proposals=rescore_proposals)
        check_population(n_samples, n_elites, n_iterations)
        check_float("temperature", temperature, 0.0, open_low=True, open_high=True)
        check_float("init_std", init_std, 0.0, open_low=True, open_high=True)
        check_float("min_std", min_std, 0.0)
        check_float("max_std", max_std, min_std)
        check_int("n_proposals", n_proposals, 0)
        if n_proposals > n_samples:
            raise ValueError(f"n_proposals must be <= n_samples, got {n_proposals=} > {n_samples=}")
        self.n_samples, self.n_elites, self.n_iterations = n_samples, n_elites, n_iterations
        self.temperature, self.init_std = temperature, init_std
        self.min_std, self.max_std = min_std, max_std
        self.n_proposals, self.sample_final = n_proposals, sample_final

    def search(self, cost: CostFn, init: Tensor, proposals: Tensor | None = None) -> PlanResult:
        """Minimise cost: (N, H, A) -> (N,) from mean init (H, A), mixing in proposals (M, H, A)."""
        init = self._check_init(init)
        proposals = self._take_proposals(proposals, init)
        if proposals is not None:
            proposals = proposals[: self.n_samples]
        n_gaussian = self.n_samples - (0 if proposals is None else proposals.shape[0])
        trace = self._start()
        mean, std = init.clone(), torch.full_like(init, self.init_std)  # (H, A) each
        for _ in range(self.n_iterations):
            samples = self._clip(mean + std * self._randn(n_gaussian, *init.shape, like=init))
            parts = [samples] if proposals is None else [proposals, samples]
            population, costs = self._evaluate_population(cost, parts, proposals)  # (N, H, A), (N,)
            elites, elite_costs = self._select_elites(population, costs, self.n_elites)  # (K, H, A)
            # elite_costs is sorted and finite: subtracting its min keeps exp in (0, 1], no NaN.
            weights = torch.exp(-self.temperature * (elite_costs - elite_costs[0]))
            weights = (weights / weights.sum()).to(elites.dtype)  # (K,); costs may be float64
            mean = torch.einsum("k,kha->ha", weights, elites)
            std = torch.einsum("k,kha->ha", weights, (elites - mean) ** 2).sqrt()
            std = std.clamp(self.min_std, self.max_std)
            trace.record(population, costs)
        if self.sample_final:
            pick = int(torch.multinomial(weights.cpu().double(), 1, generator=self.generator))
            return trace.result(self, elites[pick], float(elite_costs[pick]), mean=mean, std=std)
        mean_cost = float(self._evaluate(cost, mean[None], require_finite=False)[0])
        if math.isfinite(mean_cost):
            return trace.result(self, mean, mean_cost, mean=mean, std=std)
        return trace.result(self, elites[0], float(elite_costs[0]), mean=mean, std=std)
