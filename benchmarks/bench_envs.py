"""Environment speed on one core: frames/s rendered, physics steps/s, env steps/s with render.

    python benchmarks/bench_envs.py [--out outputs/bench/envs.json]

Baselines measured in the same run: rendering without supersampling (aliased), and env steps
without rendering (``sim_step``).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import uva_plan  # noqa: E402,F401
from uva_plan.envs.pusht import PushTEnv  # noqa: E402
from uva_plan.io import git_revision  # noqa: E402
from uva_plan.report import write_json  # noqa: E402


def _rate(fn, n: int, repeats: int = 3) -> float:
    fn()  # warm-up (numba compilation, caches)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def env_classes() -> dict:
    classes = {"pusht": PushTEnv}
    try:
        from uva_plan.envs.blockpush import BlockPushEnv

        classes["blockpush"] = BlockPushEnv
    except ImportError:
        pass
    return classes


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="outputs/bench/envs.json")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    revision = git_revision()  # read before the run: the code that runs
    rng = np.random.default_rng(args.seed)
    results = {}
    for name, cls in env_classes().items():
        env = cls(render_size=64)
        env.reset(seed=args.seed)
        states = []
        for _ in range(64):
            env.step(rng.uniform(100, 412, 2))
            states.append(env.get_state()[: env.physical_dim])
        states = np.array(states)
        row = {}
        for size in (64, 96):
            row[f"render_{size}_fps"] = _rate(lambda: cls.render_states(states[:1], size), 300)
            row[f"render_{size}_batch64_fps"] = 64 * _rate(lambda: cls.render_states(states, size), 10)
            row[f"render_{size}_aliased_fps"] = _rate(lambda: cls.render_states(states[:1], size, supersample=1), 300)
        actions = rng.uniform(100, 412, (4000, 2))
        it = iter(range(10**9))
        # sim_step = 10 physics substeps + the task's bookkeeping, no observation or rendering.
        row["physics_substeps_per_s"] = 10 * _rate(lambda: env.sim_step(actions[next(it) % 4000]), 1000)
        row["env_steps_per_s_no_render"] = row["physics_substeps_per_s"] / 10
        env.reset(seed=args.seed)
        row["env_steps_per_s_with_render64"] = _rate(lambda: env.step(actions[next(it) % 4000]), 1000)
        results[name] = row
    table = Table(title="Environment speed (one core, best of 3)")
    table.add_column("metric")
    for name in results:
        table.add_column(name, justify="right")
    for key in next(iter(results.values())):
        table.add_row(key, *[f"{results[n][key]:,.0f}" for n in results])
    Console().print(table)
    write_json(args.out, {"results": results}, config=vars(args), revision=revision)
    return results


if __name__ == "__main__":
    main()
