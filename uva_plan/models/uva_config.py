"""UVA's configuration: every size and training option of ``uva_plan.models.uva.UVA``, validated.

Shape letters as in ``uva_plan.models.uva``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from uva_plan.models.diff_head import DiffusionHeadConfig

MODES = ("video", "forward_dynamics", "policy", "inverse_dynamics", "full")
VIDEO_LOSS_MODES = ("video", "forward_dynamics", "full")
ACTION_LOSS_MODES = ("policy", "inverse_dynamics", "full")


@dataclass
class UVAConfig:
    latent_channels: int = 4
    latent_size: int = 8  # latent side h = w (64x64 frames through a stride-8 VAE)
    patch_size: int = 2  # N = (8 / 2)^2 = 16 tokens of P = 2 * 2 * 4 = 16 dims per frame
    n_history: int = 4
    n_future: int = 4  # future frame k is fused with history frame k, so the two must match
    frame_stride: int = 4  # control steps between frames (what the data sampler uses)
    action_dim: int = 2
    actions_per_frame: int = 4  # L: actions [k L, (k + 1) L) of the chunk lead to future frame k
    width: int = 192
    depth: int = 6
    n_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    mask_ratio_min: float = 0.7  # mask ratio ~ truncated normal on [min, 1] (MAR, UVA)
    mask_ratio_mean: float = 1.0
    mask_ratio_std: float = 0.25
    # DiffusionHeadConfig fields except target_dim / cond_dim, which the model derives.
    video_head: dict = field(default_factory=lambda: {"width": 192, "depth": 3})
    # Actions are normalised to [-1, 1], so x0 is clipped while sampling (as Diffusion Policy).
    action_head: dict = field(default_factory=lambda: {"width": 256, "depth": 3, "clip_sample": True})
    n_video_sample_steps: int = 8  # MaskGIT unmasking steps (the paper: 8 give better video)
    n_action_sample_steps: int = 16  # DDIM steps of the action head (the paper's real robot: 16)
    # MAR's diffusion_batch_mul: each target is noised this many times per loss. Cheap for the
    # action head (one row per sample); for video it would cost as much as the transformer.
    video_loss_repeats: int = 1
    # What the video head denoises: "absolute" future latent tokens (the paper), or "residual":
    # (future - last history frame) * residual_scale, so repeating the last frame is the zero
    # prediction and the head spends its capacity on what moves. Inputs stay absolute.
    video_target: str = "absolute"
    residual_scale: float = 2.0
    # How the actions reach the tokens. "none": every token of frame k gets frame k's L actions
    # (the paper). "offset": each token also gets, per action, the commanded target's offset from
    # the token's centre and a proximity bump exp(-d^2 / 2 s^2) (s = one token's width), so a token
    # need not work out on its own whether the pusher is headed for its patch. Actions are
    # normalised absolute positions in [-1, 1] (x, y), as the envs' pusher targets are.
    action_grounding: str = "none"
    # Video-loss weight of masked tokens whose target changes (RMS over its P dims against the last
    # history frame above changed_token_threshold, latent units): the few tokens where something
    # moves are otherwise drowned by the static background. 1.0: every token alike.
    changed_token_weight: float = 1.0
    changed_token_threshold: float = 0.1
    action_loss_repeats: int = 4
    mode_probs: tuple[float, ...] = (0.2, 0.2, 0.2, 0.2, 0.2)  # over MODES, in that order
    # Optional third head on Z: object poses of each future frame (``pose_head.PoseHead``; its
    # config fields except width / n_future / grid, which the model derives), trained on the
    # forward-dynamics Z (future fully masked: what planning reads) when batches carry "poses".
    pose_head: dict | None = None
    pose_loss_weight: float = 1.0

    def __post_init__(self):
        self.mode_probs = tuple(self.mode_probs)  # YAML / JSON give lists
        self.video_head, self.action_head = dict(self.video_head), dict(self.action_head)
        if self.pose_head is not None:
            self.pose_head = dict(self.pose_head)
            derived = {"width", "n_future", "grid"} & set(self.pose_head)
            if derived:
                raise ValueError(f"pose_head must not set {sorted(derived)} (the UVA's), got pose_head={self.pose_head!r}")
            try:
                self.pose_head_config
            except (TypeError, ValueError) as error:
                raise ValueError(f"pose_head: {error}") from error
        if not (isinstance(self.pose_loss_weight, (int, float)) and math.isfinite(self.pose_loss_weight)
                and self.pose_loss_weight >= 0):
            raise ValueError(f"pose_loss_weight must be a finite number >= 0, got {self.pose_loss_weight=}")
        for name in ("latent_channels", "latent_size", "patch_size", "n_history", "n_future",
                     "frame_stride", "action_dim", "actions_per_frame", "width", "depth", "n_heads",
                     "n_video_sample_steps", "n_action_sample_steps", "video_loss_repeats",
                     "action_loss_repeats"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {name}={value!r}")
        if self.latent_size % self.patch_size:
            raise ValueError(f"patch_size must divide latent_size, got {self.patch_size=} {self.latent_size=}")
        if self.n_history != self.n_future:
            raise ValueError(f"n_history must equal n_future (frames are fused pairwise), "
                             f"got {self.n_history=} {self.n_future=}")
        if self.actions_per_frame != self.frame_stride:
            raise ValueError(f"actions_per_frame must equal frame_stride (one action per control "
                             f"step), got {self.actions_per_frame=} {self.frame_stride=}")
        if self.width % self.n_heads:
            raise ValueError(f"n_heads must divide width, got {self.n_heads=} {self.width=}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout=}")
        if not 0.0 <= self.mask_ratio_min <= self.mask_ratio_mean <= 1.0:
            raise ValueError(f"mask ratios must satisfy 0 <= mask_ratio_min <= mask_ratio_mean <= 1, "
                             f"got {self.mask_ratio_min=} {self.mask_ratio_mean=}")
        if self.mask_ratio_std < 0:
            raise ValueError(f"mask_ratio_std must be >= 0, got {self.mask_ratio_std=}")
        if self.n_action_sample_steps < 2:
            raise ValueError(f"n_action_sample_steps must be >= 2 (DDIM), got {self.n_action_sample_steps=}")
        if self.n_video_sample_steps > self.n_tokens:
            raise ValueError(f"n_video_sample_steps must be <= tokens per frame {self.n_tokens}, "
                             f"got {self.n_video_sample_steps=}")
        if self.video_target not in ("absolute", "residual"):
            raise ValueError(f"video_target must be 'absolute' or 'residual', got {self.video_target=}")
        if not self.residual_scale > 0:
            raise ValueError(f"residual_scale must be > 0, got {self.residual_scale=}")
        if self.action_grounding not in ("none", "offset"):
            raise ValueError(f"action_grounding must be 'none' or 'offset', got {self.action_grounding=}")
        if not (math.isfinite(self.changed_token_weight) and self.changed_token_weight > 0):
            raise ValueError(f"changed_token_weight must be a finite number > 0, got {self.changed_token_weight=}")
        if not (math.isfinite(self.changed_token_threshold) and self.changed_token_threshold >= 0):
            raise ValueError(f"changed_token_threshold must be a finite number >= 0, "
                             f"got {self.changed_token_threshold=}")
        if len(self.mode_probs) != len(MODES) or min(self.mode_probs) < 0 or sum(self.mode_probs) <= 0:
            raise ValueError(f"mode_probs must be {len(MODES)} non-negative weights over {MODES} with a "
                             f"positive sum, got {self.mode_probs=}")
        for name in ("video_head", "action_head"):
            derived = {"target_dim", "cond_dim"} & set(getattr(self, name))
            if name == "action_head" and "n_sample_steps" in self.action_head:
                derived.add("n_sample_steps (set n_action_sample_steps)")
            if derived:
                raise ValueError(f"{name} must not set {sorted(derived)}, got {name}={getattr(self, name)!r}")
            try:
                getattr(self, f"{name}_config")
            except (TypeError, ValueError) as error:
                raise ValueError(f"{name}: {error}") from error

    @property
    def n_tokens(self) -> int:
        return (self.latent_size // self.patch_size) ** 2

    @property
    def patch_dim(self) -> int:
        return self.patch_size ** 2 * self.latent_channels

    @property
    def action_token_dim(self) -> int:
        """Per-token action features: L actions, plus (dx, dy, bump) per action when grounded."""
        per_action = self.action_dim + (3 if self.action_grounding == "offset" else 0)
        return self.actions_per_frame * per_action

    @property
    def horizon(self) -> int:
        return self.n_future * self.actions_per_frame

    @property
    def video_head_config(self) -> DiffusionHeadConfig:
        return DiffusionHeadConfig(target_dim=self.patch_dim, cond_dim=self.width, **self.video_head)

    @property
    def pose_head_config(self):
        from uva_plan.models.pose_head import PoseHeadConfig

        return PoseHeadConfig(width=self.width, n_future=self.n_future, grid=self.latent_size // self.patch_size,
                              **self.pose_head)

    @property
    def action_head_config(self) -> DiffusionHeadConfig:
        # Conditioned on one D-dim summary per future frame; denoises the whole chunk at once.
        return DiffusionHeadConfig(target_dim=self.horizon * self.action_dim,
                                   cond_dim=self.n_future * self.width,
                                   n_sample_steps=self.n_action_sample_steps, **self.action_head)
