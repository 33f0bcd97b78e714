"""BlockPush: gymnasium contract, determinism, exact restore, IBC reward semantics, the oracle."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import uva_plan.envs  # noqa: F401  (registers the envs)
from uva_plan.envs.blockpush import STATE_DIM, BlockPushEnv
from uva_plan.envs.blockpush_expert import BlockPushOracle

FAR_ACTION = np.array([256.0, 500.0])  # bottom middle: nowhere near the blocks or targets
TARGETS = ((150.0, 130.0), (360.0, 120.0))


def hand_state(block0, block1, task: int = -1, agent=(256.0, 490.0)) -> np.ndarray:
    """A physical state with blocks at rest at the given centres and no flags set."""
    return np.array([*agent, 0.0, 0.0, *block0, 0.3, 0.0, 0.0, 0.0, *block1, 0.0, 0.0, 0.0, 0.0,
                     *TARGETS[0], *TARGETS[1], 0.0, 0.0, 0.0, 0.0, float(task), 0.0])


def run_oracle(env: BlockPushEnv, oracle: BlockPushOracle, n_steps: int) -> dict:
    info = {}
    for _ in range(n_steps):
        _, _, terminated, _, info = env.step(oracle.act(env))
        if terminated:
            break
    return info


def test_check_env_and_registration():
    env = gym.make("uva_plan/BlockPush-v0")
    assert env.spec.max_episode_steps == 350
    check_env(env.unwrapped)
    obs, info = env.reset(seed=0)
    assert obs["image"].shape == (64, 64, 3) and obs["state"].shape == (12,)
    assert obs["task"] == -1 and info["task"] is None
    env.close()


def test_observation_matches_physical_state():
    env = BlockPushEnv(task=(1, 0))
    obs, _ = env.reset(seed=3)
    s = env.get_state()[:STATE_DIM]
    assert obs["task"] == 2 and env.observation_space.contains(obs)
    np.testing.assert_array_equal(obs["agent_pos"], s[:2])
    np.testing.assert_array_equal(obs["state"][[2, 3, 5, 6]], s[[4, 5, 10, 11]])
    np.testing.assert_array_equal(obs["state"][8:], s[16:20])
    # Reset distribution: targets up, blocks lower-middle and apart, pusher at the bottom.
    assert 90 <= s[17] <= 170 and 90 <= s[19] <= 170 and abs(s[16] - s[18]) >= 112
    assert np.hypot(*(s[4:6] - s[10:12])) >= 80 and 440 <= s[1] <= 470


def test_determinism_under_seed():
    actions = np.random.default_rng(0).uniform(100, 412, size=(30, 2))
    runs = []
    for _ in range(2):
        env = BlockPushEnv()
        obs, _ = env.reset(seed=11)
        trace = [obs]
        for a in actions:
            trace.append(env.step(a)[0])
        runs.append(trace)
    for a, b in zip(*runs):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    other, _ = BlockPushEnv().reset(seed=12)
    assert not np.array_equal(runs[0][0]["state"], other["state"])


def test_set_state_reproduces_trajectory_exactly():
    env = BlockPushEnv(task=0, render_mode=None)
    env.reset(seed=5)
    initial = env.get_state()[:STATE_DIM]
    oracle = BlockPushOracle(seed=0)
    oracle.reset(env)
    run_oracle(env, oracle, 40)
    while env.get_state()[2 * STATE_DIM] == 0:  # restore mid-contact, so the replay is exercised
        env.step(oracle.act(env))
    start = env.get_state()
    assert np.hypot(*(start[4:6] - initial[4:6])) > 20  # block 0 has been pushed
    copy = BlockPushEnv(render_mode=None)
    copy.reset(seed=99)
    copy.set_state(start)
    np.testing.assert_array_equal(copy.get_state()[:STATE_DIM], start[:STATE_DIM])
    rng = np.random.default_rng(0)
    for k in range(100):
        action = oracle.act(env) if k % 4 else rng.uniform(0, 512, size=2)
        out = env.step(action)
        out_copy = copy.step(action)
        np.testing.assert_array_equal(copy.get_state()[:STATE_DIM], env.get_state()[:STATE_DIM])
        assert out[1:] == out_copy[1:]


def test_reward_once_per_block_then_both_in_different_targets():
    env = BlockPushEnv()
    env.reset(seed=0, options={"state": hand_state(TARGETS[0], (256.0, 330.0))})
    _, reward, terminated, _, info = env.step(FAR_ACTION)
    assert reward == pytest.approx(0.49) and not terminated
    assert info["p1"] and not info["p2"]
    assert info["entered"] == [[True, False], [False, False]]
    assert info["in_target"] == [[True, False], [False, False]]
    _, reward, _, _, info = env.step(FAR_ACTION)  # still inside: no second reward
    assert reward == 0.0 and info["p1"]
    # Move block 1 into the other target, keeping the bookkeeping in the state.
    state = env.get_state()[:STATE_DIM].copy()
    state[10:12] = TARGETS[1]
    env.set_state(state)
    _, reward, terminated, _, info = env.step(FAR_ACTION)
    assert reward == pytest.approx(0.49 + 0.51) and terminated
    assert info["p2"] and info["is_success"]
    assert info["entered"] == [[True, False], [False, True]]


def test_both_blocks_in_the_same_target_do_not_finish():
    env = BlockPushEnv()
    x, y = TARGETS[0]
    env.reset(seed=0, options={"state": hand_state((x - 18.0, y), (x + 18.0, y))})
    _, reward, terminated, _, info = env.step(FAR_ACTION)
    assert reward == pytest.approx(2 * 0.49) and not terminated
    assert info["in_target"] == [[True, False], [True, False]] and not info["p2"]


@pytest.mark.parametrize("task, success", [((0, 1), False), ((0, 0), True), (0, True), (2, False)])
def test_task_success_only_for_the_named_pair(task, success):
    env = BlockPushEnv(task=task)
    _, info = env.reset(seed=0, options={"state": hand_state(TARGETS[0], (256.0, 330.0)),
                                         "task": task})
    assert not info["task_success"]
    _, _, _, _, info = env.step(FAR_ACTION)
    assert info["task_success"] == success and info["is_success"] == success
    assert info["task"] == (task if isinstance(task, tuple) else divmod(task, 2))


def test_no_task_means_no_task_success():
    env = BlockPushEnv()
    env.reset(seed=0, options={"state": hand_state(TARGETS[0], TARGETS[1])})
    _, _, terminated, _, info = env.step(FAR_ACTION)
    assert terminated and info["task"] is None
    assert not info["task_success"] and info["is_success"] == info["p2"] is True


def test_reset_task_option_overrides_state_and_constructor():
    env = BlockPushEnv(task=3)
    obs, _ = env.reset(seed=1)
    assert obs["task"] == 3
    obs, info = env.reset(seed=1, options={"task": None})
    assert obs["task"] == -1 and info["task"] is None
    obs, _ = env.reset(seed=1, options={"state": hand_state(TARGETS[0], TARGETS[1], task=1)})
    assert obs["task"] == 1
    obs, _ = env.reset(options={"state": env.get_state(), "task": (1, 1)})
    assert obs["task"] == 3 and env.get_state()[STATE_DIM + 24] == 3


@pytest.mark.parametrize("task, seed", [(None, 0), (None, 1), ((1, 0), 2), (3, 3)])
def test_oracle_solves(task, seed):
    env = BlockPushEnv(task=task, render_mode=None)
    env.reset(seed=seed)
    oracle = BlockPushOracle(env, seed=seed)
    oracle.reset()
    info = run_oracle(env, oracle, 350)
    assert info["p2"]
    assert info["task_success"] == (task is not None)


def test_oracle_random_order_is_seeded():
    orders = []
    for seed in (0, 0, 1):
        oracle = BlockPushOracle(seed=seed)
        orders.append([oracle.jobs] + [(oracle.reset(), oracle.jobs)[1] for _ in range(5)])
    assert orders[0] == orders[1] and orders[0] != orders[2]
    assert BlockPushOracle(assignment=(1, 0)).jobs == [(1, 0), (0, 1)]


def test_bad_inputs_raise_with_the_value():
    env = BlockPushEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="nan"):
        env.step(np.array([np.nan, 3.0]))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match="got 5"):
        env.reset(options={"task": 5})
    with pytest.raises(ValueError, match=r"\(0, 2\)"):
        env.reset(options={"task": (0, 2)})
    with pytest.raises(ValueError, match="'left'"):
        BlockPushEnv(task="left")
    with pytest.raises(ValueError, match="goal"):
        env.reset(options={"goal": 1})
    with pytest.raises(ValueError, match="7.0"):
        env.set_state(hand_state(TARGETS[0], TARGETS[1], task=7))


def test_render_states_batch_shows_block_colours():
    env = BlockPushEnv()
    states = []
    for seed in range(3):
        env.reset(seed=seed)
        states.append(env.get_state())
    padded = np.full((3, max(map(len, states))), np.nan)  # full states of unequal length
    for row, state in zip(padded, states):
        row[:len(state)] = state
    frames = BlockPushEnv.render_states(padded, 64)
    assert frames.shape == (3, 64, 64, 3) and frames.dtype == np.uint8
    for frame, state in zip(frames, states):
        for b, (red, blue) in enumerate(((True, False), (False, True))):
            x, y = state[4 + 6 * b:6 + 6 * b]
            r, g, bl = frame[int(y // 8), int(x // 8)].astype(int)
            assert (r > 150 and g < 100 and bl < 100) == red
            assert (bl > 150 and r < 100) == blue
    np.testing.assert_array_equal(frames[0], BlockPushEnv.render_states(padded[:1, :STATE_DIM])[0])


def test_state_accessors_and_task_functions_on_any_batch_shape():
    from uva_plan.envs import blockpush as bp

    state = hand_state((150.0, 140.0), (300.0, 300.0), task=2)
    state[20] = 1.0  # block 0 has entered target 0
    batch = np.stack([state, state])[None]  # (1, 2, P)
    np.testing.assert_array_equal(bp.agent_position(state), state[:2])
    np.testing.assert_array_equal(bp.block_centres(state), [[150.0, 140.0], [300.0, 300.0]])
    np.testing.assert_array_equal(bp.block_poses(state), [[150.0, 140.0, 0.3], [300.0, 300.0, 0.0]])
    np.testing.assert_array_equal(bp.target_centres(state), TARGETS)
    assert bp.entered(state).tolist() == [[True, False], [False, False]] and int(bp.task(state)) == 2
    assert bp.in_target(state).tolist() == [[True, False], [False, False]]
    for name in ("block_centres", "target_centres", "entered", "in_target"):
        assert getattr(bp, name)(batch).shape == (1, 2, 2, 2), name
    assert bp.block_poses(batch).shape == (1, 2, 2, 3) and bp.task(batch).tolist() == [[2, 2]]
    goal = bp.check_goal(bp.goal_of(state))
    assert goal["task"] == 2 and goal["targets"].tolist() == [list(t) for t in TARGETS]
    solved = bp.solved_state(goal, np.array([40.0, 40.0]))
    assert bp.in_target(solved).tolist() == [[False, True], [True, False]]  # task 2: block 1 -> target 0
    with pytest.raises(ValueError, match="needs a named task 0..3, got task=-1"):
        bp.check_goal({"task": -1, "targets": TARGETS})
