"""Objectives: rollouts -> costs (N,), lower is better.

The simulator objectives read exact physical states (``Rollout.states`` (N, H, P)) and apply
the task's own analytic reward with a shaped distance so that candidates that do not yet
touch the block are still ranked. Learned objectives (state head, goal image) read imagined
latents instead and arrive with the models.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from planners import Rollout
from uva_plan.envs import blockpush as bp
from uva_plan.envs import pusht


def _states(rollout: Rollout, physical_dim: int) -> np.ndarray:
    if rollout.states is None:
        raise ValueError("this objective needs rollout.states (N, H, P): use simulator dynamics")
    states = rollout.states.detach().cpu().double().numpy()
    if states.ndim != 3 or states.shape[-1] < physical_dim:
        raise ValueError(f"rollout.states must be (N, H, >= {physical_dim}), got {states.shape}")
    return states


class PushTSimObjective:
    """Push-T on exact states: ``-coverage_weight * best coverage reached`` plus the final
    pose error (CoG distance in px + ``angle_weight`` x angle error in rad) plus
    ``approach_weight`` x the pusher's final distance to the point ``behind_distance`` px
    behind the block's CoG, seen from the goal."""

    def __init__(self, coverage_weight: float = 200.0, angle_weight: float = 60.0,
                 approach_weight: float = 0.1, behind_distance: float = 90.0):
        for name, value in (("coverage_weight", coverage_weight), ("angle_weight", angle_weight),
                            ("approach_weight", approach_weight), ("behind_distance", behind_distance)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {name}={value!r}")
        self.coverage_weight, self.angle_weight = coverage_weight, angle_weight
        self.approach_weight, self.behind_distance = approach_weight, behind_distance

    def cost(self, rollout: Rollout) -> Tensor:
        states = _states(rollout, pusht.STATE_DIM)
        n, horizon, _ = states.shape
        flat = states.reshape(n * horizon, -1)
        best_coverage = pusht.coverage(flat).reshape(n, horizon).max(axis=1)
        final = states[:, -1]
        goal = final[:, 10:13]
        c, s = np.cos(goal[:, 2]), np.sin(goal[:, 2])
        goal_cog = goal[:, :2] + np.stack([-s * pusht.TEE_COG[1], c * pusht.TEE_COG[1]], axis=1)
        position_error = np.linalg.norm(final[:, 4:6] - goal_cog, axis=1)
        angle_error = np.abs((final[:, 6] - goal[:, 2] + np.pi) % (2 * np.pi) - np.pi)
        # Pull the pusher to the far side of the block from the goal (where a push moves it
        # goalwards) rather than onto the block, fading out as the block reaches the goal.
        away = final[:, 4:6] - goal_cog
        distance = np.linalg.norm(away, axis=1, keepdims=True)
        behind = final[:, 4:6] + self.behind_distance * away / np.maximum(distance, 1e-9)
        fade = np.minimum(1.0, distance[:, 0] / self.behind_distance)
        approach = fade * np.linalg.norm(final[:, :2] - behind, axis=1)
        cost = (-self.coverage_weight * best_coverage + position_error
                + self.angle_weight * angle_error + self.approach_weight * approach)
        return torch.from_numpy(cost)


class BlockPushSimObjective:
    """BlockPush on exact states for a named (block -> target) assignment, the other block to
    the other target: distances (px) of both blocks to their targets (the named one weighted
    ``named_weight``), a bonus ``success_bonus`` once the named block has entered the named
    target, and ``approach_weight`` x the pusher's distance to the block that still needs work.
    The task comes from the state (``reset(options={"task": ...})``) unless given here."""

    def __init__(self, task=None, named_weight: float = 2.0, success_bonus: float = 500.0,
                 approach_weight: float = 0.2):
        self.task = None if task is None else bp.parse_task(task)
        self.named_weight, self.success_bonus = named_weight, success_bonus
        self.approach_weight = approach_weight

    def cost(self, rollout: Rollout) -> Tensor:
        states = _states(rollout, bp.STATE_DIM)
        final = states[:, -1]
        task = self.task if self.task is not None else int(final[0, 24])
        if task < 0:
            raise ValueError("BlockPushSimObjective needs a named task: the env has none "
                             "(reset with options={'task': 0..3}) and none was given")
        block, target = divmod(task, 2)
        other_block, other_target = 1 - block, 1 - target
        blocks, targets = bp.block_centres(final), bp.target_centres(final)
        named = np.linalg.norm(blocks[:, block] - targets[:, target], axis=1)
        other = np.linalg.norm(blocks[:, other_block] - targets[:, other_target], axis=1)
        entered = states[:, :, 20 + 2 * block + target].max(axis=1) > 0.5
        # The pusher should work on the named block until it is in, then on the other one.
        focus = np.where(entered[:, None], blocks[:, other_block], blocks[:, block])
        approach = np.linalg.norm(final[:, :2] - focus, axis=1)
        cost = (self.named_weight * named + other - self.success_bonus * entered
                + self.approach_weight * approach)
        return torch.from_numpy(cost)
