"""Training data of UVA: windows of one store (and its play stores) on cached VAE latents."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from uva_plan.data.latents import LatentWindows
from uva_plan.data.sampler import UVA_FRAME_OFFSETS, SequenceSampler, branch_anchor_steps, train_val_split
from uva_plan.data.windows import ConcatWindows
from uva_plan.train.stores import (
    PlayStoreData,
    Task,
    check_model_fits,
    make_model,
    one_store_with_latents,
    play_data,
)

if TYPE_CHECKING:
    from uva_plan.train.distributed import Dist
    from uva_plan.train.loop import TrainConfig


@dataclass
class UVAData(PlayStoreData):
    """UVA's data: the first store's windows, plus the windows of play stores of the same env
    (e.g. collected with --expert pusht_explore, or DP-C branches from uva_plan.data.branches).
    Validation stays the first store's, so its figures compare with a model trained on the
    demos alone."""


def build_uva(cfg: TrainConfig, dist: Dist) -> Task:
    """UVA windows of one store: cached VAE latents (built by rank 0 if missing or stale) and
    normalised actions."""
    store, data, latents, info = one_store_with_latents(cfg, dist)
    normalizers = store.normalizers()
    train_eps, val_eps = train_val_split(len(data["episode_ends"]), cfg.data.val_fraction, cfg.data.split_seed)
    model = make_model(cfg)
    pose_env = None
    if getattr(model, "pose_head", None) is not None:  # its targets: the future frames' true poses
        from uva_plan.models.state_head import env_name

        pose_env = env_name(store.meta["env_id"])
        check_model_fits(model.pose_head, {"env": pose_env})
    windows = functools.partial(LatentWindows, pose_env=pose_env, n_history=int((np.asarray(UVA_FRAME_OFFSETS) <= 0).sum()))
    train = windows(SequenceSampler.uva(data, episodes=train_eps), latents, normalizers)
    # A branch store (uva_plan.data.branches) marks each branch's counterfactual step: only that
    # window of a branch is trained on; its executed DP-C episodes (branch_t -1) give every window.
    play = [windows(SequenceSampler.uva(d, episodes=range(len(d["episode_ends"])),
                                        anchor_steps=branch_anchor_steps(d)), z, normalizers)
            for d, z, _ in play_data(cfg, dist, store)]
    if play:
        train = ConcatWindows([train, *play])
    val = windows(SequenceSampler.uva(data, episodes=val_eps), latents, normalizers) if val_eps else None
    offsets = np.asarray(UVA_FRAME_OFFSETS)
    check_model_fits(model, {"latent_channels": latents.shape[1], "latent_size": latents.shape[2],
                             "action_dim": store.action_dim, "frame_stride": int(offsets[1] - offsets[0]),
                             "n_history": int((offsets <= 0).sum()), "n_future": int((offsets > 0).sum())})
    return Task(model, train, val, env_id=store.meta["env_id"], normalizers=normalizers,
                extra={"store": cfg.data.stores[0], "vae": info["vae"]}, find_unused_parameters=True)
