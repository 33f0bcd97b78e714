"""IBC's scripted BlockPush oracle: a demonstrator on privileged state (``env.unwrapped``).

A state machine per (block, target) job: approach a pre-push point behind the block, push
through its centre, re-approach when it drifts off the line, retreat when it is in; an
optional ``explore`` adds straight-line detours for play data.
"""

from __future__ import annotations

import math

import numpy as np

from uva_plan.envs.base import WORKSPACE
from uva_plan.envs.blockpush import (BLOCK_SIZE, N_TARGETS, TOLERANCE, BlockPushEnv, block_centres, parse_task,
                                     target_centres)


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.hypot(v[0], v[1]))
    return v / norm if norm > 1e-9 else np.zeros(2)


def _segment_distance(a: np.ndarray, b: np.ndarray, point: np.ndarray) -> float:
    """Distance from ``point`` to the segment a-b."""
    ab = b - a
    length2 = float(ab @ ab)
    frac = 0.0 if length2 == 0 else float(np.clip((point - a) @ ab / length2, 0.0, 1.0))
    return float(np.hypot(*(a + frac * ab - point)))


def _clip_norm(v: np.ndarray, max_norm: float) -> np.ndarray:
    norm = float(np.hypot(v[0], v[1]))
    return v * (max_norm / norm) if norm > max_norm else v


