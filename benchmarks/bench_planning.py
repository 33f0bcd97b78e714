"""Speed of planning, inference and training on this CPU, each beside its baseline.

    python benchmarks/bench_planning.py [--env pusht] [--threads 2] [--out outputs/bench/planning.json]

Measured in one run, on the shipped weights (or --uva), from a real Push-T / BlockPush state:
- ms per ``Planner.plan`` for BestOfN, CEM, MPPI, iCEM at N in {32, 100, 300} over UVA dynamics
  (planning settings: 1 unmasking step, 4 video-head DDIM steps) and over the simulator;
- the DP-C + UVA best-of-100 decision, one row per speed-up added to the one before, from the
  model's defaults (8 unmasking steps, 16 DDIM steps: what the paper samples video with; every
  future frame; DP-C at 10 DDIM steps) to what ``Planner(UVA.from_pretrained(env))`` plans with
  (UVA ranks only the 10 most typical of the 100 proposals), then DP-C's
  fast sampler (5 "trailing" DDIM steps, ``dpc_steps=5``) on top; MPPI 256 x 4 (fast sampler)
  with its proposals re-scored every iteration against scored once;
- UVA ``policy`` latency (video skipped) against a call that also imagines and decodes video;
  forward-dynamics imagined chunks per second; DP-C latency for 100 candidates;
- forward dynamics under bf16 autocast, torch.compile (its compile time too) and on 1 thread,
  against eager float32 on --threads;
- peak resident memory of the process after planning;
- training throughput (samples/s) of UVA and DP-C on batches of the training shapes.
Times are medians over --repeats calls after one warm-up call.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import gymnasium as gym
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from planners import MPPI, Planner, make_optimizer  # noqa: E402
from uva_plan import hub  # noqa: E402
from uva_plan.dynamics import PrivilegedState, SimulatorDynamics, UVAWorldModel  # noqa: E402
from uva_plan.proposers import DPCProposer  # noqa: E402
from uva_plan.io import git_revision  # noqa: E402
from uva_plan.metrics import median_ms  # noqa: E402
from uva_plan.objectives import BlockPushSimObjective, PushTSimObjective  # noqa: E402
from uva_plan.report import console, write_report  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def observation(env_id: str, seed: int, privileged: bool = False):
    env = gym.make(env_id, render_size=64)
    if privileged:
        env = PrivilegedState(env)
    options = {"task": 1} if "BlockPush" in env_id else None
    obs, _ = env.reset(seed=seed, options=options)
    for _ in range(12):  # a state in motion, with a full history
        obs, *_ = env.step(obs["agent_pos"] + 15.0)
    return obs


class ReadsEveryFrame:
    """An objective without ``frames``: the Planner then asks UVA for every future frame (the
    behaviour before the video head learned to skip unscored frames)."""

    def __init__(self, objective):
        self.objective = objective

    def cost(self, rollout):
        return self.objective.cost(rollout)


def plan_ms(planner: Planner, obs: dict, repeats: int) -> float:
    def call():
        planner.reset()
        planner.plan(obs)
    return median_ms(call, repeats)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="pusht", choices=sorted(hub.ENVS))
    parser.add_argument("--uva", default=None, help="UVA checkpoint (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 100, 300])
    parser.add_argument("--skip", nargs="*", default=[], choices=["planners", "training", "compile"])
    parser.add_argument("--out", default="outputs/bench/planning")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    revision = git_revision()
    env_id = hub.ENVS[args.env]
    checkpoints = {"uva": args.uva} if args.uva else None
    uva = UVAWorldModel.from_pretrained(args.env, checkpoints=checkpoints)
    naive = UVAWorldModel.from_pretrained(args.env, checkpoints=checkpoints, n_video_steps=None,
                                          video_head_steps=None)  # the model's own defaults
    obs = observation(env_id, seed=0)
    sim_obs = observation(env_id, seed=0, privileged=True)
    rows = []

    def add(name: str, ms: float, baseline: str | None = None, baseline_ms: float | None = None, **extra):
        row = {"measure": name, "ms": ms, "baseline": baseline, "baseline_ms": baseline_ms,
               "speedup": baseline_ms / ms if baseline_ms else None, **extra}
        rows.append(row)
        console.print(f"{name}: {ms:.1f} ms" + (f" (baseline {baseline}: {baseline_ms:.1f} ms)" if baseline_ms else ""))

    # -- the guidance decision: DP-C proposes 100, UVA imagines them, the state head scores ----
    # Each speed-up added to the previous one, all in this run (the first row is the naive one).
    # DP-C's fast sampler (``from_pretrained(dpc_steps=5, dpc_spacing="trailing")``): half the
    # proposer's time, weaker draws; the default samples as DP-C was trained (10 "leading" steps).
    fast_dpc = (5, "trailing")
    checkpoint_dpc = (None, None)
    # The last two stages rank only the 10 most typical of the 100 proposals (Planner's default
    # for UVA.from_pretrained): UVA imagines 10 rollouts instead of 100.
    stages = [("model defaults: 8 unmask x 16 DDIM, every frame, DP-C 10 DDIM", naive, False, checkpoint_dpc, None),
              ("+ planning sampling: 1 unmask x 4 DDIM", uva, False, checkpoint_dpc, None),
              ("+ video head only on the scored frame", uva, True, checkpoint_dpc, None),
              ("+ UVA ranks only the 10 most typical (= Planner(UVA.from_pretrained))", uva, True, checkpoint_dpc, 10),
              (f"+ DP-C {fast_dpc[0]} {fast_dpc[1]} DDIM steps (dpc_steps={fast_dpc[0]})", uva, True, fast_dpc, 10)]
    previous = None
    for label, model, scored_frame_only, dpc_sampling, n_central in stages:
        model.proposer.n_sample_steps, model.proposer.timestep_spacing = dpc_sampling
        objective = model.objective if scored_frame_only else ReadsEveryFrame(model.objective)
        planner = Planner(model, make_optimizer("best_of_n", 100, n_central=n_central), objective=objective,
                          n_action_steps=8, warm_start=False)
        ms = plan_ms(planner, obs, 1 if model is naive else args.repeats)
        add(f"best-of-100 decision: {label}", ms, *(previous or (None, None)))
        previous = ("previous row", ms)
    naive_ms = rows[0]["ms"]
    rows[-1]["speedup_over_naive"] = naive_ms / rows[-1]["ms"]
    uva.proposer.n_sample_steps, uva.proposer.timestep_spacing = fast_dpc
    for reuse in (False, True):
        mppi = Planner(uva, MPPI(n_samples=256, n_proposals=64, n_elites=26, n_iterations=4, temperature=0.3,
                                 init_std=0.1, min_std=0.02, max_std=0.5, rescore_proposals=not reuse),
                       n_action_steps=8, warm_start=False)
        ms = plan_ms(mppi, obs, args.repeats)
        if not reuse:
            add("MPPI over UVA 256 x 4, proposals re-scored every iteration", ms)
        else:
            add("MPPI over UVA 256 x 4, proposals scored once", ms, "re-scored", rows[-1]["ms"])

    # -- UVA as a policy, and imagined video ----------------------------------------------------
    context = uva.context([obs] * uva.n_history)
    policy_ms = median_ms(lambda: uva.policy(context), max(args.repeats, 10))

    def with_video():
        chunk = uva.policy(context)
        uva.decode(uva.rollout(context, chunk[None]).latents[0])
    add(f"UVA policy chunk (video skipped), B=1, {uva.action_head_steps} action DDIM steps", policy_ms,
        "policy + imagined, decoded video", median_ms(with_video, max(args.repeats, 10)))
    steps = uva.action_head_steps
    uva.action_head_steps = None
    add(f"UVA policy chunk, {steps} action DDIM steps against the config's", policy_ms,
        f"{uva.uva.config.n_action_sample_steps} steps (the config's)", median_ms(lambda: uva.policy(context),
                                                                                  max(args.repeats, 10)))
    uva.action_head_steps = steps
    actions = uva.sample(context, 100)
    fd_ms = median_ms(lambda: uva.rollout(context, actions), args.repeats)
    naive_fd_ms = median_ms(lambda: naive.rollout(context, actions), 1)
    add("UVA forward dynamics, 100 chunks", fd_ms, "8 unmask x 16 DDIM steps", naive_fd_ms,
        chunks_per_s=100 / (fd_ms / 1000))
    def fd_bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            uva.rollout(context, actions)
    add("UVA forward dynamics, 100 chunks, bf16 autocast", median_ms(fd_bf16, args.repeats), "float32", fd_ms)
    if "compile" not in args.skip:  # torch.compile of the transformer (inductor, C++ on this CPU)
        transformer = uva.uva.encode
        start = time.perf_counter()
        uva.uva.encode = torch.compile(transformer)
        uva.rollout(context, actions)
        compile_s = time.perf_counter() - start
        add("UVA forward dynamics, 100 chunks, torch.compile(transformer)", median_ms(lambda: uva.rollout(context, actions),
            args.repeats), "eager", fd_ms, compile_seconds=compile_s)
        uva.uva.encode = transformer
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    one_thread_ms = median_ms(lambda: uva.rollout(context, actions), args.repeats)
    torch.set_num_threads(threads)
    add(f"UVA forward dynamics, 100 chunks, {threads} threads", fd_ms, "1 thread", one_thread_ms)
    dpc_ms = median_ms(lambda: uva.proposer.sample(context, 100), args.repeats)
    uva.proposer.n_sample_steps, uva.proposer.timestep_spacing = checkpoint_dpc
    ten_ms = median_ms(lambda: uva.proposer.sample(context, 100), args.repeats)
    uva.proposer.n_sample_steps, uva.proposer.timestep_spacing = fast_dpc
    add(f"DP-C, 100 candidates, {fast_dpc[0]} DDIM steps", dpc_ms, "10 DDIM steps (the checkpoint's)", ten_ms)

    # -- every planner at every size, over UVA and over the simulator -------------------------
    if "planners" not in args.skip:
        sim = SimulatorDynamics(env_id, n_history=2)
        dpc_for_sim = DPCProposer.from_checkpoint(hub.pretrained_checkpoint(f"{args.env}/dpc"), vae=uva.vae,
                                                  action_low=sim.action_low, action_high=sim.action_high)
        sim_objective = PushTSimObjective() if args.env == "pusht" else BlockPushSimObjective()
        for name in ("best_of_n", "cem", "mppi", "icem"):
            for n in args.sizes:
                over_uva = plan_ms(Planner(uva, make_optimizer(name, n), warm_start=False), obs, args.repeats)
                over_sim = plan_ms(Planner(sim, make_optimizer(name, n), proposer=dpc_for_sim,
                                           objective=sim_objective, warm_start=False), sim_obs, 1)
                add(f"{name} N={n} over UVA", over_uva, "same over the simulator", over_sim)
    peak = peak_rss_mib()
    add("peak RSS after planning (MiB)", peak)

    # -- training throughput --------------------------------------------------------------------
    if "training" not in args.skip:
        for label, module, batch in training_batches(uva):
            optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)

            def step(module=module, batch=batch, optimizer=optimizer):
                loss = module.compute_loss(batch)[0]
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            with torch.enable_grad():
                module.train()
                ms = median_ms(step, max(args.repeats, 5))
                module.eval()
            n = next(iter(batch.values())).shape[0]
            add(f"{label} training step, batch {n}", ms, samples_per_s=n / (ms / 1000))

    config = {**vars(args), "n_video_steps": uva.n_video_steps, "video_head_steps": uva.video_head_steps,
              "torch": torch.__version__}
    write_report(args.out, f"planning_{args.env}", f"Planning speed, {args.env}, {args.threads} threads", rows,
                 ["measure", "ms", "baseline", "baseline_ms", "speedup"], config, revision=revision)
    return {"rows": rows, "peak_rss_mib": peak}


def training_batches(uva: UVAWorldModel):
    """(label, module, batch) with the training shapes of UVA (B=32) and DP-C (B=64)."""
    c = uva.uva.config
    generator = torch.Generator().manual_seed(0)
    uva_batch = {"latents": torch.randn(32, c.n_history + c.n_future, c.latent_channels, c.latent_size,
                                        c.latent_size, generator=generator),
                 "actions": torch.rand(32, c.horizon, c.action_dim, generator=generator) * 2 - 1}
    yield "UVA", uva.uva, uva_batch
    dpc = uva.proposer.dpc
    d = dpc.config
    dpc_batch = {"latents": torch.randn(64, d.n_obs_steps, d.latent_channels, d.latent_size, d.latent_size,
                                        generator=generator),
                 "agent_pos": torch.rand(64, d.n_obs_steps, 2, generator=generator) * 2 - 1,
                 "actions": torch.rand(64, d.horizon, d.action_dim, generator=generator) * 2 - 1}
    yield "DP-C", dpc, dpc_batch


if __name__ == "__main__":
    main()
