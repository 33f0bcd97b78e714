import json

import pytest

import uva_plan  # noqa: F401
from planners import BestOfN, Planner
from uva_plan.adapters import SimulatorDynamics, UniformProposer
from uva_plan.metrics import wilson_interval
from uva_plan.objectives import PushTSimObjective
from uva_plan.runner import run_episodes, summarize


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
