"""Planning reads UVA exactly as training fed it: the context the planner builds from an
episode's observations equals the training window at that step (frames, their order and
spacing, the first-step padding, the action normalisation)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from planners import History
from uva_plan import hub
from uva_plan.data.collect import EpisodeRunner
from uva_plan.data.latents import LatentWindows, cache_latents, load_latents
from uva_plan.data.sampler import UVA_FRAME_OFFSETS, SequenceSampler
from uva_plan.data.store import EpisodeStore
from uva_plan.envs.blockpush import BlockPushEnv
from uva_plan.pretrained import load_world_model

ENV_ID, SEED = "uva_plan/BlockPush-v0", 900123


@pytest.fixture(scope="module")
def episode(tmp_path_factory):
    """One expert episode, stored as training stores it, and the observations the env emitted."""
    root = tmp_path_factory.mktemp("parity") / "blockpush"
    runner = EpisodeRunner(ENV_ID, {}, "blockpush", max_steps=60)
    recorded = runner(SEED)
    meta = {"env_id": ENV_ID, "env_kwargs": {}, "expert": "blockpush", "seed": SEED,
            "physical_dim": runner.physical_dim, "action_dim": 2}
    with EpisodeStore.create(root, meta) as store:
        store.write_episode(0, recorded["states"], recorded["actions"], recorded["final_state"],
                            recorded["rewards"], seed=SEED)
        store.finalize()
    env = gym.make(ENV_ID)
    obs, _ = env.reset(seed=SEED)
    observations = [obs]
    for action in recorded["actions"][:-1]:
        obs, *_ = env.step(action)
        observations.append(obs)
    return root, recorded, observations


@pytest.fixture(scope="module")
def model():
    return load_world_model("blockpush")


@pytest.mark.slow
@pytest.mark.parametrize("t", [0, 5, 12, 30])  # 0, 5: padded by the episode's first frame
def test_planner_context_equals_the_training_window(episode, model, t):
    root, recorded, observations = episode
    vae = hub.pretrained_checkpoint("vae")
    if not (root / "latents.npy").exists():
        cache_latents(root, vae)
    latents, _ = load_latents(root, expected_vae=vae)
    store = EpisodeStore.open(root)
    sampler = SequenceSampler(store, UVA_FRAME_OFFSETS, action_offset=0, n_actions=model.horizon)
    windows = LatentWindows(sampler, latents, {**store.normalizers(), "actions": model.normalizer})
    window = windows.batch([t])

    history = History(model.n_history)
    for obs in observations[: t + 1]:
        history.append(obs)
    context = model.context(list(history))

    # The same states were rendered: the env's frames are the stored states' frames.
    frame = BlockPushEnv.render_states(recorded["states"][t: t + 1], model.image_size)[0]
    np.testing.assert_array_equal(observations[t]["image"], frame)
    n = model.uva.config.n_history
    trained = window["latents"][:, :n]  # (1, T, C, h, w): frames t - 12, t - 8, t - 4, t
    # The cache stores float16; the planner encodes in float32.
    torch.testing.assert_close(context.latents.float(), trained, atol=2e-2, rtol=1e-2)
    assert (context.latents.half().float() - trained).abs().max() < 2e-2
    # Frames are where the window has them: each planner frame is closest to its own window frame.
    distances = torch.cdist(context.latents[0].flatten(1), trained[0].flatten(1))
    moving = [k for k in range(n) if torch.cdist(trained[0, k].flatten()[None], trained[0].flatten(1)).sort().values[0, 1] > 1e-3]
    assert all(distances[k].argmin().item() == k for k in moving)
    # The actions that follow t, normalised as training normalised them.
    chunk = recorded["actions"][t: t + model.horizon]
    expected = torch.from_numpy(model.normalizer.normalize(chunk)).float()
    torch.testing.assert_close(window["actions"][0, : len(chunk)], expected)
