"""Receding-horizon episodes of any planner on any registered environment.

``run_episodes`` resets the env with consecutive seeds, asks the planner for an action chunk,
executes it (stopping early when the episode ends), and records per-episode metrics, the
milliseconds of every ``plan`` call, and a GIF of the real frames (with the imagined frames
beside them when the dynamics imagines video). The summary carries 95% Wilson intervals and
is written as JSON together with the config and the code's git revision.
"""

from __future__ import annotations

import json
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from rich.console import Console
from rich.table import Table

from uva_plan.dynamics import PrivilegedState, SimulatorDynamics
from uva_plan.fingerprint import describe, differing_keys
from uva_plan.io import jsonable, atomic_write_json, git_revision, write_gif
from uva_plan.metrics import wilson_interval
from uva_plan.report import write_json
from uva_plan.progress import progress_bar

console = Console()
_RATE_KEYS = ("success", "p1", "p2", "task_success", "entered_task0", "entered_task1", "entered_task2",
              "entered_task3")


def _episode_metrics(info: dict, steps: int, ever_success: bool) -> dict:
    out: dict[str, Any] = {"steps": steps, "success": bool(ever_success or info.get("is_success", False))}
    if "max_coverage" in info:
        out["max_coverage"] = float(info["max_coverage"])
        out["score"] = float(min(info["max_coverage"] / 0.95, 1.0))
        out["success"] = bool(info["max_coverage"] > 0.95)
    for key in ("p1", "p2", "task_success"):
        if key in info:
            out[key] = bool(info[key])
    if "entered" in info:  # BlockPush: which (block, target) pairs happened, task k = 2 block + target
        for k, entered in enumerate(np.asarray(info["entered"], dtype=bool).ravel()):
            out[f"entered_task{k}"] = bool(entered)
    return out


