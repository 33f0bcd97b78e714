"""Ranking fidelity: does UVA rank candidate plans as the real physics would?

At states from held-out demonstration episodes (the UVA / DP-C validation split), draw 100
DP-C candidate chunks, score each with the same objective twice: on UVA's imagined future
latents, and on the latents of the frames the simulator really produces (rendered, encoded with
the same VAE). Report per objective the Spearman correlation of the two cost vectors and how
often UVA's pick lies in the simulator's top 10% (top10_hit; a random pick: 10%), its regret
(simulator cost of UVA's pick minus the best) and the simulator costs' spread (max - min).

It also measures whether the pick exploits model error: ``pick_error_ratio`` is the latent MSE
between imagined and real frames (the frames the objective reads) of UVA's pick over the mean of
all candidates (> 1: the optimiser picks what UVA imagines worst), ``optimism`` the simulator
cost minus UVA's cost of the pick, against ``mean_optimism`` over all candidates.
``oracle_fraction_at_N``: the share of the simulator's best-of-N improvement over a random
candidate that UVA's best-of-N gets (random N-subsets; the offline analogue of the guidance
experiment's gap closed). ``--n-video-steps`` / ``--video-head-steps`` / ``--temperature`` set
how UVA imagines (default: the planning settings of ``UVA.from_pretrained``).
``--n-imaginations K`` imagines each candidate K times with fresh noise and ranks by the mean
cost; ``self_rho`` is the Spearman correlation of two imaginations' costs (how much of UVA's
ranking error is sampling noise that averaging removes). ``rho_real_truth`` and
``real_truth_fraction_at_N`` rank by the objective on the real frames against the task's own
cost on exact states: the most a perfect imagination could give with that objective.

    python examples/ranking_fidelity.py --env pusht --n-states 40
    python examples/ranking_fidelity.py --env blockpush --n-states 40

Writes ranking_<env>.json / .md / .png into --out and prints a rich table.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from planners import Rollout  # noqa: E402
from planners.protocols import normalize_actions  # noqa: E402
from uva_plan import hub  # noqa: E402
from uva_plan.dynamics import SimContext, SimulatorDynamics, UVAWorldModel, load_pose_head  # noqa: E402
from uva_plan.checkpoint import load_model  # noqa: E402
from uva_plan.data.sampler import train_val_split  # noqa: E402
from uva_plan.data.store import EpisodeStore  # noqa: E402
from uva_plan.envs.blockpush import BlockPushEnv, observed_state  # noqa: E402
from uva_plan.envs.pusht import PushTEnv  # noqa: E402
from uva_plan.io import git_revision  # noqa: E402
from uva_plan.metrics import wilson_interval  # noqa: E402
from uva_plan.objectives import (BlockPushSimObjective, EnvGoalImage, LocatedReward, PushTSimObjective,  # noqa: E402
                                 PoseReward, StateReward)
from uva_plan.models.state_head import pose_targets  # noqa: E402
from uva_plan.report import console, write_report  # noqa: E402

ENV_CLASSES = {"pusht": PushTEnv, "blockpush": BlockPushEnv}


def observation(env: str, physical: np.ndarray, image: np.ndarray) -> dict:
    """The env's observation dict for a stored physical state and its rendered frame."""
    obs = {"image": image, "agent_pos": physical[:2].copy()}
    if env == "blockpush":
        obs["state"] = observed_state(physical)
        obs["task"] = np.int64(physical[24])
    return obs


def pick_states(store: EpisodeStore, episodes: list[int], n_states: int, history: int, horizon: int,
                rng: np.random.Generator) -> list[tuple[int, int]]:
    """(episode, t) pairs with a full history before t and a full chunk after it."""
    picks = []
    lengths = {i: len(store.episode(i)["states"]) for i in episodes}
    usable = [i for i in episodes if lengths[i] > history + horizon]
    for k in range(n_states):
        i = usable[k % len(usable)]
        picks.append((i, int(rng.integers(history - 1, lengths[i] - horizon))))
    return picks


