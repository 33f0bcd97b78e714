"""One training loop for every model: ``python -m uva_plan.train train=<option> [overrides]``.

    python -m uva_plan.train train=vae data.stores=[data/pusht,data/blockpush]
    python -m uva_plan.train train=uva data.stores=[data/pusht] vae_checkpoint=outputs/train/vae/final
    torchrun --nproc_per_node 2 -m uva_plan.train train=uva ...   # DDP, gloo on CPU

A model kind joins through ``uva_plan.checkpoint.KINDS``: its model class, its data config
dataclass and its builder, a function from the config to a ``Task`` (the model,
index-addressable train and validation sets, what its checkpoints record); one builder module
per kind here (vae, uva, dpc, state_head, pose_head). The loop (``loop.py``) only calls
``model.compute_loss(batch) -> (loss, metrics)``.

Determinism: the global batch of step s is a function of (seed, s) (``batch_indices``), and the
global RNGs are reseeded from (seed, s, rank) before every step. A run killed at any point and
rerun with the same command resumes from its newest valid checkpoint and ends with the same
weights as an uninterrupted run; metrics.jsonl is cut back to the resumed step.

DDP (under torchrun): ``batch_size`` is the global batch, split across ranks, so the ranks
together see the samples one process would; gradients are averaged by
DistributedDataParallel, metrics across ranks; only rank 0 writes (``distributed.py``).

``out_dir`` holds config.json, metrics.jsonl, summary.json, ckpt/step_XXXXXXXX (resumable, the
newest ``keep_checkpoints``), ckpt/latest.json, and final/ (the finished model: EMA weights and
meta.json, what ``uva_plan.checkpoint.load_model`` and the next training take).
"""

from uva_plan.train.distributed import Dist, batch_indices, init_distributed
from uva_plan.train.ema import EMA
from uva_plan.train.loop import TrainConfig, train
from uva_plan.train.stores import StoreData, Task

__all__ = ["EMA", "Dist", "StoreData", "Task", "TrainConfig", "batch_indices", "init_distributed", "train"]
