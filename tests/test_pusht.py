import math

import gymnasium as gym
import numpy as np
import pytest
import shapely.geometry as sg
from gymnasium.utils.env_checker import check_env

import uva_plan  # noqa: F401  (registers the environments)
from tests.dp_reference import DPPushTReference, pushing_actions
from uva_plan.envs.geometry import TEE_PARTS, tee_coverage
from uva_plan.envs.pusht import GOAL_POSE, PushTEnv, coverage, dp_states


def _shapely_tee(pose):
    c, s = math.cos(pose[2]), math.sin(pose[2])
    parts = [sg.Polygon([(c * x - s * y + pose[0], s * x + c * y + pose[1]) for x, y in part])
             for part in TEE_PARTS]
    return sg.MultiPolygon(parts)


def test_coverage_matches_exact_polygon_reference():
    rng = np.random.default_rng(0)
    goal = _shapely_tee(GOAL_POSE)
    # Random poses near the goal (partial overlaps of every kind) and a few far away.
    poses = np.concatenate([GOAL_POSE + rng.normal(0, [30, 30, 0.6], (300, 3)),
                            rng.uniform([0, 0, 0], [512, 512, 6.3], (50, 3))])
    ours = tee_coverage(poses, GOAL_POSE)
    ref = np.array([goal.intersection(_shapely_tee(p)).area / goal.area for p in poses])
    assert np.abs(ours - ref).max() < 1e-9
    assert 0.05 < ref.mean() < 0.95  # the poses really exercise partial overlaps
    assert tee_coverage(GOAL_POSE[None], GOAL_POSE)[0] == pytest.approx(1.0, abs=1e-12)


def test_check_env_and_registration():
    for env_id in ("uva_plan/PushT-v0", "uva_plan/PushTRandomGoal-v0"):
        env = gym.make(env_id)
        assert env.spec.max_episode_steps == 300
        check_env(env.unwrapped, skip_render_check=False)
        obs, info = env.reset(seed=1)
        assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
        assert obs["agent_pos"].shape == (2,) and obs["state"].shape == (5,)
        assert set(info) >= {"coverage", "is_success", "max_coverage"}


def test_reset_matches_diffusion_policy_distribution():
    env = PushTEnv()
    obs, _ = env.reset(seed=12345)
    rs = np.random.RandomState(12345)
    expected = [rs.randint(50, 450), rs.randint(50, 450), rs.randint(100, 400),
                rs.randint(100, 400), (rs.randn() * 2 * np.pi - np.pi) % (2 * np.pi)]
    # The original settles the state with one physics substep: with no overlap nothing moves.
    np.testing.assert_allclose(obs["state"], expected, atol=1e-9)


def test_deterministic_under_seed():
    runs = []
    for _ in range(2):
        env = gym.make("uva_plan/PushT-v0")
        obs, _ = env.reset(seed=7)
        rng = np.random.default_rng(0)
        frames = [obs["image"]]
        for _ in range(30):
            obs, *_ = env.step(rng.uniform(0, 512, 2))
            frames.append(obs["image"])
        runs.append((env.unwrapped.get_state(), np.array(frames)))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def _contact_rich_actions(env, n, rng):
    """Aim near the block's centre of gravity: the pusher keeps hitting and dragging the T."""
    actions = []
    for _ in range(n):
        a = np.clip(np.asarray(env.block.position) + rng.normal(0, 25, 2), 0, 512)
        actions.append(a)
        env.step(a)
    return actions


@pytest.mark.parametrize("restore_mode", ["anchor", "episode"])
def test_restored_state_reproduces_trajectory_bit_for_bit(restore_mode):
    rng = np.random.default_rng(3)
    env = PushTEnv(render_mode=None, restore_mode=restore_mode)
    env.reset(seed=3)
    n_checked = n_in_contact = 0
    for _ in range(4):
        _contact_rich_actions(env, 25, rng)
        saved = env.get_state()
        n_in_contact += saved[2 * env.physical_dim] > 0  # restore needs a contact-cache replay
        other = PushTEnv(render_mode=None, restore_mode=restore_mode)
        other.reset(seed=99)
        other.set_state(saved)
        future = np.clip(np.asarray(env.block.position) + rng.normal(0, 30, (100, 2)), 0, 512)
        a = [(env.step(u), env.get_state()[:14])[1] for u in future]
        b = [(other.step(u), other.get_state()[:14])[1] for u in future]
        np.testing.assert_array_equal(np.array(a), np.array(b))
        n_checked += 1
    assert n_in_contact >= 2, "the test must exercise restores in the middle of contact"


