"""BlockPush: IBC's multimodal two-block pushing task, re-made top-down in 2-D on pymunk.

A disc pusher pushes two square blocks (red, blue) into two square target zones (green,
yellow). Scale: 1 cm = 8 px, so the 512 px workspace is 64 cm, a block is 4 cm (32 px) and a
target 12 cm (96 px). A block is *in* a target when its centre is closer than 5 cm (40 px) to
the target's centre. Reward as in IBC: +0.49 the first time each block enters any target,
+0.51 (and ``terminated``) when both blocks sit in different targets at once. An optional
task names one (block, target) pair; ``task_success`` says whether that block has entered
that target, which is what the forward-dynamics guidance experiment scores. See ``base.py``
for the controller and the exact-restore scheme.

Physical state (26 float64), the first 26 entries of ``get_state()``:
    0:2 agent xy, 2:4 agent velocity,
    4:10 block 0 (x, y, angle, vx, vy, angular velocity), 10:16 block 1 (same),
    16:18 target 0 centre, 18:20 target 1 centre,
    20:24 ``entered[b, t]`` (b-major: b0t0, b0t1, b1t0, b1t1), 1.0 once block b's centre has
          been within tolerance of target t this episode,
    24 task (-1 for none, else 2 * block + target),
    25 1.0 once both blocks have sat in different targets at the same time (p2).
Block positions are centres (the shapes are centred on the body origin), so they round-trip
exactly.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pymunk

from uva_plan.envs.base import WORKSPACE, PlanarPushEnv, read_body, write_body
from uva_plan.envs.geometry import transform_points

PX_PER_CM = 8.0
BLOCK_SIZE = 4.0 * PX_PER_CM  # 32 px side
TARGET_SIZE = 12.0 * PX_PER_CM  # 96 px side
TOLERANCE = 5.0 * PX_PER_CM  # 40 px, block centre to target centre
ENTER_REWARD, BOTH_REWARD = 0.49, 0.51
N_BLOCKS = N_TARGETS = 2
STATE_DIM = 26  # physical state; see base.py for the full (exact) state
OBS_STATE_DIM = 12
# Every shape's friction is sqrt(0.5): Chipmunk multiplies the two coefficients of a contact,
# so pusher-block, block-block and block-wall contacts all get 0.5.
SHAPE_FRICTION = math.sqrt(0.5)
BLOCK_COLORS = ((220, 50, 50), (50, 90, 220))  # red, blue
TARGET_COLORS = ((150, 230, 150), (240, 220, 120))  # light green, light yellow
AGENT_COLOR, BACKGROUND = (60, 60, 60), (235, 235, 235)
_SQUARE = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])


def parse_task(task) -> int:
    """Task index in -1..3 from None (-1), an int 0..3 or a (block, target) pair of 0/1."""
    if task is None:
        return -1
    if isinstance(task, (int, np.integer)) and not isinstance(task, bool) and 0 <= task <= 3:
        return int(task)
    if isinstance(task, (tuple, list)) and len(task) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v in (0, 1) for v in task):
        return 2 * int(task[0]) + int(task[1])
    raise ValueError(f"task must be None, an int in 0..3 or a (block, target) pair of 0/1, got {task!r}")


# -- named views of physical states (..., >= 26): the layout in the module docstring ---------------
def agent_position(states: np.ndarray) -> np.ndarray:
    """The pusher's position (..., 2) px."""
    return np.asarray(states, dtype=np.float64)[..., 0:2]


def block_poses(states: np.ndarray) -> np.ndarray:
    """Each block's pose (..., 2 blocks, 3): centre x, y and yaw."""
    states = np.asarray(states, dtype=np.float64)
    return np.stack([states[..., 4:7], states[..., 10:13]], axis=-2)


def block_centres(states: np.ndarray) -> np.ndarray:
    """Block centres (..., 2 blocks, 2) px."""
    states = np.asarray(states, dtype=np.float64)
    return np.stack([states[..., 4:6], states[..., 10:12]], axis=-2)


