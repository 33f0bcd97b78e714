"""Checkpoints: one directory per checkpoint, written atomically, verified on load.

A checkpoint directory holds
    model.safetensors   the weights to use: the EMA weights when training kept an EMA
    raw.safetensors     resumable checkpoints with an EMA only: the raw (optimised) weights
    trainer.pt          resumable checkpoints only: optimizer, scheduler, EMA counters, RNG
                        states, step and data position (the data order is a function of
                        (seed, step), so the step is the sampler's position)
    meta.json           {format_version, kind, config, normalizers, env_id, git_revision, step,
                        torch_version, extra, files}; ``files`` holds each file's size and
                        sha256, so a damaged file is found and named on load. Written last.

Atomicity: the files are written and fsynced in a temporary directory beside the target
(``.tmp-<name>.<pid>.<hex>``), which is then renamed into place. A training run keeps
``ckpt/step_XXXXXXXX`` directories (the newest ``keep`` of them) plus ``ckpt/latest.json``,
an atomically written pointer for people and tools. Loaders do not trust the pointer: they
verify checkpoints newest first (``latest_valid_checkpoint``), so a damaged newest
checkpoint falls back, with a warning, to the one before it, and temporary directories of
an interrupted save are never candidates.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import re
import secrets
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch import nn

from uva_plan.io import TMP_PREFIX, atomic_write_json, git_revision

FORMAT_VERSION = 1
MODEL_FILE, RAW_FILE, TRAINER_FILE, META_FILE = "model.safetensors", "raw.safetensors", "trainer.pt", "meta.json"
LATEST_FILE = "latest.json"
_STEP_DIR = re.compile(r"step_(\d+)")


@dataclass(frozen=True)
class Kind:
    """One kind of model, named by "package.module:Name" strings so that reading a checkpoint
    imports no training code: ``model_class`` rebuilds it from meta["config"]
    (``cls.from_config(dict)``); ``data`` is its training data's config dataclass and ``build``
    the function ``(TrainConfig, Dist) -> Task`` that makes its model and data
    (``uva_plan.train``)."""

    model_class: str
    data: str
    build: str


# The one registry of model kinds: adding a model = one entry here and its builder module.
KINDS: dict[str, Kind] = {
    "vae": Kind("uva_plan.models.vae:FrameVAE", "uva_plan.train.vae:VAEData", "uva_plan.train.vae:build_vae"),
    "uva": Kind("uva_plan.models.uva:UVA", "uva_plan.train.uva:UVAData", "uva_plan.train.uva:build_uva"),
    "dpc": Kind("uva_plan.models.dpc:DPC", "uva_plan.train.dpc:DPCData", "uva_plan.train.dpc:build_dpc"),
    "state_head": Kind("uva_plan.models.state_head:StateHead", "uva_plan.train.state_head:StateHeadData",
                       "uva_plan.train.state_head:build_state_head"),
    "pose_head": Kind("uva_plan.models.pose_head:PoseHead", "uva_plan.train.pose_head:PoseHeadData",
                      "uva_plan.train.pose_head:build_pose_head"),
}


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, or not the one the caller asked for."""


