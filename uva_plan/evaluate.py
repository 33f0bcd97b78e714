"""Evaluate a trained UVA (and its VAE) on held-out episodes: the world model's held-out figures.

    python -m uva_plan.evaluate --uva outputs/train/uva_pusht/final --store data/pusht \\
        --out outputs/eval/uva_pusht.json

Held-out = the validation episodes of the split the UVA was trained with (its checkpoint
records ``val_fraction`` and ``split_seed``). Sections, each printed as a rich table and saved
with the full arguments and the git revision in one JSON:

- ``vae``: reconstruction PSNR of held-out frames (and of their foreground pixels alone).
- ``dynamics``: on held-out windows whose future is real (no edge padding), latent MSE and
  decoded PSNR of the 4 future frames from forward dynamics, against copy-last-frame (the last
  history frame repeated) and against video prediction without actions.
- ``inverse_dynamics``: action error (env units, px) of actions inferred from the true future
  latents; the policy's error from history alone is printed beside it for scale.
- ``policy``: UVA alone as the controller (``UVAPolicy``) over ``--episodes`` seeds.
- ``latency``: ``policy`` (video skipped) versus policy + forward dynamics + VAE decoding.

Shape letters: B windows, T frames, C latent channels, h, w latent side, H actions, A action dim.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from uva_plan.checkpoint import read_meta, resolve_checkpoint
from uva_plan.controllers import UVAPolicy
from uva_plan.data.latents import env_class, load_latents
from uva_plan.data.sampler import SequenceSampler, train_val_split
from uva_plan.data.store import EpisodeStore
from uva_plan.dynamics import UVAWorldModel
from uva_plan.io import git_revision
from uva_plan.metrics import median_ms
from uva_plan.models.vae import psnr
from uva_plan.report import write_json

console = Console()


def _psnr_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row PSNR (dB) of uint8 arrays (B, ...)."""
    err = ((a.astype(np.float64) - b.astype(np.float64)) / 255.0) ** 2
    mse = err.reshape(len(a), -1).mean(axis=1)
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-12))


def held_out_windows(model: UVAWorldModel, store: EpisodeStore, uva_meta: dict, n_windows: int,
                     seed: int, vae_checkpoint: str) -> dict:
    """Random held-out UVA windows with a fully real future: latents, actions, states, frames."""
    data = store.load()
    data_cfg = uva_meta["extra"]["train_config"]["data"]
    _, val_eps = train_val_split(len(data["episode_ends"]), data_cfg["val_fraction"], data_cfg["split_seed"])
    if not val_eps:
        raise ValueError(f"the UVA's split holds out no episode of {store.root}")
    latents, _ = load_latents(store.root, vae_checkpoint, data=data)
    sampler = SequenceSampler.uva(data, episodes=val_eps)
    everything = sampler.batch(np.arange(len(sampler)))
    n_hist = model.n_frames
    real = ~everything["frame_mask"][:, n_hist:].any(axis=1) & ~everything["action_mask"].any(axis=1)
    candidates = np.flatnonzero(real)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(candidates, size=min(n_windows, len(candidates)), replace=False))
    rows = sampler.row_indices(chosen)  # (B, T)
    states = sampler.frame_table[rows]
    cls = env_class(store.meta["env_id"])
    frames = cls.render_states(states.reshape(-1, states.shape[-1]), model.image_size)
    return {
        "latents": torch.from_numpy(latents[rows].astype(np.float32)),
        "actions_env": everything["actions"][chosen],
        "actions": torch.from_numpy(model.normalizer.normalize(everything["actions"][chosen])).float(),
        "frames": frames.reshape(len(chosen), rows.shape[1], *frames.shape[1:]),
        "states": states,  # (B, T, P) physical states of the window's frames
        "n_val_episodes": len(val_eps), "n_candidates": len(candidates),
    }