def target_centres(states: np.ndarray) -> np.ndarray:
    """Target centres (..., 2 targets, 2) px."""
    states = np.asarray(states, dtype=np.float64)
    return states[..., 16:20].reshape(*states.shape[:-1], N_TARGETS, 2)


def entered(states: np.ndarray) -> np.ndarray:
    """(..., block, target) bool: block b has entered target t this episode."""
    states = np.asarray(states, dtype=np.float64)
    return states[..., 20:24].reshape(*states.shape[:-1], N_BLOCKS, N_TARGETS) > 0.5


def task(states: np.ndarray) -> np.ndarray:
    """The named task (...,) int: 2 * block + target, -1 for none."""
    return np.asarray(states, dtype=np.float64)[..., 24].astype(np.int64)


def observed_state(physical: np.ndarray) -> np.ndarray:
    """The observation's ``state`` (12,) from a physical state (>= 26,): pusher xy, each block's
    x, y, yaw (yaw in [0, 2 pi)), the two target centres."""
    physical = np.asarray(physical, dtype=np.float64)
    obs_state = np.concatenate([physical[0:2], physical[4:7], physical[10:13], physical[16:20]])
    obs_state[[4, 7]] %= 2 * np.pi
    return obs_state


def in_target(states: np.ndarray) -> np.ndarray:
    """(..., block, target) bool: block centre within ``TOLERANCE`` of the target centre."""
    blocks, targets = block_centres(states), target_centres(states)
    distance = np.linalg.norm(blocks[..., :, None, :] - targets[..., None, :, :], axis=-1)
    return distance < TOLERANCE


def _both_placed(inside: np.ndarray) -> bool:
    """Both blocks in different targets, from one (block, target) bool matrix."""
    return bool((inside[0, 0] and inside[1, 1]) or (inside[0, 1] and inside[1, 0]))


# -- the task: its goal and its costs, for the objectives ----------------------------------------
# An episode's goal is a dict of named fields; BlockPush's is the named task and where the
# targets are, with no default: an objective needs the episode's own.
GOAL_FIELDS = ("task", "targets")
DEFAULT_GOAL: dict = {}
EXAMPLE_GOAL = {"task": 0, "targets": np.array([[128.0, 256.0], [384.0, 256.0]])}  # any valid goal


def goal_of(state: np.ndarray) -> dict:
    """The goal fields a physical state (>= 26,) holds."""
    return {"task": task(state), "targets": target_centres(state)}


def named_task(value) -> int:
    """A named task 0..3 from an int, a state's float entry or a (block, target) pair; no task
    (-1) is refused: the objectives score one named assignment."""
    if value is not None:
        value = int(value) if np.ndim(value) == 0 else parse_task(tuple(int(v) for v in value))
    if value not in range(4):
        raise ValueError(f"BlockPush needs a named task 0..3, got task={value}: pass task= or reset the "
                         f"env with options={{'task': 0..3}}")
    return value


def check_goal(goal: dict) -> dict:
    """``goal`` with a named task (``named_task``) and targets as finite float64 (2, 2) centres
    in px; ValueError otherwise."""
    named = named_task(goal["task"])
    targets = np.asarray(goal["targets"], dtype=np.float64)
    if targets.shape != (N_TARGETS, 2) or not np.isfinite(targets).all():
        raise ValueError(f"targets must be finite (2, 2) target centres in px, got {goal['targets']!r}")
    return {"task": named, "targets": targets}


def solved_state(goal: dict, pusher: np.ndarray) -> np.ndarray:
    """The physical state (26,) of the task solved: the named block on the named target, the
    other block on the other target, both at yaw 0 and at rest, the pusher at ``pusher`` (2,)."""
    goal = check_goal(goal)
    targets, named = goal["targets"], goal["task"]
    block, target = divmod(named, N_TARGETS)
    state = np.zeros(STATE_DIM)
    state[0:2] = pusher
    state[4 + 6 * block:6 + 6 * block] = targets[target]
    state[4 + 6 * (1 - block):6 + 6 * (1 - block)] = targets[1 - target]
    state[16:20] = targets.ravel()
    state[24] = named
    return state


