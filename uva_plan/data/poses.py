"""Random BlockPush poses: labelled frames for the state head, as many as wanted.

A demonstration store shows each episode's two blocks at a few poses only (they sit still until
pushed), so a state head trained on 500 demos sees about 500 block layouts and overfits them.
The renderer draws any physical state, so labelled frames of new layouts cost one render and
one VAE encoding each. This writes a store whose every step is an independent random state:
both blocks anywhere on the table (at least ``min_separation`` px apart, any yaw), targets and
pusher drawn as the env's reset draws them (the pusher anywhere). Steps are not a trajectory:
the store is for per-frame training (``train=state_head`` with ``data.play_stores``), never
for dynamics; its meta says so (``expert: random_poses``, ``not_a_trajectory: true``).

    python -m uva_plan.data.poses --n-states 40000 --out data/blockpush_poses --seed 0
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.console import Console

from uva_plan.data.store import EpisodeStore
from uva_plan.envs import blockpush as bp

console = Console()
MARGIN = 40.0  # px kept clear of the table's edges by a block's centre


def random_states(n: int, rng: np.random.Generator, min_separation: float = 56.0) -> np.ndarray:
    """(n, STATE_DIM) BlockPush physical states at rest: blocks uniform over the table, yaw
    uniform over a quarter turn (the squares' symmetry), no task, nothing entered yet."""
    states = np.zeros((n, bp.STATE_DIM))
    low, high = MARGIN, 512.0 - MARGIN
    blocks = rng.uniform(low, high, size=(n, 2, 2))
    close = np.linalg.norm(blocks[:, 0] - blocks[:, 1], axis=1) < min_separation
    while close.any():  # rejection sampling, only for the pairs that overlap
        blocks[close] = rng.uniform(low, high, size=(int(close.sum()), 2, 2))
        close = np.linalg.norm(blocks[:, 0] - blocks[:, 1], axis=1) < min_separation
    states[:, 0:2] = rng.uniform(low, high, size=(n, 2))  # the pusher
    for b in range(2):
        states[:, 4 + 6 * b: 6 + 6 * b] = blocks[:, b]
        states[:, 6 + 6 * b] = rng.uniform(0.0, np.pi / 2, size=n)
    # Targets as BlockPushEnv._sample_physical draws them, vectorised (that draws one state per call).
    left, right = rng.uniform(100, 200, size=n), rng.uniform(312, 412, size=n)
    swap = rng.random(n) < 0.5
    states[:, 16] = np.where(swap, right, left)
    states[:, 18] = np.where(swap, left, right)
    states[:, 17], states[:, 19] = rng.uniform(90, 170, size=n), rng.uniform(90, 170, size=n)
    states[:, 24] = -1.0
    return states


def write_poses(n_states: int, out: str | Path, seed: int = 0, per_episode: int = 200,
                min_separation: float = 56.0) -> dict:
    """Write ``n_states`` random states into the store at ``out``, ``per_episode`` per episode
    (resumable: finished episodes are kept, each episode's states come from its own seed)."""
    for name, value in (("n_states", n_states), ("per_episode", per_episode), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "seed" else 1):
            raise ValueError(f"{name} must be an int >= {0 if name == 'seed' else 1}, got {name}={value!r}")
    if not 0 <= min_separation <= 300:
        raise ValueError(f"min_separation must be in [0, 300] px, got {min_separation=}")
    meta = {"env_id": "uva_plan/BlockPush-v0", "env_kwargs": {}, "expert": "random_poses", "seed": seed,
            "per_episode": per_episode, "min_separation": min_separation, "not_a_trajectory": True,
            "physical_dim": bp.STATE_DIM, "action_dim": 2}
    n_episodes = -(-n_states // per_episode)
    with EpisodeStore.create(out, meta) as store:
        for i in range(n_episodes):
            if store.has_episode(i):
                continue
            n = min(per_episode, n_states - i * per_episode)
            states = random_states(n + 1, np.random.default_rng([seed, i]), min_separation)
            # The "action" of a state is its pusher position (held): a valid action, never a dynamics target.
            store.write_episode(i, states=states[:n], actions=states[:n, 0:2].copy(), final_state=states[n],
                                rewards=np.zeros(n), seed=seed + i)
        store.finalize()
        summary = {"n_states": n_states, "n_episodes": n_episodes, "out": str(out), "seed": seed}
    console.print(f"wrote {n_states} random BlockPush states in {n_episodes} episodes to {out}")
    return summary


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m uva_plan.data.poses", description=__doc__.split("\n")[0])
    parser.add_argument("--n-states", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-episode", type=int, default=200)
    parser.add_argument("--min-separation", type=float, default=56.0, help="px between the blocks' centres")
    args = parser.parse_args(argv)
    return write_poses(args.n_states, args.out, args.seed, args.per_episode, args.min_separation)


if __name__ == "__main__":
    main()
