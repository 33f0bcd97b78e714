import json

import gymnasium as gym
import numpy as np
import pytest

import uva_plan  # noqa: F401
from planners import BestOfN, Planner
from uva_plan.dynamics import SimulatorDynamics
from uva_plan.metrics import wilson_interval
from uva_plan.objectives import PushTSimObjective
from uva_plan.proposers import UniformProposer
from uva_plan.runner import run_episode, run_episodes, summarize


def test_run_episodes_writes_results_and_gif(tmp_path):
    planner = Planner(SimulatorDynamics("uva_plan/PushT-v0"), optimizer=BestOfN(n_samples=4),
                      proposer=UniformProposer(horizon=4), objective=PushTSimObjective(),
                      horizon=4, n_action_steps=4)
    out = run_episodes("uva_plan/PushT-v0", planner, n_episodes=2, seed=3,
                       env_kwargs={"max_episode_steps": 12}, out_dir=tmp_path, config={"note": "test"})
    episodes = out["episodes"]
    assert [e["seed"] for e in episodes] == [3, 4]
    assert all(e["steps"] == 12 and e["n_plans"] == 3 for e in episodes)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["config"] == {"note": "test"} and len(saved["git_revision"]) >= 7
    assert saved["summary"]["success_wilson95"] == list(wilson_interval(
        sum(e["success"] for e in episodes), 2))
    assert (tmp_path / "episode_3.gif").stat().st_size > 1000


def test_same_seed_same_episode(tmp_path):
    def once():
        planner = Planner(SimulatorDynamics("uva_plan/PushT-v0"), optimizer=BestOfN(n_samples=4, seed=1),
                          proposer=UniformProposer(horizon=4, seed=2), objective=PushTSimObjective(),
                          horizon=4, n_action_steps=2)
        return run_episodes("uva_plan/PushT-v0", planner, 1, seed=5, env_kwargs={"max_episode_steps": 8})
    a, b = once(), once()
    assert a["episodes"][0]["max_coverage"] == b["episodes"][0]["max_coverage"]


def test_summarize_rates_and_means():
    summary = summarize([{"success": True, "steps": 10, "seed": 0}, {"success": False, "steps": 20, "seed": 1}])
    assert summary["success"] == 0.5 and summary["mean_steps"] == 15
    assert summary["success_wilson95"] == pytest.approx(list(wilson_interval(1, 2)))
    assert "mean_seed" not in summary


def test_bad_episode_count():
    with pytest.raises(ValueError, match="n_episodes"):
        run_episodes("uva_plan/PushT-v0", None, 0)


def tiny_planner() -> Planner:
    """Module level, so spawned workers can build it (pickled by reference)."""
    return Planner(SimulatorDynamics("uva_plan/PushT-v0"), optimizer=BestOfN(n_samples=4, seed=1),
                   proposer=UniformProposer(horizon=4, seed=2), objective=PushTSimObjective(),
                   horizon=4, n_action_steps=2)


class CountingPlanner:
    """The tiny planner, counting the episodes it starts."""

    needs_sim_state = True

    def __init__(self):
        self.inner, self.resets = tiny_planner(), 0

    def reset(self):
        self.resets += 1
        self.inner.reset()

    def plan(self, obs):
        return self.inner.plan(obs)


def outcome(result: dict) -> list[tuple]:
    return [(e["seed"], e["steps"], e["max_coverage"], e["final_state"]) for e in result["episodes"]]


