"""State head: object poses read from one latent frame (the design card's "reward head").

Trained on the latents of real frames, applied to imagined ones; ``objectives.StateReward``
turns its poses into the task's analytic cost. Poses are in env units (px, radians):
    pusht      (3,) the T's centre of gravity xy and angle (physical state 4:7)
    blockpush  (6,) block 0 xy and yaw, block 1 xy and yaw (physical state 4:7 and 10:13)
The network regresses a normalised encoding of them: xy / 256 - 1 (the 512 px workspace onto
[-1, 1]) and each angle as (sin, cos), of the angle for the T and of 4 x yaw for a block: a
square looks the same after a quarter turn, so its yaw is only defined modulo pi / 2 and
predicted in (-pi / 4, pi / 4].

Shape letters: B batch, C latent channels, h, w latent side, P pose dim, F feature dim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uva_plan.envs.base import WORKSPACE

ENVS = ("pusht", "blockpush")
POSE_DIM = {"pusht": 3, "blockpush": 6}
# Angle multiplier per object: the T has no rotational symmetry, a square block has four.
ANGLE_SYMMETRY = {"pusht": (1,), "blockpush": (4, 4)}


def env_name(env_id: str) -> str:
    """"pusht" or "blockpush" for a registered env id (e.g. uva_plan/PushTRandomGoal-v0)."""
    name = env_id.split("/")[-1].lower()
    for env in ENVS:
        if name.startswith(env):
            return env
    raise ValueError(f"no state head layout for {env_id=}; expected a Push-T or BlockPush env id")


def pose_targets(env: str, states: np.ndarray) -> np.ndarray:
    """Poses (B, P) in env units from physical states (B, >= STATE_DIM); ``env`` is a name of
    ENVS or an env id."""
    env = env if env in ENVS else env_name(env)
    states = np.asarray(states, dtype=np.float64)
    if env == "pusht":
        return states[:, 4:7].copy()  # T centre of gravity xy, angle
    return np.concatenate([states[:, 4:7], states[:, 10:13]], axis=1)  # both blocks' centre xy, yaw


def encode_poses(env: str, poses: Tensor) -> Tensor:
    """Poses (B, P) in env units -> regression targets (B, F): per object x, y, sin, cos."""
    parts = []
    for k, m in enumerate(ANGLE_SYMMETRY[env]):
        xy, angle = poses[:, 3 * k:3 * k + 2], m * poses[:, 3 * k + 2:3 * k + 3]
        parts += [xy / (WORKSPACE / 2) - 1, torch.sin(angle), torch.cos(angle)]
    return torch.cat(parts, dim=1)


def decode_poses(env: str, features: Tensor) -> Tensor:
    """Regression outputs (B, F) -> poses (B, P) in env units; angles in (-pi / m, pi / m]."""
    parts = []
    for k, m in enumerate(ANGLE_SYMMETRY[env]):
        f = features[:, 4 * k:4 * k + 4]
        parts += [(f[:, :2] + 1) * (WORKSPACE / 2), torch.atan2(f[:, 2:3], f[:, 3:4]) / m]
    return torch.cat(parts, dim=1)


def angle_error(a: Tensor, b: Tensor, period: float = 2 * math.pi) -> Tensor:
    """|a - b| wrapped to [0, period / 2]."""
    return torch.remainder(a - b + period / 2, period).sub(period / 2).abs()


@torch.no_grad()
def pose_errors(env: str, prediction: Tensor, poses: Tensor) -> dict[str, float]:
    """xy_error_px and angle_error_rad (means over samples and objects, angles modulo their
    symmetry) of regression outputs (B, F) against poses (B, P) in env units."""
    predicted = decode_poses(env, prediction)
    xy_error, angle_errors = [], []
    for k, m in enumerate(ANGLE_SYMMETRY[env]):
        xy_error.append((predicted[:, 3 * k:3 * k + 2] - poses[:, 3 * k:3 * k + 2]).norm(dim=1))
        angle_errors.append(angle_error(predicted[:, 3 * k + 2], poses[:, 3 * k + 2], 2 * math.pi / m))
    return {"xy_error_px": torch.stack(xy_error).mean().item(), "angle_error_rad": torch.stack(angle_errors).mean().item()}


def pose_loss(env: str, prediction: Tensor, poses: Tensor, angle_weight: float,
              frame_weights: Tensor | None = None) -> Tensor:
    """Weighted MSE of regression outputs (B, [T,] F) against the encoding of poses (B, [T,] P)
    in env units: each (sin, cos) term weighs ``angle_weight`` against an xy term, each of the T
    frames ``frame_weights[t]`` (default equal)."""
    target = encode_poses(env, poses.reshape(-1, poses.shape[-1]).to(prediction.dtype)).view_as(prediction)
    per_feature = F.mse_loss(prediction, target, reduction="none").mean(dim=0)  # ([T,] F)
    is_angle = torch.tensor([0.0, 0.0, 1.0, 1.0], device=per_feature.device).repeat(per_feature.shape[-1] // 4)
    weights = (1 + (angle_weight - 1) * is_angle).expand_as(per_feature)
    if frame_weights is not None:
        weights = frame_weights[:, None] * weights
    return (weights * per_feature).sum() / weights.sum()


def check_head_fields(config, ints: tuple[str, ...], weights: tuple[str, ...]) -> None:
    """Raise naming the field: ``env`` one of ENVS, ``ints`` positive ints, ``weights`` finite >= 0."""
    if config.env not in ENVS:
        raise ValueError(f"env must be one of {ENVS}, got env={config.env!r}")
    for name in ints:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {name}={value!r}")
    for name in weights:
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {name}={value!r}")


@dataclass
class StateHeadConfig:
    env: str = "pusht"  # one of ENVS: which poses the head reads
    latent_channels: int = 4
    latent_size: int = 8
    channels: int = 32
    n_convs: int = 2  # 3x3 convs at full resolution: an object's position stays in the layout
    hidden_dim: int = 256
    angle_weight: float = 1.0  # loss weight of the (sin, cos) terms relative to the xy terms

    def __post_init__(self):
        check_head_fields(self, ("latent_channels", "latent_size", "channels", "n_convs", "hidden_dim"),
                          ("angle_weight",))

    @property
    def pose_dim(self) -> int:
        return POSE_DIM[self.env]

    @property
    def feature_dim(self) -> int:
        return 4 * len(ANGLE_SYMMETRY[self.env])


class StateHead(nn.Module):
    """Convs at full latent resolution, then an MLP over the flattened map (not a global pool:
    where an object is matters)."""

    def __init__(self, config: StateHeadConfig):
        super().__init__()
        self.config = c = config
        convs, width = [], c.latent_channels
        for _ in range(c.n_convs):
            convs += [nn.Conv2d(width, c.channels, 3, padding=1), nn.Mish()]
            width = c.channels
        self.net = nn.Sequential(*convs, nn.Flatten(), nn.Linear(width * c.latent_size ** 2, c.hidden_dim),
                                 nn.Mish(), nn.Linear(c.hidden_dim, c.feature_dim))

    @classmethod
    def from_config(cls, config: dict) -> StateHead:
        return cls(StateHeadConfig(**config))

    def forward(self, latents: Tensor) -> Tensor:
        """Latents (B, C, h, w) -> normalised pose features (B, F)."""
        c = self.config
        expected = (c.latent_channels, c.latent_size, c.latent_size)
        if not isinstance(latents, Tensor) or latents.ndim != 4 or tuple(latents.shape[1:]) != expected:
            shape = tuple(latents.shape) if isinstance(latents, Tensor) else type(latents).__name__
            raise ValueError(f"latents must be a tensor (B, {', '.join(map(str, expected))}), got {shape}")
        return self.net(latents)

    def compute_loss(self, batch: dict) -> tuple[Tensor, dict[str, float]]:
        """MSE on the normalised encoding. batch["latents"] (B, C, h, w) scaled VAE latents of
        one frame; batch["poses"] (B, P) in env units (``pose_targets``). Metrics: loss,
        xy_error_px and angle_error_rad (mean over objects, angles modulo their symmetry)."""
        c = self.config
        poses = batch["poses"]
        prediction = self(batch["latents"])
        if poses.shape != (prediction.shape[0], c.pose_dim):
            raise ValueError(f"poses must be (B, {c.pose_dim}) with B={prediction.shape[0]}, "
                             f"got {tuple(poses.shape)}")
        loss = pose_loss(c.env, prediction, poses, c.angle_weight)
        return loss, {"loss": loss.item(), **pose_errors(c.env, prediction, poses)}

    @torch.no_grad()
    def predict(self, latents: Tensor) -> Tensor:
        """Poses (B, P) in env units (px, radians) from latents (B, C, h, w)."""
        return decode_poses(self.config.env, self(latents))
