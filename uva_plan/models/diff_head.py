"""A small diffusion head: an adaLN-conditioned residual MLP that denoises one vector per row.

MAR's "diffusion loss" (Li et al. 2024, "Autoregressive Image Generation without Vector
Quantization"): the head owns its loss and has two verbs, ``loss(target, cond)`` (DDPM
noising at a uniform random timestep, MSE on the prediction) and ``sample(cond)`` (DDIM,
eta 0). UVA builds it twice from two configs: one for video tokens, one for action chunks.

Shape letters: B rows (batch, or tokens flattened into the batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from torch import Tensor, nn

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
FREQ_DIM = 256  # sinusoidal timestep features before the MLP (as in DiT and MAR)


@dataclass
class DiffusionHeadConfig:
    target_dim: int  # size of the vector being denoised
    cond_dim: int  # size of the conditioning vector (a token's z, or an action-chunk summary)
    width: int = 256
    depth: int = 3  # residual adaLN blocks
    n_train_steps: int = 1000
    n_sample_steps: int = 16  # DDIM steps (>= 2) when ``sample`` is not told otherwise
    beta_schedule: str = "squaredcos_cap_v2"  # the cosine schedule of the paper
    prediction_type: str = "epsilon"
    clip_sample: bool = False  # clip predicted x0 to [-1, 1] while sampling (for actions)

    def __post_init__(self):
        for name in ("target_dim", "cond_dim", "width", "depth", "n_train_steps", "n_sample_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {name}={value!r}")
        if not 2 <= self.n_sample_steps <= self.n_train_steps:
            raise ValueError(f"n_sample_steps must be in [2, n_train_steps], got "
                             f"{self.n_sample_steps=} {self.n_train_steps=}")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule=}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, "
                             f"got {self.prediction_type=}")


def timestep_features(t: Tensor, dim: int = FREQ_DIM, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal features of integer timesteps: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class ResBlock(nn.Module):
    """x + gate * MLP(adaLN(x)); shift, scale and gate come from the condition c."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))
        # adaLN-Zero (DiT): every block starts as the identity.
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale, gate = self.ada(c).chunk(3, dim=-1)
        return x + gate * self.mlp(modulate(self.norm(x), shift, scale))


