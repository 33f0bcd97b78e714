"""UVA's joint latent Z of training windows, paired with the true poses of their future frames.

A ``PoseHead`` (``uva_plan.models.pose_head``) learns to read object poses off the Z that a
frozen UVA computes for (history latents, action chunk, masked future). Z is deterministic
given the window (no sampling happens before the video head), so it is computed once for every
chosen window and kept in memory as float16; ``JointWindows.batch`` then gathers.

``ensure_joint_latents`` caches (Z, poses) in ``<store>/joint/<uva sha256[:12]>-<key[:12]>.npz``
(+ ``.json``), keyed by what decides them: the UVA's weights and config, the store's latent
cache and states, the chosen windows' frame rows and actions, the action normaliser and the
env whose poses they are. It is written atomically and rebuilt when any of them changes.

Shape letters: W windows, T future frames, N tokens per frame, D UVA width, P pose dim.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from uva_plan.data.latents import LatentWindows
from uva_plan.io import atomic_write, atomic_write_json, jsonable
from uva_plan.progress import progress_bar

CACHE_VERSION = 1


@torch.no_grad()
def joint_latents(uva: torch.nn.Module, windows: LatentWindows, indices: np.ndarray, future_table: np.ndarray,
                  pose_fn, batch_size: int = 256, console: Console | None = None,
                  label: str = "joint latents") -> tuple[np.ndarray, np.ndarray]:
    """(Z (W, T * N, D) float16, poses (W, T, P) float32) of ``windows``' samples ``indices``.

    ``future_table``: the (R, S) frame table ``windows.sampler.row_indices`` indexes;
    ``pose_fn(states (M, S)) -> poses (M, P)`` (``state_head.pose_targets`` for the env).
    """
    c = uva.config
    indices = np.asarray(indices, dtype=np.int64)
    rows = windows.sampler.row_indices(indices)[:, c.n_history:]  # (W, T) future frames
    poses = pose_fn(future_table[rows.reshape(-1)]).reshape(len(indices), c.n_future, -1).astype(np.float32)
    z = np.empty((len(indices), c.n_future * c.n_tokens, c.width), dtype=np.float16)
    n_batches = math.ceil(len(indices) / batch_size)
    with progress_bar(console=console or Console(), disable=console is None) as progress:
        task = progress.add_task(label, total=len(indices))
        for k in range(n_batches):
            chunk = slice(k * batch_size, (k + 1) * batch_size)
            batch = windows.batch(indices[chunk])
            history = batch["latents"][:, : c.n_history]
            if not torch.isfinite(history).all():
                raise ValueError(f"{label}: a window reads a non-finite history latent (a sparse cache row?)")
            z[chunk] = uva.joint_latent({"latents": history}, batch["actions"]).numpy().astype(np.float16)
            progress.advance(task, len(batch["actions"]))
    return z, poses


class JointWindows:
    """Precomputed (Z, poses) pairs: ``batch(indices)`` gives {"z": (B, T * N, D) float32,
    "poses": (B, T, P) float32}, what ``PoseHead.compute_loss`` takes."""

    def __init__(self, z: np.ndarray, poses: np.ndarray):
        if len(z) != len(poses):
            raise ValueError(f"z and poses need one row per window, got {len(z)} and {len(poses)}")
        self.z, self.poses = z, poses

    def __len__(self) -> int:
        return len(self.z)

    def batch(self, indices) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"window indices must lie in [0, {len(self)}), got min {idx.min()}, max {idx.max()}")
        return {"z": torch.from_numpy(self.z[idx].astype(np.float32)), "poses": torch.from_numpy(self.poses[idx])}


def _window_fingerprint(windows: LatentWindows, indices: np.ndarray) -> str:
    """sha256 of the chosen windows' frame rows and raw actions: what Z and the poses read."""
    digest = hashlib.sha256(windows.sampler.row_indices(indices).astype(np.int64).tobytes())
    digest.update(np.ascontiguousarray(windows.sampler.batch(indices)["actions"], dtype=np.float64).tobytes())
    return digest.hexdigest()


def _config_dict(config) -> dict:
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)


def ensure_joint_latents(store_root: str | os.PathLike, uva: torch.nn.Module, uva_weights_sha256: str,
                         windows: LatentWindows, indices: np.ndarray, latent_info: dict, env_id: str,
                         console: Console | None = None, label: str = "joint latents") -> tuple[np.ndarray, np.ndarray]:
    """``joint_latents`` of ``windows``' samples ``indices`` with the poses of ``env_id``, from
    the store's cache when it matches, else computed and cached.

    ``uva_weights_sha256``: the sha256 of the UVA checkpoint's model.safetensors;
    ``latent_info``: the store's latent cache info (``load_latents``), whose latents ``windows`` read."""
    from uva_plan.models.state_head import pose_targets  # models import diffusers: only when used

    indices = np.asarray(indices, dtype=np.int64)
    identity = {"cache_version": CACHE_VERSION, "uva_weights_sha256": uva_weights_sha256,
                "uva_config": json.loads(json.dumps(_config_dict(uva.config), default=jsonable)),
                "latents_sha256": latent_info["latents_sha256"], "store_sha256": latent_info["store_sha256"],
                "windows_sha256": _window_fingerprint(windows, indices), "n_windows": len(indices),
                "actions": windows.action_normalizer.to_dict(), "env_id": env_id}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    path = Path(store_root) / "joint" / f"{uva_weights_sha256[:12]}-{key[:12]}.npz"
    info_path = path.with_suffix(".json")
    if path.exists() and info_path.exists():
        try:
            info = json.loads(info_path.read_text())
        except (OSError, ValueError):
            info = {}
        if info.get("identity") == identity:
            try:
                with np.load(path) as cached:
                    z, poses = cached["z"], cached["poses"]
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                z = poses = None  # damaged: rebuilt below
            if z is not None and _sha256(z, poses) == info.get("sha256"):
                return z, poses
        (console or Console()).print(f"[yellow]{path} is stale or damaged: rebuilding it")
    z, poses = joint_latents(uva, windows, indices, windows.sampler.frame_table,
                             functools.partial(pose_targets, env_id), console=console, label=label)
    atomic_write(path, lambda f: np.savez(f, z=z, poses=poses))
    atomic_write_json(info_path, {"identity": identity, "n": len(z), "sha256": _sha256(z, poses)})
    return z, poses


def _sha256(z: np.ndarray, poses: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(z).tobytes())
    digest.update(np.ascontiguousarray(poses).tobytes())
    return digest.hexdigest()