# -- writing ---------------------------------------------------------------------------------
def save_checkpoint(path: str | os.PathLike, model: nn.Module, *, kind: str, config: dict,
                    normalizers: dict | None, env_id: str | None, extra: dict, step: int,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                    ema: Any = None, trainer_state: dict | None = None) -> Path:
    """Write a checkpoint directory at ``path`` atomically (replacing one that is there).

    ``model`` holds the raw weights; with ``ema`` (an object with ``.model`` and
    ``state_dict()``), model.safetensors gets the EMA weights. An ``optimizer`` makes the
    checkpoint resumable: trainer.pt (optimizer, scheduler, EMA counters, RNG states, step,
    ``trainer_state``) and, with an EMA, raw.safetensors are added. ``normalizers`` maps
    names to ``MinMaxNormalizer`` or their dicts.
    """
    weights = (ema.model if ema is not None else model).state_dict()
    files = {MODEL_FILE: _safetensors_bytes(weights)}
    if optimizer is not None:
        if ema is not None:
            files[RAW_FILE] = _safetensors_bytes(model.state_dict())
        files[TRAINER_FILE] = _torch_bytes({
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "ema": ema.state_dict() if ema is not None else None,
            "rng": _rng_state(), "step": int(step), **(trainer_state or {})})
    meta = {
        "format_version": FORMAT_VERSION, "kind": kind, "config": _plain(config),
        "normalizers": None if normalizers is None else {
            k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in normalizers.items()},
        "env_id": env_id, "git_revision": git_revision(), "step": int(step),
        "torch_version": torch.__version__, "extra": _plain(extra),
    }
    return _write_checkpoint_dir(Path(path), files, meta)


def export_checkpoint(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy a checkpoint's model.safetensors and meta.json (without the training state) to
    ``dest``, atomically: the model to ship or to hand to the next training."""
    src = resolve_checkpoint(src)
    meta = read_meta(src)
    meta = {k: v for k, v in meta.items() if k != "files"}
    return _write_checkpoint_dir(Path(dest), {MODEL_FILE: (src / MODEL_FILE).read_bytes()}, meta)


def _write_checkpoint_dir(path: Path, files: dict[str, bytes], meta: dict) -> Path:
    """Write ``files`` and meta.json (with the files' sizes and hashes) into a temporary
    directory beside ``path``, fsync, and rename it to ``path`` (replacing one that is there)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{TMP_PREFIX}{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        for name, data in files.items():
            _write_synced(tmp / name, data)
        meta = {**meta, "files": {name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                                  for name, data in files.items()}}
        # meta.json last: a directory without it is never a checkpoint.
        _write_synced(tmp / META_FILE, (json.dumps(meta, indent=2) + "\n").encode())
        _fsync_dir(tmp)
        if path.exists():  # POSIX has no atomic directory swap: move the old one aside first
            old = path.parent / f"{TMP_PREFIX}{path.name}.old.{secrets.token_hex(4)}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def save_training_checkpoint(ckpt_dir: str | os.PathLike, model: nn.Module, *, step: int,
                             keep: int = 2, **kwargs) -> Path:
    """``save_checkpoint`` to ``ckpt_dir/step_XXXXXXXX``, then point ``latest.json`` at it and
    delete all but the newest ``keep`` step directories and stale temporary directories."""
    ckpt_dir = Path(ckpt_dir)
    path = save_checkpoint(ckpt_dir / f"step_{int(step):08d}", model, step=step, **kwargs)
    atomic_write_json(ckpt_dir / LATEST_FILE, {"path": path.name, "step": int(step)})
    for old in _step_dirs(ckpt_dir)[max(1, keep):]:
        shutil.rmtree(old, ignore_errors=True)
    # Only one process saves into ckpt_dir, so other temporary directories are leftovers of a
    # save that was killed.
    for stale in ckpt_dir.glob(TMP_PREFIX + "*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    return path


def _safetensors_bytes(state: dict[str, torch.Tensor]) -> bytes:
    # safetensors refuses tensors that share memory (tied weights): give each its own copy.
    return safetensors_save({k: v.detach().cpu().contiguous().clone() for k, v in state.items()})


def _torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _plain(obj: Any) -> Any:
    """JSON types only (tuples become lists), so that saved and reloaded configs compare equal."""
    return json.loads(json.dumps(obj, default=_json_default))


def _json_default(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable in a checkpoint: {type(x).__name__}")


def _rng_state() -> dict:
    import random

    import numpy as np

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))}


def restore_rng_state(state: dict) -> None:
    """Restore the global torch, numpy and python RNGs saved in a trainer.pt."""
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))


