"""The block-pushing guidance experiment (UVA, Li et al. 2025), reproduced and extended.

Two blocks, two targets; each episode names one (block, target) assignment, cycled over the
4 of them. At each replanning step a proposer samples candidate chunks of 16 actions, a dynamics
model rolls every candidate out, an objective scores the outcome, the best candidate's first 6
actions run. Success: the named block has entered the named target. The paper: DP-C alone 38%,
DP-C + UVA 60%, DP-C + ground-truth simulator 75% (4 x 10 trials).

    python examples/blockpush_guidance.py trials_per_task=50             # every row
    python examples/blockpush_guidance.py rows=[dpc,dpc+sim,dpc+uva] trials_per_task=10
    python examples/blockpush_guidance.py rows=[dpc,dpc+sim] trials_per_task=50 workers=2 threads=1 \
        out_dir=outputs/guidance

Rows (``rows=[...]``; default all; budgets: ``planners.presets.BUDGETS``):
    dpc               DP-C alone (one sample per replanning step)
    dpc+uva           DP-C proposals, UVA dynamics, state-head objective, best of 100
    dpc+uva:pose      ... the task's cost on poses a pose head reads off UVA's joint latent (no video)
    dpc+uva:goal      ... goal-image objective instead
    dpc+uva:located   ... the simulator's objective on objects located by colour in the decoded
                      imagined frames (``LocatedReward``)
    dpc+uva:located-act     ... the pusher where the actions command it, only the blocks from UVA
    dpc+static:located-act  ... the same over no dynamics (blocks stay in the last real frame):
                            what the actions alone rank, the baseline UVA must beat
    dpc+sim           DP-C proposals, the simulator, the task's exact reward, best of 100
    uva+uva           UVA's own policy samples as proposals, UVA dynamics, best of 100
    cem|mppi|icem     the optimiser seeded with DP-C proposals over UVA dynamics (state head)
    dpc+uva:n8|n32    best of 8 / 32 instead of 100
    dpc+uva:c10       best of the 10 most typical of 100 DP-C proposals (``BestOfN(n_central=10)``)

Every option is a hydra override of configs/experiment/guidance.yaml. Each row is written to
``<out_dir>/rows/<row>/results.json``; a finished row (same trials and seed) is not rerun, and
every finished episode is kept at once, so a killed experiment resumes at the episode it was in
and a run with more trials reuses the episodes of one with fewer. ``workers=N`` runs a row's
episodes in N processes (``threads`` each). The summary (``guidance.json`` / ``.md`` / ``.png``
in ``out_dir``) gives each row's task success with its 95% Wilson interval, ms per plan, and
the gap closed, (row - dpc) / (dpc+sim - dpc). The logic: ``uva_plan.experiments.guidance``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from uva_plan.experiments.guidance import GuidanceConfig, run_guidance  # noqa: E402


@hydra.main(config_path="../configs/experiment", config_name="guidance", version_base="1.3")
def main(cfg: DictConfig) -> list[dict]:
    return run_guidance(GuidanceConfig(**OmegaConf.to_container(cfg, resolve=True)))


if __name__ == "__main__":
    main()
