"""Training data of the pose head: a frozen UVA's joint latent Z of windows, with true poses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from uva_plan.data.joint import JointWindows, ensure_joint_latents
from uva_plan.data.latents import LatentWindows
from uva_plan.data.sampler import SequenceSampler, branch_anchor_steps, train_val_split
from uva_plan.train.stores import (
    PlayStoreData,
    Task,
    check_model_fits,
    check_stride,
    console,
    make_model,
    one_store_with_latents,
    play_data,
)

if TYPE_CHECKING:
    from uva_plan.train.distributed import Dist
    from uva_plan.train.loop import TrainConfig


@dataclass
class PoseHeadData(PlayStoreData):
    # The UVA checkpoint whose joint latent Z the head reads (frozen; its Z of every
    # joint_window_stride-th window of the stores, and of every branch window, is cached in
    # each store by uva_plan.data.joint).
    joint_uva: str | None = None
    joint_window_stride: int = 2
    # play_stores: stores of the same env (play data, DP-C branches) whose windows join the
    # training split.

    def __post_init__(self):
        super().__post_init__()
        check_stride("data.joint_window_stride", self.joint_window_stride)


def build_pose_head(cfg: TrainConfig, dist: Dist) -> Task:
    """A frozen UVA's joint latent Z of windows of one store and its play stores (demos, play
    data, DP-C branches), each paired with the true poses of the window's 4 future frames.
    Validation: the main store's held-out episodes, every window. Rank 0 builds the Z caches
    that are missing or stale; the other ranks read them."""
    from uva_plan.dynamics import UVAWorldModel
    from uva_plan.models.state_head import env_name

    if cfg.data.joint_uva is None:
        raise ValueError("train=pose_head needs data.joint_uva=<the UVA checkpoint whose joint latent it reads, "
                         "e.g. uva_plan/pretrained/pusht/uva>")
    store, data, latents, info = one_store_with_latents(cfg, dist)
    env_id = store.meta["env_id"]
    # load() refuses a UVA trained on another VAE's latents than vae_checkpoint's.
    world = UVAWorldModel.load(cfg.data.joint_uva, cfg.vae_checkpoint)
    if world.env_id != env_id:
        raise ValueError(f"data.joint_uva={cfg.data.joint_uva} was trained on {world.env_id}, the store holds {env_id}")
    normalizers = {**store.normalizers(), "actions": world.normalizer}  # the actions as the UVA reads them
    train_eps, val_eps = train_val_split(len(data["episode_ends"]), cfg.data.val_fraction, cfg.data.split_seed)
    stride = cfg.data.joint_window_stride

    def joint(root: str, d: dict, z: np.ndarray, z_info: dict, episodes, anchors, step: int, label: str):
        windows = LatentWindows(SequenceSampler.uva(d, episodes=episodes, anchor_steps=anchors), z, normalizers)
        chosen = np.arange(0, len(windows), step)
        args = (root, world.uva, world.uva_weights_sha256, windows, chosen, z_info, env_id)
        if dist.main:
            pairs = ensure_joint_latents(*args, console=console, label=label)
        dist.barrier()
        if not dist.main:
            pairs = ensure_joint_latents(*args)
        return pairs, len(chosen)

    sources = [(cfg.data.stores[0], data, latents, info, train_eps, None, stride)]
    for root, (d, z, z_info) in zip(cfg.data.play_stores, play_data(cfg, dist, store)):
        anchors = branch_anchor_steps(d)
        sources.append((root, d, z, z_info, range(len(d["episode_ends"])), anchors,
                        1 if anchors is not None else stride))
    zs, ps, counts = [], [], {}
    for root, d, z, z_info, episodes, anchors, step in sources:
        (zz, pp), counts[root] = joint(root, d, z, z_info, episodes, anchors, step, f"joint latents {root}")
        zs.append(zz)
        ps.append(pp)
    train = JointWindows(np.concatenate(zs), np.concatenate(ps))
    val = None
    if val_eps:
        val = JointWindows(*joint(cfg.data.stores[0], data, latents, info, val_eps, None, 1,
                                  "joint latents (held out)")[0])
    model = make_model(cfg)
    c = world.uva.config
    check_model_fits(model, {"env": env_name(env_id), "width": c.width, "n_future": c.n_future,
                             "grid": c.latent_size // c.patch_size})
    return Task(model, train, val, env_id=env_id,
                extra={"store": cfg.data.stores[0], "vae": info["vae"], "play_stores": cfg.data.play_stores,
                       "n_windows": counts, "window_stride": stride,
                       "uva": {"path": str(cfg.data.joint_uva), "weights_sha256": world.uva_weights_sha256}})
