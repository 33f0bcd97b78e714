"""The user-facing API on the shipped weights: ``UVA.from_pretrained``, ``Planner(uva)``, goal
frames, imagined GIFs, the experiment reports and the guidance / ablation entry points."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import uva_plan
from planners import BestOfN, Planner, make_optimizer
from uva_plan.dynamics import PrivilegedState, SimulatorDynamics, UVAWorldModel
from uva_plan.envs import blockpush as bp
from uva_plan.envs import pusht
from uva_plan.objectives import EnvGoalImage, StateReward, goal_state
from uva_plan.report import markdown_table, write_report
from uva_plan.runner import run_episode

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pusht_model():
    return UVAWorldModel.from_pretrained("pusht", seed=0)


def test_top_level_exports():
    from uva_plan import UVA

    assert UVA is UVAWorldModel and uva_plan.Planner is Planner
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        uva_plan.Nope  # noqa: B018


def test_from_pretrained_planner_needs_no_other_argument(pusht_model):
    assert isinstance(pusht_model.default_objective(), StateReward)
    planner = Planner(pusht_model, optimizer=BestOfN(n_samples=8))
    env = gym.make("uva_plan/PushT-v0")
    obs, _ = env.reset(seed=0)
    actions = planner.plan(obs)
    assert actions.shape == (8, 2) and np.isfinite(actions).all()
    assert (actions >= pusht_model.action_low).all() and (actions <= pusht_model.action_high).all()
    assert planner.last_result.info["n_evaluations"] == 8
    # Same seed, same plan: the model's and the proposer's generators restart with reset().
    planner.reset()
    again = planner.plan(obs)
    np.testing.assert_array_equal(actions, again)


def test_from_pretrained_rejects_bad_arguments():
    with pytest.raises(ValueError, match="env must be one of"):
        UVAWorldModel.from_pretrained("cartpole")
    with pytest.raises(ValueError, match="proposer must be 'dpc' or 'uva'"):
        UVAWorldModel.from_pretrained("pusht", proposer="random")
    with pytest.raises(ValueError, match="objective must be 'state', 'goal_image', 'located' or 'pose'"):
        UVAWorldModel.from_pretrained("pusht", objective="reward")
    with pytest.raises(ValueError, match="checkpoints keys must be among"):
        UVAWorldModel.from_pretrained("pusht", checkpoints={"policy": "x"})
    with pytest.raises(ValueError, match="video_head_steps must be an int >= 2"):
        UVAWorldModel.from_pretrained("pusht", video_head_steps=1)
    with pytest.raises(ValueError, match="n_central must be <= 100"):
        UVAWorldModel.from_pretrained("pusht", n_central=101)
    with pytest.raises(ValueError, match="n_central must be an int >= 1"):
        UVAWorldModel.from_pretrained("pusht", n_central=0)


def test_default_planner_ranks_the_ten_most_typical_of_100_proposals(pusht_model):
    planner = Planner(pusht_model)
    assert isinstance(planner.optimizer, BestOfN)
    assert (planner.optimizer.n_samples, planner.optimizer.n_central) == (100, 10)
    env = gym.make("uva_plan/PushT-v0")
    obs, _ = env.reset(seed=0)
    planner.plan(obs)
    assert planner.last_result.info["n_evaluations"] == 10  # UVA imagined 10 rollouts, not 100
    bare = UVAWorldModel(pusht_model.uva, pusht_model.vae, pusht_model.normalizer)
    assert bare.default_optimizer().n_central is None  # built by hand: every proposal ranked
    assert Planner(pusht_model, max_batch=5).optimizer.max_batch == 5


def test_world_model_without_objective_says_what_to_pass(pusht_model):
    bare = UVAWorldModel(pusht_model.uva, pusht_model.vae, pusht_model.normalizer)
    with pytest.raises(ValueError, match="has no objective"):
        Planner(bare)


def test_goal_states_put_objects_on_their_goals():
    state = goal_state("uva_plan/PushT-v0")
    np.testing.assert_allclose(pusht.block_poses(state[None])[0], pusht.GOAL_POSE, atol=1e-9)
    targets = np.array([[150.0, 300.0], [350.0, 200.0]])
    for task in range(4):
        state = goal_state("uva_plan/BlockPush-v0", task, targets)
        block, target = divmod(task, 2)
        assert bp.in_target(state[None])[0, block, target] and bp.in_target(state[None])[0, 1 - block, 1 - target]
    with pytest.raises(ValueError, match="named task 0..3"):
        goal_state("uva_plan/BlockPush-v0", -1, targets)
    with pytest.raises(ValueError, match="targets must be finite"):
        goal_state("uva_plan/BlockPush-v0", 0, np.zeros(3))


def test_env_goal_image_is_zero_at_the_goal_and_follows_the_task(pusht_model):
    from planners import Rollout

    objective = EnvGoalImage("uva_plan/PushT-v0", pusht_model)
    goal = pusht_model.encode(pusht.PushTEnv.render_states(goal_state("uva_plan/PushT-v0")[None], 64))
    start = pusht_model.encode(pusht.PushTEnv.render_states(np.array([[40, 40, 0, 0, 100, 400, 0.3, 0, 0, 0,
                                                                       *pusht.GOAL_POSE, 0]]), 64))
    latents = torch.stack([goal, start])  # (2, 1, C, h, w): the goal, and a T far from it
    costs = objective.cost(Rollout(actions=torch.zeros(2, 16, 2), latents=latents))
    assert costs[0].item() == pytest.approx(0.0, abs=1e-6) and costs[1] > 0.1
    block = EnvGoalImage("uva_plan/BlockPush-v0", pusht_model)  # any encoder of 64 x 64 frames
    targets = np.array([[150.0, 300.0], [350.0, 200.0]])
    frames = bp.BlockPushEnv.render_states(np.stack([goal_state("uva_plan/BlockPush-v0", t, targets)
                                                     for t in (0, 1)]), 64)
    latents = pusht_model.encode(frames)[:, None]
    for task in (0, 1):
        context = {"task": task, "targets": targets}
        costs = block.cost(Rollout(actions=torch.zeros(2, 16, 2), latents=latents, context=context))
        assert costs[task].item() == pytest.approx(0.0, abs=1e-6) and costs[1 - task] > 0
    with pytest.raises(ValueError, match="named task"):
        block.cost(Rollout(actions=torch.zeros(2, 16, 2), latents=latents, context={"task": -1, "targets": targets}))


def test_blockpush_context_carries_task_and_targets():
    model = UVAWorldModel.from_pretrained("blockpush", objective="goal_image", seed=0)
    env = gym.make("uva_plan/BlockPush-v0")
    obs, _ = env.reset(seed=3, options={"task": 2})
    context = model.context([obs] * model.n_history)
    assert context.task == 2
    np.testing.assert_array_equal(context.targets, obs["state"][8:12].reshape(2, 2))
    planner = Planner(model, optimizer=BestOfN(n_samples=4), n_action_steps=6)
    assert planner.plan(obs).shape == (6, 2)


def test_gif_shows_imagined_frames_beside_real_ones(pusht_model):
    env = gym.make("uva_plan/PushT-v0", render_size=64, max_episode_steps=10)
    planner = Planner(pusht_model, optimizer=BestOfN(n_samples=4))
    metrics, frames = run_episode(env, planner, seed=0, record_frames=True)
    assert len(frames) == metrics["steps"] + 1 == 11
    assert all(f.shape == (64, 64 + 2 + 64, 3) for f in frames)
    imagined = np.array(frames)[1:, :, 66:]
    assert imagined.std() > 5  # decoded frames, not blank
    # Recording does not change the episode: the same seed without frames plans the same actions.
    metrics_again, _ = run_episode(env, planner, seed=0, record_frames=False)
    assert metrics_again["steps"] == metrics["steps"] and metrics_again["max_coverage"] == metrics["max_coverage"]


def test_simulator_context_keeps_frames_for_dpc():
    sim = SimulatorDynamics("uva_plan/PushT-v0", n_history=2)
    env = PrivilegedState(gym.make("uva_plan/PushT-v0"))
    obs, _ = env.reset(seed=0)
    context = sim.context([obs, obs])
    assert context.frames.shape == (2, 64, 64, 3) and context.agent_pos_history.shape == (2, 2)
    with pytest.raises(ValueError, match="n_history must be an int >= 1"):
        SimulatorDynamics("uva_plan/PushT-v0", n_history=0)


def test_make_optimizer_budgets():
    for name in ("best_of_n", "cem", "mppi", "icem"):
        assert make_optimizer(name, 32).n_proposals >= 16
    with pytest.raises(ValueError, match="planner must be one of"):
        make_optimizer("adam", 32)
    with pytest.raises(ValueError, match="n_samples must be an int >= 4"):
        make_optimizer("cem", 2)


def test_write_report_writes_json_markdown_and_plot(tmp_path):
    rows = [{"row": "a", "success": 0.5, "success_wilson95": [0.3, 0.7], "ms": 12.0},
            {"row": "b", "success": 0.1, "success_wilson95": [0.02, 0.4], "ms": 3.5}]
    paths = write_report(tmp_path, "x", "title", rows, ["row", "success", "ms"], {"seed": 0},
                         plot_label="row", plot_rate="success")
    data = json.loads(paths["json"].read_text())
    assert data["rows"] == rows and data["config"] == {"seed": 0} and data["git_revision"]
    assert "0.500 [0.300, 0.700]" in paths["md"].read_text()
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert markdown_table(rows, ["row"]).count("\n") == 4


EXPERIMENT_CONFIGS = {"blockpush_guidance": "guidance", "ranking_fidelity": "ranking_fidelity"}


def _run_example(name: str, overrides: list[str]):
    """examples/<name>.py's hydra main, in this process, on its config with these overrides."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        module = __import__(name)
    finally:
        sys.path.remove(str(ROOT / "examples"))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs" / "experiment"), version_base="1.3"):
        cfg = compose(config_name=EXPERIMENT_CONFIGS[name], overrides=overrides)
    GlobalHydra.instance().clear()
    return module.main(cfg)


