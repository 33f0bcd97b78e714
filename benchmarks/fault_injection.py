"""Faults injected at random points: SIGKILL a data collection and a training run, resume, and
count what was lost. A benchmark (seconds to minutes), not a unit test; the tests kill each
once at a fixed point (tests/test_data.py, tests/test_train.py).

    python benchmarks/fault_injection.py [--kills 5] [--seed 0] [--out outputs/bench/faults.json]

Collection: 40 random-expert Push-T episodes of 30 steps, killed once a random number of them
is on disk (plus a random 0-50 ms), then rerun to completion. Lost = episodes on disk before the kill that are missing or unreadable
afterwards (target 0); also: are the resumed store's episodes identical to an uninterrupted
collection's (same seeds, same states)?
Training: the tests' tiny 20-step run (checkpoint every 5 steps, 0.2 s per step), killed at a
random time in its loop, then resumed. Lost = steps past the last checkpoint (recomputed, by design); the final weights
must equal an uninterrupted run's bit for bit.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.test_train import make_store, tiny_overrides, weights  # noqa: E402
from uva_plan.checkpoint import latest_valid_checkpoint  # noqa: E402
from uva_plan.data.store import EpisodeStore  # noqa: E402
from uva_plan.io import git_revision  # noqa: E402
from uva_plan.report import write_report  # noqa: E402

SLEEP_S = 0.2  # per training step: 20 steps take 4 s, so random kill times spread over them
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def collect_cmd(out: Path, n_episodes: int) -> list[str]:
    return [sys.executable, "-m", "uva_plan.data.collect", "--env", "uva_plan/PushT-v0", "--expert", "random",
            "--n-episodes", str(n_episodes), "--out", str(out), "--seed", "0", "--max-steps", "30"]


def store_arrays(root: Path) -> dict[int, np.ndarray]:
    store = EpisodeStore.open(root)
    return {i: store.episode(i)["states"] for i in store.indices()}


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            return
        time.sleep(0.002)


def kill_collection(tmp: Path, k: int, target: int, delay: float, reference: dict[int, np.ndarray], n: int) -> dict:
    """Kill once ``target`` episodes are on disk, plus ``delay`` seconds (mid-episode, mid-write)."""
    out = tmp / f"collect_{k}"
    proc = subprocess.Popen(collect_cmd(out, n), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(list((out / "episodes").glob("ep_*.npz"))) >= target if (out / "episodes").is_dir()
             else False, proc)
    time.sleep(delay)
    finished_first = proc.poll() is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = store_arrays(out) if (out / "meta.json").exists() else {}
    subprocess.run(collect_cmd(out, n), env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = store_arrays(out)
    lost = sum(1 for i, states in before.items() if i not in after or not np.array_equal(after[i], states))
    identical = after.keys() == reference.keys() and all(np.array_equal(after[i], reference[i]) for i in reference)
    leftovers = [p.name for p in out.rglob(".tmp-*")]
    return {"fault": "collection", "kill": k, "kill_at": f"{target} episodes + {delay:.3f} s",
            "finished_before_kill": finished_first,
            "on_disk_at_kill": len(before), "lost": lost, "resumed_identical": bool(identical),
            "temp_files_left": len(leftovers)}


def kill_training(tmp: Path, k: int, delay: float, store: Path, reference: dict) -> dict:
    """Kill ``delay`` seconds after the run starts its loop (its config.json appears)."""
    out = tmp / f"train_{k}"
    args = [sys.executable, "-m", "uva_plan.train", *tiny_overrides(store, out, sleep_s=SLEEP_S)]
    proc = subprocess.Popen(args, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: (out / "config.json").exists(), proc)
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    latest = latest_valid_checkpoint(out / "ckpt") if (out / "ckpt").exists() else None
    checkpoint_step = int(latest.name.split("_")[-1]) if latest else 0
    metrics = out / "metrics.jsonl"
    logged = [line for line in metrics.read_text().splitlines()] if metrics.exists() else []
    subprocess.run(args, cwd=REPO, env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    final = weights(out / "final")
    same = final.keys() == reference.keys() and all(torch.equal(final[n], reference[n]) for n in reference)
    return {"fault": "training", "kill": k, "kill_at": f"loop start + {delay:.2f} s",
            "last_checkpoint_step": checkpoint_step,
            "metric_rows_at_kill": len(logged), "lost": 0 if same else "final weights differ",
            "resumed_identical": bool(same), "temp_files_left": len(list(out.rglob(".tmp-*")))}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=5, help="faults per kind")
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/bench")
    args = parser.parse_args(argv)
    revision = git_revision()
    rng = np.random.default_rng(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run(collect_cmd(tmp / "reference", args.episodes), env=ENV, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        reference = store_arrays(tmp / "reference")
        for k in range(args.kills):
            rows.append(kill_collection(tmp, k, int(rng.integers(1, args.episodes)), float(rng.uniform(0, 0.05)),
                                        reference, args.episodes))
        store = make_store(tmp / "data" / "pusht")
        subprocess.run([sys.executable, "-m", "uva_plan.train",
                        *tiny_overrides(store, tmp / "train_reference", sleep_s=SLEEP_S)],
                       cwd=REPO, env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        reference_weights = weights(tmp / "train_reference" / "final")
        for k in range(args.kills):
            rows.append(kill_training(tmp, k, float(rng.uniform(0.0, 20 * SLEEP_S + 1.0)), store, reference_weights))
    write_report(args.out, "faults", f"{len(rows)} SIGKILLs at random points, then resume", rows,
                 ["fault", "kill", "kill_at", "on_disk_at_kill", "last_checkpoint_step", "lost", "resumed_identical",
                  "temp_files_left"], vars(args), revision=revision)
    return {"rows": rows}


if __name__ == "__main__":
    main()