def compose_states(objects: dict, goal: dict) -> np.ndarray:
    """Physical states (N, F, 26) at rest of N candidates' F frames from object positions
    ``objects["agent"]``, ``objects["block0"]``, ``objects["block1"]`` (N, F, 2) px. A block
    has ``entered`` a target from the first of the F frames that shows it inside."""
    agent = np.asarray(objects["agent"])
    states = np.zeros((*agent.shape[:-1], STATE_DIM))
    states[..., 0:2], states[..., 4:6], states[..., 10:12] = agent, objects["block0"], objects["block1"]
    states[..., 16:20] = goal["targets"].ravel()
    states[..., 20:24] = np.maximum.accumulate(in_target(states), axis=1).reshape(*agent.shape[:-1], 4)
    states[..., 24] = goal["task"]
    return states


def sim_cost(states: np.ndarray, named: int, named_weight: float, success_bonus: float,
             approach_weight: float) -> np.ndarray:
    """Cost (N,) of N candidates' exact state trajectories (N, H, >= 26) for the named task
    (block -> target), the other block to the other target: the final distances (px) of both
    blocks to their targets (the named one weighted ``named_weight``), minus ``success_bonus``
    once the named block has entered the named target, plus ``approach_weight`` x the pusher's
    distance to the block that still needs work."""
    block, target = divmod(named, N_TARGETS)
    other_block, other_target = 1 - block, 1 - target
    final = states[:, -1]
    blocks, targets = block_centres(final), target_centres(final)
    named_distance = np.linalg.norm(blocks[:, block] - targets[:, target], axis=1)
    other_distance = np.linalg.norm(blocks[:, other_block] - targets[:, other_target], axis=1)
    done = entered(states)[:, :, block, target].any(axis=1)
    # The pusher should work on the named block until it is in, then on the other one.
    focus = np.where(done[:, None], blocks[:, other_block], blocks[:, block])
    approach = np.linalg.norm(agent_position(final) - focus, axis=1)
    return (named_weight * named_distance + other_distance - success_bonus * done
            + approach_weight * approach)


def pose_cost(poses: np.ndarray, goal: dict, weights: dict) -> np.ndarray:
    """Cost (B,) of block poses (B, 6) (each block's x, y, yaw: a state head's reading): the
    named block's distance to the named target in units of ``TOLERANCE`` (below 1 = inside),
    plus ``weights["other_weight"]`` x the other block's distance to the other target."""
    block, target = divmod(goal["task"], N_TARGETS)
    targets = goal["targets"]
    centres = poses.reshape(len(poses), N_BLOCKS, 3)[:, :, :2]
    named_distance = np.linalg.norm(centres[:, block] - targets[target], axis=1)
    other_distance = np.linalg.norm(centres[:, 1 - block] - targets[1 - target], axis=1)
    return (named_distance + weights["other_weight"] * other_distance) / TOLERANCE


