"""Colour locator (uva_plan.locate) and the LocatedReward objective built on it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from planners import Rollout
from tests.test_models import one_thread  # noqa: F401  (autouse: one torch thread)
from uva_plan.dynamics import SimContext, SimulatorDynamics
from uva_plan.envs import blockpush as bp
from uva_plan.envs import pusht
from uva_plan.locate import ColourLocator
from uva_plan.objectives import BlockPushSimObjective, LocatedReward, PushTSimObjective

PUSHT, BLOCKPUSH = "uva_plan/PushT-v0", "uva_plan/BlockPush-v0"


def random_states(env_cls, n: int, seed: int = 0) -> np.ndarray:
    """Physical states after a random number of random actions from seeded resets."""
    env, rng = env_cls(render_size=64), np.random.default_rng(seed)
    env.action_space.seed(seed)
    states = []
    for s in range(n):
        env.reset(seed=s)
        for _ in range(int(rng.integers(0, 30))):
            env.step(env.action_space.sample())
        states.append(env.get_state()[:env.physical_dim])
    return np.asarray(states)


def test_locator_reads_pusht_pose_from_rendered_frames():
    states = random_states(pusht.PushTEnv, 40)
    located = ColourLocator(PUSHT).locate(pusht.PushTEnv.render_states(states, 64))
    cog_error = np.linalg.norm(located["tee"].position - states[:, 4:6], axis=1)
    angle_error = np.abs((located["tee"].angle - states[:, 6] + np.pi) % (2 * np.pi) - np.pi)
    agent_error = np.linalg.norm(located["agent"].position - states[:, :2], axis=1)
    # One pixel of the 64 x 64 frame is 8 px of the workspace.
    assert cog_error.max() < 4.0 and np.degrees(angle_error).max() < 5.0 and agent_error.max() < 6.0
    assert (located["tee"].visible > 0.8).all()


def test_locator_reads_blocks_and_pusher_from_rendered_frames():
    states = random_states(bp.BlockPushEnv, 40)
    located = ColourLocator(BLOCKPUSH).locate(bp.BlockPushEnv.render_states(states, 64))
    for b in range(2):
        error = np.linalg.norm(located[f"block{b}"].position - states[:, 4 + 6 * b:6 + 6 * b], axis=1)
        # Under 1 frame pixel (8 px) always, well under it typically (the pusher can hide a corner).
        assert error.max() < 6.0 and np.median(error) < 1.0, (b, error)
    assert np.linalg.norm(located["agent"].position - states[:, :2], axis=1).max() < 4.0


def test_a_vanished_object_is_not_found():
    state = random_states(bp.BlockPushEnv, 1)
    frame = bp.BlockPushEnv.render_states(state, 64).copy()
    located = ColourLocator(BLOCKPUSH).locate(frame)
    x, y = (located["block0"].position[0] / 8).astype(int)
    frame[0, max(0, y - 4):y + 5, max(0, x - 4):x + 5] = bp.BACKGROUND  # paint the red block out
    gone = ColourLocator(BLOCKPUSH).locate(frame)
    assert np.isnan(gone["block0"].position).all() and gone["block0"].visible[0] < 0.25
    assert np.isfinite(gone["block1"].position).all()


def test_locator_rejects_bad_frames():
    with pytest.raises(ValueError, match="frames must be RGB"):
        ColourLocator(PUSHT).locate(np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(ValueError, match="min_visible"):
        ColourLocator(PUSHT, min_visible=1.5)


class FrameStore:
    """A 'world model' whose latents (N, T, 1, 1, 1) hold indices into real rendered frames, so
    the objective's decode-locate-score path runs on exact frames."""

    def __init__(self, frames: np.ndarray):
        self.frames = frames

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        index = latents.reshape(*latents.shape[:-3]).long().numpy()
        return self.frames[index]


@pytest.mark.parametrize("env_id", [PUSHT, BLOCKPUSH])
def test_located_reward_ranks_as_the_simulator_objective_on_real_frames(env_id):
    """On the frames the simulator really produces, LocatedReward's ranking of candidate chunks
    is the simulator objective's ranking: the only difference left is the dynamics."""
    sim = SimulatorDynamics(env_id)
    env_cls = pusht.PushTEnv if env_id == PUSHT else bp.BlockPushEnv
    sim.env.reset(seed=3, options=None if env_id == PUSHT else {"task": 1})
    start = sim.env.get_state()
    rng = np.random.default_rng(0)
    here = start[:2] / 256.0 - 1.0
    steps = rng.normal(0, 0.08, size=(48, 16, 2)).cumsum(axis=1)
    actions = torch.from_numpy(np.clip(here + steps, -1, 1)).float()
    true = sim.rollout(SimContext(state=start, agent_pos=start[:2]), actions)
    last = true.states[:, -1].numpy()
    frames = env_cls.render_states(last[:, :env_cls.physical_dim], 64)
    context = SimpleNamespace(task=1, targets=start[16:20].reshape(2, 2), latents=None)
    latents = torch.arange(len(frames), dtype=torch.float32).reshape(-1, 1, 1, 1, 1)
    objective = LocatedReward(FrameStore(frames), env_id)
    located = objective.cost(Rollout(actions=actions, latents=latents, context=context)).numpy()
    exact_objective = PushTSimObjective() if env_id == PUSHT else BlockPushSimObjective(task=1)
    exact = exact_objective.cost(Rollout(actions=actions, states=true.states[:, -1:])).numpy()
    assert spearmanr(located, exact).statistic > 0.95
    assert int(np.argmin(located)) in set(np.argsort(exact)[:3].tolist())


