"""The ranking-fidelity measures on hand-made costs whose answers are known: a wrong
computation (a sign, an argmax for an argmin, a mean over the wrong axis) fails these."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from planners import Rollout
from uva_plan.experiments.ranking import oracle_fraction, score_state
from uva_plan.scorecard.ranking import truth_fraction


class LastFrameSum:
    """A cost that reads the last imagined frame: the sum of its latents."""

    frames = (-1,)

    def cost(self, rollout: Rollout) -> torch.Tensor:
        return rollout.latents[:, -1].flatten(1).sum(1)


def rollout(latents: torch.Tensor) -> Rollout:
    return Rollout(actions=torch.zeros(len(latents), 16, 2), latents=latents)


@pytest.fixture
def real() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(20, 4, 4, 8, 8, dtype=torch.float64)


def test_a_perfect_imagination_ranks_as_the_real_frames(real):
    truth = LastFrameSum().cost(rollout(real)).numpy()
    row = score_state(LastFrameSum(), [rollout(real), rollout(real)], rollout(real), real, truth,
                      set(np.argsort(truth)[:2].tolist()))
    assert row["spearman"] == pytest.approx(1.0) and row["spearman_truth"] == pytest.approx(1.0)
    assert row["self_spearman"] == pytest.approx(1.0)
    assert row["regret"] == 0.0 and row["uva_pick_in_sim_top10"] and row["uva_pick_in_truth_top10"]
    assert row["optimism"] == 0.0 and row["pick_latent_error"] == 0.0


def test_an_inverted_imagination_ranks_backwards(real):
    truth = LastFrameSum().cost(rollout(real)).numpy()
    row = score_state(LastFrameSum(), [rollout(-real)], rollout(real), real, truth, set())
    assert row["spearman"] == pytest.approx(-1.0)
    # It picks the candidate the real frames score worst: the whole spread is regret.
    assert row["regret"] == pytest.approx(row["sim_cost_spread"]) and not row["uva_pick_in_sim_top10"]


def test_oracle_and_truth_fractions_on_known_rankings():
    rng = np.random.default_rng(0)
    costs = [rng.normal(size=30) for _ in range(5)]
    same = [{"uva_cost": c, "sim_cost": c} for c in costs]
    backwards = [{"uva_cost": -c, "sim_cost": c} for c in costs]
    noise = [{"uva_cost": rng.normal(size=30), "sim_cost": c} for c in costs]
    assert oracle_fraction(same, 8, seed=0) == pytest.approx(1.0)
    assert oracle_fraction(backwards, 8, seed=0) < -0.5
    assert abs(oracle_fraction(noise, 8, seed=0)) < 0.3
    truth = np.stack(costs)
    assert truth_fraction(truth, truth, 8) == pytest.approx(1.0)
    assert truth_fraction(-truth, truth, 30) == pytest.approx(
        np.sum(truth.mean(1) - truth.max(1)) / np.sum(truth.mean(1) - truth.min(1)))  # one subset: all 30
    # Every candidate but the best scored alike: best of all 30 finds it, small subsets mostly do not.
    picks_best = np.where(truth == truth.min(1, keepdims=True), 0.0, 1.0)
    assert truth_fraction(picks_best, truth, 30) == pytest.approx(1.0)
