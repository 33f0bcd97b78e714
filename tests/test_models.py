"""Tests for the frame VAE, the diffusion head and UVA, all on tiny configs (CPU, seconds)."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from uva_plan.models import (
    MODES,
    UVA,
    DiffusionHead,
    DiffusionHeadConfig,
    FrameVAE,
    UVAConfig,
    VAEConfig,
    patchify,
    psnr,
    unpatchify,
)

B = 3


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on the shared 2-core machine (and under pytest -n 2) two threads per
    process oversubscribe the cores, and these small ops then run 10-50x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_uva_config(**overrides) -> UVAConfig:
    config = {"latent_channels": 4, "latent_size": 4, "patch_size": 2, "n_history": 2, "n_future": 2,
              "frame_stride": 2, "actions_per_frame": 2, "width": 32, "depth": 1, "n_heads": 2,
              "video_head": {"width": 32, "depth": 1, "n_train_steps": 100, "n_sample_steps": 4},
              "action_head": {"width": 32, "depth": 1, "n_train_steps": 100, "clip_sample": True},
              "n_video_sample_steps": 2, "n_action_sample_steps": 4}
    return UVAConfig(**{**config, **overrides})


def tiny_vae_config(**overrides) -> VAEConfig:
    return VAEConfig(**{"image_size": 16, "block_out_channels": (16, 32), "norm_num_groups": 8, **overrides})


def make_uva(seed: int = 0, **overrides) -> UVA:
    torch.manual_seed(seed)
    return UVA(tiny_uva_config(**overrides)).eval()


def wake_heads(model: UVA, std: float = 0.1) -> UVA:
    """Give the zero-initialised head layers random weights, so untrained outputs depend on cond."""
    torch.manual_seed(123)
    with torch.no_grad():
        for head in (model.video_head, model.action_head):
            for param in head.parameters():
                if not param.abs().sum() > 0:
                    param.normal_(std=std)
    return model


def uva_batch(config: UVAConfig, batch_size: int = B, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    n_frames = config.n_history + config.n_future
    side = config.latent_size
    return {"latents": torch.randn(batch_size, n_frames, config.latent_channels, side, side, generator=g),
            "actions": torch.rand(batch_size, config.horizon, config.action_dim, generator=g) * 2 - 1}


def history_context(config: UVAConfig, batch: dict) -> dict:
    return {"latents": batch["latents"][:, : config.n_history]}


def seeded(fn, seed: int = 0):
    torch.manual_seed(seed)
    return fn()


def seeded_loss(model: UVA, batch: dict, mode: str | int, seed: int = 0) -> tuple[float, dict]:
    """compute_loss under a fixed torch seed (same noise, timesteps and masks every call)."""
    torch.manual_seed(seed)
    loss, metrics = model.compute_loss(batch, mode=mode)
    return loss.item(), metrics


# ----- helpers and configs -----

def test_patchify_round_trip_and_layout():
    latents = torch.randn(2, 3, 4, 8, 8)
    tokens = patchify(latents, 2)
    assert tokens.shape == (2, 3, 16, 16)
    torch.testing.assert_close(tokens[0, 0, 1], latents[0, 0, :, 0:2, 2:4].permute(1, 2, 0).reshape(-1))
    assert torch.equal(unpatchify(tokens, 2, 8), latents)


def test_default_config_sizes():
    config = UVAConfig()
    assert (config.n_tokens, config.patch_dim, config.horizon) == (16, 16, 16)
    assert UVAConfig(**asdict(config)) == config
    assert VAEConfig().latent_size == 8 and VAEConfig(image_size=96).latent_size == 12


@pytest.mark.parametrize("make, field", [
    (lambda: UVAConfig(patch_size=3), "patch_size"),
    (lambda: UVAConfig(n_future=3), "n_history"),
    (lambda: UVAConfig(actions_per_frame=2), "actions_per_frame"),
    (lambda: UVAConfig(n_heads=5), "n_heads"),
    (lambda: UVAConfig(width=0), "width"),
    (lambda: UVAConfig(mask_ratio_min=0.9, mask_ratio_mean=0.8), "mask_ratio_min"),
    (lambda: UVAConfig(mask_ratio_std=-1.0), "mask_ratio_std"),
    (lambda: UVAConfig(mode_probs=(1.0, 0.0)), "mode_probs"),
    (lambda: UVAConfig(n_video_sample_steps=17), "n_video_sample_steps"),
    (lambda: UVAConfig(video_head={"depht": 3}), "video_head"),
    (lambda: UVAConfig(video_head={"beta_schedule": "cubic"}), "beta_schedule"),
    (lambda: UVAConfig(action_head={"n_sample_steps": 8}), "n_action_sample_steps"),
    (lambda: DiffusionHeadConfig(target_dim=4, cond_dim=4, prediction_type="x0"), "prediction_type"),
    (lambda: DiffusionHeadConfig(target_dim=4, cond_dim=4, n_sample_steps=2000), "n_sample_steps"),
    (lambda: DiffusionHeadConfig(target_dim=0, cond_dim=4), "target_dim"),
    (lambda: VAEConfig(norm_num_groups=12), "norm_num_groups"),
    (lambda: VAEConfig(image_size=60), "image_size"),
    (lambda: VAEConfig(kl_weight=-1.0), "kl_weight"),
])
def test_config_validation_names_the_field(make, field):
    with pytest.raises(ValueError, match=field):
        make()


# ----- diffusion head -----

def eval_loss(head: DiffusionHead, target, cond, seed: int = 7, repeats: int = 16) -> float:
    """Mean loss over many noise draws, under a fixed seed (a low-variance comparison)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        return head.loss(target.repeat(repeats, 1), cond.repeat(repeats, 1)).item()


