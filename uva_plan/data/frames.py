"""Single frames rendered on the fly from stored states (what the frame VAE trains on)."""

from __future__ import annotations

import numpy as np
import torch

from uva_plan.data.sampler import episode_frame_rows


def episode_frames(data: dict, episodes: list[int]) -> np.ndarray:
    """(R, P) states of the chosen episodes' frames, final states included."""
    if not episodes:
        return np.zeros((0, data["states"].shape[1]))
    rows, table = episode_frame_rows(data, episodes)
    return table[rows]


class RenderedFrames:
    """Frames rendered on the fly from stored states of one or more stores (each with its own
    env's ``render_states``): ``batch(indices)`` gives {"frames": uint8 (B, S, S, 3)}.

    ``parts``: one (states (R, P), env class) pair per store; index i < R of the first part is
    its state i, and so on."""

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
