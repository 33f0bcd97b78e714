"""A strong Push-T expert: greedy search over pushing primitives on the ground-truth simulator.

Every decision enumerates pushing primitives, one per (contact point on the T's outline, push
length): walk around the block to a point just outside the contact, then push along the
inward normal. Each primitive is simulated from the current state on a private copy of the
environment, scored by the block's pose error to the goal, and the best one is executed
before deciding again. It uses privileged state and the true physics, so it is a demonstrator
and an upper-bound reference, not a policy a learned model could imitate step for step.
"""

from __future__ import annotations

import math

import numpy as np

from uva_plan.envs.pusht import PushTEnv, cog_from_origin

# The T's outline in body coordinates (origin at the crossbar's top edge), counter-clockwise
# in y-down screen space, and the shift to CoG-centred coordinates used by the simulator.
_OUTLINE = np.array([(-60, 0), (60, 0), (60, 30), (15, 30), (15, 120), (-15, 120), (-15, 30),
                     (-60, 30)], dtype=np.float64) - np.array([0.0, 45.0])


def _contact_points(spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Points along the outline (K, 2) and their outward unit normals (K, 2), CoG frame."""
    x, y = _OUTLINE[:, 0], _OUTLINE[:, 1]
    orientation = np.sign(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))
    points, normals = [], []
    for i in range(len(_OUTLINE)):
        a, b = _OUTLINE[i], _OUTLINE[(i + 1) % len(_OUTLINE)]
        edge = b - a
        length = float(np.linalg.norm(edge))
        normal = orientation * np.array([edge[1], -edge[0]]) / length
        n_points = max(1, int(length // spacing))
        for k in range(n_points):
            points.append(a + edge * (k + 0.5) / n_points)
            normals.append(normal)
    return np.array(points), np.array(normals)


def _rotate(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], axis=-1)


def pose_error(physical: np.ndarray, angle_weight: float = 60.0) -> float:
    """Block CoG distance to the goal CoG (px) plus ``angle_weight`` x angle error (rad)."""
    goal = physical[10:13]
    gx, gy = cog_from_origin(goal[0], goal[1], goal[2])
    d_angle = (physical[6] - goal[2] + math.pi) % (2 * math.pi) - math.pi
    return math.hypot(physical[4] - gx, physical[5] - gy) + angle_weight * abs(d_angle)


class PushTExpert:
    """Greedy primitive search on the true simulator (see the module docstring).

    Args:
        seed: seeds the tie-breaking and escape randomness.
        spacing: distance between candidate contact points along the outline (px).
        push_lengths: candidate push lengths (px).
        safe_radius: radius around the block's CoG that approach paths circle along (px).
        step: target motion per control step while moving or pushing (px).
        explore: probability that a decision executes a uniformly drawn primitive instead of the
            best one. 0 (the default) is the demonstrator; above 0 it collects play data: real
            pushes in every direction from the states a demonstrator visits, which a dynamics
            model needs to learn what different actions do (demos alone pair each state with
            nearly one action).
    """

    def __init__(self, seed: int = 0, spacing: float = 15.0,
                 push_lengths: tuple[float, ...] = (8.0, 24.0, 56.0), safe_radius: float = 100.0,
                 step: float = 12.0, explore: float = 0.0):
        if spacing <= 0 or step <= 0 or safe_radius <= 0 or not push_lengths:
            raise ValueError(f"expert sizes must be positive: {spacing=}, {step=}, {safe_radius=}, "
                             f"{push_lengths=}")
        if not 0.0 <= explore <= 1.0:
            raise ValueError(f"explore is a probability in [0, 1], got {explore}")
        self.explore = float(explore)
        self.rng = np.random.default_rng(seed)
        self.points, self.normals = _contact_points(spacing)
        self.push_lengths = tuple(push_lengths)
        self.safe_radius = safe_radius
        self.step = step
        self._sim = PushTEnv(render_mode=None)
        self._queue: list[np.ndarray] = []

    def reset(self, env=None) -> None:
        self._queue = []

    @property
    def will_plan(self) -> bool:
        """Whether the next ``act`` call searches (its queue of primitive actions is empty)."""
        return not self._queue

    def act(self, env) -> np.ndarray:
        if not self._queue:
            self._queue = self._plan(np.array(env.unwrapped._read_physical()))
        return self._queue.pop(0)

    # -- primitive construction -----------------------------------------------------------------
    def _approach(self, agent: np.ndarray, cog: np.ndarray, pre: np.ndarray) -> list[np.ndarray]:
        """Targets that walk from ``agent`` to ``pre`` around the block (circle of safe radius)."""
        path: list[np.ndarray] = []
        if np.linalg.norm(agent - pre) < 2 * self.step:
            return path
        r = self.safe_radius
        rel_a, rel_p = agent - cog, pre - cog
        a0 = math.atan2(rel_a[1], rel_a[0])
        a1 = math.atan2(rel_p[1], rel_p[0])
        waypoints = []
        if np.linalg.norm(rel_a) < r:
            waypoints.append(cog + r * np.array([math.cos(a0), math.sin(a0)]))
        delta = (a1 - a0 + math.pi) % (2 * math.pi) - math.pi
        n_arc = int(abs(delta) * r // (2 * self.step))
        for k in range(1, n_arc + 1):
            ang = a0 + delta * k / (n_arc + 1)
            waypoints.append(cog + r * np.array([math.cos(ang), math.sin(ang)]))
        waypoints.append(pre)
        current = agent
        for w in waypoints:
            dist = float(np.linalg.norm(w - current))
            n = max(1, int(math.ceil(dist / (2 * self.step))))
            for k in range(1, n + 1):
                path.append(current + (w - current) * k / n)
            current = w
        return path

    def _primitives(self, physical: np.ndarray) -> list[list[np.ndarray]]:
        agent, cog, angle = physical[:2], physical[4:6], physical[6]
        points = _rotate(self.points, angle) + cog
        normals = _rotate(self.normals, angle)
        radius = PushTEnv.agent_radius
        primitives = []
        for p, n in zip(points, normals):
            pre = p + n * (radius + 6.0)
            if not (radius <= pre[0] <= 512 - radius and radius <= pre[1] <= 512 - radius):
                continue
            approach = self._approach(agent, cog, pre)
            for length in self.push_lengths:
                n_push = max(1, int(math.ceil(length / self.step)))
                push = [pre - n * (length * k / n_push + 6.0) for k in range(1, n_push + 1)]
                primitives.append(approach + push)
        return primitives

    def _plan(self, physical: np.ndarray) -> list[np.ndarray]:
        primitives = self._primitives(physical)
        if self.explore > 0.0 and self.rng.random() < self.explore:
            return [np.clip(a, 0.0, 512.0) for a in primitives[self.rng.integers(len(primitives))]]
        sim = self._sim
        costs = np.empty(len(primitives))
        for i, actions in enumerate(primitives):
            sim.set_state(physical)
            for a in actions:
                sim._simulate(np.clip(a, 0.0, 512.0))
            costs[i] = pose_error(np.array(sim._read_physical()))
        # Break exact ties randomly; prefer shorter primitives at equal cost.
        lengths = np.array([len(p) for p in primitives])
        order = np.lexsort((self.rng.random(len(costs)), lengths, np.round(costs, 3)))
        best = primitives[order[0]]
        return [np.clip(a, 0.0, 512.0) for a in best]
