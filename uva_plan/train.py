"""One training loop for every model: ``python -m uva_plan.train train=<option> [overrides]``.

    python -m uva_plan.train train=vae data.stores=[data/pusht,data/blockpush]
    python -m uva_plan.train train=uva data.stores=[data/pusht] vae_checkpoint=outputs/train/vae/final
    torchrun --nproc_per_node 2 -m uva_plan.train train=uva ...   # DDP, gloo on CPU

A model joins through a builder in ``BUILDERS``: a function from the config to a ``Task`` (the
model, index-addressable train and validation sets, what its checkpoints record). The loop
only calls ``model.compute_loss(batch) -> (loss, metrics)``.

Determinism: the global batch of step s is a function of (seed, s) (``batch_indices``), and the
global RNGs are reseeded from (seed, s, rank) before every step. A run killed at any point and
rerun with the same command resumes from its newest valid checkpoint and ends with the same
weights as an uninterrupted run; metrics.jsonl is cut back to the resumed step.

DDP (under torchrun): ``batch_size`` is the global batch, split across ranks, so the ranks
together see the samples one process would; gradients are averaged by
DistributedDataParallel, metrics across ranks; only rank 0 writes.

``out_dir`` holds config.json, metrics.jsonl, summary.json, ckpt/step_XXXXXXXX (resumable, the
newest ``keep_checkpoints``), ckpt/latest.json, and final/ (the finished model: EMA weights and
meta.json, what ``uva_plan.checkpoint.load_model`` and the next training take).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import functools
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from torch import nn

from uva_plan.checkpoint import (
    MODEL_CLASSES,
    MODEL_FILE,
    check_config,
    config_differences,
    export_checkpoint,
    import_object,
    latest_valid_checkpoint,
    load_checkpoint,
    read_meta,
    read_trainer_state,
    read_weights,
    restore_rng_state,
    save_training_checkpoint,
)
from uva_plan.data.latents import (
    LatentFrames,
    LatentWindows,
    StateWindows,
    ensure_latents,
    env_class,
    frame_rows,
    load_latents,
)
from uva_plan.data.sampler import (
    DPC_FRAME_OFFSETS,
    UVA_FRAME_OFFSETS,
    SequenceSampler,
    branch_anchor_steps,
    episode_frame_rows,
    train_val_split,
)
from uva_plan.data.store import EpisodeStore
from uva_plan.io import atomic_write_bytes, atomic_write_json, git_revision

console = Console()
# Keys that describe one invocation, not the training: free to change when resuming.
RUN_KEYS = ("out_dir", "resume", "threads", "device", "max_minutes", "log_every", "val_every",
            "val_batches", "checkpoint_every", "keep_checkpoints")


# -- configuration ---------------------------------------------------------------------------
@dataclass
class DataConfig:
    stores: list[str]  # EpisodeStore roots; vae may take several (one per env), uva one
    env_id: str | None = None  # if given, every store must hold this env's data
    val_fraction: float = 0.05  # held-out episodes (per store) for the validation loss
    split_seed: int = 0
    render_size: int | None = None  # vae: frame side; must be the VAE's image_size
    scaling_samples: int = 512  # vae: frames encoded to fit the latent scaling at the end
    # state_head: also learn from this UVA's imagined frames of the store's windows, each paired
    # with the true pose it stands for (uva_plan/data/imagined.py); validation then reads
    # imagined frames of the held-out episodes only, what a planner's objective reads.
    imagined_uva: str | None = None
    imagined_window_stride: int = 2
    # uva: play-data stores of the same env (e.g. collected with --expert pusht_explore, or DP-C
    # branches from uva_plan.data.branches) whose windows join the first store's training split;
    # state_head: stores whose frames all join it (e.g. uva_plan.data.poses' random layouts).
    # Normalisers and validation stay the first store's, so validation figures compare with a
    # model trained on the demos alone.
    play_stores: list[str] = field(default_factory=list)
    # pose_head: the UVA checkpoint whose joint latent Z the head reads (frozen; its Z of every
    # joint_window_stride-th window of the stores, and of every branch window, is computed once).
    joint_uva: str | None = None
    joint_window_stride: int = 2

    def __post_init__(self):
        if isinstance(self.stores, (str, Path)):
            self.stores = [self.stores]
        self.stores = [str(s) for s in self.stores]
        if isinstance(self.play_stores, (str, Path)):
            self.play_stores = [self.play_stores]
        self.play_stores = [str(s) for s in self.play_stores]
        if not self.stores:
            raise ValueError(f"data.stores must name at least one episode store, got {self.stores=}")
        if isinstance(self.joint_window_stride, bool) or not isinstance(self.joint_window_stride, int) \
                or self.joint_window_stride < 1:
            raise ValueError(f"data.joint_window_stride must be an int >= 1, got {self.joint_window_stride=}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {self.val_fraction=}")


@dataclass
class TrainConfig:
    kind: str  # a key of BUILDERS: vae, uva, dpc, state_head
    model: dict  # the model's config, passed to ``from_config``
    data: DataConfig
    out_dir: str
    model_class: str | None = None  # "module:Class" with the model interface; default per kind
    # a checkpoint (directory, e.g. a shipped model) of the same kind and architecture whose
    # weights start the run (fine-tuning); the optimiser starts fresh. Resuming ignores it.
    init_from: str | None = None
    # uva with a pose head: a trained PoseHead checkpoint (train=pose_head on the init_from UVA)
    # whose weights start the UVA's pose head; init_from may then lack the pose head's weights.
    init_pose_head: str | None = None
    vae_checkpoint: str | None = None  # uva, dpc (latent mode), state_head: the frozen VAE whose cached latents they learn
    batch_size: int = 64  # global: split across DDP ranks
    steps: int = 10_000  # the run's length; also the length of the cosine schedule
    max_minutes: float | None = None  # wall-clock budget of one invocation: checkpoint and stop
    lr: float = 1e-4
    weight_decay: float = 0.02
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 500
    grad_clip: float | None = 1.0
    ema_decay: float | None = 0.999  # None: no EMA, the raw weights ship
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    val_every: int = 500  # 0: never (the end of training still validates if there is data)
    val_batches: int = 4
    log_every: int = 10
    resume: bool = True  # continue from out_dir's newest valid checkpoint if there is one
    seed: int = 0
    threads: int = 2  # torch.set_num_threads, per process
    device: str = "cpu"

    def __post_init__(self):
        if isinstance(self.data, dict):
            self.data = DataConfig(**self.data)
        self.model, self.betas = dict(self.model), tuple(self.betas)
        if self.kind not in BUILDERS:
            raise ValueError(f"kind must be one of {sorted(BUILDERS)}, got {self.kind=}")
        for name in ("batch_size", "steps", "checkpoint_every", "keep_checkpoints", "log_every",
                     "val_batches", "threads"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int, got {name}={getattr(self, name)!r}")
        if self.warmup_steps < 0 or self.val_every < 0:
            raise ValueError(f"warmup_steps and val_every must be >= 0, got {self.warmup_steps=} {self.val_every=}")
        if not self.lr > 0 or self.weight_decay < 0 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"bad optimiser settings: {self.lr=} {self.weight_decay=} {self.betas=}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1) or null, got {self.ema_decay=}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be > 0 or null, got {self.max_minutes=}")
        if self.init_pose_head is not None and self.init_from is None:
            raise ValueError(f"init_pose_head={self.init_pose_head} needs init_from=<the UVA it was trained on>")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or null, got {self.grad_clip=}")

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown training config keys {sorted(unknown)}")
        return cls(**d)


# -- tasks: what each kind of model trains on --------------------------------------------------
@dataclass
class Task:
    """What the loop needs from a builder. ``train`` and ``val`` have ``len()`` and
    ``batch(indices) -> dict`` (the batch ``model.compute_loss`` takes)."""

    model: nn.Module
    train: Any
    val: Any | None
    env_id: str | None
    normalizers: dict | None = None
    extra: dict = field(default_factory=dict)
    finish: Callable[[nn.Module], None] | None = None  # applied to the shipped model at the end
    # DDP must look for parameters a step leaves unused (UVA: each task mode skips a head).
    find_unused_parameters: bool = False


def make_model(cfg: TrainConfig) -> nn.Module:
    spec = cfg.model_class or MODEL_CLASSES[cfg.kind]
    return import_object(spec).from_config(dict(cfg.model))


def check_model_fits(model: nn.Module, wanted: dict) -> None:
    """Raise naming every config field of ``model`` that disagrees with the data."""
    bad = [f"model.{k}={getattr(model.config, k)!r} but the data has {v!r}"
           for k, v in wanted.items() if hasattr(model.config, k) and getattr(model.config, k) != v]
    if bad:
        raise ValueError("the model config does not fit the data: " + "; ".join(bad))


def _open_stores(cfg: TrainConfig) -> list[EpisodeStore]:
    stores = [EpisodeStore.open(root) for root in cfg.data.stores]
    for store in stores:
        if cfg.data.env_id is not None and store.meta["env_id"] != cfg.data.env_id:
            raise ValueError(f"{store.root} holds {store.meta['env_id']} data, but data.env_id={cfg.data.env_id}")
    return stores


class RenderedFrames:
    """Frames rendered on the fly from stored states of one or more stores (each with its own
    env's ``render_states``): ``batch(indices)`` gives {"frames": uint8 (B, S, S, 3)}."""

    def __init__(self, parts: list[tuple[np.ndarray, type]], render_size: int):
        self.parts, self.render_size = parts, render_size
        self.offsets = np.cumsum([0] + [len(rows) for rows, _ in parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def batch(self, indices) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        size = self.render_size
        frames = np.empty((len(idx), size, size, 3), dtype=np.uint8)
        part = np.searchsorted(self.offsets, idx, side="right") - 1
        for k, (rows, env_cls) in enumerate(self.parts):
            if (chosen := part == k).any():
                frames[chosen] = env_cls.render_states(rows[idx[chosen] - self.offsets[k]], size)
        return {"frames": torch.from_numpy(frames)}


def _episode_frames(data: dict, episodes: list[int]) -> np.ndarray:
    """(R, P) states of the chosen episodes' frames, final states included."""
    if not episodes:
        return np.zeros((0, data["states"].shape[1]))
    rows, table = episode_frame_rows(data, episodes)
    return table[rows]


def _one_store_with_latents(cfg: TrainConfig, dist: Dist, need_vae: bool = True):
    """(store, data, latents or None, latent cache info or None) of the single store a
    per-environment model trains on; rank 0 builds the latent cache if missing or stale."""
    if need_vae and cfg.vae_checkpoint is None:
        raise ValueError(f"train={cfg.kind} needs vae_checkpoint=<a trained VAE checkpoint, "
                         f"e.g. outputs/train/vae/final>")
    if len(cfg.data.stores) != 1:
        raise ValueError(f"train={cfg.kind} trains on one store (one env), got data.stores={cfg.data.stores}")
    (store,) = _open_stores(cfg)
    data = store.load()
    if not need_vae:
        return store, data, None, None
    if dist.main:
        ensure_latents(store.root, cfg.vae_checkpoint, data=data, console=console)
    dist.barrier()
    latents, info = load_latents(store.root, cfg.vae_checkpoint, data=data)
    return store, data, latents, info


def _play_data(cfg: TrainConfig, dist: Dist, main: EpisodeStore) -> list[tuple[dict, np.ndarray]]:
    """(data, latents) of every ``data.play_stores`` entry, each checked to hold ``main``'s env
    and encoded by the same VAE (rank 0 builds a missing cache)."""
    out = []
    for root in cfg.data.play_stores:
        store = EpisodeStore.open(root)
        if store.meta["env_id"] != main.meta["env_id"]:
            raise ValueError(f"data.play_stores entry {root} holds {store.meta['env_id']} data, but "
                             f"{main.root} holds {main.meta['env_id']}: play data must be the same env's")
        data = store.load()
        if dist.main:
            ensure_latents(store.root, cfg.vae_checkpoint, data=data, console=console)
        dist.barrier()
        out.append((data, load_latents(store.root, cfg.vae_checkpoint, data=data)[0]))
    return out


class ConcatWindows:
    """Several window sets as one: index i < len(parts[0]) is the first part's window i, and so
    on. ``batch`` keeps the order of the indices it is given."""

    def __init__(self, parts: list):
        if not parts:
            raise ValueError("ConcatWindows needs at least one part")
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def batch(self, indices) -> dict[str, torch.Tensor]:
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"window indices must lie in [0, {len(self)}), got min {indices.min()}, "
                             f"max {indices.max()}")
        part = np.searchsorted(self.offsets, indices, side="right") - 1
        pieces, order = [], []
        for k in np.unique(part):
            where = np.flatnonzero(part == k)
            pieces.append(self.parts[k].batch(indices[where] - self.offsets[k]))
            order.append(where)
        inverse = np.argsort(np.concatenate(order), kind="stable")
        return {key: torch.cat([p[key] for p in pieces])[torch.from_numpy(inverse)] for key in pieces[0]}


def build_vae(cfg: TrainConfig, dist: Dist) -> Task:
    """Frames rendered from random stored states of every store; the latent scaling is fitted
    at the end on a sample of training frames."""
    if cfg.data.render_size is None:
        raise ValueError("train=vae needs data.render_size (the VAE's image_size)")
    stores = _open_stores(cfg)
    train_parts, val_parts = [], []
    for store in stores:
        data, cls = store.load(), env_class(store.meta["env_id"])
        train_eps, val_eps = train_val_split(len(data["episode_ends"]), cfg.data.val_fraction, cfg.data.split_seed)
        train_parts.append((_episode_frames(data, train_eps), cls))
        val_parts.append((_episode_frames(data, val_eps), cls))
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


def build_uva(cfg: TrainConfig, dist: Dist) -> Task:
    """UVA windows of one store: cached VAE latents (built by rank 0 if missing or stale) and
    normalised actions."""
    store, data, latents, info = _one_store_with_latents(cfg, dist)
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
            for d, z in _play_data(cfg, dist, store)]
    if play:
        train = ConcatWindows([train, *play])
    val = windows(SequenceSampler.uva(data, episodes=val_eps), latents, normalizers) if val_eps else None
    offsets = np.asarray(UVA_FRAME_OFFSETS)
    check_model_fits(model, {"latent_channels": latents.shape[1], "latent_size": latents.shape[2],
                             "action_dim": store.action_dim, "frame_stride": int(offsets[1] - offsets[0]),
                             "n_history": int((offsets <= 0).sum()), "n_future": int((offsets > 0).sum())})
    return Task(model, train, val, env_id=store.meta["env_id"], normalizers=normalizers,
                extra={"store": cfg.data.stores[0], "vae": info["vae"]}, find_unused_parameters=True)


def build_dpc(cfg: TrainConfig, dist: Dist) -> Task:
    """DP-C windows of one store (frames t-1, t; actions t-1..t+14) and normalised actions, with
    cached VAE latents and agent positions (obs_mode "latent"; the cache is built by rank 0 if
    missing or stale) or normalised physical states (obs_mode "state")."""
    obs_mode = cfg.model.get("obs_mode", "latent")
    store, data, latents, info = _one_store_with_latents(cfg, dist, need_vae=obs_mode == "latent")
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


def build_state_head(cfg: TrainConfig, dist: Dist) -> Task:
    """Single frames of one store: cached VAE latents (built by rank 0 if missing or stale) and
    the object poses of the same frames' stored states (``state_head.pose_targets``)."""
    from uva_plan.models.state_head import env_name, pose_targets  # models import diffusers: only when used

    store, data, latents, info = _one_store_with_latents(cfg, dist)
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
    # data.play_stores: more labelled frames of the same env (e.g. uva_plan.data.poses' random
    # layouts), every one of them for training; validation stays the main store's held-out episodes.
    extras = []
    for root, (d, z) in zip(cfg.data.play_stores, _play_data(cfg, dist, store)):
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


def build_pose_head(cfg: TrainConfig, dist: Dist) -> Task:
    """A frozen UVA's joint latent Z of windows of one store and its play stores (demos, play
    data, DP-C branches), each paired with the true poses of the window's 4 future frames.
    Validation: the main store's held-out episodes, every window."""
    from uva_plan.dynamics import UVAWorldModel
    from uva_plan.data.joint import JointWindows, joint_latents
    from uva_plan.models.state_head import env_name, pose_targets

    if cfg.data.joint_uva is None:
        raise ValueError("train=pose_head needs data.joint_uva=<the UVA checkpoint whose joint latent it reads, "
                         "e.g. uva_plan/pretrained/pusht/uva>")
    store, data, latents, info = _one_store_with_latents(cfg, dist)
    env_id = store.meta["env_id"]
    # load() refuses a UVA trained on another VAE's latents than vae_checkpoint's.
    world = UVAWorldModel.load(cfg.data.joint_uva, cfg.vae_checkpoint)
    if world.env_id != env_id:
        raise ValueError(f"data.joint_uva={cfg.data.joint_uva} was trained on {world.env_id}, the store holds {env_id}")
    uva = world.uva
    normalizers = {**store.normalizers(), "actions": world.normalizer}  # the actions as the UVA reads them
    train_eps, val_eps = train_val_split(len(data["episode_ends"]), cfg.data.val_fraction, cfg.data.split_seed)
    poses = functools.partial(pose_targets, env_id)
    stride = cfg.data.joint_window_stride
    sources = [(data, latents, train_eps, None, stride, cfg.data.stores[0])]
    for root, (d, z) in zip(cfg.data.play_stores, _play_data(cfg, dist, store)):
        anchors = branch_anchor_steps(d)
        sources.append((d, z, range(len(d["episode_ends"])), anchors, 1 if anchors is not None else stride, root))
    zs, ps, counts = [], [], {}
    for d, z, episodes, anchors, step, name in sources:
        windows = LatentWindows(SequenceSampler.uva(d, episodes=episodes, anchor_steps=anchors), z, normalizers)
        chosen = np.arange(0, len(windows), step)
        zz, pp = joint_latents(uva, windows, chosen, frame_rows(d), poses, console=console if dist.main else None,
                               label=f"joint latents {name}")
        zs.append(zz)
        ps.append(pp)
        counts[name] = len(chosen)
    train = JointWindows(np.concatenate(zs), np.concatenate(ps))
    val = None
    if val_eps:
        windows = LatentWindows(SequenceSampler.uva(data, episodes=val_eps), latents, normalizers)
        val = JointWindows(*joint_latents(uva, windows, np.arange(len(windows)), frame_rows(data), poses,
                                          console=console if dist.main else None, label="joint latents (held out)"))
    model = make_model(cfg)
    c = uva.config
    check_model_fits(model, {"env": env_name(env_id), "width": c.width, "n_future": c.n_future,
                             "grid": c.latent_size // c.patch_size})
    return Task(model, train, val, env_id=env_id,
                extra={"store": cfg.data.stores[0], "vae": info["vae"], "play_stores": cfg.data.play_stores,
                       "n_windows": counts, "window_stride": stride,
                       "uva": {"path": str(cfg.data.joint_uva), "weights_sha256": world.uva_weights_sha256}})


# Adding a model = one builder function and one entry here (and its class in MODEL_CLASSES).
BUILDERS: dict[str, Callable[[TrainConfig, Dist], Task]] = {
    "vae": build_vae, "uva": build_uva, "dpc": build_dpc, "state_head": build_state_head,
    "pose_head": build_pose_head}


# -- the pieces of the loop --------------------------------------------------------------------
@dataclass(frozen=True)
class Dist:
    """This process's place in a DDP run (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def any(self, flag: bool) -> bool:
        if self.world == 1:
            return flag
        t = torch.tensor([float(flag)])
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())

    def merge(self, sums: dict[str, tuple[float, float]]) -> dict[str, float]:
        """Weighted means of {key: (sum, count)} over all ranks; keys that some rank lacks
        (a metric that only some task modes produce) are averaged where present."""
        if self.world > 1:
            gathered = [None] * self.world
            torch.distributed.all_gather_object(gathered, sums)
        else:
            gathered = [sums]
        total: dict[str, list[float]] = {}
        for part in gathered:
            for key, (s, n) in part.items():
                acc = total.setdefault(key, [0.0, 0.0])
                acc[0], acc[1] = acc[0] + s, acc[1] + n
        return {key: s / n for key, (s, n) in total.items() if n > 0}

    def broadcast(self, obj: Any) -> Any:
        if self.world == 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]


def init_distributed(device: str) -> tuple[Dist, torch.device]:
    """Join the torchrun process group (gloo on CPU, nccl on GPU) if WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(), torch.device(device)
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    # Long timeout: rank 0 may build the latent cache while the others wait at a barrier.
    torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                         timeout=datetime.timedelta(hours=3))
    return Dist(torch.distributed.get_rank(), torch.distributed.get_world_size()), dev


class EMA:
    """Exponential moving average of a model's weights; the averaged copy is what ships."""

    def __init__(self, model: nn.Module, decay: float):
        self.model = _copy_module(model)
        self.decay, self.n_updates = decay, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.n_updates += 1
        # Warm-up (diffusers' EMAModel default): early on, average over fewer steps.
        decay = min(self.decay, (1 + self.n_updates) / (10 + self.n_updates))
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            ema_p.lerp_(p, 1.0 - decay)
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "n_updates": self.n_updates}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.n_updates = state["decay"], state["n_updates"]


def _copy_module(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).eval().requires_grad_(False)


class _ComputeLoss(nn.Module):
    """DDP synchronises the gradients of what runs through its forward: route compute_loss there."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict):
        return self.model.compute_loss(batch)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases and norm gains (1-d parameters), as nanoGPT."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=cfg.betas)


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LR factor: linear from 0 over the warm-up, then a half cosine to 0 at ``total_steps``
    (the schedule of diffusers' get_cosine_schedule_with_warmup)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return factor


@functools.lru_cache(maxsize=4)
def _permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Global batch of ``step``: positions [step B, (step + 1) B) of an endless sequence of
    permutations of range(n), the e-th seeded by (seed, e). Each sample once per epoch, and
    a function of (seed, step) alone, which is what makes resuming exact."""
    if n < 1:
        raise ValueError("the training set is empty")
    out, pos, end = [], step * batch_size, (step + 1) * batch_size
    while pos < end:
        epoch, offset = divmod(pos, n)
        take = min(end - pos, n - offset)
        out.append(_permutation(n, seed, epoch)[offset:offset + take])
        pos += take
    return np.concatenate(out)


def seed_step(seed: int, step: int, rank: int) -> None:
    """Reseed the global RNGs (model noise, masks, task modes) from (seed, step, rank)."""
    state = int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])
    torch.manual_seed(state)
    np.random.seed(state)
    random.seed(state)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class MetricSums:
    """Running {key: (sum, count)}; NaN values mean "not applicable" (e.g. UVA's video loss in
    a policy-mode batch) and are left out of the mean rather than counted as anything."""

    def __init__(self):
        self.sums: dict[str, tuple[float, float]] = {}

    def add(self, metrics: dict[str, float], weight: float = 1.0) -> None:
        for key, value in metrics.items():
            if math.isfinite(value):
                s, n = self.sums.get(key, (0.0, 0.0))
                self.sums[key] = (s + weight * value, n + weight)


