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
experiment's gap closed). ``n_video_steps`` / ``video_head_steps`` / ``temperature`` set
how UVA imagines (default: the planning settings of ``UVA.from_pretrained``).
``n_imaginations=K`` imagines each candidate K times with fresh noise and ranks by the mean
cost; ``self_rho`` is the Spearman correlation of two imaginations' costs (how much of UVA's
ranking error is sampling noise that averaging removes). ``rho_real_truth`` and
``real_truth_fraction_at_N`` rank by the objective on the real frames against the task's own
cost on exact states: the most a perfect imagination could give with that objective.

    python examples/ranking_fidelity.py env=pusht n_states=40
    python examples/ranking_fidelity.py env=blockpush n_states=40 threads=1 out_dir=outputs/ranking
    python examples/ranking_fidelity.py env=pusht objectives=[state_head,imagined] \
        state_head={imagined:outputs/train/state_head_imagined_pusht/final}

Every option is a hydra override of configs/experiment/ranking_fidelity.yaml. Writes
ranking_<env>.json / .md / .png into ``out_dir`` and prints a rich table. The logic:
``uva_plan.experiments.ranking``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from uva_plan.experiments.ranking import RankingConfig, run_ranking  # noqa: E402


@hydra.main(config_path="../configs/experiment", config_name="ranking_fidelity", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    return run_ranking(RankingConfig(**OmegaConf.to_container(cfg, resolve=True)))


if __name__ == "__main__":
    main()
