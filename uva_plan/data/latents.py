"""Encode every stored frame once with the frozen VAE, then train on the cached latents.

Rows follow ``SequenceSampler.frame_table`` of the store's ``load()`` data: for each episode,
in index order, its states and then its final state. ``SequenceSampler.row_indices`` gives
the rows of a batch, so latents are gathered exactly where frames would have been rendered.

The cache is two files next to the store (or at ``out_path`` and its ``.json`` sibling):
``latents.npy`` (R, C, h, w) float16 and ``latents.json``, which records what made it: the
VAE checkpoint (path, weights sha256, config, step, git revision), the render size, the
store's env id and a fingerprint of its states. A cache made by another VAE, or from a store
that has changed since, is refused with ``LatentCacheError``; ``ensure_latents`` rebuilds it.
Identical states are encoded once; a DP-C branch store (``uva_plan.data.branches``) encodes only
the rows its UVA windows read, the others stay NaN (``needed_rows``).

Shape letters: R rows (stored frames), B batch, T frames per window, C latent channels,
h, w latent side, H actions per window, A action dim.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from uva_plan.checkpoint import (
    MODEL_FILE,
    import_object,
    load_model,
    read_meta,
    resolve_checkpoint,
)
from uva_plan.data.sampler import SequenceSampler, branch_anchor_steps
from uva_plan.data.store import EpisodeStore, MinMaxNormalizer
from uva_plan.io import atomic_write, atomic_write_json
from uva_plan.progress import progress_bar

CACHE_VERSION = 1
LAYOUT = "SequenceSampler.frame_table: per episode in index order, its states then its final_state"


class LatentCacheError(ValueError):
    """A latent cache that is missing, damaged, or made by another VAE or from other data."""


def env_class(env_id: str) -> type:
    """The environment class registered for ``env_id`` (it provides ``render_states``)."""
    import gymnasium as gym

    import uva_plan.envs  # noqa: F401  (registers the environments)

    entry_point = gym.spec(env_id).entry_point
    return import_object(entry_point) if isinstance(entry_point, str) else entry_point


def frame_rows(data: dict) -> np.ndarray:
    """(R, P) the states of every stored frame, in cache row order."""
    return SequenceSampler(data, (0,), 0, 1).frame_table


def vae_identity(checkpoint: str | os.PathLike) -> dict:
    """What identifies a VAE checkpoint's latents: its weights' sha256 and its config (which
    holds the latent scaling); path, step and git revision are recorded for people."""
    path = resolve_checkpoint(checkpoint)
    meta = read_meta(path, verify=False)
    if meta["kind"] != "vae":
        raise LatentCacheError(f"checkpoint at {path} is a {meta['kind']!r} checkpoint, expected 'vae'")
    return {"path": str(path.resolve()), "weights_sha256": meta["files"][MODEL_FILE]["sha256"],
            "config": meta["config"], "step": meta["step"], "git_revision": meta.get("git_revision")}


def cache_paths(store_root: str | os.PathLike, out_path: str | os.PathLike | None = None) -> tuple[Path, Path]:
    npy = Path(out_path) if out_path is not None else Path(store_root) / "latents.npy"
    return npy, npy.with_suffix(".json")


def _fingerprint(env_id: str, rows: np.ndarray) -> str:
    digest = hashlib.sha256(env_id.encode())
    digest.update(np.ascontiguousarray(rows, dtype=np.float64).tobytes())
    return digest.hexdigest()


def needed_rows(data: dict) -> np.ndarray:
    """(R,) bool: the frame rows the cache must encode. Every row, except in a branch store
    (``uva_plan.data.branches``), whose branch episodes are only read through their
    counterfactual UVA window (``branch_anchor_steps``): there only the rows of those windows."""
    steps = branch_anchor_steps(data)
    if steps is None:
        return np.ones(len(frame_rows(data)), dtype=bool)
    sampler = SequenceSampler.uva(data, anchor_steps=steps)
    needed = np.zeros(len(sampler.frame_table), dtype=bool)
    needed[np.unique(sampler.row_indices(np.arange(len(sampler))))] = True
    return needed


def cache_latents(store_root: str | os.PathLike, vae: str | os.PathLike, render_size: int | None = None,
                  out_path: str | os.PathLike | None = None, batch_size: int = 256,
                  console: Console | None = None) -> Path:
    """Render every stored frame at ``render_size`` (default: the VAE's image size), encode it
    with the VAE checkpoint ``vae`` and write the cache atomically; returns the .npy path.
    A branch store encodes only the rows its training windows read (``needed_rows``; the others
    are NaN)."""
    store = EpisodeStore.open(store_root)
    data = store.load()
    rows = frame_rows(data)
    if len(rows) == 0:
        raise ValueError(f"{store_root} holds no episodes to encode")
    identity = vae_identity(vae)
    model, _ = load_model(vae, expected_kind="vae")
    image_size = identity["config"].get("image_size")
    render_size = image_size if render_size is None else int(render_size)
    if image_size is not None and render_size != image_size:
        raise ValueError(f"the VAE at {identity['path']} encodes {image_size}px frames, got {render_size=}")
    env_id = store.meta["env_id"]
    env_cls = env_class(env_id)
    needed = needed_rows(data)
    # Identical states (a branch store's shared prefixes) are rendered and encoded once.
    unique, inverse = np.unique(rows[needed], axis=0, return_inverse=True)
    encoded = None
    with torch.inference_mode(), progress_bar(console=console) as progress:
        task = progress.add_task(f"encoding {store_root}", total=len(unique))
        for start in range(0, len(unique), batch_size):
            frames = env_cls.render_states(unique[start:start + batch_size], render_size)  # (B, S, S, 3)
            z = model.encode(torch.from_numpy(frames)).float().cpu().numpy()               # (B, C, h, w)
            if encoded is None:
                encoded = np.empty((len(unique), *z.shape[1:]), dtype=np.float16)
            encoded[start:start + len(z)] = z
            progress.advance(task, len(z))
    # Rows no window reads stay NaN: reading one by mistake poisons the loss instead of passing silently.
    latents = np.full((len(rows), *encoded.shape[1:]), np.nan, dtype=np.float16)
    latents[np.flatnonzero(needed)] = encoded[inverse.reshape(-1)]
    npy, info_path = cache_paths(store_root, out_path)
    atomic_write(npy, lambda f: np.save(f, latents))
    atomic_write_json(info_path, {
        "cache_version": CACHE_VERSION, "vae": identity, "render_size": render_size, "env_id": env_id,
        "layout": LAYOUT, "shape": list(latents.shape), "dtype": "float16",
        "n_episodes": len(data["episode_ends"]), "store_sha256": _fingerprint(env_id, rows),
        "encoded_rows": int(needed.sum()), "encoded_frames": len(unique),
        "latents_sha256": hashlib.sha256(latents.tobytes()).hexdigest()})
    return npy


def load_latents(store_root: str | os.PathLike, expected_vae: str | os.PathLike | None = None,
                 out_path: str | os.PathLike | None = None, data: dict | None = None) -> tuple[np.ndarray, dict]:
    """(latents (R, C, h, w) float16, latents.json) of a store, checked against the store's
    current data (``data``: its ``load()``, to avoid reading it twice) and, if given, the VAE
    checkpoint ``expected_vae``. Raises LatentCacheError saying what differs."""
    npy, info_path = cache_paths(store_root, out_path)
    if not info_path.exists() or not npy.exists():
        raise LatentCacheError(f"no latent cache at {npy}; build it with uva_plan.data.latents.cache_latents "
                               f"(UVA training builds it when missing)")
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError) as err:
        raise LatentCacheError(f"{info_path} is corrupt ({err})") from err
    if info.get("cache_version") != CACHE_VERSION:
        raise LatentCacheError(f"{info_path} has cache version {info.get('cache_version')!r}, this code "
                               f"reads {CACHE_VERSION}")
    if expected_vae is not None:
        want = vae_identity(expected_vae)
        have = info["vae"]
        if (have["weights_sha256"], have["config"]) != (want["weights_sha256"], want["config"]):
            raise LatentCacheError(
                f"latent cache {npy} was encoded by the VAE at {have['path']} (step {have['step']}, "
                f"weights sha256 {have['weights_sha256'][:12]}), not by {want['path']} (step "
                f"{want['step']}, weights sha256 {want['weights_sha256'][:12]}); rebuild it")
    store = EpisodeStore.open(store_root)
    data = store.load() if data is None else data
    env_id = store.meta["env_id"]
    if info["env_id"] != env_id or info["store_sha256"] != _fingerprint(env_id, frame_rows(data)):
        raise LatentCacheError(f"the store at {store_root} has changed since {npy} was built "
                               f"({info['n_episodes']} episodes then, {len(data['episode_ends'])} now); rebuild it")
    try:
        latents = np.load(npy, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise LatentCacheError(f"cannot read {npy} ({err}); rebuild it") from err
    if list(latents.shape) != info["shape"] or hashlib.sha256(latents.tobytes()).hexdigest() != info["latents_sha256"]:
        raise LatentCacheError(f"{npy} does not match {info_path} (shape {latents.shape}, or its contents "
                               f"differ): an interrupted rebuild; rebuild it")
    return latents, info


def ensure_latents(store_root: str | os.PathLike, vae: str | os.PathLike, render_size: int | None = None,
                   out_path: str | os.PathLike | None = None, data: dict | None = None,
                   console: Console | None = None) -> tuple[np.ndarray, dict]:
    """``load_latents``, rebuilding the cache (with a message saying why) when it is missing or stale."""
    try:
        return load_latents(store_root, vae, out_path, data)
    except LatentCacheError as err:
        (console or Console()).print(f"[yellow]building the latent cache: {err}")
    cache_latents(store_root, vae, render_size, out_path, console=console)
    return load_latents(store_root, vae, out_path, data)


class LatentWindows:
    """UVA training samples from cached latents: ``batch(indices)`` gathers the latents of the
    sampler's frames and normalises its actions.

    Returns latents (B, T, C, h, w) float32, actions (B, H, A) in [-1, 1], agent_pos (B, T, 2)
    in [-1, 1], frame_mask (B, T) and action_mask (B, H) (True = edge padding).
    """

    def __init__(self, sampler: SequenceSampler, latents: np.ndarray, normalizers: dict[str, MinMaxNormalizer],
                 pose_env: str | None = None, n_history: int = 4):
        if len(latents) != len(sampler.frame_table):
            raise ValueError(f"latents have {len(latents)} rows but the sampler's data has "
                             f"{len(sampler.frame_table)} frames")
        self.sampler, self.latents = sampler, latents
        self.action_normalizer, self.agent_pos_normalizer = normalizers["actions"], normalizers["agent_pos"]
        # pose_env ("pusht" / "blockpush" or an env id): batches also hold "poses" (B, T - n_history, P),
        # the true object poses of the frames after the first n_history (a UVA pose head's targets).
        self.poses = None
        if pose_env is not None:
            from uva_plan.models.state_head import pose_targets

            self.poses, self.n_history = pose_targets(pose_env, sampler.frame_table).astype(np.float32), n_history

    def __len__(self) -> int:
        return len(self.sampler)

    def batch(self, indices) -> dict[str, torch.Tensor]:
        sample = self.sampler.batch(indices)
        rows = self.sampler.row_indices(indices)                                   # (B, T)
        out = {
            "latents": torch.from_numpy(self.latents[rows].astype(np.float32)),    # (B, T, C, h, w)
            "actions": torch.from_numpy(self.action_normalizer.normalize(sample["actions"])).float(),
            "agent_pos": torch.from_numpy(self.agent_pos_normalizer.normalize(sample["agent_pos"])).float(),
            "frame_mask": torch.from_numpy(sample["frame_mask"]),
            "action_mask": torch.from_numpy(sample["action_mask"]),
        }
        if self.poses is not None:
            out["poses"] = torch.from_numpy(self.poses[rows[:, self.n_history:]])
        return out


class LatentFrames:
    """Single-frame samples from cached latents (state head training): ``batch(indices)``
    gives latents (B, C, h, w) float32 of the chosen ``rows`` and, for each array of
    ``targets`` (len(rows), ...), its entries at those samples as float32 tensors."""

    def __init__(self, latents: np.ndarray, rows: np.ndarray, targets: dict[str, np.ndarray]):
        self.latents, self.rows = latents, np.asarray(rows, dtype=np.int64)
        if len(self.rows) and (self.rows.min() < 0 or self.rows.max() >= len(latents)):
            raise ValueError(f"rows must lie in [0, {len(latents)}) (the cache's rows), got "
                             f"min {self.rows.min()}, max {self.rows.max()}")
        bad = {k: np.shape(v) for k, v in targets.items() if len(v) != len(self.rows)}
        if bad:
            raise ValueError(f"every target needs one entry per row ({len(self.rows)}), got shapes {bad}")
        self.targets = targets

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, indices) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        out = {"latents": torch.from_numpy(self.latents[self.rows[idx]].astype(np.float32))}
        out.update({k: torch.from_numpy(np.asarray(v[idx], dtype=np.float32)) for k, v in self.targets.items()})
        return out


class StateWindows:
    """The low-dimensional counterpart of ``LatentWindows`` (DP-C on states): ``batch(indices)``
    gives states (B, T, P) and actions (B, H, A), both normalised to [-1, 1] (normalizers
    "state" and "actions"), and the masks."""

    def __init__(self, sampler: SequenceSampler, normalizers: dict[str, MinMaxNormalizer]):
        self.sampler = sampler
        self.state_normalizer, self.action_normalizer = normalizers["state"], normalizers["actions"]

    def __len__(self) -> int:
        return len(self.sampler)

    def batch(self, indices) -> dict[str, torch.Tensor]:
        sample = self.sampler.batch(indices)
        return {
            "states": torch.from_numpy(self.state_normalizer.normalize(sample["states"])).float(),
            "actions": torch.from_numpy(self.action_normalizer.normalize(sample["actions"])).float(),
            "frame_mask": torch.from_numpy(sample["frame_mask"]),
            "action_mask": torch.from_numpy(sample["action_mask"]),
        }
