"""Shared machinery of the planar pushing environments.

Both environments are a 512 x 512 pymunk world (y down) with four static walls and a
kinematic disc pusher driven by Diffusion Policy's PD controller: the action is an absolute
target position, and every control step (10 Hz) runs 10 physics substeps of 10 ms with
``accel = K_P (target - p) - K_V v``. Space damping is 0, so pushed bodies stop as soon as
contact ends (quasi-static pushing on a high-friction floor).

Exact state restore. Chipmunk keeps a contact cache between steps (warm-started impulses)
and a broad-phase tree whose shape orders simultaneous contacts; the original keeps one
space for the whole episode, and losing either changes trajectories by pixels within a few
contact-rich steps. Neither is reachable from Python, so the full state records how to
rebuild them: the physical state at an anchor, where the space was freshly built, and the
actions executed since. Restoring = building a fresh space at the anchor and replaying those
actions, so stepping from ``set_state(get_state())`` reproduces the trajectory bit for bit.
Two modes choose the anchors:
- ``restore_mode="anchor"`` (default): every control step that ends with an empty contact
  cache moves the episode into a fresh space and becomes the anchor, so restores replay only
  the current contact run (fast: what the simulator planner needs). The rebuilt broad-phase
  tree can order later simultaneous contacts differently from the original's persistent one,
  so a minority of contact-rich trajectories drift from the original's (benchmarks/dp_fidelity.py).
- ``restore_mode="episode"``: one space per episode, exactly as the original; the anchor is
  the last reset/set_state and restores replay the whole episode so far (slower). Use it to
  replay data recorded in the original environment.
Full state layout, float64:
    [physical (P) | anchor physical (P) | n_replay | replay actions (n_replay x 2)]
where a replay row of NaNs stands for one uncontrolled settling substep. A bare physical
state (P,) is accepted too and starts with an empty cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import pymunk

WORKSPACE = 512.0
SIM_HZ = 100
CONTROL_HZ = 10
N_SUBSTEPS = SIM_HZ // CONTROL_HZ
DT = 1.0 / SIM_HZ
K_P, K_V = 100.0, 20.0
WALL_RADIUS = 2.0
# The reference's walls are segments from (5, 5) to (506, 506) with radius 2: inner faces at 7
# and 504. Ours keep those faces but are WALL_DEPTH thick (segments moved outward, radius grown),
# so an object squeezed by the kinematic pusher cannot be resolved out through a 2 px wall;
# the interior geometry and hence every contact the reference sees are unchanged.
WALL_DEPTH = 100.0
_R = WALL_DEPTH / 2
_IN, _OUT = 5 + WALL_RADIUS - _R, 506 - WALL_RADIUS + _R  # centre lines
WALL_SEGMENTS_RADIUS = _R
WALLS = (((_IN, _OUT), (_IN, _IN)), ((_IN, _IN), (_OUT, _IN)), ((_OUT, _IN), (_OUT, _OUT)),
         ((_IN, _OUT), (_OUT, _OUT)))
RESTORE_MODES = ("anchor", "episode")


def validate_action(action: Any, action_dim: int = 2) -> np.ndarray:
    """Return ``action`` as a float64 (A,) array clipped to the workspace, or raise ValueError.

    Targets outside [0, 512] are clipped (documented behaviour, as a real robot's workspace
    limits would); NaN/inf and wrong shapes are errors.
    """
    items = action if isinstance(action, (list, tuple)) else [action]
    kinds = {np.asarray(a).dtype.kind for a in items}
    if kinds & set("bc") or any(isinstance(a, (bool, complex)) for a in items):
        raise ValueError(f"action must be real numbers (target x, y in pixels), not bool or complex, got {action!r}")
    try:
        arr = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"action must be a numeric array of shape ({action_dim},), got {action!r}") from err
    if arr.shape != (action_dim,):
        raise ValueError(f"action must have shape ({action_dim},) (target x, y in pixels), "
                         f"got shape {arr.shape}: {action!r}")
    if not np.isfinite(arr).all():
        raise ValueError(f"action must be finite, got {arr.tolist()}")
    return np.clip(arr, 0.0, WORKSPACE)


class PlanarPushEnv(gym.Env):
    """Base class: owns the pymunk bodies, the PD pusher and the per-step fresh space.

    Subclasses create their dynamic bodies in ``_make_bodies`` (returning the pymunk objects
    in a fixed order), and implement ``get_state``/``set_state``, ``_observe``, ``_evaluate``
    and ``scene``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_HZ}
    agent_radius = 15.0
    shape_friction = 0.0  # of the pusher and the walls; Chipmunk multiplies both shapes' values

    def __init__(self, render_size: int = 64, render_mode: str | None = "rgb_array",
                 restore_mode: str = "anchor"):
        if restore_mode not in RESTORE_MODES:
            raise ValueError(f"restore_mode must be one of {RESTORE_MODES}, got {restore_mode=}")
        self.restore_mode = restore_mode
        if not (isinstance(render_size, (int, np.integer)) and 8 <= render_size <= 1024):
            raise ValueError(f"render_size must be an int in [8, 1024], got {render_size=}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode=}")
        self.render_size = int(render_size)
        self.render_mode = render_mode
        self.action_space = gym.spaces.Box(0.0, WORKSPACE, shape=(2,), dtype=np.float64)
        self.space: pymunk.Space | None = None
        self._build_objects()
        self._rs = np.random.RandomState(0)
        self._rs_seeded = False

    # -- subclass hooks -------------------------------------------------------------------
    physical_dim: int = 0
    # (name, index of x) of every position in a physical state; each must lie in the workspace.
    position_entries: tuple[tuple[str, int], ...] = ()

    def _make_bodies(self) -> list:
        raise NotImplementedError

    def _read_physical(self) -> list[float]:
        """Bodies' poses and velocities plus episode bookkeeping, as P floats."""
        raise NotImplementedError

    def _write_physical(self, values: list[float]) -> None:
        raise NotImplementedError

    def _observe(self) -> dict:
        raise NotImplementedError

    def _evaluate(self) -> tuple[float, bool, dict]:
        """Update episode bookkeeping after a step; return (reward, terminated, info)."""
        raise NotImplementedError

    @classmethod
    def scene(cls, states: np.ndarray) -> tuple:
        """Shapes for ``render.render_scenes`` from (B, P) physical states."""
        raise NotImplementedError

    # -- physics ----------------------------------------------------------------------------
    def _build_objects(self) -> None:
        """Create every pymunk object anew, detached from any space.

        Restoring a state rebuilds the objects, not just the space: Chipmunk bodies carry a
        bias velocity (position correction from the last contact solve) that Python cannot
        read or reset, and a body reused from another trajectory would carry its leftovers.
        """
        self._detach()
        self._static = pymunk.Body(body_type=pymunk.Body.STATIC)
        self._walls = [pymunk.Segment(self._static, a, b, WALL_SEGMENTS_RADIUS) for a, b in WALLS]
        self.agent = pymunk.Body(body_type=pymunk.Body.KINEMATIC)
        self._agent_shape = pymunk.Circle(self.agent, self.agent_radius)
        for shape in (self._agent_shape, *self._walls):
            shape.friction = self.shape_friction
        self._objects = [self._static, *self._walls, self.agent, self._agent_shape,
                         *self._make_bodies()]

    def _detach(self) -> None:
        if self.space is not None:
            self.space.remove(*reversed(self._objects))  # shapes before their bodies
            self.space = None

    def _fresh_space(self) -> pymunk.Space:
        """Move every object into a new, empty space (no contact cache)."""
        self._detach()
        space = pymunk.Space()
        space.gravity = (0.0, 0.0)
        space.damping = 0.0
        space.add(*self._objects)
        self.space = space
        self._anchor = self._read_physical()
        self._replay: list[tuple[float, float]] = []
        return space

    def _simulate(self, target) -> None:
        """One control step: 10 PD-controlled substeps towards the absolute ``target``."""
        tx, ty = float(target[0]), float(target[1])
        agent, space = self.agent, self.space
        for _ in range(N_SUBSTEPS):
            px, py = agent.position
            vx, vy = agent.velocity
            # Same arithmetic order as Diffusion Policy's controller, for bit-level fidelity.
            ax = K_P * (tx - px) + K_V * (0.0 - vx)
            ay = K_P * (ty - py) + K_V * (0.0 - vy)
            agent.velocity = (vx + ax * DT, vy + ay * DT)
            space.step(DT)
        self._after_step((tx, ty))

    def _settle(self) -> None:
        """One physics substep with no control, as Diffusion Policy runs after setting a state."""
        self.space.step(DT)
        self._after_step((float("nan"), float("nan")))

    def _after_step(self, action: tuple[float, float]) -> None:
        if self.restore_mode == "episode" or self.space._get_arbiters():
            self._replay.append(action)  # contact cache in use: remember how to rebuild it
        else:
            # Cache empty: rebuild the space now, so that the episode's space at this anchor is
            # exactly the one a restore builds (same shape ids, same broad-phase tree).
            self._fresh_space()

    def physical_state(self) -> np.ndarray:
        """The physical state (P,): what data sets store and frames are rendered from."""
        return np.array(self._read_physical())

    def sim_step(self, action: np.ndarray) -> tuple[float, bool, dict]:
        """One control step with the task's bookkeeping but no observation or rendering
        (what planners and experts roll out). Returns (reward, terminated, info)."""
        self._simulate(validate_action(action))
        return self._evaluate()

    # -- state ----------------------------------------------------------------------------------
    def get_state(self) -> np.ndarray:
        """Full state, exact (see the module docstring); the first P entries are physical."""
        replay = np.asarray(self._replay, dtype=np.float64).reshape(-1, 2)
        return np.concatenate([self._read_physical(), self._anchor, [len(replay)], replay.ravel()])

    def set_state(self, state: np.ndarray) -> None:
        """Restore a full state from ``get_state`` exactly, or a bare physical state (P,)."""
        state = np.asarray(state, dtype=np.float64)
        p = self.physical_dim
        if state.ndim != 1 or (len(state) != p and len(state) < 2 * p + 1):
            raise ValueError(f"{type(self).__name__} state must be 1-d with {p} (physical) or "
                             f">= {2 * p + 1} (full) entries, got shape {state.shape}")
        physical = state[:p]
        if not np.isfinite(physical).all():
            raise ValueError(f"state must be finite, got {physical.tolist()}")
        self.check_positions(physical, "state")
        if len(state) > p:  # the anchor the full state is replayed from
            anchor = state[p:2 * p]
            if not np.isfinite(anchor).all():
                raise ValueError(f"a full state's anchor (entries {p}:{2 * p}) must be finite, got {anchor.tolist()}")
            self.check_positions(anchor, f"full state's anchor (entries {p}:{2 * p})")
        if len(state) == p:
            self._build_objects()
            self._write_physical(physical.tolist())
            self._fresh_space()
            return
        n_replay = state[2 * p]
        if n_replay != int(n_replay) or len(state) != 2 * p + 1 + 2 * int(n_replay):
            raise ValueError(f"corrupt full state: {n_replay=} does not match its length {len(state)}")
        self._build_objects()
        self._write_physical(state[p:2 * p].tolist())
        self._fresh_space()
        for tx, ty in state[2 * p + 1:].reshape(-1, 2):
            if np.isnan(tx):
                self._settle()
            else:
                self._simulate((tx, ty))
        self._write_physical(physical.tolist())  # identical bodies; restores bookkeeping

    def check_positions(self, physical: np.ndarray, what: str) -> None:
        """Raise a ValueError naming the first object of a physical state (P,) whose position
        (``position_entries``) lies outside the workspace: the observation would leave
        ``observation_space``."""
        for name, start in self.position_entries:
            xy = physical[start:start + 2]
            if ((xy < 0) | (xy > WORKSPACE)).any():
                raise ValueError(f"{type(self).__name__} {what}: the {name} position (entries {start}:{start + 2}) "
                                 f"is outside the workspace [0, {WORKSPACE:g}] x [0, {WORKSPACE:g}], got {xy.tolist()}")

    @staticmethod
    def physical(states: np.ndarray, physical_dim: int) -> np.ndarray:
        """The physical part (B, P) of a batch of full or physical states."""
        return np.asarray(states, dtype=np.float64)[..., :physical_dim]

    # -- gymnasium API ------------------------------------------------------------------------
    @staticmethod
    def _check_seed(seed: int | None) -> None:
        if seed is not None and (isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer))
                                 or seed < 0):
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")

    @staticmethod
    def _options(options: dict | None) -> dict:
        """A copy of reset's ``options`` (a dict or None); else a ValueError naming it."""
        if options is not None and not isinstance(options, Mapping):
            raise ValueError(f"options must be a dict or None, got {options=}")
        return dict(options or {})

    def _seed_rng(self, seed: int | None) -> np.random.RandomState:
        self._check_seed(seed)
        if seed is not None:
            # Legacy RandomState, so that seed s gives Diffusion Policy's initial state for s.
            self._rs = np.random.RandomState(int(seed))
            self._rs_seeded = True
        elif not self._rs_seeded:
            self._rs = np.random.RandomState(int(self.np_random.integers(2**31)))
            self._rs_seeded = True
        return self._rs

    def step(self, action):
        reward, terminated, info = self.sim_step(action)
        return self._observe(), reward, terminated, False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        return self.render_states(np.array([self._read_physical()]), self.render_size)[0]

    @classmethod
    def render_states(cls, states: np.ndarray, size: int = 64, supersample: int = 4) -> np.ndarray:
        """Frames (B, size, size, 3) uint8 for (B, S) states, rendered from state alone."""
        from uva_plan.envs.render import render_scenes

        states = np.asarray(states, dtype=np.float64)
        if states.ndim != 2 or states.shape[1] < cls.physical_dim:
            raise ValueError(f"states must be (B, >= {cls.physical_dim}), got shape {states.shape}")
        states = states[:, :cls.physical_dim]
        polygons, n_vertices, poly_colors, discs, disc_colors, background = cls.scene(states)
        return render_scenes(polygons, n_vertices, poly_colors, discs, disc_colors,
                             height=size, width=size, background=background,
                             supersample=supersample)

    def close(self):
        self._detach()


def write_body(body: pymunk.Body, x: float, y: float, angle: float,
               vx: float = 0.0, vy: float = 0.0, w: float = 0.0) -> None:
    """Set a body's pose and velocity; its centre of gravity must be its origin (exact)."""
    body.angle = angle
    body.position = (x, y)
    body.velocity = (vx, vy)
    body.angular_velocity = w


def read_body(body: pymunk.Body) -> list[float]:
    x, y = body.position
    vx, vy = body.velocity
    return [x, y, body.angle, vx, vy, body.angular_velocity]
