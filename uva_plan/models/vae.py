"""A small KL autoencoder for frames (diffusers ``AutoencoderKL``), trained from scratch.

The paper uses a frozen pretrained VAE (stride 16, 16 channels at 256x256); we cannot download
weights, so this one is trained on our own frames: stride 8, 4 channels (64x64 -> 8x8x4).
Latents leave ``encode`` scaled to unit variance, ``(z - shift_factor) * scaling_factor``,
with both factors fitted on data by ``fit_scaling`` and kept in the config.

Shape letters: B frames, C latent channels, h, w latent side; H, W image side (pixels).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import Tensor, nn


@dataclass
class VAEConfig:
    image_size: int = 64  # 96 works too: it only has to be a multiple of the stride
    in_channels: int = 3
    latent_channels: int = 4
    block_out_channels: tuple[int, ...] = (32, 64, 128, 128)  # 4 blocks: 3 downsamples, stride 8
    layers_per_block: int = 1
    norm_num_groups: int = 32  # GroupNorm groups; must divide every block's channel count
    kl_weight: float = 1e-6  # tiny, as in LDM's autoencoders: nearly deterministic latents
    # Reconstruction weight of foreground pixels (those unlike the frame's corner pixel, the
    # background) relative to background ones. BlockPush's blocks and both pushers cover a
    # few pixels at 64x64: unweighted, the VAE drops them (measured) while its PSNR looks fine.
    foreground_weight: float = 10.0
    scaling_factor: float = 1.0  # set by fit_scaling
    shift_factor: float = 0.0  # set by fit_scaling

    def __post_init__(self):
        self.block_out_channels = tuple(self.block_out_channels)  # YAML / JSON give lists
        for name in ("image_size", "in_channels", "latent_channels", "layers_per_block", "norm_num_groups"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {name}={value!r}")
        if not self.block_out_channels:
            raise ValueError(f"block_out_channels must not be empty, got {self.block_out_channels=}")
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(f"norm_num_groups must divide every block_out_channels entry, got "
                             f"{self.norm_num_groups=} {self.block_out_channels=}")
        if self.image_size % self.stride:
            raise ValueError(f"image_size must be a multiple of the stride {self.stride}, "
                             f"got {self.image_size=}")
        if self.kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {self.kl_weight=}")
        if not self.foreground_weight >= 1.0:
            raise ValueError(f"foreground_weight must be >= 1 (background pixels weigh 1), "
                             f"got {self.foreground_weight=}")
        if not self.scaling_factor > 0:
            raise ValueError(f"scaling_factor must be > 0, got {self.scaling_factor=}")

    @property
    def stride(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)  # every block but the last halves the side

    @property
    def latent_size(self) -> int:
        return self.image_size // self.stride


def to_float_frames(frames: np.ndarray | Tensor) -> Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1]; float input is returned as is."""
    frames = torch.as_tensor(frames)
    if frames.dtype == torch.uint8:
        return frames.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return frames


