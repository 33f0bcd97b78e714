"""Small I/O helpers shared by experiments: atomic writes, provenance, GIFs."""

from __future__ import annotations

import functools
import json
import os
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np


@functools.lru_cache(maxsize=None)
def git_revision(default: str = "unknown") -> str:
    """The code's git revision (``-dirty`` when the tree has changes), read once per process:
    call it when a run starts, so that a long run records the code it ran, not later commits."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return default
    return rev + ("-dirty" if dirty else "")


TMP_PREFIX = ".tmp-"  # temp files of interrupted writes start with this (safe to delete)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Create or replace ``path`` atomically: ``write(f)`` fills a temporary file beside it,
    which is fsynced and renamed over ``path``; a failure leaves the old file untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{TMP_PREFIX}{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
    # os.open with 0o666 honours the umask (mkstemp would leave the file private, 0o600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=jsonable) + "\n").encode())


def jsonable(x: Any) -> Any:
    """``json.dumps`` default: numpy scalars and arrays, paths."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def write_gif(path: str | os.PathLike, frames: np.ndarray, fps: int = 10, scale: int = 1) -> None:
    """Write uint8 frames (T, H, W, 3) as a looping GIF, atomically; ``scale`` enlarges pixels."""
    from io import BytesIO

    from PIL import Image

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 (T, H, W, 3) with T >= 1, got {frames.dtype} {frames.shape}")
    if scale > 1:
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    images = [Image.fromarray(f) for f in frames]
    buf = BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(1, int(1000 / fps)), loop=0)
    atomic_write_bytes(path, buf.getvalue())
