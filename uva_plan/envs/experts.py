"""Scripted experts for both environments, and a command to measure them.

    python -m uva_plan.envs.experts --env pusht --n-episodes 100 --seed 0
    python -m uva_plan.envs.experts --env blockpush --n-episodes 100 --seed 0

Prints a rich table (success with its 95% Wilson interval, score, episode length, time) and
writes JSON with the config and git revision.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from rich.console import Console
from rich.table import Table

from uva_plan.envs.pusht_expert import PushTExpert
from uva_plan.io import git_revision
from uva_plan.metrics import wilson_interval
from uva_plan.report import write_json
from uva_plan.progress import progress_bar

ENV_IDS = {"pusht": "uva_plan/PushT-v0", "blockpush": "uva_plan/BlockPush-v0"}
# Play-data experts for forward-dynamics training data: a demonstrator with its ``explore``
# setting (PushTExpert: share of decisions that run a random primitive; BlockPushOracle:
# per-step probability of a straight-line detour).
EXPLORERS = {"pusht_explore": ("pusht", 0.5), "blockpush_explore": ("blockpush", 0.06)}


def make_expert(name: str, seed: int):
    """The expert for an environment name ('pusht' or 'blockpush')."""
    if name == "pusht":
        return PushTExpert(seed=seed)
    if name == "pusht_explore":
        return PushTExpert(seed=seed, explore=EXPLORERS[name][1])
    if name == "blockpush_explore":
        from uva_plan.envs.blockpush_expert import BlockPushOracle

        return BlockPushOracle(seed=seed, explore=EXPLORERS[name][1])
    if name == "blockpush":
        from uva_plan.envs.blockpush_expert import BlockPushOracle

        return BlockPushOracle(seed=seed)
    raise ValueError(f"unknown expert {name!r}; expected one of {sorted(ENV_IDS) + sorted(EXPLORERS)}")


def run_episode(env, expert, seed: int, options: dict | None = None) -> dict:
    obs, info = env.reset(seed=seed, options=options)
    expert.reset(env)
    steps, done = 0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(expert.act(env))
        steps += 1
        done = terminated or truncated
    out = {"seed": seed, "steps": steps, "success": bool(info["is_success"])}
    for key in ("max_coverage", "p1", "p2", "task_success"):
        if key in info:
            out[key] = float(info[key])
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", choices=sorted(ENV_IDS), required=True)
    parser.add_argument("--n-episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task", type=int, default=None, help="BlockPush assignment 0..3 (default none)")
    parser.add_argument("--out", default=None, help="JSON path (default outputs/experts/<env>.json)")
    args = parser.parse_args(argv)
    if args.n_episodes < 1:
        parser.error(f"--n-episodes must be >= 1, got {args.n_episodes}")
    import uva_plan  # noqa: F401  (registers the environments)

    revision = git_revision()  # read before the run: the code that runs
    env = gym.make(ENV_IDS[args.env])
    options = {"task": args.task} if args.task is not None else None
    rows, start = [], time.perf_counter()
    with progress_bar(console=Console(stderr=True)) as progress:
        bar = progress.add_task(f"{args.env} expert", total=args.n_episodes)
        for i in range(args.n_episodes):
            rows.append(run_episode(env, make_expert(args.env, args.seed + i), args.seed + i, options))
            progress.advance(bar)
    seconds = time.perf_counter() - start
    n_success = sum(r["success"] for r in rows)
    low, high = wilson_interval(n_success, len(rows))
    summary = {"env": ENV_IDS[args.env], "n_episodes": len(rows), "success_rate": n_success / len(rows),
               "success_wilson95": [low, high], "mean_steps": float(np.mean([r["steps"] for r in rows])),
               "seconds_per_episode": seconds / len(rows)}
    for key in ("max_coverage", "p1", "p2", "task_success"):
        if key in rows[0]:
            values = np.array([r[key] for r in rows])
            summary[f"mean_{key}"] = float(values.mean())
            if key == "max_coverage":
                summary["mean_score"] = float(np.clip(values / 0.95, 0, 1).mean())
    table = Table(title=f"{args.env} expert over {len(rows)} seeds from {args.seed}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("success", f"{summary['success_rate']:.3f} [{low:.3f}, {high:.3f}]")
    for key, value in summary.items():
        if key.startswith("mean_") or key == "seconds_per_episode":
            table.add_row(key, f"{value:.3f}")
    Console().print(table)
    out = Path(args.out or f"outputs/experts/{args.env}.json")
    write_json(out, {"summary": summary, "episodes": rows}, config=vars(args), revision=revision)
    return summary


if __name__ == "__main__":
    main()
