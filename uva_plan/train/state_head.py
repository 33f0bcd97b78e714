"""Training data of the state head: single latent frames of one store, each with its true poses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from uva_plan.data.latents import LatentFrames, frame_rows
from uva_plan.data.sampler import branch_anchor_steps, episode_frame_rows, train_val_split
from uva_plan.data.windows import ConcatWindows
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
class StateHeadData(PlayStoreData):
    # Also learn from this UVA's imagined frames of the store's windows, each paired with the
    # true pose it stands for (uva_plan/data/imagined.py); validation then reads imagined frames
    # of the held-out episodes only, what a planner's objective reads.
    imagined_uva: str | None = None
    imagined_window_stride: int = 2
    # play_stores: stores whose frames all join the training split (e.g. uva_plan.data.poses'
    # random layouts).

    def __post_init__(self):
        super().__post_init__()
        check_stride("data.imagined_window_stride", self.imagined_window_stride)


def build_state_head(cfg: TrainConfig, dist: Dist) -> Task:
    """Single frames of one store: cached VAE latents (built by rank 0 if missing or stale) and
    the object poses of the same frames' stored states (``state_head.pose_targets``)."""
    from uva_plan.models.state_head import env_name, pose_targets  # models import diffusers: only when used

    store, data, latents, info = one_store_with_latents(cfg, dist)
    env_id = store.meta["env_id"]
    train_eps, val_eps = train_val_split(len(data["episode_ends"]), cfg.data.val_fraction, cfg.data.split_seed)

    def frames(episodes: list[int]) -> LatentFrames:
        rows, table = episode_frame_rows(data, episodes)
        return LatentFrames(latents, rows, {"poses": pose_targets(env_id, table[rows])})

    train, val = frames(train_eps), frames(val_eps) if val_eps else None
    extra = {"store": cfg.data.stores[0], "vae": info["vae"]}
    if cfg.data.imagined_uva is not None:
        from uva_plan.data.imagined import ensure_imagined

        # Rank 0 builds the cache if needed; the others read it once it is there.
        imagined = (ensure_imagined(store.root, cfg.data.imagined_uva, cfg.data.imagined_window_stride,
                                    console=console) if dist.main else None)
        dist.barrier()
        if imagined is None:
            imagined = ensure_imagined(store.root, cfg.data.imagined_uva, cfg.data.imagined_window_stride)
        table, n_real_train = frame_rows(data), len(train)
        both = np.concatenate([latents, imagined["latents"]])  # real rows, then imagined ones

        def with_imagined(real: LatentFrames | None, episodes: list[int]) -> LatentFrames:
            chosen = np.flatnonzero(np.isin(imagined["episode"], episodes))
            real_rows = np.zeros(0, np.int64) if real is None else real.rows
            poses = pose_targets(env_id, table[np.concatenate([real_rows, imagined["rows"][chosen]])])
            return LatentFrames(both, np.concatenate([real_rows, len(latents) + chosen]), {"poses": poses})

        train = with_imagined(train, train_eps)
        val = with_imagined(None, val_eps) if val_eps else None
        extra["imagined"] = {"uva": cfg.data.imagined_uva, "window_stride": cfg.data.imagined_window_stride,
                             "n_train_imagined": len(train) - n_real_train}
    # data.play_stores: more labelled frames of the same env, every one of them for training;
    # validation stays the main store's held-out episodes.
    extras = []
    for root, (d, z, _) in zip(cfg.data.play_stores, play_data(cfg, dist, store)):
        if branch_anchor_steps(d) is not None:  # its cache holds only the rows UVA's windows read
            raise ValueError(f"data.play_stores entry {root} is a DP-C branch store (uva_plan.data.branches): "
                             "its latents cover UVA's branch windows only, not every frame a state head reads")
        rows, table = episode_frame_rows(d, list(range(len(d["episode_ends"]))))
        extras.append(LatentFrames(z, rows, {"poses": pose_targets(env_id, table[rows])}))
    if extras:
        extra["play_stores"] = {"stores": cfg.data.play_stores, "n_frames": [len(e) for e in extras]}
        train = ConcatWindows([train, *extras])
    model = make_model(cfg)
    check_model_fits(model, {"env": env_name(env_id), "latent_channels": latents.shape[1],
                             "latent_size": latents.shape[2]})
    return Task(model, train, val, env_id=env_id, extra=extra)