class BlockPushOracle:
    """IBC's scripted block-pushing oracle, on privileged state (``env.unwrapped``).

    For each (block, target) job in turn: walk (around blocks) to a pre-push point behind
    the block on the block-to-target line, push through the block's centre in small steps,
    go back to a new pre-push point when the block drifts off the line, and retreat once the
    block's centre is within ``done_radius`` of the target's; then the other block to the
    other target. The order is the env's task if it has one (that block to that target
    first), else ``assignment``, else one of the 4 (block, target) orders at random. A block
    that leaves its target by more than ``redo_radius`` is pushed back. Actions are absolute
    pusher targets in pixels, at most ``lead`` px ahead of the pusher (``push_lead`` while
    pushing), so the pusher moves about half that per control step, and the target moves by
    at most ``max_target_step`` px from one step to the next.

    Args:
        env: optional env whose task ``reset()`` reads when given no argument.
        assignment: None, 0..3 or (block, target): the first job when the env has no task.
        seed: seeds the random order.
        explore: per-step probability of starting a detour, for play data: 4-12 steps of the
            pusher target moving in a straight line (half the time toward a block, +-45 deg),
            after which the state machine takes over again from wherever that left the blocks.
            0 (the default) is the demonstrator, bit for bit; 0.06 detours ~1/3 of the steps.
    """

    def __init__(self, env=None, assignment=None, seed: int = 0, lead: float = 24.0,
                 push_lead: float = 16.0, margin: float = 4.0, lateral_max: float = 8.0,
                 angle_max: float = 0.5, done_radius: float = 10.0, redo_radius: float = 30.0,
                 block_clearance: float = 80.0, max_target_step: float = 15.0, explore: float = 0.0):
        if not 0.0 <= explore <= 1.0:
            raise ValueError(f"explore is a probability in [0, 1], got {explore}")
        self.explore = float(explore)
        if min(lead, push_lead, margin, lateral_max, angle_max, done_radius, block_clearance,
               max_target_step) <= 0:
            raise ValueError(f"oracle sizes must be positive: {lead=}, {push_lead=}, {margin=}, "
                             f"{lateral_max=}, {angle_max=}, {done_radius=}, {block_clearance=}, "
                             f"{max_target_step=}")
        if not done_radius < redo_radius < TOLERANCE:
            raise ValueError(f"need done_radius < redo_radius < {TOLERANCE}, got {done_radius=}, "
                             f"{redo_radius=}")
        self.env = env
        self.assignment = parse_task(assignment)
        self.rng = np.random.default_rng(seed)
        self.lead, self.push_lead, self.lateral_max, self.angle_max = lead, push_lead, lateral_max, angle_max
        self.done_radius, self.redo_radius, self.block_clearance = done_radius, redo_radius, block_clearance
        self.max_target_step = max_target_step
        radius = BlockPushEnv.agent_radius
        half_diagonal = BLOCK_SIZE / math.sqrt(2)
        self.avoid_radius = half_diagonal + radius + 0.5 * margin  # pusher centre keeps out of it
        self.offset = half_diagonal + radius + margin  # pre-push point behind the block centre
        self.orbit_radius = self.offset + 6.0
        self.reset()

    def reset(self, env_or_obs=None) -> None:
        """New episode: choose the job order from the env's (or obs dict's) task."""
        source = self.env if env_or_obs is None else env_or_obs
        if isinstance(source, dict):
            task = int(source["task"])
        elif source is not None:
            task = source.unwrapped.task
        else:
            task = -1
        if task < 0:
            task = self.assignment
        if task < 0:
            task = int(self.rng.integers(4))
        block, target = divmod(task, N_TARGETS)
        self.jobs = [(block, target), (1 - block, 1 - target)]
        self.completed = [False, False]
        self.mode = "approach"
        self.retreat_point: np.ndarray | None = None
        self.last_action: np.ndarray | None = None
        self.detour: list[np.ndarray] = []

    def act(self, env) -> np.ndarray:
        """Next absolute pusher target (2,) in pixels."""
        state = np.asarray(env.unwrapped._read_physical())
        if self.explore > 0.0 and not self.detour and self.rng.random() < self.explore:
            self.detour = self._plan_detour(state)
        if self.detour:
            self.last_action = np.clip(self.detour.pop(0), 0.0, WORKSPACE)
            self.mode = "approach"  # re-plan the push from wherever the detour ends
            return self.last_action.copy()
        desired = self._target(state)
        if self.last_action is not None:  # smooth demonstrations: bounded target motion
            desired = self.last_action + _clip_norm(desired - self.last_action, self.max_target_step)
        self.last_action = np.clip(desired, 0.0, WORKSPACE)
        return self.last_action.copy()

    def _plan_detour(self, state: np.ndarray) -> list[np.ndarray]:
        """4-12 pusher targets along a straight line from the pusher (see ``explore``)."""
        pusher = state[:2]
        if self.rng.random() < 0.5:
            block = block_centres(state[None])[0][self.rng.integers(2)]
            heading = math.atan2(*(block - pusher)[::-1]) + self.rng.normal(0.0, math.pi / 4)
        else:
            heading = self.rng.uniform(-math.pi, math.pi)
        step = self.max_target_step * self.rng.uniform(0.3, 1.0)
        direction = np.array([math.cos(heading), math.sin(heading)])
        return [pusher + direction * step * k for k in range(1, int(self.rng.integers(4, 13)) + 1)]

    def _target(self, state: np.ndarray) -> np.ndarray:
        """The state machine's pusher target before rate limiting."""
        pusher = state[:2]
        blocks = block_centres(state[None])[0]
        targets = target_centres(state[None])[0]
        for j, (b, t) in enumerate(self.jobs):  # reopen a job whose block was knocked out
            if self.completed[j] and np.hypot(*(blocks[b] - targets[t])) > self.redo_radius:
                self.completed[j] = False
        if self.mode == "retreat":
            if np.hypot(*(pusher - self.retreat_point)) > 3.0:
                return self._navigate(pusher, self.retreat_point, blocks)
            self.mode = "approach"
        open_jobs = [j for j in range(len(self.jobs)) if not self.completed[j]]
        if not open_jobs:
            return pusher.copy()
        b, t = self.jobs[open_jobs[0]]
        block, target = blocks[b], targets[t]
        if np.hypot(*(block - target)) < self.done_radius:
            self.completed[open_jobs[0]] = True
            self.mode = "retreat"
            self.retreat_point = pusher + _unit(pusher - block) * self.lead * 1.5
            return self._navigate(pusher, self.retreat_point, blocks)
        via = self._route(block, target, blocks[1 - b])
        direction = _unit(via - block)
        normal = np.array([-direction[1], direction[0]])
        if self.mode == "push":
            rel = pusher - block
            lateral = float(rel @ normal)
            behind = -float(rel @ direction)
            angle = math.atan2(abs(lateral), max(behind, 1e-9))
            if abs(lateral) > self.lateral_max or angle > self.angle_max or behind > self.offset + 10:
                self.mode = "approach"
            else:
                move = direction * self.push_lead - normal * lateral
                return pusher + _clip_norm(move, self.push_lead)
        pre_push = block - direction * self.offset
        if np.hypot(*(pusher - pre_push)) < 3.0:
            self.mode = "push"
            return pusher + direction * self.push_lead
        return self._navigate(pusher, pre_push, blocks)

    def _route(self, block: np.ndarray, target: np.ndarray, other: np.ndarray) -> np.ndarray:
        """Where to push ``block`` next: the target, or a detour point beside ``other``.

        A detour point is the shortest one whose two legs keep ``block_clearance`` from
        ``other`` (the first leg only as much as the blocks are apart now); when none does,
        the one that keeps the most clearance.
        """
        clear = self.block_clearance
        if _segment_distance(block, target, other) >= clear:
            return target
        first_clear = min(clear, np.hypot(*(block - other))) - 5.0
        direction = _unit(target - block)
        normal = np.array([-direction[1], direction[0]])
        best, best_key = target, (False, -np.inf)
        for side in (-1.0, 1.0):
            for k in (1.1, 1.4, 1.8, 2.3):
                for shift in (-0.5, 0.0, 0.5):
                    point = other + normal * side * k * clear + direction * shift * clear
                    if not ((40 <= point) & (point <= WORKSPACE - 40)).all():
                        continue
                    margin = min(_segment_distance(block, point, other) - first_clear,
                                 _segment_distance(point, target, other) - clear)
                    length = np.hypot(*(point - block)) + np.hypot(*(target - point))
                    key = (margin >= 0, -length if margin >= 0 else margin)
                    if key > best_key:
                        best, best_key = point, key
        return best

    def _navigate(self, pusher: np.ndarray, goal: np.ndarray, blocks: np.ndarray) -> np.ndarray:
        """Step towards ``goal``, circling around any block in the way."""
        # A block already overlapping the goal cannot be avoided: it is nudged instead.
        blocking = [c for c in blocks if _segment_distance(pusher, goal, c) < self.avoid_radius
                    and np.hypot(*(goal - c)) >= self.avoid_radius]
        if blocking:
            centre = min(blocking, key=lambda c: np.hypot(*(c - pusher)))
            here, there = pusher - centre, goal - centre
            turn = math.atan2(here[0] * there[1] - here[1] * there[0], here @ there)
            step = math.copysign(min(self.lead / self.orbit_radius, abs(turn)), turn)
            heading = math.atan2(here[1], here[0]) + step
            waypoint = centre + self.orbit_radius * np.array([math.cos(heading), math.sin(heading)])
            return pusher + _clip_norm(waypoint - pusher, self.lead)
        return pusher + _clip_norm(goal - pusher, self.lead)