# -- reading ---------------------------------------------------------------------------------
def read_meta(path: str | os.PathLike, verify: bool = True) -> dict:
    """meta.json of the checkpoint directory ``path``; with ``verify`` every file it lists is
    checked against its recorded size and sha256. Raises CheckpointError naming the file."""
    path = Path(path)
    meta_path = path / META_FILE
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint at {path}: the directory does not exist")
    if not meta_path.exists():
        raise CheckpointError(f"{path} is not a complete checkpoint: {meta_path} is missing")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{meta_path} is corrupt ({type(err).__name__}: {err})") from err
    if not isinstance(meta, dict) or "format_version" not in meta:
        raise CheckpointError(f"{meta_path} is not a checkpoint's meta.json (no format_version)")
    version = meta["format_version"]
    if not isinstance(version, int):
        raise CheckpointError(f"{meta_path} has a malformed format_version {version!r}")
    if version < FORMAT_VERSION:
        raise CheckpointError(f"checkpoint at {path} has format version {version}, older than the "
                              f"version {FORMAT_VERSION} this code reads; retrain or convert it")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint at {path} has format version {version}, newer than the "
                              f"version {FORMAT_VERSION} this code reads; update uva_plan")
    missing = [k for k in ("kind", "config", "step", "files") if k not in meta]
    if missing:
        raise CheckpointError(f"{meta_path} lacks {missing}")
    if verify:
        if not isinstance(meta["files"], dict) or MODEL_FILE not in meta["files"]:
            raise CheckpointError(f"{meta_path} records no size and sha256 for {MODEL_FILE} (files="
                                  f"{meta['files']!r}): its weights cannot be verified")
        for name, info in meta["files"].items():
            _verify_file(path / name, info)
    return meta


def _verify_file(file: Path, info: dict) -> None:
    if not file.exists():
        raise CheckpointError(f"{file} is missing from the checkpoint")
    data = file.read_bytes()
    if len(data) != info["bytes"]:
        raise CheckpointError(f"{file} is corrupt: {len(data)} bytes, meta.json records {info['bytes']} "
                              f"(truncated or overwritten)")
    if hashlib.sha256(data).hexdigest() != info["sha256"]:
        raise CheckpointError(f"{file} is corrupt: its sha256 differs from the one in meta.json")


def load_checkpoint(path: str | os.PathLike, expected_kind: str | None = None,
                    expected_env_id: str | None = None,
                    map_location: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict of model.safetensors, meta) of a checkpoint directory, or of the newest
    valid checkpoint in a run's ``ckpt`` directory. Raises CheckpointError on a missing or
    damaged file (named), another kind, another env, or another format version."""
    path = resolve_checkpoint(path)
    meta = read_meta(path)
    if expected_kind is not None and meta["kind"] != expected_kind:
        raise CheckpointError(f"checkpoint at {path} is a {meta['kind']!r} checkpoint, expected {expected_kind!r}")
    env_id = meta.get("env_id")
    if expected_env_id is not None and env_id is not None and env_id != expected_env_id:
        raise CheckpointError(f"checkpoint at {path} was trained on {env_id}, expected {expected_env_id}")
    return read_weights(path / MODEL_FILE, map_location), meta


def read_weights(file: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A safetensors file as a state dict; CheckpointError naming the file if it is damaged."""
    file = Path(file)
    try:
        state = safetensors_load(file.read_bytes())
    except (OSError, SafetensorError, ValueError) as err:
        raise CheckpointError(f"cannot read {file} ({type(err).__name__}: {err}); the file is corrupt") from err
    return {k: v.to(map_location) for k, v in state.items()}


