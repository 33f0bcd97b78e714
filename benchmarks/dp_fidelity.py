"""Fidelity to Diffusion Policy's Push-T physics: replay trajectories recorded with a literal
transcription of the original (tests/dp_reference.py) from their 5-d initial state, step by
step, and report the per-episode maximum state error.

    python benchmarks/dp_fidelity.py --n-episodes 50 --steps 80 --restore-mode episode
    python benchmarks/dp_fidelity.py --n-episodes 50 --steps 80 --restore-mode anchor
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.dp_reference import DPPushTReference, pushing_actions  # noqa: E402
from uva_plan.envs.pusht import PushTEnv  # noqa: E402
from uva_plan.io import git_revision  # noqa: E402
from uva_plan.report import write_json  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-episodes", type=int, default=50)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--restore-mode", default="episode", choices=["episode", "anchor"])
    parser.add_argument("--out", default=None, help="default outputs/bench/dp_fidelity_<mode>.json")
    args = parser.parse_args(argv)
    revision = git_revision()  # read before the run: the code that runs
    rng = np.random.default_rng(args.seed)
    errors, moved = [], []
    for _ in range(args.n_episodes):
        ref = DPPushTReference()
        init = np.array([*rng.integers(50, 450, 2), *rng.integers(180, 330, 2), rng.uniform(0, 2 * np.pi)], float)
        ref.set_state(init)
        recorded, actions = [], []
        for _ in range(args.steps):
            actions.append(pushing_actions(ref, 1, rng)[0])
            recorded.append(ref.obs())
        env = PushTEnv(render_mode=None, restore_mode=args.restore_mode)
        env.reset(options={"state": init})
        worst = 0.0
        for t, action in enumerate(actions):
            obs, *_ = env.step(action)
            err = np.abs(obs["state"] - recorded[t])
            err[4] = min(err[4], 2 * np.pi - err[4])
            worst = max(worst, float(err.max()))
        errors.append(worst)
        moved.append(float(np.linalg.norm(recorded[-1][2:4] - init[2:4])))
    errors = np.array(errors)
    summary = {"n_episodes": args.n_episodes, "steps": args.steps, "median_max_error": float(np.median(errors)),
               "p90_max_error": float(np.quantile(errors, 0.9)), "worst_max_error": float(errors.max()),
               "episodes_below_1e-6": int((errors < 1e-6).sum()), "episodes_below_1e-3": int((errors < 1e-3).sum()),
               "median_block_travel_px": float(np.median(moved))}
    table = Table(title="Replay of the original's Push-T trajectories (max |state error| per episode)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        table.add_row(key, f"{value:.3g}" if isinstance(value, float) else str(value))
    Console().print(table)
    write_json(args.out or f"outputs/bench/dp_fidelity_{args.restore_mode}.json",
               {"summary": summary, "errors": errors.tolist()}, config=vars(args), revision=revision)
    return summary


if __name__ == "__main__":
    main()