def test_dropping_the_contact_cache_changes_the_future():
    # Why the full state carries the contact cache: the physical part alone is not enough.
    rng = np.random.default_rng(4)
    env = PushTEnv(render_mode=None)
    env.reset(seed=4)
    differs = 0
    for _ in range(6):
        _contact_rich_actions(env, 15, rng)
        saved = env.get_state()
        if saved[2 * env.physical_dim] == 0:
            continue
        full, bare = PushTEnv(render_mode=None), PushTEnv(render_mode=None)
        full.reset(seed=0), bare.reset(seed=0)
        full.set_state(saved), bare.set_state(saved[:14])
        for u in np.clip(np.asarray(env.block.position) + rng.normal(0, 30, (30, 2)), 0, 512):
            full.step(u), bare.step(u)
        differs += not np.array_equal(full.get_state()[:14], bare.get_state()[:14])
    assert differs >= 1


def test_diffusion_policy_trajectories_replay_step_by_step():
    """Trajectories recorded with the original's physics (persistent space, origin-based T,
    5-d states) replay in ours from the 5-d initial state, step by step. (The default restore
    mode trades this for fast restores; benchmarks/dp_fidelity.py measures both.)"""
    rng = np.random.default_rng(0)
    moved = []
    for _ in range(6):
        ref = DPPushTReference()
        init = np.array([*rng.integers(50, 450, 2), *rng.integers(180, 330, 2), rng.uniform(0, 6.28)], float)
        ref.set_state(init)
        recorded, actions = [], []
        for _ in range(80):
            actions.append(pushing_actions(ref, 1, rng)[0])
            recorded.append(ref.obs())
        env = PushTEnv(render_mode=None, restore_mode="episode")
        env.reset(options={"state": init})
        for t, action in enumerate(actions):
            obs, *_ = env.step(action)
            err = np.abs(obs["state"] - recorded[t])
            err[4] = min(err[4], 2 * np.pi - err[4])
            assert err.max() < 1e-6, f"step {t}: replay error {err.max():.3g}"
        moved.append(np.linalg.norm(recorded[-1][2:4] - init[2:4]))
    assert np.median(moved) > 30, "the recorded trajectories must push the block"


def test_success_terminates_and_info():
    env = PushTEnv()
    env.reset(seed=0)
    # Block exactly on the goal, pusher far away.
    obs, info = env.reset(options={"state": np.array([50.0, 450.0, *GOAL_POSE])})
    assert info["coverage"] == pytest.approx(1.0) and info["is_success"]
    obs, reward, terminated, truncated, info = env.step(np.array([50.0, 450.0]))
    assert terminated and reward == 1.0 and info["max_coverage"] == pytest.approx(1.0)


def test_max_coverage_is_tracked_and_restored():
    env = PushTEnv()
    env.reset(options={"state": np.array([50.0, 450.0, *(GOAL_POSE + [0, 40, 0])])})
    first = env._read_physical()[13]
    state = env.get_state()
    other = PushTEnv()
    other.reset(seed=1)
    other.set_state(state)
    assert other.max_coverage == first == coverage(state[None])[0]


@pytest.mark.parametrize("action, match", [
    (np.array([np.nan, 3.0]), "finite"),
    (np.array([1.0, np.inf]), "finite"),
    (np.zeros(3), "shape"),
    (np.zeros((1, 2)), "shape"),
    ("left", "numeric"),
])
def test_bad_actions_raise_naming_the_value(action, match):
    env = PushTEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        env.step(action)


def test_out_of_workspace_actions_are_clipped():
    a, b = PushTEnv(), PushTEnv()
    a.reset(seed=5), b.reset(seed=5)
    a.step(np.array([-300.0, 900.0]))
    b.step(np.array([0.0, 512.0]))
    np.testing.assert_array_equal(a.get_state(), b.get_state())


