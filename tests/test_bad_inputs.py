"""Regressions for the bad inputs that benchmarks/bad_inputs.py found without a clear error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.test_data import META, fake_episode
from tests.test_models import make_uva
from uva_plan.data.store import EpisodeStore
from uva_plan.envs import BlockPushEnv


@pytest.mark.parametrize("seed", [-1, 1.5])
def test_blockpush_reset_names_a_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        BlockPushEnv(render_size=16).reset(seed=seed)


@pytest.mark.parametrize("seed", ["x", None, math.nan, 1.5, True])
def test_write_episode_names_a_bad_seed(tmp_path, seed):
    with EpisodeStore.create(tmp_path, META) as store:
        with pytest.raises(ValueError, match="seed must be an int"):
            store.write_episode(0, **{**fake_episode(3, 0), "seed": seed})
        store.write_episode(0, **{**fake_episode(3, 0), "seed": np.int64(4)})  # numpy ints still pass


def test_uva_names_missing_latents_and_a_bad_n():
    model = make_uva()
    latents = torch.zeros(1, 2, 4, 4, 4)
    with pytest.raises(ValueError, match="latents"):
        model.policy({})
    for n in (0, -1, 2.0):
        with pytest.raises(ValueError, match="n must be an int >= 1"):
            model.sample_actions({"latents": latents}, n)
    assert model.sample_actions({"latents": latents}, 2).shape == (2, model.config.horizon, 2)


# -- misleading errors: each names the bad value ------------------------------------------------
def sim_planner(optimizer=None):
    from planners import BestOfN, Planner
    from uva_plan.dynamics import SimulatorDynamics
    from uva_plan.objectives import PushTSimObjective

    return Planner(SimulatorDynamics("uva_plan/PushT-v0"), optimizer or BestOfN(n_samples=2),
                   objective=PushTSimObjective(), horizon=2, n_action_steps=1)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_non_finite_agent_pos_is_named(value):
    import gymnasium as gym

    from uva_plan.dynamics import PrivilegedState

    obs, _ = PrivilegedState(gym.make("uva_plan/PushT-v0", render_size=16)).reset(seed=0)
    with pytest.raises(ValueError, match=r"obs\['agent_pos'\] must be finite"):
        sim_planner().plan({**obs, "agent_pos": np.array([value, 1.0])})


def test_plan_of_the_reset_tuple_says_to_pass_obs():
    import gymnasium as gym

    from uva_plan.dynamics import PrivilegedState

    env = PrivilegedState(gym.make("uva_plan/PushT-v0", render_size=16))
    with pytest.raises(ValueError, match=r"\(obs, info\): pass obs"):
        sim_planner().plan(env.reset(seed=0))


def quadratic(actions):
    return (actions ** 2).sum((1, 2))


def optimizers():
    from planners import CEM, ICEM, MPPI, BestOfN

    return [BestOfN(n_samples=4), CEM(n_samples=8, n_elites=2, n_iterations=2),
            MPPI(n_samples=8, n_elites=2, n_iterations=2, n_proposals=2),
            ICEM(n_samples=8, n_elites=2, n_iterations=2)]


@pytest.mark.parametrize("index", range(4))
def test_a_non_finite_init_or_proposal_is_named(index):
    optimizer = optimizers()[index]
    with pytest.raises(ValueError, match="init must be finite"):
        optimizer.search(quadratic, torch.full((4, 2), math.nan))
    proposals = torch.zeros(3, 4, 2)
    proposals[1, 2, 0] = math.nan
    with pytest.raises(ValueError, match="proposals must be finite"):
        optimizer.search(quadratic, torch.zeros(4, 2), proposals)
    with pytest.raises(ValueError, match=r"proposals must hold at least one .* got \(0, 4, 2\)"):
        optimizer.search(quadratic, torch.zeros(4, 2), torch.zeros(0, 4, 2))
    with pytest.raises(ValueError, match=r"init must be an \(H, A\) tensor with H >= 1 and A >= 1, got \(0, 2\)"):
        optimizer.search(quadratic, torch.zeros(0, 2))


@pytest.mark.parametrize("make, match", [
    (lambda: __import__("planners").MPPI(temperature=math.inf), "temperature"),
    (lambda: __import__("planners").MPPI(init_std=math.inf), "init_std"),
    (lambda: __import__("planners").CEM(init_std=math.inf), "init_std"),
    (lambda: __import__("planners").ICEM(init_std=math.inf), "init_std"),
    (lambda: __import__("planners").ICEM(noise_beta=35.0), "noise_beta"),
    (lambda: __import__("planners").ICEM(noise_beta=math.inf), "noise_beta"),
])
def test_infinite_or_out_of_range_settings_are_refused_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_icem_plans_across_its_noise_beta_range():
    from planners import ICEM

    target = torch.full((16, 2), 0.5)
    for beta in (0.0, 2.0, 5.0, 10.0):
        result = ICEM(n_samples=16, n_elites=4, noise_beta=beta).search(
            lambda a: ((a - target) ** 2).sum((1, 2)), torch.zeros(16, 2))
        assert result.cost < 0.75 * (16 * 2 * 0.25)  # well below the init's cost


@pytest.mark.parametrize("make", ["gaussian", "uniform", "world"])
def test_a_non_int_seed_is_named(make):
    from uva_plan.proposers import GaussianProposer, UniformProposer

    with pytest.raises(ValueError, match="seed must be an int >= 0, got seed='a'"):
        if make == "gaussian":
            GaussianProposer(seed="a")
        elif make == "uniform":
            UniformProposer(seed="a")
        else:
            from tests.test_uva_adapter import tiny_world
            tiny_world(seed="a")


@pytest.mark.parametrize("checkpoints", [["uva"], "uva"])
def test_checkpoints_not_a_dict_is_named(checkpoints):
    from uva_plan.pretrained import pretrained_world_model

    with pytest.raises(ValueError, match=r"checkpoints must be a dict .* got"):
        pretrained_world_model("pusht", checkpoints=checkpoints)


@pytest.mark.parametrize("env_name", ["PushTEnv", "BlockPushEnv"])
def test_reset_options_not_a_dict_is_named(env_name):
    import uva_plan.envs as envs

    with pytest.raises(ValueError, match="options must be a dict or None, got options='abc'"):
        getattr(envs, env_name)(render_size=16).reset(options="abc")


@pytest.mark.parametrize("content", ["{not json", '{"fingerprint": {}}', "[1, 2]"])
def test_a_damaged_resume_file_is_named(tmp_path, content):
    from uva_plan.runner import PARTIAL, run_episodes

    (tmp_path / PARTIAL).write_text(content)
    with pytest.raises(ValueError, match=str(tmp_path / PARTIAL)):
        run_episodes("uva_plan/PushT-v0", sim_planner(), 1, out_dir=tmp_path, resume=True,
                     env_kwargs={"max_episode_steps": 2})


# -- environment edges ---------------------------------------------------------------------------
def envs():
    from uva_plan.envs import BlockPushEnv, PushTEnv

    return [PushTEnv(render_size=16), BlockPushEnv(render_size=16)]


@pytest.mark.parametrize("index", range(2))
@pytest.mark.parametrize("entry, value", [(0, 600.0), (1, -5.0), (4, 530.0), (5, -1.0)])
def test_positions_outside_the_workspace_are_refused(index, entry, value):
    env = envs()[index]
    env.reset(seed=0)
    physical = env.get_state()[: env.physical_dim].copy()
    physical[entry] = value
    before = env.get_state()
    for call in (lambda: env.set_state(physical), lambda: env.reset(seed=0, options={"state": physical})):
        with pytest.raises(ValueError, match=rf"outside the workspace \[0, 512\].*{value}"):
            call()
    full = env.get_state()
    full[env.physical_dim + entry] = value  # the anchor the full state restores from
    with pytest.raises(ValueError, match="anchor"):
        env.set_state(full)
    np.testing.assert_array_equal(env.get_state(), before)  # a refused state changes nothing
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


def test_pusht_dp_state_outside_the_workspace_is_refused():
    env = envs()[0]
    with pytest.raises(ValueError, match=r"outside the workspace \[0, 512\].*700"):
        env.set_state(np.array([700.0, 100.0, 200.0, 200.0, 0.0]))


@pytest.mark.parametrize("index", range(2))
def test_a_full_state_with_a_non_finite_anchor_is_refused(index):
    env = envs()[index]
    env.reset(seed=0)
    full = env.get_state()
    full[env.physical_dim + 2] = np.nan
    with pytest.raises(ValueError, match="anchor.*finite"):
        env.set_state(full)


@pytest.mark.parametrize("index", range(2))
@pytest.mark.parametrize("action", [np.array([100 + 1j, 200 + 0j]), np.array([True, False]), [True, 1.0]])
def test_complex_and_bool_actions_are_refused(index, action):
    env = envs()[index]
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must be real numbers"):
        env.step(action)


@pytest.mark.parametrize("index", range(2))
@pytest.mark.parametrize("seed", [True, False])
def test_a_bool_seed_is_refused(index, seed):
    with pytest.raises(ValueError, match=f"seed must be a non-negative int or None, got {seed}"):
        envs()[index].reset(seed=seed)


def test_an_observation_of_the_other_env_is_refused():
    import gymnasium as gym

    from planners import BestOfN, Planner
    from uva_plan.dynamics import UVAWorldModel

    planner = Planner(UVAWorldModel.from_pretrained("pusht", seed=0), optimizer=BestOfN(n_samples=4))
    blockpush_obs, _ = gym.make("uva_plan/BlockPush-v0").reset(seed=0, options={"task": 0})
    with pytest.raises(ValueError, match="plans for uva_plan/PushT-v0"):
        planner.plan(blockpush_obs)
    pusht_obs, _ = gym.make("uva_plan/PushT-v0").reset(seed=0)
    assert planner.plan(pusht_obs).shape == (8, 2)  # the refused observation left nothing behind


def test_a_dpc_of_the_other_env_is_refused():
    from uva_plan import hub
    from uva_plan.dynamics import UVAWorldModel

    with pytest.raises(ValueError, match="trained on uva_plan/BlockPush-v0, not uva_plan/PushT-v0"):
        UVAWorldModel.from_pretrained("pusht", checkpoints={"dpc": str(hub.pretrained_checkpoint("blockpush/dpc"))})


def test_a_meta_json_without_file_records_is_refused(tmp_path):
    import json
    import shutil

    from uva_plan import hub
    from uva_plan.checkpoint import CheckpointError, load_model

    copy = tmp_path / "vae"
    shutil.copytree(hub.pretrained_checkpoint("vae"), copy)
    meta = json.loads((copy / "meta.json").read_text())
    (copy / "meta.json").write_text(json.dumps({**meta, "files": {}}))
    with pytest.raises(CheckpointError, match="records no size and sha256 for model.safetensors"):
        load_model(copy, expected_kind="vae")
