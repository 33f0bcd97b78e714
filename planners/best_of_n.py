"""Best-of-N: score a set of candidates once and keep the cheapest."""

from __future__ import annotations

import torch
from torch import Tensor

from planners.checks import check_float, check_int, check_n_central
from planners.optimizer import Optimizer
from planners.protocols import CostFn, PlanResult


class BestOfN(Optimizer):
    """Best-of-N ranking (random shooting when no proposals are given).

    With proposals (e.g. from a diffusion policy) the candidates are those proposals, the first
    n_samples of them, as in UVA's guidance experiment (Li et al. 2025) and GPC (Qi et al. 2025).
    Without proposals the candidates are init itself plus n_samples - 1 perturbations
    init + noise_std * eps, eps ~ N(0, I): random shooting around the warm start. One
    evaluation, then argmin.

    ``n_central`` (proposals only) first keeps the n_central proposals that lie closest to the
    others (smallest mean L2 distance between whole chunks: the proposer's typical samples, the
    medoid first) and ranks only those. A learned model's argmin over many candidates finds
    the ones it imagines wrongly (README, "Planning with UVA"); the filter keeps the search
    where the proposer's density is, and the model scores n_central rollouts instead of N.
    ``n_central=1`` executes the medoid without consulting the cost's ranking.
    """

    def __init__(self, n_samples: int = 100, noise_std: float = 0.3, low: float | Tensor = -1.0,
                 high: float | Tensor = 1.0, seed: int = 0, max_batch: int | None = None,
                 n_central: int | None = None) -> None:
        super().__init__(low=low, high=high, seed=seed, max_batch=max_batch)
        check_int("n_samples", n_samples, 1)
        check_float("noise_std", noise_std, 0.0)
        check_n_central(n_central, n_samples)
        self.n_samples, self.noise_std, self.n_central = n_samples, noise_std, n_central

    @property
    def n_proposals(self) -> int:
        """A proposer is asked for n_samples candidates; all of them are ranked, or only the
        n_central most typical when n_central is set."""
        return self.n_samples

    def search(self, cost: CostFn, init: Tensor, proposals: Tensor | None = None) -> PlanResult:
        """Rank proposals (M, H, A), or init and its perturbations, by cost: (N, H, A) -> (N,)."""
        init = self._check_init(init)  # (H, A)
        trace = self._start()
        candidates = self._take_proposals(proposals, init)
        if candidates is not None and self.n_central is not None:
            candidates = central(candidates, self.n_central)
        if candidates is None:
            noise = self._randn(self.n_samples - 1, *init.shape, like=init)
            candidates = self._clip(init + self.noise_std * noise)
            candidates = torch.cat([init[None], candidates])  # (N, H, A), init is candidate 0
        costs = self._evaluate(cost, candidates)
        trace.record(candidates, costs)
        return trace.result(self, costs=costs)


def central(candidates: Tensor, k: int) -> Tensor:
    """The k rows of candidates (N, H, A) with the smallest mean L2 distance to all rows, most
    central first: (min(k, N), H, A). Ties keep the earlier row."""
    flat = candidates.reshape(candidates.shape[0], -1).double()
    spread = torch.cdist(flat, flat).mean(1)  # (N,)
    order = torch.sort(spread, stable=True).indices[:k]
    return candidates[order]
