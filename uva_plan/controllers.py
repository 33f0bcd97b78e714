"""Env-facing controllers without a search: UVA alone and DP-C alone.

Each has ``Planner``'s interface (``reset``, ``observe``, ``plan``) and keeps its observations in
the same ``History`` (the first observation of an episode padded over the steps before it).
"""

from __future__ import annotations

import numpy as np

from planners.planner import History
from uva_plan.dynamics.uva import UVAWorldModel
from uva_plan.proposers import DPCProposer


class UVAPolicy:
    """UVA alone as the controller: each ``plan`` returns the first ``n_action_steps`` of one
    ``policy`` chunk (no candidates, no video). Same interface as ``Planner``."""

    def __init__(self, model: UVAWorldModel, n_action_steps: int = 8):
        if not (isinstance(n_action_steps, int) and 1 <= n_action_steps <= model.horizon):
            raise ValueError(f"n_action_steps must be an int in [1, {model.horizon}], got {n_action_steps=}")
        self.model, self.n_action_steps = model, n_action_steps
        self.reset()

    def reset(self) -> None:
        self.history = History(self.model.n_history)
        self.model.reset()

    def observe(self, obs: dict) -> None:
        """Record a step's observation (a bad one raises and is not recorded)."""
        self.history.append(obs)

    def plan(self, obs: dict) -> np.ndarray:
        context = self.history.record(obs, self.model.context)  # recorded once the model accepts it
        chunk = self.model.policy(context)[: self.n_action_steps]
        return self.model.normalizer.unnormalize(chunk.double().numpy())


class DPCPolicy:
    """DP-C alone as the controller: the first ``n_action_steps`` of one sampled chunk per call.
    Same interface as ``Planner`` (``reset``, ``observe``, ``plan``)."""

    def __init__(self, proposer: DPCProposer, n_action_steps: int = 8):
        horizon = proposer.config.horizon
        if not (isinstance(n_action_steps, int) and 1 <= n_action_steps <= horizon):
            raise ValueError(f"n_action_steps must be an int in [1, {horizon}], got {n_action_steps=}")
        self.proposer, self.n_action_steps = proposer, n_action_steps
        self.n_history = proposer.config.n_obs_steps
        # A state-mode DP-C reads physical states: the runner then adds obs["sim_state"].
        self.needs_sim_state = proposer.config.obs_mode == "state"
        self.reset()

    def reset(self) -> None:
        self.history = History(self.n_history)
        self.proposer.reset()

    def observe(self, obs: dict) -> None:
        """Record a step's observation (a bad one raises and is not recorded)."""
        self.history.append(obs)

    def context(self, history: list[dict] | None = None) -> dict:
        """The proposer's context from ``history`` (default: the recorded one)."""
        history = list(self.history) if history is None else history
        for key in ("image", "agent_pos"):
            if key not in history[-1]:
                raise ValueError(f"observations must hold {key!r}, got keys {sorted(history[-1])}")
        return {"frames": np.stack([o["image"] for o in history]),
                "agent_pos_history": np.stack([o["agent_pos"] for o in history]),
                "state_history": (np.stack([o["sim_state"][: self.proposer.config.state_dim] for o in history])
                                  if "sim_state" in history[-1] else None)}  # physical states lead the full state

    def plan(self, obs: dict) -> np.ndarray:
        context = self.history.record(obs, self.context)  # recorded once it makes a context
        chunk = self.proposer.sample(context, 1)[0, : self.n_action_steps]
        return self.proposer.normalizers["actions"].unnormalize(chunk.double().numpy())
