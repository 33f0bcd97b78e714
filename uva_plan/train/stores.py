"""What every model kind's builder shares: the data config fields common to all kinds, the
``Task`` a builder returns, and opening stores with their latent caches."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from torch import nn

from uva_plan.checkpoint import KINDS, import_object
from uva_plan.data.latents import ensure_latents, load_latents
from uva_plan.data.store import EpisodeStore

if TYPE_CHECKING:
    from uva_plan.train.distributed import Dist
    from uva_plan.train.loop import TrainConfig

console = Console()


def as_paths(value: Any) -> list[str]:
    """A store root or a list of them, as a list of strings."""
    return [str(value)] if isinstance(value, (str, Path)) else [str(s) for s in value]


def check_stride(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {name}={value!r}")


@dataclass
class StoreData:
    """The data fields of every kind; each kind's builder module subclasses it with its own."""

    stores: list[str]  # EpisodeStore roots; vae may take several (one per env), the others one
    env_id: str | None = None  # if given, every store must hold this env's data
    val_fraction: float = 0.05  # held-out episodes (per store) for the validation loss
    split_seed: int = 0

    def __post_init__(self):
        self.stores = as_paths(self.stores)
        if not self.stores:
            raise ValueError(f"data.stores must name at least one episode store, got {self.stores=}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {self.val_fraction=}")


@dataclass
class PlayStoreData(StoreData):
    """The data fields of the kinds that also learn from ``play_stores``: more stores of the same
    env (play data, DP-C branches, random layouts) whose data joins the first store's training
    split; normalisers and validation stay the first store's (what each kind takes from them:
    its builder's docstring)."""

    play_stores: list[str] = field(default_factory=list)

    def __post_init__(self):
        super().__post_init__()
        self.play_stores = as_paths(self.play_stores)


def data_config(kind: str, data: dict | StoreData) -> StoreData:
    """``data`` (a dict or a data config) as the data config dataclass of ``kind`` (``KINDS[kind].data``)."""
    cls = import_object(KINDS[kind].data)
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ValueError(f"kind={kind!r} takes data as a dict or {cls.__name__}, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown data config keys {sorted(unknown)} for kind={kind!r}; it takes {sorted(names)}")
    return cls(**data)


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


def model_class(cfg: TrainConfig) -> str:
    """The "module:Class" that builds ``cfg``'s model: ``cfg.model_class`` or the kind's own."""
    return cfg.model_class or KINDS[cfg.kind].model_class


def make_model(cfg: TrainConfig) -> nn.Module:
    return import_object(model_class(cfg)).from_config(dict(cfg.model))


def check_model_fits(model: nn.Module, wanted: dict) -> None:
    """Raise naming every config field of ``model`` that disagrees with the data."""
    bad = [f"model.{k}={getattr(model.config, k)!r} but the data has {v!r}"
           for k, v in wanted.items() if hasattr(model.config, k) and getattr(model.config, k) != v]
    if bad:
        raise ValueError("the model config does not fit the data: " + "; ".join(bad))


def open_stores(cfg: TrainConfig) -> list[EpisodeStore]:
    stores = [EpisodeStore.open(root) for root in cfg.data.stores]
    for store in stores:
        if cfg.data.env_id is not None and store.meta["env_id"] != cfg.data.env_id:
            raise ValueError(f"{store.root} holds {store.meta['env_id']} data, but data.env_id={cfg.data.env_id}")
    return stores


def one_store_with_latents(cfg: TrainConfig, dist: Dist, need_vae: bool = True):
    """(store, data, latents or None, latent cache info or None) of the single store a
    per-environment model trains on; rank 0 builds the latent cache if missing or stale."""
    if need_vae and cfg.vae_checkpoint is None:
        raise ValueError(f"train={cfg.kind} needs vae_checkpoint=<a trained VAE checkpoint, "
                         f"e.g. outputs/train/vae/final>")
    if len(cfg.data.stores) != 1:
        raise ValueError(f"train={cfg.kind} trains on one store (one env), got data.stores={cfg.data.stores}")
    (store,) = open_stores(cfg)
    data = store.load()
    if not need_vae:
        return store, data, None, None
    latents, info = _latents(cfg, dist, store, data)
    return store, data, latents, info


def play_data(cfg: TrainConfig, dist: Dist, main: EpisodeStore) -> list[tuple[dict, np.ndarray, dict]]:
    """(data, latents, latent cache info) of every ``data.play_stores`` entry, each checked to
    hold ``main``'s env and encoded by the same VAE (rank 0 builds a missing cache)."""
    out = []
    for root in cfg.data.play_stores:
        store = EpisodeStore.open(root)
        if store.meta["env_id"] != main.meta["env_id"]:
            raise ValueError(f"data.play_stores entry {root} holds {store.meta['env_id']} data, but "
                             f"{main.root} holds {main.meta['env_id']}: play data must be the same env's")
        data = store.load()
        out.append((data, *_latents(cfg, dist, store, data)))
    return out


def _latents(cfg: TrainConfig, dist: Dist, store: EpisodeStore, data: dict) -> tuple[np.ndarray, dict]:
    if dist.main:
        ensure_latents(store.root, cfg.vae_checkpoint, data=data, console=console)
    dist.barrier()
    return load_latents(store.root, cfg.vae_checkpoint, data=data)
