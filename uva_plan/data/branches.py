"""Counterfactual branches of DP-C rollouts: the data a world model needs to rank DP-C's chunks.

Demonstrations (and play data) pair each state with one future. A planner asks the world model
something else: at one state, which of several proposed chunks leads where. This collector runs
the DP-C proposer closed loop (as DP-C alone does) and, at every replanning step, runs
``branches`` freshly sampled chunks of ``horizon`` actions from the same exact simulator state
(``get_state`` / ``set_state``). Each branch is written as one episode of the store:

- the ``prefix`` steps before the branch point, as executed (padded with the episode's first
  state when the branch point is earlier; the same edge padding the window sampler applies), so
  that a UVA window anchored at step ``prefix`` has real history frames;
- then the branch's ``horizon`` steps and the state after its last action.

DP-C episode ``j`` owns store indices ``j * block .. (j + 1) * block - 1``; its own executed
trajectory is written last, at the block's last index, and marks the episode done, so a killed
run resumes from the first unfinished episode. ``meta.json`` records ``branch_t = prefix``: the
one anchor of each branch episode whose window is a counterfactual (``uva_plan.train`` samples
only that anchor of a branch store).

    python -m uva_plan.data.branches --env pusht --n-episodes 60 --out data/pusht_branches --seed 700000
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

import uva_plan  # noqa: F401  (registers the envs)
from uva_plan import hub
from uva_plan.data.store import EpisodeStore
from uva_plan.io import atomic_write_json
from uva_plan.progress import progress_bar

console = Console()


def episode_block(max_steps: int, n_action_steps: int, branches: int) -> int:
    """Store indices one DP-C episode owns: its replanning steps' branches, then itself."""
    return math.ceil(max_steps / n_action_steps) * branches + 1


def _prefixed(states: list[np.ndarray], actions: list[np.ndarray], prefix: int) -> tuple[list, list]:
    """The last ``prefix`` (state, action) pairs, edge-padded at the front with the first ones."""
    states, actions = states[-prefix:], actions[-prefix:]
    missing = prefix - len(states)
    return [states[0]] * missing + states, [actions[0]] * missing + actions


def run_episode(env: gym.Env, policy, seed: int, branches: int, horizon: int, prefix: int,
                n_action_steps: int) -> tuple[list[dict], dict]:
    """One DP-C episode with its branches: (branch episodes, the executed episode).

    ``policy`` is a ``DPCPolicy`` (its ``proposer`` samples the chunks). Each returned dict holds
    the keyword arguments of ``EpisodeStore.write_episode``.
    """
    base = env.unwrapped
    p = int(base.physical_dim)
    proposer, unnormalize = policy.proposer, policy.proposer.normalizers["actions"].unnormalize
    low, high = env.action_space.low, env.action_space.high
    obs, info = env.reset(seed=seed)
    policy.reset()
    states, actions, rewards, out = [], [], [], []
    done, success, t = False, bool(info.get("is_success", False)), 0
    while not done:
        policy.observe(obs)
        chunks = proposer.sample(policy.context(), branches)  # (B, H, A) normalised
        chunks = np.clip(unnormalize(chunks.double().cpu().numpy()), low, high)
        here = base.get_state().copy()
        for b in range(branches):
            # A branch needs a prefix; before the first executed step the state itself stands in.
            head_states, head_actions = _prefixed(states or [here[:p]], actions or [chunks[b, 0]], prefix)
            branch_states, branch_rewards = [], []
            for action in chunks[b, :horizon]:
                branch_states.append(base.get_state()[:p].copy())
                # The unwrapped env: a branch must not advance the TimeLimit wrapper's step count.
                _, reward, terminated, _, _ = base.step(action)
                branch_rewards.append(float(reward))
                if terminated:  # a solved task ends the branch early, as it would end an episode
                    break
            n = len(branch_states)
            out.append({"states": np.array(head_states + branch_states), "actions": np.array(head_actions + list(chunks[b, :n])),
                        "final_state": base.get_state()[:p].copy(),
                        "rewards": np.array([0.0] * prefix + branch_rewards), "seed": seed,
                        "metrics": {"branch_t": prefix, "t": t, "branch": b, "max_reward": max(branch_rewards)}})
            base.set_state(here)
        for k, action in enumerate(chunks[0, :n_action_steps]):  # DP-C alone executes its first sample
            states.append(base.get_state()[:p].copy())
            obs, reward, terminated, truncated, info = env.step(action)
            actions.append(action)
            rewards.append(float(reward))
            success = success or bool(info.get("is_success", False))
            t += 1
            done = terminated or truncated
            if done:
                break
            if k < n_action_steps - 1:  # the chunk's last observation is the next plan's (run_episode)
                policy.observe(obs)
    executed = {"states": np.array(states), "actions": np.array(actions), "final_state": base.get_state()[:p].copy(),
                "rewards": np.array(rewards), "seed": seed,
                "metrics": {"success": success, "length": len(actions), "max_reward": max(rewards), "branch_t": -1}}
    return out, executed


