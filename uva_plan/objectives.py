"""Objectives: rollouts -> costs (N,), lower is better.

The simulator objectives read exact physical states (``Rollout.states`` (N, H, P)) and apply
the task's own analytic reward with a shaped distance so that candidates that do not yet
touch the block are still ranked. The learned objectives (``StateReward``, ``GoalImage``)
read imagined latents (``Rollout.latents`` (N, T, C, h, w)) instead. The task maths (state
layouts, goals, costs) live in the env modules (``uva_plan.envs.pusht``, ``.blockpush``);
an objective looks its env's module up once (``uva_plan.envs.env_module``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from planners import Rollout, RolloutRequest
from uva_plan.envs import blockpush as bp
from uva_plan.envs import env_module, env_name
from uva_plan.envs import pusht
from uva_plan.locate import ColourLocator


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
        return torch.from_numpy(pusht.sim_cost(states, self.coverage_weight, self.angle_weight,
                                               self.approach_weight, self.behind_distance))


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
        task = self.task if self.task is not None else int(bp.task(states[0, -1]))
        if task < 0:
            raise ValueError("BlockPushSimObjective needs a named task: the env has none "
                             "(reset with options={'task': 0..3}) and none was given")
        return torch.from_numpy(bp.sim_cost(states, task, self.named_weight, self.success_bonus,
                                            self.approach_weight))


# -- learned objectives: imagined latents -> costs ------------------------------------------------
def _rollout_latents(rollout: Rollout, frames: tuple[int, ...], what: str) -> Tensor:
    """The chosen frames (N, F, C, h, w) of ``rollout.latents`` (N, T, C, h, w)."""
    latents = rollout.latents
    if latents is None or latents.ndim != 5:
        shape = None if latents is None else tuple(latents.shape)
        raise ValueError(f"{what} needs rollout.latents (N, T, C, h, w) from a learned dynamics model, got {shape}")
    n_frames = latents.shape[1]
    if any(not -n_frames <= f < n_frames for f in frames):
        raise ValueError(f"frames={frames} out of range for rollouts of T={n_frames} frames")
    return latents[:, list(frames)]


def _check_frames(frames) -> tuple[int, ...]:
    frames = tuple(frames) if isinstance(frames, (tuple, list)) else (frames,)
    if not frames or any(isinstance(f, bool) or not isinstance(f, (int, np.integer)) for f in frames):
        raise ValueError(f"frames must be a non-empty sequence of frame indices (e.g. (-1,)), got {frames=}")
    return tuple(int(f) for f in frames)


def _from_context(context, name: str):
    """``context.name`` or ``context[name]``; None when it has neither."""
    if isinstance(context, dict):
        return context.get(name)
    return getattr(context, name, None)


def _last_state(context, physical_dim: int) -> np.ndarray | None:
    """The last row of the context's ``state_history`` (T, S) physical states; None without one."""
    history = _from_context(context, "state_history")
    if history is None:
        return None
    state = np.asarray(history, dtype=np.float64)[-1]
    if state.shape[-1] < physical_dim:
        raise ValueError(f"context.state_history must hold physical states (T, >= {physical_dim}), "
                         f"got {np.asarray(history).shape}")
    return state


def episode_goal(module, context, given: dict | None = None) -> dict:
    """The episode's goal for an env module's task (its ``GOAL_FIELDS``, checked by its
    ``check_goal``): each field from ``given``, else from the rollout's context (attribute or
    key), else from the last row of its ``state_history`` (T, S) physical states, else the
    task's default (Push-T: the env's fixed goal pose)."""
    goal = {}
    for name in module.GOAL_FIELDS:
        value = (given or {}).get(name)
        if value is None:
            value = _from_context(context, name)
        if value is None and (state := _last_state(context, module.STATE_DIM)) is not None:
            value = module.goal_of(state)[name]
        if value is None:
            value = module.DEFAULT_GOAL.get(name)
        if value is None:
            raise ValueError(f"{name} is neither given nor in the rollout's context (no {name!r}, no "
                             f"'state_history' (T, S) physical states): pass it to the objective")
        goal[name] = value
    return module.check_goal(goal)


