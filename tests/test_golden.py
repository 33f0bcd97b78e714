"""Golden planner decisions: fixed seeds, shipped weights, the public API. A change of layout or
of library plumbing must leave each one as recorded in ``tests/golden/decisions.npz``."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from planners import CEM, BestOfN, Planner
from uva_plan import UVA

GOLDEN = Path(__file__).resolve().parent / "golden" / "decisions.npz"


def _first_plans(planner, env_id: str, seed: int, n_plans: int = 2) -> np.ndarray:
    """The first ``n_plans`` chunks of an episode, executing each chunk as the runner does."""
    env = gym.make(env_id)
    options = {"task": seed % 4} if "BlockPush" in env_id else None
    obs, _ = env.reset(seed=seed, options=options)
    planner.reset()
    chunks = []
    for _ in range(n_plans):
        chunk = planner.plan(obs)
        chunks.append(chunk)
        for action in chunk:
            obs, *_ = env.step(action)
            planner.observe(obs)
    return np.stack(chunks)


def _default(env: str) -> np.ndarray:
    env_id = {"pusht": "uva_plan/PushT-v0", "blockpush": "uva_plan/BlockPush-v0"}[env]
    return _first_plans(Planner(UVA.from_pretrained(env, seed=0)), env_id, seed=100000)


def _small_best_of_n_goal_image() -> np.ndarray:
    model = UVA.from_pretrained("pusht", seed=1, objective="goal_image")
    return _first_plans(Planner(model, optimizer=BestOfN(n_samples=8)), "uva_plan/PushT-v0", seed=7)


def _cem_uva_proposer() -> np.ndarray:
    model = UVA.from_pretrained("blockpush", seed=2, proposer="uva")
    optimizer = CEM(n_samples=8, n_elites=2, n_iterations=2, n_proposals=4, seed=3)
    return _first_plans(Planner(model, optimizer=optimizer), "uva_plan/BlockPush-v0", seed=11, n_plans=1)


DECISIONS = {
    "pusht_default": lambda: _default("pusht"),
    "blockpush_default": lambda: _default("blockpush"),
    "pusht_best_of_8_goal_image": _small_best_of_n_goal_image,
    "blockpush_cem_uva_proposer": _cem_uva_proposer,
}


def compute(name: str) -> np.ndarray:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one reduction order, so the decision is bit-reproducible
    try:
        return DECISIONS[name]()
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DECISIONS))
def test_golden_decision_unchanged(name):
    expected = np.load(GOLDEN)[name]
    np.testing.assert_allclose(compute(name), expected, rtol=0, atol=1e-3)
