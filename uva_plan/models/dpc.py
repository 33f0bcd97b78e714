"""Diffusion Policy with a CNN backbone (DP-C; Chi et al. 2023, "Diffusion Policy: Visuomotor
Policy Learning via Action Diffusion"), conditioned on cheap observations.

The denoiser is Diffusion Policy's ConditionalUnet1D: a 1-D U-Net over the action chunk's
time axis whose residual blocks are FiLM-modulated by one global condition vector (the
diffusion step's sinusoidal embedding concatenated with the observation features). The
observation is either the frozen VAE latents of the last ``n_obs_steps`` frames plus the
pusher's position there (obs_mode "latent"), or the low-dimensional physical states
(obs_mode "state"). Trained with the DDPM epsilon loss (100 steps, capped cosine betas, as
Diffusion Policy); sampled with a few DDIM steps.

Shape letters: B batch, T observation frames (n_obs_steps), C latent channels, h, w latent
side, S state dim, H horizon in actions, A action dim, D channels of a U-Net level.
"""

from __future__ import annotations

from dataclasses import dataclass

import einops
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from torch import Tensor, nn

from uva_plan.models.diff_head import BETA_SCHEDULES, ddim_schedule, ddim_step, timestep_features

OBS_MODES = ("latent", "state")
LATENT_ENCODERS = ("flatten", "conv")


@dataclass
class DPCConfig:
    action_dim: int = 2
    horizon: int = 16  # H: actions per chunk, t-1 .. t+14 (Diffusion Policy's Push-T horizon)
    n_obs_steps: int = 2  # T: frames t-1, t
    obs_mode: str = "latent"
    latent_channels: int = 4  # obs_mode "latent" only
    latent_size: int = 8
    latent_encoder: str = "conv"  # "flatten": the raw C*h*w latents per frame
    encoder_channels: int = 32  # "conv": one 3x3 conv, then a linear map to latent_feature_dim
    latent_feature_dim: int = 64
    state_dim: int = 14  # obs_mode "state" only: S (Push-T's physical state)
    down_dims: tuple[int, ...] = (64, 128, 256)  # Diffusion Policy: (512, 1024, 2048) on a GPU
    kernel_size: int = 5
    n_groups: int = 8  # GroupNorm groups; must divide every entry of down_dims
    step_embed_dim: int = 128  # diffusion-step embedding width (Diffusion Policy's Push-T value)
    n_train_steps: int = 100
    n_sample_steps: int = 10  # DDIM steps (>= 2)
    beta_schedule: str = "squaredcos_cap_v2"

    def __post_init__(self):
        self.down_dims = tuple(self.down_dims)  # YAML / JSON give lists
        for name in ("action_dim", "horizon", "n_obs_steps", "latent_channels", "latent_size",
                     "encoder_channels", "latent_feature_dim", "state_dim", "kernel_size", "n_groups",
                     "step_embed_dim", "n_train_steps", "n_sample_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {name}={value!r}")
        if self.obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {self.obs_mode=}")
        if self.latent_encoder not in LATENT_ENCODERS:
            raise ValueError(f"latent_encoder must be one of {LATENT_ENCODERS}, got {self.latent_encoder=}")
        if not self.down_dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1
                                     or d % self.n_groups for d in self.down_dims):
            raise ValueError(f"down_dims must be positive ints divisible by n_groups={self.n_groups}, "
                             f"got {self.down_dims=}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same-length convs), got {self.kernel_size=}")
        if self.horizon % 2 ** (len(self.down_dims) - 1):
            raise ValueError(f"horizon must be divisible by 2^(len(down_dims) - 1) = "
                             f"{2 ** (len(self.down_dims) - 1)} (one halving per level), got {self.horizon=}")
        if self.step_embed_dim % 2:
            raise ValueError(f"step_embed_dim must be even (sin and cos halves), got {self.step_embed_dim=}")
        if not 2 <= self.n_sample_steps <= self.n_train_steps:
            raise ValueError(f"n_sample_steps must be in [2, n_train_steps], got "
                             f"{self.n_sample_steps=} {self.n_train_steps=}")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule=}")

    @property
    def frame_feature_dim(self) -> int:
        """Features per observation frame before the agent position is appended."""
        if self.latent_encoder == "flatten":
            return self.latent_channels * self.latent_size ** 2
        return self.latent_feature_dim

    @property
    def obs_dim(self) -> int:
        """Size of the flattened observation condition."""
        per_frame = self.frame_feature_dim + 2 if self.obs_mode == "latent" else self.state_dim
        return self.n_obs_steps * per_frame


# ----- the ConditionalUnet1D building blocks -----