def read_trainer_state(path: str | os.PathLike) -> dict:
    """trainer.pt of a resumable checkpoint, plus ``raw_weights`` (raw.safetensors, or
    model.safetensors when training kept no EMA)."""
    path = Path(path)
    meta = read_meta(path)
    if TRAINER_FILE not in meta["files"]:
        raise CheckpointError(f"{path} is not resumable: it has no {TRAINER_FILE}")
    try:
        state = torch.load(path / TRAINER_FILE, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types on damaged pickles
        raise CheckpointError(f"cannot read {path / TRAINER_FILE} ({type(err).__name__}: {err})") from err
    state["raw_weights"] = read_weights(path / (RAW_FILE if RAW_FILE in meta["files"] else MODEL_FILE))
    return state


def checkpoint_step(path: Path) -> int | None:
    match = _STEP_DIR.fullmatch(path.name)
    return int(match.group(1)) if match and path.is_dir() else None


def _step_dirs(ckpt_dir: Path) -> list[Path]:
    """step_* directories of ``ckpt_dir``, newest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [(step, p) for p in ckpt_dir.iterdir() if (step := checkpoint_step(p)) is not None]
    return [p for _, p in sorted(found, reverse=True)]


def latest_valid_checkpoint(ckpt_dir: str | os.PathLike) -> Path | None:
    """The newest step_* checkpoint in ``ckpt_dir`` that verifies, warning about each newer one
    that does not; None if there is none."""
    for path in _step_dirs(Path(ckpt_dir)):
        try:
            read_meta(path)
        except CheckpointError as err:
            warnings.warn(f"skipping damaged checkpoint {path}: {err}", stacklevel=2)
            continue
        return path
    return None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """``path`` itself if it is a checkpoint directory, else the newest valid checkpoint in it."""
    path = Path(path)
    looks_like_one = (path / META_FILE).exists() or (path / MODEL_FILE).exists() or checkpoint_step(path) is not None
    if looks_like_one or not path.is_dir():
        return path  # a checkpoint directory, maybe a broken one: read_meta says what is wrong
    found = latest_valid_checkpoint(path)
    if found is None:
        raise CheckpointError(f"no checkpoint at {path}: no {META_FILE} and no valid step_* checkpoint in it")
    return found


# -- models and configs ------------------------------------------------------------------------
def import_object(spec: str) -> Any:
    """The object named ``"package.module:Name"``."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"expected 'package.module:Name', got {spec!r}")
    return getattr(importlib.import_module(module), name)


def load_model(path: str | os.PathLike, expected_kind: str | None = None,
               expected_env_id: str | None = None, model_class: str | type | None = None,
               map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """(model in eval mode, meta): built with ``cls.from_config(meta["config"])`` where cls is
    ``model_class`` or the class of the checkpoint's kind, then loaded strictly."""
    state, meta = load_checkpoint(path, expected_kind, expected_env_id, map_location)
    cls = model_class or (KINDS[meta["kind"]].model_class if meta["kind"] in KINDS else None)
    if cls is None:
        raise CheckpointError(f"no model class known for kind {meta['kind']!r}; pass model_class")
    cls = import_object(cls) if isinstance(cls, str) else cls
    model = cls.from_config(meta["config"])
    model.load_state_dict(state)
    return model.to(map_location).eval(), meta


def config_differences(meta_config: dict, wanted_config: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys whose values differ, as lines ``key: checkpoint has X, wanted Y``."""
    have, want = _flatten(_plain(meta_config)), _flatten(_plain(wanted_config))
    missing = "<missing>"
    return [f"{k}: checkpoint has {have.get(k, missing)!r}, wanted {want.get(k, missing)!r}"
            for k in sorted(set(have) | set(want))
            if not any(k == i or k.startswith(i + ".") for i in ignore)
            and have.get(k, missing) != want.get(k, missing)]


def check_config(meta_config: dict, wanted_config: dict, ignore: tuple[str, ...] = (), what: str = "config") -> None:
    """Raise CheckpointError naming every differing key (dotted) of two nested configs."""
    diffs = config_differences(meta_config, wanted_config, ignore)
    if diffs:
        raise CheckpointError(f"the checkpoint's {what} differs from the wanted one:\n  " + "\n  ".join(diffs))


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
