import numpy as np
import pytest
import torch

import uva_plan  # noqa: F401
from planners import CEM, Planner, Rollout
from planners.protocols import normalize_actions
from uva_plan.dynamics import PrivilegedState, SimContext, SimulatorDynamics
from uva_plan.envs.pusht import GOAL_POSE, PushTEnv
from uva_plan.objectives import BlockPushSimObjective, PushTSimObjective
from uva_plan.proposers import GaussianProposer, UniformProposer


def test_simulator_rollout_matches_real_env_exactly():
    import gymnasium as gym

    env = PrivilegedState(gym.make("uva_plan/PushT-v0"))
    obs, _ = env.reset(seed=4)
    rng = np.random.default_rng(0)
    for _ in range(20):  # get into contact so the restore needs a cache replay
        obs, *_ = env.step(np.clip(env.unwrapped.block.position + rng.normal(0, 20, 2), 0, 512))
    dynamics = SimulatorDynamics("uva_plan/PushT-v0")
    context = dynamics.context([obs])
    targets = np.clip(obs["agent_pos"] + rng.normal(0, 30, (3, 6, 2)), 0, 512)
    rollout = dynamics.rollout(context, torch.from_numpy(normalize_actions(targets, 0.0, 512.0)))
    assert rollout.states.shape == (3, 6, 14)
    # The second candidate, executed for real, gives the same states bit for bit (up to the
    # float32 round trip of normalised actions, which both sides share).
    actions = dynamics.action_low + (torch.from_numpy(normalize_actions(targets, 0.0, 512.0))[1].double().numpy()
                                     + 1) / 2 * 512
    real = []
    for a in actions:
        env.step(a)
        real.append(env.unwrapped.get_state()[:14])
    np.testing.assert_array_equal(rollout.states[1].numpy(), np.array(real))


def test_context_requires_privileged_state():
    dynamics = SimulatorDynamics("uva_plan/PushT-v0")
    with pytest.raises(ValueError, match="PrivilegedState"):
        dynamics.context([{"agent_pos": np.zeros(2)}])


@pytest.mark.parametrize("cls", [GaussianProposer, UniformProposer])
def test_proposers_shapes_bounds_seeding(cls):
    proposer = cls(horizon=8, seed=3)
    context = SimContext(state=np.zeros(14), agent_pos=np.array([500.0, 10.0]))
    a = proposer.sample(context, 50)
    assert a.shape == (50, 8, 2) and a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1
    proposer.reset()
    torch.testing.assert_close(proposer.sample(context, 50), a)
    # Paths start next to the pusher (absolute-position actions: no teleporting).
    first = (a[:, 0] + 1) / 2 * 512
    assert (first - torch.tensor([500.0, 10.0])).norm(dim=1).max() < 60
    with pytest.raises(ValueError, match="n must be"):
        proposer.sample(context, 0)


def _pusht_states(block_pose_offsets):
    env = PushTEnv(render_mode=None)
    states = []
    for offset in block_pose_offsets:
        env.reset(options={"state": np.array([40.0, 470.0, *(GOAL_POSE + offset)])})
        states.append(env.get_state()[:14])
    return torch.from_numpy(np.array(states))[:, None]  # (N, 1, 14)


def test_pusht_objective_ranks_by_pose():
    states = _pusht_states([np.zeros(3), [30, 0, 0], [0, 0, 0.5], [120, 60, 1.0]])
    cost = PushTSimObjective().cost(Rollout(actions=torch.zeros(4, 1, 2), states=states))
    assert cost.shape == (4,)
    assert cost[0] < cost[1] < cost[3] and cost[0] < cost[2] < cost[3]


def test_blockpush_objective_prefers_named_assignment():
    from uva_plan.envs.blockpush import BlockPushEnv

    env = BlockPushEnv(render_mode=None)
    env.reset(seed=0, options={"task": 1})  # block 0 -> target 1
    base = np.array(env._read_physical())
    good, wrong = base.copy(), base.copy()
    good[4:6] = base[18:20]   # block 0 on target 1
    wrong[4:6] = base[16:18]  # block 0 on target 0 (the unnamed one)
    cost = BlockPushSimObjective().cost(Rollout(actions=torch.zeros(2, 1, 2),
                                                states=torch.from_numpy(np.stack([good, wrong]))[:, None]))
    assert cost[0] < cost[1]
    with pytest.raises(ValueError, match="named task"):
        none = base.copy()
        none[24] = -1
        BlockPushSimObjective().cost(Rollout(actions=torch.zeros(1, 1, 2), states=torch.from_numpy(none)[None, None]))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planner_with_simulator_raises_pusht_coverage(seed):
    """End to end: CEM over the true simulator pushes the T towards the goal in a short episode,
    at every seed (a budget whose gain is 0.65-0.81 over seeds 0-4; 0.0-0.8 at half of it)."""
    import gymnasium as gym

    env = PrivilegedState(gym.make("uva_plan/PushT-v0"))
    # Block close to the goal but offset; pusher behind it.
    obs, info = env.reset(options={"state": np.array([256.0, 440.0, 256.0, 320.0, np.pi / 4])})
    start = info["coverage"]
    planner = Planner(SimulatorDynamics("uva_plan/PushT-v0"),
                      optimizer=CEM(n_samples=32, n_proposals=8, n_elites=4, n_iterations=3, init_std=0.1, seed=seed),
                      proposer=GaussianProposer(horizon=8, seed=seed), objective=PushTSimObjective(),
                      horizon=8, n_action_steps=4)
    for _ in range(12):
        for action in planner.plan(obs):
            obs, reward, terminated, truncated, info = env.step(action)
    assert info["max_coverage"] > start + 0.4, (start, info["max_coverage"])
