"""Ranking fidelity on a frozen candidate set: does UVA rank the candidates as the physics does?

At states of the scorecard's held-out windows (their anchors t), the shipped DP-C proposes
``n_candidates`` action chunks once; the simulator executes each from the exact state, and the
task's own cost on the resulting states (``PushTSimObjective``, ``BlockPushSimObjective``: what
the ``dpc+sim`` planner ranks by) is the truth. Candidates (env units), their simulated future
states and truth costs are stored once beside the window selection (``CANDIDATES_FILE``), so
every model is ranked on the same candidates. A run imagines each candidate with UVA and scores
it with ``LocatedReward`` (the same task cost on objects located in the decoded frames), then
reports per state the Spearman correlation of the two costs (``rho``) and, over random
N-subsets, the share of the simulator's best-of-N gain over a random candidate that UVA's
best-of-N gets (``truth_fraction_at_N``; 1: UVA picks as the simulator would, 0: no better than
DP-C alone), as ``examples/ranking_fidelity.py`` computes them on its random states.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from planners import Rollout
from planners.protocols import normalize_actions
from uva_plan.dynamics import SimContext, SimulatorDynamics, UVAWorldModel
from uva_plan.proposers import DPCProposer
from uva_plan.envs.base import WORKSPACE
from uva_plan.envs.blockpush import observed_state
from uva_plan.io import atomic_write
from uva_plan.objectives import BlockPushSimObjective, LocatedReward, PushTSimObjective
from uva_plan.scorecard.windows import ENV_CLASSES, ENV_IDS

CANDIDATES_FILE = "scorecard_candidates.npz"
BUDGETS = (8, 32, 100)


def observations(env: str, past: np.ndarray, size: int) -> list[dict]:
    """The env's observation dicts for physical states (T, P), frames rendered at ``size``."""
    images = ENV_CLASSES[env].render_states(past, size)
    out = []
    for state, image in zip(past, images):
        obs = {"image": image, "agent_pos": state[:2].copy()}
        if env == "blockpush":
            obs["state"], obs["task"] = observed_state(state), np.int64(state[24])
        out.append(obs)
    return out


def truth_objective(env: str):
    return PushTSimObjective() if env == "pusht" else BlockPushSimObjective()


def _past(store, window: dict, n_history: int, task: int) -> np.ndarray:
    """The window's last ``n_history`` physical states (oldest first); BlockPush demonstrations
    with no named assignment get ``task``."""
    states = store.episode(window["episode"])["states"]
    past = states[window["t"] - n_history + 1: window["t"] + 1].copy()
    if past.shape[1] > 24 and past[-1, 24] < 0:
        past[:, 24] = task
    return past


def frozen_candidates(store, selection: dict, env: str, model: UVAWorldModel, n_states: int = 16,
                      n_candidates: int = 100, seed: int = 0) -> dict:
    """The frozen set (``CANDIDATES_FILE`` in the store's directory): read back and checked against
    the window selection, or built now and written atomically. Returns windows (S,) indices into
    the selection, past (S, n_history, P), actions (S, N, H, A) env units, truth (S, N) costs."""
    path = Path(store.root) / CANDIDATES_FILE
    if path.exists():
        with np.load(path, allow_pickle=False) as saved:
            frozen = {key: saved[key] for key in saved.files}
        if str(frozen["store_fingerprint"]) != selection["store_fingerprint"] or \
                frozen["actions"].shape[:2] != (n_states, n_candidates):
            raise ValueError(f"{path} holds {frozen['actions'].shape[:2]} (states, candidates) of store "
                             f"{str(frozen['store_fingerprint'])[:12]}..., not {(n_states, n_candidates)} of "
                             f"{selection['store_fingerprint'][:12]}...: delete it to draw the candidates again")
        return frozen
    proposer = DPCProposer.from_pretrained(env, seed=seed)
    sim = SimulatorDynamics(ENV_IDS[env])
    windows = np.linspace(0, len(selection["windows"]) - 1, n_states).round().astype(int)
    tasks = np.random.default_rng(seed).integers(4, size=n_states)
    past, actions, truth = [], [], []
    for k, w in enumerate(windows):
        p = _past(store, selection["windows"][w], model.n_history, int(tasks[k]))
        context = model.context(observations(env, p, model.image_size))
        chunk = proposer.normalizers["actions"].unnormalize(proposer.sample(context, n_candidates).double().numpy())
        sim.env.reset(options={"state": p[-1]})
        rolled = sim.rollout(SimContext(state=sim.env.get_state(), agent_pos=p[-1][:2]),
                             torch.from_numpy(normalize_actions(chunk, 0.0, WORKSPACE)))
        cost = truth_objective(env).cost(Rollout(actions=rolled.actions, states=rolled.states, context=context))
        past.append(p)
        actions.append(chunk)
        truth.append(cost.double().numpy())
    frozen = {"windows": windows, "past": np.stack(past), "actions": np.stack(actions), "truth": np.stack(truth),
              "store_fingerprint": np.array(selection["store_fingerprint"])}
    atomic_write(path, lambda f: np.savez(f, **frozen))
    return frozen


def truth_fraction(scores: np.ndarray, truth: np.ndarray, n: int, seed: int = 0, n_subsets: int = 200) -> float:
    """Share of the simulator's best-of-n gain over a random candidate that ranking by ``scores``
    gets, over random n-subsets of each state's candidates (scores, truth: (S, N) costs)."""
    rng = np.random.default_rng(seed)
    gained = possible = 0.0
    for score, cost in zip(scores, truth):
        for _ in range(n_subsets if n < len(cost) else 1):
            subset = rng.choice(len(cost), size=n, replace=False)
            mean = cost[subset].mean()
            gained += mean - cost[subset[np.argmin(score[subset])]]
            possible += mean - cost[subset].min()
    return float(gained / possible) if possible > 0 else 0.0


def ranking_fidelity(model: UVAWorldModel, frozen: dict, env: str, seed: int = 0) -> dict:
    """rho (mean over states of Spearman(UVA's located cost, truth)) and truth_fraction_at_N."""
    objective = LocatedReward(model, ENV_IDS[env])
    model.reset()
    scores = []
    for past, actions in zip(frozen["past"], frozen["actions"]):
        context = model.context(observations(env, past, model.image_size))
        chunk = torch.from_numpy(model.normalizer.normalize(actions)).float()
        rollout = model.rollout(context, chunk, frames=objective.frames)
        scores.append(objective.cost(rollout).double().numpy())
    scores = np.stack(scores)
    # Non-finite costs (an object not found) rank last, as the planners treat them.
    ranked = np.where(np.isfinite(scores), scores, np.inf)
    rhos = [spearmanr(s, t).statistic for s, t in zip(ranked, frozen["truth"])]
    n = frozen["actions"].shape[1]
    return {"states": len(scores), "candidates": n, "objective": "located",
            "rho": float(np.nanmean(rhos)), "rho_per_state": [float(r) for r in rhos],
            "found_fraction": float(np.isfinite(scores).mean()),
            **{f"truth_fraction_at_{b}": truth_fraction(ranked, frozen["truth"], b, seed) for b in BUDGETS if b <= n}}
