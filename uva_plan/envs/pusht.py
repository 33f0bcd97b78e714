"""Push-T, faithful to Diffusion Policy's environment (physics, reward, reset), on pymunk 7.

Push a T-shaped block onto a goal pose with a disc pusher. Physics constants, the T's
construction (including the original's moment of inertia) and the seeded reset distribution
follow Diffusion Policy; ``reset(seed=s)`` gives the same initial state as the original's
seed s. See ``base.py`` for the controller and the exact-restore scheme.

Physical state (14 float64), the first 14 entries of ``get_state()`` (see ``base.py`` for the
rest of the exact full state) and what data sets store:
    0:2 agent xy, 2:4 agent velocity, 4:6 block centre of gravity xy, 6 block angle,
    7:9 block velocity, 9 block angular velocity, 10:13 goal pose (x, y, angle), 13 max coverage.
``set_state`` also takes Diffusion Policy's 5-d state (agent xy, block xy, block angle, the
block's xy being its body origin; velocities zero), settling it with one physics substep as
the original does, so that recorded trajectories replay.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pymunk

from uva_plan.envs.base import WORKSPACE, PlanarPushEnv, read_body, write_body
from uva_plan.envs.geometry import TEE_COG, TEE_PARTS, tee_coverage, transform_points

GOAL_POSE = np.array([256.0, 256.0, math.pi / 4])
SUCCESS_THRESHOLD = 0.95
STATE_DIM = 14  # physical state; see base.py for the full (exact) state
DP_STATE_DIM = 5
# Diffusion Policy's colours: LightGreen goal, LightSlateGray T, RoyalBlue agent.
GOAL_COLOR, TEE_COLOR, AGENT_COLOR = (144, 238, 144), (119, 136, 153), (65, 105, 225)


def cog_from_origin(x: float, y: float, angle: float) -> tuple[float, float]:
    """Block centre of gravity from Diffusion Policy's body-origin position (Chipmunk's order)."""
    c, s = math.cos(angle), math.sin(angle)
    return (c * TEE_COG[0] + -s * TEE_COG[1]) + x, (s * TEE_COG[0] + c * TEE_COG[1]) + y


def origin_from_cog(cx: float, cy: float, angle: float) -> tuple[float, float]:
    """Diffusion Policy's body-origin position from the centre of gravity (Chipmunk's order)."""
    c, s = math.cos(angle), math.sin(angle)
    return cx - (TEE_COG[0] * c - TEE_COG[1] * s), cy - (TEE_COG[0] * s + TEE_COG[1] * c)


# -- named views of physical states (..., >= 14): the layout in the module docstring ---------------
def agent_position(states: np.ndarray) -> np.ndarray:
    """The pusher's position (..., 2) px."""
    return np.asarray(states, dtype=np.float64)[..., 0:2]


def block_cog(states: np.ndarray) -> np.ndarray:
    """The T's centre of gravity (..., 2) px (the state holds the CoG, not the body origin)."""
    return np.asarray(states, dtype=np.float64)[..., 4:6]


def block_angle(states: np.ndarray) -> np.ndarray:
    """The T's angle (...,) rad."""
    return np.asarray(states, dtype=np.float64)[..., 6]


def goal_pose(states: np.ndarray) -> np.ndarray:
    """The goal pose (..., 3): the goal T's body origin x, y and its angle."""
    return np.asarray(states, dtype=np.float64)[..., 10:13]


def block_poses(states: np.ndarray) -> np.ndarray:
    """Diffusion Policy block poses (B, 3) (origin x, y, angle) from (B, >= 14) states."""
    states = np.asarray(states, dtype=np.float64)
    c, s = np.cos(states[:, 6]), np.sin(states[:, 6])
    x = states[:, 4] - (TEE_COG[0] * c - TEE_COG[1] * s)
    y = states[:, 5] - (TEE_COG[0] * s + TEE_COG[1] * c)
    return np.stack([x, y, states[:, 6]], axis=1)


def dp_states(states: np.ndarray) -> np.ndarray:
    """Diffusion Policy's 5-d observation (B, 5) from (B, 14) full states (angle mod 2 pi)."""
    poses = block_poses(states)
    return np.concatenate([states[:, :2], poses[:, :2], (poses[:, 2:] % (2 * np.pi))], axis=1)


