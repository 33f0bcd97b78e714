"""Demonstration data: the episode store, normalisers and the windowed sequence sampler.

Collection is a command: ``python -m uva_plan.data.collect --help``.
"""

from uva_plan.data.sampler import DPC_FRAME_OFFSETS, UVA_FRAME_OFFSETS, SequenceSampler, train_val_split
from uva_plan.data.store import EpisodeStore, MinMaxNormalizer

__all__ = ["DPC_FRAME_OFFSETS", "UVA_FRAME_OFFSETS", "EpisodeStore", "MinMaxNormalizer",
           "SequenceSampler", "train_val_split"]
