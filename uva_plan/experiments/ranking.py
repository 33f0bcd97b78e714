"""Ranking fidelity: does UVA rank candidate plans as the real physics would?

At states from held-out demonstration episodes (the UVA / DP-C validation split), draw
``n_candidates`` DP-C candidate chunks, score each with the same objective twice: on UVA's
imagined future latents, and on the latents of the frames the simulator really produces
(rendered, encoded with the same VAE). Per objective: the Spearman correlation of the two cost
vectors, how often UVA's pick lies in the simulator's top 10% (top10_hit; a random pick: 10%),
its regret (simulator cost of UVA's pick minus the best) and the simulator costs' spread.

Whether the pick exploits model error: ``pick_error_ratio`` is the latent MSE between imagined
and real frames (the frames the objective reads) of UVA's pick over the mean of all candidates
(> 1: the optimiser picks what UVA imagines worst), ``optimism`` the simulator cost minus UVA's
cost of the pick, against ``mean_optimism`` over all candidates. ``oracle_fraction_at_N``: the
share of the simulator's best-of-N improvement over a random candidate that UVA's best-of-N
gets (the offline analogue of the guidance experiment's gap closed). ``self_rho``: the Spearman
correlation of two imaginations' costs (how much of UVA's ranking error is sampling noise that
averaging removes). ``rho_real_truth`` and ``real_truth_fraction_at_N`` rank by the objective on
the real frames against the task's own cost on exact states: the most a perfect imagination
could give with that objective.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.stats import spearmanr

from planners import Rollout
from planners.checks import check_int
from planners.presets import best_of_n_sizes
from uva_plan import hub
from planners.protocols import normalize_actions
from uva_plan.dynamics import SimContext, SimulatorDynamics, UVAWorldModel, load_pose_head
from uva_plan.checkpoint import load_model
from uva_plan.data.sampler import train_val_split
from uva_plan.data.store import EpisodeStore
from uva_plan.envs.blockpush import BlockPushEnv, observed_state
from uva_plan.envs.pusht import PushTEnv
from uva_plan.io import git_revision
from uva_plan.metrics import wilson_interval
from uva_plan.models.state_head import pose_targets
from uva_plan.objectives import (BlockPushSimObjective, EnvGoalImage, LocatedReward, PoseReward, PushTSimObjective,
                                 StateReward)
from uva_plan.report import console, write_report

ENV_CLASSES = {"pusht": PushTEnv, "blockpush": BlockPushEnv}


@dataclass
class RankingConfig:
    """One measurement. ``n_video_steps`` / ``video_head_steps`` / ``temperature``: how UVA
    imagines (the defaults: the planning settings of ``UVA.from_pretrained``; the model's own
    are 8 / 16). ``n_imaginations``: imagine each candidate this many times (fresh noise) and
    rank by the mean cost. ``state_head`` / ``pose_head``: {objective name: checkpoint} of
    further state heads (``StateReward``) and of one pose head (``PoseReward`` on UVA's joint
    latent) to score with. ``objectives``: score only these (state_head, goal_image, located,
    located_act and the added names; None: all). ``budgets``: the N of ``oracle_fraction_at_N``
    (None: the guidance rows' best-of-N sizes); ``n_candidates`` None: the largest of those."""

    env: str = "pusht"
    store: str | None = None  # the demonstration store (None: data/<env>)
    n_states: int = 40
    n_candidates: int | None = None
    uva: str | None = None  # a UVA checkpoint (None: the shipped one)
    seed: int = 0
    n_video_steps: int = 1
    video_head_steps: int = 4
    temperature: float = 0.01
    n_imaginations: int = 1
    state_head: dict[str, str] | None = field(default_factory=dict)  # None: none added
    pose_head: dict[str, str] | None = field(default_factory=dict)
    objectives: list[str] | None = None
    budgets: list[int] | None = None
    threads: int | None = None
    out_dir: str = "outputs/ranking"

    def __post_init__(self) -> None:
        if self.env not in hub.ENVS:
            raise ValueError(f"env must be one of {sorted(hub.ENVS)}, got env={self.env!r}")
        if self.n_candidates is None:
            self.n_candidates = best_of_n_sizes()[-1]
        if self.budgets is None:
            self.budgets = best_of_n_sizes()
        check_int("n_states", self.n_states, 1)
        check_int("n_candidates", self.n_candidates, 10)
        check_int("n_imaginations", self.n_imaginations, 1)
        for i, n in enumerate(self.budgets):
            check_int(f"budgets[{i}]", n, 1)
        if self.threads is not None:
            check_int("threads", self.threads, 1)
        for option in ("state_head", "pose_head"):
            heads = {} if getattr(self, option) is None else getattr(self, option)
            setattr(self, option, heads)
            if not isinstance(heads, dict) or not all(name and path for name, path in heads.items()):
                raise ValueError(f"{option} takes {{NAME: CHECKPOINT}}, e.g. {option}={{imagined:outputs/train/"
                                 f"{option}_{self.env}/final}}, got {option}={heads!r}")
        if len(self.pose_head) > 1:
            raise ValueError(f"pose_head: one pose head per run (the world model holds one), got {self.pose_head!r}")

    @property
    def scored_budgets(self) -> list[int]:
        """The budgets that fit in the candidates."""
        return [n for n in self.budgets if n <= self.n_candidates]


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


def build_objectives(config: RankingConfig, model: UVAWorldModel) -> dict:
    """The objectives to score with, by name: the built-in four, the added heads, then the
    ``objectives`` selection. Gives the model the pose head it scores with."""
    env_id = hub.ENVS[config.env]
    # "state_head": the shipped head trained on real frames; state_head adds others.
    objectives = {"state_head": model.objective, "goal_image": EnvGoalImage(env_id, model),
                  "located": LocatedReward(model, env_id),
                  "located_act": LocatedReward(model, env_id, pusher="actions")}
    for name, path in config.state_head.items():
        if name in objectives:
            raise ValueError(f"state_head takes {{NAME: CHECKPOINT}} with a new NAME, got {name!r}")
        head, _ = load_model(path, expected_kind="state_head", expected_env_id=env_id)
        objectives[name] = StateReward(head.eval(), env_id)
    for name, path in config.pose_head.items():
        if name in objectives:
            raise ValueError(f"pose_head takes {{NAME: CHECKPOINT}} with a new NAME, got {name!r}")
        if model.pose_head is not None:
            raise ValueError("pose_head: one pose head per run (the world model holds one)")
        model.pose_head = load_pose_head(path, model)
        objectives[name] = PoseReward(model.pose_head, env_id)
    if model.pose_head is not None and not any(isinstance(o, PoseReward) for o in objectives.values()):
        objectives["pose"] = PoseReward(model.pose_head, env_id)  # a UVA trained with its own pose head
    assert isinstance(objectives["state_head"], StateReward)
    if config.objectives is not None:
        unknown = sorted(set(config.objectives) - set(objectives))
        if unknown:
            raise ValueError(f"objectives: unknown {unknown}; choose from {sorted(objectives)}")
        objectives = {name: objectives[name] for name in config.objectives}
    return objectives


def score_state(objective, imaginations: list[Rollout], real: Rollout, real_latents: torch.Tensor,
                truth: np.ndarray, truth_top: set[int]) -> dict:
    """One objective at one state: UVA's costs (mean over imaginations) against the costs on
    the real frames and the task's own costs on exact states."""
    imagined = imaginations[0]
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
    return {"spearman": float(np.nan_to_num(rho)),
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
            "truth_cost": truth.tolist()}


def summarize(name: str, results: list[dict], config: RankingConfig) -> dict:
    """One objective's row of the report, over its per-state results."""
    rhos = np.array([r["spearman"] for r in results])
    hits = sum(r["uva_pick_in_sim_top10"] for r in results)
    low, high = wilson_interval(hits, len(results))
    budgets = config.scored_budgets
    return {"objective": name, "states": len(results), "rho": float(rhos.mean()),
            "rho_sem": float(rhos.std(ddof=1) / np.sqrt(len(rhos))) if len(rhos) > 1 else 0.0,
            "top10_hit": hits / len(results), "top10_hit_wilson95": [low, high],
            "rho_truth": float(np.mean([r["spearman_truth"] for r in results])),
            "truth_top10_hit": float(np.mean([r["uva_pick_in_truth_top10"] for r in results])),
            "rho_real_truth": float(np.mean([r["spearman_real_truth"] for r in results])),
            "self_rho": float(np.mean([r["self_spearman"] for r in results])),
            **{f"real_truth_fraction_at_{n}": oracle_fraction(results, n, config.seed, key="truth_cost",
                                                            score_key="sim_cost") for n in budgets},
            **{f"truth_fraction_at_{n}": oracle_fraction(results, n, config.seed, key="truth_cost")
               for n in budgets},
            "regret": float(np.mean([r["regret"] for r in results])),
            "sim_spread": float(np.mean([r["sim_cost_spread"] for r in results])),
            "pick_error_ratio": float(np.mean([r["pick_latent_error"] for r in results])
                                      / np.mean([r["mean_latent_error"] for r in results])),
            "optimism": float(np.mean([r["optimism"] for r in results])),
            "mean_optimism": float(np.mean([r["mean_optimism"] for r in results])),
            **{f"oracle_fraction_at_{n}": oracle_fraction(results, n, config.seed) for n in budgets}}


def run_ranking(config: RankingConfig) -> dict:
    """Measure every objective at ``n_states`` held-out states; writes ranking_<env>.json / .md /
    .png into ``out_dir`` and returns {"rows": one per objective, "per_state": by objective}."""
    if config.threads:
        torch.set_num_threads(config.threads)
    revision = git_revision()
    env_id = hub.ENVS[config.env]
    torch.manual_seed(config.seed)
    model = UVAWorldModel.from_pretrained(config.env, checkpoints={"uva": config.uva} if config.uva else None,
                                         n_video_steps=config.n_video_steps,
                                         video_head_steps=config.video_head_steps,
                                         temperature=config.temperature, state_head="real", seed=config.seed)
    objectives = build_objectives(config, model)
    # The task's own objective on the simulator's exact states: what the dpc+sim row ranks by.
    truth_objective = PushTSimObjective() if config.env == "pusht" else BlockPushSimObjective()
    store = EpisodeStore.open(config.store or f"data/{config.env}")
    _, val = train_val_split(len(store), 0.05, 0)  # the split UVA, DP-C and the state head held out
    rng = np.random.default_rng(config.seed)
    picks = pick_states(store, val, config.n_states, model.n_history, model.horizon, rng)
    sim = SimulatorDynamics(env_id)
    env_cls = ENV_CLASSES[config.env]
    frame_steps = [model.stride * (k + 1) - 1 for k in range(model.uva.config.n_future)]  # after 4, 8, ...
    per_state = {name: [] for name in objectives}
    start = time.perf_counter()
    for n, (episode, t) in enumerate(picks):
        states = store.episode(episode)["states"]
        past = states[t - model.n_history + 1: t + 1]
        if config.env == "blockpush" and past[-1][24] < 0:  # an unnamed demo: name the assignment it made
            past = past.copy()
            past[:, 24] = int(rng.integers(4))
        images = env_cls.render_states(past, model.image_size)
        history = [observation(config.env, s, im) for s, im in zip(past, images)]
        context = model.context(history)
        candidates = model.sample(context, config.n_candidates)
        imagine = "both" if any(isinstance(o, PoseReward) for o in objectives.values()) else "video"
        imaginations = [model.rollout(context, candidates, imagine=imagine) for _ in range(config.n_imaginations)]
        imagined = imaginations[0]
        sim.env.reset(options={"state": past[-1]})
        env_units = model.normalizer.unnormalize(candidates.double().numpy())  # UVA's normaliser -> px
        true = sim.rollout(SimContext(state=sim.env.get_state(), agent_pos=past[-1][:2]),
                           torch.from_numpy(normalize_actions(env_units, sim.action_low, sim.action_high)))
        real_states = true.states[:, frame_steps].numpy()  # (N, T, P)
        if config.env == "blockpush":
            real_states[..., 24] = past[-1][24]
        flat_states = real_states.reshape(-1, real_states.shape[-1])  # (N * T, P)
        frames = env_cls.render_states(flat_states, model.image_size)
        real_latents = model.encode(frames).reshape(len(candidates), len(frame_steps), *imagined.latents.shape[2:])
        poses = torch.from_numpy(pose_targets(env_id, flat_states).reshape(len(candidates), len(frame_steps), -1))
        real = Rollout(actions=candidates, latents=real_latents, context=context, extras={"poses": poses})
        truth = truth_objective.cost(Rollout(actions=candidates, states=true.states, context=context)).double().numpy()
        truth_top = set(np.argsort(truth)[: max(1, len(truth) // 10)].tolist())
        for name, objective in objectives.items():
            per_state[name].append({"episode": episode, "t": t,
                                    **score_state(objective, imaginations, real, real_latents, truth, truth_top)})
        console.print(f"state {n + 1}/{len(picks)} (episode {episode}, t {t}): "
                      + ", ".join(f"{k} rho {v[-1]['spearman']:+.2f}" for k, v in per_state.items()))
    rows = [summarize(name, results, config) for name, results in per_state.items()]
    record = {**dataclasses.asdict(config), "frame_steps": frame_steps, "uva": config.uva or "shipped",
              "n_video_steps": model.n_video_steps, "video_head_steps": model.video_head_steps,
              "dpc_steps": model.proposer.n_sample_steps, "seconds": time.perf_counter() - start}
    budgets = config.scored_budgets
    write_report(config.out_dir, f"ranking_{config.env}", f"Ranking fidelity, {config.env}: UVA vs simulator, "
                 f"{config.n_candidates} DP-C candidates", rows,
                 ["objective", "states", "rho", "rho_sem", "top10_hit", "rho_truth", "truth_top10_hit",
                  *[f"truth_fraction_at_{n}" for n in budgets], "regret", "sim_spread", "pick_error_ratio",
                  "optimism", "mean_optimism", *[f"oracle_fraction_at_{n}" for n in budgets]],
                 record, plot_label="objective", plot_rate="top10_hit", extra={"per_state": per_state},
                 revision=revision)
    return {"rows": rows, "per_state": per_state}