class MetricsLog:
    """metrics.jsonl, one JSON object per line, written by rank 0. On start, rows after the
    resumed step (logged by a run that was killed after its last checkpoint) and a torn last
    line are dropped, so a resumed run's log reads like an uninterrupted one."""

    def __init__(self, path: Path, start_step: int):
        self.path = path
        if path.exists():
            kept = []
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if row.get("step", math.inf) <= start_step:
                    kept.append(line + "\n")
            atomic_write_bytes(path, "".join(kept).encode())
        else:
            path.touch()

    def write(self, row: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


class Reporter:
    """Rich progress bar on a terminal; one plain line per log interval otherwise."""

    def __init__(self, title: str, total: int, start: int, enabled: bool):
        self.total, self.enabled = total, enabled
        self.live = enabled and console.is_terminal
        if self.live:
            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[status]}"), TimeRemainingColumn(), console=console)
            self.task = self.progress.add_task(title, total=total, completed=start, status="")
            self.progress.start()

    def update(self, step: int, row: dict, eta_s: float) -> None:
        if not self.enabled:
            return
        status = f"loss {row['loss']:.4f}  lr {row['lr']:.2e}  {row['samples_per_s']:.0f} samples/s"
        if self.live:
            self.progress.update(self.task, completed=step, status=status)
        else:
            console.print(f"step {step}/{self.total}  {status}  eta {datetime.timedelta(seconds=round(eta_s))}")

    def note(self, text: str) -> None:
        if self.enabled:
            (self.progress.console if self.live else console).print(text)

    def close(self) -> None:
        if self.live:
            self.progress.stop()


