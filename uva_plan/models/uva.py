"""Unified Video Action model (UVA; Li, Gao, Sadigh, Song 2025) at small width.

One bidirectional transformer reads history latents, (partly masked) future latents and
(optionally masked) actions and produces a joint latent Z; two decoupled diffusion heads read
Z: a per-token video head and a per-chunk action head. Masked training over five task modes
makes the one model a policy, a forward-dynamics model, a video predictor and an inverse-
dynamics model.

Fusion, for future frame k: [future frame k tokens | history frame k tokens | action tokens of
frame k] are concatenated along channels and projected to D; the T future frames are then
concatenated in time (T * N tokens) with learned temporal + spatial position embeddings.
Masked frame tokens are replaced by one learned mask vector, masked actions by another.

Shape letters: B batch, T frames (n_future == n_history), N tokens per frame, P patch dim
(p * p * C), C latent channels, h, w latent side, D width, H actions per chunk (T * L),
L actions per frame, A action dim.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import einops
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uva_plan.models.diff_head import DiffusionHead
from uva_plan.models.uva_config import (  # noqa: F401  (MODES, UVAConfig are imported from here too)
    ACTION_LOSS_MODES,
    MODES,
    VIDEO_LOSS_MODES,
    UVAConfig,
)


def token_centres(grid: int) -> Tensor:
    """(N, 2) centre (x, y) of each token of a grid x grid frame in [-1, 1] units; the patch grid
    is row-major with rows along the image's y (down), as the renderer draws."""
    centres = (torch.arange(grid, dtype=torch.float32) + 0.5) / grid * 2.0 - 1.0
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], dim=-1)


def grounded_actions(actions: Tensor, centres: Tensor, n_frames: int) -> Tensor:
    """Actions (B, H, A=2) -> per-token features (B, T, N, L * 5): each of frame k's L actions,
    its offset from the token's centre and the bump exp(-d^2 / 2 s^2), s = one token's width."""
    grid_width = 2.0 / math.isqrt(centres.shape[0])
    per_frame = einops.rearrange(actions, "b (t l) a -> b t 1 l a", t=n_frames)  # (B, T, 1, L, 2)
    offset = per_frame - centres[None, None, :, None, :]  # (B, T, N, L, 2)
    bump = torch.exp(-(offset ** 2).sum(-1, keepdim=True) / (2 * grid_width ** 2))
    features = torch.cat([per_frame.expand_as(offset), offset, bump], dim=-1)  # (B, T, N, L, 5)
    return einops.rearrange(features, "b t n l f -> b t n (l f)")


def patchify(latents: Tensor, patch_size: int) -> Tensor:
    """Latents (..., C, h, w) -> tokens (..., N, P), row-major over the patch grid."""
    return einops.rearrange(latents, "... c (gh p1) (gw p2) -> ... (gh gw) (p1 p2 c)",
                            p1=patch_size, p2=patch_size)


def unpatchify(tokens: Tensor, patch_size: int, latent_size: int) -> Tensor:
    """Tokens (..., N, P) -> latents (..., C, h, w); the inverse of ``patchify``."""
    grid = latent_size // patch_size
    return einops.rearrange(tokens, "... (gh gw) (p1 p2 c) -> ... c (gh p1) (gw p2)",
                            gh=grid, gw=grid, p1=patch_size, p2=patch_size)


class SelfAttention(nn.Module):
    def __init__(self, width: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = einops.rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.n_heads)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(einops.rearrange(y, "b h n d -> b n (h d)"))


class Block(nn.Module):
    """Pre-LN transformer block, bidirectional."""

    def __init__(self, width: int, n_heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = SelfAttention(width, n_heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width),
                                 nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class FrameSummary(nn.Module):
    """The action head's aggregation: conv over each frame's token grid, mean-pool, MLP."""

    def __init__(self, width: int, grid: int):
        super().__init__()
        self.grid = grid
        self.conv = nn.Conv2d(width, width, kernel_size=3, padding=1)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, z: Tensor) -> Tensor:
        """Z (B, T * N, D) -> one D-vector per frame, concatenated: (B, T * D)."""
        x = einops.rearrange(z, "b (t gh gw) d -> (b t) d gh gw", gh=self.grid, gw=self.grid)
        x = self.mlp(F.silu(self.conv(x)).mean(dim=(2, 3)))  # (B * T, D)
        return einops.rearrange(x, "(b t) d -> b (t d)", b=z.shape[0])


