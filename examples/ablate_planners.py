"""Planner ablation over UVA dynamics: ``python examples/ablate_planners.py --multirun``.

A hydra multirun over planner x objective x budget (configs/examples/ablate.yaml), run in parallel by
the joblib launcher (``hydra.launcher.n_jobs``; the submitit launcher takes the same config to a
cluster). Each job plans ``n_episodes`` episodes and writes its results.json; when all are done
``ablation_summary.AblationSummary`` (examples/ablation_summary.py) writes one summary table
(JSON, markdown, PNG) into the sweep directory and prints it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from planners import Planner, make_optimizer  # noqa: E402
from uva_plan import UVA, hub  # noqa: E402
from uva_plan.runner import run_episodes  # noqa: E402

N_ACTION_STEPS = {"pusht": 8, "blockpush": 6}


@hydra.main(config_path="../configs/examples", config_name="ablate", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    if cfg.env not in hub.ENVS:
        raise ValueError(f"env must be one of {sorted(hub.ENVS)}, got {cfg.env!r}")
    torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(int(cfg.seed))
    model = UVA.from_pretrained(cfg.env, proposer=cfg.proposer, objective=cfg.objective, seed=int(cfg.seed))
    planner = Planner(model, make_optimizer(cfg.planner, int(cfg.n_samples), int(cfg.seed)),
                      n_action_steps=N_ACTION_STEPS[cfg.env], warm_start=False)
    out_dir = HydraConfig.get().runtime.output_dir
    title = f"{cfg.env}: {cfg.planner} / {cfg.objective} / {cfg.n_samples}"
    env_kwargs = {"render_size": 64}
    if cfg.max_steps:
        env_kwargs["max_episode_steps"] = int(cfg.max_steps)
    return run_episodes(hub.ENVS[cfg.env], planner, int(cfg.n_episodes), int(cfg.seed),
                        env_kwargs=env_kwargs, tasks=[0, 1, 2, 3] if cfg.env == "blockpush" else None,
                        out_dir=out_dir, n_gifs=1, config=OmegaConf.to_container(cfg, resolve=True), title=title)


if __name__ == "__main__":
    main()
