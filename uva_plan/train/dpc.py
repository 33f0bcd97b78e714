"""Training data of DP-C: windows of one store on cached VAE latents or on physical states."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from uva_plan.data.latents import LatentWindows, StateWindows
from uva_plan.data.sampler import DPC_FRAME_OFFSETS, SequenceSampler, train_val_split
from uva_plan.train.stores import StoreData, Task, check_model_fits, make_model, one_store_with_latents

if TYPE_CHECKING:
    from uva_plan.train.distributed import Dist
    from uva_plan.train.loop import TrainConfig


@dataclass
class DPCData(StoreData):
    """DP-C reads the common fields only."""


def build_dpc(cfg: TrainConfig, dist: Dist) -> Task:
    """DP-C windows of one store (frames t-1, t; actions t-1..t+14) and normalised actions, with
    cached VAE latents and agent positions (obs_mode "latent"; the cache is built by rank 0 if
    missing or stale) or normalised physical states (obs_mode "state")."""
    obs_mode = cfg.model.get("obs_mode", "latent")
    store, data, latents, info = one_store_with_latents(cfg, dist, need_vae=obs_mode == "latent")
    normalizers = store.normalizers()  # "state" too: the state-mode policy needs it at run time
    train_eps, val_eps = train_val_split(len(data["episode_ends"]), cfg.data.val_fraction, cfg.data.split_seed)
    train_sampler = SequenceSampler.dpc(data, episodes=train_eps)
    val_sampler = SequenceSampler.dpc(data, episodes=val_eps) if val_eps else None
    wanted = {"action_dim": store.action_dim, "n_obs_steps": len(DPC_FRAME_OFFSETS),
              "horizon": train_sampler.n_actions, "obs_mode": obs_mode}
    extra = {"store": cfg.data.stores[0]}
    if obs_mode == "latent":
        train = LatentWindows(train_sampler, latents, normalizers)
        val = LatentWindows(val_sampler, latents, normalizers) if val_sampler else None
        wanted.update(latent_channels=latents.shape[1], latent_size=latents.shape[2])
        extra["vae"] = info["vae"]
    else:
        train = StateWindows(train_sampler, normalizers)
        val = StateWindows(val_sampler, normalizers) if val_sampler else None
        wanted["state_dim"] = store.physical_dim
    model = make_model(cfg)
    check_model_fits(model, wanted)
    return Task(model, train, val, env_id=store.meta["env_id"], normalizers=normalizers, extra=extra)