def test_located_reward_keeps_a_vanished_block_where_the_context_saw_it():
    state = random_states(bp.BlockPushEnv, 1)
    frames = bp.BlockPushEnv.render_states(np.repeat(state, 2, axis=0), 64).copy()
    located = ColourLocator(BLOCKPUSH).locate(frames[:1])
    x, y = (located["block0"].position[0] / 8).astype(int)
    frames[1, max(0, y - 4):y + 5, max(0, x - 4):x + 5] = bp.BACKGROUND  # imagined: the block is gone
    context = SimpleNamespace(task=0, targets=state[0, 16:20].reshape(2, 2),
                              latents=torch.zeros(1, 1, 1, 1, 1))  # its last frame is frames[0]
    objective = LocatedReward(FrameStore(frames), BLOCKPUSH)
    states = objective.located_states(Rollout(actions=torch.zeros(1, 16, 2), latents=torch.ones(1, 1, 1, 1, 1),
                                              context=context))
    assert np.linalg.norm(states[0, 0, 4:6] - state[0, 4:6]) < 3.0


def test_located_reward_on_blockpush_needs_a_task():
    frames = bp.BlockPushEnv.render_states(random_states(bp.BlockPushEnv, 1), 64)
    objective = LocatedReward(FrameStore(frames), BLOCKPUSH)
    with pytest.raises(ValueError, match="named task"):
        objective.cost(Rollout(actions=torch.zeros(1, 16, 2), latents=torch.zeros(1, 1, 1, 1, 1),
                               context=SimpleNamespace(task=-1, targets=np.zeros((2, 2)), latents=None)))
    with pytest.raises(ValueError, match="decode"):
        LocatedReward(object(), BLOCKPUSH)


def test_located_reward_reads_the_shipped_vae_reconstructions():
    """Through the shipped VAE (encode, decode) the blocks are still found within ~1 frame pixel."""
    from uva_plan.pretrained import load_world_model

    world = load_world_model("blockpush")
    states = random_states(bp.BlockPushEnv, 12, seed=1)
    frames = world.decode(world.encode(bp.BlockPushEnv.render_states(states, 64)))
    located = ColourLocator(BLOCKPUSH).locate(frames)
    for b in range(2):
        error = np.linalg.norm(located[f"block{b}"].position - states[:, 4 + 6 * b:6 + 6 * b], axis=1)
        assert np.median(error) < 8.0, (b, error)


def test_located_reward_can_take_the_pusher_from_the_actions():
    from uva_plan.data.store import MinMaxNormalizer

    state = random_states(bp.BlockPushEnv, 1)
    frames = bp.BlockPushEnv.render_states(state, 64)
    world = FrameStore(frames)
    world.normalizer = MinMaxNormalizer(np.zeros(2), np.full(2, 512.0))
    world.stride = 4
    actions = torch.rand(3, 16, 2) * 2 - 1
    context = SimpleNamespace(task=0, targets=state[0, 16:20].reshape(2, 2), latents=None)
    rollout = Rollout(actions=actions, latents=torch.zeros(3, 4, 1, 1, 1), context=context)
    states = LocatedReward(world, BLOCKPUSH, frames=(1, -1), pusher="actions").located_states(rollout)
    commanded = (actions.double().numpy() + 1) * 256.0
    np.testing.assert_allclose(states[:, 0, :2], commanded[:, 7], atol=1e-6)  # frame 1 ends at step 7
    np.testing.assert_allclose(states[:, 1, :2], commanded[:, 15], atol=1e-6)
    np.testing.assert_allclose(states[:, :, 4:6], np.broadcast_to(states[:1, :1, 4:6], (3, 2, 2)))  # same frame
    with pytest.raises(ValueError, match="pusher"):
        LocatedReward(world, BLOCKPUSH, pusher="guess")
    with pytest.raises(ValueError, match="normalizer"):
        LocatedReward(FrameStore(frames), BLOCKPUSH, pusher="actions")


def test_static_world_model_imagines_the_last_real_frame():
    from uva_plan.dynamics import StaticWorldModel
    from uva_plan.pretrained import load_world_model

    model = load_world_model("blockpush")
    static = StaticWorldModel(model)
    context = SimpleNamespace(latents=torch.randn(1, 4, 4, 8, 8))
    rollout = static.rollout(context, torch.zeros(5, 16, 2))
    assert rollout.latents.shape == (5, 4, 4, 8, 8)
    assert torch.equal(rollout.latents[3, 2], context.latents[0, -1])
    assert static.n_history == model.n_history and static.decode == model.decode


def test_locator_accuracy_benchmark_runs_on_a_small_store(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    from uva_plan.data.collect import main as collect

    store = tmp_path / "pusht"
    collect(["--env", "uva_plan/PushT-v0", "--expert", "random", "--n-episodes", "20", "--out", str(store),
             "--seed", "0", "--max-steps", "40"])
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "locator_accuracy.py"
    spec = importlib.util.spec_from_file_location("locator_accuracy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--env", "pusht", "--store", str(store), "--n-windows", "3", "--batch", "2",
                        "--threads", "1", "--out", str(tmp_path / "bench")])
    table = {(r["frames"], r["object"]): r for r in rows}
    assert table[("rendered", "tee")]["windows"] == 3 and table[("rendered", "tee")]["median"] < 4.0
    assert {"uva", "copy_last", "commanded", "vae"} <= {k for k, _ in table}
    saved = json.loads((tmp_path / "bench" / "locator_pusht.json").read_text())
    assert saved["git_revision"] and saved["config"]["n_windows"] == 3