def eval_vae(model: UVAWorldModel, frames: np.ndarray, batch: int = 64) -> dict:
    """PSNR of encode -> decode on frames (B, S, S, 3); also on foreground pixels only."""
    recon = np.concatenate([model.decode(model.encode(frames[i: i + batch])) for i in range(0, len(frames), batch)])
    weights = model.vae.pixel_weights(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0)
    fg = (weights[:, 0] > 1).numpy()
    err = ((recon.astype(np.float64) - frames.astype(np.float64)) / 255.0) ** 2
    fg_mse = err[fg].mean() if fg.any() else float("nan")
    return {"n_frames": len(frames), "psnr_db": psnr(recon, frames),
            "psnr_db_per_frame_p10": float(np.percentile(_psnr_rows(recon, frames), 10)),
            "foreground_psnr_db": float(10 * np.log10(1 / fg_mse)), "foreground_fraction": float(fg.mean())}


def eval_dynamics(model: UVAWorldModel, windows: dict, n_steps: int | None, temperature: float,
                  batch: int, seed: int, head_steps: int | None = None) -> dict:
    n_hist = model.n_frames
    hist, future = windows["latents"][:, :n_hist], windows["latents"][:, n_hist:]
    true_frames = windows["frames"][:, n_hist:]
    generator = torch.Generator().manual_seed(seed)
    uva = model.uva
    preds = {"forward_dynamics": [], "video_prediction": []}
    with torch.inference_mode():
        for i in range(0, len(hist), batch):
            ctx = {"latents": hist[i: i + batch]}
            preds["forward_dynamics"].append(uva.forward_dynamics(
                ctx, windows["actions"][i: i + batch], n_steps=n_steps, generator=generator, temperature=temperature,
                head_steps=head_steps))
            preds["video_prediction"].append(uva.predict_video(
                ctx, n_steps=n_steps, generator=generator, temperature=temperature, head_steps=head_steps))
    preds = {k: torch.cat(v) for k, v in preds.items()}
    preds["copy_last_frame"] = hist[:, -1:].expand_as(future)
    out = {"n_windows": len(hist), "n_steps": n_steps or uva.config.n_video_sample_steps, "temperature": temperature,
           "head_steps": head_steps or uva.video_head.config.n_sample_steps}
    last_real = np.repeat(windows["frames"][:, n_hist - 1: n_hist], true_frames.shape[1], axis=1)
    for name, pred in preds.items():
        mse = (pred - future).square().mean(dim=(2, 3, 4))  # (B, T)
        decoded = last_real if name == "copy_last_frame" else model.decode(pred)
        frame_psnr = _psnr_rows(decoded.reshape(-1, *decoded.shape[2:]), true_frames.reshape(-1, *true_frames.shape[2:]))
        out[name] = {"latent_mse": float(mse.mean()), "latent_mse_per_frame": mse.mean(0).tolist(),
                     "decoded_psnr_db": float(frame_psnr.mean()),
                     "decoded_psnr_db_per_frame": frame_psnr.reshape(len(hist), -1).mean(0).tolist()}
    base = out["copy_last_frame"]["latent_mse"]
    for name in ("forward_dynamics", "video_prediction"):
        out[name]["latent_mse_vs_copy_last"] = out[name]["latent_mse"] / base
    vae_only = model.decode(future)  # the VAE's own reconstruction: the ceiling of decoded PSNR
    out["vae_reconstruction_psnr_db"] = float(_psnr_rows(vae_only.reshape(-1, *vae_only.shape[2:]),
                                                         true_frames.reshape(-1, *true_frames.shape[2:])).mean())
    return out, preds


def eval_state_head_imagined(path: str, model: UVAWorldModel, windows: dict, preds: dict) -> dict:
    """Pose errors of a state head read from the future frames' real latents, from the
    latents forward dynamics imagined, and from copy-last (the pose error of doing nothing)."""
    from uva_plan.checkpoint import load_model
    from uva_plan.evaluate_dpc import pose_errors
    from uva_plan.models.state_head import pose_targets

    head, meta = load_model(path, expected_kind="state_head", expected_env_id=model.env_id)
    n_hist = model.n_frames
    true = pose_targets(model.env_id, windows["states"][:, n_hist:].reshape(-1, windows["states"].shape[-1]))
    sources = {"real": windows["latents"][:, n_hist:], "forward_dynamics": preds["forward_dynamics"],
               "copy_last_frame": preds["copy_last_frame"]}
    out = {"n_windows": len(windows["latents"])}
    with torch.inference_mode():
        for name, latents in sources.items():
            pred = head.predict(latents.reshape(-1, *latents.shape[2:]).float()).double().numpy()
            out[name] = pose_errors(model.env_id, pred, true)
    return out


