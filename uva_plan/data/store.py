"""A directory of demonstration episodes: states and actions only, frames re-rendered on demand.

Layout of a store rooted at ``root``:

    meta.json                what produced the data (env id and kwargs, expert and its config,
                             base seed, dims, format version, git revision); written once and
                             checked on resume, so that one store never mixes two configurations
    episodes/ep_000000.npz   one file per episode: ``states`` (T, P) physical state before each
                             action, ``actions`` (T, A) in env units, ``final_state`` (P,) after
                             the last action, ``rewards`` (T,), ``seed``, and scalar metrics
                             (``success``, ``length``, ...) as 0-d arrays
    normalizers.json         min-max normalisers, written by ``finalize``

Every file is written to a temporary file in its own directory, fsynced and moved into place
with ``os.replace``: a crash leaves the old file or the new one, never half of one. One process
writes a store at a time; an advisory lock on ``<root>/.lock`` enforces it (and is released by
the OS when the writer dies, even by SIGKILL).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uva_plan.io import TMP_PREFIX, atomic_write, atomic_write_json, git_revision  # noqa: F401

FORMAT_VERSION = "1"
DATA_KEYS = ("states", "actions", "final_state", "rewards", "seed")
# Recorded in meta.json but free to differ on resume: they describe a run, not the data.
RUN_KEYS = ("git_revision", "created")
_EPISODE_FILE = re.compile(r"ep_(\d+)\.npz")


def directory_bytes(root: str | os.PathLike) -> int:
    """Total size of the regular files under ``root``."""
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())


@dataclass(eq=False)
class MinMaxNormalizer:
    """Per-dimension affine map of [low, high] onto [-1, 1] (Diffusion Policy's "limits" mode).

    A dimension whose range is below ``range_eps`` (constant in the data) is only shifted,
    ``x - low``, as Diffusion Policy does: its data value maps to 0, nothing is divided by
    zero, and the map stays invertible. Works on numpy arrays and torch tensors (..., D).
    """

    low: np.ndarray
    high: np.ndarray
    range_eps: float = 1e-4
    scale: np.ndarray = field(init=False, repr=False)
    offset: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self.low = np.asarray(self.low, dtype=np.float64)
        self.high = np.asarray(self.high, dtype=np.float64)
        if self.low.ndim != 1 or self.low.shape != self.high.shape:
            raise ValueError(f"low and high must be 1-d of equal length, got {self.low.shape=}, "
                             f"{self.high.shape=}")
        if not (np.isfinite(self.low).all() and np.isfinite(self.high).all()):
            raise ValueError(f"normaliser limits must be finite, got {self.low=}, {self.high=}")
        if (self.low > self.high).any():
            raise ValueError(f"low must be <= high everywhere, got {self.low=}, {self.high=}")
        constant = (self.high - self.low) < self.range_eps
        span = np.where(constant, 2.0, self.high - self.low)
        self.scale = 2.0 / span
        self.offset = np.where(constant, -self.low, -1.0 - self.scale * self.low)

    @classmethod
    def fit(cls, x: np.ndarray) -> MinMaxNormalizer:
        """Limits of data ``x`` (N, D)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or len(x) == 0:
            raise ValueError(f"fit needs a non-empty (N, D) array, got shape {x.shape}")
        return cls(x.min(axis=0), x.max(axis=0))

    @property
    def dim(self) -> int:
        return len(self.low)

    def _params(self, x):
        if type(x).__module__.split(".")[0] == "torch":
            import torch

            return (x, torch.as_tensor(self.scale, dtype=x.dtype, device=x.device),
                    torch.as_tensor(self.offset, dtype=x.dtype, device=x.device))
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1:] != (self.dim,):
            raise ValueError(f"expected (..., {self.dim}) input, got shape {x.shape}")
        return x, self.scale, self.offset

    def normalize(self, x):
        """Data units -> [-1, 1]."""
        x, scale, offset = self._params(x)
        return x * scale + offset

    def unnormalize(self, y):
        """[-1, 1] -> data units."""
        y, scale, offset = self._params(y)
        return (y - offset) / scale

    def to_dict(self) -> dict:
        return {"low": self.low.tolist(), "high": self.high.tolist(), "range_eps": self.range_eps}

    @classmethod
    def from_dict(cls, d: dict) -> MinMaxNormalizer:
        return cls(np.asarray(d["low"]), np.asarray(d["high"]), d.get("range_eps", 1e-4))


