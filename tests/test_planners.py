"""Tests for the model-agnostic planners: known optima, NaN safety, bounds, seeding, the facade."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from torch import Tensor

from planners import (
    CEM,
    ICEM,
    MPPI,
    BestOfN,
    Dynamics,
    History,
    Objective,
    Optimizer,
    Planner,
    PlanResult,
    Proposer,
    Rollout,
    RolloutRequest,
)
from planners.icem import colored_noise
from planners.optimizer import shift_plan

HORIZON, ACTION_DIM = 8, 2
_steps = torch.arange(HORIZON, dtype=torch.float32)
# A smooth target trajectory strictly inside [-1, 1]: the unique minimiser of `quadratic`.
TARGET = 0.5 * torch.stack([torch.sin(_steps / 3), torch.cos(_steps / 4)], dim=1)  # (H, A)


def quadratic(actions: Tensor, target: Tensor = TARGET) -> Tensor:
    return ((actions - target) ** 2).sum((1, 2))  # (N, H, A) -> (N,)


def two_bowls(actions: Tensor) -> Tensor:
    """Deep bowl at +0.4 (min 0), shallow one at -0.4 (min 1): cost < 0.5 only near the deep one."""
    deep = ((actions - 0.4) ** 2).sum((1, 2))
    shallow = ((actions + 0.4) ** 2).sum((1, 2)) + 1.0
    return torch.minimum(deep, shallow)


def zeros() -> Tensor:
    return torch.zeros(HORIZON, ACTION_DIM)


def uniform_proposals(n: int, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, HORIZON, ACTION_DIM, generator=generator) * 2 - 1  # (n, H, A)


# Budgets for the convergence tests: enough to pass for every seed, small enough to run in ms.
PRECISE = {
    "cem": lambda **kw: CEM(**{"n_samples": 200, "n_elites": 20, "n_iterations": 12,
                               "min_std": 0.01, **kw}),
    "mppi": lambda **kw: MPPI(**{"n_samples": 256, "n_elites": 32, "n_iterations": 12,
                                 "init_std": 1.0, "min_std": 0.01, **kw}),
    # beta=1: with the default beta=2 the high-frequency part of TARGET converges slowly.
    "icem": lambda **kw: ICEM(**{"n_samples": 500, "n_elites": 20, "n_iterations": 12,
                                 "min_std": 0.01, "noise_beta": 1.0, **kw}),
}
# Every optimiser with its default arguments.
DEFAULTS = {"best_of_n": BestOfN, "cem": CEM, "mppi": MPPI, "icem": ICEM}
ITERATIVE = ["cem", "mppi", "icem"]


# --- convergence -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ITERATIVE)
@pytest.mark.parametrize("seed", range(5))
def test_quadratic_optimum_found(name, seed):
    result = PRECISE[name](seed=seed).search(quadratic, zeros())
    error = (result.actions - TARGET).abs().max().item()
    assert error < 0.05, f"{name} seed {seed}: max |plan - optimum| = {error:.4f}, tolerance 0.05"
    assert result.actions.shape == (HORIZON, ACTION_DIM)
    assert result.cost == pytest.approx(quadratic(result.actions[None]).item(), rel=1e-5)


@pytest.mark.parametrize("name", ITERATIVE)
@pytest.mark.parametrize("seed", range(3))
def test_multimodal_finds_deeper_bowl(name, seed):
    result = DEFAULTS[name](seed=seed).search(two_bowls, zeros())
    assert result.cost < 0.5, f"{name} seed {seed} in the shallow bowl: cost {result.cost:.3f}"
    assert (result.actions.mean() > 0).item()


def test_iteration_costs_improve():
    info = CEM(seed=0).search(quadratic, zeros()).info
    assert len(info["iteration_costs"]) == len(info["iteration_seconds"]) == 5
    assert info["iteration_costs"][-1] < info["iteration_costs"][0]
    assert info["n_evaluations"] == 5 * 100 and info["n_cost_calls"] == 5
    assert info["seconds"] >= sum(info["iteration_seconds"]) >= 0


# --- best of N -------------------------------------------------------------------------------


def test_best_of_n_picks_argmin_of_proposals():
    proposals = uniform_proposals(50, seed=1)
    result = BestOfN(n_samples=50).search(quadratic, zeros(), proposals)
    best = int(quadratic(proposals).argmin())
    assert torch.equal(result.actions, proposals[best])
    assert result.cost == pytest.approx(quadratic(proposals[best : best + 1]).item())
    assert BestOfN(n_samples=50).n_proposals == 50


def test_best_of_n_without_proposals_includes_init():
    init = TARGET.clone()  # init is already optimal: candidate 0 must win
    result = BestOfN(n_samples=20).search(quadratic, init)
    assert torch.equal(result.actions, init)
    assert result.cost == 0.0


# --- non-finite costs ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", list(DEFAULTS))
def test_non_finite_candidate_never_chosen(name, bad):
    def cost(actions: Tensor) -> Tensor:
        # Unconstrained minimum is all +1, but everything with mean action > 0.5 is "diverged".
        value = -actions.sum((1, 2))
        return torch.where(actions.mean((1, 2)) > 0.5, torch.full_like(value, bad), value)

    result = DEFAULTS[name](seed=0).search(cost, zeros())
    assert math.isfinite(result.cost)
    assert result.actions.mean().item() <= 0.5
    assert result.cost == pytest.approx(cost(result.actions[None]).item(), rel=1e-5)


@pytest.mark.parametrize("name", list(DEFAULTS))
def test_nan_on_each_batch_winner_never_chosen(name):
    poisoned: list[Tensor] = []

    def cost(actions: Tensor) -> Tensor:
        value = -actions.sum((1, 2))
        winner = int(value.argmin())
        poisoned.append(actions[winner].clone())
        value[winner] = math.nan
        return value

    result = DEFAULTS[name](seed=0).search(cost, zeros())
    assert math.isfinite(result.cost)
    assert not any(torch.equal(result.actions, actions) for actions in poisoned)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_proposal_that_would_win_is_skipped(bad):
    proposals = uniform_proposals(30, seed=2)
    costs = -proposals.sum((1, 2))
    winner = int(costs.argmin())
    costs_with_bad = costs.clone()
    costs_with_bad[winner] = bad
    result = BestOfN(n_samples=30).search(lambda a: costs_with_bad.clone(), zeros(), proposals)
    expected = int(costs_with_bad.nan_to_num(math.inf, math.inf, math.inf).argmin())
    assert expected != winner
    assert torch.equal(result.actions, proposals[expected])


@pytest.mark.parametrize("name", list(DEFAULTS))
def test_all_non_finite_raises(name):
    def cost(actions: Tensor) -> Tensor:
        return torch.full((actions.shape[0],), math.nan)

    with pytest.raises(RuntimeError, match="candidates evaluated have a non-finite cost"):
        DEFAULTS[name](seed=0).search(cost, zeros())


def test_all_non_finite_message_counts_candidates():
    with pytest.raises(RuntimeError, match="all 7 candidates"):
        BestOfN(n_samples=7).search(lambda a: torch.full((a.shape[0],), math.inf), zeros())


# --- bounds ----------------------------------------------------------------------------------

BOUNDS = {
    "scalar": (-0.5, 0.25),
    "per_dim": (torch.tensor([-1.0, -0.5]), torch.tensor([0.5, 1.0])),
}


@pytest.mark.parametrize("bounds", list(BOUNDS))
@pytest.mark.parametrize("name", ITERATIVE)
def test_bounded_optimum(name, bounds):
    low, high = (torch.as_tensor(bound) for bound in BOUNDS[bounds])
    optimum = low + (TARGET + 1) / 2 * (high - low)  # TARGET mapped into the middle of the box
    optimizer = PRECISE[name](seed=0, low=low, high=high)
    result = optimizer.search(lambda a: quadratic(a, optimum), zeros())
    assert (result.actions >= low).all() and (result.actions <= high).all()
    error = (result.actions - optimum).abs().max().item()
    assert error < 0.05, f"{name} {bounds}: max |plan - optimum| = {error:.4f}, tolerance 0.05"


@pytest.mark.parametrize("bounds", list(BOUNDS))
@pytest.mark.parametrize("name", ITERATIVE)
def test_optimum_outside_bounds_lands_on_boundary(name, bounds):
    low_bound, high_bound = BOUNDS[bounds]  # floats or (A,) tensors, as the optimiser takes them
    low, high = (torch.as_tensor(bound).expand(HORIZON, ACTION_DIM) for bound in BOUNDS[bounds])
    target = torch.full((HORIZON, ACTION_DIM), 3.0)

    def cost(actions: Tensor) -> Tensor:  # per-entry mean keeps MPPI's temperature in range
        return quadratic(actions, target) / (HORIZON * ACTION_DIM)

    optimizer = PRECISE[name](seed=0, low=low_bound, high=high_bound, n_iterations=20)
    result = optimizer.search(cost, zeros())
    assert (result.actions >= low).all() and (result.actions <= high).all()
    gap = (high - result.actions).max().item()
    assert gap < 0.05, f"{name} {bounds}: plan is {gap:.4f} below the upper bound, tolerance 0.05"


@pytest.mark.parametrize("bounds", list(BOUNDS))
@pytest.mark.parametrize("name", list(DEFAULTS))
def test_every_candidate_within_bounds(name, bounds):
    low, high = (torch.as_tensor(bound).expand(HORIZON, ACTION_DIM) for bound in BOUNDS[bounds])
    inside: list[bool] = []

    def cost(actions: Tensor) -> Tensor:
        inside.append(bool((actions >= low).all() and (actions <= high).all()))
        return quadratic(actions, torch.full((HORIZON, ACTION_DIM), 3.0))

    proposals = 2 * uniform_proposals(40, seed=3)  # partly outside the box: must be clipped
    optimizer = DEFAULTS[name](seed=0, low=BOUNDS[bounds][0], high=BOUNDS[bounds][1])
    result = optimizer.search(cost, torch.full((HORIZON, ACTION_DIM), -2.0), proposals)
    assert inside and all(inside)
    assert (result.actions >= low).all() and (result.actions <= high).all()


# --- seeding and carried state ---------------------------------------------------------------


@pytest.mark.parametrize("name", list(DEFAULTS))
def test_same_seed_same_plan_different_seed_different_plan(name):
    def plan(seed: int) -> Tensor:
        return DEFAULTS[name](seed=seed).optimize(quadratic, zeros())

    assert torch.equal(plan(3), plan(3))
    assert not torch.equal(plan(3), plan(4))


@pytest.mark.parametrize("name", list(DEFAULTS))
def test_reset_replays_the_random_stream(name):
    optimizer = DEFAULTS[name](seed=5)
    first = optimizer.optimize(quadratic, zeros())
    optimizer.advance(3)
    optimizer.optimize(quadratic, shift_plan(first, 3))
    optimizer.reset()
    assert torch.equal(optimizer.optimize(quadratic, zeros()), first)


def test_icem_reset_forgets_elites():
    fresh = ICEM(seed=1).optimize(quadratic, zeros())
    used = ICEM(seed=1)
    init = zeros()
    for _ in range(2):
        plan = used.optimize(quadratic, init)
        used.advance(4)
        init = shift_plan(plan, 4)
    assert used.elites is not None
    used.reset()
    assert used.elites is None
    assert torch.equal(used.optimize(quadratic, zeros()), fresh)


def test_icem_keeps_shifted_elites_across_calls():
    optimizer = ICEM(n_samples=40, n_elites=10, keep_elite_fraction=0.3, seed=0)
    optimizer.optimize(quadratic, zeros())
    elites = optimizer.elites.clone()  # (K, H, A), cheapest first
    optimizer.advance(3)
    assert torch.equal(optimizer.elites, shift_plan(elites, 3))
    kept = optimizer.elites[:3]  # keep_elite_fraction * n_elites of them join the first iteration
    populations: list[Tensor] = []

    def cost(actions: Tensor) -> Tensor:
        populations.append(actions.clone())
        return quadratic(actions)

    optimizer.optimize(cost, zeros())
    first = populations[0]
    assert first.shape[0] == 40 + 3
    assert torch.equal(first[40:], kept)


def test_shift_plan_drops_and_repeats_last():
    plan = torch.arange(5.0)[:, None].repeat(1, 2)  # (H=5, A=2), row h is h
    assert shift_plan(plan, 2)[:, 0].tolist() == [2, 3, 4, 4, 4]
    assert shift_plan(plan, 9)[:, 0].tolist() == [4] * 5
    assert shift_plan(plan[None], 1).shape == (1, 5, 2)


def test_colored_noise_statistics():
    generator = torch.Generator().manual_seed(0)
    white = colored_noise(4000, 8, 2, 0.0, generator)
    red = colored_noise(4000, 8, 2, 2.0, generator)
    assert white.shape == red.shape == (4000, 8, 2)
    for noise in (white, red):
        assert noise.var().item() == pytest.approx(1.0, abs=0.05)

    def lag_one_correlation(noise: Tensor) -> float:
        return (noise[:, 1:] * noise[:, :-1]).mean().item()

    assert abs(lag_one_correlation(white)) < 0.05 and lag_one_correlation(red) > 0.4


def test_icem_population_shrinks():
    optimizer = ICEM(n_samples=100, n_elites=10, n_iterations=6, shrink_factor=2.0)
    assert [optimizer.population_size(i) for i in range(6)] == [100, 50, 25, 20, 20, 20]


# --- batching ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(DEFAULTS))
def test_max_batch_chunks_without_changing_the_result(name):
    sizes: list[int] = []

    def cost(actions: Tensor) -> Tensor:
        sizes.append(actions.shape[0])
        return quadratic(actions)

    whole = DEFAULTS[name](seed=2).search(cost, zeros())
    n_whole_calls = len(sizes)
    sizes.clear()
    chunked = DEFAULTS[name](seed=2, max_batch=7).search(cost, zeros())
    assert torch.equal(whole.actions, chunked.actions)
    assert max(sizes) <= 7 and sum(sizes) == chunked.info["n_evaluations"]
    assert whole.info["n_cost_calls"] == n_whole_calls < chunked.info["n_cost_calls"] == len(sizes)


def test_one_cost_call_per_iteration():
    cases = [(CEM(n_iterations=4), 4), (ICEM(n_iterations=3), 3), (MPPI(n_iterations=2), 2),
             (MPPI(n_iterations=2, sample_final=False), 3), (BestOfN(), 1)]
    for optimizer, expected in cases:
        assert optimizer.search(quadratic, zeros()).info["n_cost_calls"] == expected, optimizer


def test_mppi_update_matches_td_mpc2_weights():
    populations: list[Tensor] = []

    def cost(actions: Tensor) -> Tensor:
        populations.append(actions.clone())
        return quadratic(actions)

    result = MPPI(n_samples=64, n_elites=8, n_iterations=1, temperature=0.5).search(cost, zeros())
    costs = quadratic(populations[0])
    elite_costs, index = costs.topk(8, largest=False)
    elites = populations[0][index]  # (K, H, A)
    # TD-MPC2: score = exp(temperature * (value - max value)), value = -cost, normalised.
    weights = torch.softmax(0.5 * (-elite_costs), dim=0)
    mean = (weights[:, None, None] * elites).sum(0)
    std = (weights[:, None, None] * (elites - mean) ** 2).sum(0).sqrt().clamp(0.05, 2.0)
    assert torch.allclose(result.info["mean"], mean, atol=1e-5)
    assert torch.allclose(result.info["std"], std, atol=1e-5)
    assert any(torch.equal(result.actions, elite) for elite in elites)  # sample_final: an elite


def test_mppi_mean_mode_returns_weighted_mean():
    result = MPPI(n_samples=64, n_elites=8, sample_final=False).search(quadratic, zeros())
    assert torch.equal(result.actions, result.info["mean"])
    assert result.cost == pytest.approx(quadratic(result.actions[None]).item())


def test_proposals_join_the_population():
    proposals = TARGET[None].clone()  # the optimum itself
    for optimizer in (CEM(n_proposals=1), ICEM(), MPPI(n_proposals=1)):
        result = optimizer.search(quadratic, zeros(), proposals)
        assert result.info["iteration_costs"][0] == 0.0, optimizer


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: CEM(n_elites=0), "n_elites"),
        (lambda: CEM(n_samples=10, n_elites=20), "n_elites"),
        (lambda: CEM(momentum=1.0), "momentum"),
        (lambda: MPPI(temperature=0.0), "temperature"),
        (lambda: MPPI(min_std=0.5, max_std=0.1), "max_std"),
        (lambda: MPPI(n_samples=16, n_elites=4, n_proposals=32), "n_proposals"),
        (lambda: ICEM(shrink_factor=0.5), "shrink_factor"),
        (lambda: ICEM(keep_elite_fraction=1.5), "keep_elite_fraction"),
        (lambda: BestOfN(n_samples=0), "n_samples"),
        (lambda: BestOfN(noise_std=-1.0), "noise_std"),
        (lambda: CEM(low=1.0, high=-1.0), "low must be < high"),
        (lambda: CEM(max_batch=0), "max_batch"),
        (lambda: CEM(seed=-1), "seed"),
    ],
)
def test_constructor_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_search_input_validation():
    with pytest.raises(ValueError, match="init must be an"):
        CEM().search(quadratic, torch.zeros(HORIZON))
    with pytest.raises(ValueError, match="proposals must be"):
        CEM().search(quadratic, zeros(), torch.zeros(4, HORIZON + 1, ACTION_DIM))
    with pytest.raises(ValueError, match="action dims"):
        CEM(low=torch.tensor([-1.0, -1.0, -1.0]), high=1.0).search(quadratic, zeros())
    with pytest.raises(ValueError, match="cost must return"):
        CEM().search(lambda a: quadratic(a)[:, None], zeros())


# --- the Planner facade on a tiny hand-made environment ---------------------------------------

GOAL = (250.0, 20.0)


class PointMass:
    """2-D point mass: the context is its position; actions are velocities, 1 unit = 10 px/step."""

    n_history = 1
    action_low = np.array([-10.0, -10.0])
    action_high = np.array([10.0, 10.0])

    def __init__(self) -> None:
        self.histories: list[list[dict]] = []

    def context(self, history: Sequence[dict]) -> Tensor:
        self.histories.append(list(history))
        return torch.as_tensor(history[-1]["agent_pos"], dtype=torch.float32)  # (2,)

    def rollout(self, context: Tensor, actions: Tensor) -> Rollout:
        states = context + 10.0 * actions.cumsum(dim=1)  # (N, H, 2) positions after each step
        return Rollout(actions=actions, states=states, context=context)


class GoalDistance:
    """Mean distance to the goal over the imagined positions (final-only lets the point wander)."""

    def __init__(self, goal: Sequence[float]) -> None:
        self.goal = torch.tensor(goal)

    def cost(self, rollout: Rollout) -> Tensor:
        return (rollout.states - self.goal).norm(dim=-1).mean(dim=1)  # (N, H, 2) -> (N,)


class PointMassWithPolicy(PointMass):
    """Also a proposer (uniform random actions) and ships its own objective."""

    n_history = 3

    def __init__(self) -> None:
        super().__init__()
        self.generator = torch.Generator().manual_seed(0)

    def sample(self, context: Tensor, n: int) -> Tensor:
        return torch.rand(n, 8, 2, generator=self.generator) * 2 - 1

    def default_objective(self) -> GoalDistance:
        return GoalDistance(GOAL)


def run_episode(planner: Planner, n_calls: int, start=(100.0, 100.0)) -> np.ndarray:
    position = np.array(start)
    for _ in range(n_calls):
        chunk = planner.plan({"agent_pos": position.copy()})
        assert chunk.shape == (planner.n_action_steps, 2) and chunk.dtype == np.float64
        assert (chunk >= PointMass.action_low).all() and (chunk <= PointMass.action_high).all()
        for action in chunk:
            position = position + action
    return position


def test_protocols_are_satisfied():
    assert isinstance(PointMass(), Dynamics) and isinstance(GoalDistance(GOAL), Objective)
    assert isinstance(PointMassWithPolicy(), Proposer) and not isinstance(PointMass(), Proposer)
    assert isinstance(CEM(), Optimizer)


@pytest.mark.parametrize("seed", range(3))
def test_planner_reaches_goal_receding_horizon(seed):
    planner = Planner(PointMass(), optimizer=CEM(seed=seed), objective=GoalDistance(GOAL),
                      horizon=8, n_action_steps=4)
    final = run_episode(planner, n_calls=8)  # starts 170 px away; at most 14 px per step
    distance = np.linalg.norm(final - np.array(GOAL))
    assert distance < 5.0, f"point mass ended {distance:.2f} px from the goal, tolerance 5 px"
    assert isinstance(planner.last_result, PlanResult)
    assert planner.last_result.actions.shape == (8, 2)


def test_planner_defaults_from_model():
    model = PointMassWithPolicy()
    planner = Planner(model, horizon=8, n_action_steps=4)
    assert planner.proposer is model and isinstance(planner.optimizer, BestOfN)
    start = np.array([100.0, 100.0])
    final = run_episode(planner, n_calls=8, start=tuple(start))
    assert np.linalg.norm(final - GOAL) < 0.5 * np.linalg.norm(start - GOAL)
    # History: padded with the first obs on the first call, then a sliding window of 3.
    first, second, third = (list(map(id, history)) for history in model.histories[:3])
    obs_0, obs_1, obs_2 = first[0], second[2], third[2]
    assert first == [obs_0] * 3
    assert second == [obs_0, obs_0, obs_1] and third == [obs_0, obs_1, obs_2]


def test_planner_warm_start_shifts_previous_plan():
    model = PointMass()
    inits: list[Tensor] = []

    class Recording(CEM):
        def search(self, cost, init, proposals=None):
            inits.append(init.clone())
            return super().search(cost, init, proposals)

    planner = Planner(model, optimizer=Recording(), objective=GoalDistance(GOAL), horizon=8,
                      n_action_steps=3)
    planner.plan({"agent_pos": np.zeros(2)})
    previous = planner.last_result.actions
    planner.plan({"agent_pos": np.zeros(2)})
    assert torch.equal(inits[0], torch.zeros(8, 2))
    assert torch.equal(inits[1], shift_plan(previous, 3))


def test_planner_reset_equals_fresh_planner():
    def make() -> Planner:
        return Planner(PointMass(), optimizer=ICEM(seed=0), objective=GoalDistance(GOAL),
                       horizon=8, n_action_steps=4)

    used = make()
    run_episode(used, n_calls=3)
    used.reset()
    assert used.last_result is None and used.previous_plan is None and not used.history
    obs = {"agent_pos": np.array([100.0, 100.0])}
    np.testing.assert_array_equal(used.plan(obs), make().plan(obs))


def test_planner_validation():
    with pytest.raises(ValueError, match="objective"):
        Planner(PointMass())
    with pytest.raises(ValueError, match="n_action_steps"):
        Planner(PointMass(), objective=GoalDistance(GOAL), horizon=4, n_action_steps=5)
    with pytest.raises(ValueError, match="max_batch"):
        Planner(PointMass(), optimizer=CEM(), objective=GoalDistance(GOAL), max_batch=8)
    assert Planner(PointMass(), objective=GoalDistance(GOAL), max_batch=8).optimizer.max_batch == 8


@pytest.mark.parametrize("name", ["cem", "mppi", "icem"])
def test_proposals_scored_once_per_search_same_plan(name):
    """The proposals are the same rows every iteration: with a deterministic cost, scoring them
    once gives the same plan as re-scoring them, with fewer evaluations."""
    proposals = uniform_proposals(6, seed=3)
    seen: list[Tensor] = []

    def cost(actions: Tensor) -> Tensor:
        seen.append(actions.clone())
        return quadratic(actions)

    make = {"cem": CEM, "mppi": MPPI, "icem": ICEM}[name]
    kw = {"n_iterations": 3, "n_proposals": 6, "seed": 4}
    once = make(**kw).search(cost, zeros(), proposals)
    scored = torch.cat(seen)
    n_proposal_rows = sum(int((scored == p).all((1, 2)).sum()) for p in proposals)
    assert n_proposal_rows == 6  # each proposal scored exactly once
    again = make(rescore_proposals=True, **kw).search(quadratic, zeros(), proposals)
    assert torch.equal(once.actions, again.actions)
    assert once.info["iteration_costs"] == again.info["iteration_costs"]
    assert again.info["n_evaluations"] - once.info["n_evaluations"] == 2 * 6
    with pytest.raises(ValueError, match="rescore_proposals must be a bool"):
        make(rescore_proposals="yes")


def test_planner_tells_the_model_which_frames_the_objective_reads():
    class FramesModel(PointMass):
        def rollout(self, context, actions, request=None):
            self.request_seen = request
            return super().rollout(context, actions)

    class LastFrame(GoalDistance):
        request = RolloutRequest(frames=(-1,))

    model, obs = FramesModel(), {"agent_pos": np.array([100.0, 100.0])}
    optimizer = CEM(n_samples=16, n_elites=4, n_iterations=1)
    Planner(model, optimizer, objective=LastFrame(GOAL), horizon=8).plan(obs)
    assert model.request_seen == RolloutRequest(frames=(-1,), imagine="video")
    model.request_seen = "not called"
    Planner(model, optimizer, objective=GoalDistance(GOAL), horizon=8).plan(obs)
    assert model.request_seen is None  # objective without a request: the model's default


def test_rollout_request_validates_and_planner_refuses_a_non_request():
    assert RolloutRequest(frames=[0, np.int64(-1)]).frames == (0, -1)
    with pytest.raises(ValueError, match="imagine must be 'video', 'poses' or 'both', got 'frames'"):
        RolloutRequest(imagine="frames")
    for bad in ((), (1.5,), (True,), 3):
        with pytest.raises(ValueError, match="frames must be None or a non-empty sequence"):
            RolloutRequest(frames=bad)

    class Loose(GoalDistance):
        request = {"frames": (-1,)}

    with pytest.raises(ValueError, match="request must be a RolloutRequest or None"):
        Planner(PointMass(), objective=Loose(GOAL), horizon=8)


def test_history_pads_with_the_first_observation():
    history = History(3)
    assert len(history) == 0 and not history
    first, second = {"t": 0}, {"t": 1}
    history.append(first)
    assert list(history) == [first] * 3
    history.append(second)
    assert list(history) == [first, first, second] and history[-1] is second
    history.clear()
    assert len(history) == 0
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        History(0)


def test_mppi_with_only_proposals_scores_them_once():
    """n_proposals == n_samples leaves no Gaussian rows: later iterations score nothing new."""
    calls: list[int] = []

    def cost(actions: Tensor) -> Tensor:
        calls.append(actions.shape[0])
        return quadratic(actions)

    proposals = uniform_proposals(6, seed=5)
    result = MPPI(n_samples=6, n_elites=2, n_proposals=6, n_iterations=3).search(cost, zeros(), proposals)
    assert calls == [6] and result.info["n_evaluations"] == 6
    assert any(torch.equal(result.actions, p) for p in proposals)


def test_best_of_n_central_ranks_only_the_typical_proposals():
    # 40 proposals in a tight cluster around 0.2, 10 outliers near the cost's optimum at 0.9:
    # plain best-of-N takes an outlier; n_central=20 ranks only cluster members.
    generator = torch.Generator().manual_seed(0)
    cluster = 0.2 + 0.01 * torch.randn(40, HORIZON, ACTION_DIM, generator=generator)
    outliers = 0.9 + 0.01 * torch.randn(10, HORIZON, ACTION_DIM, generator=generator)
    proposals = torch.cat([outliers, cluster])

    def cost(actions):
        return ((actions - 0.9) ** 2).sum((1, 2))

    plain = BestOfN(n_samples=50).search(cost, zeros(), proposals)
    assert plain.actions.mean() > 0.8
    seen = []
    result = BestOfN(n_samples=50, n_central=20).search(lambda a: seen.append(len(a)) or cost(a), zeros(), proposals)
    assert seen == [20]  # the model scores only the central ones
    assert abs(float(result.actions.mean()) - 0.2) < 0.05
    from planners.best_of_n import central

    kept = central(proposals, 20)
    assert torch.equal(result.actions, kept[torch.argmin(cost(kept))])  # the cheapest central one wins
    assert (kept.mean((1, 2)) < 0.5).all()  # no outlier is central


def test_best_of_n_central_one_is_the_medoid():
    from planners.best_of_n import central

    proposals = torch.zeros(5, HORIZON, ACTION_DIM)
    proposals[:, 0, 0] = torch.tensor([0.0, 0.1, 0.2, 0.35, 0.9])  # medoid: 0.2
    result = BestOfN(n_samples=5, n_central=1).search(lambda a: -a.sum((1, 2)), zeros(), proposals)
    assert float(result.actions[0, 0]) == pytest.approx(0.2)
    assert central(proposals, 5)[:, 0, 0].tolist() == pytest.approx([0.2, 0.1, 0.35, 0.0, 0.9])
    with pytest.raises(ValueError, match="n_central"):
        BestOfN(n_samples=5, n_central=6)
    with pytest.raises(ValueError, match="n_central"):
        BestOfN(n_samples=5, n_central=0)


def test_make_optimizer_n_central_only_for_best_of_n():
    from planners import make_optimizer

    assert make_optimizer("best_of_n", 16, n_central=4).n_central == 4
    with pytest.raises(ValueError, match="n_central"):
        make_optimizer("cem", 16, n_central=4)