def validate(model: nn.Module, val: Any, cfg: TrainConfig, dist: Dist, device: torch.device) -> dict[str, float]:
    """Mean metrics over the same ``val_batches`` held-out batches every time (fixed indices and
    model noise), sharded over the ranks."""
    order = np.random.default_rng([cfg.seed, 1]).permutation(len(val))[:cfg.val_batches * cfg.batch_size]
    sums = MetricSums()
    was_training = model.training
    model.eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        for chunk in np.array_split(order, math.ceil(len(order) / cfg.batch_size)):
            shard = np.array_split(chunk, dist.world)[dist.rank]
            if len(shard):
                _, metrics = model.compute_loss(_to_device(val.batch(shard), device))
                sums.add(metrics, weight=len(shard))
    model.train(was_training)
    return dist.merge(sums.sums)


# -- the loop ------------------------------------------------------------------------------------
def train(cfg: TrainConfig | DictConfig | dict) -> dict:
    """Train (or resume) the run in ``cfg.out_dir``; returns the summary also written to
    summary.json."""
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    if isinstance(cfg, dict):
        cfg = TrainConfig.from_dict(cfg)
    git_revision()  # read (and cached) now: checkpoints record the code this run started with
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    dist, device = init_distributed(cfg.device)
    try:
        result = _train(cfg, dist, device)
        # Both ranks leave together: under load, gloo aborted a rank ("terminate called without
        # an active exception") whose peer had already torn its process group down.
        dist.barrier()
        return result
    finally:
        torch.set_num_threads(previous_threads)
        if dist.world > 1:
            torch.distributed.destroy_process_group()


