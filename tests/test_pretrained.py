"""The shipped weights (uva_plan/pretrained/) load and do their jobs on real frames."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import uva_plan  # noqa: F401  (registers the envs)
from tests.test_models import one_thread  # noqa: F401  (autouse: one torch thread)
from uva_plan.checkpoint import load_model, read_meta
from uva_plan.hub import ENVS, pretrained_checkpoint, total_bytes
from uva_plan.models.state_head import pose_targets
from uva_plan.models.vae import psnr
from uva_plan.pretrained import load_world_model
from uva_plan.proposers import DPCProposer


def test_shipped_weights_fit_the_budget():
    assert total_bytes() <= 40 * 10**6
    vae_sha = read_meta(pretrained_checkpoint("vae"))["files"]["model.safetensors"]["sha256"]
    for env in ENVS:
        for part in ("uva", "dpc", "state_head", "state_head_imagined"):
            meta = read_meta(pretrained_checkpoint(f"{env}/{part}"))  # verifies the files' hashes
            assert meta["env_id"] == ENVS[env] and meta["extra"]["vae"]["weights_sha256"] == vae_sha


@pytest.mark.parametrize("env", sorted(ENVS))
def test_shipped_models_on_real_frames(env):
    world = load_world_model(env)
    gym_env = gym.make(ENVS[env], render_size=world.image_size)
    observations = [gym_env.reset(seed=s)[0] for s in range(8)]
    frames = np.stack([o["image"] for o in observations])
    assert psnr(world.decode(world.encode(frames)), frames) > 30.0  # the VAE's held-out figure is ~34 dB

    # The state head reads the objects' positions from real latents (held-out error ~5 / ~30 px).
    head, _ = load_model(pretrained_checkpoint(f"{env}/state_head"))
    true = []
    for seed in range(8):
        gym_env.reset(seed=seed)
        true.append(pose_targets(ENVS[env], np.asarray(gym_env.unwrapped.physical_state())[None])[0])
    with torch.inference_mode():
        pred = head.predict(world.encode(frames)).double().numpy()
    xy_error = np.linalg.norm(pred[:, :2] - np.array(true)[:, :2], axis=1)
    assert np.median(xy_error) < (20.0 if env == "pusht" else 60.0), xy_error

    # The imagination-trained head was trained on this UVA's imagined frames, and still reads real ones.
    imagined_head, meta = load_model(pretrained_checkpoint(f"{env}/state_head_imagined"), expected_kind="state_head")
    assert meta["extra"]["imagined"]["uva"].endswith(f"{env}/uva")
    with torch.inference_mode():
        pred = imagined_head.predict(world.encode(frames)).double().numpy()
    xy_error = np.linalg.norm(pred[:, :2] - np.array(true)[:, :2], axis=1)
    assert np.median(xy_error) < (30.0 if env == "pusht" else 80.0), xy_error

    # Forward dynamics and the DP-C proposer run on a real context and stay in bounds.
    context = world.context([observations[0]] * world.n_history)
    proposer = DPCProposer.from_checkpoint(pretrained_checkpoint(f"{env}/dpc"), vae=world.vae)
    chunks = proposer.sample(context, 4)
    assert chunks.shape == (4, world.horizon, 2) and chunks.abs().max() <= 1.0
    rollout = world.rollout(context, chunks)
    assert rollout.latents.shape == (4, world.n_frames, 4, 8, 8) and torch.isfinite(rollout.latents).all()