class Conv1dBlock(nn.Sequential):
    """Conv1d -> GroupNorm -> Mish, length-preserving."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int, n_groups: int):
        super().__init__(nn.Conv1d(in_dim, out_dim, kernel_size, padding=kernel_size // 2),
                         nn.GroupNorm(n_groups, out_dim), nn.Mish())


class CondResBlock(nn.Module):
    """Two conv blocks with FiLM between them: the condition gives a per-channel scale and
    shift of the first block's output; a 1x1 conv matches the residual's channels."""

    def __init__(self, in_dim: int, out_dim: int, cond_dim: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.conv1 = Conv1dBlock(in_dim, out_dim, kernel_size, n_groups)
        self.conv2 = Conv1dBlock(out_dim, out_dim, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_dim))
        self.skip = nn.Conv1d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """x (B, D_in, H), cond (B, cond_dim) -> (B, D_out, H)."""
        scale, shift = einops.rearrange(self.film(cond), "b (two d) -> two b d 1", two=2)
        # 1 + scale (Diffusion Policy multiplies by scale alone): an untrained block passes through.
        h = self.conv1(x) * (1 + scale) + shift
        return self.conv2(h) + self.skip(x)


class ConditionalUnet1D(nn.Module):
    """Denoiser of action chunks (B, H, A) at diffusion steps (B,) given global conditions (B, G).

    Down path: per level two residual blocks, then a stride-2 conv (not after the last
    level); two residual blocks in the middle; up path, one level fewer: concatenate the
    matching down level's output, two residual blocks, a transposed stride-2 conv. As in
    Diffusion Policy, the first level's output is not reused by a skip connection.
    """

    def __init__(self, action_dim: int, global_cond_dim: int, down_dims: tuple[int, ...],
                 kernel_size: int, n_groups: int, step_embed_dim: int):
        super().__init__()
        self.step_embed_dim = step_embed_dim
        self.step_mlp = nn.Sequential(nn.Linear(step_embed_dim, 4 * step_embed_dim), nn.Mish(),
                                      nn.Linear(4 * step_embed_dim, step_embed_dim))
        cond_dim = step_embed_dim + global_cond_dim

        def block(i: int, o: int) -> CondResBlock:
            return CondResBlock(i, o, cond_dim, kernel_size, n_groups)

        dims = (action_dim, *down_dims)
        levels = list(zip(dims[:-1], dims[1:]))  # (in, out) channels per level
        self.down = nn.ModuleList(
            nn.ModuleList([block(i, o), block(o, o),
                           nn.Conv1d(o, o, 3, stride=2, padding=1) if k < len(levels) - 1 else nn.Identity()])
            for k, (i, o) in enumerate(levels))
        self.mid = nn.ModuleList([block(down_dims[-1], down_dims[-1]), block(down_dims[-1], down_dims[-1])])
        self.up = nn.ModuleList(
            nn.ModuleList([block(2 * o, i), block(i, i), nn.ConvTranspose1d(i, i, 4, stride=2, padding=1)])
            for i, o in reversed(levels[1:]))
        self.final = nn.Sequential(Conv1dBlock(down_dims[0], down_dims[0], kernel_size, n_groups),
                                   nn.Conv1d(down_dims[0], action_dim, 1))

    def forward(self, x: Tensor, t: Tensor, global_cond: Tensor) -> Tensor:
        cond = torch.cat([self.step_mlp(timestep_features(t, self.step_embed_dim)), global_cond], dim=-1)
        h = einops.rearrange(x, "b h a -> b a h")
        skips = []
        for res1, res2, downsample in self.down:
            h = res2(res1(h, cond), cond)
            skips.append(h)
            h = downsample(h)
        for res in self.mid:
            h = res(h, cond)
        for res1, res2, upsample in self.up:
            h = torch.cat([h, skips.pop()], dim=1)
            h = upsample(res2(res1(h, cond), cond))
        return einops.rearrange(self.final(h), "b a h -> b h a")


# ----- the policy -----

class DPC(nn.Module):
    """Diffusion Policy (CNN) on latent or state observations; actions normalised to [-1, 1]."""

    def __init__(self, config: DPCConfig):
        super().__init__()
        self.config = c = config
        if c.obs_mode == "latent" and c.latent_encoder == "conv":
            self.latent_encoder = nn.Sequential(
                nn.Conv2d(c.latent_channels, c.encoder_channels, 3, padding=1), nn.Mish(), nn.Flatten(),
                nn.Linear(c.encoder_channels * c.latent_size ** 2, c.latent_feature_dim))
        else:
            self.latent_encoder = nn.Flatten()
        self.unet = ConditionalUnet1D(c.action_dim, c.obs_dim, c.down_dims, c.kernel_size, c.n_groups,
                                      c.step_embed_dim)
        self.train_scheduler = DDPMScheduler(num_train_timesteps=c.n_train_steps, beta_schedule=c.beta_schedule,
                                             prediction_type="epsilon", clip_sample=True)
        # Same betas; "leading" spacing as in diff_head.py (it never starts at alpha_bar ~ 0).
        self.sample_scheduler = DDIMScheduler(
            num_train_timesteps=c.n_train_steps, trained_betas=self.train_scheduler.betas.numpy(),
            prediction_type="epsilon", clip_sample=True, timestep_spacing="leading", set_alpha_to_one=True)

    @classmethod
    def from_config(cls, config: dict) -> DPC:
        return cls(DPCConfig(**config))

    def encode_obs(self, obs: dict) -> Tensor:
        """The global condition (B, obs_dim) from an observation dict.

        obs_mode "latent": obs["latents"] (B, T, C, h, w) scaled VAE latents and
        obs["agent_pos"] (B, T, 2) in [-1, 1], oldest first; "state": obs["states"] (B, T, S)
        normalised to [-1, 1].
        """
        c = self.config
        if c.obs_mode == "state":
            states = _require(obs, "states", (c.n_obs_steps, c.state_dim))
            return einops.rearrange(states, "b t s -> b (t s)")
        latents = _require(obs, "latents", (c.n_obs_steps, c.latent_channels, c.latent_size, c.latent_size))
        agent_pos = _require(obs, "agent_pos", (c.n_obs_steps, 2))
        if agent_pos.shape[0] != latents.shape[0]:
            raise ValueError(f"latents and agent_pos must share B, got {tuple(latents.shape)} and "
                             f"{tuple(agent_pos.shape)}")
        features = self.latent_encoder(einops.rearrange(latents, "b t c h w -> (b t) c h w"))
        features = einops.rearrange(features, "(b t) f -> b t f", b=latents.shape[0])
        return einops.rearrange(torch.cat([features, agent_pos], dim=-1), "b t f -> b (t f)")

    def compute_loss(self, batch: dict) -> tuple[Tensor, dict[str, float]]:
        """DDPM epsilon MSE. batch: the observation keys of ``encode_obs`` plus
        batch["actions"] (B, H, A) normalised to [-1, 1]."""
        c = self.config
        cond = self.encode_obs(batch)
        actions = batch["actions"]
        if actions.shape != (cond.shape[0], c.horizon, c.action_dim):
            raise ValueError(f"actions must be (B, {c.horizon}, {c.action_dim}) with B={cond.shape[0]}, "
                             f"got {tuple(actions.shape)}")
        noise = torch.randn_like(actions)
        t = torch.randint(0, c.n_train_steps, (actions.shape[0],), device=actions.device)
        loss = F.mse_loss(self.unet(self.train_scheduler.add_noise(actions, noise, t), t, cond), noise)
        return loss, {"loss": loss.item()}

    @torch.no_grad()
    def sample(self, context: dict, n: int, generator: torch.Generator | None = None,
               n_steps: int | None = None, spacing: str | None = None) -> Tensor:
        """n action chunks per context, (B, n, H, A) in [-1, 1], all B * n denoised as one
        U-Net batch with n_steps DDIM steps (eta 0; default the config's n_sample_steps);
        deterministic given ``generator``; ``spacing`` as ``diff_head.ddim_schedule`` (None: the
        training-time "leading"). ``context`` holds the observation keys of ``encode_obs``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1 (action chunks per context), got {n=}")
        c = self.config
        n_steps = c.n_sample_steps if n_steps is None else n_steps
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or not 2 <= n_steps <= c.n_train_steps:
            raise ValueError(f"n_steps must be an int in [2, {c.n_train_steps}] (DDIM steps), got {n_steps=}")
        cond = self.encode_obs(context).repeat_interleave(n, dim=0)  # (B * n, obs_dim)
        x = torch.randn((cond.shape[0], c.horizon, c.action_dim), generator=generator,
                        device=cond.device, dtype=cond.dtype)
        for t, alpha, alpha_prev in ddim_schedule(self.sample_scheduler, n_steps, cond.device, spacing):
            eps = self.unet(x, t.expand(x.shape[0]), cond)
            x = ddim_step(self.sample_scheduler, eps, x, alpha, alpha_prev)
        return einops.rearrange(x.clamp(-1.0, 1.0), "(b n) h a -> b n h a", n=n)


def _require(obs: dict, key: str, trailing: tuple[int, ...]) -> Tensor:
    """obs[key] checked to be a (B, *trailing) tensor."""
    expected = f"(B, {', '.join(map(str, trailing))})"
    if key not in obs:
        raise ValueError(f"the observation must hold {key!r} {expected}, got keys {sorted(obs)}")
    value = obs[key]
    if not isinstance(value, Tensor) or value.ndim != len(trailing) + 1 or tuple(value.shape[1:]) != trailing:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"{key} must be a tensor {expected}, got {shape}")
    return value