def coverage(states: np.ndarray) -> np.ndarray:
    """Exact fraction of each state's goal T covered by its block T, (B, >= 14) -> (B,)."""
    states = np.atleast_2d(np.asarray(states, dtype=np.float64))
    poses = block_poses(states)
    goals = goal_pose(states)
    if np.all(goals == goals[:1]):
        return tee_coverage(poses, goals[0])
    return np.array([tee_coverage(poses[i:i + 1], goals[i])[0] for i in range(len(states))])


# -- the task: its goal and its costs, for the objectives ----------------------------------------
# An episode's goal is a dict of named fields; Push-T's is the goal pose, the env's fixed one
# unless the episode says otherwise (``PushTRandomGoal``).
GOAL_FIELDS = ("goal_pose",)
DEFAULT_GOAL = {"goal_pose": GOAL_POSE}
EXAMPLE_GOAL = DEFAULT_GOAL  # any valid goal (what shape a rendered goal has)


def goal_of(state: np.ndarray) -> dict:
    """The goal fields a physical state (>= 14,) holds."""
    return {"goal_pose": goal_pose(state)}


def check_goal(goal: dict) -> dict:
    """``goal`` with its goal pose as a finite float64 (3,) array; ValueError otherwise."""
    pose = np.asarray(goal["goal_pose"], dtype=np.float64)
    if pose.shape != (3,) or not np.isfinite(pose).all():
        raise ValueError(f"goal_pose must be finite with shape (3,) (x, y, angle), got {goal['goal_pose']!r}")
    return {"goal_pose": pose}


def solved_state(goal: dict, pusher: np.ndarray) -> np.ndarray:
    """The physical state (14,) of the task solved: the T on ``goal["goal_pose"]``, at rest,
    the pusher at ``pusher`` (2,)."""
    pose = goal["goal_pose"]
    state = np.zeros(STATE_DIM)
    state[0:2] = pusher
    state[4:6] = cog_from_origin(*pose)  # the physical state holds the CoG
    state[6] = pose[2]
    state[10:13] = pose
    return state


def compose_states(objects: dict, goal: dict) -> np.ndarray:
    """Physical states (..., 14) at rest from object positions: ``objects["agent"]`` and
    ``objects["tee"]`` (..., 2) px (the T's CoG), ``objects["tee_angle"]`` (...,) rad."""
    agent = np.asarray(objects["agent"])
    states = np.zeros((*agent.shape[:-1], STATE_DIM))
    states[..., 0:2], states[..., 4:6], states[..., 6] = agent, objects["tee"], objects["tee_angle"]
    states[..., 10:13] = goal["goal_pose"]
    return states


def sim_cost(states: np.ndarray, coverage_weight: float, angle_weight: float, approach_weight: float,
             behind_distance: float) -> np.ndarray:
    """Cost (N,) of N candidates' exact state trajectories (N, H, >= 14): ``-coverage_weight`` x
    the best coverage reached, plus the final pose error (CoG distance in px + ``angle_weight``
    x angle error in rad), plus ``approach_weight`` x the pusher's final distance to the point
    ``behind_distance`` px behind the T's CoG, seen from the goal."""
    n, horizon, _ = states.shape
    flat = states.reshape(n * horizon, -1)
    best_coverage = coverage(flat).reshape(n, horizon).max(axis=1)
    final = states[:, -1]
    goal = goal_pose(final)
    c, s = np.cos(goal[:, 2]), np.sin(goal[:, 2])
    goal_cog = goal[:, :2] + np.stack([-s * TEE_COG[1], c * TEE_COG[1]], axis=1)
    cog = block_cog(final)
    position_error = np.linalg.norm(cog - goal_cog, axis=1)
    angle_error = np.abs((block_angle(final) - goal[:, 2] + np.pi) % (2 * np.pi) - np.pi)
    # Pull the pusher to the far side of the block from the goal (where a push moves it
    # goalwards) rather than onto the block, fading out as the block reaches the goal.
    away = cog - goal_cog
    distance = np.linalg.norm(away, axis=1, keepdims=True)
    behind = cog + behind_distance * away / np.maximum(distance, 1e-9)
    fade = np.minimum(1.0, distance[:, 0] / behind_distance)
    approach = fade * np.linalg.norm(agent_position(final) - behind, axis=1)
    return (-coverage_weight * best_coverage + position_error
            + angle_weight * angle_error + approach_weight * approach)


