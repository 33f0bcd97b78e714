"""Pose head on UVA's joint latent: the object poses each imagined future frame stands for.

UVA's transformer turns (history latents, action chunk, masked future) into one joint latent
Z per future token; the video head decodes Z into future latent tokens, which a planner then
decodes (or reads with a ``StateHead``). This head reads Z directly: for each of the T
future frames, that frame's N tokens -> the objects' poses at that frame (the same layout and
encoding as ``state_head``: Push-T's T, BlockPush's two blocks). It is a reward head on the
imagination, not a separate dynamics model: what it sees is UVA's prediction given the
candidate's actions, before the video head's sampling noise and before the 64 x 64 pixel grid.

Trained with the UVA frozen (``train=pose_head``, ``data.joint_uva``) on its Z of real windows
(demos, play data and DP-C counterfactual branches) against the true poses of the window's
future frames. Its checkpoint names the UVA whose Z it reads; ``UVAWorldModel`` refuses another.

Shape letters: B batch, T future frames, N tokens per frame, D UVA width, g token grid side
(N = g * g), P pose dim, F feature dim.
"""

from __future__ import annotations

from dataclasses import dataclass

import einops
import torch
from torch import Tensor, nn

from uva_plan.models.state_head import ANGLE_SYMMETRY, POSE_DIM, check_head_fields, decode_poses, pose_errors, pose_loss


@dataclass
class PoseHeadConfig:
    env: str = "pusht"  # one of ENVS: which poses the head reads
    width: int = 128  # D: the UVA's width
    n_future: int = 4  # T: future frames in Z
    grid: int = 4  # g: token grid side (UVA latent_size / patch_size)
    channels: int = 64  # after a 1x1 reduction of D
    hidden_dim: int = 256
    angle_weight: float = 1.0  # loss weight of the (sin, cos) terms relative to the xy terms
    # Loss weight of the last future frame relative to the others (planners score the last).
    last_frame_weight: float = 1.0

    def __post_init__(self):
        check_head_fields(self, ("width", "n_future", "grid", "channels", "hidden_dim"),
                          ("angle_weight", "last_frame_weight"))

    @property
    def pose_dim(self) -> int:
        return POSE_DIM[self.env]

    @property
    def feature_dim(self) -> int:
        return 4 * len(ANGLE_SYMMETRY[self.env])

    @property
    def n_tokens(self) -> int:
        return self.grid ** 2


class PoseHead(nn.Module):
    """Per future frame: 1x1 conv D -> channels, a 3x3 conv over the token grid, an MLP over
    the flattened map (where an object is matters), plus a learned per-frame bias."""

    def __init__(self, config: PoseHeadConfig):
        super().__init__()
        self.config = c = config
        self.net = nn.Sequential(
            nn.Conv2d(c.width, c.channels, 1), nn.Mish(), nn.Conv2d(c.channels, c.channels, 3, padding=1), nn.Mish(),
            nn.Flatten(), nn.Linear(c.channels * c.n_tokens, c.hidden_dim), nn.Mish(),
            nn.Linear(c.hidden_dim, c.hidden_dim), nn.Mish(), nn.Linear(c.hidden_dim, c.feature_dim))
        self.frame_bias = nn.Parameter(torch.zeros(c.n_future, c.feature_dim))

    @classmethod
    def from_config(cls, config: dict) -> PoseHead:
        return cls(PoseHeadConfig(**config))

    def forward(self, z: Tensor) -> Tensor:
        """Joint latent Z (B, T * N, D) -> normalised pose features (B, T, F)."""
        c = self.config
        expected = (c.n_future * c.n_tokens, c.width)
        if not isinstance(z, Tensor) or z.ndim != 3 or tuple(z.shape[1:]) != expected:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"z must be a tensor (B, {expected[0]}, {expected[1]}) (UVA's joint latent), got {shape}")
        x = einops.rearrange(z, "b (t gh gw) d -> (b t) d gh gw", t=c.n_future, gh=c.grid, gw=c.grid)
        out = einops.rearrange(self.net(x), "(b t) f -> b t f", t=c.n_future)
        return out + self.frame_bias

    def compute_loss(self, batch: dict) -> tuple[Tensor, dict[str, float]]:
        """MSE on the normalised encoding over every future frame. batch["z"] (B, T * N, D);
        batch["poses"] (B, T, P) in env units. Metrics: loss, xy_error_px and angle_error_rad
        of the last future frame (mean over objects, angles modulo their symmetry)."""
        c = self.config
        prediction = self(batch["z"].float())  # (B, T, F)
        poses = batch["poses"]
        if poses.shape != (prediction.shape[0], c.n_future, c.pose_dim):
            raise ValueError(f"poses must be (B, {c.n_future}, {c.pose_dim}) with B={prediction.shape[0]}, "
                             f"got {tuple(poses.shape)}")
        frame_weights = torch.ones(c.n_future, device=prediction.device)
        frame_weights[-1] = c.last_frame_weight
        loss = pose_loss(c.env, prediction, poses, c.angle_weight, frame_weights)
        return loss, {"loss": loss.item(), **pose_errors(c.env, prediction[:, -1], poses[:, -1])}

    @torch.no_grad()
    def predict(self, z: Tensor) -> Tensor:
        """Poses (B, T, P) in env units (px, radians) from Z (B, T * N, D)."""
        features = self(z.float())
        return decode_poses(self.config.env, features.flatten(0, 1)).view(*features.shape[:2], -1)
