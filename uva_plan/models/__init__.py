"""Learned models: the frame VAE, the diffusion head, and UVA."""

from uva_plan.models.diff_head import DiffusionHead, DiffusionHeadConfig
from uva_plan.models.dpc import DPC, DPCConfig
from uva_plan.models.state_head import StateHead, StateHeadConfig
from uva_plan.models.uva import MODES, UVA, UVAConfig, patchify, unpatchify
from uva_plan.models.vae import FrameVAE, VAEConfig, psnr

__all__ = ["DPC", "MODES", "UVA", "DPCConfig", "DiffusionHead", "DiffusionHeadConfig", "FrameVAE", "StateHead",
           "StateHeadConfig", "UVAConfig", "VAEConfig", "patchify", "psnr", "unpatchify"]
