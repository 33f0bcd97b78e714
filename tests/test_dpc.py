"""Tests for DP-C (ConditionalUnet1D policy) and its proposer, on tiny configs (CPU, seconds)."""

from __future__ import annotations

from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.test_models import one_thread  # noqa: F401  (autouse: one torch thread)
from tests.test_train import ENV_ID, compose_train, store, vae_run  # noqa: F401  (fixtures)
from uva_plan.checkpoint import load_model, save_checkpoint
from uva_plan.data.store import MinMaxNormalizer
from uva_plan.models.dpc import DPC, ConditionalUnet1D, DPCConfig
from uva_plan.proposers import DPCProposer
from uva_plan.train import train

B, H, A = 3, 16, 2


def tiny_config(**overrides) -> DPCConfig:
    config = {"latent_channels": 4, "latent_size": 4, "encoder_channels": 4, "latent_feature_dim": 8,
              "down_dims": (16, 32), "kernel_size": 3, "n_groups": 4, "step_embed_dim": 16, "n_sample_steps": 4}
    return DPCConfig(**{**config, **overrides})


def make_dpc(seed: int = 0, **overrides) -> DPC:
    torch.manual_seed(seed)
    return DPC(tiny_config(**overrides))


def dpc_batch(config: DPCConfig, batch_size: int = B, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    side, T = config.latent_size, config.n_obs_steps
    return {"latents": torch.randn(batch_size, T, config.latent_channels, side, side, generator=g),
            "agent_pos": torch.rand(batch_size, T, 2, generator=g) * 2 - 1,
            "states": torch.rand(batch_size, T, config.state_dim, generator=g) * 2 - 1,
            "actions": torch.rand(batch_size, config.horizon, config.action_dim, generator=g) * 2 - 1}


def normalizers() -> dict:
    workspace = MinMaxNormalizer(np.zeros(2), np.full(2, 512.0))
    return {"actions": MinMaxNormalizer(np.full(2, 100.0), np.full(2, 400.0)), "agent_pos": workspace,
            "state": MinMaxNormalizer(np.zeros(14), np.full(14, 512.0))}


def context(config: DPCConfig, n_frames: int = 4, seed: int = 2) -> SimpleNamespace:
    rng = np.random.default_rng(seed)
    side = config.latent_size
    return SimpleNamespace(
        latents=torch.from_numpy(rng.normal(size=(1, n_frames, config.latent_channels, side, side))).float(),
        agent_pos_history=rng.uniform(0, 512, (n_frames, 2)), state_history=rng.uniform(0, 512, (n_frames, 14)))


# ----- the network -----

@pytest.mark.parametrize("down_dims", [(8,), (8, 16), (8, 16, 32)])
def test_unet_keeps_the_chunk_shape(down_dims):
    unet = ConditionalUnet1D(A, global_cond_dim=5, down_dims=down_dims, kernel_size=3, n_groups=4, step_embed_dim=8)
    x = torch.randn(B, H, A)
    out = unet(x, torch.tensor([0, 5, 99]), torch.randn(B, 5))
    assert out.shape == (B, H, A) and torch.isfinite(out).all()


@pytest.mark.parametrize("overrides, obs_dim", [({}, 2 * (8 + 2)), ({"latent_encoder": "flatten"}, 2 * (64 + 2)),
                                                ({"obs_mode": "state"}, 2 * 14)])
def test_loss_and_sample_shapes(overrides, obs_dim):
    model = make_dpc(**overrides)
    batch = dpc_batch(model.config)
    loss, metrics = model.compute_loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss) and set(metrics) == {"loss"}
    chunks = model.sample(batch, 5)
    assert chunks.shape == (B, 5, H, A) and chunks.abs().max() <= 1.0
    assert model.config.obs_dim == obs_dim


def test_default_config_is_the_cpu_sized_diffusion_policy():
    config = DPCConfig()
    assert (config.horizon, config.n_obs_steps, config.down_dims, config.kernel_size, config.n_groups) == (
        16, 2, (64, 128, 256), 5, 8)
    model = DPC(config)
    assert model.train_scheduler.config.num_train_timesteps == 100
    assert model.train_scheduler.config.beta_schedule == "squaredcos_cap_v2"