def eval_inverse(model: UVAWorldModel, windows: dict, batch: int, seed: int, action_steps: int | None = None) -> dict:
    n_hist = model.n_frames
    generator = torch.Generator().manual_seed(seed)
    inferred, policy = [], []
    with torch.inference_mode():
        for i in range(0, len(windows["latents"]), batch):
            lat = windows["latents"][i: i + batch]
            inferred.append(model.uva.inverse_dynamics(lat[:, n_hist:], generator=generator, n_steps=action_steps))
            policy.append(model.uva.policy({"latents": lat[:, :n_hist]}, generator=generator, n_steps=action_steps))
    true = windows["actions_env"]
    out = {"n_windows": len(true)}
    for name, pred in (("inverse_dynamics", inferred), ("policy_from_history", policy)):
        env_units = model.normalizer.unnormalize(torch.cat(pred).clamp(-1, 1).double().numpy())
        err = np.linalg.norm(env_units - true, axis=-1)  # (B, H) px
        out[name] = {"mean_px": float(err.mean()), "median_px": float(np.median(err)),
                     "p90_px": float(np.percentile(err, 90)), "per_step_px": err.mean(0).tolist()}
    return out


def eval_latency(model: UVAWorldModel, windows: dict, batch_sizes: tuple[int, ...], repeats: int) -> dict:
    n_hist = model.n_frames
    out = {"threads": torch.get_num_threads(), "repeats": repeats}
    for b in batch_sizes:
        hist = windows["latents"][:b, :n_hist]
        if len(hist) < b:
            hist = hist[torch.arange(b) % len(hist)]
        ctx = {"latents": hist}

        def policy_only():
            return model.uva.policy(ctx)

        def with_video():
            actions = model.uva.policy(ctx)
            latents = model.uva.forward_dynamics(ctx, actions)
            return model.decode(latents)

        with torch.inference_mode():
            out[f"batch_{b}"] = {name: median_ms(fn, repeats) for name, fn in
                                 (("policy_ms", policy_only), ("policy_video_decode_ms", with_video))}
    return out