def fit(head: DiffusionHead, target, cond, n_steps: int, lr: float = 1e-3) -> None:
    """AdamW with a cosine decay to 0 (the decay matters for the tails of the samples)."""
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, n_steps)
    for _ in range(n_steps):
        loss = head.loss(target, cond)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()


@pytest.mark.parametrize("target_dim, cond_dim", [(16, 32), (8, 64)])  # video-like, action-like
def test_diffusion_head_overfits_one_batch(target_dim, cond_dim):
    torch.manual_seed(0)
    head = DiffusionHead(DiffusionHeadConfig(target_dim, cond_dim, width=128, depth=2, n_train_steps=100))
    cond = torch.randn(32, cond_dim)
    target = torch.tanh(cond[:, :target_dim] * 2)  # a fixed function of cond
    before = eval_loss(head, target, cond)
    fit(head, target, cond, n_steps=200)
    after = eval_loss(head, target, cond)
    assert after < before / 5, (before, after)


def test_diffusion_head_samples_its_single_target():
    torch.manual_seed(0)
    config = DiffusionHeadConfig(target_dim=8, cond_dim=4, width=64, depth=2, n_sample_steps=10)
    head = DiffusionHead(config)
    target = torch.linspace(-0.8, 0.8, 8)[None]
    cond = torch.randn(1, 4)
    fit(head, target.expand(128, -1), cond.expand(128, -1), n_steps=500, lr=2e-3)
    samples = head.sample(cond.expand(64, -1), generator=torch.Generator().manual_seed(0))
    error = (samples - target).abs()
    worst = error.max(dim=-1).values  # per sample
    # A draw from the N(0, 1) prior is ~0.8 away per coordinate (an untrained head: ~5). After
    # the fit the typical draw is within 0.02 in every coordinate; a few tail draws miss more.
    assert error.mean() < 0.05 and worst.median() < 0.02 and worst.quantile(0.9) < 0.15, worst


def test_diffusion_head_sample_deterministic_and_masked_loss():
    torch.manual_seed(0)
    head = DiffusionHead(DiffusionHeadConfig(target_dim=4, cond_dim=3, width=16, depth=1, n_train_steps=50))
    cond = torch.randn(5, 3)
    a = head.sample(cond, n_steps=3, generator=torch.Generator().manual_seed(1))
    b = head.sample(cond, n_steps=3, generator=torch.Generator().manual_seed(1))
    assert a.shape == (5, 4) and torch.equal(a, b)
    target = torch.randn(5, 4)
    mask = torch.tensor([1, 1, 0, 0, 0], dtype=torch.bool)
    garbage = target.clone()
    garbage[2:] = 1e6  # rows outside the mask must not count
    torch.testing.assert_close(seeded(lambda: head.loss(target, cond, mask)),
                               seeded(lambda: head.loss(garbage, cond, mask)))