def oracle_fraction(results: list[dict], n: int, seed: int, n_subsets: int = 200, key: str = "sim_cost",
                    score_key: str = "uva_cost") -> float:
    """How much of the simulator's own best-of-n gain UVA's best-of-n gets, over the states.

    For random n-subsets of each state's candidates: (mean sim cost - sim cost of UVA's pick)
    / (mean sim cost - sim cost of the simulator's pick), totals over states and subsets. 1: UVA
    picks as the simulator would; 0: no better than a random candidate (DP-C alone); < 0: worse.
    The offline analogue of the guidance experiment's gap closed, at budget n. ``key``: the
    reference costs, "sim_cost" (the same objective on the real frames) or "truth_cost" (the
    task's simulator objective on exact states, what the dpc+sim row ranks by). ``score_key``:
    the costs that pick, "uva_cost" (imagined) or "sim_cost" (the objective on the real frames:
    the fraction a perfect imagination would get with this objective).
    """
    rng = np.random.default_rng(seed)
    gained = possible = 0.0
    for r in results:
        uva, sim = np.asarray(r[score_key]), np.asarray(r[key])
        for _ in range(n_subsets):
            subset = rng.choice(len(sim), size=n, replace=False)
            mean = sim[subset].mean()
            gained += mean - sim[subset[np.argmin(uva[subset])]]
            possible += mean - sim[subset].min()
    return float(gained / possible) if possible > 0 else 0.0


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="pusht", choices=sorted(hub.ENVS))
    parser.add_argument("--store", default=None, help="demonstration store (default data/<env>)")
    parser.add_argument("--n-states", type=int, default=40)
    parser.add_argument("--n-candidates", type=int, default=100)
    parser.add_argument("--uva", default=None, help="UVA checkpoint (default: the shipped one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-video-steps", type=int, default=1, help="unmasking steps (model default: 8)")
    parser.add_argument("--video-head-steps", type=int, default=4, help="video head DDIM steps (model default: 16)")
    parser.add_argument("--temperature", type=float, default=0.01)
    parser.add_argument("--n-imaginations", type=int, default=1,
                        help="imagine each candidate this many times (fresh noise) and average the costs")
    parser.add_argument("--state-head", action="append", default=[], metavar="NAME=CHECKPOINT",
                        help="also score with this state head (objective NAME), e.g. "
                             "imagined=outputs/train/state_head_imagined_pusht/final; repeatable")
    parser.add_argument("--pose-head", action="append", default=[], metavar="NAME=CHECKPOINT",
                        help="also score with PoseReward on this pose head (reads UVA's joint latent; "
                             "objective NAME), e.g. pose=outputs/train/pose_head_pusht/final; repeatable")
    parser.add_argument("--objectives", nargs="+", default=None, metavar="NAME",
                        help="score only these objectives (state_head, goal_image, located, located_act, "
                             "and --state-head names; default: all)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[8, 32, 100],
                        help="N for oracle_fraction_at_N (random subsets of the candidates)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="outputs/ranking")
    args = parser.parse_args(argv)
    if args.n_states < 1 or args.n_candidates < 10 or args.n_imaginations < 1:
        parser.error(f"need --n-states >= 1, --n-candidates >= 10 and --n-imaginations >= 1, got "
                     f"{args.n_states}, {args.n_candidates}, {args.n_imaginations}")
    if args.threads:
        torch.set_num_threads(args.threads)
    revision = git_revision()
    env_id = hub.ENVS[args.env]
    torch.manual_seed(args.seed)
    model = UVAWorldModel.from_pretrained(args.env, checkpoints={"uva": args.uva} if args.uva else None,
                                         n_video_steps=args.n_video_steps, video_head_steps=args.video_head_steps,
                                         temperature=args.temperature, state_head="real",
                                         seed=args.seed)
    # "state_head": the shipped head trained on real frames; add others with --state-head NAME=CKPT.
    objectives = {"state_head": model.objective, "goal_image": EnvGoalImage(env_id, model),
                  "located": LocatedReward(model, env_id),
                  "located_act": LocatedReward(model, env_id, pusher="actions")}
    # The task's own objective on the simulator's exact states: what the dpc+sim row ranks by.
    truth_objective = PushTSimObjective() if args.env == "pusht" else BlockPushSimObjective()
    for spec in args.state_head:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path or name in objectives:
            parser.error(f"--state-head takes NAME=CHECKPOINT with a new NAME, got {spec!r}")
        head, _ = load_model(path, expected_kind="state_head", expected_env_id=env_id)
        objectives[name] = StateReward(head.eval(), env_id)
    for spec in args.pose_head:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path or name in objectives:
            parser.error(f"--pose-head takes NAME=CHECKPOINT with a new NAME, got {spec!r}")
        if model.pose_head is not None:
            parser.error("--pose-head: one pose head per run (the world model holds one)")
        model.pose_head = load_pose_head(path, model)
        objectives[name] = PoseReward(model.pose_head, env_id)
    if model.pose_head is not None and not any(isinstance(o, PoseReward) for o in objectives.values()):
        objectives["pose"] = PoseReward(model.pose_head, env_id)  # a UVA trained with its own pose head
    assert isinstance(objectives["state_head"], StateReward)
    if args.objectives is not None:
        unknown = sorted(set(args.objectives) - set(objectives))
        if unknown:
            parser.error(f"--objectives: unknown {unknown}; choose from {sorted(objectives)}")
        objectives = {name: objectives[name] for name in args.objectives}
    store = EpisodeStore.open(args.store or f"data/{args.env}")
    _, val = train_val_split(len(store), 0.05, 0)  # the split UVA, DP-C and the state head held out
    rng = np.random.default_rng(args.seed)
    picks = pick_states(store, val, args.n_states, model.n_history, model.horizon, rng)
    sim = SimulatorDynamics(env_id)
    env_cls = ENV_CLASSES[args.env]
    frame_steps = [model.stride * (k + 1) - 1 for k in range(model.uva.config.n_future)]  # after 4, 8, ...
    per_state = {name: [] for name in objectives}
    start = time.perf_counter()
    for n, (episode, t) in enumerate(picks):
        states = store.episode(episode)["states"]
        past = states[t - model.n_history + 1: t + 1]
        if args.env == "blockpush" and past[-1][24] < 0:  # an unnamed demo: name the assignment it made
            past = past.copy()
            past[:, 24] = int(rng.integers(4))
        images = env_cls.render_states(past, model.image_size)
        history = [observation(args.env, s, im) for s, im in zip(past, images)]
        context = model.context(history)
        candidates = model.sample(context, args.n_candidates)
        imagine = "both" if any(isinstance(o, PoseReward) for o in objectives.values()) else "video"
        imaginations = [model.rollout(context, candidates, imagine=imagine) for _ in range(args.n_imaginations)]
        imagined = imaginations[0]
        sim.env.reset(options={"state": past[-1]})
        env_units = model.normalizer.unnormalize(candidates.double().numpy())  # UVA's normaliser -> px
        true = sim.rollout(SimContext(state=sim.env.get_state(), agent_pos=past[-1][:2]),
                           torch.from_numpy(normalize_actions(env_units, sim.action_low, sim.action_high)))
        real_states = true.states[:, frame_steps].numpy()  # (N, T, P)
        if args.env == "blockpush":
            real_states[..., 24] = past[-1][24]
        frames = env_cls.render_states(real_states.reshape(-1, real_states.shape[-1]), model.image_size)
        real_latents = model.encode(frames).reshape(len(candidates), len(frame_steps), *imagined.latents.shape[2:])
        real = Rollout(actions=candidates, latents=real_latents, context=context,
                       extras={"poses": torch.from_numpy(pose_targets(env_id, real_states.reshape(-1, real_states.shape[-1]))
                                                         .reshape(len(candidates), len(frame_steps), -1))})
        truth = truth_objective.cost(Rollout(actions=candidates, states=true.states, context=context)).double().numpy()
        truth_top = set(np.argsort(truth)[: max(1, len(truth) // 10)].tolist())
        for name, objective in objectives.items():
            draws = np.stack([objective.cost(r).double().numpy() for r in imaginations])  # (K, N)
            uva_cost = draws.mean(axis=0)
            sim_cost = objective.cost(real).double().numpy()
            # Two imaginations of the same candidates agree this well (1: imagination is deterministic).
            self_rho = spearmanr(draws[0], draws[1]).statistic if len(draws) > 1 else math.nan
            rho = spearmanr(uva_cost, sim_cost).statistic
            top = np.argsort(sim_cost)[: max(1, len(sim_cost) // 10)]
            pick = int(np.argmin(uva_cost))
            scored = list(objective.frames)
            error = (imagined.latents[:, scored] - real_latents[:, scored]).pow(2).mean(dim=(1, 2, 3, 4)).double().numpy()
            per_state[name].append({"episode": episode, "t": t, "spearman": float(np.nan_to_num(rho)),
                                    "uva_pick_in_sim_top10": bool(pick in set(top.tolist())),
                                    "regret": float(sim_cost[pick] - sim_cost.min()),
                                    "sim_cost_spread": float(np.ptp(sim_cost)),
                                    "pick_latent_error": float(error[pick]), "mean_latent_error": float(error.mean()),
                                    "optimism": float(sim_cost[pick] - uva_cost[pick]),
                                    "mean_optimism": float((sim_cost - uva_cost).mean()),
                                    "spearman_truth": float(np.nan_to_num(spearmanr(uva_cost, truth).statistic)),
                                    # The objective on the real frames against the task's own cost:
                                    # how well a perfect imagination could rank with this objective.
                                    "spearman_real_truth": float(np.nan_to_num(spearmanr(sim_cost, truth).statistic)),
                                    "self_spearman": float(self_rho),
                                    "uva_pick_in_truth_top10": bool(pick in truth_top),
                                    "uva_cost": uva_cost.tolist(), "sim_cost": sim_cost.tolist(),
                                    "truth_cost": truth.tolist()})
        console.print(f"state {n + 1}/{len(picks)} (episode {episode}, t {t}): "
                      + ", ".join(f"{k} rho {v[-1]['spearman']:+.2f}" for k, v in per_state.items()))
    rows = []
    for name, results in per_state.items():
        rhos = np.array([r["spearman"] for r in results])
        hits = sum(r["uva_pick_in_sim_top10"] for r in results)
        low, high = wilson_interval(hits, len(results))
        rows.append({"objective": name, "states": len(results), "rho": float(rhos.mean()),
                     "rho_sem": float(rhos.std(ddof=1) / np.sqrt(len(rhos))) if len(rhos) > 1 else 0.0,
                     "top10_hit": hits / len(results), "top10_hit_wilson95": [low, high],
                     "rho_truth": float(np.mean([r["spearman_truth"] for r in results])),
                     "truth_top10_hit": float(np.mean([r["uva_pick_in_truth_top10"] for r in results])),
                     "rho_real_truth": float(np.mean([r["spearman_real_truth"] for r in results])),
                     "self_rho": float(np.mean([r["self_spearman"] for r in results])),
                     **{f"real_truth_fraction_at_{n}": oracle_fraction(results, n, args.seed, key="truth_cost",
                                                                     score_key="sim_cost")
                        for n in args.budgets if n <= args.n_candidates},
                     **{f"truth_fraction_at_{n}": oracle_fraction(results, n, args.seed, key="truth_cost")
                        for n in args.budgets if n <= args.n_candidates},
                     "regret": float(np.mean([r["regret"] for r in results])),
                     "sim_spread": float(np.mean([r["sim_cost_spread"] for r in results])),
                     "pick_error_ratio": float(np.mean([r["pick_latent_error"] for r in results])
                                               / np.mean([r["mean_latent_error"] for r in results])),
                     "optimism": float(np.mean([r["optimism"] for r in results])),
                     "mean_optimism": float(np.mean([r["mean_optimism"] for r in results])),
                     **{f"oracle_fraction_at_{n}": oracle_fraction(results, n, args.seed)
                        for n in args.budgets if n <= args.n_candidates}})
    config = {**vars(args), "frame_steps": frame_steps, "uva": args.uva or "shipped",
              "n_video_steps": model.n_video_steps, "video_head_steps": model.video_head_steps, "dpc_steps": model.proposer.n_sample_steps,
              "seconds": time.perf_counter() - start}
    write_report(args.out, f"ranking_{args.env}", f"Ranking fidelity, {args.env}: UVA vs simulator, "
                 f"{args.n_candidates} DP-C candidates", rows,
                 ["objective", "states", "rho", "rho_sem", "top10_hit", "rho_truth", "truth_top10_hit",
                  *[f"truth_fraction_at_{n}" for n in args.budgets if n <= args.n_candidates], "regret",
                  "sim_spread", "pick_error_ratio", "optimism", "mean_optimism",
                  *[f"oracle_fraction_at_{n}" for n in args.budgets if n <= args.n_candidates]], config, plot_label="objective", plot_rate="top10_hit",
                 extra={"per_state": per_state}, revision=revision)
    return {"rows": rows, "per_state": per_state}


if __name__ == "__main__":
    main()