def pose_cost(poses: np.ndarray, goal: dict, weights: dict) -> np.ndarray:
    """Cost (B,) of T poses (B, 3) (CoG x, y, angle: a state head's reading; NaN rows stay NaN):
    ``1 - coverage`` of the goal T plus ``weights["pose_weight"]`` x (CoG distance /
    ``weights["position_scale"]`` px + angle error / pi), which still ranks poses that cover
    nothing."""
    goal = goal["goal_pose"]
    c, s = np.cos(poses[:, 2]), np.sin(poses[:, 2])
    origin = np.stack([poses[:, 0] - (TEE_COG[0] * c - TEE_COG[1] * s),
                       poses[:, 1] - (TEE_COG[0] * s + TEE_COG[1] * c), poses[:, 2]], axis=1)
    finite = np.isfinite(poses).all(axis=1)
    covered = np.full(len(poses), math.nan)
    if finite.any():
        covered[finite] = tee_coverage(np.ascontiguousarray(origin[finite]), goal)
    gc, gs = math.cos(goal[2]), math.sin(goal[2])
    goal_cog = goal[:2] + np.array([TEE_COG[0] * gc - TEE_COG[1] * gs, TEE_COG[0] * gs + TEE_COG[1] * gc])
    distance = np.linalg.norm(poses[:, :2] - goal_cog, axis=1)
    angle_error = np.abs((poses[:, 2] - goal[2] + np.pi) % (2 * np.pi) - np.pi)
    return 1.0 - covered + weights["pose_weight"] * (distance / weights["position_scale"] + angle_error / np.pi)