def fit_normalizers(data: dict) -> dict[str, MinMaxNormalizer]:
    """``actions``, ``agent_pos`` (states[:, :2]: every env puts the pusher's xy first) and
    the full physical ``state`` normalisers from ``EpisodeStore.load()`` arrays."""
    return {"actions": MinMaxNormalizer.fit(data["actions"]),
            "agent_pos": MinMaxNormalizer.fit(data["states"][:, :2]),
            "state": MinMaxNormalizer.fit(data["states"])}


def _checked(name: str, value: Any, shape: tuple, legend: str) -> np.ndarray:
    """``value`` as float64 of ``shape`` (None matches any length), finite, or ValueError."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array {legend}, got {type(value).__name__}") from err
    if arr.ndim != len(shape) or any(s is not None and a != s for a, s in zip(arr.shape, shape)):
        raise ValueError(f"{name} has shape {arr.shape}, expected {legend}")
    if not np.isfinite(arr).all():
        first = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"{name} contains NaN or inf (first at index {first}); refusing to store it")
    return arr


class EpisodeStore:
    """Episodes of one env and expert in a directory (see the module docstring).

    Build with ``EpisodeStore.create(root, meta)`` to write (new store, or resume after
    checking ``meta``) or ``EpisodeStore.open(root)`` to read. Episode indices may have gaps
    (an interrupted parallel run); reading uses the episodes present, in index order.
    """

    def __init__(self, root: Path, meta: dict, writable: bool, lock_fd: int | None = None):
        self.root, self.meta, self.writable, self._lock_fd = root, meta, writable, lock_fd
        self.episode_dir = root / "episodes"

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | os.PathLike, meta: dict) -> EpisodeStore:
        """Create a store, or reopen one for writing if its meta.json describes the same data.

        ``meta`` needs ``env_id``, ``physical_dim`` and ``action_dim``; anything else (env
        kwargs, expert config, seed, ...) is recorded too and must match on resume. The
        format version and git revision are added here.
        """
        root = Path(root)
        for key in ("env_id", "physical_dim", "action_dim"):
            if key not in meta:
                raise ValueError(f"meta must contain {key!r}, got keys {sorted(meta)}")
        for key in ("physical_dim", "action_dim"):
            if not isinstance(meta[key], (int, np.integer)) or meta[key] < 1:
                raise ValueError(f"meta[{key!r}] must be a positive int, got {meta[key]!r}")
        wanted = json.loads(json.dumps({**meta, "format_version": FORMAT_VERSION}))
        (root / "episodes").mkdir(parents=True, exist_ok=True)
        lock_fd = _lock(root)
        try:
            meta_path = root / "meta.json"
            if meta_path.exists():
                existing = _read_json(meta_path)
                _check_same_data(root, existing, wanted)
                if existing.get("git_revision") != (rev := git_revision()):
                    warnings.warn(f"resuming {root}, created at git revision "
                                  f"{existing.get('git_revision')}, with revision {rev}", stacklevel=2)
                meta = existing
            else:
                meta = {**wanted, "git_revision": git_revision(),
                        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
                atomic_write_json(meta_path, meta)
            # We hold the lock, so temporary files can only be leftovers of a killed writer.
            for stale in [*root.glob(TMP_PREFIX + "*"), *(root / "episodes").glob(TMP_PREFIX + "*")]:
                stale.unlink(missing_ok=True)
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        return cls(root, meta, writable=True, lock_fd=lock_fd)

    @classmethod
    def open(cls, root: str | os.PathLike) -> EpisodeStore:
        """Open an existing store for reading."""
        root = Path(root)
        meta_path = root / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{root} is not an episode store: {meta_path} does not exist")
        return cls(root, _read_json(meta_path), writable=False)

    def close(self) -> None:
        """Release the writer's lock (reading stays possible)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self.writable = False

    def __enter__(self) -> EpisodeStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        self.close()

    def __repr__(self) -> str:
        return f"EpisodeStore({str(self.root)!r}, env={self.meta['env_id']!r}, episodes={len(self)})"

    @property
    def physical_dim(self) -> int:
        return int(self.meta["physical_dim"])

    @property
    def action_dim(self) -> int:
        return int(self.meta["action_dim"])

    # -- episodes -----------------------------------------------------------------------------
    def path(self, i: int) -> Path:
        return self.episode_dir / f"ep_{int(i):06d}.npz"

    def indices(self) -> list[int]:
        """Indices of the episodes on disk, sorted."""
        if not self.episode_dir.is_dir():
            return []
        found = (_EPISODE_FILE.fullmatch(p.name) for p in self.episode_dir.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def __len__(self) -> int:
        return len(self.indices())

    def has_episode(self, i: int) -> bool:
        return self.path(i).exists()

    def write_episode(self, i: int, states: np.ndarray, actions: np.ndarray,
                      final_state: np.ndarray, rewards: np.ndarray, seed: int,
                      metrics: dict[str, float | bool | int] | None = None,
                      overwrite: bool = False) -> Path:
        """Validate and atomically write episode ``i``; returns its path.

        states (T, P), actions (T, A), final_state (P,), rewards (T,); metrics: scalar
        floats/ints/bools by name. Existing episodes are only replaced with ``overwrite``.
        """
        if not self.writable:
            raise PermissionError(f"{self.root} was opened read-only; use EpisodeStore.create to write")
        if not isinstance(i, (int, np.integer)) or i < 0:
            raise ValueError(f"episode index must be a non-negative int, got {i!r}")
        p, a = self.physical_dim, self.action_dim
        states = _checked("states", states, (None, p), f"(T, {p}): T steps x physical_dim")
        n_steps = len(states)
        if n_steps == 0:
            raise ValueError("an episode needs at least one step, got states of shape (0, P)")
        arrays = {
            "states": states,
            "actions": _checked("actions", actions, (n_steps, a), f"({n_steps}, {a}): one action per state"),
            "final_state": _checked("final_state", final_state, (p,),
                                    f"({p},): the state after the last action"),
            "rewards": _checked("rewards", rewards, (n_steps,), f"({n_steps},): one reward per action"),
        }
        if (isinstance(seed, bool) or not isinstance(seed, (int, np.integer, float))
                or not np.isfinite(seed) or int(seed) != seed):
            raise ValueError(f"seed must be an int, got {seed!r}")
        arrays["seed"] = np.int64(seed)
        for name, value in (metrics or {}).items():
            if not isinstance(name, str) or not name.isidentifier() or name in DATA_KEYS:
                raise ValueError(f"metric names must be identifiers other than {DATA_KEYS}, got {name!r}")
            value = np.asarray(value)
            if value.ndim != 0 or value.dtype.kind not in "biuf":
                raise ValueError(f"metric {name!r} must be a scalar float/int/bool, got {value!r}")
            arrays[name] = value
        path = self.path(i)
        if path.exists() and not overwrite:
            raise FileExistsError(f"episode {i} already exists at {path}; pass overwrite=True to replace it")
        atomic_write(path, lambda f: np.savez(f, **arrays))
        return path

    def episode(self, i: int) -> dict:
        """Episode ``i``: states, actions, final_state, rewards, seed, metrics, index.

        Raises ValueError naming the file if it is truncated or corrupt.
        """
        path = self.path(i)
        if not path.exists():
            raise FileNotFoundError(f"episode {i} is not in {self.root} ({path} does not exist)")
        advice = "it is truncated or corrupt; delete it and re-run the collection to recollect it"
        try:
            # Our own handle: np.load leaks the one it opens when the zip is unreadable.
            with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        except (OSError, EOFError, ValueError, KeyError, NotImplementedError, zipfile.BadZipFile) as err:
            raise ValueError(f"cannot read episode file {path} ({type(err).__name__}: {err}): "
                             f"{advice}") from err
        missing = [key for key in DATA_KEYS if key not in arrays]
        n_steps = len(arrays.get("states", ()))
        expected = {"states": (n_steps, self.physical_dim), "actions": (n_steps, self.action_dim),
                    "final_state": (self.physical_dim,), "rewards": (n_steps,), "seed": ()}
        bad = [f"{k} {arrays[k].shape} != {s}" for k, s in expected.items()
               if k in arrays and arrays[k].shape != s]
        if missing or bad or n_steps == 0:
            raise ValueError(f"episode file {path} is malformed (missing {missing}, shapes {bad}, "
                             f"{n_steps} steps): {advice}")
        metrics = {k: v.item() for k, v in arrays.items() if k not in DATA_KEYS}
        return {"states": arrays["states"], "actions": arrays["actions"],
                "final_state": arrays["final_state"], "rewards": arrays["rewards"],
                "seed": int(arrays["seed"]), "metrics": metrics, "index": int(i)}

    def load(self, skip_corrupt: bool = False) -> dict:
        """All episodes present, in index order, as flat arrays (Diffusion Policy's layout).

        Returns states (N, P), actions (N, A), rewards (N,), episode_ends (E,) cumulative
        ends, final_states (E, P), episode_seeds (E,), episode_indices (E,) (store indices:
        they differ from 0..E-1 where there are gaps) and metrics {name: (E,)} (float with NaN
        where an episode lacks a metric). A corrupt file raises ValueError, or with
        ``skip_corrupt`` is skipped with a warning.
        """
        episodes = []
        for i in self.indices():
            try:
                episodes.append(self.episode(i))
            except ValueError as err:
                if not skip_corrupt:
                    raise
                warnings.warn(f"skipping episode {i}: {err}", stacklevel=2)
        p, a = self.physical_dim, self.action_dim
        lengths = np.array([len(ep["states"]) for ep in episodes], dtype=np.int64)
        names = list(dict.fromkeys(k for ep in episodes for k in ep["metrics"]))
        metrics = {}
        for name in names:
            values = [ep["metrics"].get(name) for ep in episodes]
            metrics[name] = (np.array(values) if None not in values else
                             np.array([np.nan if v is None else v for v in values], dtype=np.float64))

        def cat(key: str, shape: tuple) -> np.ndarray:
            return np.concatenate([ep[key] for ep in episodes]) if episodes else np.zeros(shape)

        return {
            "states": cat("states", (0, p)), "actions": cat("actions", (0, a)),
            "rewards": cat("rewards", (0,)), "episode_ends": np.cumsum(lengths),
            "final_states": np.array([ep["final_state"] for ep in episodes]).reshape(-1, p),
            "episode_seeds": np.array([ep["seed"] for ep in episodes], dtype=np.int64),
            "episode_indices": np.array([ep["index"] for ep in episodes], dtype=np.int64),
            "metrics": metrics,
        }

    # -- normalisers ----------------------------------------------------------------------------
    def finalize(self, skip_corrupt: bool = False) -> dict[str, MinMaxNormalizer]:
        """Fit the normalisers on every episode present and write normalizers.json."""
        if not self.writable:
            raise PermissionError(f"{self.root} was opened read-only; use EpisodeStore.create to finalize")
        data = self.load(skip_corrupt=skip_corrupt)
        if len(data["states"]) == 0:
            raise ValueError(f"cannot finalize {self.root}: it holds no episodes")
        normalizers = fit_normalizers(data)
        atomic_write_json(self.root / "normalizers.json", {
            "format_version": FORMAT_VERSION, "n_episodes": len(data["episode_ends"]),
            "n_steps": len(data["states"]),
            "normalizers": {name: n.to_dict() for name, n in normalizers.items()}})
        return normalizers

    def normalizers(self) -> dict[str, MinMaxNormalizer]:
        """The normalisers from normalizers.json, or fitted now (not written) if it is missing."""
        path = self.root / "normalizers.json"
        if not path.exists():
            return fit_normalizers(self.load())
        saved = _read_json(path)
        if saved.get("n_episodes") != len(self):
            warnings.warn(f"{path} was fitted on {saved.get('n_episodes')} episodes but the store "
                          f"now holds {len(self)}; run finalize() to refresh it", stacklevel=2)
        return {name: MinMaxNormalizer.from_dict(d) for name, d in saved["normalizers"].items()}

    def disk_bytes(self) -> int:
        return directory_bytes(self.root)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path} ({err}); the store may be damaged") from err


def _check_same_data(root: Path, existing: dict, wanted: dict) -> None:
    keys = (set(existing) | set(wanted)) - set(RUN_KEYS)
    diffs = [f"  {k}: store has {existing.get(k, '<missing>')!r}, this run has {wanted.get(k, '<missing>')!r}"
             for k in sorted(keys) if existing.get(k, "<missing>") != wanted.get(k, "<missing>")]
    if diffs:
        raise ValueError(f"{root} holds data of a different configuration; refusing to mix it "
                         f"with this run's:\n" + "\n".join(diffs) +
                         "\nUse another output directory, or delete the store to start over.")


def _lock(root: Path) -> int | None:
    """Take the store's writer lock (POSIX flock; elsewhere no lock), or raise RuntimeError."""
    try:
        import fcntl
    except ImportError:
        return None
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RuntimeError(f"{root} is being written by another process "
                           f"(it holds {root / '.lock'})") from None
    return fd