def _table(title: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=title)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uva", required=True, help="UVA checkpoint directory (or a run's ckpt directory)")
    parser.add_argument("--vae", default=None, help="VAE checkpoint (default: the one the UVA names)")
    parser.add_argument("--store", required=True, help="the episode store the UVA was trained on")
    parser.add_argument("--n-windows", type=int, default=256)
    parser.add_argument("--n-steps", type=int, default=None, help="video unmasking steps (default: config)")
    parser.add_argument("--head-steps", type=int, default=None, help="video-head DDIM steps (default: config)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--action-steps", type=int, default=None, help="action-head DDIM steps (default: config)")
    parser.add_argument("--episodes", type=int, default=50, help="policy episodes (0 skips them)")
    parser.add_argument("--episode-seed", type=int, default=100_000, help="first seed of the policy episodes")
    parser.add_argument("--n-action-steps", type=int, default=8, help="policy actions executed per chunk")
    parser.add_argument("--latency-batches", type=int, nargs="*", default=[1, 32])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", nargs="*", default=[], choices=["vae", "dynamics", "inverse", "policy", "latency"])
    parser.add_argument("--state-head", default=None, help="state head checkpoint: pose error on imagined frames")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    if args.n_windows < 1 or args.episodes < 0 or args.batch < 1 or args.threads < 1:
        parser.error(f"need n-windows >= 1, episodes >= 0, batch >= 1, threads >= 1, got {vars(args)}")
    torch.set_num_threads(args.threads)
    revision = git_revision()
    torch.manual_seed(args.seed)
    model = UVAWorldModel.load(args.uva, args.vae, seed=args.seed)
    uva_meta = read_meta(resolve_checkpoint(args.uva))
    store = EpisodeStore.open(args.store)
    if store.meta["env_id"] != model.env_id:
        raise ValueError(f"{args.store} holds {store.meta['env_id']} data but the UVA was trained on {model.env_id}")
    windows = held_out_windows(model, store, uva_meta, args.n_windows, args.seed, args.vae or uva_meta['extra']['vae']['path'])
    result: dict = {"env_id": model.env_id,
                    "uva_checkpoint": str(resolve_checkpoint(args.uva)), "uva_step": uva_meta.get("step"),
                    "n_val_episodes": windows["n_val_episodes"]}
    out = Path(args.out)

    if "vae" not in args.skip:
        frames = windows["frames"].reshape(-1, *windows["frames"].shape[2:])
        result["vae"] = r = eval_vae(model, frames)
        _table(f"VAE reconstruction, held-out {model.env_id} frames",
               [("frames", str(r["n_frames"])), ("PSNR (dB)", f"{r['psnr_db']:.2f}"),
                ("PSNR p10 per frame (dB)", f"{r['psnr_db_per_frame_p10']:.2f}"),
                (f"foreground PSNR (dB, {100 * r['foreground_fraction']:.1f}% of pixels)",
                 f"{r['foreground_psnr_db']:.2f}")])
    if "dynamics" not in args.skip:
        r, preds = eval_dynamics(model, windows, args.n_steps, args.temperature, args.batch, args.seed,
                                    args.head_steps)
        result["dynamics"] = r
        table = Table(title=f"Future frames on {r['n_windows']} held-out windows ({r['n_steps']} unmasking steps)")
        for col in ("prediction", "latent MSE", "x copy-last", "decoded PSNR (dB)", "PSNR per frame"):
            table.add_column(col, justify="right" if col != "prediction" else "left")
        for name in ("forward_dynamics", "video_prediction", "copy_last_frame"):
            row = r[name]
            table.add_row(name, f"{row['latent_mse']:.4f}", f"{row.get('latent_mse_vs_copy_last', 1.0):.3f}",
                          f"{row['decoded_psnr_db']:.2f}", " ".join(f"{x:.1f}" for x in row["decoded_psnr_db_per_frame"]))
        table.add_row("VAE reconstruction (ceiling)", "", "", f"{r['vae_reconstruction_psnr_db']:.2f}", "")
        console.print(table)
    if args.state_head and "dynamics" not in args.skip:
        result["state_head"] = r = eval_state_head_imagined(args.state_head, model, windows, preds)
        table = Table(title=f"State head pose error on the {r['n_windows']} windows' future frames")
        for col in ("latents", "object", "xy mean (px)", "xy median (px)", "angle mean (deg)"):
            table.add_column(col)
        for source in ("real", "forward_dynamics", "copy_last_frame"):
            for key, row in r[source].items():
                if key.startswith("object"):
                    table.add_row(source, key, f"{row['xy_mean_px']:.1f}", f"{row['xy_median_px']:.1f}",
                                  f"{row['angle_mean_deg']:.1f}")
        console.print(table)
    if "inverse" not in args.skip:
        result["inverse_dynamics"] = r = eval_inverse(model, windows, args.batch, args.seed, args.action_steps)
        _table(f"Action error (px) on {r['n_windows']} held-out windows",
               [(f"{name} {stat}", f"{r[name][stat + '_px']:.1f}")
                for name in ("inverse_dynamics", "policy_from_history") for stat in ("mean", "median", "p90")])
    if "latency" not in args.skip:
        result["latency"] = r = eval_latency(model, windows, tuple(args.latency_batches), repeats=10)
        _table(f"Latency (median of 10, {r['threads']} threads)",
               [(f"B={b} {k}", f"{v:.1f}") for b in args.latency_batches for k, v in r[f"batch_{b}"].items()])
    if args.episodes and "policy" not in args.skip:
        from uva_plan.runner import run_episodes  # imported late: it pulls in gymnasium envs

        policy = UVAPolicy(model, n_action_steps=args.n_action_steps)
        runs = run_episodes(model.env_id, policy, args.episodes, seed=args.episode_seed,
                            env_kwargs={"render_size": model.image_size},
                            out_dir=out.with_suffix("") / "policy", n_gifs=2,
                            config={"evaluate": vars(args)}, title=f"UVA policy on {model.env_id}")
        result["policy"] = runs["summary"]
    write_json(out, result, config=vars(args), revision=revision)
    console.print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
