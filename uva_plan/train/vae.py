"""Training data of the frame VAE: frames rendered from stored states of one or more stores."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from uva_plan.data.frames import RenderedFrames, episode_frames
from uva_plan.data.latents import env_class
from uva_plan.data.sampler import train_val_split
from uva_plan.train.stores import StoreData, Task, check_model_fits, make_model, open_stores

if TYPE_CHECKING:
    from uva_plan.train.distributed import Dist
    from uva_plan.train.loop import TrainConfig


@dataclass
class VAEData(StoreData):
    render_size: int | None = None  # the frame side; must be the VAE's image_size
    scaling_samples: int = 512  # frames encoded to fit the latent scaling at the end


def build_vae(cfg: TrainConfig, dist: Dist) -> Task:
    """Frames rendered from random stored states of every store; the latent scaling is fitted
    at the end on a sample of training frames."""
    if cfg.data.render_size is None:
        raise ValueError("train=vae needs data.render_size (the VAE's image_size)")
    stores = open_stores(cfg)
    train_parts, val_parts = [], []
    for store in stores:
        data, cls = store.load(), env_class(store.meta["env_id"])
        train_eps, val_eps = train_val_split(len(data["episode_ends"]), cfg.data.val_fraction, cfg.data.split_seed)
        train_parts.append((episode_frames(data, train_eps), cls))
        val_parts.append((episode_frames(data, val_eps), cls))
    train, val = RenderedFrames(train_parts, cfg.data.render_size), RenderedFrames(val_parts, cfg.data.render_size)
    model = make_model(cfg)
    check_model_fits(model, {"image_size": cfg.data.render_size})
    env_ids = sorted({store.meta["env_id"] for store in stores})

    def fit_scaling(vae: nn.Module) -> None:
        rng = np.random.default_rng([cfg.seed, 2])
        chosen = rng.choice(len(train), size=min(cfg.data.scaling_samples, len(train)), replace=False)
        with torch.inference_mode():
            raw = torch.cat([vae.encode(train.batch(chunk)["frames"], scaled=False)
                             for chunk in np.array_split(chosen, math.ceil(len(chosen) / cfg.batch_size))])
        vae.fit_scaling(raw)

    return Task(model, train, val if len(val) else None, env_id=env_ids[0] if len(env_ids) == 1 else None,
                extra={"stores": cfg.data.stores, "env_ids": env_ids, "render_size": cfg.data.render_size},
                finish=fit_scaling)
