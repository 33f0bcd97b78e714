"""The scorecard's held-out windows: a store of expert episodes no model trained on, and a fixed
selection of UVA windows in it, chosen once and kept beside the episodes.

A window is anchored at step ``t`` of an episode: history frames t-12, t-8, t-4, t, future
frames t+4, ..., t+16, actions t..t+15 (``UVA_FRAME_OFFSETS``). Every frame and action of a
selected window is real (no edge padding). Each window is tagged from the true states:
``moving`` (a pushed object, block or T, ends the 16 steps at least ``MOVING_PX`` from where it
started) or ``static``, and ``contact`` when the pusher touches a pushed object at any of the 16
steps (disc within ``CONTACT_MARGIN_PX`` of the object's outline).

Shape letters: B windows, T frames, P physical state dim, H actions, A action dim, S frame side.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path

import numpy as np
from rich.console import Console

from uva_plan.data.sampler import UVA_FRAME_OFFSETS, SequenceSampler
from uva_plan.data.store import EpisodeStore
from uva_plan.envs import blockpush as bp
from uva_plan.envs import pusht
from uva_plan.envs.geometry import TEE_PARTS
from uva_plan.io import atomic_write_json, git_revision

ENV_IDS = {"pusht": "uva_plan/PushT-v0", "blockpush": "uva_plan/BlockPush-v0"}
ENV_CLASSES = {"pusht": pusht.PushTEnv, "blockpush": bp.BlockPushEnv}
# Training stores use seeds from 0 (demonstrations) and 500000 (play data, Makefile): held-out
# episodes start far above both.
HELDOUT_SEED = 900_000
N_HELDOUT_EPISODES = 32  # about 60 candidate anchors per expert episode: far more than 64 windows
SELECTION_FILE = "scorecard_windows.json"
SELECTION_VERSION = 1
N_ACTIONS = 16
MOVING_PX = 16.0
CONTACT_MARGIN_PX = 2.0
# Each pushed object's position in a physical state (block centres; the T's centre of gravity).
PUSHED = {"pusht": {"tee": slice(4, 6)}, "blockpush": {"block0": slice(4, 6), "block1": slice(10, 12)}}


def env_name(env: str) -> str:
    """Checked env name, "pusht" or "blockpush"."""
    if env not in ENV_IDS:
        raise ValueError(f"env must be one of {sorted(ENV_IDS)}, got {env!r}")
    return env


def heldout_store(root: str | Path, env: str, n_episodes: int = N_HELDOUT_EPISODES, seed: int = HELDOUT_SEED,
                  workers: int = 1, console: Console | None = None) -> EpisodeStore:
    """The held-out store at ``root``: opened when it exists, else collected there with the env's
    scripted expert on seeds ``seed``, ``seed + 1``, ... (``uva_plan.data.collect``).

    A store whose seeds start below ``HELDOUT_SEED`` is refused: its episodes may be training data.
    """
    env, root = env_name(env), Path(root)
    if not (root / "meta.json").exists():
        if seed < HELDOUT_SEED:
            raise ValueError(f"held-out seeds must be >= {HELDOUT_SEED} (training uses 0 and 500000), got {seed=}")
        from uva_plan.data.collect import collect

        collect(ENV_IDS[env], env, n_episodes, root, seed=seed, workers=workers, console=console)
    store = EpisodeStore.open(root)
    if store.meta["env_id"] != ENV_IDS[env]:
        raise ValueError(f"{root} holds {store.meta['env_id']} episodes, expected {ENV_IDS[env]} for {env=}")
    if int(store.meta.get("seed", -1)) < HELDOUT_SEED:
        raise ValueError(f"{root} was collected from seed {store.meta.get('seed')!r}, below {HELDOUT_SEED}: its "
                         f"episodes may be training data; give --data a new directory to collect held-out ones")
    return store


def store_fingerprint(data: dict) -> str:
    """sha256 of a store's episodes (``EpisodeStore.load``): indices, states, actions, final states."""
    digest = hashlib.sha256()
    for key in ("episode_indices", "episode_ends", "states", "actions", "final_states"):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(data[key]).tobytes())
    return digest.hexdigest()


