"""Gaussian cross-entropy method over action sequences."""

from __future__ import annotations

import torch
from torch import Tensor

from planners.checks import check_float, check_int, check_population
from planners.optimizer import Optimizer
from planners.protocols import CostFn, PlanResult


class CEM(Optimizer):
    """Gaussian CEM (Rubinstein 1999) in the MPC form of PETS (Chua et al. 2018) and DINO-WM.

    Each iteration draws n_samples sequences from N(mean, std) per (step, action dim), clipped to
    the bounds, appends the proposals (the same ones every iteration), keeps the n_elites cheapest
    and refits mean and std to them: new = momentum * old + (1 - momentum) * elite statistic, with
    std floored at min_std. Returns the best candidate ever evaluated, not the final mean.
    """

    def __init__(self, n_samples: int = 100, n_elites: int = 10, n_iterations: int = 5,
                 init_std: float = 0.5, min_std: float = 0.05, momentum: float = 0.0,
                 n_proposals: int = 0, low: float | Tensor = -1.0, high: float | Tensor = 1.0,
                 seed: int = 0, max_batch: int | None = None, rescore_proposals: bool = False) -> None:
        super().__init__(low=low, high=high, seed=seed, max_batch=max_batch,
                         rescore_proposals=rescore_proposals)
        check_population(n_samples, n_elites, n_iterations)
        check_float("init_std", init_std, 0.0, open_low=True, open_high=True)
        check_float("min_std", min_std, 0.0)
        check_float("momentum", momentum, 0.0, 1.0, open_high=True)
        check_int("n_proposals", n_proposals, 0)
        self.n_samples, self.n_elites, self.n_iterations = n_samples, n_elites, n_iterations
        self.init_std, self.min_std, self.momentum = init_std, min_std, momentum
        self.n_proposals = n_proposals  # 0: use every proposal given

    def search(self, cost: CostFn, init: Tensor, proposals: Tensor | None = None) -> PlanResult:
        """Minimise cost: (N, H, A) -> (N,) from mean init (H, A), mixing in proposals (M, H, A)."""
        init = self._check_init(init)
        proposals = self._take_proposals(proposals, init)
        trace = self._start()
        mean, std = init.clone(), torch.full_like(init, self.init_std)  # (H, A) each
        for _ in range(self.n_iterations):
            samples = self._clip(mean + std * self._randn(self.n_samples, *init.shape, like=init))
            parts = [samples] if proposals is None else [samples, proposals]
            population, costs = self._evaluate_population(cost, parts, proposals)  # (N, H, A), (N,)
            elites, _ = self._select_elites(population, costs, self.n_elites)  # (K, H, A)
            mean = self.momentum * mean + (1 - self.momentum) * elites.mean(0)
            std = self.momentum * std + (1 - self.momentum) * elites.std(0, correction=0)
            std = std.clamp(min=self.min_std)
            trace.record(population, costs)
        return trace.result(self, mean=mean, std=std)
