"""Tests for the state head: pose layouts, the network, training end to end.

Unit tests read poses from "pooled frames": real Push-T frames rendered from state and
average-pooled to 3 x 8 x 8, a fixed stand-in for VAE latents that needs no VAE training.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.test_models import one_thread  # noqa: F401  (autouse: one torch thread)
from tests.test_train import ENV_ID, compose_train, store, vae_run  # noqa: F401  (fixtures)
from uva_plan.checkpoint import load_model
from uva_plan.envs import blockpush as bp
from uva_plan.envs import pusht
from uva_plan.models.state_head import (
    StateHead,
    StateHeadConfig,
    decode_poses,
    encode_poses,
    env_name,
    pose_targets,
)
from uva_plan.train import train


def pusht_states(n: int, seed: int) -> np.ndarray:
    """(n, 14) renderable Push-T states: random pusher and T pose, the env's goal."""
    rng = np.random.default_rng(seed)
    states = np.zeros((n, pusht.STATE_DIM))
    states[:, :2] = rng.uniform(50, 462, (n, 2))
    states[:, 4:6] = rng.uniform(120, 392, (n, 2))
    states[:, 6] = rng.uniform(-np.pi, np.pi, n)
    states[:, 10:13] = pusht.GOAL_POSE
    return states


def pooled_latents(states: np.ndarray, size: int = 32, pool: int = 4) -> torch.Tensor:
    """Frames rendered from Push-T states, in [-1, 1] and average-pooled: (B, 3, size / pool, size / pool)."""
    frames = torch.from_numpy(pusht.PushTEnv.render_states(states, size)).permute(0, 3, 1, 2).float()
    return F.avg_pool2d(frames / 127.5 - 1, pool)


def tiny_head_config(**overrides) -> StateHeadConfig:
    return StateHeadConfig(**{"latent_channels": 3, "latent_size": 8, "channels": 8, "n_convs": 1,
                              "hidden_dim": 64, **overrides})


def fit_head(head: StateHead, latents: torch.Tensor, poses: torch.Tensor, n_steps: int,
             lr: float = 3e-3) -> list[dict]:
    """Full-batch Adam; returns the metrics of every step."""
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    history = []
    for _ in range(n_steps):
        loss, metrics = head.compute_loss({"latents": latents, "poses": poses})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(metrics)
    return history


def trained_pusht_head(n_states: int = 128, n_steps: int = 300, seed: int = 0) -> StateHead:
    """A head fitted on pooled frames of random Push-T states (about 2 s on one core)."""
    torch.manual_seed(seed)
    states = pusht_states(n_states, seed)
    head = StateHead(tiny_head_config())
    fit_head(head, pooled_latents(states), torch.from_numpy(pose_targets("pusht", states)).float(), n_steps)
    return head.eval()


# ----- pose layouts -----

def test_env_names_and_pose_layouts():
    assert env_name("uva_plan/PushT-v0") == env_name("uva_plan/PushTRandomGoal-v0") == "pusht"
    assert env_name("uva_plan/BlockPush-v0") == "blockpush"
    with pytest.raises(ValueError, match="env_id='CartPole-v1'"):
        env_name("CartPole-v1")
    states = np.arange(2 * bp.STATE_DIM, dtype=float).reshape(2, bp.STATE_DIM)
    np.testing.assert_array_equal(pose_targets("uva_plan/PushT-v0", states[:, :14]), states[:, 4:7])
    np.testing.assert_array_equal(pose_targets("blockpush", states), states[:, [4, 5, 6, 10, 11, 12]])


def test_pose_encoding_round_trips_modulo_symmetry():
    poses = torch.tensor([[100.0, 400.0, 2.5], [256.0, 10.0, -3.0]], dtype=torch.float64)
    back = decode_poses("pusht", encode_poses("pusht", poses))
    torch.testing.assert_close(back, poses)
    blocks = torch.tensor([[50.0, 60.0, 0.3, 300.0, 200.0, 0.3 + math.pi / 2]], dtype=torch.float64)
    decoded = decode_poses("blockpush", encode_poses("blockpush", blocks))
    torch.testing.assert_close(decoded[:, [0, 1, 3, 4]], blocks[:, [0, 1, 3, 4]])
    # A quarter turn looks the same: both blocks read as yaw 0.3.
    torch.testing.assert_close(decoded[:, [2, 5]], torch.tensor([[0.3, 0.3]], dtype=torch.float64))


# ----- the network -----

