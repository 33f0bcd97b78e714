"""Tests for the learned objectives: StateReward (state head + analytic task cost) and GoalImage."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from planners import Rollout
from tests.test_models import one_thread  # noqa: F401  (autouse: one torch thread)
from tests.test_state_head import pooled_latents, pusht_states, trained_pusht_head
from uva_plan.envs import blockpush as bp
from uva_plan.envs import pusht
from uva_plan.objectives import GoalImage, StateReward

PUSHT, BLOCKPUSH = "uva_plan/PushT-v0", "uva_plan/BlockPush-v0"


class PoseReader:
    """An exact "state head": the poses are written into the latents (B, 1, 1, P)."""

    def __init__(self, env: str):
        self.config = SimpleNamespace(env=env)

    def predict(self, latents: torch.Tensor) -> torch.Tensor:
        return latents[:, 0, 0].clone()


def rollout_of(latents: torch.Tensor, context=None) -> Rollout:
    """Rollout of N candidates with latents (N, T, C, h, w)."""
    return Rollout(actions=torch.zeros(latents.shape[0], 16, 2), latents=latents, context=context)


def pose_latents(poses: np.ndarray) -> torch.Tensor:
    """(N, T, P) poses -> (N, T, 1, 1, P) latents for ``PoseReader``."""
    return torch.from_numpy(np.asarray(poses, dtype=np.float64))[:, :, None, None]


def goal_cog(goal=pusht.GOAL_POSE) -> np.ndarray:
    return np.array(pusht.cog_from_origin(*goal))


def near_goal_states(n: int, seed: int, goal=pusht.GOAL_POSE) -> np.ndarray:
    """Push-T states whose T sits within 10 px and 0.15 rad of the goal."""
    rng = np.random.default_rng(seed)
    states = pusht_states(n, seed)
    states[:, 4:6] = goal_cog(goal) + rng.uniform(-10, 10, (n, 2))
    states[:, 6] = goal[2] + rng.uniform(-0.15, 0.15, n)
    states[:, 10:13] = goal
    return states


# ----- StateReward on Push-T -----

def test_pusht_cost_is_one_minus_coverage_plus_a_small_pose_error():
    states = np.concatenate([pusht_states(6, seed=0), near_goal_states(3, seed=1)])
    states[0, 4:7] = [*goal_cog(), pusht.GOAL_POSE[2]]  # exactly on the goal
    objective = StateReward(PoseReader("pusht"), PUSHT, pose_weight=0.1, position_scale=100.0)
    cost = objective.cost(rollout_of(pose_latents(states[:, None, 4:7])))
    distance = np.linalg.norm(states[:, 4:6] - goal_cog(), axis=1)
    angle = np.abs((states[:, 6] - pusht.GOAL_POSE[2] + np.pi) % (2 * np.pi) - np.pi)
    expected = 1 - pusht.coverage(states) + 0.1 * (distance / 100 + angle / np.pi)
    np.testing.assert_allclose(cost.numpy(), expected, rtol=1e-9, atol=1e-9)
    assert abs(cost[0].item()) < 1e-9 and cost.shape == (9,)


def test_pusht_goal_comes_from_the_context_or_its_states():
    goal = np.array([200.0, 300.0, 1.0])
    poses = pose_latents(np.array([[[*goal_cog(goal), goal[2]]]]))
    at_goal = StateReward(PoseReader("pusht"), PUSHT, goal_pose=goal).cost(rollout_of(poses))
    history = np.zeros((2, pusht.STATE_DIM))
    history[:, 10:13] = goal
    objective = StateReward(PoseReader("pusht"), PUSHT)
    for context in (SimpleNamespace(goal_pose=goal), {"goal_pose": goal}, SimpleNamespace(state_history=history)):
        assert objective.cost(rollout_of(poses, context)).item() == pytest.approx(at_goal.item(), abs=1e-9)
    assert at_goal.item() == pytest.approx(0.0, abs=1e-9)
    assert objective.cost(rollout_of(poses)).item() > 0.5  # the env's fixed goal is elsewhere


def test_learned_head_on_real_frames_ranks_good_states_above_bad_ones():
    """A head fitted on random states scores held-out frames: every T near the goal must cost
    less than every T far from it (a head that ignored its input would tie them)."""
    good = near_goal_states(6, seed=11)
    candidates = pusht_states(40, seed=12)
    far = np.linalg.norm(candidates[:, 4:6] - goal_cog(), axis=1) > 150
    bad = candidates[far & (pusht.coverage(candidates) == 0)][:6]
    assert len(bad) == 6 and pusht.coverage(good).min() > 0.6  # the construction itself
    objective = StateReward(trained_pusht_head(), PUSHT)
    cost = objective.cost(rollout_of(pooled_latents(np.concatenate([good, bad]))[:, None]))
    assert torch.isfinite(cost).all()
    assert cost[:6].max() < cost[6:].min(), cost


def test_several_frames_take_the_best_and_non_finite_stays_non_finite():
    on_goal, off_goal = [*goal_cog(), pusht.GOAL_POSE[2]], [100.0, 100.0, 0.0]
    poses = pose_latents(np.array([[off_goal, on_goal], [off_goal, off_goal], [on_goal, [math.nan] * 3]]))
    objective = StateReward(PoseReader("pusht"), PUSHT, frames=(0, 1))
    cost = objective.cost(rollout_of(poses))
    assert cost[0].item() == pytest.approx(0.0, abs=1e-9) and cost[1].item() > 1.0 and math.isnan(cost[2].item())
    first_only = StateReward(PoseReader("pusht"), PUSHT, frames=(0,)).cost(rollout_of(poses))
    assert first_only[2].item() == pytest.approx(0.0, abs=1e-9)


# ----- StateReward on BlockPush -----

def blockpush_poses() -> np.ndarray:
    """(3 candidates, 1 frame, 6): block 0 and block 1 xy and yaw."""
    return np.array([[[100.0, 100.0, 0.1, 400.0, 100.0, 0.0]],
                     [[100.0, 140.0, 0.0, 300.0, 300.0, 0.0]],
                     [[400.0, 100.0, 0.0, 100.0, 100.0, 0.0]]])


def test_blockpush_cost_is_the_named_block_to_target_distance():
    targets = np.array([[100.0, 100.0], [400.0, 100.0]])
    # task 1 = block 0 -> target 1.
    cost = StateReward(PoseReader("blockpush"), BLOCKPUSH, task=1, targets=targets).cost(
        rollout_of(pose_latents(blockpush_poses())))
    expected = np.linalg.norm(blockpush_poses()[:, 0, :2] - targets[1], axis=1) / bp.TOLERANCE
    np.testing.assert_allclose(cost.numpy(), expected)
    assert cost.argmin().item() == 2
    # (block 1, target 0) with the other pair weighted in.
    weighted = StateReward(PoseReader("blockpush"), BLOCKPUSH, task=(1, 0), targets=targets, other_weight=0.5)
    expected = (np.linalg.norm(blockpush_poses()[:, 0, 3:5] - targets[0], axis=1)
                + 0.5 * np.linalg.norm(blockpush_poses()[:, 0, :2] - targets[1], axis=1)) / bp.TOLERANCE
    np.testing.assert_allclose(weighted.cost(rollout_of(pose_latents(blockpush_poses()))).numpy(), expected)


def test_blockpush_task_and_targets_come_from_the_context():
    targets = np.array([[100.0, 100.0], [400.0, 100.0]])
    latents = pose_latents(blockpush_poses())
    wanted = StateReward(PoseReader("blockpush"), BLOCKPUSH, task=2, targets=targets).cost(rollout_of(latents))
    state = np.zeros((1, bp.STATE_DIM))
    state[0, 16:20], state[0, 24] = targets.ravel(), 2
    objective = StateReward(PoseReader("blockpush"), BLOCKPUSH)
    for context in (SimpleNamespace(state_history=state), {"task": np.int64(2), "targets": targets},
                    SimpleNamespace(task=(1, 0), state_history=state)):
        torch.testing.assert_close(objective.cost(rollout_of(latents, context)), wanted)
    with pytest.raises(ValueError, match="pass it to the objective"):
        objective.cost(rollout_of(latents, SimpleNamespace()))
    state[0, 24] = -1
    with pytest.raises(ValueError, match="needs a named task"):
        objective.cost(rollout_of(latents, SimpleNamespace(state_history=state)))


# ----- GoalImage -----

def test_goal_image_is_zero_for_the_goal_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    goal = torch.randn(4, 8, 8, generator=g)
    others = torch.randn(3, 4, 8, 8, generator=g)
    latents = torch.stack([goal, *others])[:, None]  # (N = 4, T = 1, C, h, w)
    cost = GoalImage(goal).cost(rollout_of(latents))
    assert cost.shape == (4,) and cost[0].item() == 0.0 and (cost[1:] > 0).all()
    torch.testing.assert_close(cost[1:], (others - goal).square().mean(dim=(1, 2, 3)))


def test_goal_image_weights_and_frames():
    goal = torch.zeros(2, 4, 4)
    moved = goal.clone()
    moved[:, 0, 0] = 3.0  # differs only at the pusher's position (0, 0)
    weights = torch.ones(4, 4)
    weights[0, 0] = 0.0
    latents = torch.stack([torch.stack([goal, moved]), torch.stack([moved, goal])])  # (N = 2, T = 2, ...)
    assert GoalImage(goal, token_weights=weights).cost(rollout_of(latents)).tolist() == [0.0, 0.0]
    plain = GoalImage(goal, frames=(-1,)).cost(rollout_of(latents))
    assert plain[0] > 0 and plain[1] == 0
    both = GoalImage(goal, frames=(0, 1)).cost(rollout_of(latents))
    torch.testing.assert_close(both, torch.full((2,), plain[0].item() / 2))


# ----- bad inputs -----

def test_bad_inputs_raise_naming_the_value():
    goal = torch.zeros(4, 8, 8)
    with pytest.raises(ValueError, match=r"goal_latents must be finite \(C, h, w\), got shape \(8, 8\)"):
        GoalImage(goal[0])
    with pytest.raises(ValueError, match=r"token_weights must be .* \(h, w\) = \(8, 8\), got shape \(4, 4\)"):
        GoalImage(goal, token_weights=torch.ones(4, 4))
    with pytest.raises(ValueError, match="token_weights"):
        GoalImage(goal, token_weights=-torch.ones(8, 8))
    with pytest.raises(ValueError, match="frames must be"):
        GoalImage(goal, frames=())
    with pytest.raises(ValueError, match=r"needs rollout.latents \(N, T, C, h, w\)"):
        GoalImage(goal).cost(Rollout(actions=torch.zeros(2, 16, 2)))
    with pytest.raises(ValueError, match=r"frames=\(4,\) out of range for rollouts of T=2"):
        GoalImage(goal, frames=(4,)).cost(rollout_of(torch.zeros(3, 2, 4, 8, 8)))
    with pytest.raises(ValueError, match="expected to match the goal"):
        GoalImage(goal).cost(rollout_of(torch.zeros(3, 2, 4, 4, 4)))
    with pytest.raises(ValueError, match="reads pusht poses, but env_id='uva_plan/BlockPush-v0'"):
        StateReward(PoseReader("pusht"), BLOCKPUSH)
    with pytest.raises(ValueError, match="pose_weight"):
        StateReward(PoseReader("pusht"), PUSHT, pose_weight=-1.0)
    with pytest.raises(ValueError, match=r"goal_pose must be finite with shape \(3,\)"):
        StateReward(PoseReader("pusht"), PUSHT, goal_pose=(1.0, 2.0))
    with pytest.raises(ValueError, match="task must be"):
        StateReward(PoseReader("blockpush"), BLOCKPUSH, task=7)