# ----- UVA -----

def test_uva_shapes_of_every_mode():
    model = make_uva()
    c = model.config
    batch = uva_batch(c)
    context = history_context(c, batch)
    future_shape = (B, c.n_future, c.latent_channels, c.latent_size, c.latent_size)
    assert model.policy(context).shape == (B, c.horizon, c.action_dim)
    one = {"latents": context["latents"][:1]}
    chunks = model.sample_actions(one, 5)
    assert chunks.shape == (5, c.horizon, c.action_dim) and not torch.equal(chunks[0], chunks[1])
    assert model.forward_dynamics(context, batch["actions"]).shape == future_shape
    for n_steps in (1, c.n_tokens):
        assert model.predict_video(context, n_steps=n_steps).shape == future_shape
    latents, frames = model.forward_dynamics(context, batch["actions"], decode_fn=lambda z: z.mean(1, keepdim=True))
    assert latents.shape == future_shape and frames.shape == (B, c.n_future, 1, c.latent_size, c.latent_size)
    assert model.inverse_dynamics(batch["latents"][:, c.n_history:]).shape == (B, c.horizon, c.action_dim)
    for mode, name in enumerate(MODES):
        loss, metrics = model.compute_loss(batch, mode=name)
        assert loss.ndim == 0 and torch.isfinite(loss) and metrics["mode"] == mode
        assert set(metrics) == {"loss", "loss_video", "loss_action", "mode"}
    with pytest.raises(ValueError, match="n_steps"):
        model.predict_video(context, n_steps=c.n_tokens + 1)
    with pytest.raises(ValueError, match="B = 1"):
        model.sample_actions(context, 2)


def test_uva_other_grid_sizes():
    """96-pixel frames give 12x12 latents; a 3x3 token grid here stands in for that (N = 9)."""
    model = make_uva(latent_size=6)
    c = model.config
    batch = uva_batch(c)
    context = history_context(c, batch)
    assert model.policy(context).shape == (B, c.horizon, c.action_dim)
    assert model.forward_dynamics(context, batch["actions"], n_steps=3).shape == (B, c.n_future, 4, 6, 6)
    assert torch.isfinite(model.compute_loss(batch, mode="full")[0])


def test_random_mask_follows_the_truncated_normal():
    model = UVA(UVAConfig(depth=1))  # N = 16
    torch.manual_seed(0)
    counts = []
    for _ in range(50):
        mask = model.random_mask(8, "cpu")
        assert mask.shape == (8, 16) and len(set(mask.sum(1).tolist())) == 1  # one ratio per batch
        counts.append(mask[0].sum().item())
    assert min(counts) >= 12 and max(counts) == 16 and len(set(counts)) > 1  # ceil(0.7 * 16) = 12


def test_uva_loss_decreases_on_a_fixed_batch():
    model = make_uva().train()
    batch = uva_batch(model.config, batch_size=8)

    def loss_per_mode() -> np.ndarray:
        """Each mode's loss, averaged over 4 fixed seeds (noise, timesteps, masks)."""
        with torch.no_grad():
            return np.array([np.mean([seeded_loss(model, batch, m, seed=s)[0] for s in range(4)])
                             for m in range(len(MODES))])

    before = loss_per_mode()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    torch.manual_seed(0)
    for _ in range(300):  # modes drawn at random, as in training
        loss, _ = model.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = loss_per_mode()
    # seen: mean 1.22 -> 0.47; video modes 1.04 -> 0.49, action modes 1.01 -> 0.30
    assert after.mean() < 0.5 * before.mean() and np.all(after < 0.7 * before), (before, after)


def test_uva_save_load_reproduces_outputs_exactly(tmp_path):
    model = wake_heads(make_uva())
    c = model.config
    batch = uva_batch(c)
    context = history_context(c, batch)
    save_file(model.state_dict(), tmp_path / "uva.safetensors")
    clone = UVA.from_config(json.loads(json.dumps(asdict(c))))  # survives JSON (lists for tuples)
    clone.load_state_dict(load_file(tmp_path / "uva.safetensors"))
    clone.eval()
    for m in (model, clone):
        m.outputs = (m.policy(context, generator=torch.Generator().manual_seed(3)),
                     m.forward_dynamics(context, batch["actions"], generator=torch.Generator().manual_seed(4)))
    for a, b in zip(model.outputs, clone.outputs, strict=True):
        assert torch.equal(a, b)
    assert seeded_loss(model, batch, "full")[0] == seeded_loss(clone, batch, "full")[0]