def eval_loss(model: DPC, batch: dict, repeats: int = 16) -> float:
    """Loss on the batch repeated (many noise draws), under a fixed seed."""
    big = {k: v.repeat(repeats, *[1] * (v.ndim - 1)) for k, v in batch.items()}
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        return model.compute_loss(big)[0].item()


def test_unet_overfits_one_batch():
    model = make_dpc(down_dims=(32, 64))
    batch = dpc_batch(model.config, batch_size=4)
    before = eval_loss(model, batch)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    torch.manual_seed(0)
    for _ in range(200):
        big = {k: v.repeat(4, *[1] * (v.ndim - 1)) for k, v in batch.items()}
        loss, _ = model.compute_loss(big)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = eval_loss(model, batch)
    assert after < before / 5, (before, after)


def test_sample_is_deterministic_under_a_seeded_generator():
    model = make_dpc()
    batch = dpc_batch(model.config)
    first = model.sample(batch, 4, generator=torch.Generator().manual_seed(3))
    again = model.sample(batch, 4, generator=torch.Generator().manual_seed(3))
    other = model.sample(batch, 4, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_save_load_reproduces_samples_exactly(tmp_path):
    model = make_dpc()
    path = save_checkpoint(tmp_path / "dpc", model, kind="dpc", config=asdict(model.config), normalizers=None,
                           env_id=ENV_ID, extra={}, step=0)
    loaded, _ = load_model(path, expected_kind="dpc")
    batch = dpc_batch(model.config)
    assert torch.equal(model.sample(batch, 2, generator=torch.Generator().manual_seed(0)),
                       loaded.sample(batch, 2, generator=torch.Generator().manual_seed(0)))


# ----- bad inputs -----

@pytest.mark.parametrize("field, value", [("obs_mode", "pixels"), ("down_dims", (16, 30)), ("kernel_size", 4),
                                          ("horizon", 9), ("n_sample_steps", 1), ("latent_encoder", "resnet"),
                                          ("action_dim", 0), ("beta_schedule", "cosine")])
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        tiny_config(**{field: value})


def test_bad_inputs_name_the_expected_shape():
    model = make_dpc()
    batch = dpc_batch(model.config)
    with pytest.raises(ValueError, match=r"latents must be a tensor \(B, 2, 4, 4, 4\), got \(3, 3, 4, 4, 4\)"):
        model.compute_loss({**batch, "latents": torch.randn(3, 3, 4, 4, 4)})
    with pytest.raises(ValueError, match=r"must hold 'agent_pos' \(B, 2, 2\)"):
        model.compute_loss({k: v for k, v in batch.items() if k != "agent_pos"})
    with pytest.raises(ValueError, match=r"actions must be \(B, 16, 2\) with B=3, got \(3, 8, 2\)"):
        model.compute_loss({**batch, "actions": batch["actions"][:, :8]})
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        model.sample(batch, 0)
    with pytest.raises(ValueError, match=r"states must be a tensor \(B, 2, 14\)"):
        make_dpc(obs_mode="state").sample({"states": torch.zeros(1, 2, 5)}, 1)


# ----- the proposer -----

def test_proposer_returns_n_normalised_chunks_reproducibly():
    model = make_dpc()
    proposer = DPCProposer(model, normalizers(), seed=5)
    ctx = context(model.config)
    chunks = proposer.sample(ctx, 7)
    assert chunks.shape == (7, H, A) and chunks.abs().max() <= 1.0
    proposer.reset()
    assert torch.equal(proposer.sample(ctx, 7), chunks)
    # Chunks start at the current step: DP-C's action for t - 1 is dropped, the last one held.
    raw = model.sample(proposer.observation(ctx), 7, generator=torch.Generator().manual_seed(5))[0]
    assert torch.equal(chunks[:, :-1], raw[:, 1:]) and torch.equal(chunks[:, -1], raw[:, -1])
    as_dict = {"latents": ctx.latents, "agent_pos_history": ctx.agent_pos_history}
    proposer.reset()
    assert torch.equal(proposer.sample(as_dict, 7), chunks)
    # Only the last two frames count, and recent_latents (DP-C's t-1, t) win over latents.
    proposer.reset()
    older = SimpleNamespace(latents=torch.randn(1, 4, 4, 4, 4), recent_latents=ctx.latents[:, -2:],
                            agent_pos_history=ctx.agent_pos_history)
    assert torch.equal(proposer.sample(older, 7), chunks)
    # A context with frames but no latents goes through the VAE.
    vae = SimpleNamespace(encode=lambda frames: ctx.latents[0, -len(frames):])
    with_frames = SimpleNamespace(latents=None, frames=np.zeros((3, 8, 8, 3), np.uint8),
                                  agent_pos_history=ctx.agent_pos_history)
    assert torch.equal(DPCProposer(model, normalizers(), vae=vae, seed=5).sample(with_frames, 7), chunks)


def test_proposer_renormalises_onto_the_dynamics_bounds():
    model = make_dpc()
    ctx = context(model.config)
    own = DPCProposer(model, normalizers()).sample(ctx, 4)
    workspace = DPCProposer(model, normalizers(), action_low=(0, 0), action_high=(512, 512)).sample(ctx, 4)
    env_units = 100 + (own.double() + 1) / 2 * 300  # the DP-C's action normaliser: [100, 400]
    torch.testing.assert_close(workspace.double(), env_units / 256 - 1, atol=1e-5, rtol=0)


def test_state_mode_proposer_and_bad_contexts():
    model = make_dpc(obs_mode="state")
    proposer = DPCProposer(model, {k: v.to_dict() for k, v in normalizers().items()})
    assert proposer.sample(context(model.config), 3).shape == (3, H, A)
    with pytest.raises(ValueError, match=r"needs context.state_history \(T >= 2, 14\)"):
        proposer.sample(SimpleNamespace(latents=None), 3)
    latent = DPCProposer(make_dpc(), normalizers())
    with pytest.raises(ValueError, match=r"context.latents must be a tensor \(1, T >= 2, 4, 4, 4\)"):
        latent.sample(SimpleNamespace(latents=torch.zeros(1, 1, 4, 4, 4), agent_pos_history=np.zeros((2, 2))), 3)
    with pytest.raises(ValueError, match=r"context.agent_pos_history must be \(T >= 2, 2\), got \(1, 2\)"):
        latent.sample(SimpleNamespace(latents=torch.zeros(1, 2, 4, 4, 4), agent_pos_history=np.zeros((1, 2))), 3)
    with pytest.raises(ValueError, match=r"normalizers must hold .*missing \['agent_pos'\]"):
        DPCProposer(make_dpc(), {"actions": normalizers()["actions"]})
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        latent.sample(context(latent.config), 0)


# ----- training end to end -----

def test_tiny_dpc_trains_on_cached_latents_and_loads_as_a_proposer(vae_run, store, tmp_path):  # noqa: F811
    out = tmp_path / "dpc"
    summary = train(compose_train(["train=dpc_tiny", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                                   f"out_dir={out}", "steps=2", "log_every=1", "val_every=2"]))
    assert summary["step"] == 2 and np.isfinite(summary["train"]["loss"]) and np.isfinite(summary["val"]["loss"])
    model, meta = load_model(out / "final", expected_kind="dpc", expected_env_id=ENV_ID)
    assert meta["extra"]["vae"]["step"] == 3 and set(meta["normalizers"]) >= {"actions", "agent_pos"}
    assert model.config.down_dims == (16, 32) and model.config.latent_size == 8
    proposer = DPCProposer.from_checkpoint(out / "final")
    chunks = proposer.sample(SimpleNamespace(latents=torch.randn(1, 2, 4, 8, 8),
                                             agent_pos_history=np.full((2, 2), 256.0)), 3)
    assert chunks.shape == (3, H, A) and chunks.abs().max() <= 1.0


def test_tiny_dpc_trains_on_states_without_a_vae(store, tmp_path):  # noqa: F811
    out = tmp_path / "dpc_state"
    summary = train(compose_train(["train=dpc_tiny", f"data.stores=[{store}]", "model.obs_mode=state",
                                   f"out_dir={out}", "steps=2", "log_every=1", "val_every=2"]))
    assert np.isfinite(summary["train"]["loss"])
    model, meta = load_model(out / "final", expected_kind="dpc")
    assert model.config.obs_mode == "state" and model.config.state_dim == 14
    assert len(meta["normalizers"]["state"]["low"]) == 14
    with pytest.raises(ValueError, match="needs vae_checkpoint"):
        train(compose_train(["train=dpc_tiny", f"data.stores=[{store}]", f"out_dir={tmp_path / 'x'}"]))