class StateReward:
    """The task's analytic cost on object poses that a state head reads from imagined latents.

    Push-T: ``1 - coverage`` of the goal T by the predicted T plus ``pose_weight`` x (CoG
    distance / ``position_scale`` px + angle error / pi), which still ranks candidates that
    cover nothing. BlockPush: distance of the named block to the named target in units of
    the success tolerance (40 px; below 1 = inside), plus ``other_weight`` x the other
    block's distance to the other target. With several ``frames`` the best (lowest) frame
    cost counts, as the tasks score the best moment (max coverage, "has entered").

    The goal pose (Push-T) and the task and target centres (BlockPush) are taken, in this
    order, from the constructor, from the rollout's context (``goal_pose``, ``task``,
    ``targets`` attributes or keys), or from the last row of its ``state_history`` (T, S)
    physical states; Push-T falls back to the env's fixed goal.

    Args:
        state_head: a ``StateHead`` (anything with ``predict(latents (B, C, h, w)) -> poses (B, P)``).
        env_id: the env (its layout must match the head's).
        frames: imagined frames to score, indices into ``rollout.latents``' T axis.
        goal_pose: Push-T goal (x, y, angle), the T's body origin as in the env's state 10:13.
        task: BlockPush task (0..3 or (block, target)); targets: (2, 2) target centres in px.
    """

    def __init__(self, state_head, env_id: str, frames=(-1,), goal_pose=None, task=None, targets=None,
                 pose_weight: float = 0.1, position_scale: float = 100.0, other_weight: float = 0.0):
        self.state_head, self.env, self.env_module = state_head, env_name(env_id), env_module(env_id)
        head_env = getattr(getattr(state_head, "config", None), "env", self.env)
        if head_env != self.env:
            raise ValueError(f"the state head reads {head_env} poses, but {env_id=}")
        self.frames = _check_frames(frames)
        for name, value in (("pose_weight", pose_weight), ("position_scale", position_scale),
                            ("other_weight", other_weight)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {name}={value!r}")
        if position_scale == 0:
            raise ValueError(f"position_scale must be > 0, got {position_scale=}")
        self.pose_weight, self.position_scale, self.other_weight = pose_weight, position_scale, other_weight
        self.goal_pose = None if goal_pose is None else self._checked(goal_pose, (3,), "goal_pose")
        self.task = None if task is None else bp.parse_task(task)
        self.targets = None if targets is None else self._checked(targets, (2, 2), "targets")

    @staticmethod
    def _checked(value, shape: tuple, name: str) -> np.ndarray:
        array = np.asarray(value, dtype=np.float64)
        if array.shape != shape or not np.isfinite(array).all():
            raise ValueError(f"{name} must be finite with shape {shape}, got {value!r}")
        return array

    @property
    def request(self) -> RolloutRequest:
        """What ``Planner`` asks the dynamics for: the scored frames' latents."""
        return RolloutRequest(frames=self.frames)

    @torch.no_grad()
    def cost(self, rollout: Rollout) -> Tensor:
        latents = _rollout_latents(rollout, self.frames, "StateReward")
        n, n_frames = latents.shape[:2]
        poses = self.state_head.predict(latents.flatten(0, 1)).double().cpu().numpy()  # (N F, P)
        return self._cost_of_poses(poses, n, n_frames, rollout.context)

    def _cost_of_poses(self, poses: np.ndarray, n: int, n_frames: int, context) -> Tensor:
        """Poses (N F, P) of n candidates' n_frames frames -> (N,) costs, the best frame's."""
        given = {"goal_pose": self.goal_pose, "task": self.task, "targets": self.targets}
        goal = episode_goal(self.env_module, context, given)
        weights = {"pose_weight": self.pose_weight, "position_scale": self.position_scale,
                   "other_weight": self.other_weight}
        per_frame = torch.from_numpy(self.env_module.pose_cost(poses, goal, weights).reshape(n, n_frames))
        # Non-finite frames must not hide behind a finite one: min would skip a NaN silently.
        return torch.where(torch.isfinite(per_frame).all(dim=1), per_frame.min(dim=1).values,
                           torch.full((n,), math.nan, dtype=per_frame.dtype))


class PoseReward(StateReward):
    """``StateReward``'s task cost on the poses a ``PoseHead`` reads off UVA's joint latent.

    The rollout must carry ``extras["poses"]`` (N, T, P) in env units: ``UVAWorldModel.rollout(
    ..., imagine="poses")``, which ``Planner`` asks for because of ``request`` below (no video
    head runs). ``frames`` index the T axis; the goal, task and targets come as in StateReward.
    """

    @property
    def request(self) -> RolloutRequest:
        """The scored frames' poses instead of video."""
        return RolloutRequest(frames=self.frames, imagine="poses")

    def __init__(self, pose_head, env_id: str, frames=(-1,), **kwargs):
        super().__init__(pose_head, env_id, frames=frames, **kwargs)

    @torch.no_grad()
    def cost(self, rollout: Rollout) -> Tensor:
        poses = rollout.extras.get("poses")
        if poses is None:
            raise ValueError("PoseReward needs rollout.extras['poses'] (N, T, P): roll out with a UVAWorldModel "
                             "that has a pose_head, imagine='poses'")
        poses = torch.as_tensor(poses)
        if poses.ndim != 3 or poses.shape[2] != self.state_head.config.pose_dim:
            raise ValueError(f"rollout.extras['poses'] must be (N, T, {self.state_head.config.pose_dim}), "
                             f"got {tuple(poses.shape)}")
        T = poses.shape[1]
        if any(not -T <= f < T for f in self.frames):
            raise ValueError(f"PoseReward frames {self.frames} out of range for {T} imagined frames")
        chosen = poses[:, list(self.frames)]
        n, n_frames = chosen.shape[:2]
        return self._cost_of_poses(chosen.flatten(0, 1).double().cpu().numpy(), n, n_frames, rollout.context)


class GoalImage:
    """Mean squared distance between imagined latents and a goal frame's latents.

    cost = mean over the chosen frames and channels of sum_{h, w} weight (z - goal)^2 /
    sum weight: exactly 0 for the goal itself. ``token_weights`` (h, w), non-negative, can
    discount positions (e.g. the pusher's region, which need not match the goal).

    Args:
        goal_latents: (C, h, w) scaled VAE latents of the goal frame.
        token_weights: optional (h, w) per-position weights; default uniform.
        frames: imagined frames to score (mean over them), indices into the T axis.
    """

    def __init__(self, goal_latents: Tensor, token_weights: Tensor | None = None, frames=(-1,)):
        goal = torch.as_tensor(goal_latents, dtype=torch.float32)
        if goal.ndim != 3 or not torch.isfinite(goal).all():
            raise ValueError(f"goal_latents must be finite (C, h, w), got shape {tuple(goal.shape)}")
        weights = torch.ones(goal.shape[1:]) if token_weights is None else torch.as_tensor(
            token_weights, dtype=torch.float32)
        if weights.shape != goal.shape[1:] or not torch.isfinite(weights).all() or (weights < 0).any() \
                or not weights.sum() > 0:
            raise ValueError(f"token_weights must be finite, >= 0, not all 0, of shape (h, w) = "
                             f"{tuple(goal.shape[1:])}, got shape {tuple(weights.shape)}")
        self.goal, self.weights = goal, weights / weights.sum()
        self.frames = _check_frames(frames)

    def goal_for(self, rollout: Rollout) -> Tensor:
        """The goal latents (C, h, w) this rollout is scored against (subclasses vary it)."""
        return self.goal

    @property
    def request(self) -> RolloutRequest:
        """What ``Planner`` asks the dynamics for: the scored frames' latents."""
        return RolloutRequest(frames=self.frames)

    @torch.no_grad()
    def cost(self, rollout: Rollout) -> Tensor:
        latents = _rollout_latents(rollout, self.frames, "GoalImage")
        goal = self.goal_for(rollout)
        if tuple(latents.shape[2:]) != tuple(goal.shape):
            raise ValueError(f"rollout latents (N, T, {', '.join(map(str, goal.shape))}) expected to match "
                             f"the goal, got {tuple(rollout.latents.shape)}")
        goal, weights = goal.to(latents), self.weights.to(latents)
        squared = (latents - goal).square().mean(dim=2)  # (N, F, h, w)
        return (squared * weights).sum(dim=(2, 3)).mean(dim=1)


# -- goal frames rendered from the task -----------------------------------------------------------
GOAL_PUSHER = (40.0, 40.0)  # px: where the goal frame draws the pusher (a corner, out of the way)


def goal_state(env_id: str, task: int | None = None, targets=None, pusher=GOAL_PUSHER) -> np.ndarray:
    """The physical state (P,) of the task solved: the T on its goal pose (Push-T), or the named
    block on the named target and the other block on the other target (BlockPush), both at
    yaw 0, velocities 0, the pusher at ``pusher``."""
    module = env_module(env_id)
    given = {"task": task, "targets": targets}
    goal = {name: given.get(name, module.DEFAULT_GOAL.get(name)) for name in module.GOAL_FIELDS}
    return module.solved_state(goal, np.asarray(pusher, dtype=np.float64))


class EnvGoalImage(GoalImage):
    """``GoalImage`` whose goal frame is rendered from the task itself (``goal_state``): the
    Push-T goal pose (the env's fixed one unless the context holds another), or for BlockPush
    the episode's named task and targets, read from the rollout's context as ``episode_goal``
    reads them (``task``, ``targets``), so one objective serves every episode.

    Args:
        env_id: the env; world_model: anything with ``encode(uint8 (B, S, S, 3)) -> latents``
            and ``image_size`` (a ``UVAWorldModel``); token_weights, frames: as ``GoalImage``.
    """

    def __init__(self, env_id: str, world_model, token_weights: Tensor | None = None, frames=(-1,)):
        self.env_id, self.env, self.world_model = env_id, env_name(env_id), world_model
        self.env_module = env_module(env_id)
        self._cache: dict = {}
        # The constructor learns the latents' shape from the rendered goal of an example goal
        # (Push-T's: its fixed one); each rollout's goal comes from its context.
        first = self._goal_latents(self.env_module.check_goal(self.env_module.EXAMPLE_GOAL))
        super().__init__(first, token_weights, frames)

    def _goal_latents(self, goal: dict) -> Tensor:
        """Encoded goal frame, cached per goal."""
        key = tuple(float(v) for name in self.env_module.GOAL_FIELDS
                    for v in np.round(np.asarray(goal[name], dtype=np.float64).ravel(), 6))
        if key not in self._cache:
            state = self.env_module.solved_state(goal, np.asarray(GOAL_PUSHER, dtype=np.float64))
            frame = self.env_module.ENV_CLASS.render_states(state[None], self.world_model.image_size)
            self._cache[key] = self.world_model.encode(frame)[0].float()
        return self._cache[key]

    def goal_for(self, rollout: Rollout) -> Tensor:
        return self._goal_latents(episode_goal(self.env_module, rollout.context))


SIM_OBJECTIVES = {"pusht": PushTSimObjective, "blockpush": BlockPushSimObjective}  # by env name


class LocatedReward:
    """The simulator's own objective on the states a ``ColourLocator`` reads from decoded frames.

    Each scored imagined frame is decoded by the world model's VAE, the objects are located by
    colour (``uva_plan.locate``: no training, so a blurred imagination is not read as a pose
    from the training set), and the located pusher, blocks or T fill a physical state that
    ``BlockPushSimObjective`` / ``PushTSimObjective`` scores exactly as it scores the
    simulator's, approach shaping included. The only difference from the simulator row is then
    the dynamics. An object the frame no longer shows (under ``min_visible`` of its area) keeps
    its place in the context's last real frame: a vanished block counts as unmoved, never as
    solved (a context without latents: it stays NaN, and its candidate is never chosen).
    BlockPush's ``entered`` flags come from the located blocks of the scored frames.

    Args:
        world_model: anything with ``decode(latents (..., C, h, w)) -> uint8 (..., S, S, 3)``
            (a ``UVAWorldModel``).
        env_id: the env; frames: imagined frames to score (indices into the T axis).
        sim_objective: the state objective (default: the env's simulator objective).
        min_visible: see ``ColourLocator``.
        pusher: where the pusher is, "frames" (located in the imagined frames like the rest) or
            "actions" (the commanded target at the frame's last control step: the pusher's own
            kinematics are known, only the objects' motion needs the model; needs the world
            model's ``normalizer`` and ``stride``).
    """

    def __init__(self, world_model, env_id: str, frames=(-1,), sim_objective=None, min_visible: float = 0.25,
                 pusher: str = "frames"):
        if not callable(getattr(world_model, "decode", None)):
            raise ValueError(f"world_model must have decode(latents), got {type(world_model).__name__}")
        self.world_model, self.locator = world_model, ColourLocator(env_id, min_visible=min_visible)
        self.env, self.frames = self.locator.env, _check_frames(frames)
        self.env_module = env_module(env_id)
        if sim_objective is None:
            sim_objective = SIM_OBJECTIVES[self.env]()
        if not callable(getattr(sim_objective, "cost", None)):
            raise ValueError(f"sim_objective must have cost(rollout), got {type(sim_objective).__name__}")
        if pusher not in ("frames", "actions"):
            raise ValueError(f"pusher must be 'frames' or 'actions', got {pusher!r}")
        if pusher == "actions" and not (hasattr(world_model, "normalizer") and hasattr(world_model, "stride")):
            raise ValueError("pusher='actions' needs a world model with an action normalizer and a frame stride")
        self.sim_objective, self.pusher = sim_objective, pusher
        self._last_real: tuple = (None, None)  # (context id, located objects of its last frame)

    @property
    def request(self) -> RolloutRequest:
        """What ``Planner`` asks the dynamics for: the scored frames' latents."""
        return RolloutRequest(frames=self.frames)

    def located_states(self, rollout: Rollout) -> np.ndarray:
        """(N, F, P) physical states located in the scored frames (NaN-free)."""
        latents = _rollout_latents(rollout, self.frames, "LocatedReward")
        n, n_frames = latents.shape[:2]
        # Decode each distinct frame once (a static baseline's rollouts are all the same frame).
        flat = latents.flatten(0, 1)
        unique, inverse = torch.unique(flat.flatten(1), dim=0, return_inverse=True)
        frames = self.world_model.decode(unique.reshape(-1, *flat.shape[1:]))
        located = self.locator.locate(frames)
        fallback = self._real_positions(rollout.context, latents)
        rows = inverse.numpy()
        pos = {}
        for name, obj in located.items():
            p = obj.position[rows]
            missing = ~np.isfinite(p).all(axis=1)
            if fallback is not None:
                p[missing] = fallback[name][0]
            pos[name] = p.reshape(n, n_frames, 2)
            if obj.angle is not None:
                a = obj.angle[rows]
                if fallback is not None:
                    a[missing] = fallback[name][1]
                pos[name + "_angle"] = a.reshape(n, n_frames)
        if self.pusher == "actions":
            n_future = int(rollout.latents.shape[1])
            steps = [self.world_model.stride * ((f % n_future) + 1) - 1 for f in self.frames]
            commanded = self.world_model.normalizer.unnormalize(rollout.actions.detach().cpu().double().numpy())
            pos["agent"] = commanded[:, steps]
        return self.env_module.compose_states(pos, episode_goal(self.env_module, rollout.context))

    def _real_positions(self, context, latents: Tensor) -> dict | None:
        """Each object's (position, angle) in the context's last real frame (cached per context),
        or the workspace centre where even that frame does not show it. None for a context
        without latents: a missing object then stays NaN and its candidate is never chosen."""
        real = _from_context(context, "latents")
        if real is None:
            return None
        if self._last_real[0] is not context:
            located = self.locator.locate(self.world_model.decode(real[0, -1:].to(latents)))
            self._last_real = (context, {
                name: (np.nan_to_num(obj.position[0], nan=256.0),
                       0.0 if obj.angle is None else float(np.nan_to_num(obj.angle[0])))
                for name, obj in located.items()})
        return self._last_real[1]

    @torch.no_grad()
    def cost(self, rollout: Rollout) -> Tensor:
        states = torch.from_numpy(self.located_states(rollout))
        return self.sim_objective.cost(Rollout(actions=rollout.actions, states=states, context=rollout.context))