@pytest.mark.slow
def test_guidance_rows_run_and_resume(tmp_path):
    argv = ["rows=[dpc,dpc+uva:n8,dpc+uva:c10]", "trials_per_task=1", "max_steps=12", f"out_dir={tmp_path}"]
    rows = _run_example("blockpush_guidance", argv)
    assert [r["row"] for r in rows] == ["dpc", "dpc+uva:n8", "dpc+uva:c10"]
    assert all(r["episodes"] == 4 and 0 <= r["task_success"] <= 1 for r in rows)
    assert rows[1]["evaluations_per_plan"] == 8
    assert rows[2]["evaluations_per_plan"] == 10  # UVA imagines only the 10 most typical of 100
    written = (tmp_path / "rows" / "dpc_uva_n8" / "results.json").stat().st_mtime_ns
    _run_example("blockpush_guidance", argv)  # finished rows are not rerun
    assert (tmp_path / "rows" / "dpc_uva_n8" / "results.json").stat().st_mtime_ns == written
    assert (tmp_path / "guidance.md").exists() and (tmp_path / "guidance.png").exists()


@pytest.mark.slow
def test_ablation_multirun_ends_in_one_summary(tmp_path):
    import subprocess

    out = tmp_path / "ablate"
    cmd = [sys.executable, str(ROOT / "examples" / "ablate_planners.py"), "--multirun",
           "planner=best_of_n,cem", "objective=state", "n_samples=4", "n_episodes=1", "max_steps=9",
           f"out_root={out}", "hydra.launcher.n_jobs=2"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(r["planner"] for r in summary["rows"]) == ["best_of_n", "cem"]
    assert all(r["episodes"] == 1 and r["evaluations_per_plan"] > 0 for r in summary["rows"])
    assert (out / "summary.md").exists() and (out / "summary.png").exists()


@pytest.mark.slow
def test_demo_runs_with_its_config_and_writes_gif_and_results(tmp_path):
    import subprocess

    cmd = [sys.executable, str(ROOT / "examples" / "pusht_plan.py"), "n_episodes=1", "max_steps=9", "n_samples=4",
           "planner=cem", "state_head=real", f"out_dir={tmp_path}", "threads=1"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["summary"]["n_episodes"] == 1 and results["config"]["planner"] == "cem"
    assert results["config"]["state_head"] == "real"
    assert (tmp_path / "episode_100000.gif").read_bytes()[:6] == b"GIF89a"
    assert "ms_per_plan" in done.stdout


@pytest.mark.slow
def test_demo_passes_its_state_head_choice_to_the_model(tmp_path):
    import subprocess

    cmd = [sys.executable, str(ROOT / "examples" / "pusht_plan.py"), "n_episodes=1", "max_steps=9", "n_samples=4",
           "state_head=bogus", f"out_dir={tmp_path}", "threads=1"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "state_head must be 'imagined' or 'real', got 'bogus'" in done.stderr + done.stdout


@pytest.mark.slow
def test_ranking_fidelity_scores_candidates_under_uva_and_the_simulator(tmp_path):
    from uva_plan.data.collect import main as collect

    store = tmp_path / "pusht"
    collect(["--env", "uva_plan/PushT-v0", "--expert", "random", "--n-episodes", "20", "--out", str(store),
             "--seed", "0", "--max-steps", "40"])
    out = tmp_path / "ranking"
    result = _run_example("ranking_fidelity", ["env=pusht", f"store={store}", "n_states=2", "n_candidates=10",
                                                "threads=1", f"out_dir={out}"])
    rows = {r["objective"]: r for r in result["rows"]}
    assert set(rows) == {"state_head", "goal_image", "located", "located_act"}
    for row in rows.values():
        assert np.isnan(row["self_rho"])  # one imagination: nothing to agree with
        assert -1 <= row["rho_real_truth"] <= 1 and -np.inf < row["real_truth_fraction_at_8"] <= 1
        assert -1 <= row["rho_truth"] <= 1 and 0 <= row["truth_top10_hit"] <= 1
        assert -np.inf < row["truth_fraction_at_8"] <= 1
        assert row["states"] == 2 and -1 <= row["rho"] <= 1 and 0 <= row["top10_hit"] <= 1
        assert row["regret"] >= 0 and row["sim_spread"] >= row["regret"]
        assert row["pick_error_ratio"] > 0 and np.isfinite([row["optimism"], row["mean_optimism"]]).all()
        assert -np.inf < row["oracle_fraction_at_8"] <= 1 and "oracle_fraction_at_32" not in row  # N > 10 candidates
    for state in result["per_state"]["state_head"]:  # the pick's error is one of the candidates'
        assert state["pick_latent_error"] >= 0 and state["mean_latent_error"] > 0
        assert len(state["truth_cost"]) == 10 and np.isfinite(state["truth_cost"]).all()
    saved = json.loads((out / "ranking_pusht.json").read_text())
    assert saved["git_revision"] and len(saved["per_state"]["state_head"]) == 2
    assert (out / "ranking_pusht.png").exists()
    # Two imaginations per candidate, one objective: the costs ranked are the two's mean.
    again = _run_example("ranking_fidelity", ["env=pusht", f"store={store}", "n_states=1", "n_candidates=10",
                                               "threads=1", "n_imaginations=2", "objectives=[state_head]",
                                               f"out_dir={tmp_path / 'k2'}"])
    (row,) = again["rows"]
    assert row["objective"] == "state_head" and -1 <= row["self_rho"] <= 1


def test_oracle_fraction_is_one_for_the_simulator_zero_for_noise_negative_reversed():
    from uva_plan.experiments.ranking import oracle_fraction

    rng = np.random.default_rng(0)
    states = [{"sim_cost": rng.random(100)} for _ in range(100)]
    same = [{**r, "uva_cost": r["sim_cost"] * 2 + 1} for r in states]  # any increasing map
    reversed_ = [{**r, "uva_cost": -r["sim_cost"]} for r in states]
    noise = [{**r, "uva_cost": rng.random(100)} for r in states]
    assert oracle_fraction(same, 8, 0) == pytest.approx(1.0)
    assert oracle_fraction(reversed_, 8, 0) < -0.9
    assert abs(oracle_fraction(noise, 32, 0)) < 0.15  # 0 in expectation


@pytest.mark.slow
def test_planning_benchmark_measures_each_speed_up_beside_its_baseline(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from bench_planning import main as bench
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    previous = torch.get_num_threads()
    try:
        result = bench(["--env", "pusht", "--threads", "1", "--repeats", "1", "--skip", "planners", "training",
                        "compile", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(previous)
    rows = {r["measure"]: r for r in result["rows"]}
    stages = [r for r in result["rows"] if r["measure"].startswith("best-of-100 decision")]
    assert len(stages) == 5 and stages[0]["baseline_ms"] is None
    for before, after in zip(stages, stages[1:]):  # each row's baseline is the row before it
        assert after["baseline_ms"] == before["ms"] and after["speedup"] == pytest.approx(before["ms"] / after["ms"])
    assert stages[-1]["speedup_over_naive"] == pytest.approx(stages[0]["ms"] / stages[-1]["ms"])
    once = rows["MPPI over UVA 256 x 4, proposals scored once"]
    assert once["baseline_ms"] == rows["MPPI over UVA 256 x 4, proposals re-scored every iteration"]["ms"]
    assert all(r["ms"] > 0 for r in result["rows"])
    saved = json.loads((tmp_path / "planning_pusht.json").read_text())
    assert saved["git_revision"] and saved["config"]["threads"] == 1


def test_from_pretrained_state_head_choice():
    """The "state" objective reads the imagination-trained head by default, the real-frame one on
    request, and an explicit checkpoint over both."""
    from uva_plan import hub

    def head_weights(model):
        return next(model.objective.state_head.parameters()).detach().clone()

    imagined = UVAWorldModel.from_pretrained("blockpush")
    real = UVAWorldModel.from_pretrained("blockpush", state_head="real")
    given = UVAWorldModel.from_pretrained("blockpush", state_head="real", checkpoints={
        "state_head": hub.pretrained_checkpoint("blockpush/state_head_imagined")})
    assert not torch.equal(head_weights(imagined), head_weights(real))
    assert torch.equal(head_weights(imagined), head_weights(given))
    with pytest.raises(ValueError, match="state_head must be 'imagined' or 'real'"):
        UVAWorldModel.from_pretrained("blockpush", state_head="best")


def test_guidance_does_not_reuse_a_row_that_read_another_state_head():
    from dataclasses import replace

    from uva_plan.experiments.guidance import GuidanceConfig
    from uva_plan.experiments.guidance import same_run as _same_run

    args = GuidanceConfig(trials_per_task=5, seed=100000, max_steps=None, uva=None, state_head=None)

    def previous(row, **config):
        return {"seed": 100000, "config": {"row": row, "n_episodes": 20, "max_steps": None, "uva": "shipped",
                                           **config}}

    assert _same_run(previous("dpc+uva", state_head="shipped:state_head_imagined"), args)
    assert not _same_run(previous("dpc+uva", state_head="shipped"), args)  # the real-frame default then
    assert not _same_run(previous("dpc+uva"), args)  # recorded before the key existed
    assert _same_run(previous("dpc"), args)  # DP-C alone reads no state head
    assert not _same_run(previous("dpc+uva", state_head="shipped:state_head_imagined"),
                         replace(args, state_head="some/head"))


@pytest.mark.slow
@pytest.mark.parametrize("key", ["uva_checkpoint", "state_head_checkpoint"])
def test_demo_loads_the_checkpoints_it_is_given(tmp_path, key):
    import subprocess

    missing = tmp_path / "no_such_checkpoint"
    cmd = [sys.executable, str(ROOT / "examples" / "pusht_plan.py"), "n_episodes=1", "max_steps=9", "n_samples=4",
           f"{key}={missing}", f"out_dir={tmp_path}", "threads=1"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "no_such_checkpoint" in done.stderr + done.stdout


@pytest.mark.slow
def test_demo_writes_only_the_gifs_it_is_asked_for(tmp_path):
    import subprocess

    cmd = [sys.executable, str(ROOT / "examples" / "pusht_plan.py"), "n_episodes=2", "max_steps=5", "n_samples=4",
           "n_gifs=1", f"out_dir={tmp_path}", "threads=1"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.glob("*.gif")) == ["episode_100000.gif"]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["summary"]["n_episodes"] == 2


def _demo_module_and_config():
    """examples/pusht_plan.py as a module, and its config (configs/examples/demo.yaml) as a dict."""
    from omegaconf import OmegaConf

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import pusht_plan
    finally:
        sys.path.remove(str(ROOT / "examples"))
    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "examples" / "demo.yaml"))
    cfg.pop("hydra")
    return pusht_plan, cfg


def test_demo_dpc_sampling_reaches_the_proposer():
    demo, cfg = _demo_module_and_config()
    dpc = demo.build_planner({**cfg, "dpc_steps": 3, "dpc_spacing": "trailing"}).model.proposer
    assert (dpc.n_sample_steps, dpc.timestep_spacing) == (3, "trailing")
    dpc = demo.build_planner({**cfg, "dpc_steps": None, "dpc_spacing": None}).model.proposer
    assert (dpc.n_sample_steps, dpc.timestep_spacing) == (None, None)  # the checkpoint's own, as trained


def test_demo_ranks_the_configured_most_typical_proposals_with_best_of_n_only():
    demo, cfg = _demo_module_and_config()
    assert (cfg["planner"], cfg["n_samples"], cfg["n_central"]) == ("best_of_n", 100, 10)
    assert demo.build_planner(cfg).optimizer.n_central == 10
    assert demo.ranked_central({**cfg, "n_samples": 4}) == 4  # all of them when fewer are drawn
    assert demo.ranked_central({**cfg, "n_central": None}) is None  # the paper's best of 100
    assert demo.ranked_central({**cfg, "planner": "cem"}) is None  # other planners take every proposal


def test_guidance_rows_share_one_dpc_sampler_and_do_not_reuse_another():
    from dataclasses import replace

    from uva_plan.experiments.guidance import GuidanceConfig, build
    from uva_plan.experiments.guidance import same_run as _same_run

    proposers = {"dpc": build("dpc", 0, None, dpc_steps=3, dpc_spacing="trailing").proposer,
                 "dpc+sim": build("dpc+sim", 0, None, dpc_steps=3, dpc_spacing="trailing").proposer,
                 "dpc+uva": build("dpc+uva", 0, None, dpc_steps=3, dpc_spacing="trailing").model.proposer}
    for row, proposer in proposers.items():
        assert (proposer.n_sample_steps, proposer.timestep_spacing) == (3, "trailing"), row
    args = GuidanceConfig(trials_per_task=5, seed=100000, max_steps=None, uva=None, state_head=None,
                          dpc_steps=None, dpc_spacing=None)
    previous = {"seed": 100000, "config": {"row": "dpc", "n_episodes": 20, "max_steps": None, "uva": "shipped",
                                           "dpc_sampling": [10, "leading"]}}
    assert _same_run(previous, args)  # the shipped DP-C's own 10 leading steps
    five = replace(args, dpc_steps=5, dpc_spacing="trailing")
    assert not _same_run(previous, five)
    assert _same_run({**previous, "config": {**previous["config"], "dpc_sampling": [5, "trailing"]}}, five)


def test_guidance_names_an_unknown_row_and_writes_nothing_into_the_working_directory(tmp_path):
    import subprocess

    from uva_plan.experiments.guidance import GuidanceConfig, build

    with pytest.raises(ValueError, match="unknown row 'nope'; rows are"):
        GuidanceConfig(rows=["dpc", "nope"])
    assert GuidanceConfig(rows="dpc").rows == ("dpc",) and len(GuidanceConfig().rows) == 15  # None: every row
    with pytest.raises(ValueError, match=re.escape("unknown row 'dpc+uva:n9'")):
        build("dpc+uva:n9", 0, None)
    cmd = [sys.executable, str(ROOT / "examples" / "blockpush_guidance.py"), "rows=[dpc,nope]",
           f"out_dir={tmp_path / 'out'}"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0 and "unknown row 'nope'" in done.stderr + done.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and not any((tmp_path / "out").iterdir())


def test_guidance_rows_plan_at_their_named_budgets():
    from planners import CEM, ICEM, MPPI
    from uva_plan.experiments.guidance import ROWS, row_optimizer

    expected = {
        "cem": CEM(n_samples=32, n_proposals=64, n_elites=8, n_iterations=2, init_std=0.1, min_std=0.02, seed=3),
        "mppi": MPPI(n_samples=96, n_proposals=64, n_elites=16, n_iterations=2, temperature=0.3, init_std=0.1,
                     min_std=0.02, max_std=0.5, seed=3),
        "icem": ICEM(n_samples=32, n_proposals=64, n_elites=8, n_iterations=2, init_std=0.1, min_std=0.02, seed=3),
        "dpc+uva:c10": BestOfN(n_samples=100, n_central=10, seed=3),
        "dpc+uva:n8": BestOfN(n_samples=8, seed=3), "dpc+uva:n32": BestOfN(n_samples=32, seed=3)}

    def settings(optimizer):
        return {k: v for k, v in vars(optimizer).items() if k != "generator"}

    for row in ROWS[1:]:  # every row but DP-C alone plans with an optimiser
        want = expected.get(row, BestOfN(n_samples=100, seed=3))
        got = row_optimizer(row, 3)
        assert type(got) is type(want) and settings(got) == settings(want), row
    with pytest.raises(ValueError, match="row 'dpc' plans with no optimiser"):
        row_optimizer("dpc", 3)


def test_ranking_fidelity_defaults_read_the_guidance_budgets():
    from uva_plan.experiments.ranking import RankingConfig

    config = RankingConfig()
    assert (config.n_candidates, config.budgets) == (100, [8, 32, 100])
    assert RankingConfig(n_candidates=10).scored_budgets == [8]
    with pytest.raises(ValueError, match="n_candidates must be an int >= 10"):
        RankingConfig(n_candidates=5)
    with pytest.raises(ValueError, match="pose_head: one pose head per run"):
        RankingConfig(pose_head={"a": "x", "b": "y"})
    with pytest.raises(ValueError, match="env must be one of"):
        RankingConfig(env="cartpole")
