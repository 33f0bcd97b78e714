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


def block_centres(states: np.ndarray) -> np.ndarray:
    """Block centres (B, 2 blocks, 2) from (B, >= 26) states."""
    states = np.asarray(states, dtype=np.float64)
    return np.stack([states[:, 4:6], states[:, 10:12]], axis=1)


def observed_state(physical: np.ndarray) -> np.ndarray:
    """The observation's ``state`` (12,) from a physical state (>= 26,): pusher xy, each block's
    x, y, yaw (yaw in [0, 2 pi)), the two target centres."""
    physical = np.asarray(physical, dtype=np.float64)
    obs_state = np.concatenate([physical[0:2], physical[4:7], physical[10:13], physical[16:20]])
    obs_state[[4, 7]] %= 2 * np.pi
    return obs_state


def target_centres(states: np.ndarray) -> np.ndarray:
    """Target centres (B, 2 targets, 2) from (B, >= 26) states."""
    return np.asarray(states, dtype=np.float64)[:, 16:20].reshape(-1, N_TARGETS, 2)


def in_target(states: np.ndarray) -> np.ndarray:
    """(B, block, target) bool: block centre within ``TOLERANCE`` of the target centre."""
    blocks, targets = block_centres(states), target_centres(states)
    distance = np.linalg.norm(blocks[:, :, None] - targets[:, None], axis=-1)
    return distance < TOLERANCE


def _both_placed(inside: np.ndarray) -> bool:
    """Both blocks in different targets, from one (block, target) bool matrix."""
    return bool((inside[0, 0] and inside[1, 1]) or (inside[0, 1] and inside[1, 0]))


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
        options = dict(options or {})
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


# -- scripted oracle ------------------------------------------------------------------------------
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