class FinalLayer(nn.Module):
    """adaLN then a zero-initialised projection to the target size (the net starts at 0)."""

    def __init__(self, width: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, out_dim)
        for layer in (self.ada[1], self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.ada(c).chunk(2, dim=-1)
        return self.out(modulate(self.norm(x), shift, scale))


class DiffusionHead(nn.Module):
    """Denoiser of (B, target_dim) vectors conditioned on (B, cond_dim) vectors."""

    def __init__(self, config: DiffusionHeadConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.time_embed = nn.Sequential(nn.Linear(FREQ_DIM, w), nn.SiLU(), nn.Linear(w, w))
        self.cond_embed = nn.Linear(config.cond_dim, w)
        self.input_proj = nn.Linear(config.target_dim, w)
        self.blocks = nn.ModuleList(ResBlock(w) for _ in range(config.depth))
        self.final = FinalLayer(w, config.target_dim)
        for module in (self.time_embed[0], self.time_embed[2]):
            nn.init.normal_(module.weight, std=0.02)
        self.train_scheduler = DDPMScheduler(
            num_train_timesteps=config.n_train_steps, beta_schedule=config.beta_schedule,
            prediction_type=config.prediction_type, clip_sample=config.clip_sample)
        # Same betas. "leading" spacing (diffusers' default, as Diffusion Policy samples) starts
        # at t = T - T/n, not at T - 1: there the capped cosine schedule has alpha_bar ~ 2e-9,
        # and an epsilon error is amplified ~1e4 into x0, which ruins heads trained briefly.
        self.sample_scheduler = DDIMScheduler(
            num_train_timesteps=config.n_train_steps,
            trained_betas=self.train_scheduler.betas.numpy(),
            prediction_type=config.prediction_type, clip_sample=config.clip_sample,
            timestep_spacing="leading", set_alpha_to_one=True)

    @classmethod
    def from_config(cls, config: dict) -> DiffusionHead:
        return cls(DiffusionHeadConfig(**config))

    def forward(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """Network output for noisy x (B, target_dim) at timesteps t (B,) given cond (B, cond_dim)."""
        return self._denoise(x, self.time_embed(timestep_features(t)) + self.cond_embed(cond))

    def _denoise(self, x: Tensor, c: Tensor) -> Tensor:
        h = self.input_proj(x)
        for block in self.blocks:
            h = block(h, c)
        return self.final(h, c)

    def loss(self, target: Tensor, cond: Tensor, mask: Tensor | None = None) -> Tensor:
        """Denoising MSE for target (B, target_dim) given cond (B, cond_dim); mask (B,) weights the rows
        (0 / 1 selects them); the loss is their weighted mean."""
        noise = torch.randn_like(target)
        t = torch.randint(0, self.config.n_train_steps, (target.shape[0],), device=target.device)
        noisy = self.train_scheduler.add_noise(target, noise, t)
        if self.config.prediction_type == "epsilon":
            goal = noise
        elif self.config.prediction_type == "sample":
            goal = target
        else:
            goal = self.train_scheduler.get_velocity(target, noise, t)
        per_row = F.mse_loss(self(noisy, t, cond), goal, reduction="none").mean(dim=-1)
        if mask is None:
            return per_row.mean()
        mask = mask.to(per_row.dtype)
        return (per_row * mask).sum() / mask.sum().clamp_min(1.0)

    @torch.no_grad()
    def sample(self, cond: Tensor, n_steps: int | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """DDIM (eta 0) samples (B, target_dim) for cond (B, cond_dim); deterministic given generator."""
        n_steps = self.config.n_sample_steps if n_steps is None else n_steps
        # One leading-spaced step would only denoise at t = 0.
        if not 2 <= n_steps <= self.config.n_train_steps:
            raise ValueError(f"n_steps must be in [2, {self.config.n_train_steps}], got {n_steps=}")
        x = torch.randn((cond.shape[0], self.config.target_dim), generator=generator,
                        device=cond.device, dtype=cond.dtype) * temperature
        schedule = ddim_schedule(self.sample_scheduler, n_steps, cond.device)
        cond_embedding = self.cond_embed(cond)  # once; every step's t embedded in one batched call
        time_embeddings = self.time_embed(timestep_features(torch.stack([t for t, _, _ in schedule])))
        for (_, alpha, alpha_prev), time_embedding in zip(schedule, time_embeddings):
            x = ddim_step(self.sample_scheduler, self._denoise(x, time_embedding + cond_embedding), x, alpha, alpha_prev)
        return x


def ddim_schedule(scheduler: DDIMScheduler, n_steps: int, device: torch.device | str | None = None,
                  spacing: str | None = None) -> list[tuple[Tensor, float, float]]:
    """(t, alpha_bar_t, alpha_bar_prev) for each of n_steps DDIM steps, from diffusers' scheduler.

    The timesteps and alphas are the scheduler's own (``set_timesteps``, ``alphas_cumprod``,
    ``final_alpha_cumprod``), read once as Python floats, so that ``ddim_step`` costs a few
    tensor operations instead of ``DDIMScheduler.step``'s per-call bookkeeping. It pays on the
    video head over a planning population (1.29x; one action chunk: within noise):
    ``benchmarks/bench_ddim.py`` times both loops on the shipped heads in one run and checks that
    they draw the same samples (docs/experiments/speed.md). ``spacing`` overrides the scheduler's
    ``timestep_spacing``: "trailing" starts at t = T - 1 (diffusers' formula), where "leading"
    starts at T - T / n_steps, which with few steps is far from pure noise.
    """
    if spacing not in (None, "leading", "trailing"):
        raise ValueError(f"spacing must be None, 'leading' or 'trailing', got {spacing=}")
    n_train = scheduler.config.num_train_timesteps
    if spacing == "trailing":
        timesteps = torch.from_numpy(np.round(np.arange(n_train, 0, -n_train / n_steps)).astype(np.int64) - 1)
        timesteps = timesteps.to(device)
    else:
        if spacing == "leading" and scheduler.config.timestep_spacing != "leading":
            raise ValueError(f"this scheduler spaces its timesteps {scheduler.config.timestep_spacing!r}")
        scheduler.set_timesteps(n_steps, device=device)
        timesteps = scheduler.timesteps
    stride = n_train // n_steps  # diffusers' previous timestep, whatever the spacing
    alphas = scheduler.alphas_cumprod
    out = []
    for t in timesteps:
        prev = int(t) - stride
        alpha_prev = float(alphas[prev]) if prev >= 0 else float(scheduler.final_alpha_cumprod)
        out.append((t, float(alphas[int(t)]), alpha_prev))
    return out


def ddim_step(scheduler: DDIMScheduler, model_output: Tensor, x: Tensor, alpha: float, alpha_prev: float) -> Tensor:
    """One deterministic DDIM step (eta 0), the same update as ``DDIMScheduler.step(..., eta=0)``:
    predicted x0 (clipped if the scheduler clips), then x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps."""
    config = scheduler.config
    beta = 1.0 - alpha
    if config.prediction_type == "epsilon":
        x0, eps = (x - beta ** 0.5 * model_output) / alpha ** 0.5, model_output
    elif config.prediction_type == "sample":
        x0, eps = model_output, (x - alpha ** 0.5 * model_output) / beta ** 0.5
    else:  # v_prediction
        x0 = alpha ** 0.5 * x - beta ** 0.5 * model_output
        eps = alpha ** 0.5 * model_output + beta ** 0.5 * x
    if config.clip_sample:
        x0 = x0.clamp(-config.clip_sample_range, config.clip_sample_range)
    return alpha_prev ** 0.5 * x0 + (1.0 - alpha_prev) ** 0.5 * eps

