"""Learned models: the frame VAE, the diffusion head, and UVA."""

from uva_plan.models.diff_head import DiffusionHead, DiffusionHeadConfig
from uva_plan.models.uva import MODES, UVA, UVAConfig, patchify, unpatchify
from uva_plan.models.vae import FrameVAE, VAEConfig, psnr

__all__ = ["MODES", "UVA", "DiffusionHead", "DiffusionHeadConfig", "FrameVAE", "UVAConfig", "VAEConfig",
           "patchify", "psnr", "unpatchify"]