def psnr(a_uint8: np.ndarray | Tensor, b_uint8: np.ndarray | Tensor) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 image batches (inf when identical)."""
    a = torch.as_tensor(a_uint8).double() / 255.0
    b = torch.as_tensor(b_uint8).double() / 255.0
    mse = F.mse_loss(a, b).item()
    return float("inf") if mse == 0 else 10.0 * float(np.log10(1.0 / mse))


class FrameVAE(nn.Module):
    """Frames <-> scaled latents (B, C, h, w). ``encode`` / ``decode`` run without gradients (the
    VAE is frozen once trained); ``compute_loss`` trains it."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        n_blocks = len(config.block_out_channels)
        self.vae = AutoencoderKL(
            in_channels=config.in_channels, out_channels=config.in_channels,
            down_block_types=("DownEncoderBlock2D",) * n_blocks,
            up_block_types=("UpDecoderBlock2D",) * n_blocks,
            block_out_channels=config.block_out_channels, layers_per_block=config.layers_per_block,
            latent_channels=config.latent_channels, norm_num_groups=config.norm_num_groups,
            sample_size=config.image_size,
            scaling_factor=1.0)  # unused: our scaling lives in VAEConfig

    @classmethod
    def from_config(cls, config: dict) -> FrameVAE:
        return cls(VAEConfig(**config))

    def _prepare(self, frames: np.ndarray | Tensor) -> Tensor:
        x = to_float_frames(frames)
        size = self.config.image_size
        if x.ndim != 4 or x.shape[1:] != (self.config.in_channels, size, size):
            raise ValueError(f"frames must be uint8 (B, {size}, {size}, {self.config.in_channels}) or "
                             f"float (B, {self.config.in_channels}, {size}, {size}), got {tuple(x.shape)}")
        param = next(self.parameters())
        return x.to(device=param.device, dtype=param.dtype)

    @torch.no_grad()
    def encode(self, frames: np.ndarray | Tensor, sample: bool = False, scaled: bool = True,
               generator: torch.Generator | None = None) -> Tensor:
        """Frames (uint8 (B, H, W, 3) or float (B, 3, H, W) in [-1, 1]) -> latents (B, C, h, w).

        The posterior mean, or a posterior draw with ``sample=True``; ``scaled=False`` gives the
        raw latents that ``fit_scaling`` expects.
        """
        posterior = self.vae.encode(self._prepare(frames)).latent_dist
        z = posterior.sample(generator=generator) if sample else posterior.mode()
        if not scaled:
            return z
        return (z - self.config.shift_factor) * self.config.scaling_factor

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Scaled latents (B, C, h, w) -> frames (B, 3, H, W), float, nominally in [-1, 1]."""
        z = latents / self.config.scaling_factor + self.config.shift_factor
        return self.vae.decode(z).sample

    @staticmethod
    def to_uint8(x: Tensor) -> Tensor:
        """Float frames (B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3)."""
        x = ((x.detach().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
        return x.permute(0, 2, 3, 1)

    def compute_loss(self, batch: dict) -> tuple[Tensor, dict[str, float]]:
        """Foreground-weighted L1 + MSE reconstruction of batch["frames"] (uint8 (B, H, W, 3))
        + kl_weight * KL. Metrics report the unweighted MSE and PSNR."""
        x = self._prepare(batch["frames"])
        posterior = self.vae.encode(x).latent_dist
        recon = self.vae.decode(posterior.sample()).sample
        weight = self.pixel_weights(x)
        err = recon - x
        weighted = ((err.abs() + err.square()) * weight).sum() / (weight.sum() * x.shape[1])
        mse = err.square().mean()
        kl = posterior.kl().mean()  # summed over (C, h, w), averaged over frames
        loss = weighted + self.config.kl_weight * kl
        with torch.no_grad():
            mse01 = F.mse_loss(recon.clamp(-1, 1), x).item() / 4.0  # [-1, 1] -> [0, 1] images
        metrics = {"loss": loss.item(), "recon_mse": mse.item(), "kl": kl.item(),
                   "psnr": 10.0 * float(np.log10(1.0 / max(mse01, 1e-12)))}
        return loss, metrics

    def pixel_weights(self, x: Tensor) -> Tensor:
        """(B, 1, H, W): foreground_weight where a pixel of x (B, 3, H, W) differs from the frame's
        top-left pixel by more than 2 levels of 255 in any channel, 1 elsewhere."""
        background = x[:, :, :1, :1]
        foreground = ((x - background).abs() > 4.0 / 255.0).any(dim=1, keepdim=True)
        return 1.0 + (self.config.foreground_weight - 1.0) * foreground.to(x.dtype)

    def fit_scaling(self, latents: Tensor) -> None:
        """Set shift = mean and scale = 1 / std of raw latents (B, C, h, w), e.g. encode(..., scaled=False)."""
        latents = latents.detach().double()
        std = latents.std().item()
        if not std > 0:
            raise ValueError(f"raw latents must have a positive std to fit the scaling, got {std=}")
        # A new config object: the one the caller passed in is never mutated.
        self.config = replace(self.config, shift_factor=latents.mean().item(), scaling_factor=1.0 / std)