def _initialise_from(model: nn.Module, cfg: TrainConfig) -> None:
    """Load ``cfg.init_from``'s weights (cast to the model's dtype) into ``model``: same kind,
    same parameter names and shapes; other config fields (e.g. task mode weights) may differ."""
    state, meta = load_checkpoint(cfg.init_from, expected_kind=cfg.kind)
    own = model.state_dict()
    if cfg.init_pose_head is not None:
        if getattr(model, "pose_head", None) is None:
            raise ValueError(f"init_pose_head={cfg.init_pose_head} but the model has no pose head "
                             "(set model.pose_head, e.g. train=uva_pose)")
        head_state, _ = load_checkpoint(cfg.init_pose_head, expected_kind="pose_head")
        state = {**{k: v for k, v in state.items() if not k.startswith("pose_head.")},
                 **{f"pose_head.{k}": v for k, v in head_state.items()}}
    bad = sorted(set(own) ^ set(state)) + [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
                                           for k, v in own.items() if k in state and state[k].shape != v.shape]
    if bad:
        raise ValueError(f"init_from={cfg.init_from} does not fit this model's architecture "
                         f"(differing parameters, first 5 of {len(bad)}): {bad[:5]}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    diffs = config_differences(meta["config"], _config_dict(model))
    console.print(f"initialised from {cfg.init_from}" + (f"; config differs in {diffs}" if diffs else ""))


def _train(cfg: TrainConfig, dist: Dist, device: torch.device) -> dict:
    if cfg.batch_size % dist.world:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the {dist.world} DDP ranks")
    out_dir = Path(cfg.out_dir)
    ckpt_dir = out_dir / "ckpt"
    resume_path = None
    if dist.main:
        resume_path = latest_valid_checkpoint(ckpt_dir)
        if resume_path is not None and not cfg.resume:
            raise ValueError(f"{ckpt_dir} already holds checkpoints (newest {resume_path.name}) and "
                             f"resume=false: pick another out_dir, or delete it to start over")
    resume_path = dist.broadcast(resume_path)
    train_config = asdict(cfg)

    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    task = BUILDERS[cfg.kind](cfg, dist)
    if cfg.init_from is not None and resume_path is None:
        _initialise_from(task.model, cfg)
    model = task.model.to(device).train()
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay is not None else None
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.warmup_steps, cfg.steps))
    start = 0
    if resume_path is not None:
        start = restore(resume_path, train_config, model, ema, optimizer, scheduler)
    shipped = ema.model if ema is not None else model

    def save(step: int) -> Path:
        return save_training_checkpoint(
            ckpt_dir, model, step=step, keep=cfg.keep_checkpoints, kind=cfg.kind, config=_config_dict(shipped),
            normalizers=task.normalizers, env_id=task.env_id,
            extra={"train_config": train_config, "model_class": cfg.model_class or MODEL_CLASSES[cfg.kind],
                   "world_size": dist.world, **task.extra},
            optimizer=optimizer, scheduler=scheduler, ema=ema,
            trainer_state={"data": {"seed": cfg.seed, "step": step, "batch_size": cfg.batch_size}})

    if dist.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out_dir / "config.json", train_config)
        log = MetricsLog(out_dir / "metrics.jsonl", start)
    if start >= cfg.steps:
        if dist.main:
            console.print(f"{out_dir} already finished its {cfg.steps} steps ({resume_path})")
            if not (out_dir / "final" / "meta.json").exists():
                export_checkpoint(resume_path, out_dir / "final")
        return _summarise(cfg, out_dir, resume_path, dist, stopped_early=False)
    if resume_path is not None and dist.main:
        console.print(f"resuming {out_dir} from {resume_path.name} (step {start} of {cfg.steps})")

    compute_loss = model.compute_loss
    if dist.world > 1:
        compute_loss = nn.parallel.DistributedDataParallel(
            _ComputeLoss(model), device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=task.find_unused_parameters)
    reporter = Reporter(f"{cfg.kind} {out_dir}", cfg.steps, start, enabled=dist.main)
    deadline = time.monotonic() + 60 * cfg.max_minutes if cfg.max_minutes is not None else math.inf
    sums, interval_start, interval_steps, last_path = MetricSums(), time.perf_counter(), 0, resume_path
    stopped_early = False
    try:
        for step in range(start, cfg.steps):
            seed_step(cfg.seed, step, dist.rank)
            idx = batch_indices(len(task.train), cfg.batch_size, cfg.seed, step)
            shard = idx.reshape(dist.world, -1)[dist.rank]
            loss, metrics = compute_loss(_to_device(task.train.batch(shard), device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}: {metrics}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or math.inf)
            if not torch.isfinite(grad_norm):
                raise FloatingPointError(f"non-finite gradient norm at step {step}: {metrics}")
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update(model)
            done = step + 1
            sums.add({**metrics, "loss": loss.item(), "grad_norm": grad_norm.item()})
            interval_steps += 1

            if done % cfg.log_every == 0 or done == cfg.steps:
                row = dist.merge(sums.sums)
                elapsed = time.perf_counter() - interval_start
                row.update(lr=scheduler.get_last_lr()[0], samples_per_s=interval_steps * cfg.batch_size / elapsed)
                if dist.main:
                    log.write({"step": done, "split": "train", **row})
                    reporter.update(done, row, eta_s=(cfg.steps - done) * elapsed / interval_steps)
                sums, interval_start, interval_steps = MetricSums(), time.perf_counter(), 0
            if task.val is not None and (cfg.val_every and done % cfg.val_every == 0 or done == cfg.steps):
                val_row = validate(shipped, task.val, cfg, dist, device)
                if dist.main:
                    log.write({"step": done, "split": "val", **val_row})
                    reporter.note(f"step {done}: val loss {val_row.get('loss', math.nan):.4f}")
            stopped_early = (cfg.max_minutes is not None and dist.any(time.monotonic() > deadline)
                             and done < cfg.steps)
            if done == cfg.steps:
                if dist.main:
                    if task.finish is not None:
                        task.finish(shipped)
                    last_path = save(done)
                    export_checkpoint(last_path, out_dir / "final")
            elif (done % cfg.checkpoint_every == 0 or stopped_early) and dist.main:
                last_path = save(done)
            if stopped_early:
                reporter.note(f"time budget of {cfg.max_minutes} min reached at step {done} of {cfg.steps}; "
                              f"rerun the same command to continue")
                break
    finally:
        reporter.close()
    dist.barrier()
    return _summarise(cfg, out_dir, last_path, dist, stopped_early)


