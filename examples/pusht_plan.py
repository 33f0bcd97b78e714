"""Plan Push-T with the shipped UVA: ``python examples/pusht_plan.py`` (``make demo``).

The default planner is the paper's guidance recipe with one change: at each replanning step the
shipped DP-C proposes ``n_samples`` chunks of 16 actions, the ``n_central`` most typical of them
are kept (``n_central=null``: all, the paper's best of 100), UVA imagines the 4 future frames of
each, the shipped state head reads the T's pose from the last imagined frame and the task's
coverage cost ranks them; the best chunk's first ``n_action_steps`` run. Hydra overrides choose the rest:

    python examples/pusht_plan.py planner=mppi objective=goal_image proposer=uva n_samples=32 n_episodes=5

Writes a GIF per episode (real frames | UVA's imagined frames of the chosen plan) and
results.json (config, git revision, per-episode metrics, Wilson intervals) into ``out_dir``
and prints a rich table: score (max coverage / 0.95, clipped), binary success, ms per plan.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from planners import Planner  # noqa: E402
from planners.presets import make_optimizer  # noqa: E402
from uva_plan import UVA  # noqa: E402
from uva_plan.report import print_table  # noqa: E402
from uva_plan.runner import run_episodes  # noqa: E402


def ranked_central(cfg: dict) -> int | None:
    """How many of the proposals best_of_n ranks: the n_central most typical (all of them when
    n_samples is fewer); None (every proposal) for the other planners or n_central=null."""
    if cfg["n_central"] is None or cfg["planner"] != "best_of_n":
        return None
    return min(int(cfg["n_central"]), int(cfg["n_samples"]))


def build_planner(cfg: dict) -> Planner:
    """The planner a config describes (module level: worker processes build their own)."""
    # Trained parts in place of the shipped ones (null: shipped).
    checkpoints = {part: str(cfg[key]) for part, key in (("uva", "uva_checkpoint"),
                                                        ("state_head", "state_head_checkpoint"),
                                                        ("pose_head", "pose_head_checkpoint")) if cfg[key]}
    model = UVA.from_pretrained("pusht", proposer=cfg["proposer"], objective=cfg["objective"],
                               state_head=cfg["state_head"], seed=int(cfg["seed"]), checkpoints=checkpoints or None,
                               dpc_steps=cfg["dpc_steps"], dpc_spacing=cfg["dpc_spacing"])
    return Planner(model, make_optimizer(cfg["planner"], int(cfg["n_samples"]), int(cfg["seed"]),
                                         n_central=ranked_central(cfg)),
                   n_action_steps=int(cfg["n_action_steps"]), warm_start=False)


@hydra.main(config_path="../configs/examples", config_name="demo", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    workers = int(cfg.workers)
    if workers < 1:
        raise ValueError(f"workers must be an int >= 1, got workers={cfg.workers}")
    threads = int(cfg.threads) if cfg.threads else (1 if workers > 1 else None)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    config = OmegaConf.to_container(cfg, resolve=True)
    planner = build_planner(config) if workers == 1 else None
    n_central = ranked_central(config)
    title = (f"Push-T: {cfg.proposer} proposals, UVA dynamics, {cfg.objective} objective, "
             f"{cfg.planner} ({cfg.n_samples}" + (f", {n_central} most typical ranked)" if n_central else ")"))
    n_gifs = int(cfg.n_episodes) if cfg.n_gifs is None else int(cfg.n_gifs)
    if n_gifs < 0:
        raise ValueError(f"n_gifs must be null (every episode) or an int >= 0, got n_gifs={cfg.n_gifs}")
    result = run_episodes("uva_plan/PushT-v0", planner, int(cfg.n_episodes), int(cfg.seed),
                          env_kwargs={"render_size": int(cfg.render_size), "max_episode_steps": int(cfg.max_steps)},
                          out_dir=cfg.out_dir, n_gifs=n_gifs, config=config, title=title,
                          resume=bool(cfg.resume), workers=workers, worker_threads=threads or 1,
                          make_planner=functools.partial(build_planner, config))
    episodes = result["episodes"]
    for e in episodes[:n_gifs]:
        e["gif"] = str(Path(cfg.out_dir) / f"episode_{e['seed']}.gif")
    print_table(title, episodes + [{"seed": "all", "score": float(np.mean([e["score"] for e in episodes])),
                                    "success": result["summary"]["success"],
                                    "success_wilson95": result["summary"]["success_wilson95"],
                                    "ms_per_plan": result["summary"]["mean_ms_per_plan"]}],
                ["seed", "score", "success", "steps", "ms_per_plan", "gif"])
    return result


if __name__ == "__main__":
    main()