class BlockPushEnv(PlanarPushEnv):
    """Two blocks, two targets. Observation: ``image`` (S, S, 3) uint8, ``agent_pos`` (2,),
    ``state`` (12,) = agent xy, block 0 (x, y, angle), block 1 (x, y, angle), target 0 xy,
    target 1 xy (angles in [0, 2 pi)), and ``task`` in -1..3. Info: ``in_target`` and
    ``entered`` (2 x 2 bool, [block][target]), ``p1``, ``p2``, ``task`` ((block, target) or
    None), ``task_success``, ``is_success`` (task_success with a task, else p2).

    Args:
        task: None, an int 0..3 (= 2 * block + target) or a (block, target) pair; reset's
            ``task`` option overrides it for one episode.
        render_size: side of the observed image in pixels.
    """

    physical_dim = STATE_DIM
    position_entries = (("agent", 0), ("block 0", 4), ("block 1", 10), ("target 0", 16), ("target 1", 18))
    agent_radius = 12.0  # a smaller pusher turns tighter around the 32 px blocks
    shape_friction = SHAPE_FRICTION

    def __init__(self, task=None, render_size: int = 64, render_mode: str | None = "rgb_array",
                 restore_mode: str = "anchor"):
        self.default_task = parse_task(task)
        self.targets = np.zeros((N_TARGETS, 2))
        self.entered = np.zeros((N_BLOCKS, N_TARGETS))
        self.task = self.default_task
        self.placed = 0.0
        super().__init__(render_size=render_size, render_mode=render_mode, restore_mode=restore_mode)
        angle_high = [WORKSPACE, WORKSPACE, 2 * np.pi]
        high = np.array([WORKSPACE, WORKSPACE, *angle_high, *angle_high] + [WORKSPACE] * 4)
        self.observation_space = gym.spaces.Dict({
            "image": gym.spaces.Box(0, 255, (self.render_size, self.render_size, 3), np.uint8),
            "agent_pos": gym.spaces.Box(0.0, WORKSPACE, (2,), np.float64),
            "state": gym.spaces.Box(np.zeros(OBS_STATE_DIM), high, (OBS_STATE_DIM,), np.float64),
            "task": gym.spaces.Discrete(5, start=-1),
        })

    def _make_bodies(self) -> list:
        self.blocks, shapes = [], []
        for _ in range(N_BLOCKS):
            body = pymunk.Body(1.0, pymunk.moment_for_box(1.0, (BLOCK_SIZE, BLOCK_SIZE)))
            shape = pymunk.Poly.create_box(body, (BLOCK_SIZE, BLOCK_SIZE))  # centred on the origin
            shape.friction = SHAPE_FRICTION
            self.blocks.append(body)
            shapes.append(shape)
        return [*self.blocks, *shapes]

    # -- state --------------------------------------------------------------------------------
    def _read_physical(self) -> list[float]:
        ax, ay = self.agent.position
        avx, avy = self.agent.velocity
        return [ax, ay, avx, avy, *read_body(self.blocks[0]), *read_body(self.blocks[1]),
                *self.targets.ravel().tolist(), *self.entered.ravel().tolist(),
                float(self.task), self.placed]

    def _write_physical(self, values: list[float]) -> None:
        task, flags = values[24], [*values[20:24], values[25]]
        if task not in (-1.0, 0.0, 1.0, 2.0, 3.0):
            raise ValueError(f"state entry 24 (task) must be -1, 0, 1, 2 or 3, got {task}")
        if any(f not in (0.0, 1.0) for f in flags):
            raise ValueError(f"state entries 20:24 and 25 (entered, p2 flags) must be 0 or 1, got {flags}")
        self.agent.position = (values[0], values[1])
        self.agent.velocity = (values[2], values[3])
        write_body(self.blocks[0], *values[4:10])
        write_body(self.blocks[1], *values[10:16])
        self.targets = np.array(values[16:20]).reshape(N_TARGETS, 2)
        self.entered = np.array(values[20:24]).reshape(N_BLOCKS, N_TARGETS)
        self.task = int(task)
        self.placed = values[25]

    # -- gymnasium API ------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Options: ``state`` (full or physical; it carries its own task and flags) and
        ``task`` (None, 0..3 or (block, target)), which overrides the state's and the
        constructor's task."""
        self._check_seed(seed)
        super().reset(seed=seed)
        rs = self._seed_rng(seed)
        options = self._options(options)
        unknown = set(options) - {"state", "task"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; expected 'state', 'task'")
        task = parse_task(options["task"]) if "task" in options else self.default_task
        # Always draw the random scene, so that a seed's scene does not depend on the options.
        initial = self._sample_physical(rs, task)
        state = initial
        if "state" in options:
            state = np.array(options["state"], dtype=np.float64)  # a copy: the task is written in
            if "task" in options and state.ndim == 1 and len(state) >= STATE_DIM:
                state[24] = task
                if len(state) > STATE_DIM:  # the anchor carries it too
                    state[STATE_DIM + 24] = task
        self.set_state(state)
        return self._observe(), self._info()

    @staticmethod
    def _sample_physical(rs: np.random.RandomState, task: int) -> np.ndarray:
        """Random initial physical state: targets up, blocks lower-middle, pusher at the bottom."""
        left_x, right_x = rs.uniform(100, 200), rs.uniform(312, 412)
        xs = (left_x, right_x) if rs.rand() < 0.5 else (right_x, left_x)
        targets = [(x, rs.uniform(90, 170)) for x in xs]
        while True:  # rejection sampling: about half the draws are 80 px apart
            blocks = rs.uniform((150, 280), (362, 380), size=(N_BLOCKS, 2))
            if np.linalg.norm(blocks[0] - blocks[1]) >= 80.0:
                break
        yaws = rs.uniform(0, np.pi / 2, size=N_BLOCKS)  # squares: a quarter turn covers all poses
        agent = (rs.uniform(200, 312), rs.uniform(440, 470))
        block_rows = [[*blocks[b], yaws[b], 0.0, 0.0, 0.0] for b in range(N_BLOCKS)]
        return np.array([*agent, 0.0, 0.0, *block_rows[0], *block_rows[1],
                         *np.ravel(targets), *np.zeros(4), float(task), 0.0])

    def _info(self, inside: np.ndarray | None = None) -> dict:
        if inside is None:
            inside = in_target(np.array([self._read_physical()]))[0]
        task = None if self.task < 0 else divmod(self.task, N_TARGETS)
        task_success = task is not None and bool(self.entered[task])
        p2 = bool(self.placed)
        return {"in_target": inside.tolist(), "entered": (self.entered > 0).tolist(),
                "p1": bool(self.entered.any()), "p2": p2, "task": task,
                "task_success": task_success, "is_success": task_success if task is not None else p2}

    def _evaluate(self) -> tuple[float, bool, dict]:
        inside = in_target(np.array([self._read_physical()]))[0]
        reward = 0.0
        for b in range(N_BLOCKS):
            if inside[b].any() and not self.entered[b].any():
                reward += ENTER_REWARD
        self.entered = np.maximum(self.entered, inside)
        if _both_placed(inside) and not self.placed:
            reward += BOTH_REWARD
            self.placed = 1.0
        return reward, bool(self.placed), self._info(inside)

    def _observe(self) -> dict:
        state = np.array(self._read_physical())
        return {
            "image": self.render_states(state[None], self.render_size)[0],
            "agent_pos": state[:2].copy(),
            "state": observed_state(state),
            "task": np.int64(self.task),
        }

    # -- rendering ------------------------------------------------------------------------------
    @classmethod
    def scene(cls, states: np.ndarray) -> tuple:
        n = len(states)
        polygons = np.empty((n, 4, 4, 2))
        for i in range(n):
            for t in range(N_TARGETS):
                x, y = states[i, 16 + 2 * t:18 + 2 * t]
                polygons[i, t] = transform_points(_SQUARE * TARGET_SIZE, x, y, 0.0)
            for b in range(N_BLOCKS):
                x, y, angle = states[i, 4 + 6 * b:7 + 6 * b]
                polygons[i, 2 + b] = transform_points(_SQUARE * BLOCK_SIZE, x, y, angle)
        discs = np.concatenate([states[:, None, :2], np.full((n, 1, 1), cls.agent_radius)], axis=2)
        colors = np.array([*TARGET_COLORS, *BLOCK_COLORS])
        return polygons, np.full(4, 4), colors, discs, np.array([AGENT_COLOR]), BACKGROUND


ENV_CLASS = BlockPushEnv  # what renders this task's states
