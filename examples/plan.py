"""Plan episodes with any planner x dynamics x objective: ``python examples/plan.py``.

    python examples/plan.py planner=mppi n_episodes=50
    python examples/plan.py env=blockpush objective=blockpush_sim planner=cem n_episodes=50

Writes results.json (config, seed, git revision, per-episode metrics, Wilson intervals) and
a GIF into ``out_dir`` and prints a rich table.
"""

from __future__ import annotations

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import uva_plan  # noqa: F401  (registers the environments)
from planners import Planner
from uva_plan.runner import run_episodes


@hydra.main(config_path="../configs", config_name="plan", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    planner = Planner(instantiate(cfg.dynamics), optimizer=instantiate(cfg.planner),
                      proposer=instantiate(cfg.proposer), objective=instantiate(cfg.objective),
                      horizon=cfg.horizon, n_action_steps=cfg.n_action_steps)
    tasks = list(cfg.env.tasks) if cfg.env.tasks else None
    return run_episodes(cfg.env.id, planner, cfg.n_episodes, cfg.seed,
                        env_kwargs=OmegaConf.to_container(cfg.env.kwargs), tasks=tasks,
                        out_dir=cfg.out_dir, n_gifs=cfg.n_gifs,
                        config=OmegaConf.to_container(cfg, resolve=True), title=cfg.out_dir)


if __name__ == "__main__":
    main()