def test_policy_depends_only_on_history():
    model = wake_heads(make_uva())
    c = model.config
    batch = uva_batch(c)
    other = {**batch, "latents": batch["latents"].clone()}
    other["latents"][:, c.n_history:] = torch.randn_like(other["latents"][:, c.n_history:]) * 5
    # policy: the context holds only history; the future enters only as mask vectors
    hist, fut, fut2 = (patchify(x, c.patch_size) for x in
                       (batch["latents"][:, :c.n_history], batch["latents"][:, c.n_history:],
                        other["latents"][:, c.n_history:]))
    all_masked = torch.ones(B, c.n_tokens, dtype=torch.bool)
    torch.testing.assert_close(model.encode(hist, fut, all_masked, None), model.encode(hist, fut2, all_masked, None),
                               rtol=0, atol=0)
    torch.testing.assert_close(model.encode(hist, fut, all_masked, None), model.encode(hist, None, None, None),
                               rtol=0, atol=0)

    def draw(ctx: dict) -> torch.Tensor:
        return model.policy(ctx, generator=torch.Generator().manual_seed(0))

    assert torch.equal(draw(history_context(c, batch)), draw(history_context(c, other)))
    shifted = {"latents": batch["latents"][:, :c.n_history] + 1.0}
    assert not torch.allclose(draw(history_context(c, batch)), draw(shifted))  # the history does matter
    # compute_loss in policy mode: same seed, perturbed future -> identical action loss
    for mode, changed in (("policy", other), ("inverse_dynamics", None)):
        if changed is None:  # inverse dynamics must ignore the history
            changed = {**batch, "latents": batch["latents"].clone()}
            changed["latents"][:, :c.n_history] += 3.0
        assert seeded_loss(model, batch, mode)[0] == seeded_loss(model, changed, mode)[0], mode


def test_forward_dynamics_depends_on_actions():
    model = wake_heads(make_uva())
    c = model.config
    batch = uva_batch(c)
    context = history_context(c, batch)

    def rollout(actions: torch.Tensor) -> torch.Tensor:
        return model.forward_dynamics(context, actions, generator=torch.Generator().manual_seed(0))

    same = rollout(batch["actions"])
    assert torch.equal(same, rollout(batch["actions"]))  # deterministic given the generator
    assert not torch.allclose(same, rollout(-batch["actions"]), atol=1e-4)
    # and the actions also count in training: forward-dynamics loss changes with them
    flipped = {**batch, "actions": -batch["actions"]}
    assert seeded_loss(model, batch, "forward_dynamics")[0] != seeded_loss(model, flipped, "forward_dynamics")[0]


def test_policy_never_calls_the_video_head():
    model = make_uva()
    calls = []
    for module in model.video_head.modules():  # any evaluation of any of its layers counts
        module.register_forward_pre_hook(lambda *args: calls.append(1))
    context = history_context(model.config, uva_batch(model.config))
    model.policy(context)
    model.sample_actions({"latents": context["latents"][:1]}, 4)
    model.inverse_dynamics(uva_batch(model.config)["latents"][:, 2:])
    assert calls == []
    model.predict_video(context)
    assert calls  # the counter works


# ----- VAE -----