def collect_branches(env: str, n_episodes: int, out: str | Path, seed: int = 700000, branches: int = 4,
                     horizon: int = 16, prefix: int = 12, n_action_steps: int = 8, dpc: str | None = None,
                     vae: str | None = None, max_steps: int | None = None, threads: int | None = None) -> dict:
    """Collect ``n_episodes`` DP-C episodes (seeds ``seed + j``) and their branches into ``out``."""
    from uva_plan.controllers import DPCPolicy
    from uva_plan.evaluate_dpc import load_proposer  # models import diffusers: only when used

    if env not in hub.ENVS:
        raise ValueError(f"env must be one of {sorted(hub.ENVS)}, got {env!r}")
    for name, value, minimum in (("n_episodes", n_episodes, 1), ("branches", branches, 1), ("horizon", horizon, 1),
                                 ("prefix", prefix, 1), ("n_action_steps", n_action_steps, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {name}={value!r}")
    if threads:
        torch.set_num_threads(threads)
    env_id = hub.ENVS[env]
    dpc = dpc or str(hub.pretrained_checkpoint(f"{env}/dpc"))
    vae = vae or str(hub.pretrained_checkpoint("vae"))
    proposer, dpc_meta = load_proposer(dpc, vae=vae, seed=seed)
    policy = DPCPolicy(proposer, n_action_steps=n_action_steps)
    kwargs = {"render_size": proposer.vae.config.image_size if proposer.vae is not None else 64}
    if max_steps is not None:
        kwargs["max_episode_steps"] = max_steps
    sim = gym.make(env_id, **kwargs)
    limit = int(sim.spec.max_episode_steps)
    block = episode_block(limit, n_action_steps, branches)
    meta = {"env_id": env_id, "env_kwargs": {}, "expert": "dpc_branches", "seed": seed, "branches": branches,
            "horizon": horizon, "prefix": prefix, "branch_t": prefix, "n_action_steps": n_action_steps,
            "block": block, "max_episode_steps": limit, "dpc": dpc, "dpc_weights_sha256": next(iter(dpc_meta["files"].values()))["sha256"],
            "physical_dim": int(sim.unwrapped.physical_dim), "action_dim": int(sim.action_space.shape[0])}
    started = time.perf_counter()
    n_branches = n_success = 0
    with EpisodeStore.create(out, meta) as store:
        todo = [j for j in range(n_episodes) if not store.has_episode((j + 1) * block - 1)]
        if len(todo) < n_episodes:
            console.print(f"[bold]resuming[/] {out}: {n_episodes - len(todo)} of {n_episodes} DP-C episodes done")
        with progress_bar("DP-C success {task.fields[success]}", console=console) as progress:
            bar = progress.add_task(f"DP-C branches on {env_id}", total=n_episodes,
                                    completed=n_episodes - len(todo), success="-")
            for k, j in enumerate(todo):
                proposer.seed = seed + j  # each episode's candidates come from its own seed: resumable
                branch_episodes, executed = run_episode(sim, policy, seed + j, branches, horizon, prefix, n_action_steps)
                for b, episode in enumerate(branch_episodes):
                    store.write_episode(j * block + b, **episode, overwrite=True)
                store.write_episode((j + 1) * block - 1, **executed, overwrite=True)
                n_branches += len(branch_episodes)
                n_success += bool(executed["metrics"]["success"])
                progress.update(bar, advance=1, success=f"{n_success}/{k + 1}")
        store.finalize()
        summary = {"env_id": env_id, "n_dpc_episodes": n_episodes, "n_collected": len(todo),
                   "n_branches_collected": n_branches, "n_store_episodes": len(store),
                   "dpc_success_collected": n_success, "wall_time_s": time.perf_counter() - started, **meta}
        atomic_write_json(store.root / "collection.json", summary)
    table = Table(title=f"DP-C branches: {out}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in ("n_dpc_episodes", "n_collected", "n_branches_collected", "n_store_episodes", "dpc_success_collected"):
        table.add_row(key, str(summary[key]))
    table.add_row("wall time", f"{summary['wall_time_s']:.1f} s")
    console.print(table)
    return summary


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m uva_plan.data.branches", description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="pusht", choices=sorted(hub.ENVS))
    parser.add_argument("--n-episodes", type=int, required=True, help="DP-C episodes (seeds seed, seed + 1, ...)")
    parser.add_argument("--out", required=True, help="store directory")
    parser.add_argument("--seed", type=int, default=700000)
    parser.add_argument("--branches", type=int, default=4, help="chunks run from each replanning state")
    parser.add_argument("--horizon", type=int, default=16)
    parser.add_argument("--prefix", type=int, default=12, help="executed steps kept before each branch")
    parser.add_argument("--n-action-steps", type=int, default=8)
    parser.add_argument("--dpc", default=None, help="DP-C checkpoint (default: the shipped one)")
    parser.add_argument("--vae", default=None, help="its VAE (default: the shipped one)")
    parser.add_argument("--max-steps", type=int, default=None, help="override the env's time limit (tests)")
    parser.add_argument("--threads", type=int, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        return collect_branches(args.env, args.n_episodes, args.out, seed=args.seed, branches=args.branches,
                                horizon=args.horizon, prefix=args.prefix, n_action_steps=args.n_action_steps,
                                dpc=args.dpc, vae=args.vae, max_steps=args.max_steps, threads=args.threads)
    except KeyboardInterrupt:
        Console(stderr=True).print(f"interrupted; finished DP-C episodes are in {args.out}: re-run to resume")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
