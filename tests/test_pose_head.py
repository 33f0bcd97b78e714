"""The pose head on UVA's joint latent: the network, UVA's embedded pose head, imagining poses
through ``UVAWorldModel``, ``PoseReward``, the planner's ``RolloutRequest`` hand-off, and training
(frozen trunk ``train=pose_head`` and the joint ``uva`` + ``model.pose_head``) end to end."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from planners import BestOfN, Planner, Rollout
from tests.test_models import one_thread, tiny_uva_config, wake_heads  # noqa: F401  (autouse: one torch thread)
from tests.test_train import ENV_ID, compose_train, store, vae_run  # noqa: F401  (fixtures)
from tests.test_uva_adapter import fake_obs, tiny_vae
from uva_plan.checkpoint import CheckpointError, load_model
from uva_plan.data.store import MinMaxNormalizer
from uva_plan.dynamics import PrivilegedState, SimulatorDynamics, UVAWorldModel, load_pose_head
from uva_plan.envs import pusht
from uva_plan.models import UVA
from uva_plan.models.pose_head import PoseHead, PoseHeadConfig
from uva_plan.objectives import PoseReward
from uva_plan.train import train

POSE = {"env": "pusht", "channels": 8, "hidden_dim": 16}


def tiny_head(**overrides) -> PoseHead:
    torch.manual_seed(0)
    return PoseHead(PoseHeadConfig(**{"width": 16, "n_future": 2, "grid": 2, "channels": 8, "hidden_dim": 32,
                                      **overrides}))


def posed_world(**kwargs) -> UVAWorldModel:
    torch.manual_seed(0)
    uva = wake_heads(UVA(tiny_uva_config(pose_head=POSE)).eval())
    return UVAWorldModel(uva, tiny_vae(), MinMaxNormalizer(np.zeros(2), np.full(2, 512.0)), **kwargs)


def test_shapes_and_bad_input_named():
    head = tiny_head()
    z = torch.randn(3, 2 * 4, 16)
    assert head(z).shape == (3, 2, 4) and head.predict(z).shape == (3, 2, 3)
    with pytest.raises(ValueError, match=r"z must be a tensor \(B, 8, 16\).*got \(3, 8, 15\)"):
        head(torch.randn(3, 8, 15))
    loss, metrics = head.compute_loss({"z": z, "poses": torch.rand(3, 2, 3) * 300})
    assert loss.ndim == 0 and set(metrics) == {"loss", "xy_error_px", "angle_error_rad"}
    with pytest.raises(ValueError, match=r"poses must be \(B, 2, 3\)"):
        head.compute_loss({"z": z, "poses": torch.rand(3, 3)})
    with pytest.raises(ValueError, match="env must be one of"):
        PoseHeadConfig(env="cartpole")
    with pytest.raises(ValueError, match="last_frame_weight"):
        PoseHeadConfig(last_frame_weight=-1.0)


def test_pose_head_overfits_one_batch():
    head = tiny_head(env="blockpush")
    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, 8, 16, generator=g)
    poses = torch.rand(16, 2, 6, generator=g) * 400 + 50
    poses[..., 2::3] = (torch.rand(16, 2, 2, generator=g) - 0.5) * (math.pi / 2)  # block yaw mod pi / 2
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    first = None
    for _ in range(400):
        loss, metrics = head.compute_loss({"z": z, "poses": poses})
        first = first or metrics
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert metrics["loss"] < 0.02 * first["loss"] and metrics["xy_error_px"] < 10.0


def test_uva_embedded_pose_head_trains_on_the_forward_dynamics_latent():
    torch.manual_seed(0)
    model = UVA(tiny_uva_config(pose_head=POSE))
    assert model.pose_head.config.width == 32 and model.pose_head.config.n_future == 2
    batch = {"latents": torch.randn(3, 4, 4, 4, 4), "actions": torch.rand(3, 4, 2) * 2 - 1,
             "poses": torch.rand(3, 2, 3) * 300}
    for mode in ("video", "inverse_dynamics"):  # every mode adds the pose term
        loss, metrics = model.compute_loss(batch, mode)
        assert math.isfinite(metrics["loss_pose"]) and metrics["loss"] > metrics["loss_pose"]
        loss.backward()
    assert model.pose_head.net[0].weight.grad is not None and model.blocks[0].attn.qkv.weight.grad is not None
    with pytest.raises(ValueError, match="batches need 'poses'"):
        model.compute_loss({k: v for k, v in batch.items() if k != "poses"}, "video")
    with pytest.raises(ValueError, match=r"pose_head must not set \['width'\]"):
        tiny_uva_config(pose_head={**POSE, "width": 8})
    with pytest.raises(ValueError, match="pose_loss_weight"):
        tiny_uva_config(pose_head=POSE, pose_loss_weight=float("nan"))
    plain = UVA(tiny_uva_config())
    assert plain.pose_head is None and "loss_pose" not in plain.compute_loss(batch, "video")[1]


def test_rollout_imagines_poses_without_the_video_head():
    world = posed_world(max_batch=3)
    context = world.context([fake_obs(i) for i in range(world.n_history)])
    actions = torch.rand(5, world.horizon, 2) * 2 - 1
    poses = world.rollout(context, actions, imagine="poses")
    assert poses.latents is None and poses.extras["poses"].shape == (5, 2, 3)
    both = world.rollout(context, actions, imagine="both")
    assert both.latents.shape[:2] == (5, 2) and torch.allclose(both.extras["poses"], poses.extras["poses"])
    assert "poses" not in world.rollout(context, actions).extras
    # the poses are UVA's answer to the actions: other actions, other poses
    other = world.rollout(context, actions.flip(0), imagine="poses").extras["poses"]
    assert not torch.allclose(other, poses.extras["poses"])
    with pytest.raises(ValueError, match="imagine must be"):
        world.rollout(context, actions, imagine="frames")
    torch.manual_seed(0)
    bare = UVAWorldModel(UVA(tiny_uva_config()).eval(), tiny_vae(), MinMaxNormalizer(np.zeros(2), np.full(2, 512.0)))
    with pytest.raises(ValueError, match="needs a pose_head"):
        bare.rollout(context, actions, imagine="poses")
    with pytest.raises(ValueError, match=r"\(width, n_future, grid\) = \(32, 2, 2\)"):
        UVAWorldModel(bare.uva, tiny_vae(), bare.normalizer, pose_head=tiny_head())


def test_pose_reward_scores_the_goal_pose_best_and_names_missing_poses():
    head = PoseHead(PoseHeadConfig(width=16, n_future=2, grid=2))
    objective = PoseReward(head, "uva_plan/PushT-v0")
    g = np.asarray(pusht.GOAL_POSE)
    cog = pusht.TEE_COG
    goal_cog = g[:2] + [cog[0] * math.cos(g[2]) - cog[1] * math.sin(g[2]),
                        cog[0] * math.sin(g[2]) + cog[1] * math.cos(g[2])]
    at_goal = [*goal_cog, g[2]]
    poses = torch.tensor([[[100.0, 100.0, 0.0], [300.0, 120.0, 1.0]], [[100.0, 100.0, 0.0], at_goal]])
    cost = objective.cost(Rollout(actions=torch.zeros(2, 4, 2), extras={"poses": poses}))
    assert cost[1] < 0.05 < cost[0]  # the T on the goal at the last frame: coverage 1
    nan = poses.clone()
    nan[0, -1, 0] = math.nan
    assert torch.isnan(objective.cost(Rollout(actions=torch.zeros(2, 4, 2), extras={"poses": nan}))[0])
    with pytest.raises(ValueError, match=r"extras\['poses'\]"):
        objective.cost(Rollout(actions=torch.zeros(2, 4, 2), latents=torch.zeros(2, 2, 4, 4, 4)))
    with pytest.raises(ValueError, match=r"must be \(N, T, 3\)"):
        objective.cost(Rollout(actions=torch.zeros(2, 4, 2), extras={"poses": torch.zeros(2, 2, 6)}))


def test_planner_asks_the_model_for_poses():
    world = posed_world()
    calls = []
    rollout = world.rollout

    def spy(context, actions, request=None):
        calls.append(request.imagine)
        return rollout(context, actions, request=request)

    world.rollout = spy
    planner = Planner(world, BestOfN(n_samples=6, seed=0), proposer=world, objective=PoseReward(world.pose_head,
                      "uva_plan/PushT-v0"), horizon=world.horizon, n_action_steps=2)
    actions = planner.plan(fake_obs(0))
    assert actions.shape == (2, 2) and calls and set(calls) == {"poses"}
    sim = Planner(SimulatorDynamics("uva_plan/PushT-v0"), BestOfN(n_samples=4),
                  objective=PoseReward(world.pose_head, "uva_plan/PushT-v0"))
    env = PrivilegedState(gym.make("uva_plan/PushT-v0"))
    with pytest.raises(ValueError, match="SimulatorDynamics simulates states: it cannot imagine 'poses'"):
        sim.plan(env.reset(seed=0)[0])


def test_pose_heads_train_end_to_end(vae_run, store, tmp_path):  # noqa: F811
    """train=pose_head on a frozen tiny UVA's Z; the head names that UVA and another is refused;
    then the UVA fine-tuned with the head embedded (init_pose_head) brings it to the world model."""
    uva = tmp_path / "uva"
    train(compose_train(["train=uva_tiny", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                         f"out_dir={uva}", "steps=2", "log_every=1", "val_every=2"]))
    head_out = tmp_path / "pose_head"
    summary = train(compose_train(["train=pose_head", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                                   f"data.joint_uva={uva / 'final'}", "model.width=32", "model.grid=2",
                                   "model.channels=8", "model.hidden_dim=16", "data.val_fraction=0.2",
                                   f"out_dir={head_out}", "steps=3", "log_every=1", "val_every=3",
                                   "batch_size=8", "threads=1"]))
    assert np.isfinite(summary["train"]["loss"]) and np.isfinite(summary["val"]["xy_error_px"])
    head, meta = load_model(head_out / "final", expected_kind="pose_head", expected_env_id=ENV_ID)
    assert meta["extra"]["n_windows"][str(store)] > 0 and meta["extra"]["uva"]["weights_sha256"]
    world = UVAWorldModel.load(uva / "final", vae_run)
    assert load_pose_head(head_out / "final", world).config.width == 32
    other = tmp_path / "uva_other"
    train(compose_train(["train=uva_tiny", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                         f"out_dir={other}", "steps=3", "log_every=1", "val_every=3"]))
    with pytest.raises(CheckpointError, match="reads the joint latent of the UVA with weights sha256"):
        load_pose_head(head_out / "final", UVAWorldModel.load(other / "final", vae_run))
    with pytest.raises(ValueError, match="needs data.joint_uva"):
        train(compose_train(["train=pose_head", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                             f"out_dir={tmp_path / 'x'}"]))

    joint = tmp_path / "uva_pose"
    summary = train(compose_train(["train=uva_tiny", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                                   "+model.pose_head={env:pusht,channels:8,hidden_dim:16}",
                                   f"init_from={uva / 'final'}", f"init_pose_head={head_out / 'final'}",
                                   f"out_dir={joint}", "steps=2", "log_every=1", "val_every=2"]))
    assert np.isfinite(summary["val"]["loss_pose"])
    model = UVAWorldModel.load(joint / "final", vae_run)
    assert model.pose_head is model.uva.pose_head
    size = model.image_size
    context = model.context([{"image": np.zeros((size, size, 3), np.uint8), "agent_pos": np.full(2, 256.0)}]
                            * model.n_history)
    assert model.rollout(context, torch.zeros(3, model.horizon, 2), imagine="poses").extras["poses"].shape == (3, 4, 3)
    with pytest.raises(ValueError, match="init_pose_head=.* needs init_from="):
        train(compose_train(["train=uva_tiny", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                             f"init_pose_head={head_out / 'final'}", f"out_dir={tmp_path / 'z'}", "steps=1"]))
    with pytest.raises(ValueError, match="init_pose_head=.* but the model has no pose head"):
        train(compose_train(["train=uva_tiny", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                             f"init_from={uva / 'final'}", f"init_pose_head={head_out / 'final'}",
                             f"out_dir={tmp_path / 'y'}", "steps=1"]))


def test_from_pretrained_pose_objective_names_what_it_needs():
    with pytest.raises(ValueError, match="objective='pose' needs a pose head"):
        UVAWorldModel.from_pretrained("pusht", objective="pose")
    with pytest.raises(ValueError, match="'state', 'goal_image', 'located' or 'pose'"):
        UVAWorldModel.from_pretrained("pusht", objective="poses")


def test_joint_latents_are_cached_per_store_and_rebuilt_when_their_inputs_change(
        vae_run, store, tmp_path, monkeypatch):  # noqa: F811
    """build_pose_head's Z of the chosen windows: computed once, then read from <store>/joint;
    other windows (a stride change) are computed again, a damaged cache is rebuilt."""
    from omegaconf import OmegaConf

    import uva_plan.data.joint as joint_module
    from uva_plan.train import Dist, TrainConfig
    from uva_plan.train.pose_head import build_pose_head

    uva = tmp_path / "uva"
    train(compose_train(["train=uva_tiny", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                         f"out_dir={uva}", "steps=1", "log_every=1", "val_every=1"]))
    computed = []

    def counting(*args, **kwargs):
        computed.append(len(args[2]))
        return real(*args, **kwargs)

    real = joint_module.joint_latents
    monkeypatch.setattr(joint_module, "joint_latents", counting)

    def build(*overrides: str):
        cfg = OmegaConf.to_container(compose_train([
            "train=pose_head", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}", f"data.joint_uva={uva / 'final'}",
            "model.width=32", "model.grid=2", "data.val_fraction=0.2", f"out_dir={tmp_path / 'x'}", *overrides]),
            resolve=True)
        return build_pose_head(TrainConfig.from_dict(cfg), Dist())

    first = build()
    assert len(computed) == 2  # the training windows and the held-out ones
    files = sorted((store / "joint").glob("*.npz"))
    assert len(files) >= 2 and all(f.with_suffix(".json").exists() for f in files)
    again = build()
    assert len(computed) == 2  # read from the cache: identical
    for a, b in ((first.train, again.train), (first.val, again.val)):
        np.testing.assert_array_equal(a.z, b.z)
        np.testing.assert_array_equal(a.poses, b.poses)
    build("data.joint_window_stride=3")  # other training windows: computed; the held-out ones are cached
    assert len(computed) == 3 and computed[-1] < computed[0]
    newest = max((store / "joint").glob("*.npz"), key=lambda f: f.stat().st_mtime_ns)
    newest.write_bytes(newest.read_bytes()[:-64])  # damaged: rebuilt, not trusted
    build("data.joint_window_stride=3")
    assert len(computed) == 4
