"""UVA behind the planners' protocols (``UVAWorldModel``, ``UVAPolicy``) on tiny untrained
models: frame timing of the context, shapes, bounds, seeding, loading and bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import uva_plan  # noqa: F401  (registers the envs)
from planners import BestOfN, Planner
from uva_plan.checkpoint import CheckpointError, save_checkpoint
from uva_plan.controllers import UVAPolicy
from uva_plan.data.latents import vae_identity
from uva_plan.data.store import MinMaxNormalizer
from uva_plan.dynamics import UVAWorldModel
from uva_plan.models import UVA, FrameVAE, VAEConfig
from uva_plan.runner import run_episode

from .test_models import one_thread, tiny_uva_config, wake_heads  # noqa: F401  (fixture)

SIZE = 16


def tiny_vae(seed: int = 0) -> FrameVAE:
    torch.manual_seed(seed)  # stride 4: 16 x 16 frames -> 4 x 4 latents, what the tiny UVA takes
    return FrameVAE(VAEConfig(image_size=SIZE, block_out_channels=(16, 32, 32), norm_num_groups=8)).eval()


def tiny_world(**kwargs) -> UVAWorldModel:
    torch.manual_seed(0)
    uva = wake_heads(UVA(tiny_uva_config()).eval())
    return UVAWorldModel(uva, tiny_vae(), MinMaxNormalizer(np.zeros(2), np.full(2, 512.0)), **kwargs)


class LatentNorm:
    def cost(self, rollout):
        return rollout.latents.flatten(1).norm(dim=1)


def fake_obs(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8), "agent_pos": rng.uniform(0, 512, 2)}


def test_context_takes_frames_every_stride_steps():
    world = tiny_world()
    assert world.n_history == 3  # tiny UVA: 2 history frames, 2 steps apart
    history = [fake_obs(i) for i in range(3)]
    context = world.context(history)
    images = np.stack([o["image"] for o in history])
    torch.testing.assert_close(context.latents[0], world.encode(images[[0, 2]]))
    torch.testing.assert_close(context.recent_latents[0], world.encode(images[[1, 2]]))
    np.testing.assert_array_equal(context.agent_pos, history[-1]["agent_pos"])


def test_planner_sees_every_step_through_observe():
    world = tiny_world()
    planner = Planner(world, optimizer=BestOfN(n_samples=4), objective=LatentNorm(), horizon=4, n_action_steps=3)
    env = gym.make("uva_plan/PushT-v0", render_size=SIZE, max_episode_steps=7)
    metrics, _ = run_episode(env, planner, seed=0)
    assert metrics["steps"] == 7 and metrics["n_plans"] == 3
    # The history ends with the last three real steps' observations (plans at 0, 3, 6).
    assert len(planner.history) == 3 and len({id(o) for o in planner.history}) == 3
    actions = planner.plan(planner.history[-1])
    assert actions.shape == (3, 2) and ((actions >= 0) & (actions <= 512)).all()


def test_rollout_shapes_batching_and_seeding():
    world = tiny_world(max_batch=3)
    context = world.context([fake_obs(i) for i in range(3)])
    actions = torch.rand(7, 4, 2) * 2 - 1
    first = world.rollout(context, actions).latents
    assert first.shape == (7, 2, 4, 4, 4) and torch.isfinite(first).all()
    world.reset()
    torch.testing.assert_close(world.rollout(context, actions).latents, first)
    world.reset()
    proposals = world.sample(context, 5)
    assert proposals.shape == (5, 4, 2) and proposals.abs().max() <= 1
    assert world.decode(first[:2]).shape == (2, 2, SIZE, SIZE, 3)


def test_forward_dynamics_through_the_adapter_depends_on_actions():
    world = tiny_world()
    context = world.context([fake_obs(i) for i in range(3)])
    a = torch.zeros(2, 4, 2)
    b = a.clone()
    b[1] = 0.9
    world.reset()
    out_a = world.rollout(context, a).latents
    world.reset()
    out_b = world.rollout(context, b).latents
    torch.testing.assert_close(out_a[0], out_b[0])  # same draw, same action: same future
    assert not torch.allclose(out_a[1], out_b[1])


def test_uva_policy_returns_env_unit_actions():
    policy = UVAPolicy(tiny_world(), n_action_steps=3)
    env = gym.make("uva_plan/PushT-v0", render_size=SIZE, max_episode_steps=6)
    metrics, _ = run_episode(env, policy, seed=1)
    assert metrics["steps"] == 6 and metrics["n_plans"] == 2
    chunk = policy.plan(policy.history[-1])
    assert chunk.shape == (3, 2) and ((chunk >= 0) & (chunk <= 512)).all()


def test_load_checks_the_vae(tmp_path):
    world = tiny_world()
    vae_dir = save_checkpoint(tmp_path / "vae", world.vae, kind="vae", config=world.vae.config.__dict__,
                              normalizers=None, env_id=None, extra={}, step=1)
    other = tiny_vae(seed=5)
    other_dir = save_checkpoint(tmp_path / "vae2", other, kind="vae", config=other.config.__dict__,
                                normalizers=None, env_id=None, extra={}, step=1)
    uva_dir = save_checkpoint(tmp_path / "uva", world.uva, kind="uva", config=world.uva.config.__dict__,
                              normalizers={"actions": world.normalizer}, env_id="uva_plan/PushT-v0",
                              extra={"vae": vae_identity(vae_dir)}, step=3)
    loaded = UVAWorldModel.load(uva_dir)
    assert loaded.env_id == "uva_plan/PushT-v0"
    context = world.context([fake_obs(i) for i in range(3)])
    torch.testing.assert_close(loaded.context([fake_obs(i) for i in range(3)]).latents, context.latents)
    with pytest.raises(CheckpointError, match="sha256"):
        UVAWorldModel.load(uva_dir, other_dir)


@pytest.mark.parametrize("call, match", [
    (lambda w: w.context([fake_obs(0)] * 2), "last 3 observations"),
    (lambda w: w.encode(np.zeros((1, 64, 64, 3), np.uint8)), "render_size=16"),
    (lambda w: w.context([{"image": np.zeros((SIZE, SIZE, 3), np.uint8)}] * 3), "agent_pos"),
    (lambda w: w.rollout(w.context([fake_obs(0)] * 3), torch.zeros(2, 5, 2)), r"\(N, 4, 2\)"),
    (lambda w: UVAPolicy(w, n_action_steps=9), "n_action_steps"),
    (lambda w: UVAWorldModel(w.uva, w.vae, w.normalizer, temperature=0.0), "temperature"),
])
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call(tiny_world())


@pytest.mark.parametrize("make", ["planner", "uva_policy"])
@pytest.mark.parametrize("bad", [{"agent_pos": np.zeros(2)},  # no image
                                 {"image": np.zeros((SIZE, SIZE, 3), np.uint8), "agent_pos": np.full(2, np.nan)},
                                 {"image": np.zeros((SIZE + 1, SIZE, 3), np.uint8), "agent_pos": np.zeros(2)}])
def test_a_bad_observation_leaves_the_history_alone(make, bad):
    def controller():
        if make == "planner":
            return Planner(tiny_world(), optimizer=BestOfN(n_samples=4), objective=LatentNorm(), horizon=4,
                           n_action_steps=3)
        return UVAPolicy(tiny_world(), n_action_steps=3)

    hit, clean = controller(), controller()
    for obs in (fake_obs(0), fake_obs(1)):
        hit.plan(obs)
        clean.plan(obs)
    with pytest.raises(ValueError):
        hit.plan(bad)
    with pytest.raises(ValueError):
        hit.observe(bad)
    good = fake_obs(2)
    np.testing.assert_array_equal(hit.plan(good), clean.plan(good))
    assert [id(o) for o in hit.history] == [id(o) for o in clean.history]


@pytest.mark.slow
def test_the_random_goal_reaches_the_learned_planner():
    """PushTRandomGoal's goal is in the observation; the learned planner must rank by it."""
    from uva_plan.dynamics import UVAWorldModel

    env = gym.make("uva_plan/PushTRandomGoal-v0")
    obs, _ = env.reset(seed=3)
    planner = Planner(UVAWorldModel.from_pretrained("pusht", seed=0), optimizer=BestOfN(n_samples=16))
    results = {}
    for name, goal in (("own", obs["goal_pose"]), ("far", np.array([120.0, 400.0, 0.0])),
                       ("fixed", np.array([256.0, 256.0, np.pi / 4]))):
        planner.reset()  # the same 16 proposals each time: only the goal differs
        planner.plan({**obs, "goal_pose": goal})
        assert np.allclose(planner.last_context.goal_pose, goal)
        results[name] = planner.last_result
    costs = {name: np.asarray(r.info["costs"]) for name, r in results.items()}  # (16,) each
    assert not np.allclose(costs["own"], costs["far"]) and not np.allclose(costs["own"], costs["fixed"])
    with pytest.raises(ValueError, match="goal_pose"):
        planner.plan({**obs, "goal_pose": np.array([np.nan, 0.0, 0.0])})