@pytest.mark.parametrize("env, pose_dim", [("pusht", 3), ("blockpush", 6)])
def test_shapes_and_metrics(env, pose_dim):
    head = StateHead(tiny_head_config(env=env, latent_channels=4, latent_size=4))
    latents = torch.randn(5, 4, 4, 4)
    assert head(latents).shape == (5, 4 * (pose_dim // 3)) and head.predict(latents).shape == (5, pose_dim)
    loss, metrics = head.compute_loss({"latents": latents, "poses": torch.rand(5, pose_dim) * 512})
    assert torch.isfinite(loss) and set(metrics) == {"loss", "xy_error_px", "angle_error_rad"}


def test_head_overfits_a_batch_of_real_frames():
    torch.manual_seed(0)
    states = pusht_states(32, seed=3)
    head = StateHead(tiny_head_config())
    history = fit_head(head, pooled_latents(states), torch.from_numpy(pose_targets("pusht", states)).float(), 600)
    assert history[-1]["loss"] < history[0]["loss"] / 20, (history[0], history[-1])
    assert history[-1]["xy_error_px"] < 15 and history[-1]["angle_error_rad"] < 0.2


@pytest.mark.parametrize("field, value", [("env", "pong"), ("latent_size", 0), ("channels", 2.5),
                                          ("angle_weight", -1.0)])
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        tiny_head_config(**{field: value})


def test_bad_inputs_name_the_expected_shape():
    head = StateHead(tiny_head_config())
    with pytest.raises(ValueError, match=r"latents must be a tensor \(B, 3, 8, 8\), got \(2, 4, 8, 8\)"):
        head.predict(torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match=r"poses must be \(B, 3\) with B=2, got \(2, 6\)"):
        head.compute_loss({"latents": torch.zeros(2, 3, 8, 8), "poses": torch.zeros(2, 6)})


# ----- training end to end -----

def test_tiny_state_head_trains_on_cached_latents(vae_run, store, tmp_path):  # noqa: F811
    out = tmp_path / "state_head"
    summary = train(compose_train(["train=state_head_tiny", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                                   f"out_dir={out}", "steps=2", "log_every=1", "val_every=2"]))
    assert np.isfinite(summary["train"]["loss"]) and np.isfinite(summary["val"]["xy_error_px"])
    model, meta = load_model(out / "final", expected_kind="state_head", expected_env_id=ENV_ID)
    assert meta["extra"]["vae"]["step"] == 3 and model.config.env == "pusht"
    assert model.predict(torch.randn(2, 4, 8, 8)).shape == (2, 3)
    with pytest.raises(ValueError, match=r"model.env='blockpush' but the data has 'pusht'"):
        train(compose_train(["train=state_head_tiny", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                             f"out_dir={tmp_path / 'x'}", "model.env=blockpush"]))


def test_state_head_learns_from_uva_imagined_frames(vae_run, store, tmp_path, monkeypatch):  # noqa: F811
    """data.imagined_uva: UVA imagines the store's windows (cached, keyed by the UVA's weights);
    the head trains on real + imagined frames and validates on imagined held-out frames only."""
    from uva_plan.data.imagined import cache_path, ensure_imagined, imagine_windows
    from uva_plan.data.latents import frame_rows
    from uva_plan.data.store import EpisodeStore

    uva = tmp_path / "uva"
    train(compose_train(["train=uva_tiny", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                         f"out_dir={uva}", "steps=2", "log_every=1", "val_every=2"]))
    arrays = ensure_imagined(store, uva / "final", window_stride=3)
    n = len(arrays["rows"])
    assert n > 0 and n % 4 == 0 and arrays["latents"].shape == (n, 4, 8, 8)
    assert np.isfinite(arrays["latents"]).all() and sorted(set(arrays["frame"].tolist())) == [0, 1, 2, 3]
    table = frame_rows(EpisodeStore.open(store).load())
    assert arrays["rows"].max() < len(table)
    first = arrays["rows"][:4]  # a window's 4 future frames: 4 control steps apart, or clamped at the end
    assert (np.diff(first) >= 0).all() and (np.diff(first) <= 4).all()
    assert cache_path(store, uva / "final").exists()
    import uva_plan.data.imagined as imagined_module

    built = []

    def counting(*args, **kwargs):
        built.append(kwargs.get("window_stride"))
        return imagine_windows(*args, **kwargs)

    monkeypatch.setattr(imagined_module, "imagine_windows", counting)
    again = ensure_imagined(store, uva / "final", window_stride=3)  # from the cache: identical
    assert all(np.array_equal(arrays[k], again[k]) for k in arrays)
    assert built == []  # read, not imagined again
    rebuilt = ensure_imagined(store, uva / "final", window_stride=4)  # other settings: rebuilt
    assert built == [4] and len(rebuilt["rows"]) < n
    # a different seed imagines different frames
    other = imagine_windows(store, uva / "final", window_stride=3, seed=1)
    assert not np.array_equal(other["latents"], arrays["latents"])
    ensure_imagined(store, uva / "final", window_stride=3)  # the cache holds one setting: back to stride 3

    out = tmp_path / "head"
    summary = train(compose_train(["train=state_head_tiny", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                                   f"+data.imagined_uva={uva / 'final'}", "+data.imagined_window_stride=3",
                                   f"out_dir={out}", "steps=2", "log_every=1", "val_every=2"]))
    assert np.isfinite(summary["val"]["xy_error_px"])
    _, meta = load_model(out / "final", expected_kind="state_head")
    info = meta["extra"]["imagined"]
    assert info["window_stride"] == 3 and 0 < info["n_train_imagined"] < n


def test_state_head_trains_on_every_frame_of_its_play_stores(vae_run, store, tmp_path):  # noqa: F811
    from tests.test_train import make_store
    from uva_plan.data.poses import write_poses

    extra = make_store(tmp_path / "more", n_episodes=3, n_steps=10, seed=5)
    out = tmp_path / "head"
    train(compose_train(["train=state_head_tiny", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                         f"+data.play_stores=[{extra}]", f"out_dir={out}", "steps=2", "log_every=1", "val_every=2"]))
    _, meta = load_model(out / "final", expected_kind="state_head")
    assert meta["extra"]["play_stores"]["n_frames"] == [3 * (10 + 1)]  # every state and each final state
    poses = tmp_path / "poses"
    write_poses(20, poses, per_episode=10)
    with pytest.raises(ValueError, match="holds uva_plan/BlockPush-v0 data"):
        train(compose_train(["train=state_head_tiny", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                             f"+data.play_stores=[{poses}]", f"out_dir={tmp_path / 'x'}", "steps=2"]))


def test_random_poses_are_renderable_separated_and_resumable(tmp_path):
    from uva_plan.data.poses import MARGIN, random_states, write_poses
    from uva_plan.data.store import EpisodeStore

    states = random_states(500, np.random.default_rng(0), min_separation=60.0)
    blocks = states[:, [4, 5, 10, 11]].reshape(-1, 2, 2)
    assert (np.linalg.norm(blocks[:, 0] - blocks[:, 1], axis=1) >= 60.0).all()
    assert ((blocks >= MARGIN) & (blocks <= 512 - MARGIN)).all()
    assert ((states[:, [6, 12]] >= 0) & (states[:, [6, 12]] < np.pi / 2)).all() and (states[:, 24] == -1).all()
    # both blocks land everywhere on the table, not only where resets put them (y 280-380)
    assert blocks[..., 1].min() < 150 and blocks[..., 1].max() > 400
    frames = bp.BlockPushEnv.render_states(states[:3], 64)
    assert frames.shape == (3, 64, 64, 3) and frames.std() > 0
    out = tmp_path / "poses"
    write_poses(25, out, seed=3, per_episode=10)
    first = EpisodeStore.open(out).load()["states"]
    assert first.shape == (25, bp.STATE_DIM) and EpisodeStore.open(out).meta["not_a_trajectory"]
    write_poses(25, out, seed=3, per_episode=10)  # resume: nothing rewritten, same states
    np.testing.assert_array_equal(EpisodeStore.open(out).load()["states"], first)
    with pytest.raises(ValueError, match="n_states must be an int >= 1"):
        write_poses(0, tmp_path / "bad")


def test_state_head_refuses_a_branch_store_whose_cache_is_sparse(vae_run, store, tmp_path):  # noqa: F811
    from uva_plan.data.store import EpisodeStore

    branches = tmp_path / "branches"
    source = EpisodeStore.open(store)
    with EpisodeStore.create(branches, dict(source.meta)) as out:
        for i in source.indices():
            episode = source.episode(i)
            out.write_episode(i, episode["states"], episode["actions"], episode["final_state"], episode["rewards"],
                              int(episode["seed"]), metrics={"branch_t": 12})
        out.finalize()
    with pytest.raises(ValueError, match="is a DP-C branch store"):
        train(compose_train(["train=state_head_tiny", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                             f"+data.play_stores=[{branches}]", f"out_dir={tmp_path / 'x'}", "steps=2"]))
