"""Collect expert demonstrations into an EpisodeStore: one command, resumable, parallel.

    python -m uva_plan.data.collect --env uva_plan/PushT-v0 --expert pusht --n-episodes 200 \\
        --out data/pusht --seed 0 --workers 2

Episode i resets the env with seed ``seed + i`` and builds its expert with seed ``seed + i``,
so every episode can be regenerated on its own and the data do not depend on ``--workers``.
Re-running a command skips the episodes already on disk; the store refuses to resume with a
different env, expert or seed. Workers only simulate; the parent writes every file, in index
order, so an interrupted run leaves whole episodes and a re-run fills in the rest.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import multiprocessing
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
from rich.console import Console
from rich.table import Table

import uva_plan  # noqa: F401  (registers the environments, also in spawned workers)
from uva_plan.data.store import EpisodeStore, atomic_write_json
from uva_plan.metrics import wilson_interval
from uva_plan.progress import progress_bar

EXPERTS = ("pusht", "pusht_explore", "blockpush", "blockpush_explore", "random")
# Scalar info entries recorded as episode metrics when the env reports them (final step).
INFO_METRICS = ("coverage", "max_coverage", "p1", "p2", "task_success")


class RandomExpert:
    """Uniformly random actions in the action space from its own seeded RNG.

    For tests and smoke runs only: it demonstrates nothing.
    """

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def reset(self, env: gym.Env) -> None:
        pass

    def act(self, env: gym.Env) -> np.ndarray:
        return self.rng.uniform(env.action_space.low, env.action_space.high)


def make_expert(name: str, env: gym.Env, seed: int):
    """The expert called ``name`` for ``env``: ``random`` (tests and smoke runs) or one of
    ``uva_plan.envs.experts`` (the current experts need only their seed)."""
    if name == "random":
        return RandomExpert(seed=seed)
    from uva_plan.envs import experts

    if name not in experts.ENV_IDS and name not in experts.EXPLORERS:
        raise ValueError(f"unknown expert {name!r}; choose one of {EXPERTS}")
    return experts.make_expert(name, seed)


def expert_config(expert) -> dict:
    """The expert's settings for meta.json: its ``config`` (dataclass or dict) if it has one,
    else its constructor's arguments other than the seed, read from the instance when it
    keeps them under the same name and otherwise their defaults (``make_expert`` passes none)."""
    config = getattr(expert, "config", None)
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    elif not isinstance(config, dict):
        params = inspect.signature(type(expert).__init__).parameters.values()
        config = {p.name: getattr(expert, p.name, p.default) for p in params
                  if p.name not in ("self", "seed") and p.default is not p.empty}
    # JSON-normalised, so that it compares equal to the copy read back on resume.
    return json.loads(json.dumps(config, default=lambda v: v.tolist() if hasattr(v, "tolist") else repr(v)))


class EpisodeRunner:
    """One env, built once, in which seeded expert episodes are run (in a worker or not)."""

    def __init__(self, env_id: str, env_kwargs: dict, expert: str, max_steps: int | None = None):
        kwargs = dict(env_kwargs)
        if max_steps is not None:
            kwargs["max_episode_steps"] = max_steps  # replaces the registered TimeLimit
        self.env = gym.make(env_id, **kwargs)
        if self.env.spec.max_episode_steps is None:
            raise ValueError(f"{env_id} has no time limit; pass max_steps so that episodes end")
        self.expert = expert
        self.physical_dim = int(self.env.unwrapped.physical_dim)

    def __call__(self, seed: int) -> dict:
        """Run one episode; returns the keyword arguments of ``EpisodeStore.write_episode``."""
        env, p = self.env, self.physical_dim
        expert = make_expert(self.expert, env, seed)
        env.reset(seed=seed)
        expert.reset(env)
        low, high = env.action_space.low, env.action_space.high
        states, actions, rewards = [], [], []
        success = terminated = truncated = False
        while not (terminated or truncated):
            states.append(env.unwrapped.get_state()[:p])
            # Stored as executed: the envs clip targets to the action space themselves.
            action = np.clip(np.asarray(expert.act(env), dtype=np.float64), low, high)
            _, reward, terminated, truncated, info = env.step(action)
            actions.append(action)
            rewards.append(float(reward))
            success = success or bool(info.get("is_success", False))
        metrics = {"success": success, "length": len(actions), "terminated": bool(terminated),
                   "max_reward": max(rewards)}
        metrics.update({k: info[k] for k in INFO_METRICS if k in info and np.ndim(info[k]) == 0})
        return {"states": np.array(states), "actions": np.array(actions),
                "final_state": env.unwrapped.get_state()[:p].copy(),
                "rewards": np.array(rewards), "seed": seed, "metrics": metrics}


_WORKER_RUNNER: EpisodeRunner | None = None


def _init_worker(env_id: str, env_kwargs: dict, expert: str, max_steps: int | None) -> None:
    global _WORKER_RUNNER
    _WORKER_RUNNER = EpisodeRunner(env_id, env_kwargs, expert, max_steps)


def _run_in_worker(task: tuple[int, int]) -> tuple[int, dict]:
    index, seed = task
    return index, _WORKER_RUNNER(seed)


def _episodes(runner: EpisodeRunner, tasks: list[tuple[int, int]], workers: int,
              init_args: tuple) -> Iterator[tuple[int, dict]]:
    """(index, episode) in index order, computed here or by ``workers`` processes."""
    if workers <= 1 or len(tasks) <= 1:
        for index, seed in tasks:
            yield index, runner(seed)
        return
    # spawn: workers inherit neither the store's lock nor numba/pymunk state of the parent.
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(tasks)), initializer=_init_worker, initargs=init_args) as pool:
        yield from pool.imap(_run_in_worker, tasks)


def collect(env_id: str, expert: str, n_episodes: int, out: str | Path, seed: int = 0,
            workers: int = 1, max_steps: int | None = None, env_kwargs: dict | None = None,
            console: Console | None = None) -> dict:
    """Collect episodes 0..n_episodes-1 into the store at ``out`` (resuming); returns the summary."""
    if n_episodes < 1 or workers < 1 or seed < 0 or (max_steps is not None and max_steps < 1):
        raise ValueError(f"need n_episodes >= 1, workers >= 1, seed >= 0, max_steps >= 1: got "
                         f"{n_episodes=}, {workers=}, {seed=}, {max_steps=}")
    env_kwargs = dict(env_kwargs or {})
    console = console or Console()
    started = time.perf_counter()
    runner = EpisodeRunner(env_id, env_kwargs, expert, max_steps)
    meta = {"env_id": env_id, "env_kwargs": env_kwargs, "expert": expert,
            "expert_config": expert_config(make_expert(expert, runner.env, seed)), "seed": seed,
            "max_episode_steps": runner.env.spec.max_episode_steps,
            "physical_dim": runner.physical_dim, "action_dim": int(runner.env.action_space.shape[0])}
    with EpisodeStore.create(out, meta) as store:
        todo = [i for i in range(n_episodes) if not store.has_episode(i)]
        done = sorted(set(range(n_episodes)) - set(todo))
        n_success = sum(bool(store.episode(i)["metrics"].get("success", False)) for i in done)
        if done:
            console.print(f"[bold]resuming[/] {out}: {len(done)} of {n_episodes} episodes already "
                          f"on disk, skipping them; {len(todo)} to collect")
        with progress_bar("success {task.fields[success]}", console=console) as progress:
            bar = progress.add_task(f"{expert} on {env_id}", total=n_episodes, completed=len(done),
                                    success=_rate(n_success, len(done)))
            tasks = [(i, seed + i) for i in todo]
            for index, episode in _episodes(runner, tasks, workers, (env_id, env_kwargs, expert, max_steps)):
                store.write_episode(index, **episode)
                n_success += bool(episode["metrics"]["success"])
                done.append(index)
                progress.update(bar, advance=1, success=_rate(n_success, len(done)))
        store.finalize()
        summary = summarise(store, time.perf_counter() - started, n_collected=len(todo))
        atomic_write_json(store.root / "collection.json", summary)
    console.print(summary_table(summary))
    return summary


def _rate(successes: int, n: int) -> str:
    return f"{successes}/{n} ({successes / n:.0%})" if n else "-"


def summarise(store: EpisodeStore, wall_time_s: float, n_collected: int) -> dict:
    """Numbers of collection.json over every episode in ``store``."""
    data = store.load()
    n = len(data["episode_ends"])
    n_success = int(np.sum(data["metrics"].get("success", np.zeros(n, dtype=bool))))
    low, high = wilson_interval(n_success, n)
    lengths = np.diff(data["episode_ends"], prepend=0)
    summary = {"root": str(store.root), "env_id": store.meta["env_id"], "expert": store.meta["expert"],
               "n_episodes": n, "n_collected_this_run": n_collected, "n_success": n_success,
               "success_rate": n_success / n if n else float("nan"), "success_ci95": [low, high],
               "mean_length": float(lengths.mean()) if n else float("nan"),
               "wall_time_s": wall_time_s, "disk_bytes": store.disk_bytes()}
    if "max_reward" in data["metrics"]:
        summary["mean_max_reward"] = float(np.mean(data["metrics"]["max_reward"]))
    return summary


def summary_table(summary: dict) -> Table:
    table = Table(title=f"{summary['expert']} on {summary['env_id']} -> {summary['root']}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    low, high = summary["success_ci95"]
    rows = [("episodes", f"{summary['n_episodes']} ({summary['n_collected_this_run']} this run)"),
            ("success rate", f"{summary['success_rate']:.3f}  95% CI [{low:.3f}, {high:.3f}]"),
            ("mean episode length", f"{summary['mean_length']:.1f}"),
            ("wall time", f"{summary['wall_time_s']:.1f} s"),
            ("store size", f"{summary['disk_bytes'] / 2**20:.2f} MiB")]
    if "mean_max_reward" in summary:
        rows.insert(3, ("mean max reward", f"{summary['mean_max_reward']:.3f}"))
    for row in rows:
        table.add_row(*row)
    return table


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m uva_plan.data.collect",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="uva_plan/PushT-v0", help="gymnasium env id")
    parser.add_argument("--env-kwargs", default="{}", type=json.loads, help="JSON dict of env kwargs")
    parser.add_argument("--expert", default="pusht", choices=EXPERTS)
    parser.add_argument("--n-episodes", type=int, required=True)
    parser.add_argument("--out", default=None, help="store directory (default: data/<expert>)")
    parser.add_argument("--seed", type=int, default=0, help="episode i uses seed + i")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=None,
                        help="override the env's time limit (tests and smoke runs)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    out = Path(args.out) if args.out is not None else Path("data") / args.expert
    try:
        return collect(args.env, args.expert, args.n_episodes, out, seed=args.seed, workers=args.workers,
                       max_steps=args.max_steps, env_kwargs=args.env_kwargs)
    except KeyboardInterrupt:
        Console(stderr=True).print(f"interrupted; the finished episodes are in {out}: "
                                   "re-run the same command to resume")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
