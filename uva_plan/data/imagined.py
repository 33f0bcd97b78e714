"""UVA's imagined future frames of demonstration windows, paired with the true poses they stand for.

A state head trained on real latents reads UVA's imagined frames as if they were real. Where UVA
smears or loses an object, that reading is arbitrary, and a planner that takes the argmin over
100 candidates finds such frames (``examples/ranking_fidelity.py`` measures it: the pick's
imagined frame is further from the truth than the average candidate's). Trained also on these
pairs, the head learns to read an imagined frame as the true outcome it stands for: E[pose |
imagined latent] under the demonstrations, the reward learned on model rollouts.

For every ``window_stride``-th UVA window of the store (4 history frames, the 16 demonstrated
actions) UVA imagines the 4 future frames with the planning settings (``PLANNING_SAMPLING``);
each imagined frame is paired with the row of the true frame in the store's frame table (its
state gives the pose). The cache ``<store>/imagined/<uva sha256[:12]>.npz`` (+ ``.json``) is
keyed by the UVA's weights, the latents' VAE, the sampling settings and the store; it is written
atomically and rebuilt when any of them changes.

    python -m uva_plan.data.imagined --store data/pusht --uva uva_plan/pretrained/pusht/uva
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from uva_plan.pretrained import PLANNING_SAMPLING
from uva_plan.checkpoint import MODEL_FILE, load_model, read_meta, resolve_checkpoint
from uva_plan.data.latents import LatentWindows, load_latents
from uva_plan.data.sampler import SequenceSampler
from uva_plan.data.store import EpisodeStore
from uva_plan.io import atomic_write_bytes, atomic_write_json
from uva_plan.progress import progress_bar



def cache_path(store_root: str | os.PathLike, uva_checkpoint: str | os.PathLike) -> Path:
    return _cache_path(store_root, read_meta(resolve_checkpoint(uva_checkpoint), verify=False))


def _cache_path(store_root: str | os.PathLike, uva_meta: dict) -> Path:
    return Path(store_root) / "imagined" / f"{uva_meta['files'][MODEL_FILE]['sha256'][:12]}.npz"


def _check_same_vae(uva_meta: dict, latent_info: dict, uva_checkpoint) -> None:
    """The UVA must have learned the latents of the VAE the store's cache was encoded with."""
    vae = (uva_meta.get("extra") or {}).get("vae") or {}
    known = {vae.get("weights_sha256"), vae.get("trained_on_weights_sha256")} - {None}
    have = latent_info["vae"]["weights_sha256"]
    if known and have not in known:
        raise ValueError(f"{uva_checkpoint} learned the latents of VAE {sorted(k[:12] for k in known)}, but the "
                         f"store's latent cache was encoded with VAE {have[:12]}: rebuild the cache with that VAE")


def imagine_windows(store_root: str | os.PathLike, uva_checkpoint: str | os.PathLike, window_stride: int = 2,
                    batch_size: int = 256, seed: int = 0, console: Console | None = None,
                    data: dict | None = None, latents: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Imagine every ``window_stride``-th window of the store with ``PLANNING_SAMPLING``; returns
    latents (M, C, h, w) float16, rows (M,) (true frames' rows of the frame table), episode (M,)
    and frame (M,) (the future frame index, 0..3). ``data`` / ``latents``: the store's loaded
    data and latent cache, when the caller has them already."""
    if isinstance(window_stride, bool) or not isinstance(window_stride, int) or window_stride < 1:
        raise ValueError(f"window_stride must be an int >= 1, got {window_stride=}")
    store = EpisodeStore.open(store_root)
    data = store.load() if data is None else data
    latents = load_latents(store_root, data=data)[0] if latents is None else latents
    uva, _ = load_model(uva_checkpoint, expected_kind="uva")
    uva.eval()
    windows = LatentWindows(SequenceSampler.uva(data), latents, store.normalizers())
    c = uva.config
    anchors = np.arange(0, len(windows), window_stride)
    generator = torch.Generator().manual_seed(seed)
    out = {"latents": [], "rows": [], "episode": [], "frame": []}
    with progress_bar(console=console or Console(), transient=True) as progress:
        task = progress.add_task(f"imagining {len(anchors)} windows of {store_root}", total=len(anchors))
        for start in range(0, len(anchors), batch_size):
            idx = anchors[start: start + batch_size]
            batch = windows.batch(idx)
            with torch.inference_mode():
                future = uva.forward_dynamics({"latents": batch["latents"][:, : c.n_history]}, batch["actions"],
                                              n_steps=PLANNING_SAMPLING["n_video_steps"], generator=generator,
                                              temperature=PLANNING_SAMPLING["temperature"],
                                              head_steps=PLANNING_SAMPLING["video_head_steps"])
            rows = windows.sampler.row_indices(idx)[:, c.n_history:]  # (B, T) the true future frames
            out["latents"].append(future.flatten(0, 1).numpy().astype(np.float16))
            out["rows"].append(rows.reshape(-1))
            out["episode"].append(np.repeat(windows.sampler.anchors(idx)[0], c.n_future))
            out["frame"].append(np.tile(np.arange(c.n_future), len(idx)))
            progress.advance(task, len(idx))
    return {k: np.concatenate(v) for k, v in out.items()}


def ensure_imagined(store_root: str | os.PathLike, uva_checkpoint: str | os.PathLike, window_stride: int = 2,
                    seed: int = 0, console: Console | None = None) -> dict[str, np.ndarray]:
    """The imagined pairs of ``imagine_windows``, from the cache when it matches, else built and cached."""
    data = EpisodeStore.open(store_root).load()
    latents, latent_info = load_latents(store_root, data=data)
    uva_meta = read_meta(resolve_checkpoint(uva_checkpoint), verify=False)
    _check_same_vae(uva_meta, latent_info, uva_checkpoint)
    identity = {"uva_weights_sha256": uva_meta["files"][MODEL_FILE]["sha256"],
                "latents_sha256": latent_info["latents_sha256"], "settings": PLANNING_SAMPLING,
                "window_stride": window_stride, "seed": seed, "store": str(Path(store_root).resolve())}
    path = _cache_path(store_root, uva_meta)
    info_path = path.with_suffix(".json")
    if path.exists() and info_path.exists():
        info = json.loads(info_path.read_text())
        if info.get("identity") == identity:
            with np.load(path) as cached:
                arrays = {k: cached[k] for k in cached.files}
            if hashlib.sha256(arrays["latents"].tobytes()).hexdigest() == info.get("latents_sha256"):
                return arrays
        (console or Console()).print(f"[yellow]{path} is stale or damaged: rebuilding it")
    arrays = imagine_windows(store_root, uva_checkpoint, window_stride=window_stride, seed=seed, console=console,
                             data=data, latents=latents)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    atomic_write_json(info_path, {"identity": identity, "n": int(len(arrays["rows"])),
                                  "latents_sha256": hashlib.sha256(arrays["latents"].tobytes()).hexdigest()})
    return arrays


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--uva", required=True, help="UVA checkpoint (trained on the store's latents)")
    parser.add_argument("--window-stride", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console()
    arrays = ensure_imagined(args.store, args.uva, args.window_stride, args.seed, console=console)
    console.print(f"{len(arrays['rows'])} imagined frames in {cache_path(args.store, args.uva)}")


if __name__ == "__main__":
    main()
