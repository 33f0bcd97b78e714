"""Proposers: where a planner's candidate action chunks come from.

``GaussianProposer`` and ``UniformProposer`` draw chunks around the pusher's position;
``DPCProposer`` samples them from a trained DP-C. Each returns (n, H, A) normalised to [-1, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from planners.checks import check_float, check_int
from planners.protocols import normalize_actions
from uva_plan.envs.base import WORKSPACE


class _Proposer:
    """Shared seeding and bounds; subclasses draw (n, H, A) env-unit chunks in ``_draw``."""

    def __init__(self, horizon: int = 16, action_low=(0.0, 0.0), action_high=(WORKSPACE, WORKSPACE),
                 seed: int = 0):
        check_int("horizon", horizon, 1)
        check_int("seed", seed, 0)
        self.horizon, self.seed = horizon, seed
        self.low = np.asarray(action_low, dtype=np.float64)
        self.high = np.asarray(action_high, dtype=np.float64)
        if self.low.shape != self.high.shape or not (self.low < self.high).all():
            raise ValueError(f"need action_low < action_high, got {action_low=}, {action_high=}")
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def sample(self, context, n: int) -> Tensor:
        """(n, H, A) normalised proposals starting from ``context.agent_pos``."""
        check_int("n", n, 1)
        start = np.asarray(context.agent_pos, dtype=np.float64)
        chunk = np.clip(self._draw(start, n), self.low, self.high)
        return torch.from_numpy(normalize_actions(chunk, self.low, self.high)).float()

    def _draw(self, start: np.ndarray, n: int) -> np.ndarray:
        raise NotImplementedError


class GaussianProposer(_Proposer):
    """Gaussian random walks of the pusher target from its current position (``step_std`` px
    per step): absolute-position actions make independent per-step noise a jitter, a walk a path."""

    def __init__(self, step_std: float = 12.0, **kwargs):
        super().__init__(**kwargs)
        check_float("step_std", step_std, 0.0, open_low=True)
        self.step_std = step_std

    def _draw(self, start: np.ndarray, n: int) -> np.ndarray:
        steps = self.rng.normal(0.0, self.step_std, (n, self.horizon, len(start)))
        return start + np.cumsum(steps, axis=1)


class UniformProposer(_Proposer):
    """Straight moves from the pusher's position to a target drawn uniformly in the workspace,
    at a speed drawn uniformly up to ``max_speed`` px per step, then holding there."""

    def __init__(self, max_speed: float = 25.0, **kwargs):
        super().__init__(**kwargs)
        check_float("max_speed", max_speed, 0.0, open_low=True)
        self.max_speed = max_speed

    def _draw(self, start: np.ndarray, n: int) -> np.ndarray:
        goals = self.rng.uniform(self.low, self.high, (n, len(start)))
        speed = self.rng.uniform(0.2, 1.0, (n, 1)) * self.max_speed
        distance = np.linalg.norm(goals - start, axis=1, keepdims=True)
        t = np.arange(1, self.horizon + 1)[None, :, None]
        fraction = np.minimum(1.0, t * (speed / np.maximum(distance, 1e-9))[:, None])
        return start + fraction * (goals - start)[:, None]


class DPCProposer:
    """DP-C (``uva_plan.models.dpc.DPC``) as a Proposer: n action chunks (n, H, A) in [-1, 1],
    all drawn in one batched DDIM run.

    Context contract (attributes, or keys of a dict), oldest first, the last 2 entries used:
        latents            (1, T >= 2, C, h, w) torch, scaled VAE latents of the last frames;
        recent_latents     (1, 2, C, h, w), optional, preferred over ``latents`` when present
                           (``LatentContext``: its ``latents`` are UVA's strided history);
        agent_pos_history  (T, 2) numpy, the pusher's positions in env units (px);
        state_history      (T, S) numpy physical states: required by a state-mode DP-C;
        frames             (T, S, S, 3) uint8, optional: encoded with ``vae`` when there are
                           no latents.

    The chunks come out normalised with the DP-C's own action normaliser (its training
    store's, as UVA's). Give ``action_low`` / ``action_high`` (the dynamics' bounds, e.g.
    SimulatorDynamics' workspace) to have them renormalised onto that range instead.

    Args:
        dpc: the policy; normalizers: its checkpoint's normalisers ("actions", "agent_pos",
            "state"), ``MinMaxNormalizer`` or their dicts; vae: a ``FrameVAE`` for contexts
            that carry frames; seed: seeds the sampling noise (``reset`` restarts it);
            n_sample_steps: DDIM steps per draw (default the DP-C's config, 10 for the shipped ones);
            timestep_spacing: None ("leading", as trained) or "trailing" (``diff_head.ddim_schedule``).
    """

    def __init__(self, dpc: torch.nn.Module, normalizers: dict, vae: torch.nn.Module | None = None,
                 action_low=None, action_high=None, seed: int = 0, n_sample_steps: int | None = None,
                 timestep_spacing: str | None = None):
        from uva_plan.data.store import MinMaxNormalizer

        check_int("seed", seed, 0)
        self.dpc, self.vae, self.seed = dpc, vae, seed
        self.config = dpc.config
        if n_sample_steps is not None and (isinstance(n_sample_steps, bool) or not isinstance(n_sample_steps, int)
                                           or not 2 <= n_sample_steps <= self.config.n_train_steps):
            raise ValueError(f"n_sample_steps must be None or an int in [2, {self.config.n_train_steps}] "
                             f"(DDIM steps), got {n_sample_steps=}")
        if timestep_spacing not in (None, "leading", "trailing"):
            raise ValueError(f"timestep_spacing must be None, 'leading' or 'trailing', got {timestep_spacing=}")
        self.n_sample_steps, self.timestep_spacing = n_sample_steps, timestep_spacing
        needed = ("actions", "state") if self.config.obs_mode == "state" else ("actions", "agent_pos")
        missing = [k for k in needed if k not in (normalizers or {})]
        if missing:
            raise ValueError(f"normalizers must hold {list(needed)} for a {self.config.obs_mode}-mode DP-C, "
                             f"missing {missing}")
        self.normalizers = {k: v if isinstance(v, MinMaxNormalizer) else MinMaxNormalizer.from_dict(v)
                            for k, v in normalizers.items() if k in needed}
        if (action_low is None) != (action_high is None):
            raise ValueError(f"give both action_low and action_high or neither, got {action_low=}, {action_high=}")
        self.action_bounds = None
        if action_low is not None:
            low, high = np.asarray(action_low, dtype=np.float64), np.asarray(action_high, dtype=np.float64)
            if low.shape != high.shape or not (low < high).all():
                raise ValueError(f"need action_low < action_high, got {action_low=}, {action_high=}")
            self.action_bounds = (low, high)
        self.reset()

    @classmethod
    def from_checkpoint(cls, path, vae: torch.nn.Module | None = None, **kwargs) -> DPCProposer:
        """From a DP-C checkpoint directory (its normalisers come with it)."""
        from uva_plan.checkpoint import load_model

        dpc, meta = load_model(path, expected_kind="dpc")
        proposer = cls(dpc, meta["normalizers"], vae=vae, **kwargs)
        proposer.env_id = meta.get("env_id")  # the env its demonstrations came from
        return proposer

    @classmethod
    def from_pretrained(cls, env: str, **kwargs) -> DPCProposer:
        """The shipped DP-C of ``env`` ("pusht" or "blockpush") with the shipped VAE; keyword
        arguments as the constructor (``action_low`` / ``action_high``, ``seed``):
        ``uva_plan.pretrained.pretrained_dpc_proposer``."""
        from uva_plan.pretrained import pretrained_dpc_proposer

        return pretrained_dpc_proposer(env, **kwargs)

    def reset(self) -> None:
        device = next(self.dpc.parameters()).device
        self.generator = torch.Generator(device=device).manual_seed(self.seed)

    def observation(self, context) -> dict[str, Tensor]:
        """The DP-C's observation dict (B = 1) from a context (see the class docstring)."""
        c, device = self.config, next(self.dpc.parameters()).device

        def get(name):
            return context.get(name) if isinstance(context, dict) else getattr(context, name, None)

        def last(name: str, width: int) -> np.ndarray:
            value = get(name)
            if value is None:
                raise ValueError(f"a {c.obs_mode}-mode DP-C needs context.{name} (T >= {c.n_obs_steps}, {width})")
            value = np.asarray(value, dtype=np.float64)
            if value.ndim != 2 or len(value) < c.n_obs_steps or value.shape[1] < width:
                raise ValueError(f"context.{name} must be (T >= {c.n_obs_steps}, {width}), got {value.shape}")
            return value[-c.n_obs_steps:, :width]

        def tensor(x: np.ndarray) -> Tensor:
            return torch.from_numpy(x).float()[None].to(device)

        if c.obs_mode == "state":
            return {"states": tensor(self.normalizers["state"].normalize(last("state_history", c.state_dim)))}
        latents = get("recent_latents") if get("recent_latents") is not None else get("latents")
        if latents is None and get("frames") is not None and self.vae is not None:
            with torch.no_grad():
                latents = self.vae.encode(np.asarray(get("frames"))[-c.n_obs_steps:])[None]
        expected = (c.latent_channels, c.latent_size, c.latent_size)
        if not isinstance(latents, Tensor) or latents.ndim != 5 or latents.shape[0] != 1 \
                or latents.shape[1] < c.n_obs_steps or tuple(latents.shape[2:]) != expected:
            shape = tuple(latents.shape) if isinstance(latents, Tensor) else type(latents).__name__
            raise ValueError(f"context.latents must be a tensor (1, T >= {c.n_obs_steps}, "
                             f"{', '.join(map(str, expected))}) (or give frames and a vae), got {shape}")
        agent_pos = self.normalizers["agent_pos"].normalize(last("agent_pos_history", 2))
        return {"latents": latents[:, -c.n_obs_steps:].float().to(device), "agent_pos": tensor(agent_pos)}

    def sample(self, context, n: int) -> Tensor:
        """(n, H, A) normalised action chunks for one context, starting at the current step.

        DP-C predicts actions t - 1 .. t + H - 2 (its window starts at the older observation,
        as Diffusion Policy's): the action for the past step is dropped and the last one held,
        so every caller (the DP-C policy, the planners) gets actions t .. t + H - 1.
        """
        check_int("n", n, 1)
        actions = self.dpc.sample(self.observation(context), n, generator=self.generator,
                                  n_steps=self.n_sample_steps, spacing=self.timestep_spacing)[0]
        past = self.config.n_obs_steps - 1
        if past:
            actions = torch.cat([actions[:, past:], actions[:, -1:].expand(-1, past, -1)], dim=1)
        if self.action_bounds is None:
            return actions
        low, high = self.action_bounds
        env_units = self.normalizers["actions"].unnormalize(actions.double().cpu().numpy())
        return torch.from_numpy(normalize_actions(env_units, low, high)).float().clamp(-1, 1).to(actions.device)
