"""The ground-truth simulator behind the Dynamics protocol.

``SimulatorDynamics`` rolls candidates out in the real environment from its exact state: the
upper bound every learned dynamics model is judged against. It needs the environment's full
state in each observation, which ``PrivilegedState`` (a gymnasium wrapper) adds as
``obs["sim_state"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from planners.checks import check_int
from planners.protocols import Rollout, RolloutRequest, normalize_actions, unnormalize_actions
from uva_plan.envs.base import WORKSPACE


@dataclass
class SimContext:
    """What the simulator plans from: the env's exact full state and the pusher position."""

    state: np.ndarray  # full state from env.unwrapped.get_state()
    agent_pos: np.ndarray  # (2,) env units
    # With SimulatorDynamics(n_history >= 2): the last n_history observations' frames (T, S, S, 3)
    # and pusher positions (T, 2), oldest first, for a proposer that reads them (DP-C).
    frames: np.ndarray | None = None
    agent_pos_history: np.ndarray | None = None


class PrivilegedState(gym.ObservationWrapper):
    """Adds the exact simulator state, ``obs["sim_state"]``, for ground-truth planning."""

    # The full state's length varies with the contact-cache replay, so ``sim_state`` is not
    # declared in the observation space: it is privileged side information for planners.

    def observation(self, observation: dict) -> dict:
        return {**observation, "sim_state": self.env.unwrapped.get_state()}



class SimulatorDynamics:
    """Ground-truth dynamics: every candidate is executed in a private copy of the environment
    from the exact current state (bit-identical to what the real episode would do).

    One ``rollout`` call takes the whole population; Chipmunk is sequential, so inside it the
    candidates run one after another. ``Rollout.states`` is (N, H, P): the physical state after
    each action; ``extras["terminated"]`` (N, H) marks steps where the task ended.
    """

    def __init__(self, env_id: str, env_kwargs: dict | None = None, n_history: int = 1):
        check_int("n_history", n_history, 1)
        self.env_id, self.n_history = env_id, n_history
        try:
            self.env = gym.make(env_id, render_mode=None, **(env_kwargs or {})).unwrapped
        except gym.error.Error as error:
            ours = sorted(k for k in gym.registry if k.startswith("uva_plan/"))
            raise ValueError(f"env_id {env_id!r} is not a registered environment ({error}); ours: {ours}") from error
        self.physical_dim = self.env.physical_dim
        self.action_low = np.zeros(2)
        self.action_high = np.full(2, WORKSPACE)

    def context(self, history: Sequence[dict]) -> SimContext:
        obs = history[-1]
        if "sim_state" not in obs:
            raise ValueError("SimulatorDynamics needs the exact env state in obs['sim_state']: wrap the "
                             "env with uva_plan.dynamics.PrivilegedState (the runner does this)")
        context = SimContext(state=np.asarray(obs["sim_state"], dtype=np.float64),
                             agent_pos=np.asarray(obs["agent_pos"], dtype=np.float64))
        if self.n_history > 1:
            context.frames = np.stack([o["image"] for o in history])
            context.agent_pos_history = np.stack([np.asarray(o["agent_pos"], dtype=np.float64) for o in history])
        return context

    def initial_plan(self, context: SimContext, horizon: int) -> Tensor:
        """Hold the pusher where it is: (H, 2) normalised."""
        here = normalize_actions(context.agent_pos, self.action_low, self.action_high)
        return torch.from_numpy(np.tile(here, (horizon, 1))).float()

    @torch.no_grad()
    def rollout(self, context: SimContext, actions: Tensor, request: RolloutRequest | None = None) -> Rollout:
        """Simulated states of every step; a ``request``'s frames are all there (none is skipped)."""
        if actions.ndim != 3 or actions.shape[-1] != 2:
            raise ValueError(f"actions must be (N, H, 2), got {tuple(actions.shape)}")
        if request is not None and request.imagine != "video":
            raise ValueError(f"SimulatorDynamics simulates states: it cannot imagine {request.imagine!r} "
                             "(the objective's RolloutRequest); use a world model with a pose head")
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