class UVA(nn.Module):
    """Transformer over fused frame/action tokens plus a video and an action diffusion head."""

    def __init__(self, config: UVAConfig):
        super().__init__()
        self.config = c = config
        P, D, LA = c.patch_dim, c.width, c.action_token_dim
        self.in_proj = nn.Linear(2 * P + LA, D)
        self.mask_token = nn.Parameter(torch.randn(P) * 0.02)  # masked future or history tokens
        self.action_mask_token = nn.Parameter(torch.randn(LA) * 0.02)
        self.time_pos = nn.Parameter(torch.randn(1, c.n_future, 1, D) * 0.02)
        self.space_pos = nn.Parameter(torch.randn(1, 1, c.n_tokens, D) * 0.02)
        if c.action_grounding == "offset":
            if c.action_dim != 2:
                raise ValueError(f"action_grounding='offset' needs 2-D position actions, got {c.action_dim=}")
            self.register_buffer("token_centres", token_centres(c.latent_size // c.patch_size), persistent=False)
        self.blocks = nn.ModuleList(Block(D, c.n_heads, c.mlp_ratio, c.dropout) for _ in range(c.depth))
        self.norm = nn.LayerNorm(D)
        self.frame_summary = FrameSummary(D, c.latent_size // c.patch_size)
        for module in (self.in_proj, self.blocks, self.frame_summary):
            module.apply(_init_weights)
        # The heads initialise themselves (adaLN-Zero).
        self.video_head = DiffusionHead(c.video_head_config)
        self.action_head = DiffusionHead(c.action_head_config)
        if c.pose_head is not None:
            from uva_plan.models.pose_head import PoseHead

            self.pose_head = PoseHead(c.pose_head_config)
        else:
            self.pose_head = None

    @classmethod
    def from_config(cls, config: dict) -> UVA:
        return cls(UVAConfig(**config))

    # ----- the joint latent -----

    def encode(self, history: Tensor | None, future: Tensor | None, future_mask: Tensor | None,
               actions: Tensor | None) -> Tensor:
        """Joint latent Z (B, T * N, D).

        history, future: tokens (B, T, N, P), or None when fully masked; future_mask (B, N)
        True where masked, shared by the T future frames (None: all visible); actions (B, H, A)
        or None when masked.
        """
        c = self.config
        B = (history if history is not None else future).shape[0]
        masked = self.mask_token.expand(B, c.n_future, c.n_tokens, -1)
        hist = masked if history is None else history
        fut = masked if future is None else future
        if future is not None and future_mask is not None:
            fut = torch.where(future_mask[:, None, :, None], masked, future)
        if actions is None:
            act = self.action_mask_token.expand(B, c.n_future, c.n_tokens, -1)
        elif c.action_grounding == "offset":
            act = grounded_actions(actions, self.token_centres.to(actions.dtype), c.n_future)
        else:  # every token of frame k carries frame k's L actions
            act = einops.repeat(actions, "b (t l) a -> b t n (l a)", t=c.n_future, n=c.n_tokens)
        x = self.in_proj(torch.cat([fut, hist, act], dim=-1)) + self.time_pos + self.space_pos
        x = einops.rearrange(x, "b t n d -> b (t n) d")
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    # ----- training -----

    def compute_loss(self, batch: dict, mode: int | str | None = None) -> tuple[Tensor, dict[str, float]]:
        """Masked-modelling loss of one task mode (drawn from mode_probs unless given).

        batch["latents"] (B, n_history + n_future, C, h, w) scaled VAE latents, oldest first;
        batch["actions"] (B, H, A) normalised actions, H = n_future * actions_per_frame.
        Metrics: loss, loss_video and loss_action (NaN when the mode has no such term), mode.
        """
        c = self.config
        mode = self._mode_index(mode)
        name = MODES[mode]
        tokens = patchify(self._check(batch["latents"], c.n_history + c.n_future), c.patch_size)
        history, future = tokens[:, : c.n_history], tokens[:, c.n_history:]
        actions = batch["actions"]
        B = tokens.shape[0]
        if actions.shape != (B, c.horizon, c.action_dim):
            raise ValueError(f"actions must be (B, {c.horizon}, {c.action_dim}), got {tuple(actions.shape)}")
        mask = self.random_mask(B, tokens.device)  # drawn in every mode: the RNG stream is mode-blind
        if name == "policy":
            mask = torch.ones_like(mask)
        elif name == "inverse_dynamics":
            mask = torch.zeros_like(mask)
        z = self.encode(None if name == "inverse_dynamics" else history, future, mask,
                        actions if name == "forward_dynamics" else None)
        losses = {}
        if name in VIDEO_LOSS_MODES:  # only masked tokens are predicted
            selected = einops.repeat(mask, "b n -> b (t n)", t=c.n_future)
            target = einops.rearrange(self._video_target(future, history), "b t n p -> b (t n) p")[selected]
            r = c.video_loss_repeats
            weight = None
            if c.changed_token_weight != 1.0:
                change = (future - history[:, -1:]).pow(2).mean(-1).sqrt()  # (B, T, N) RMS per token
                changed = einops.rearrange(change > c.changed_token_threshold, "b t n -> b (t n)")[selected]
                weight = 1.0 + (c.changed_token_weight - 1.0) * changed.float()
                weight = weight.repeat(r)
            losses["video"] = self.video_head.loss(target.repeat(r, 1), z[selected].repeat(r, 1), weight)
        if name in ACTION_LOSS_MODES:
            r = c.action_loss_repeats
            target = einops.rearrange(actions, "b h a -> b (h a)")
            losses["action"] = self.action_head.loss(target.repeat(r, 1), self.frame_summary(z).repeat(r, 1))
        pose_metrics = {}
        if self.pose_head is not None:
            if "poses" not in batch:
                raise ValueError("this UVA has a pose head: batches need 'poses' (B, n_future, P) "
                                 "(LatentWindows(..., pose_env=...))")
            # The Z a planner reads: history and actions given, the whole future masked.
            losses["pose"], pose_metrics = self.pose_head.compute_loss(
                {"z": self.encode(history, None, None, actions), "poses": batch["poses"]})
            losses["pose"] = c.pose_loss_weight * losses["pose"]
        loss = sum(losses.values())
        metrics = {"loss": loss.item(), "mode": float(mode),
                   "loss_video": losses["video"].item() if "video" in losses else float("nan"),
                   "loss_action": losses["action"].item() if "action" in losses else float("nan")}
        if pose_metrics:
            metrics.update(loss_pose=pose_metrics["loss"], pose_xy_error_px=pose_metrics["xy_error_px"],
                           pose_angle_error_rad=pose_metrics["angle_error_rad"])
        return loss, metrics

    def random_mask(self, batch_size: int, device: torch.device | str) -> Tensor:
        """(B, N) True where masked: one ratio per batch, ceil(ratio * N) random tokens per sample."""
        c = self.config
        while True:  # rejection sampling of the truncated normal (torch RNG, so seeds carry over)
            ratios = torch.randn(64) * c.mask_ratio_std + c.mask_ratio_mean
            ratios = ratios[(ratios >= c.mask_ratio_min) & (ratios <= 1.0)]
            if len(ratios):
                break
        n_masked = max(1, math.ceil(ratios[0].item() * c.n_tokens))
        order = torch.rand(batch_size, c.n_tokens, device=device).argsort(dim=-1)
        return order < n_masked  # the first n_masked of a random permutation

    # ----- inference: one method per task mode -----

    @torch.no_grad()
    def policy(self, context: dict, generator: torch.Generator | None = None, n_steps: int | None = None) -> Tensor:
        """Action chunks (B, H, A) from context["latents"] (B, n_history, C, h, w); no video head.
        n_steps: DDIM steps of the action head (default n_action_sample_steps)."""
        z = self.encode(self._history(context), None, None, None)
        return self._sample_actions(z, generator, n_steps=n_steps)

    @torch.no_grad()
    def sample_actions(self, context: dict, n: int, generator: torch.Generator | None = None,
                       n_steps: int | None = None) -> Tensor:
        """n action chunks (n, H, A) for one context (B = 1): one transformer pass, n head draws."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1 (action chunks to draw), got {n=}")
        history = self._history(context)
        if history.shape[0] != 1:
            raise ValueError(f"sample_actions takes one context (B = 1), got B={history.shape[0]}")
        return self._sample_actions(self.encode(history, None, None, None), generator, n_per_context=n,
                                    n_steps=n_steps)

    @torch.no_grad()
    def forward_dynamics(self, context: dict, actions: Tensor, decode_fn: Callable | None = None,
                         n_steps: int | None = None, generator: torch.Generator | None = None,
                         temperature: float = 1.0, head_steps: int | None = None,
                         frames: tuple[int, ...] | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """Future latents (B, n_future, C, h, w) given history and actions (B, H, A), MaskGIT-style.

        n_steps unmasking steps (default n_video_sample_steps; 1 = all tokens at once), each
        drawing the revealed tokens with head_steps DDIM steps of the video head (default its
        config's). frames: the future frames the caller will read (indices into n_future, e.g.
        (-1,)); the video head then skips the others at the last unmasking step, and they come
        back as NaN. The transformer still reads every frame, and the head draws each token
        independently given Z, so the frames asked for have the same distribution as without
        ``frames``. With decode_fn (latents (M, C, h, w) -> frames (M, ...)) also returns the
        frames (B, n_future, ...).
        """
        history = self._history(context)
        c = self.config
        if actions.shape != (history.shape[0], c.horizon, c.action_dim):
            raise ValueError(f"actions must be (B, {c.horizon}, {c.action_dim}) with B={history.shape[0]}, "
                             f"got {tuple(actions.shape)}")
        latents = self._generate_video(history, actions, n_steps, generator, temperature, head_steps, frames)
        return latents if decode_fn is None else (latents, self._decode(latents, decode_fn))

    @torch.no_grad()
    def joint_latent(self, context: dict, actions: Tensor) -> Tensor:
        """Z (B, T * N, D) of the forward-dynamics question: history and actions (B, H, A) given,
        every future token masked. What the first unmasking step of ``forward_dynamics`` reads
        (all of it at 1 step), before any video-head sampling; a ``PoseHead`` reads it."""
        history = self._history(context)
        c = self.config
        if actions.shape != (history.shape[0], c.horizon, c.action_dim):
            raise ValueError(f"actions must be (B, {c.horizon}, {c.action_dim}) with B={history.shape[0]}, "
                             f"got {tuple(actions.shape)}")
        return self.encode(history, None, None, actions)

    @torch.no_grad()
    def predict_video(self, context: dict, decode_fn: Callable | None = None, n_steps: int | None = None,
                      generator: torch.Generator | None = None, temperature: float = 1.0,
                      head_steps: int | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """Future latents (B, n_future, C, h, w) from history alone (actions masked)."""
        latents = self._generate_video(self._history(context), None, n_steps, generator, temperature, head_steps)
        return latents if decode_fn is None else (latents, self._decode(latents, decode_fn))

    @torch.no_grad()
    def inverse_dynamics(self, latents: Tensor, generator: torch.Generator | None = None,
                         n_steps: int | None = None) -> Tensor:
        """Action chunks (B, H, A) that lead through future latents (B, n_future, C, h, w); history masked."""
        future = patchify(self._check(latents, self.config.n_future), self.config.patch_size)
        return self._sample_actions(self.encode(None, future, None, None), generator, n_steps=n_steps)

    # ----- helpers -----

    def _sample_actions(self, z: Tensor, generator: torch.Generator | None, n_per_context: int = 1,
                        n_steps: int | None = None) -> Tensor:
        cond = self.frame_summary(z).repeat_interleave(n_per_context, dim=0)
        flat = self.action_head.sample(cond, n_steps=n_steps, generator=generator)
        return einops.rearrange(flat, "b (h a) -> b h a", a=self.config.action_dim)

    def _generate_video(self, history: Tensor, actions: Tensor | None, n_steps: int | None,
                        generator: torch.Generator | None, temperature: float,
                        head_steps: int | None = None, frames: tuple[int, ...] | None = None) -> Tensor:
        """MaskGIT-style unmasking (Chang et al. 2022) with MAR's cosine schedule.

        Each step runs the transformer and reveals the next spatial positions of a random
        order (the same positions in every future frame, as in training). The head is sampled
        only for the tokens revealed at this step: it treats tokens independently given z, so
        this draws the same distribution as sampling every masked token and keeping a subset.
        """
        c = self.config
        n_steps = c.n_video_sample_steps if n_steps is None else n_steps
        if not 1 <= n_steps <= c.n_tokens:
            raise ValueError(f"n_steps must be in [1, {c.n_tokens}] (tokens per frame), got {n_steps=}")
        B, N, device = history.shape[0], c.n_tokens, history.device
        wanted = self._frame_selection(frames, device)  # (n_future,) bool
        future = torch.zeros(B, c.n_future * N, c.patch_dim, device=device, dtype=history.dtype)
        mask = torch.ones(B, N, dtype=torch.bool, device=device)
        order = torch.rand(B, N, generator=generator, device=device).argsort(dim=-1)
        n_masked = N
        for step in range(n_steps):
            z = self.encode(history, future.view(B, c.n_future, N, -1), mask, actions)
            if step == n_steps - 1:
                n_next = 0
            else:  # at least one revealed now, at least one left for later
                n_next = int(N * math.cos(math.pi / 2 * (step + 1) / n_steps))
                n_next = max(1, min(n_masked - 1, n_next))
            reveal = torch.zeros_like(mask).scatter_(1, order[:, N - n_masked: N - n_next], True)
            if step == n_steps - 1:  # the last step finishes only the frames asked for
                selected = (reveal[:, None, :] & wanted[None, :, None]).flatten(1)
            else:
                selected = einops.repeat(reveal, "b n -> b (t n)", t=c.n_future)
            drawn = self.video_head.sample(z[selected], n_steps=head_steps, temperature=temperature,
                                           generator=generator)
            if c.video_target == "residual":  # back to absolute latents: the transformer's inputs are absolute
                last = einops.repeat(history[:, -1], "b n p -> b (t n) p", t=c.n_future)
                drawn = drawn / c.residual_scale + last[selected]
            future[selected] = drawn
            mask &= ~reveal
            n_masked = n_next
        if not wanted.all():
            future.view(B, c.n_future, N, -1)[:, ~wanted] = math.nan
        return unpatchify(future.view(B, c.n_future, N, -1), c.patch_size, c.latent_size)

    def _frame_selection(self, frames: tuple[int, ...] | None, device: torch.device) -> Tensor:
        """(n_future,) bool, True for the future frames to finish (all when frames is None)."""
        T = self.config.n_future
        if frames is None:
            return torch.ones(T, dtype=torch.bool, device=device)
        frames = tuple(frames) if isinstance(frames, (tuple, list)) else (frames,)
        if not frames or any(isinstance(f, bool) or not isinstance(f, int) or not -T <= f < T for f in frames):
            raise ValueError(f"frames must be a non-empty sequence of future frame indices in [-{T}, {T}), "
                             f"got {frames=}")
        wanted = torch.zeros(T, dtype=torch.bool, device=device)
        wanted[list(frames)] = True
        return wanted

    def _video_target(self, future: Tensor, history: Tensor) -> Tensor:
        """What the video head learns for future tokens (B, T, N, P) given history tokens."""
        if self.config.video_target == "absolute":
            return future
        return (future - history[:, -1:]) * self.config.residual_scale

    def _decode(self, latents: Tensor, decode_fn: Callable) -> Tensor:
        frames = decode_fn(einops.rearrange(latents, "b t c h w -> (b t) c h w"))
        return einops.rearrange(frames, "(b t) ... -> b t ...", b=latents.shape[0])

    def _history(self, context: dict) -> Tensor:
        if "latents" not in context:
            raise ValueError(f"context must hold 'latents' (B, n_history, C, h, w), got keys {sorted(context)}")
        latents = self._check(context["latents"], self.config.n_history)
        return patchify(latents, self.config.patch_size)

    def _check(self, latents: Tensor, n_frames: int) -> Tensor:
        c = self.config
        expected = (n_frames, c.latent_channels, c.latent_size, c.latent_size)
        if latents.ndim != 5 or tuple(latents.shape[1:]) != expected:
            raise ValueError(f"latents must be (B, {', '.join(map(str, expected))}), got {tuple(latents.shape)}")
        return latents

    def _mode_index(self, mode: int | str | None) -> int:
        if mode is None:
            probs = torch.tensor(self.config.mode_probs, dtype=torch.float)
            return int(torch.multinomial(probs, 1).item())
        if isinstance(mode, str):
            if mode not in MODES:
                raise ValueError(f"mode must be one of {MODES}, got {mode=}")
            return MODES.index(mode)
        if not 0 <= mode < len(MODES):
            raise ValueError(f"mode index must be in [0, {len(MODES)}), got {mode=}")
        return int(mode)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
