"""Improved CEM (iCEM): coloured noise, a shrinking population and elites kept across steps."""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor

from planners.checks import check_float, check_int, check_population
from planners.optimizer import Optimizer, shift_plan
from planners.protocols import CostFn, PlanResult


# Beyond this the noise is a constant offset in all but name (1/f^beta puts nearly all its power
# in the lowest frequency), and the float32 scale H^beta overflows (inf, then NaN noise: the
# search returns its init) from H = 16 at beta ~32 and H = 64 at beta ~21. iCEM uses 2 to 4.
MAX_NOISE_BETA = 10.0


def colored_noise(n: int, horizon: int, action_dim: int, beta: float,
                  generator: torch.Generator) -> Tensor:
    """Gaussian noise (n, H, A) with power spectrum ~ 1/f^beta along H and unit variance per entry.

    beta = 0 is white noise; larger beta gives smoother, more time-correlated sequences. Scaled
    by the exact standard deviation of the construction (as the `colorednoise` package that
    iCEM uses does) rather than each sequence's empirical one, which distorts short horizons.
    """
    n_freqs = horizon // 2 + 1
    freqs = torch.fft.rfftfreq(horizon)  # (F,), freqs[0] = 0
    freqs[0] = 1.0 / horizon  # the constant component gets the lowest frequency's power, not inf
    scale = freqs ** (-beta / 2)  # (F,) amplitude per frequency
    # irfft keeps only the real part of the constant (and, for even H, the Nyquist) component;
    # doubling its variance there gives every frequency the power that scale asks for.
    real_gain = torch.ones(n_freqs)
    real_gain[0] = math.sqrt(2)
    if horizon % 2 == 0:
        real_gain[-1] = math.sqrt(2)
    real, imag = torch.randn(2, n, action_dim, n_freqs, generator=generator)
    signal = torch.fft.irfft(torch.complex(real * real_gain, imag) * scale, n=horizon)  # (n, A, H)
    # Every x_t has variance (4 sum_k s_k^2 - 2 s_0^2 [- 2 s_nyquist^2 for even H]) / H^2.
    variance = 4 * scale.pow(2).sum() - 2 * scale[0] ** 2
    if horizon % 2 == 0:
        variance = variance - 2 * scale[-1] ** 2
    return rearrange(signal * horizon / variance.sqrt(), "n a h -> n h a")


class ICEM(Optimizer):
    """iCEM (Pinneri et al. 2020, "Sample-efficient cross-entropy method for real-time planning").

    Differences from CEM, as in the paper's Algorithm 1: samples are coloured noise with exponent
    noise_beta along time; iteration i draws max(n_samples / shrink_factor^i, 2 n_elites)
    samples; a keep_elite_fraction of the previous iteration's elites joins the population (in
    the first iteration, of the previous plan call's elites after `advance` shifted them, padded
    by repeating their last action); the mean joins the last iteration's population; mean and
    std are smoothed with momentum. Proposals join every iteration. Returns the best candidate
    ever evaluated. std restarts at init_std on every call; only the elites are carried.
    """

    def __init__(self, n_samples: int = 100, n_elites: int = 10, n_iterations: int = 4,
                 init_std: float = 0.5, min_std: float = 0.05, noise_beta: float = 2.0,
                 shrink_factor: float = 1.25, keep_elite_fraction: float = 0.3,
                 momentum: float = 0.1, n_proposals: int = 0, low: float | Tensor = -1.0,
                 high: float | Tensor = 1.0, seed: int = 0, max_batch: int | None = None,
                 rescore_proposals: bool = False) -> None:
        super().__init__(low=low, high=high, seed=seed, max_batch=max_batch,
                         rescore_proposals=rescore_proposals)
        check_population(n_samples, n_elites, n_iterations)
        check_float("init_std", init_std, 0.0, open_low=True, open_high=True)
        check_float("min_std", min_std, 0.0)
        check_float("noise_beta", noise_beta, 0.0, MAX_NOISE_BETA)
        check_float("shrink_factor", shrink_factor, 1.0)
        check_float("keep_elite_fraction", keep_elite_fraction, 0.0, 1.0)
        check_float("momentum", momentum, 0.0, 1.0, open_high=True)
        check_int("n_proposals", n_proposals, 0)
        self.n_samples, self.n_elites, self.n_iterations = n_samples, n_elites, n_iterations
        self.init_std, self.min_std, self.noise_beta = init_std, min_std, noise_beta
        self.shrink_factor, self.momentum = shrink_factor, momentum
        self.n_kept = round(keep_elite_fraction * n_elites)
        self.n_proposals = n_proposals  # 0: use every proposal given
        self.elites: Tensor | None = None  # (K, H, A) the last search's elites, carried to the next

    def reset(self) -> None:
        super().reset()
        self.elites = None

    def advance(self, n_steps: int) -> None:
        """Shift the carried elites by n executed steps."""
        if self.elites is not None:
            self.elites = shift_plan(self.elites, n_steps)

    def population_size(self, iteration: int) -> int:
        """Samples drawn in an iteration: shrinks geometrically, never below 2 n_elites."""
        shrunk = math.ceil(self.n_samples / self.shrink_factor**iteration)
        return max(shrunk, min(2 * self.n_elites, self.n_samples))

    def search(self, cost: CostFn, init: Tensor, proposals: Tensor | None = None) -> PlanResult:
        """Minimise cost: (N, H, A) -> (N,) from mean init (H, A), mixing in proposals (M, H, A)."""
        init = self._check_init(init)
        proposals = self._take_proposals(proposals, init)
        trace = self._start()
        mean, std = init.clone(), torch.full_like(init, self.init_std)  # (H, A) each
        carried = self.elites
        if carried is not None and carried.shape[1:] != init.shape:  # horizon changed: start afresh
            carried = None
        kept = None if carried is None else carried[: self.n_kept].to(init)
        for iteration in range(self.n_iterations):
            noise = colored_noise(self.population_size(iteration), *init.shape, self.noise_beta,
                                  self.generator).to(init)
            parts = [self._clip(mean + std * noise)]
            if kept is not None:
                parts.append(kept)
            if iteration == self.n_iterations - 1:
                parts.append(mean[None])
            if proposals is not None:
                parts.append(proposals)
            population, costs = self._evaluate_population(cost, parts, proposals)  # (N, H, A), (N,)
            elites, _ = self._select_elites(population, costs, self.n_elites)  # (K, H, A)
            mean = self.momentum * mean + (1 - self.momentum) * elites.mean(0)
            std = self.momentum * std + (1 - self.momentum) * elites.std(0, correction=0)
            std = std.clamp(min=self.min_std)
            kept = elites[: self.n_kept]
            trace.record(population, costs)
        self.elites = elites
        return trace.result(self, mean=mean, std=std)
