"""The future frames the scorecard reads objects from, one set per source (row).

- ``imagined``: UVA's forward dynamics given the history and the window's true actions, decoded;
- ``video only``: UVA's video prediction from the history alone (actions masked), decoded;
- ``copy-last``: the last history frame repeated (the error of "nothing moves");
- ``vae ceiling``: the real future frames through the VAE (encode, decode): what any imagined
  frame can at best be, since UVA imagines VAE latents;
- ``real``: the rendered future frames (a check of the locator).

Shape letters: B windows, T frames, C latent channels, h, w latent side, S frame side.
"""

from __future__ import annotations

from pathlib import Path

import einops
import numpy as np
import torch

from uva_plan.dynamics import UVAWorldModel
from uva_plan.pretrained import PLANNING_SAMPLING

SOURCES = ("imagined", "video only", "copy-last", "vae ceiling", "real")


def load_world_model(uva: str, vae: str | None = None, seed: int = 0, **sampling) -> UVAWorldModel:
    """A UVA with its VAE: ``uva`` "pusht" / "blockpush" (the shipped weights) or a checkpoint
    directory. ``sampling`` (n_video_steps, video_head_steps, temperature; None: keep) overrides
    the planning settings ``PLANNING_SAMPLING`` it imagines with."""
    from uva_plan import hub

    settings = {**PLANNING_SAMPLING, **{k: v for k, v in sampling.items() if v is not None}}
    if uva in hub.ENVS:
        path = hub.pretrained_checkpoint(f"{uva}/uva")
        vae = vae or hub.pretrained_checkpoint("vae")
    elif Path(uva).exists():
        path = uva
    else:
        raise ValueError(f"--uva must be a shipped model name {sorted(hub.ENVS)} or a checkpoint directory, "
                         f"got {uva!r} (no such path)")
    return UVAWorldModel.load(path, vae, seed=seed, **settings)


def encode_frames(model: UVAWorldModel, frames: np.ndarray, batch: int = 256) -> torch.Tensor:
    """uint8 frames (B, T, S, S, 3) -> scaled latents (B, T, C, h, w)."""
    flat = einops.rearrange(frames, "b t h w c -> (b t) h w c")
    latents = torch.cat([model.encode(flat[i: i + batch]) for i in range(0, len(flat), batch)])
    return einops.rearrange(latents, "(b t) c h w -> b t c h w", b=len(frames))


def copy_last(frames: np.ndarray, n_history: int) -> np.ndarray:
    """The last history frame of windows (B, T, S, S, 3), repeated for the T - n_history future frames."""
    return np.repeat(frames[:, n_history - 1: n_history], frames.shape[1] - n_history, axis=1)


def future_frames(model: UVAWorldModel, frames: np.ndarray, actions: np.ndarray, batch: int = 64,
                  sources: tuple[str, ...] = SOURCES) -> dict[str, np.ndarray]:
    """{source: uint8 future frames (B, n_future, S, S, 3)} for windows of real frames (B, T, S, S, 3)
    (history then future) and their actions (B, H, A) in env units.

    UVA samples with the model's settings from its generator, re-seeded here (``model.reset``),
    in chunks of ``batch`` windows, so a run is reproducible for a given batch size.
    """
    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise ValueError(f"sources must be among {SOURCES}, got {sorted(unknown)}")
    n_hist = model.n_frames
    n_future = frames.shape[1] - n_hist
    if n_future != model.uva.config.n_future or actions.shape[:2] != (len(frames), model.horizon):
        raise ValueError(f"need frames (B, {n_hist} + {model.uva.config.n_future}, S, S, 3) and actions "
                         f"(B, {model.horizon}, A), got {frames.shape} and {actions.shape}")
    out = {}
    if "copy-last" in sources:
        out["copy-last"] = copy_last(frames, n_hist)
    if "real" in sources:
        out["real"] = frames[:, n_hist:]
    if "vae ceiling" in sources:
        out["vae ceiling"] = model.decode(encode_frames(model, frames[:, n_hist:]))
    if "imagined" not in sources and "video only" not in sources:
        return out
    history = encode_frames(model, frames[:, :n_hist])
    normalised = torch.from_numpy(model.normalizer.normalize(actions)).float()
    model.reset()
    settings = {"n_steps": model.n_video_steps, "generator": model.generator, "temperature": model.temperature,
                "head_steps": model.video_head_steps}
    imagined, video = [], []
    with torch.inference_mode():
        for i in range(0, len(frames), batch):
            context = {"latents": history[i: i + batch]}
            if "imagined" in sources:
                imagined.append(model.uva.forward_dynamics(context, normalised[i: i + batch], **settings))
            if "video only" in sources:
                video.append(model.uva.predict_video(context, **settings))
    if imagined:
        out["imagined"] = model.decode(torch.cat(imagined))
    if video:
        out["video only"] = model.decode(torch.cat(video))
    return {name: out[name] for name in sources}
