"""Models behind the planners' protocols: the ground-truth simulator and simple proposers.

``SimulatorDynamics`` rolls candidates out in the real environment from its exact state: the
upper bound every learned dynamics model is judged against. It needs the environment's full
state in each observation, which ``PrivilegedState`` (a gymnasium wrapper) adds as
``obs["sim_state"]``. Proposers draw normalised action chunks around the pusher's position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from planners import Rollout
from planners.base import check_float
from uva_plan.envs.base import WORKSPACE


@dataclass
class SimContext:
    """What the simulator plans from: the env's exact full state and the pusher position."""

    state: np.ndarray  # full state from env.unwrapped.get_state()
    agent_pos: np.ndarray  # (2,) env units


class PrivilegedState(gym.ObservationWrapper):
    """Adds the exact simulator state, ``obs["sim_state"]``, for ground-truth planning."""

    # The full state's length varies with the contact-cache replay, so ``sim_state`` is not
    # declared in the observation space: it is privileged side information for planners.

    def observation(self, observation: dict) -> dict:
        return {**observation, "sim_state": self.env.unwrapped.get_state()}


def normalize_actions(actions: np.ndarray | Tensor, low, high):
    """Env units -> [-1, 1]."""
    return 2.0 * (actions - low) / (high - low) - 1.0


def unnormalize_actions(actions: np.ndarray | Tensor, low, high):
    """[-1, 1] -> env units."""
    return low + (actions + 1.0) / 2.0 * (high - low)


class SimulatorDynamics:
    """Ground-truth dynamics: every candidate is executed in a private copy of the environment
    from the exact current state (bit-identical to what the real episode would do).

    One ``rollout`` call takes the whole population; Chipmunk is sequential, so inside it the
    candidates run one after another. ``Rollout.states`` is (N, H, P): the physical state after
    each action; ``extras["terminated"]`` (N, H) marks steps where the task ended.
    """

    n_history = 1

    def __init__(self, env_id: str, env_kwargs: dict | None = None):
        self.env_id = env_id
        self.env = gym.make(env_id, render_mode=None, **(env_kwargs or {})).unwrapped
        self.physical_dim = self.env.physical_dim
        self.action_low = np.zeros(2)
        self.action_high = np.full(2, WORKSPACE)

    def context(self, history: Sequence[dict]) -> SimContext:
        obs = history[-1]
        if "sim_state" not in obs:
            raise ValueError("SimulatorDynamics needs the exact env state in obs['sim_state']: wrap the "
                             "env with uva_plan.adapters.PrivilegedState (the runner does this)")
        return SimContext(state=np.asarray(obs["sim_state"], dtype=np.float64),
                          agent_pos=np.asarray(obs["agent_pos"], dtype=np.float64))

    def initial_plan(self, context: SimContext, horizon: int) -> Tensor:
        """Hold the pusher where it is: (H, 2) normalised."""
        here = normalize_actions(context.agent_pos, self.action_low, self.action_high)
        return torch.from_numpy(np.tile(here, (horizon, 1))).float()

    @torch.no_grad()
    def rollout(self, context: SimContext, actions: Tensor) -> Rollout:
        if actions.ndim != 3 or actions.shape[-1] != 2:
            raise ValueError(f"actions must be (N, H, 2), got {tuple(actions.shape)}")
        targets = unnormalize_actions(actions.detach().cpu().double().numpy(), self.action_low, self.action_high)
        n, horizon, _ = targets.shape
        states = np.empty((n, horizon, self.physical_dim))
        terminated = np.zeros((n, horizon), dtype=bool)
        env = self.env
        for i in range(n):
            env.set_state(context.state)
            for h in range(horizon):
                _, terminated[i, h], _ = env.sim_step(targets[i, h])
                states[i, h] = env._read_physical()
        return Rollout(actions=actions, states=torch.from_numpy(states), context=context,
                       extras={"terminated": torch.from_numpy(terminated)})


class _Proposer:
    """Shared seeding and bounds; subclasses draw (n, H, A) env-unit chunks in ``_draw``."""

    def __init__(self, horizon: int = 16, action_low=(0.0, 0.0), action_high=(WORKSPACE, WORKSPACE),
                 seed: int = 0):
        if not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be an int >= 1, got {horizon=}")
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
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n=}")
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
