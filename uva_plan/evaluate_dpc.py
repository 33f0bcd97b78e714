"""Evaluate a trained DP-C (and optionally a state head) as a controller and as a proposer.

    python -m uva_plan.evaluate_dpc --dpc outputs/train/dpc_blockpush/final --episodes 200 \\
        --out outputs/eval/dpc_blockpush.json

Sections, printed as rich tables and saved with the arguments and git revision in one JSON:

- ``policy``: DP-C alone as the controller (one chunk per call, ``--n-action-steps`` executed)
  over ``--episodes`` seeds from ``--episode-seed``: score / success, and on BlockPush p1, p2
  and the rate of each (block, target) assignment (``entered_task{2 block + target}``).
- ``latency``: one batched call that samples ``--n-candidates`` chunks (median of 10).
- ``diversity``: at the first state of ``--diversity-states`` episodes, ``--n-candidates``
  chunks: the spread of their end points (px) and, on BlockPush, how the candidates split
  between the two blocks (the block nearest each chunk's end point).
- ``state_head`` (with ``--state-head``): pose error on held-out real latents (px, degrees).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from uva_plan.checkpoint import load_model, read_meta, resolve_checkpoint
from uva_plan.controllers import DPCPolicy
from uva_plan.dynamics import PrivilegedState
from uva_plan.io import atomic_write_json, git_revision
from uva_plan.metrics import median_ms
from uva_plan.proposers import DPCProposer

console = Console()


def load_proposer(path: str, vae: str | None = None, seed: int = 0, **kwargs) -> tuple[DPCProposer, dict]:
    """A DPCProposer from a DP-C checkpoint, with the VAE it was trained on (latent mode);
    ``kwargs`` go to ``DPCProposer`` (``n_sample_steps``, ``timestep_spacing``)."""
    meta = read_meta(resolve_checkpoint(path))
    vae_model = None
    if meta["config"].get("obs_mode", "latent") == "latent":
        vae_path = vae or meta["extra"]["vae"]["path"]
        vae_model, _ = load_model(vae_path, expected_kind="vae")
    return DPCProposer.from_checkpoint(path, vae=vae_model, seed=seed, **kwargs), meta


def _make_env(policy: DPCPolicy, env_id: str, render_size: int) -> gym.Env:
    env = gym.make(env_id, render_size=render_size)
    return PrivilegedState(env) if policy.needs_sim_state else env


def diversity(policy: DPCPolicy, env_id: str, render_size: int, n_states: int, n: int, seed: int) -> dict:
    env = _make_env(policy, env_id, render_size)
    spreads, shares, distinct = [], [], []
    for i in range(n_states):
        obs, _ = env.reset(seed=seed + i)
        policy.reset()
        policy.observe(obs)
        chunks = policy.proposer.sample(policy.context(), n)
        ends = policy.proposer.normalizers["actions"].unnormalize(chunks[:, -1].double().numpy())  # (n, 2) px
        spreads.append(float(np.linalg.norm(ends - ends.mean(0), axis=1).mean()))
        if "blockpush" in env_id.lower():
            state = np.asarray(obs["state"], dtype=np.float64)
            b0, b1 = state[2:4], state[5:7]  # the blocks' centres (BlockPush's observed state layout)
            nearer = np.where(np.linalg.norm(ends - b0, axis=1) <= np.linalg.norm(ends - b1, axis=1), 0, 1)
            shares.append(float(nearer.mean()))
            distinct.append(int(len(np.unique(nearer))))
    out = {"n_states": n_states, "n_candidates": n, "mean_endpoint_spread_px": float(np.mean(spreads))}
    if shares:
        out["mean_share_heading_to_block1"] = float(np.mean(shares))
        out["states_with_both_blocks_targeted"] = int(sum(d == 2 for d in distinct))
    return out


def latency(policy: DPCPolicy, env_id: str, render_size: int, n: int, repeats: int = 10) -> dict:
    env = _make_env(policy, env_id, render_size)
    obs, _ = env.reset(seed=0)
    policy.reset()
    policy.observe(obs)
    context = policy.context()
    ms = median_ms(lambda: policy.proposer.sample(context, n), repeats)
    return {"n_candidates": n, "median_ms": ms, "threads": torch.get_num_threads()}


def eval_state_head(path: str, store_root: str, n_frames: int, seed: int) -> dict:
    """Pose errors of a state head on held-out real latents of its store (px and degrees)."""
    from uva_plan.data.latents import load_latents
    from uva_plan.data.sampler import episode_frame_rows, train_val_split
    from uva_plan.data.store import EpisodeStore
    from uva_plan.models.state_head import pose_targets

    head, meta = load_model(path, expected_kind="state_head")
    store = EpisodeStore.open(store_root)
    data = store.load()
    cfg = meta["extra"]["train_config"]["data"]
    _, val_eps = train_val_split(len(data["episode_ends"]), cfg["val_fraction"], cfg["split_seed"])
    latents, _ = load_latents(store.root, meta["extra"]["vae"]["path"], data=data)
    rows, table = episode_frame_rows(data, val_eps)
    rows = np.random.default_rng(seed).choice(rows, size=min(n_frames, len(rows)), replace=False)
    with torch.inference_mode():
        pred = head.predict(torch.from_numpy(latents[rows].astype(np.float32))).double().numpy()
    return pose_errors(meta["env_id"], pred, pose_targets(meta["env_id"], table[rows]))


def pose_errors(env_id: str, pred: np.ndarray, true: np.ndarray) -> dict:
    """Mean / median position error (px) and angle error (degrees; blocks modulo 90 degrees)."""
    period = np.pi / 2 if "blockpush" in env_id.lower() else 2 * np.pi
    out = {"n_frames": len(pred)}
    for k in range(pred.shape[1] // 3):
        xy = np.linalg.norm(pred[:, 3 * k: 3 * k + 2] - true[:, 3 * k: 3 * k + 2], axis=1)
        d = np.abs((pred[:, 3 * k + 2] - true[:, 3 * k + 2] + period / 2) % period - period / 2)
        out[f"object{k}"] = {"xy_mean_px": float(xy.mean()), "xy_median_px": float(np.median(xy)),
                             "angle_mean_deg": float(np.degrees(d).mean()),
                             "angle_median_deg": float(np.degrees(np.median(d)))}
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dpc", required=True, help="DP-C checkpoint directory")
    parser.add_argument("--vae", default=None, help="VAE checkpoint (default: the one the DP-C names)")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--episode-seed", type=int, default=100_000)
    parser.add_argument("--n-action-steps", type=int, default=8)
    parser.add_argument("--n-candidates", type=int, default=100)
    parser.add_argument("--diversity-states", type=int, default=20)
    parser.add_argument("--state-head", default=None, help="state head checkpoint to evaluate too")
    parser.add_argument("--store", default=None, help="the state head's store (default: its checkpoint's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-sample-steps", type=int, default=None,
                        help="DDIM steps per draw (default the checkpoint's 10; 5 is the planners' speed option)")
    parser.add_argument("--timestep-spacing", choices=("leading", "trailing"), default=None,
                        help="DDIM timestep spacing (default leading, as trained; trailing suits few steps)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.episodes < 0 or args.n_candidates < 1 or args.threads < 1 or args.diversity_states < 0:
        parser.error(f"need episodes >= 0, n-candidates >= 1, threads >= 1, got {vars(args)}")
    torch.set_num_threads(args.threads)
    revision = git_revision()
    proposer, meta = load_proposer(args.dpc, args.vae, args.seed, n_sample_steps=args.n_sample_steps,
                                   timestep_spacing=args.timestep_spacing)
    env_id = meta["env_id"]
    render_size = proposer.vae.config.image_size if proposer.vae is not None else 64
    policy = DPCPolicy(proposer, args.n_action_steps)
    out = Path(args.out)
    result: dict = {"args": vars(args), "git_revision": revision, "env_id": env_id,
                    "dpc_checkpoint": str(resolve_checkpoint(args.dpc)), "dpc_step": meta.get("step")}
    result["latency"] = lat = latency(policy, env_id, render_size, args.n_candidates)
    console.print(f"DP-C: {lat['n_candidates']} candidates in {lat['median_ms']:.1f} ms ({lat['threads']} threads)")
    if args.diversity_states:
        result["diversity"] = div = diversity(policy, env_id, render_size, args.diversity_states,
                                              args.n_candidates, args.episode_seed)
        console.print(f"diversity: {div}")
    if args.state_head:
        store = args.store or read_meta(resolve_checkpoint(args.state_head))["extra"]["store"]
        result["state_head"] = sh = eval_state_head(args.state_head, store, 2000, args.seed)
        table = Table(title=f"State head on {sh['n_frames']} held-out real latents")
        for col in ("object", "xy mean (px)", "xy median (px)", "angle mean (deg)", "angle median (deg)"):
            table.add_column(col)
        for key, row in sh.items():
            if key.startswith("object"):
                table.add_row(key, *(f"{row[k]:.1f}" for k in ("xy_mean_px", "xy_median_px", "angle_mean_deg",
                                                                  "angle_median_deg")))
        console.print(table)
    if args.episodes:
        from uva_plan.runner import run_episodes

        runs = run_episodes(env_id, policy, args.episodes, seed=args.episode_seed,
                            env_kwargs={"render_size": render_size}, out_dir=out.with_suffix("") / "policy",
                            n_gifs=2, config={"evaluate_dpc": vars(args)}, title=f"DP-C alone on {env_id}")
        result["policy"] = runs["summary"]
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, result)
    console.print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