def test_resume_reuses_stored_episodes_and_matches_an_uninterrupted_run(tmp_path):
    kwargs = dict(env_kwargs={"max_episode_steps": 8}, n_gifs=0, config={"planner": "tiny"})
    straight = run_episodes("uva_plan/PushT-v0", tiny_planner(), 3, seed=5, out_dir=tmp_path / "a", **kwargs)
    # A run killed after two episodes left them in the partial file; the rerun runs only the third.
    first = CountingPlanner()
    run_episodes("uva_plan/PushT-v0", first, 2, seed=5, out_dir=tmp_path / "b", resume=True, **kwargs)
    assert first.resets == 2 and (tmp_path / "b" / "episodes.partial.json").exists()
    second = CountingPlanner()
    resumed = run_episodes("uva_plan/PushT-v0", second, 3, seed=5, out_dir=tmp_path / "b", resume=True, **kwargs)
    assert second.resets == 1
    assert outcome(resumed) == outcome(straight)
    # ... which is a real comparison: other proposals end elsewhere.
    moved = tiny_planner()
    moved.proposer = UniformProposer(horizon=4, seed=3)
    elsewhere = run_episodes("uva_plan/PushT-v0", moved, 3, seed=5, **kwargs)
    assert outcome(elsewhere) != outcome(straight)
    saved = json.loads((tmp_path / "b" / "results.json").read_text())
    assert [e["seed"] for e in saved["episodes"]] == [5, 6, 7] and saved["summary"]["n_episodes"] == 3
    # Threads are not part of the fingerprint; the planner's config is.
    third = CountingPlanner()
    run_episodes("uva_plan/PushT-v0", third, 3, seed=5, out_dir=tmp_path / "b", resume=True,
                 env_kwargs={"max_episode_steps": 8}, n_gifs=0, config={"planner": "tiny", "threads": 7})
    assert third.resets == 0
    other = CountingPlanner()
    with pytest.raises(ValueError, match=r"different run.*config\.planner"):  # never mixed in, never overwritten
        run_episodes("uva_plan/PushT-v0", other, 2, seed=5, out_dir=tmp_path / "b", resume=True,
                     env_kwargs={"max_episode_steps": 8}, n_gifs=0, config={"planner": "other"})
    run_episodes("uva_plan/PushT-v0", other, 2, seed=5, out_dir=tmp_path / "c", resume=True,
                 env_kwargs={"max_episode_steps": 8}, n_gifs=0, config={"planner": "other"})
    assert other.resets == 2


def test_workers_give_the_serial_result(tmp_path):
    kwargs = dict(env_kwargs={"max_episode_steps": 8}, n_gifs=1, config={"planner": "tiny"})
    serial = run_episodes("uva_plan/PushT-v0", tiny_planner(), 3, seed=5, **kwargs)
    parallel = run_episodes("uva_plan/PushT-v0", None, 3, seed=5, out_dir=tmp_path, workers=2,
                            make_planner=tiny_planner, resume=True, **kwargs)
    assert outcome(parallel) == outcome(serial)
    assert (tmp_path / "episode_5.gif").exists() and not (tmp_path / "episode_6.gif").exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"workers": 0}, "workers"),
    ({"workers": 2}, "make_planner"),
    ({"resume": True}, "out_dir"),
])
def test_bad_run_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_episodes("uva_plan/PushT-v0", tiny_planner(), 1, **kwargs)