def toy_frames(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Coloured squares on a grey background, uint8 (n, size, size, 3)."""
    rng = np.random.default_rng(seed)
    frames = np.full((n, size, size, 3), 200, dtype=np.uint8)
    for frame in frames:
        for colour in ((220, 40, 40), (40, 40, 220)):
            x, y = rng.integers(0, size - size // 3, 2)
            frame[y: y + size // 3, x: x + size // 3] = colour
    return frames


def reconstruction_psnr(vae: FrameVAE, frames: np.ndarray) -> float:
    with torch.no_grad():
        return psnr(frames, vae.to_uint8(vae.decode(vae.encode(frames))))


def test_vae_shapes_and_conversions():
    torch.manual_seed(0)
    vae = FrameVAE(tiny_vae_config()).eval()
    frames = toy_frames(2, 16)
    as_float = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
    latents = vae.encode(frames)
    assert latents.shape == (2, 4, 8, 8)
    assert torch.equal(latents, vae.encode(as_float))  # uint8 HWC and float CHW agree
    assert vae.decode(latents).shape == (2, 3, 16, 16)
    assert np.array_equal(vae.to_uint8(as_float).numpy(), frames)
    assert psnr(frames, frames) == float("inf")
    assert psnr(np.zeros((1, 2, 2, 3), np.uint8), np.full((1, 2, 2, 3), 255, np.uint8)) == 0.0
    draw = vae.encode(frames, sample=True, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(draw, latents)
    big = FrameVAE(tiny_vae_config(image_size=24)).eval()  # any multiple of the stride (96 for stride 8)
    assert big.encode(toy_frames(1, 24)).shape == (1, 4, 12, 12)
    assert torch.equal(draw, vae.encode(frames, sample=True, generator=torch.Generator().manual_seed(0)))


def test_vae_fit_reconstructs_and_scaling_round_trips():
    torch.manual_seed(0)  # unweighted loss: toy squares cover a third of the frame, no small objects
    vae = FrameVAE(tiny_vae_config(foreground_weight=1.0))
    frames = toy_frames(8, 16)
    before = reconstruction_psnr(vae, frames)
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-3)
    for _ in range(80):
        loss, metrics = vae.compute_loss({"frames": frames})
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert {"loss", "recon_mse", "psnr", "kl"} <= set(metrics)
    after = reconstruction_psnr(vae, frames)
    assert after > before + 10.0 and after > 22.0, (before, after)

    with torch.no_grad():
        vae.fit_scaling(vae.encode(frames, scaled=False))
        latents = vae.encode(frames)
    assert abs(latents.mean().item()) < 1e-5 and abs(latents.std().item() - 1) < 1e-5
    clone = FrameVAE.from_config(asdict(vae.config))
    clone.load_state_dict(vae.state_dict())
    with torch.no_grad():
        assert torch.equal(clone.encode(frames), latents)
        assert torch.equal(clone.decode(latents), vae.decode(latents))
    assert reconstruction_psnr(clone, frames) == pytest.approx(after, abs=0.1)  # decode undoes the scaling


def test_vae_loss_weights_foreground_pixels():
    """A 2 x 2 object on a flat background gets foreground_weight, the background 1; the loss
    of the same error is larger on the object than on the background."""
    frames = np.full((1, 16, 16, 3), 230, np.uint8)
    frames[0, 5:7, 9:11] = (200, 40, 40)
    torch.manual_seed(0)
    vae = FrameVAE(tiny_vae_config(foreground_weight=10.0))
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
    weights = vae.pixel_weights(x)[0, 0]
    assert weights.shape == (16, 16) and (weights == 10).sum() == 4 and weights[5:7, 9:11].eq(10).all()
    with pytest.raises(ValueError, match="foreground_weight"):
        tiny_vae_config(foreground_weight=0.5)


def test_residual_video_target_round_trips_and_validates():
    """video_target="residual": the head learns (future - last history frame) * scale, and
    generation adds the last frame back, so outputs are absolute latents."""
    model = wake_heads(make_uva(video_target="residual", residual_scale=2.0))
    batch = uva_batch(model.config)
    tokens = patchify(batch["latents"], model.config.patch_size)
    history, future = tokens[:, :2], tokens[:, 2:]
    target = model._video_target(future, history)
    torch.testing.assert_close(target, (future - history[:, -1:]) * 2.0)
    loss, metrics = seeded_loss(model, batch, "forward_dynamics")
    assert np.isfinite(loss) and np.isfinite(metrics["loss_video"])
    g = torch.Generator().manual_seed(0)
    # One unmasking step: later steps feed revealed (absolute) tokens back, which differ.
    out = model.forward_dynamics(history_context(model.config, batch), batch["actions"], n_steps=1, generator=g)
    absolute = wake_heads(make_uva())  # same weights, absolute target: outputs differ by the last frame
    g = torch.Generator().manual_seed(0)
    raw = absolute.forward_dynamics(history_context(model.config, batch), batch["actions"], n_steps=1, generator=g)
    last = batch["latents"][:, 1:2]
    torch.testing.assert_close(out, raw / 2.0 + last)
    with pytest.raises(ValueError, match="video_target"):
        tiny_uva_config(video_target="delta")
    with pytest.raises(ValueError, match="residual_scale"):
        tiny_uva_config(residual_scale=0.0)


def test_forward_dynamics_frames_skips_the_others_and_keeps_the_asked_ones():
    """frames=(-1,) finishes only the last future frame (the rest NaN). At temperature 0 the
    head is deterministic given Z, so that frame equals the full call's, for any unmasking steps."""
    model = wake_heads(make_uva())
    c = model.config
    batch = uva_batch(c)
    context = history_context(c, batch)
    for n_steps in (1, 2):
        def rollout(**kw):
            return model.forward_dynamics(context, batch["actions"], n_steps=n_steps, temperature=0.0,
                                          generator=torch.Generator().manual_seed(0), **kw)
        full, last = rollout(), rollout(frames=(-1,))
        assert torch.isfinite(full).all()
        assert torch.isnan(last[:, :-1]).all() and torch.isfinite(last[:, -1]).all()
        assert torch.allclose(last[:, -1], full[:, -1], atol=1e-6)
        assert torch.equal(rollout(frames=(0, 1)), full)
    calls = []
    model.video_head.input_proj.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    rollout(frames=(0,))
    rows = sum(calls)
    calls.clear()
    rollout()
    assert rows < sum(calls)  # the head really ran on fewer tokens
    for bad in ((), (c.n_future,), (True,), ("last",)):
        with pytest.raises(ValueError, match="frames must be"):
            rollout(frames=bad)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("clip_sample", [False, True])
def test_head_ddim_loop_matches_diffusers_step(prediction_type, clip_sample):
    """DiffusionHead.sample's own DDIM update equals DDIMScheduler.step(eta=0) on the same schedule."""
    from uva_plan.models.diff_head import timestep_features

    torch.manual_seed(0)
    head = DiffusionHead(DiffusionHeadConfig(target_dim=6, cond_dim=3, width=16, depth=1,
                                             prediction_type=prediction_type, clip_sample=clip_sample))
    with torch.no_grad():
        for param in head.parameters():
            param.normal_(std=0.3)
    cond = torch.randn(5, 3)
    ours = head.sample(cond, n_steps=7, generator=torch.Generator().manual_seed(1))
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    scheduler = head.sample_scheduler
    scheduler.set_timesteps(7)
    with torch.no_grad():
        for t in scheduler.timesteps:
            c = head.time_embed(timestep_features(t.reshape(1))) + head.cond_embed(cond)
            x = scheduler.step(head._denoise(x, c), t, x, eta=0.0).prev_sample
    assert torch.allclose(ours, x, rtol=1e-5, atol=1e-5 * x.abs().max().item())


def test_ddim_trailing_spacing_starts_at_pure_noise():
    from uva_plan.models.diff_head import ddim_schedule

    head = DiffusionHead(DiffusionHeadConfig(target_dim=2, cond_dim=2, n_train_steps=100))
    leading = [int(t) for t, _, _ in ddim_schedule(head.sample_scheduler, 5)]
    trailing = ddim_schedule(head.sample_scheduler, 5, spacing="trailing")
    assert leading == [80, 60, 40, 20, 0]
    assert [int(t) for t, _, _ in trailing] == [99, 79, 59, 39, 19]
    assert trailing[-1][2] == 1.0  # the last step lands on x0 (alpha_bar_prev = 1)
    assert trailing[0][1] < 1e-3 < ddim_schedule(head.sample_scheduler, 5)[0][1]
    with pytest.raises(ValueError, match="spacing"):
        ddim_schedule(head.sample_scheduler, 5, spacing="linspace")


def test_action_head_steps_are_chosen_per_call():
    model = wake_heads(make_uva())
    context = history_context(model.config, uva_batch(model.config))

    def draw(**kw):
        return model.policy(context, generator=torch.Generator().manual_seed(0), **kw)

    default, fewer = draw(), draw(n_steps=2)
    assert fewer.shape == default.shape and torch.equal(default, draw(n_steps=model.config.n_action_sample_steps))
    assert not torch.allclose(default, fewer)
    with pytest.raises(ValueError, match="n_steps"):
        draw(n_steps=1)
