"""Soak check: many consecutive ``Planner.plan`` calls must not grow memory.

    python benchmarks/soak.py [--n-calls 1000] [--warmup 100] [--out outputs/bench/soak.json]
    python benchmarks/soak.py --dynamics uva --n-samples 8 --n-action-steps 8   # the shipped UVA

A small CEM over ``SimulatorDynamics`` on Push-T (``PrivilegedState`` env), stepping the env
with each returned chunk and resetting when an episode ends. RSS (VmRSS) is read before the
first call, after the warm-up and at the end; tracemalloc (Python allocations only) tracks the
traced current/peak from the end of the warm-up on. Growth is judged from warm-up to end.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import tracemalloc

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import gymnasium as gym
import torch
from rich.console import Console
from rich.table import Table

import uva_plan.envs  # noqa: F401  (registers the envs)
from planners import CEM, BestOfN, Planner
from uva_plan.dynamics import PrivilegedState, SimulatorDynamics
from uva_plan.io import git_revision
from uva_plan.objectives import PushTSimObjective
from uva_plan.report import write_json

ENV_ID = "uva_plan/PushT-v0"


def rss_mib() -> float:
    """Resident set size of this process in MiB, from /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS line in /proc/self/status")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--n-samples", type=int, default=8)
    parser.add_argument("--n-iterations", type=int, default=2)
    parser.add_argument("--horizon", type=int, default=4)
    parser.add_argument("--n-action-steps", type=int, default=2)
    parser.add_argument("--dynamics", default="simulator", choices=["simulator", "uva"],
                        help="uva: the shipped UVA (DP-C proposals, state head) with a best-of-n_samples "
                             "planner, full horizon, 64 x 64 frames")
    parser.add_argument("--out", default=None, help="default outputs/bench/soak[_uva].json")
    args = parser.parse_args(argv)
    args.out = args.out or f"outputs/bench/soak{'_uva' if args.dynamics == 'uva' else ''}.json"
    if args.n_calls < 1 or not 0 <= args.warmup < args.n_calls:
        parser.error(f"need n_calls >= 1 and 0 <= warmup < n_calls, got {args.n_calls=}, {args.warmup=}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)
    revision = git_revision()
    if args.dynamics == "uva":
        from uva_plan import UVA

        env = gym.make(ENV_ID, render_size=64)
        optimizer = BestOfN(n_samples=args.n_samples, seed=0)
        planner = Planner(UVA.from_pretrained("pusht"), optimizer, n_action_steps=args.n_action_steps)
        args.horizon = planner.horizon
        kind = {"kind": "BestOfN over UVA (DP-C proposals, state head)", "n_samples": args.n_samples}
    else:
        env = PrivilegedState(gym.make(ENV_ID, render_size=16))
        optimizer = CEM(n_samples=args.n_samples, n_elites=2, n_iterations=args.n_iterations, seed=0)
        planner = Planner(SimulatorDynamics(ENV_ID), optimizer, objective=PushTSimObjective(),
                          horizon=args.horizon, n_action_steps=args.n_action_steps)
        kind = {"kind": "CEM over SimulatorDynamics", "n_samples": args.n_samples, "n_elites": 2,
                "n_iterations": args.n_iterations}
    obs, _ = env.reset(seed=0)
    planner.reset()
    n_episodes, episode_seed = 1, 0
    gc.collect()
    samples = {"before": rss_mib()}
    start = time.perf_counter()
    for call in range(1, args.n_calls + 1):
        for action in planner.plan(obs):
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                episode_seed += 1
                n_episodes += 1
                obs, _ = env.reset(seed=episode_seed)
                planner.reset()
                break
        if call == args.warmup:
            gc.collect()
            samples["after_warmup"] = rss_mib()
            tracemalloc.start()
    gc.collect()
    traced_current, traced_peak = tracemalloc.get_traced_memory() if tracemalloc.is_tracing() else (0, 0)
    tracemalloc.stop()
    samples["after_all"] = rss_mib()
    seconds = time.perf_counter() - start
    samples.setdefault("after_warmup", samples["before"])
    growth = samples["after_all"] - samples["after_warmup"]
    result = {
        "env_id": ENV_ID, "n_calls": args.n_calls, "warmup": args.warmup,
        "n_episodes": n_episodes, "optimizer": kind, "dynamics": args.dynamics,
        "horizon": args.horizon, "n_action_steps": args.n_action_steps, "seconds": seconds,
        "ms_per_call": 1000 * seconds / args.n_calls,
        "rss_mib": samples, "rss_growth_after_warmup_mib": growth,
        "tracemalloc_current_mib": traced_current / 2**20, "tracemalloc_peak_mib": traced_peak / 2**20,
    }
    table = Table(title=f"Soak: {args.n_calls} Planner.plan calls ({kind['kind']}, Push-T)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in samples.items():
        table.add_row(f"RSS {name.replace('_', ' ')} (MiB)", f"{value:.1f}")
    table.add_row("RSS growth after warm-up (MiB)", f"{growth:+.2f}")
    table.add_row("tracemalloc current / peak after warm-up (MiB)",
                  f"{result['tracemalloc_current_mib']:.2f} / {result['tracemalloc_peak_mib']:.2f}")
    table.add_row("episodes", str(n_episodes))
    table.add_row("ms per plan call", f"{result['ms_per_call']:.1f}")
    Console().print(table)
    write_json(args.out, result, config=vars(args), revision=revision)
    return result


if __name__ == "__main__":
    main()