class PushTEnv(PlanarPushEnv):
    """Diffusion Policy's Push-T. Observation: ``image`` (S, S, 3) uint8, ``agent_pos`` (2,),
    ``state`` (5,); with ``random_goal`` also ``goal_pose`` (3,). Info: ``coverage``,
    ``is_success``, ``max_coverage``. Actions are absolute pusher targets in pixels, clipped
    to [0, 512]."""

    physical_dim = STATE_DIM
    position_entries = (("agent", 0), ("block", 4), ("goal", 10))

    def __init__(self, render_size: int = 64, random_goal: bool = False,
                 render_mode: str | None = "rgb_array", restore_mode: str = "anchor"):
        self.random_goal = bool(random_goal)
        self.goal_pose = GOAL_POSE.copy()
        self.max_coverage = 0.0
        super().__init__(render_size=render_size, render_mode=render_mode, restore_mode=restore_mode)
        spaces = {
            "image": gym.spaces.Box(0, 255, (self.render_size, self.render_size, 3), np.uint8),
            "agent_pos": gym.spaces.Box(0.0, WORKSPACE, (2,), np.float64),
            "state": gym.spaces.Box(np.zeros(5), np.array([WORKSPACE] * 4 + [2 * np.pi]),
                                    (5,), np.float64),
        }
        if self.random_goal:
            spaces["goal_pose"] = gym.spaces.Box(np.zeros(3), np.array([WORKSPACE] * 2 + [2 * np.pi]),
                                                 (3,), np.float64)
        self.observation_space = gym.spaces.Dict(spaces)

    def _make_bodies(self) -> list:
        crossbar, stem = TEE_PARTS
        # The original takes the crossbar's moment for both parts (a slip every published
        # number includes); moment_for_poly is about the body origin, as in the original.
        inertia = 2 * pymunk.moment_for_poly(1, [tuple(v) for v in crossbar])
        self.block = pymunk.Body(1, inertia)
        # Shapes are expressed about the centre of gravity so that the body's position *is*
        # the CoG: then positions round-trip exactly through get_state/set_state.
        shapes = [pymunk.Poly(self.block, [tuple(v - TEE_COG) for v in part]) for part in (crossbar, stem)]
        return [self.block, *shapes]

    # -- state --------------------------------------------------------------------------------
    def _read_physical(self) -> list[float]:
        ax, ay = self.agent.position
        avx, avy = self.agent.velocity
        return [ax, ay, avx, avy, *read_body(self.block), *self.goal_pose, self.max_coverage]

    def _write_physical(self, values: list[float]) -> None:
        self.agent.position = (values[0], values[1])
        self.agent.velocity = (values[2], values[3])
        write_body(self.block, *values[4:10])
        self.goal_pose = np.array(values[10:13])
        self.max_coverage = values[13]

    def set_state(self, state: np.ndarray) -> None:
        """Restore a full or physical state (see ``base``), or Diffusion Policy's 5-d state:
        agent xy, block origin xy, block angle, velocities zero, settled with one physics
        substep as the original does. The goal pose is kept for a 5-d state."""
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (DP_STATE_DIM,):
            return super().set_state(state)
        if not np.isfinite(state).all():
            raise ValueError(f"Push-T state must be finite, got {state.tolist()}")
        for name, start in (("agent", 0), ("block", 2)):
            xy = state[start:start + 2]
            if ((xy < 0) | (xy > WORKSPACE)).any():
                raise ValueError(f"Push-T 5-d state: the {name} position is outside the workspace "
                                 f"[0, {WORKSPACE:g}] x [0, {WORKSPACE:g}], got {xy.tolist()}")
        ax, ay, bx, by, angle = state.tolist()
        self._build_objects()
        self.agent.position = (ax, ay)
        self.agent.velocity = (0.0, 0.0)
        write_body(self.block, *cog_from_origin(bx, by, angle), angle)
        self._fresh_space()
        self._settle()
        self.max_coverage = float(coverage(np.array([self._read_physical()]))[0])

    # -- gymnasium API ------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self._check_seed(seed)
        super().reset(seed=seed)
        rs = self._seed_rng(seed)
        options = self._options(options)
        unknown = set(options) - {"state", "goal_pose"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; expected 'state', 'goal_pose'")
        # Diffusion Policy's reset distribution, drawn in its order (integer positions).
        init = np.array([rs.randint(50, 450), rs.randint(50, 450), rs.randint(100, 400),
                         rs.randint(100, 400), rs.randn() * 2 * np.pi - np.pi], dtype=np.float64)
        goal = GOAL_POSE.copy()
        if self.random_goal:
            goal = np.array([rs.uniform(160, 352), rs.uniform(160, 352), rs.uniform(0, 2 * np.pi)])
        if "goal_pose" in options:
            goal = np.asarray(options["goal_pose"], dtype=np.float64)
            if goal.shape != (3,) or not np.isfinite(goal).all():
                raise ValueError(f"goal_pose must be 3 finite floats (x, y, angle), got {options['goal_pose']!r}")
        self.goal_pose = goal
        self.set_state(options.get("state", init))  # 5-d states settle as in the original
        self.max_coverage = float(coverage(np.array([self._read_physical()]))[0])
        return self._observe(), self._info(self.max_coverage)

    def _info(self, cov: float) -> dict:
        return {"coverage": cov, "is_success": bool(cov > SUCCESS_THRESHOLD),
                "max_coverage": self.max_coverage}

    def _evaluate(self) -> tuple[float, bool, dict]:
        cov = float(coverage(np.array([self._read_physical()]))[0])
        self.max_coverage = max(self.max_coverage, cov)
        reward = float(np.clip(cov / SUCCESS_THRESHOLD, 0.0, 1.0))
        return reward, bool(cov > SUCCESS_THRESHOLD), self._info(cov)

    def _observe(self) -> dict:
        state = np.array(self._read_physical())
        obs = {
            "image": self.render_states(state[None], self.render_size)[0],
            "agent_pos": state[:2].copy(),
            "state": dp_states(state[None])[0],
        }
        if self.random_goal:
            obs["goal_pose"] = np.array([*self.goal_pose[:2], self.goal_pose[2] % (2 * np.pi)])
        return obs

    # -- rendering ------------------------------------------------------------------------------
    @classmethod
    def scene(cls, states: np.ndarray) -> tuple:
        n = len(states)
        poses = block_poses(states)
        polygons = np.empty((n, 4, 4, 2))
        for i in range(n):
            goal = states[i, 10:13]
            polygons[i, :2] = transform_points(TEE_PARTS, goal[0], goal[1], goal[2])
            polygons[i, 2:] = transform_points(TEE_PARTS, poses[i, 0], poses[i, 1], poses[i, 2])
        discs = np.concatenate([states[:, None, :2], np.full((n, 1, 1), cls.agent_radius)], axis=2)
        colors = np.array([GOAL_COLOR, GOAL_COLOR, TEE_COLOR, TEE_COLOR])
        return polygons, np.full(4, 4), colors, discs, np.array([AGENT_COLOR]), (255, 255, 255)


ENV_CLASS = PushTEnv  # what renders this task's states