def test_write_json_adds_the_config_and_git_revision(tmp_path):
    import numpy as np

    from uva_plan.report import write_json

    path = write_json(tmp_path / "a" / "run.json", {"rows": [np.float64(0.5)], "where": tmp_path},
                      config={"seed": 0}, revision="abc123")
    assert json.loads(path.read_text()) == {"config": {"seed": 0}, "git_revision": "abc123", "rows": [0.5],
                                            "where": str(tmp_path)}
    saved = json.loads(write_json(tmp_path / "b.json", {}).read_text())
    assert saved["config"] == {} and len(saved["git_revision"]) >= 7  # read now when not given
    with pytest.raises(ValueError, match=r"payload keys \['git_revision'\]"):
        write_json(tmp_path / "c.json", {"git_revision": "x"})


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_an_unwritable_out_dir_is_refused_before_any_episode(tmp_path, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    out_dir = blocker if where == "a file" else blocker / "run"
    planner = CountingPlanner()
    with pytest.raises(ValueError, match="out_dir") as error:
        run_episodes("uva_plan/PushT-v0", planner, 2, out_dir=out_dir, env_kwargs={"max_episode_steps": 4})
    assert str(out_dir) in str(error.value) and planner.resets == 0


def other_planner() -> Planner:
    """tiny_planner with another optimiser setting: its episodes are not tiny_planner's."""
    planner = tiny_planner()
    planner.optimizer = BestOfN(n_samples=3, seed=1)
    return planner


def test_two_planners_in_one_out_dir_never_mix(tmp_path):
    kwargs = dict(env_kwargs={"max_episode_steps": 4}, n_gifs=0, resume=True)  # config=None: only the planner differs
    first = run_episodes("uva_plan/PushT-v0", tiny_planner(), 2, seed=5, out_dir=tmp_path, **kwargs)
    saved = (tmp_path / "results.json").read_text()
    with pytest.raises(ValueError, match=r"different run.*optimizer.*n_samples") as error:
        run_episodes("uva_plan/PushT-v0", other_planner(), 2, seed=5, out_dir=tmp_path, **kwargs)
    assert str(tmp_path) in str(error.value)
    assert (tmp_path / "results.json").read_text() == saved  # not overwritten
    # ... nor without resume; the same planner, rebuilt, still resumes.
    with pytest.raises(ValueError, match="different run"):
        run_episodes("uva_plan/PushT-v0", other_planner(), 2, seed=5, out_dir=tmp_path,
                     **{**kwargs, "resume": False})
    again = tiny_planner()
    assert outcome(run_episodes("uva_plan/PushT-v0", again, 2, seed=5, out_dir=tmp_path, **kwargs)) == outcome(first)
    assert again.last_result is None  # both episodes reused: it never planned


def test_the_fingerprint_covers_weights_objective_and_proposer():
    import torch

    from uva_plan.fingerprint import describe

    base = describe(tiny_planner())
    moved = tiny_planner()
    moved.proposer = UniformProposer(horizon=4, seed=3)
    assert describe(moved) != base
    moved = tiny_planner()
    moved.objective = PushTSimObjective(coverage_weight=2.0)
    assert describe(moved) != base
    net = torch.nn.Linear(2, 2)
    before = describe(net)
    with torch.no_grad():
        net.weight[0, 0] += 1e-3
    assert describe(net) != before and describe(net)["weights_sha256"]
    assert describe(tiny_planner()) == base  # rebuilt alike: alike
    used = tiny_planner()
    run_episodes("uva_plan/PushT-v0", used, 1, env_kwargs={"max_episode_steps": 2})
    assert describe(used) == base  # what planning changes (history, counters, plans) is not in it


class _RecordActions(gym.Wrapper):
    """Keeps every action the env is stepped with."""

    def reset(self, **kwargs):
        self.actions = []
        return self.env.reset(**kwargs)

    def step(self, action):
        self.actions.append(np.array(action, dtype=np.float64))
        return self.env.step(action)


@pytest.mark.slow
def test_select_action_takes_the_same_actions_as_run_episode():
    """LeRobot's convention (one action per env step, the planner keeps the queue and history)
    and the runner's chunk loop drive the same planner identically."""
    from uva_plan.dynamics import UVAWorldModel

    def planner():
        return Planner(UVAWorldModel.from_pretrained("pusht", seed=0), optimizer=BestOfN(n_samples=8))

    env = _RecordActions(gym.make("uva_plan/PushT-v0", max_episode_steps=20))
    run_episode(env, planner(), seed=5)
    by_runner = np.stack(env.actions)

    stepper, actions = planner(), []
    obs, _ = env.reset(seed=5)
    stepper.reset()
    done = False
    while not done:
        action = stepper.select_action(obs)
        actions.append(action)
        obs, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    assert len(actions) == len(by_runner) == 20
    np.testing.assert_array_equal(np.stack(actions), by_runner)
    # Every step's observation reached the history: 3 plans (steps 0, 8, 16), the rest observed.
    assert len(stepper.queue) == 8 - 20 % 8