def _box_distance(points: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Distance (...,) from body-frame points (..., 2) to the axis-aligned box [low, high]."""
    gap = np.maximum(np.maximum(low - points, 0.0), points - high)
    return np.linalg.norm(gap, axis=-1)


def _to_body(points: np.ndarray, origin: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """World points (N, 2) into the frames of bodies at ``origin`` (N, 2) turned by ``angle`` (N,)."""
    d = points - origin
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], axis=1)


def pusher_gap(states: np.ndarray, env: str) -> np.ndarray:
    """(N,) px between the pusher's disc and the nearest pushed object's outline (<= 0: touching or
    overlapping), from physical states (N, >= P)."""
    states = np.atleast_2d(np.asarray(states, dtype=np.float64))
    agent = states[:, :2]
    if env_name(env) == "pusht":
        body = _to_body(agent, pusht.block_poses(states)[:, :2], states[:, 6])
        distance = np.min([_box_distance(body, part.min(axis=0), part.max(axis=0)) for part in TEE_PARTS], axis=0)
        radius = pusht.PushTEnv.agent_radius
    else:
        half = np.full(2, bp.BLOCK_SIZE / 2)
        distance = np.min([_box_distance(_to_body(agent, states[:, where], states[:, where.start + 2]), -half, half)
                           for where in PUSHED["blockpush"].values()], axis=0)
        radius = bp.BlockPushEnv.agent_radius
    return distance - radius


def displacements(start: np.ndarray, end: np.ndarray, env: str) -> dict[str, np.ndarray]:
    """Per pushed object, (N,) px it moved between physical states ``start`` and ``end`` (N, P)."""
    return {name: np.linalg.norm(np.atleast_2d(end)[:, where] - np.atleast_2d(start)[:, where], axis=1)
            for name, where in PUSHED[env_name(env)].items()}


def candidate_windows(data: dict, env: str, stride: int = 4) -> list[dict]:
    """Every fully real window whose anchor t is a multiple of ``stride`` (from 12), with its tags.

    ``data``: ``EpisodeStore.load()``. Returns dicts of episode (store index), t, tags,
    displacement_px (the largest pushed object's) and min_gap_px (pusher to object over the 16 steps).
    """
    sampler = SequenceSampler(data, range(N_ACTIONS + 1), 0, N_ACTIONS)  # frames t..t+16: every step
    first = -min(UVA_FRAME_OFFSETS)
    keep = [i for i, (e, t) in enumerate(zip(*sampler.anchors(np.arange(len(sampler)))))
            if t >= first and t % stride == 0]
    if not keep:
        return []
    batch = sampler.batch(keep)
    real = ~batch["frame_mask"].any(axis=1) & ~batch["action_mask"].any(axis=1)
    states = batch["states"][real]  # (B, 17, P)
    moved = np.max(list(displacements(states[:, 0], states[:, -1], env).values()), axis=0)
    gaps = pusher_gap(states[:, 1:].reshape(-1, states.shape[-1]), env).reshape(len(states), -1).min(axis=1)
    out = []
    for e, t, d, g in zip(batch["episode"][real], batch["t"][real], moved, gaps):
        tags = ["moving" if d >= MOVING_PX else "static"] + (["contact"] if g <= CONTACT_MARGIN_PX else [])
        out.append({"episode": int(data["episode_indices"][e]), "t": int(t), "tags": tags,
                    "displacement_px": round(float(d), 3), "min_gap_px": round(float(g), 3)})
    return out


def choose_windows(candidates: list[dict], n_windows: int, seed: int = 0) -> list[dict]:
    """n_windows of the candidates, drawn with ``seed``: half moving, and of the static half, half
    with contact and half without; a short group is filled from the static leftovers first, then
    the moving ones. Sorted by (episode, t)."""
    if isinstance(n_windows, bool) or not isinstance(n_windows, int) or n_windows < 1:
        raise ValueError(f"n_windows must be an int >= 1, got {n_windows=!r}")
    if len(candidates) < n_windows:
        raise ValueError(f"the store offers {len(candidates)} candidate windows, fewer than {n_windows=}: "
                         "collect more held-out episodes")
    rng = np.random.default_rng(seed)
    groups = {"moving": [c for c in candidates if "moving" in c["tags"]],
              "static contact": [c for c in candidates if "static" in c["tags"] and "contact" in c["tags"]],
              "static free": [c for c in candidates if "static" in c["tags"] and "contact" not in c["tags"]]}
    left = {name: [group[i] for i in rng.permutation(len(group))] for name, group in groups.items()}

    def take(name: str, n: int) -> list[dict]:
        taken, left[name] = left[name][:n], left[name][n:]
        return taken

    chosen = take("moving", n_windows // 2)
    n_static = n_windows - len(chosen)
    chosen += take("static contact", n_static // 2)
    chosen += take("static free", n_windows - len(chosen))
    for name in ("static contact", "static free", "moving"):
        chosen += take(name, n_windows - len(chosen))
    return sorted(chosen, key=lambda c: (c["episode"], c["t"]))


def select_windows(store: EpisodeStore, env: str, n_windows: int | None = None, seed: int = 0,
                   console: Console | None = None) -> dict:
    """The store's window selection (``SELECTION_FILE`` in its directory): read back and checked
    against the store, or chosen now (``n_windows``, default 64) and written atomically.

    A selection that does not match its store (other episodes, env or window geometry), or that
    holds another number of windows than ``n_windows`` asks for, is refused with a ValueError.
    """
    env = env_name(env)
    path = Path(store.root) / SELECTION_FILE
    data = store.load()
    fingerprint = store_fingerprint(data)
    geometry = {"frame_offsets": list(UVA_FRAME_OFFSETS), "n_actions": N_ACTIONS}
    if path.exists():
        selection = json.loads(path.read_text())
        problems = []
        if selection.get("format_version") != SELECTION_VERSION:
            problems.append(f"format version {selection.get('format_version')!r} (expected {SELECTION_VERSION})")
        if selection.get("env_id") != ENV_IDS[env]:
            problems.append(f"env {selection.get('env_id')!r} (expected {ENV_IDS[env]})")
        if selection.get("store_fingerprint") != fingerprint:
            problems.append(f"store fingerprint {str(selection.get('store_fingerprint'))[:12]}... but the store's "
                            f"episodes now hash to {fingerprint[:12]}...")
        if selection.get("geometry") != geometry:
            problems.append(f"window geometry {selection.get('geometry')} (expected {geometry})")
        if problems:
            raise ValueError(f"{path} does not match its store {store.root}: " + "; ".join(problems) +
                             f". Delete {path} to choose the windows again (scores are then not comparable "
                             "with earlier runs), or point --data at the store it was chosen from.")
        if n_windows is not None and n_windows != len(selection["windows"]):
            raise ValueError(f"{path} holds {len(selection['windows'])} windows, not {n_windows=}: omit "
                             "--n-windows to reuse them, or give --data a new directory")
        _check_windows(selection["windows"], data)
        return selection
    n_windows = 64 if n_windows is None else n_windows
    windows = choose_windows(candidate_windows(data, env), n_windows, seed)
    counts = {tag: sum(tag in w["tags"] for w in windows) for tag in ("moving", "static", "contact")}
    selection = {"format_version": SELECTION_VERSION, "env_id": ENV_IDS[env], "store_fingerprint": fingerprint,
                 "n_episodes": len(data["episode_ends"]), "geometry": geometry,
                 "rule": {"n_windows": n_windows, "seed": seed, "stride": 4, "moving_px": MOVING_PX,
                          "contact_margin_px": CONTACT_MARGIN_PX},
                 "counts": counts, "git_revision": git_revision(),
                 "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                 "windows": windows}
    atomic_write_json(path, selection)
    (console or Console()).print(f"chose {n_windows} windows {counts} -> {path}")
    return selection


def _check_windows(windows: list[dict], data: dict) -> None:
    lengths = dict(zip(data["episode_indices"].tolist(), np.diff(data["episode_ends"], prepend=0).tolist()))
    first = -min(UVA_FRAME_OFFSETS)
    for w in windows:
        if w["episode"] not in lengths or not first <= w["t"] <= lengths[w["episode"]] - N_ACTIONS:
            raise ValueError(f"window {w} does not fit its store (episode lengths {lengths})")


def window_batch(data: dict, windows: list[dict], env: str, size: int) -> dict:
    """The windows' states (B, T, P) at the UVA frames, actions (B, H, A) in env units and frames
    (B, T, S, S, 3) rendered at ``size``; T = 4 history + 4 future frames."""
    position = {int(i): p for p, i in enumerate(data["episode_indices"])}
    sampler = SequenceSampler.uva(data, render_size=size, env_cls=ENV_CLASSES[env_name(env)])
    starts = np.concatenate([[0], np.cumsum(sampler.episode_lengths[:-1])])
    indices = [starts[position[w["episode"]]] + w["t"] for w in windows]  # sampler rows: every step anchors
    batch = sampler.batch(indices)
    if batch["frame_mask"].any() or batch["action_mask"].any():
        raise ValueError("a selected window reaches past its episode; the selection does not fit the store")
    return {"states": batch["states"], "actions": batch["actions"], "frames": batch["frames"]}