def restore(path: Path, train_config: dict, model: nn.Module, ema: EMA | None,
            optimizer: torch.optim.Optimizer, scheduler: Any) -> int:
    """Load a resumable checkpoint made with the same training config; returns its step."""
    meta = read_meta(path)
    check_config(meta["extra"]["train_config"], train_config, ignore=RUN_KEYS, what="training config")
    state = read_trainer_state(path)
    model.load_state_dict(state["raw_weights"])
    if ema is not None:
        ema.model.load_state_dict(read_weights(path / MODEL_FILE))
        ema.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_rng_state(state["rng"])
    return int(state["step"])


def _config_dict(model: nn.Module) -> dict:
    config = model.config
    return asdict(config) if dataclasses.is_dataclass(config) else dict(config)


def _summarise(cfg: TrainConfig, out_dir: Path, checkpoint: Path | None, dist: Dist, stopped_early: bool) -> dict:
    """Last train and val rows of metrics.jsonl; rank 0 prints a table and writes summary.json."""
    summary = {"kind": cfg.kind, "out_dir": str(out_dir), "steps": cfg.steps,
               "checkpoint": str(checkpoint) if checkpoint else None, "stopped_early": stopped_early,
               "final": str(out_dir / "final") if (out_dir / "final" / "meta.json").exists() else None}
    if not dist.main:
        return summary
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    for split in ("train", "val"):
        summary[split] = next((r for r in reversed(rows) if r["split"] == split), None)
    summary["step"] = max((r["step"] for r in rows), default=0)
    atomic_write_json(out_dir / "summary.json", summary)
    table = Table(title=f"{cfg.kind} training: {out_dir}")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("step", f"{summary['step']} / {cfg.steps}" + (" (time budget)" if stopped_early else ""))
    for split in ("train", "val"):
        if summary[split]:
            for key in ("loss", *sorted(k for k in summary[split] if k not in ("loss", "step", "split"))):
                if key in summary[split]:
                    table.add_row(f"{split} {key}", f"{summary[split][key]:.4g}")
    table.add_row("checkpoint", summary["checkpoint"] or "-")
    table.add_row("final model", summary["final"] or "-")
    console.print(table)
    return summary


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    return train(cfg)


if __name__ == "__main__":
    main()
