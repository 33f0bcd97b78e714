"""The one training loop: ``train(cfg)`` trains (or resumes) any model kind of
``uva_plan.checkpoint.KINDS`` from a ``TrainConfig``; the kind's builder gives the model and
its data (a ``Task``), and the loop only calls ``model.compute_loss(batch) -> (loss, metrics)``.

Optimiser: AdamW with diffusers' ``get_cosine_schedule_with_warmup``; the shipped weights are
an exponential moving average (``uva_plan.train.ema``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from uva_plan.checkpoint import (
    KINDS,
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
from uva_plan.io import atomic_write_json, git_revision
from uva_plan.train.distributed import Dist, batch_indices, distributed_loss, init_distributed, seed_step
from uva_plan.train.ema import EMA
from uva_plan.train.log import MetricSums, MetricsLog, Reporter, summarise
from uva_plan.train.stores import StoreData, Task, console, data_config, model_class

# Keys that describe one invocation, not the training: free to change when resuming.
RUN_KEYS = ("out_dir", "resume", "threads", "device", "max_minutes", "log_every", "val_every",
            "val_batches", "checkpoint_every", "keep_checkpoints")


@dataclass
class TrainConfig:
    kind: str  # a key of uva_plan.checkpoint.KINDS: vae, uva, dpc, state_head, pose_head
    model: dict  # the model's config, passed to ``from_config``
    data: StoreData  # the kind's own data config (KINDS[kind].data); a dict is converted
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
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, got {self.kind=}")
        self.data = data_config(self.kind, self.data)
        self.model, self.betas = dict(self.model), tuple(self.betas)
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


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases and norm gains (1-d parameters), as nanoGPT."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=cfg.betas)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


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
    from diffusers.optimization import get_cosine_schedule_with_warmup  # imported by runs only

    if cfg.batch_size % dist.world:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the {dist.world} DDP ranks")
    clock = ComputeClock()
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
    task: Task = import_object(KINDS[cfg.kind].build)(cfg, dist)
    if cfg.init_from is not None and resume_path is None:
        _initialise_from(task.model, cfg)
    model = task.model.to(device).train()
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay is not None else None
    optimizer = make_optimizer(model, cfg)
    scheduler = get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.steps)
    start = 0
    if resume_path is not None:
        start = restore(resume_path, train_config, model, ema, optimizer, scheduler)
        clock.carry(read_meta(resume_path)["extra"].get("compute"))
    shipped = ema.model if ema is not None else model

    def save(step: int) -> Path:
        return save_training_checkpoint(
            ckpt_dir, model, step=step, keep=cfg.keep_checkpoints, kind=cfg.kind, config=_config_dict(shipped),
            normalizers=task.normalizers, env_id=task.env_id,
            extra={"train_config": train_config, "model_class": model_class(cfg),
                   "world_size": dist.world, "compute": clock.totals(dist.world), **task.extra},
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
        return summarise(cfg, out_dir, resume_path, dist, stopped_early=False, console=console)
    if resume_path is not None and dist.main:
        console.print(f"resuming {out_dir} from {resume_path.name} (step {start} of {cfg.steps})")

    compute_loss = distributed_loss(model, dist, device, task.find_unused_parameters)
    reporter = Reporter(f"{cfg.kind} {out_dir}", cfg.steps, start, enabled=dist.main, console=console)
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
    return summarise(cfg, out_dir, last_path, dist, stopped_early, console=console)


class ComputeClock:
    """What a run has cost so far, carried across resumes into each checkpoint's meta.json:
    ``cpu_hours`` (this process's CPU time, every thread, times the DDP world size: ranks run
    the same work) and ``wall_hours``, from the start of each invocation (latent caches that
    an invocation builds count too)."""

    def __init__(self) -> None:
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()
        self.before = {"cpu_hours": 0.0, "wall_hours": 0.0}

    def carry(self, recorded: dict | None) -> None:
        """Add what the run had cost before this invocation (a checkpoint's ``compute``)."""
        if recorded:
            self.before = {k: float(recorded.get(k, 0.0)) for k in self.before}

    def totals(self, world: int) -> dict[str, float]:
        cpu = (time.process_time() - self.cpu0) * world / 3600
        wall = (time.perf_counter() - self.wall0) / 3600
        return {"cpu_hours": round(self.before["cpu_hours"] + cpu, 7),
                "wall_hours": round(self.before["wall_hours"] + wall, 7)}


def restore(path: Path, train_config: dict, model: nn.Module, ema: EMA | None,
            optimizer: torch.optim.Optimizer, scheduler: Any) -> int:
    """Load a resumable checkpoint made with the same training config; returns its step.
    Data keys the checkpoint records but the kind's data config lacks are ones its builder
    never read, so they are not compared."""
    recorded = read_meta(path)["extra"]["train_config"]
    unread = tuple(f"data.{k}" for k in sorted(set(recorded.get("data", {})) - set(train_config["data"])))
    check_config(recorded, train_config, ignore=RUN_KEYS + unread, what="training config")
    state = read_trainer_state(path)
    model.load_state_dict(state["raw_weights"])
    if ema is not None:
        ema.load(read_weights(path / MODEL_FILE), state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_rng_state(state["rng"])
    return int(state["step"])


def _config_dict(model: nn.Module) -> dict:
    config = model.config
    return asdict(config) if dataclasses.is_dataclass(config) else dict(config)