def test_bad_states_and_options():
    env = PushTEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.set_state(np.zeros(7))
    with pytest.raises(ValueError, match="finite"):
        env.set_state(np.full(14, np.nan))
    with pytest.raises(ValueError, match="corrupt"):
        env.set_state(np.concatenate([np.zeros(28), [3.0], np.zeros(2)]))
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"stat": np.zeros(5)})
    with pytest.raises(ValueError, match="seed"):
        env.reset(seed=-1)
    with pytest.raises(ValueError, match="restore_mode"):
        PushTEnv(restore_mode="never")


def test_random_goal_is_drawn_in_the_image():
    env = gym.make("uva_plan/PushTRandomGoal-v0")
    obs_a, _ = env.reset(seed=0)
    obs_b, _ = env.reset(seed=1)
    assert not np.allclose(obs_a["goal_pose"], obs_b["goal_pose"])
    state = env.unwrapped.get_state()[:14]
    np.testing.assert_allclose(state[10:12], obs_b["goal_pose"][:2])
    # The goal's light green appears around the goal's CoG in the rendered frame.
    frame = PushTEnv.render_states(state[None], 128)[0]
    gx, gy, ga = state[10:13]
    cx, cy = gx - 45 * math.sin(ga) * -1, gy + 45 * math.cos(ga)
    px = frame[int(cy / 4), int(cx / 4)]
    assert px[1] > px[0] and px[1] > px[2], f"expected greenish goal pixel, got {px}"


def test_render_states_matches_observation_and_sizes():
    env = PushTEnv(render_size=96)
    obs, _ = env.reset(seed=2)
    assert obs["image"].shape == (96, 96, 3)
    np.testing.assert_array_equal(PushTEnv.render_states(env.get_state()[None], 96)[0], obs["image"])
    np.testing.assert_array_equal(env.render(), obs["image"])
    batch = PushTEnv.render_states(np.stack([env.get_state()[:14]] * 3), 64)
    assert batch.shape == (3, 64, 64, 3)


def test_dp_states_round_trip():
    env = PushTEnv()
    state5 = np.array([100.0, 200.0, 300.0, 250.0, 1.2])
    env.reset(options={"state": state5})
    np.testing.assert_allclose(dp_states(env.get_state()[None])[0], state5, atol=1e-9)


def test_restore_into_a_used_env_is_exact():
    """A simulator env reused for many candidates must not leak hidden solver state (bias
    velocities) from one rollout into the next."""
    rng = np.random.default_rng(8)
    env = PushTEnv(render_mode=None)
    env.reset(seed=8)
    _contact_rich_actions(env, 20, rng)
    saved = env.get_state()
    future = np.clip(np.asarray(env.block.position) + rng.normal(0, 30, (30, 2)), 0, 512)
    used = PushTEnv(render_mode=None)
    used.reset(seed=1)
    _contact_rich_actions(used, 20, rng)  # leave it mid-contact
    trajectories = []
    for sim in (env, used, PushTEnv(render_mode=None)):
        sim.set_state(saved)
        trajectories.append(np.array([(sim.step(u), sim.get_state()[:14])[1] for u in future]))
    np.testing.assert_array_equal(trajectories[0], trajectories[1])
    np.testing.assert_array_equal(trajectories[0], trajectories[2])


def test_state_accessors_and_task_functions_on_any_batch_shape():
    from uva_plan.envs import pusht

    env = PushTEnv()
    env.reset(seed=4)
    state = env.get_state()[:pusht.STATE_DIM]
    batch = np.stack([state, state])[None]  # (1, 2, P)
    np.testing.assert_array_equal(pusht.agent_position(state), state[:2])
    np.testing.assert_array_equal(pusht.block_cog(state), state[4:6])
    assert pusht.block_angle(state) == state[6]
    np.testing.assert_array_equal(pusht.goal_pose(batch), np.broadcast_to(GOAL_POSE, (1, 2, 3)))
    assert pusht.agent_position(batch).shape == (1, 2, 2) and pusht.block_angle(batch).shape == (1, 2)
    goal = pusht.check_goal(pusht.goal_of(state))
    solved = pusht.solved_state(goal, np.array([40.0, 40.0]))
    assert coverage(solved)[0] == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match=r"goal_pose must be finite with shape \(3,\)"):
        pusht.check_goal({"goal_pose": [1.0, 2.0]})
