"""Bad inputs at every public entry point we can reach cheaply, and what each one got.

    python benchmarks/bad_inputs.py [--out outputs/bench/bad_inputs.json]

Each case calls one entry point with one bad input. Verdict: "clear" when it raised a
ValueError/TypeError/RuntimeError (or a subclass such as CheckpointError, or IndexError,
FileNotFoundError, PermissionError where that is the natural type) whose message names the
bad value or field; "unclear" when it raised something else or a message that names neither;
"no error" when nothing was raised.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import gymnasium as gym
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

import uva_plan.envs  # noqa: F401  (registers the envs)
from planners import CEM, ICEM, MPPI, BestOfN, Planner, Rollout
from uva_plan.checkpoint import load_checkpoint, save_checkpoint
from uva_plan.data.sampler import SequenceSampler, train_val_split
from uva_plan.data.store import EpisodeStore
from uva_plan.dynamics import PrivilegedState, SimContext, SimulatorDynamics
from uva_plan.envs import BlockPushEnv, PushTEnv
from uva_plan.models.diff_head import DiffusionHeadConfig
from uva_plan.models.uva import UVA
from uva_plan.models.vae import VAEConfig
from uva_plan.objectives import BlockPushSimObjective, PushTSimObjective
from uva_plan.report import write_json
from uva_plan.proposers import GaussianProposer, UniformProposer
from uva_plan.runner import run_episodes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.test_models import tiny_uva_config  # noqa: E402  (the same tiny UVA as the tests)

ACCEPTED = (ValueError, TypeError, RuntimeError, IndexError, FileNotFoundError, PermissionError)
P, A = 14, 2
META = {"env_id": "uva_plan/PushT-v0", "env_kwargs": {}, "expert": "bad_inputs", "seed": 0,
        "physical_dim": P, "action_dim": A}


@dataclass
class Case:
    entry: str  # the entry point
    bad: str  # the bad input, in words
    call: Callable[[], object]
    names: tuple[str, ...]  # any of these in the message counts as naming the bad value/field


class FixedChunk:
    """A controller whose plan() returns one fixed output."""

    def __init__(self, chunk) -> None:
        self.chunk = chunk

    def reset(self) -> None:
        pass

    def plan(self, obs):
        return self.chunk


def episode(n_steps: int = 5, **overrides) -> dict:
    rng = np.random.default_rng(0)
    ep = {"states": rng.normal(size=(n_steps, P)), "actions": rng.uniform(0, 512, (n_steps, A)),
          "final_state": rng.normal(size=P), "rewards": rng.uniform(size=n_steps), "seed": 0}
    return {**ep, **overrides}


def cases(tmp: Path) -> list[Case]:
    pusht, blockpush = PushTEnv(render_size=16), BlockPushEnv(render_size=16)
    pusht.reset(seed=0)
    blockpush.reset(seed=0)
    quadratic = lambda a: (a ** 2).sum((1, 2))
    init = torch.zeros(4, 2)
    out: list[Case] = []

    def add(entry, bad, call, *names):
        out.append(Case(entry, bad, call, names))

    # -- environments
    for env in (pusht, blockpush):
        name = type(env).__name__
        add(f"{name}.step", "action NaN", lambda env=env: env.step(np.array([np.nan, 1.0])), "finite", "nan")
        add(f"{name}.step", "action inf", lambda env=env: env.step(np.array([np.inf, 1.0])), "finite", "inf")
        add(f"{name}.step", "action shape (3,)", lambda env=env: env.step(np.zeros(3)), "shape")
        add(f"{name}.step", "action shape (1, 2)", lambda env=env: env.step(np.zeros((1, 2))), "shape")
        add(f"{name}.step", "action 'abc'", lambda env=env: env.step("abc"), "abc")
        add(f"{name}.step", "action None", lambda env=env: env.step(None), "None", "shape")
        add(f"{name}.reset", "seed -1", lambda env=env: env.reset(seed=-1), "seed")
        add(f"{name}.reset", "seed 1.5", lambda env=env: env.reset(seed=1.5), "seed")
        add(f"{name}.reset", "unknown option 'foo'", lambda env=env: env.reset(options={"foo": 1}), "foo")
        add(f"{name}.reset", "options state NaN", lambda env=env: env.reset(
            options={"state": np.full(env.physical_dim, np.nan)}), "finite", "nan")
        add(f"{name}.set_state", "state of length 7", lambda env=env: env.set_state(np.zeros(7)), "shape", "7")
        add(f"{name}.set_state", "state 2-d", lambda env=env: env.set_state(np.zeros((2, env.physical_dim))),
            "shape", "1-d")
        add(f"{name}.set_state", "corrupt full state (bad n_replay)", lambda env=env: env.set_state(
            np.concatenate([env.get_state()[:2 * env.physical_dim], [3.5]])), "n_replay")
        add(f"{name}()", "render_size 3", lambda cls=type(env): cls(render_size=3), "render_size")
        add(f"{name}()", "restore_mode 'x'", lambda cls=type(env): cls(restore_mode="x"), "restore_mode")
        add(f"{name}()", "render_mode 'human'", lambda cls=type(env): cls(render_mode="human"), "render_mode")
        add(f"{name}.render_states", "states (3,)", lambda cls=type(env): cls.render_states(np.zeros(3)),
            "states", "shape")
    for env in (pusht, blockpush):
        name = type(env).__name__
        p = env.physical_dim
        add(f"{name}.reset", "options 'abc'", lambda env=env: env.reset(options="abc"), "options")
        add(f"{name}.reset", "seed True", lambda env=env: env.reset(seed=True), "seed")
        add(f"{name}.step", "complex action", lambda env=env: env.step(np.array([1 + 1j, 2 + 0j])), "complex")
        add(f"{name}.step", "bool action", lambda env=env: env.step(np.array([True, False])), "bool")
        add(f"{name}.set_state", "agent x 600", lambda env=env: env.set_state(
            np.concatenate([[600.0], env.get_state()[1:env.physical_dim]])), "workspace")
        add(f"{name}.set_state", "block y -5", lambda env=env: env.set_state(
            np.concatenate([env.get_state()[:5], [-5.0], env.get_state()[6:env.physical_dim]])), "workspace")
        add(f"{name}.reset", "options state with agent x 600", lambda env=env: env.reset(options={
            "state": np.concatenate([[600.0], env.get_state()[1:env.physical_dim]])}), "workspace")
        add(f"{name}.set_state", "full state with NaN anchor", lambda env=env, p=p: env.set_state(
            np.concatenate([env.get_state()[:p], [np.nan], env.get_state()[p + 1:]])), "anchor")
        add(f"{name}.set_state", "full state with anchor agent at 600", lambda env=env, p=p: env.set_state(
            np.concatenate([env.get_state()[:p], [600.0], env.get_state()[p + 1:]])), "anchor")
    add("PushTEnv.set_state", "DP 5-d state agent x 700", lambda: pusht.set_state(
        np.array([700.0, 100.0, 200.0, 200.0, 0.0])), "workspace")
    add("PushTEnv.reset", "goal_pose of 2 floats", lambda: pusht.reset(options={"goal_pose": [1.0, 2.0]}),
        "goal_pose")
    add("PushTEnv.set_state", "DP 5-d state with inf", lambda: pusht.set_state(np.array([1, 2, 3, 4, np.inf])),
        "finite", "inf")
    add("BlockPushEnv.reset", "task 7", lambda: blockpush.reset(options={"task": 7}), "task", "7")
    add("BlockPushEnv()", "task (0, 2)", lambda: BlockPushEnv(task=(0, 2)), "task")
    add("BlockPushEnv.set_state", "task entry 9", lambda: blockpush.set_state(
        np.concatenate([blockpush.physical_state()[:24], [9.0, 0.0]])), "task", "9")

    # -- optimiser constructors
    for cls in (BestOfN, CEM, MPPI, ICEM):
        n = cls.__name__
        add(f"{n}()", "n_samples 0", lambda cls=cls: cls(n_samples=0), "n_samples")
        add(f"{n}()", "n_samples 2.5", lambda cls=cls: cls(n_samples=2.5), "n_samples")
        add(f"{n}()", "low > high", lambda cls=cls: cls(low=1.0, high=-1.0), "low", "high")
        add(f"{n}()", "low NaN", lambda cls=cls: cls(low=math.nan), "low")
        add(f"{n}()", "seed -1", lambda cls=cls: cls(seed=-1), "seed")
        add(f"{n}()", "max_batch 0", lambda cls=cls: cls(max_batch=0), "max_batch")
    add("CEM()", "n_elites > n_samples", lambda: CEM(n_samples=4, n_elites=5), "n_elites")
    add("CEM()", "momentum 1.0", lambda: CEM(momentum=1.0), "momentum")
    add("CEM()", "init_std 0", lambda: CEM(init_std=0.0), "init_std")
    add("MPPI()", "temperature NaN", lambda: MPPI(temperature=math.nan), "temperature")
    add("MPPI()", "max_std < min_std", lambda: MPPI(min_std=0.5, max_std=0.1), "max_std")
    add("MPPI()", "n_proposals > n_samples", lambda: MPPI(n_samples=8, n_elites=2, n_proposals=9), "n_proposals")
    add("ICEM()", "shrink_factor 0.5", lambda: ICEM(shrink_factor=0.5), "shrink_factor")
    add("ICEM()", "keep_elite_fraction 2", lambda: ICEM(keep_elite_fraction=2.0), "keep_elite_fraction")
    add("BestOfN()", "noise_std -1", lambda: BestOfN(noise_std=-1.0), "noise_std")
    add("MPPI()", "temperature inf", lambda: MPPI(temperature=math.inf), "temperature")
    add("MPPI()", "init_std inf", lambda: MPPI(init_std=math.inf), "init_std")
    add("CEM()", "init_std inf", lambda: CEM(init_std=math.inf), "init_std")
    add("ICEM()", "noise_beta 35", lambda: ICEM(noise_beta=35.0), "noise_beta")
    add("CEM()", "seed 'a'", lambda: CEM(seed="a"), "seed")

    # -- optimiser search
    for cls in (BestOfN, CEM, MPPI, ICEM):
        n = cls.__name__
        small = dict(n_samples=8) if cls is BestOfN else dict(n_samples=8, n_elites=2, n_iterations=2)
        if cls is MPPI:
            small["n_proposals"] = 2
        opt = cls(**small)
        add(f"{n}.search", "init 1-d (H,)", lambda opt=opt: opt.search(quadratic, torch.zeros(4)), "init")
        add(f"{n}.search", "init numpy array", lambda opt=opt: opt.search(quadratic, np.zeros((4, 2))), "init")
        add(f"{n}.search", "proposals (M, H+1, A)", lambda opt=opt: opt.search(
            quadratic, init, torch.zeros(3, 5, 2)), "proposals")
        add(f"{n}.search", "cost returns (N, 1)", lambda opt=opt: opt.search(
            lambda a: torch.zeros(len(a), 1), init), "cost", "shape")
        add(f"{n}.search", "cost returns a list", lambda opt=opt: opt.search(
            lambda a: [0.0] * len(a), init), "cost")
        add(f"{n}.search", "every cost NaN", lambda opt=opt: opt.search(
            lambda a: torch.full((len(a),), math.nan), init), "non-finite")
        add(f"{n}.search", "init NaN", lambda opt=opt: opt.search(quadratic, torch.full((4, 2), math.nan)), "init")
        add(f"{n}.search", "init (0, 2): horizon 0", lambda opt=opt: opt.search(quadratic, torch.zeros(0, 2)), "init")
        add(f"{n}.search", "proposals NaN", lambda opt=opt: opt.search(
            quadratic, init, torch.full((3, 4, 2), math.nan)), "proposals")
        add(f"{n}.search", "zero proposals (0, H, A)", lambda opt=opt: opt.search(
            quadratic, init, torch.zeros(0, 4, 2)), "proposals")
        add(f"{n}.search", "low (3,) vs A=2", lambda cls=cls, small=small: cls(
            low=torch.full((3,), -1.0), **small).search(quadratic, init), "low", "action dims")

    # -- planner
    sim = SimulatorDynamics("uva_plan/PushT-v0")
    planner = Planner(sim, BestOfN(n_samples=2), objective=PushTSimObjective(), horizon=2, n_action_steps=1)
    add("Planner.plan", "obs without sim_state", lambda: (planner.reset(), planner.plan(
        {"agent_pos": np.zeros(2)})), "sim_state")
    add("Planner.plan", "obs not a dict (array)", lambda: (planner.reset(), planner.plan(np.zeros(5))), "obs")
    add("Planner.plan", "obs sim_state NaN", lambda: (planner.reset(), planner.plan(
        {"sim_state": np.full(P, np.nan), "agent_pos": np.zeros(2)})), "finite", "nan")
    obs = PrivilegedState(gym.make("uva_plan/PushT-v0", render_size=16)).reset(seed=0)[0]
    add("Planner.plan", "agent_pos NaN", lambda: (planner.reset(), planner.plan(
        {**obs, "agent_pos": np.array([np.nan, 1.0])})), "agent_pos")
    add("Planner.plan", "agent_pos inf", lambda: (planner.reset(), planner.plan(
        {**obs, "agent_pos": np.array([np.inf, 1.0])})), "agent_pos")
    add("Planner.plan", "env.reset()'s (obs, info) tuple", lambda: (planner.reset(), planner.plan((obs, {}))),
        "pass obs")
    add("Planner.observe", "observation without sim_state after one with it", lambda: (
        planner.reset(), planner.observe(obs), planner.observe({k: v for k, v in obs.items() if k != "sim_state"})),
        "sim_state")
    add("Planner()", "horizon 0", lambda: Planner(sim, objective=PushTSimObjective(), horizon=0), "horizon")
    add("Planner()", "n_action_steps > horizon", lambda: Planner(
        sim, objective=PushTSimObjective(), horizon=2, n_action_steps=3), "n_action_steps")
    add("Planner()", "no objective", lambda: Planner(sim), "objective")
    add("Planner()", "max_batch with an optimizer", lambda: Planner(
        sim, BestOfN(), objective=PushTSimObjective(), max_batch=4), "max_batch")
    add("SimulatorDynamics.rollout", "actions (N, H, 3)", lambda: sim.rollout(
        SimContext(pusht.get_state(), np.zeros(2)), torch.zeros(1, 2, 3)), "actions")
    add("SimulatorDynamics()", "unknown env id", lambda: SimulatorDynamics("nope/Env-v0"), "nope")

    # -- proposers
    context = SimContext(pusht.get_state(), np.array([100.0, 100.0]))
    add("GaussianProposer.sample", "n 0", lambda: GaussianProposer().sample(context, 0), "n")
    add("UniformProposer.sample", "n 2.5", lambda: UniformProposer().sample(context, 2.5), "n")
    add("GaussianProposer()", "step_std 0", lambda: GaussianProposer(step_std=0.0), "step_std")
    add("GaussianProposer()", "seed 'a'", lambda: GaussianProposer(seed="a"), "seed")
    add("UniformProposer()", "seed 1.5", lambda: UniformProposer(seed=1.5), "seed")
    add("UniformProposer()", "horizon 0", lambda: UniformProposer(horizon=0), "horizon")
    add("GaussianProposer()", "action_low > action_high", lambda: GaussianProposer(
        action_low=(10, 10), action_high=(0, 0)), "action_low")

    # -- objectives
    no_states = Rollout(actions=torch.zeros(2, 3, 2))
    add("PushTSimObjective.cost", "rollout without states", lambda: PushTSimObjective().cost(no_states), "states")
    add("PushTSimObjective.cost", "states (N, H, 5)", lambda: PushTSimObjective().cost(
        Rollout(actions=torch.zeros(2, 3, 2), states=torch.zeros(2, 3, 5))), "states")
    add("PushTSimObjective()", "coverage_weight NaN", lambda: PushTSimObjective(coverage_weight=math.nan),
        "coverage_weight")
    add("BlockPushSimObjective.cost", "rollout without states", lambda: BlockPushSimObjective(task=0).cost(
        no_states), "states")
    add("BlockPushSimObjective()", "task 5", lambda: BlockPushSimObjective(task=5), "task")
    add("BlockPushSimObjective.cost", "no task anywhere", lambda: BlockPushSimObjective().cost(Rollout(
        actions=torch.zeros(1, 1, 2), states=torch.tensor(blockpush.physical_state()).reshape(1, 1, -1))), "task")

    # -- runner
    add("run_episodes", "n_episodes 0", lambda: run_episodes("uva_plan/PushT-v0", planner, 0), "n_episodes")
    add("run_episodes", "n_episodes 1.0", lambda: run_episodes("uva_plan/PushT-v0", planner, 1.0), "n_episodes")
    short = {"render_size": 16, "max_episode_steps": 3}
    for bad, chunk in (("empty chunk (0, 2)", np.zeros((0, 2))), ("NaN chunk", np.full((2, 2), np.nan)),
                       ("chunk (2,)", np.zeros(2)), ("chunk (1, 3)", np.zeros((1, 3))), ("chunk None", None),
                       ("complex chunk", np.full((1, 2), 1 + 1j))):
        add("run_episodes", f"controller returns {bad}", lambda chunk=chunk: run_episodes(
            "uva_plan/PushT-v0", FixedChunk(chunk), 1, env_kwargs=short), "chunk")
    (tmp / "a_file").write_text("")
    add("run_episodes", "out_dir is a file", lambda: run_episodes(
        "uva_plan/PushT-v0", FixedChunk(np.zeros((1, 2))), 1, env_kwargs=short, out_dir=tmp / "a_file"), "out_dir")
    (tmp / "damaged").mkdir()
    (tmp / "damaged" / "episodes.partial.json").write_text("{not json")
    add("run_episodes", "damaged resume file", lambda: run_episodes(
        "uva_plan/PushT-v0", planner, 1, env_kwargs=short, out_dir=tmp / "damaged", resume=True),
        "episodes.partial.json")
    other = Planner(sim, BestOfN(n_samples=3), objective=PushTSimObjective(), horizon=2, n_action_steps=1)
    add("run_episodes", "a second planner in the first one's out_dir", lambda: [run_episodes(
        "uva_plan/PushT-v0", p, 1, env_kwargs=short, out_dir=tmp / "shared", resume=True) for p in (planner, other)],
        "different run")

    # -- data store and sampler
    store = EpisodeStore.create(tmp / "store", META)
    add("EpisodeStore.create", "meta without physical_dim", lambda: EpisodeStore.create(
        tmp / "other", {k: v for k, v in META.items() if k != "physical_dim"}), "physical_dim")
    add("EpisodeStore.open", "missing directory", lambda: EpisodeStore.open(tmp / "missing"), "missing")
    add("EpisodeStore.write_episode", "states (T, P-1)", lambda: store.write_episode(
        0, **episode(states=np.zeros((5, P - 1)))), "states")
    add("EpisodeStore.write_episode", "actions T-1 rows", lambda: store.write_episode(
        0, **episode(actions=np.zeros((4, A)))), "actions")
    add("EpisodeStore.write_episode", "actions NaN", lambda: store.write_episode(
        0, **episode(actions=np.full((5, A), np.nan))), "actions", "NaN")
    add("EpisodeStore.write_episode", "rewards inf", lambda: store.write_episode(
        0, **episode(rewards=np.full(5, np.inf))), "rewards")
    add("EpisodeStore.write_episode", "index -1", lambda: store.write_episode(-1, **episode()), "-1", "index")
    add("EpisodeStore.write_episode", "seed 'x'", lambda: store.write_episode(0, **episode(seed="x")), "seed")
    add("EpisodeStore.write_episode", "final_state (1, P)", lambda: store.write_episode(
        0, **episode(final_state=np.zeros((1, P)))), "final_state")
    add("EpisodeStore.write_episode", "states empty (0, P)", lambda: store.write_episode(
        0, **episode(n_steps=0)), "states", "step")
    add("EpisodeStore.episode", "missing index 99", lambda: store.episode(99), "99")
    data = {"states": np.zeros((10, P)), "actions": np.zeros((10, A)), "episode_ends": np.array([4, 10])}
    sampler = SequenceSampler(data, frame_offsets=[0, 2], action_offset=0, n_actions=2)
    add("SequenceSampler.batch", "index -1", lambda: sampler.batch([-1]), "-1", "indices")
    add("SequenceSampler.batch", "index len", lambda: sampler.batch([len(sampler)]), str(len(sampler)))
    add("SequenceSampler.__getitem__", "index 10**6", lambda: sampler[10**6], "1000000")
    add("SequenceSampler()", "episode_ends not ending at N", lambda: SequenceSampler(
        {**data, "episode_ends": np.array([4, 9])}, [0], 0, 2), "episode_ends")
    add("SequenceSampler()", "n_actions 0", lambda: SequenceSampler(data, [0], 0, 0), "n_actions")
    add("SequenceSampler()", "episodes [5]", lambda: SequenceSampler(data, [0], 0, 2, episodes=[5]), "episodes")
    add("train_val_split", "val_fraction 1.0", lambda: train_val_split(10, 1.0), "val_fraction")

    # -- checkpoints
    model = torch.nn.Linear(2, 2)
    good = save_checkpoint(tmp / "ckpt", model, kind="vae", config={}, normalizers=None,
                           env_id="uva_plan/PushT-v0", extra={}, step=0)
    add("load_checkpoint", "missing path", lambda: load_checkpoint(tmp / "no_ckpt"), "no_ckpt")
    add("load_checkpoint", "wrong kind", lambda: load_checkpoint(good, expected_kind="uva"), "vae", "uva")
    add("load_checkpoint", "wrong env", lambda: load_checkpoint(
        good, expected_env_id="uva_plan/BlockPush-v0"), "BlockPush")
    corrupt = save_checkpoint(tmp / "corrupt", model, kind="vae", config={}, normalizers=None,
                              env_id=None, extra={}, step=0)
    (corrupt / "model.safetensors").write_bytes(b"garbage")
    add("load_checkpoint", "corrupt weights file", lambda: load_checkpoint(corrupt), "corrupt")
    old = save_checkpoint(tmp / "old", model, kind="vae", config={}, normalizers=None, env_id=None, extra={}, step=0)
    meta = json.loads((old / "meta.json").read_text())
    (old / "meta.json").write_text(json.dumps({**meta, "format_version": 0}))
    add("load_checkpoint", "format_version 0", lambda: load_checkpoint(old), "format version")
    bad_meta = save_checkpoint(tmp / "bad_meta", model, kind="vae", config={}, normalizers=None,
                               env_id=None, extra={}, step=0)
    (bad_meta / "meta.json").write_text("{not json")
    add("load_checkpoint", "meta.json not JSON", lambda: load_checkpoint(bad_meta), "meta.json")
    no_hashes = save_checkpoint(tmp / "no_hashes", model, kind="vae", config={}, normalizers=None,
                                env_id=None, extra={}, step=0)
    (no_hashes / "meta.json").write_text(json.dumps({**meta, "files": {}}))
    add("load_checkpoint", "meta.json with files {}", lambda: load_checkpoint(no_hashes), "sha256")

    # -- model configs and methods
    add("VAEConfig", "image_size 30 (not a stride multiple)", lambda: VAEConfig(image_size=30), "image_size")
    add("VAEConfig", "norm_num_groups 5", lambda: VAEConfig(norm_num_groups=5), "norm_num_groups")
    add("VAEConfig", "kl_weight -1", lambda: VAEConfig(kl_weight=-1.0), "kl_weight")
    add("VAEConfig", "scaling_factor 0", lambda: VAEConfig(scaling_factor=0.0), "scaling_factor")
    add("VAEConfig", "block_out_channels ()", lambda: VAEConfig(block_out_channels=()), "block_out_channels")
    add("DiffusionHeadConfig", "target_dim 0", lambda: DiffusionHeadConfig(target_dim=0, cond_dim=4), "target_dim")
    add("DiffusionHeadConfig", "n_sample_steps 1", lambda: DiffusionHeadConfig(4, 4, n_sample_steps=1),
        "n_sample_steps")
    add("DiffusionHeadConfig", "beta_schedule 'foo'", lambda: DiffusionHeadConfig(4, 4, beta_schedule="foo"),
        "beta_schedule")
    add("DiffusionHeadConfig", "prediction_type 'v'", lambda: DiffusionHeadConfig(4, 4, prediction_type="v"),
        "prediction_type")
    add("UVAConfig", "patch_size 3 vs latent_size 4", lambda: tiny_uva_config(patch_size=3), "patch_size")
    add("UVAConfig", "n_heads 3 vs width 32", lambda: tiny_uva_config(n_heads=3), "n_heads")
    add("UVAConfig", "dropout 1.0", lambda: tiny_uva_config(dropout=1.0), "dropout")
    add("UVAConfig", "n_history != n_future", lambda: tiny_uva_config(n_history=3), "n_history")
    add("UVAConfig", "mode_probs all zero", lambda: tiny_uva_config(mode_probs=(0.0,) * 5), "mode_probs")
    add("UVAConfig", "video_head sets target_dim", lambda: tiny_uva_config(
        video_head={"width": 32, "target_dim": 3}), "target_dim")
    add("UVAConfig", "video_head unknown field", lambda: tiny_uva_config(video_head={"wdth": 32}), "wdth")
    add("UVAConfig", "width 0", lambda: tiny_uva_config(width=0), "width")
    torch.manual_seed(0)
    uva = UVA(tiny_uva_config()).eval()
    latents = torch.zeros(1, 2, 4, 4, 4)
    add("UVA.policy", "latents (1, 3, 4, 4, 4)", lambda: uva.policy({"latents": torch.zeros(1, 3, 4, 4, 4)}),
        "latents")
    add("UVA.policy", "context without latents", lambda: uva.policy({}), "latents")
    add("UVA.forward_dynamics", "actions (1, H+1, A)", lambda: uva.forward_dynamics(
        {"latents": latents}, torch.zeros(1, 5, 2)), "actions")
    add("UVA.forward_dynamics", "n_steps 0", lambda: uva.forward_dynamics(
        {"latents": latents}, torch.zeros(1, 4, 2), n_steps=0), "n_steps")
    add("UVA.sample_actions", "B = 2 context", lambda: uva.sample_actions(
        {"latents": torch.zeros(2, 2, 4, 4, 4)}, 3), "B")
    add("UVA.sample_actions", "n 0", lambda: uva.sample_actions({"latents": latents}, 0), "n")
    add("UVA.inverse_dynamics", "latents 4-d", lambda: uva.inverse_dynamics(torch.zeros(2, 4, 4, 4)), "latents")
    add("UVA.compute_loss", "mode 'foo'", lambda: uva.compute_loss({}, mode="foo"), "mode")
    add("UVA.action_head.sample", "n_steps 1", lambda: uva.action_head.sample(torch.zeros(1, 32), n_steps=1),
        "n_steps")
    shipped_cases(add)
    return out


def shipped_cases(add) -> None:
    """The entry points that load and use the shipped weights (uva_plan/pretrained/)."""
    from planners import make_optimizer
    from uva_plan import hub
    from uva_plan.dynamics import UVAWorldModel
    from uva_plan.proposers import DPCProposer
    from uva_plan.checkpoint import load_model
    from uva_plan.data.imagined import imagine_windows
    from uva_plan.models.dpc import DPCConfig
    from uva_plan.models.state_head import StateHeadConfig
    from uva_plan.objectives import EnvGoalImage, GoalImage, StateReward, goal_state

    add("UVA.from_pretrained", "env 'cartpole'", lambda: UVAWorldModel.from_pretrained("cartpole"), "cartpole")
    add("UVA.from_pretrained", "proposer 'random'", lambda: UVAWorldModel.from_pretrained(
        "pusht", proposer="random"), "proposer")
    add("UVA.from_pretrained", "objective 'reward'", lambda: UVAWorldModel.from_pretrained(
        "pusht", objective="reward"), "objective")
    add("UVA.from_pretrained", "checkpoints key 'policy'", lambda: UVAWorldModel.from_pretrained(
        "pusht", checkpoints={"policy": "x"}), "policy")
    add("UVA.from_pretrained", "UVA checkpoint of the other env", lambda: UVAWorldModel.from_pretrained(
        "pusht", checkpoints={"uva": hub.pretrained_checkpoint("blockpush/uva")}), "BlockPush")
    add("UVA.from_pretrained", "checkpoints ['uva']", lambda: UVAWorldModel.from_pretrained(
        "pusht", checkpoints=["uva"]), "checkpoints")
    add("UVA.from_pretrained", "seed 'a'", lambda: UVAWorldModel.from_pretrained("pusht", seed="a"), "seed")
    add("UVA.from_pretrained", "video_head_steps 1", lambda: UVAWorldModel.from_pretrained(
        "pusht", video_head_steps=1), "video_head_steps")
    add("UVA.from_pretrained", "n_video_steps 99", lambda: UVAWorldModel.from_pretrained(
        "pusht", n_video_steps=99), "n_video_steps")
    add("UVA.from_pretrained", "temperature 0", lambda: UVAWorldModel.from_pretrained(
        "pusht", temperature=0.0), "temperature")
    add("hub.pretrained_checkpoint", "entry 'pusht/policy'", lambda: hub.pretrained_checkpoint("pusht/policy"),
        "pusht/policy")
    add("hub.export", "a DP-C checkpoint as pusht/uva", lambda: hub.export(
        "pusht/uva", hub.pretrained_checkpoint("pusht/dpc"), root=Path(tempfile.mkdtemp())), "dpc")
    add("load_model", "DP-C checkpoint where a UVA is expected", lambda: load_model(
        hub.pretrained_checkpoint("pusht/dpc"), expected_kind="uva"), "uva", "dpc")
    add("load_model", "Push-T UVA where BlockPush is expected", lambda: load_model(
        hub.pretrained_checkpoint("pusht/uva"), expected_kind="uva", expected_env_id="uva_plan/BlockPush-v0"),
        "BlockPush", "PushT")
    model = UVAWorldModel.from_pretrained("pusht")
    obs = {"image": np.zeros((64, 64, 3), np.uint8), "agent_pos": np.array([100.0, 100.0])}
    context = model.context([obs] * model.n_history)
    add("UVAWorldModel.context", "history of 3 observations", lambda: model.context([obs] * 3), "history", "13")
    add("UVAWorldModel.context", "observation without agent_pos", lambda: model.context(
        [{"image": obs["image"]}] * model.n_history), "agent_pos")
    add("UVAWorldModel.encode", "96 x 96 frames", lambda: model.encode(np.zeros((1, 96, 96, 3), np.uint8)),
        "images", "64")
    add("UVAWorldModel.encode", "float frames", lambda: model.encode(np.zeros((1, 64, 64, 3))), "uint8")
    add("UVAWorldModel.rollout", "actions (2, 8, 2)", lambda: model.rollout(context, torch.zeros(2, 8, 2)),
        "actions")
    add("Planner.plan", "observation without image", lambda: Planner(model, BestOfN(n_samples=4)).plan(
        {"agent_pos": np.zeros(2)}), "image")
    add("DPCProposer.sample", "n 0", lambda: model.proposer.sample(context, 0), "n")
    add("DPCProposer.sample", "context without agent_pos_history", lambda: model.proposer.sample(
        {"latents": context.latents}, 4), "agent_pos_history")
    add("DPCProposer()", "only action_low", lambda: DPCProposer(model.proposer.dpc, model.proposer.normalizers,
                                                               action_low=(0, 0)), "action_low")
    add("DPCConfig", "n_sample_steps 1", lambda: DPCConfig(n_sample_steps=1), "n_sample_steps")
    add("DPCProposer()", "n_sample_steps 1", lambda: DPCProposer(model.proposer.dpc, model.proposer.normalizers,
                                                                 n_sample_steps=1), "n_sample_steps")
    add("DPCProposer()", "timestep_spacing 'linspace'", lambda: DPCProposer(
        model.proposer.dpc, model.proposer.normalizers, timestep_spacing="linspace"), "timestep_spacing", "linspace")
    add("UVA.from_pretrained", "action_head_steps 1", lambda: UVAWorldModel.from_pretrained(
        "pusht", action_head_steps=1), "action_head_steps")
    add("UVA.from_pretrained", "state_head 'best'", lambda: UVAWorldModel.from_pretrained(
        "pusht", state_head="best"), "state_head", "best")
    add("UVA.from_pretrained", "dpc_steps 0", lambda: UVAWorldModel.from_pretrained("pusht", dpc_steps=0),
        "dpc_steps")
    add("UVAWorldModel.rollout", "frames (4,) of 4 future frames", lambda: model.rollout(
        context, torch.zeros(2, 16, 2), frames=(4,)), "frames")
    add("CEM()", "rescore_proposals 'yes'", lambda: CEM(rescore_proposals="yes"), "rescore_proposals")
    add("imagine_windows", "window_stride 0", lambda: imagine_windows("data/none", "x", window_stride=0),
        "window_stride")
    add("StateHeadConfig", "env 'cartpole'", lambda: StateHeadConfig(env="cartpole"), "cartpole")
    head = model.objective.state_head
    add("StateHead.predict", "latents (2, 4, 4, 4)", lambda: head.predict(torch.zeros(2, 4, 4, 4)), "latents")
    add("StateReward()", "head of the other env", lambda: StateReward(head, "uva_plan/BlockPush-v0"), "pusht")
    add("StateReward()", "frames ()", lambda: StateReward(head, "uva_plan/PushT-v0", frames=()), "frames")
    add("StateReward.cost", "rollout without latents", lambda: model.objective.cost(
        Rollout(actions=torch.zeros(2, 16, 2))), "latents")
    add("GoalImage()", "goal latents with NaN", lambda: GoalImage(torch.full((4, 8, 8), math.nan)), "goal_latents")
    add("GoalImage()", "token_weights all zero", lambda: GoalImage(torch.zeros(4, 8, 8), torch.zeros(8, 8)),
        "token_weights")
    add("EnvGoalImage.cost", "BlockPush context without a task", lambda: EnvGoalImage(
        "uva_plan/BlockPush-v0", model).cost(Rollout(actions=torch.zeros(1, 16, 2),
                                                     latents=torch.zeros(1, 4, 4, 8, 8), context={})), "task")
    from uva_plan.locate import ColourLocator
    from uva_plan.objectives import LocatedReward

    add("ColourLocator.locate", "frames (2, 64, 64)", lambda: ColourLocator("uva_plan/PushT-v0").locate(
        np.zeros((2, 64, 64), np.uint8)), "frames")
    add("ColourLocator()", "min_visible 1.5", lambda: ColourLocator("uva_plan/PushT-v0", min_visible=1.5), "min_visible")
    add("ColourLocator()", "env 'cartpole'", lambda: ColourLocator("cartpole"), "cartpole")
    add("LocatedReward()", "world model without decode", lambda: LocatedReward(object(), "uva_plan/PushT-v0"),
        "decode")
    add("LocatedReward()", "frames ()", lambda: LocatedReward(model, "uva_plan/PushT-v0", frames=()), "frames")
    add("LocatedReward.cost", "BlockPush context without a task", lambda: LocatedReward(
        model, "uva_plan/BlockPush-v0").cost(Rollout(actions=torch.zeros(1, 16, 2),
                                                     latents=torch.zeros(1, 4, 4, 8, 8), context={})), "task")
    add("UVA.from_pretrained", "objective 'pixels'", lambda: UVAWorldModel.from_pretrained(
        "pusht", objective="pixels"), "pixels")
    add("goal_state", "BlockPush task -1", lambda: goal_state("uva_plan/BlockPush-v0", -1, np.zeros((2, 2))),
        "task")
    add("goal_state", "targets (3,)", lambda: goal_state("uva_plan/BlockPush-v0", 0, np.zeros(3)), "targets")
    add("make_optimizer", "planner 'adam'", lambda: make_optimizer("adam", 32), "adam")
    add("make_optimizer", "n_samples 2", lambda: make_optimizer("cem", 2), "n_samples")
    add("SimulatorDynamics()", "n_history 0", lambda: SimulatorDynamics("uva_plan/PushT-v0", n_history=0),
        "n_history")
    # Mismatches between environments and parts.
    blockpush_obs, _ = gym.make("uva_plan/BlockPush-v0").reset(seed=0, options={"task": 0})
    add("Planner(UVA pusht).plan", "a BlockPush observation", lambda: Planner(
        model, optimizer=make_optimizer("best_of_n", 4)).plan(blockpush_obs), "PushT", "observation")
    add("UVA.from_pretrained", "checkpoints dpc of BlockPush for Push-T", lambda: UVAWorldModel.from_pretrained(
        "pusht", checkpoints={"dpc": str(hub.pretrained_checkpoint("blockpush/dpc"))}), "BlockPush", "PushT")


def run_case(case: Case) -> dict:
    try:
        case.call()
    except Exception as err:  # noqa: BLE001 - classifying every exception is the point
        message = str(err)
        named = any(n.lower() in message.lower() for n in case.names)
        verdict = "clear" if isinstance(err, ACCEPTED) and named else "unclear"
        return {"entry": case.entry, "bad_input": case.bad, "exception": type(err).__name__,
                "message": message, "verdict": verdict}
    return {"entry": case.entry, "bad_input": case.bad, "exception": None, "message": "",
            "verdict": "no error"}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/bench/bad_inputs.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_case(case) for case in cases(Path(tmp))]
    counts = Counter(row["verdict"] for row in rows)
    table = Table(title=f"{len(rows)} bad inputs: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for column in ("entry point", "bad input", "exception", "message", "verdict"):
        table.add_column(column, overflow="fold")
    style = {"clear": "green", "unclear": "yellow", "no error": "red"}
    for row in rows:
        message = row["message"].replace("\n", " ")
        table.add_row(row["entry"], row["bad_input"], row["exception"] or "-",
                      message[:90] + ("..." if len(message) > 90 else ""),
                      f"[{style[row['verdict']]}]{row['verdict']}[/]")
    Console(width=200).print(table)
    result = {"n_cases": len(rows), "counts": dict(counts), "cases": rows}
    write_json(args.out, result, config=vars(args))
    return result


if __name__ == "__main__":
    main()