def check_chunk(chunk: Any, action_dim: int) -> np.ndarray:
    """A controller's output as a float64 (n, action_dim) array with n >= 1, all finite; else a
    ValueError naming it (an empty chunk would leave the env where it is, and the episode would
    never end)."""
    array = np.asarray(chunk) if chunk is not None else None
    if array is None or array.dtype.kind not in "iuf":
        raise ValueError(f"the controller's plan() must return a real-valued action chunk (n, {action_dim}), "
                         f"got chunk={chunk!r}")
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] != action_dim:
        raise ValueError(f"the controller's plan() must return an action chunk of shape (n >= 1, {action_dim}), "
                         f"got chunk of shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"the controller's plan() returned a chunk with non-finite actions (NaN or inf): {array!r}")
    return array.astype(np.float64)


def run_episode(env: gym.Env, planner, seed: int, options: dict | None = None,
                record_frames: bool = False) -> tuple[dict, list[np.ndarray]]:
    """One episode; returns (metrics, frames). ``planner`` needs ``reset()`` and ``plan(obs)``, which
    returns an (n >= 1, A) chunk of finite actions (``check_chunk``)."""
    action_dim = int(np.prod(env.action_space.shape))
    obs, info = env.reset(seed=seed, options=options)
    planner.reset()
    frames = [obs["image"]] if record_frames else []
    plan_ms: list[float] = []
    evaluations: list[int] = []
    steps, done, ever_success = 0, False, bool(info.get("is_success", False))
    while not done:
        start = time.perf_counter()
        chunk = check_chunk(planner.plan(obs), action_dim)
        plan_ms.append(1000 * (time.perf_counter() - start))
        result = getattr(planner, "last_result", None)
        if result is not None:
            evaluations.append(int(result.info.get("n_evaluations", 0)))
        imagined = _imagine(planner) if record_frames else None
        observe = getattr(planner, "observe", None)
        for k, action in enumerate(chunk):
            obs, reward, terminated, truncated, info = env.step(action)
            steps += 1
            ever_success |= bool(info.get("is_success", False))
            if record_frames:
                frames.append(obs["image"] if imagined is None else
                              _side_by_side(obs["image"], imagined[min(k // planner.model.stride, len(imagined) - 1)]))
            done = terminated or truncated
            if done:
                break
            if observe is not None and k < len(chunk) - 1:  # the last obs goes to plan()
                observe(obs)
    if record_frames and len(frames) > 1 and frames[1].shape != frames[0].shape:  # imagined beside real
        frames[0] = _side_by_side(frames[0], np.full_like(frames[0], 255))
    metrics = _episode_metrics(info, steps, ever_success)
    metrics.update(seed=seed, n_plans=len(plan_ms), ms_per_plan=float(np.mean(plan_ms)))
    if "state" in obs:  # where everything ended (Push-T: agent xy, T xy, angle; BlockPush: see its env)
        metrics["final_state"] = [float(x) for x in np.asarray(obs["state"]).ravel()]
    if evaluations:
        metrics["evaluations_per_plan"] = float(np.mean(evaluations))
    return metrics, frames


def _imagine(planner) -> np.ndarray | None:
    """UVA's imagined frames (T, S, S, 3) of the plan just chosen, when the planner's model
    imagines video (has ``decode``); None otherwise. The model's sampling generator is put back
    afterwards, so recording a GIF does not change the episode."""
    model, result = getattr(planner, "model", None), getattr(planner, "last_result", None)
    context = getattr(planner, "last_context", None)
    if result is None or context is None or not callable(getattr(model, "decode", None)) \
            or not hasattr(model, "generator"):
        return None
    state = model.generator.get_state()
    try:  # the plan's own context: its frames are not encoded again
        latents = model.rollout(context, result.actions[None].to(context.device)).latents[0]
        return model.decode(latents)
    finally:
        model.generator.set_state(state)


def _side_by_side(real: np.ndarray, imagined: np.ndarray) -> np.ndarray:
    """[real | imagined] with the imagined frame scaled (nearest) to the real frame's size."""
    if imagined.shape[0] != real.shape[0]:
        rows = np.arange(real.shape[0]) * imagined.shape[0] // real.shape[0]
        cols = np.arange(real.shape[1]) * imagined.shape[1] // real.shape[1]
        imagined = imagined[rows][:, cols]
    gap = np.full((real.shape[0], 2, 3), 255, dtype=np.uint8)
    return np.concatenate([real, gap, imagined], axis=1)


def summarize(episodes: list[dict]) -> dict:
    """Means of every metric, and rates with 95% Wilson intervals."""
    summary: dict[str, Any] = {"n_episodes": len(episodes)}
    for key in episodes[0]:
        values = [e[key] for e in episodes if key in e]
        if key in _RATE_KEYS:
            k = int(sum(values))
            summary[key] = k / len(values)
            summary[f"{key}_wilson95"] = list(wilson_interval(k, len(values)))
        elif key not in ("seed", "task") and isinstance(values[0], (int, float)):
            summary[f"mean_{key}"] = float(np.mean(values))
    return summary


# Config keys that do not change what an episode does: episodes recorded under other values
# of these are reused on resume (threads and workers change only the timing columns, the rest
# where the files go).
_VOLATILE_CONFIG = ("git_revision", "threads", "workers", "n_episodes", "trials_per_task", "n_gifs", "resume",
                    "out_dir")
PARTIAL = "episodes.partial.json"


def run_fingerprint(env_id: str, seed: int, env_kwargs: dict | None, tasks: list[int] | None,
                    config: dict | None, controller: Any = None) -> dict:
    """What must match for a stored episode to count again: the env, its kwargs, the first seed
    (episode i runs seed + i, task i mod len(tasks)), the config without the timing keys, and
    the controller (``fingerprint.describe``: its type, settings, objective, proposer and the
    sha256 of its models' weights; for ``make_planner`` alone, that callable and its arguments)."""
    kept = {k: v for k, v in (config or {}).items() if k not in _VOLATILE_CONFIG}
    raw = {"env_id": env_id, "seed": seed, "env_kwargs": env_kwargs or {}, "tasks": tasks, "config": kept,
           "controller": describe(controller)}
    return json.loads(json.dumps(raw, default=jsonable))  # as it reads back from disk


def check_out_dir(out_dir: Path) -> None:
    """Create ``out_dir`` and write (then remove) a probe file in it, so that a run that could
    not save its results fails before its first episode, with a ValueError naming the path."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write_probe"):
            pass
    except OSError as error:
        raise ValueError(f"out_dir must be a writable directory, got out_dir={str(out_dir)!r} ({error})") from error


def _stored_episodes(out_dir: Path, fingerprint: dict) -> dict[int, dict]:
    """Episodes of earlier runs in out_dir (results.json and the per-episode partial file), by
    seed. Episodes of a run with another fingerprint are never mixed in nor overwritten: a
    ValueError names the file and the keys that differ."""
    found: dict[int, dict] = {}
    for name in ("results.json", PARTIAL):
        path = out_dir / name
        stored = _read_run_file(path) if path.exists() else None
        if stored is None:
            continue
        if stored["fingerprint"] != fingerprint:
            keys = differing_keys(stored["fingerprint"], fingerprint)
            shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
            raise ValueError(f"{path} holds the episodes of a different run (it differs in {shown}); pick another "
                             "out_dir, or delete the file to start afresh")
        found.update({int(e["seed"]): e for e in stored["episodes"]})
    return found


def _read_run_file(path: Path) -> dict | None:
    """A results or partial file: {"fingerprint": {...}, "episodes": [{"seed": int, ...}, ...]};
    None for a JSON object without a fingerprint (not written by ``run_episodes``); a damaged
    one raises a ValueError naming its path."""
    try:
        stored = json.loads(path.read_text())
        if isinstance(stored, dict) and "fingerprint" not in stored:
            return None
        if not isinstance(stored, dict) or not isinstance(stored["fingerprint"], dict):
            raise ValueError("its fingerprint is not a JSON object")
        episodes = stored.get("episodes")
        if not isinstance(episodes, list) or not all(isinstance(e, dict) and isinstance(e.get("seed"), int)
                                                     for e in episodes):
            raise ValueError("no list of episodes with seeds")
    except (ValueError, OSError) as error:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"the resume file {path} is damaged ({error}): delete it, or pick another out_dir") from error
    return stored


def run_episodes(env_id: str, planner, n_episodes: int, seed: int = 0, *,
                 env_kwargs: dict | None = None, tasks: list[int] | None = None,
                 out_dir: str | Path | None = None, n_gifs: int = 1, config: dict | None = None,
                 title: str | None = None, resume: bool = False, workers: int = 1,
                 make_planner: Callable[[], Any] | None = None, worker_threads: int = 1) -> dict:
    """Run ``n_episodes`` with seeds ``seed, seed + 1, ...``; ``tasks`` (BlockPush) cycles the
    named assignment over episodes. Writes ``results.json`` and GIFs into ``out_dir``.

    Every episode starts from ``planner.reset()`` and its own env seed, so it does not depend on
    the episodes before it. That allows two things:
    - ``resume``: each finished episode is saved at once (``out_dir/episodes.partial.json``,
      atomically); a rerun with the same env, seed, config and controller (``run_fingerprint``)
      reuses every stored episode and runs only the missing ones, so a killed run loses at most
      the episode it was in, and a longer run extends a shorter one. An ``out_dir`` that holds
      another run's episodes is refused (resume or not): runs never mix, nor overwrite each other.
    - ``workers`` > 1: the missing episodes run in that many processes (``worker_threads`` torch
      threads each), each building its own controller with ``make_planner`` (picklable, e.g. a
      module-level function or ``functools.partial`` of one); ``planner`` may then be None.
    """
    if not isinstance(n_episodes, int) or isinstance(n_episodes, bool) or n_episodes < 1:
        raise ValueError(f"n_episodes must be an int >= 1, got {n_episodes=}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers=}")
    if workers > 1 and make_planner is None:
        raise ValueError(f"workers={workers} needs make_planner (each process builds its own controller)")
    if planner is None and make_planner is None:
        raise ValueError("run_episodes needs a planner (or make_planner)")
    if resume and out_dir is None:
        raise ValueError("resume=True needs an out_dir to keep the finished episodes in")
    revision = git_revision()  # the code that runs, read before the (long) run starts
    out_dir = Path(out_dir) if out_dir is not None else None
    fingerprint = run_fingerprint(env_id, seed, env_kwargs, tasks, config,
                                  controller=planner if planner is not None else make_planner)
    stored = {}
    if out_dir is not None:
        check_out_dir(out_dir)
        stored = _stored_episodes(out_dir, fingerprint)  # refuses another run's files
        stored = stored if resume else {}
    todo = [i for i in range(n_episodes) if seed + i not in stored]
    if stored:
        console.print(f"[dim]resuming: {n_episodes - len(todo)} of {n_episodes} episodes stored in {out_dir}[/]")
    episodes = dict(stored)

    def finished(metrics: dict) -> None:
        episodes[int(metrics["seed"])] = metrics
        if resume:
            atomic_write_json(out_dir / PARTIAL, {"fingerprint": fingerprint, "episodes": list(episodes.values())})

    jobs = [(seed + i, {"task": tasks[i % len(tasks)]} if tasks else None,
             out_dir / f"episode_{seed + i}.gif" if out_dir is not None and i < n_gifs else None) for i in todo]
    with progress_bar("{task.fields[status]}", console=console, transient=True) as progress:
        bar = progress.add_task(title or env_id, total=n_episodes, completed=n_episodes - len(todo), status="")

        def advance(metrics: dict) -> None:
            finished(metrics)
            done = [e["success"] for s, e in episodes.items() if seed <= s < seed + n_episodes]
            progress.update(bar, advance=1, status=f"success {np.mean(done):.2f}")

        if not jobs:
            pass
        elif workers == 1 or len(jobs) == 1:
            state = _EpisodeWorker(env_id, env_kwargs, planner if planner is not None else make_planner(), revision)
            for job in jobs:
                advance(state.run(*job))
        else:
            context = multiprocessing.get_context("spawn")  # torch and fork do not mix
            with context.Pool(min(workers, len(jobs)), initializer=_init_worker,
                              initargs=(make_planner, env_id, env_kwargs, worker_threads, revision)) as pool:
                for metrics in pool.imap_unordered(_run_in_worker, jobs):
                    advance(metrics)
    kept = [episodes[seed + i] for i in range(n_episodes)]
    summary = summarize(kept)
    print_summary(title or env_id, summary)
    if out_dir is not None:
        write_json(out_dir / "results.json", {
            "env_id": env_id, "seed": seed, "git_revisions": sorted({e.get("git_revision", revision) for e in kept}),
            "fingerprint": fingerprint, "summary": summary, "episodes": kept}, config=config or {}, revision=revision)
    return {"summary": summary, "episodes": kept}


class _EpisodeWorker:
    """An env and a controller that run episodes one after another (in-process or in a pool)."""

    def __init__(self, env_id: str, env_kwargs: dict | None, planner, revision: str):
        env = gym.make(env_id, **(env_kwargs or {}))
        if isinstance(getattr(planner, "model", None), SimulatorDynamics) or getattr(planner, "needs_sim_state", False):
            env = PrivilegedState(env)
        self.env, self.planner, self.revision = env, planner, revision

    def run(self, seed: int, options: dict | None, gif: Path | None) -> dict:
        metrics, frames = run_episode(self.env, self.planner, seed, options, record_frames=gif is not None)
        if options:
            metrics["task"] = options["task"]
        metrics["git_revision"] = self.revision
        if gif is not None:
            write_gif(gif, np.array(frames), fps=10, scale=2)
        return metrics


_WORKER: _EpisodeWorker | None = None


def _init_worker(make_planner, env_id: str, env_kwargs: dict | None, threads: int, revision: str) -> None:
    import torch

    torch.set_num_threads(threads)
    global _WORKER
    _WORKER = _EpisodeWorker(env_id, env_kwargs, make_planner(), revision)


def _run_in_worker(job: tuple) -> dict:
    return _WORKER.run(*job)


def print_summary(title: str, summary: dict) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if key.endswith("_wilson95"):
            continue
        if key in _RATE_KEYS:
            low, high = summary[f"{key}_wilson95"]
            table.add_row(key, f"{value:.3f} [{low:.3f}, {high:.3f}]")
        else:
            table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    console.print(table)
