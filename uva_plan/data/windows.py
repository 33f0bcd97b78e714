"""Several training sets (anything with ``len`` and ``batch(indices) -> dict``) as one."""

from __future__ import annotations

import numpy as np
import torch


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
