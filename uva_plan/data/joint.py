"""UVA's joint latent Z of training windows, paired with the true poses of their future frames.

A ``PoseHead`` (``uva_plan.models.pose_head``) learns to read object poses off the Z that a
frozen UVA computes for (history latents, action chunk, masked future). Z is deterministic
given the window (no sampling happens before the video head), so it is computed once per run
for every chosen window and kept in memory as float16; ``JointWindows.batch`` then gathers.

Shape letters: W windows, T future frames, N tokens per frame, D UVA width, P pose dim.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from rich.console import Console

from uva_plan.data.latents import LatentWindows
from uva_plan.progress import progress_bar


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
