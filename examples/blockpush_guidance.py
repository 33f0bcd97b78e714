"""The block-pushing guidance experiment (UVA, Li et al. 2025), reproduced and extended.

Two blocks, two targets; each episode names one (block, target) assignment, cycled over the
4 of them. At each replanning step a proposer samples candidate chunks of 16 actions, a dynamics
model rolls every candidate out, an objective scores the outcome, the best candidate's first 6
actions run. Success: the named block has entered the named target. The paper: DP-C alone 38%,
DP-C + UVA 60%, DP-C + ground-truth simulator 75% (4 x 10 trials).

    python examples/blockpush_guidance.py --trials-per-task 50             # every row
    python examples/blockpush_guidance.py --rows dpc dpc+sim dpc+uva --trials-per-task 10

Rows (``--rows``; default all):
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

Each row is an ``examples``-style run written to ``<out>/rows/<row>/results.json``; a finished
row (same trials and seed) is not rerun, and every finished episode is kept at once
(``runner.run_episodes(resume=True)``), so a killed experiment resumes at the episode it was in
and a run with more trials reuses the episodes of one with fewer. ``--workers N`` runs a row's
episodes in N processes (``--threads`` each); an episode does not depend on the ones before it.
The summary (``guidance.json`` / ``.md`` / ``.png``) gives each row's task success with its 95%
Wilson interval, ms per plan, and the gap closed, (row - dpc) / (dpc+sim - dpc).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from planners import CEM, ICEM, MPPI, BestOfN, Planner  # noqa: E402
from uva_plan import hub  # noqa: E402
from uva_plan.controllers import DPCPolicy  # noqa: E402
from uva_plan.dynamics import SimulatorDynamics, StaticWorldModel, UVAWorldModel  # noqa: E402
from uva_plan.proposers import DPCProposer  # noqa: E402
from uva_plan.io import git_revision  # noqa: E402
from uva_plan.objectives import BlockPushSimObjective, LocatedReward  # noqa: E402
from uva_plan.report import console, write_report  # noqa: E402
from uva_plan.runner import run_episodes  # noqa: E402

ENV_ID = hub.ENVS["blockpush"]
N_ACTION_STEPS = 6  # the paper's protocol: execute the first 6 of 16
ROWS = ("dpc", "dpc+uva", "dpc+uva:pose", "dpc+uva:goal", "dpc+uva:located", "dpc+uva:located-act",
        "dpc+static:located-act", "dpc+sim", "uva+uva", "cem", "mppi", "icem", "dpc+uva:n8",
        "dpc+uva:n32", "dpc+uva:c10")
DESCRIPTIONS = {
    "dpc": "DP-C alone",
    "dpc+uva": "DP-C + UVA, state head, best of 100",
    "dpc+uva:pose": "DP-C + UVA, pose head on UVA's joint latent, best of 100",
    "dpc+uva:goal": "DP-C + UVA, goal image, best of 100",
    "dpc+uva:located": "DP-C + UVA, simulator objective on colour-located objects, best of 100",
    "dpc+uva:located-act": "... the pusher from the commanded actions, the blocks from UVA",
    "dpc+static:located-act": "... no dynamics: the blocks stay in the last real frame",
    "dpc+sim": "DP-C + simulator, best of 100",
    "uva+uva": "UVA-policy proposals + UVA, state head, best of 100",
    "cem": "CEM seeded with DP-C, UVA, state head",
    "mppi": "MPPI seeded with DP-C, UVA, state head",
    "icem": "iCEM seeded with DP-C, UVA, state head",
    "dpc+uva:n8": "DP-C + UVA, state head, best of 8",
    "dpc+uva:n32": "DP-C + UVA, state head, best of 32",
    "dpc+uva:c10": "DP-C + UVA, state head, best of the 10 most typical of 100",
}


# The rows whose objective is the state head (the ones --state-head changes).
STATE_HEAD_ROWS = ("dpc+uva", "uva+uva", "cem", "mppi", "icem", "dpc+uva:n8", "dpc+uva:n32",
                   "dpc+uva:c10")


def optimizer(row: str, seed: int):
    """Every UVA row spends about 100-160 imagined rollouts per plan (reported per row)."""
    if row == "cem":
        return CEM(n_samples=32, n_proposals=64, n_elites=8, n_iterations=2, init_std=0.1, min_std=0.02, seed=seed)
    if row == "mppi":
        return MPPI(n_samples=96, n_proposals=64, n_elites=16, n_iterations=2, temperature=0.3, init_std=0.1,
                    min_std=0.02, max_std=0.5, seed=seed)
    if row == "icem":
        return ICEM(n_samples=32, n_proposals=64, n_elites=8, n_iterations=2, init_std=0.1, min_std=0.02, seed=seed)
    if row == "dpc+uva:c10":
        return BestOfN(n_samples=100, n_central=10, seed=seed)
    n = {"dpc+uva:n8": 8, "dpc+uva:n32": 32}.get(row, 100)
    return BestOfN(n_samples=n, seed=seed)


def build(row: str, seed: int, uva_checkpoint: str | None, state_head: str | None = None,
          pose_head: str | None = None, dpc_steps: int | None = None, dpc_spacing: str | None = None):
    """The controller of one row (anything with reset / observe / plan). ``state_head``: the
    state head checkpoint of the UVA rows' state objective (default: the shipped one);
    ``pose_head``: the pose head of the ``:pose`` row (default: the UVA's own, ``train=uva_pose``;
    none ships, so without either the row stops with a clear error); ``dpc_steps`` /
    ``dpc_spacing``: DDIM steps and spacing of every DP-C draw, the same in every row (None: the
    checkpoint's, as DP-C was trained)."""
    if row not in ROWS:
        raise ValueError(f"row must be one of {ROWS}, got {row!r}")
    checkpoints = {"uva": uva_checkpoint} if uva_checkpoint else {}
    if state_head:
        checkpoints["state_head"] = state_head
    if pose_head:
        checkpoints["pose_head"] = pose_head
    if row == "dpc":
        return DPCPolicy(DPCProposer.from_pretrained("blockpush", seed=seed, n_sample_steps=dpc_steps,
                                                     timestep_spacing=dpc_spacing), n_action_steps=N_ACTION_STEPS)
    if row == "dpc+sim":
        sim = SimulatorDynamics(ENV_ID, n_history=2)
        proposer = DPCProposer.from_pretrained("blockpush", seed=seed, action_low=sim.action_low,
                                               action_high=sim.action_high, n_sample_steps=dpc_steps,
                                               timestep_spacing=dpc_spacing)
        return Planner(sim, optimizer(row, seed), proposer=proposer, objective=BlockPushSimObjective(),
                       n_action_steps=N_ACTION_STEPS, warm_start=False)
    model = UVAWorldModel.from_pretrained("blockpush", proposer="uva" if row == "uva+uva" else "dpc",
                                          objective={"dpc+uva:goal": "goal_image", "dpc+uva:pose": "pose",
                                                     "dpc+uva:located": "located"}.get(row, "state"),
                                          checkpoints=checkpoints or None, seed=seed, dpc_steps=dpc_steps,
                                          dpc_spacing=dpc_spacing)
    if row.endswith(":located-act"):
        model.objective = LocatedReward(model, ENV_ID, pusher="actions")
        if row.startswith("dpc+static"):
            model = StaticWorldModel(model)
    return Planner(model, optimizer(row, seed), n_action_steps=N_ACTION_STEPS, warm_start=False)


def row_dir(out: str | Path, row: str) -> Path:
    return Path(out) / "rows" / row.replace(":", "_").replace("+", "_")


def run_row(row: str, args, revision: str) -> dict:
    out = row_dir(args.out, row)
    n_episodes = 4 * args.trials_per_task
    done = out / "results.json"
    if done.exists():
        previous = json.loads(done.read_text())
        if _same_run(previous, args):
            console.print(f"[dim]{row}: done earlier ({done})[/]")
            return previous
    torch.manual_seed(args.seed)
    make = functools.partial(build, row, args.seed, args.uva, args.state_head, args.pose_head, args.dpc_steps,
                             args.dpc_spacing)
    controller = make()
    config = {"row": row, "description": DESCRIPTIONS[row], "n_episodes": n_episodes,
              "trials_per_task": args.trials_per_task, "n_action_steps": N_ACTION_STEPS,
              "uva": args.uva or "shipped", "threads": torch.get_num_threads(), "max_steps": args.max_steps,
              "git_revision": revision}
    if getattr(getattr(controller, "model", None), "action_head_steps", None) is not None:
        config["uva_action_head_steps"] = controller.model.action_head_steps
    if row in STATE_HEAD_ROWS:
        config["state_head"] = _state_head_id(args)
    if row.endswith(":pose"):
        config["pose_head"] = args.pose_head or "uva:own"
    proposer = getattr(getattr(controller, "model", None), "proposer", None) or getattr(controller, "proposer", None)
    if proposer is not None and hasattr(proposer, "n_sample_steps"):  # DP-C sampling: DDIM steps, spacing
        config["dpc_sampling"] = [proposer.n_sample_steps or proposer.config.n_sample_steps,
                                  proposer.timestep_spacing or "leading"]
    env_kwargs = {"render_size": 64}
    if args.max_steps:
        env_kwargs["max_episode_steps"] = args.max_steps
    config["workers"] = args.workers
    run_episodes(ENV_ID, controller, n_episodes, args.seed, env_kwargs=env_kwargs, tasks=[0, 1, 2, 3],
                 out_dir=out, n_gifs=args.n_gifs, config=config, title=f"{row}: {DESCRIPTIONS[row]}",
                 resume=True, workers=args.workers, worker_threads=args.threads or 1,
                 make_planner=make)
    return json.loads(done.read_text())


def _state_head_id(args) -> str:
    """What the UVA rows' state objective reads: the given checkpoint, or the shipped default."""
    return args.state_head or "shipped:state_head_imagined"


def dpc_sampling(args) -> list:
    """[DDIM steps, spacing] every DP-C draw of this run takes (what a row records)."""
    from uva_plan.checkpoint import read_meta, resolve_checkpoint

    steps = getattr(args, "dpc_steps", None) or read_meta(
        resolve_checkpoint(hub.pretrained_checkpoint("blockpush/dpc")), verify=False)["config"]["n_sample_steps"]
    return [steps, getattr(args, "dpc_spacing", None) or "leading"]


def _same_run(previous: dict, args) -> bool:
    """A finished row counts for this run when its trials, seed, episode length and UVA match."""
    config = previous["config"]
    # Rows recorded before the imagination-trained head became the default say "shipped" (or
    # nothing): they read the real-frame head.
    if config.get("row") in STATE_HEAD_ROWS and config.get("state_head", "shipped") != _state_head_id(args):
        return False
    if str(config.get("row")).endswith(":pose") and config.get("pose_head") != (args.pose_head or "uva:own"):
        return False
    if "dpc_sampling" in config and config["dpc_sampling"] != dpc_sampling(args):  # another DP-C sampler
        return False
    return (config.get("n_episodes") == 4 * args.trials_per_task and previous["seed"] == args.seed
            and config.get("max_steps") == args.max_steps and config.get("uva") == (args.uva or "shipped"))


def summary_rows(results: dict[str, dict]) -> list[dict]:
    rows = []
    for row, result in results.items():
        s = result["summary"]
        rows.append({"row": row, "description": DESCRIPTIONS[row], "episodes": s["n_episodes"],
                     "task_success": s["task_success"], "task_success_wilson95": s["task_success_wilson95"],
                     "p1": s.get("p1"), "p1_wilson95": s.get("p1_wilson95"),
                     "ms_per_plan": s.get("mean_ms_per_plan"),
                     "evaluations_per_plan": s.get("mean_evaluations_per_plan")})
    if "dpc" in results and "dpc+sim" in results:
        alone = results["dpc"]["summary"]["task_success"]
        gap = results["dpc+sim"]["summary"]["task_success"] - alone
        for r in rows:
            if r["row"] not in ("dpc", "dpc+sim"):
                r["gap_closed"] = (r["task_success"] - alone) / gap if gap > 0 else None
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--trials-per-task", type=int, default=50, help="episodes per named assignment")
    parser.add_argument("--seed", type=int, default=100000, help="first episode seed (then +1 per episode)")
    parser.add_argument("--uva", default=None, help="UVA checkpoint (default: the shipped one)")
    parser.add_argument("--state-head", default=None,
                        help="state head of the UVA rows' state objective (default: the shipped one), e.g. "
                             "outputs/train/state_head_imagined_blockpush/final")
    parser.add_argument("--pose-head", default=None,
                        help="pose head of the dpc+uva:pose row, e.g. outputs/train/pose_head_blockpush/final "
                             "(default: that of a --uva trained with its own, train=uva_pose; none ships)")
    parser.add_argument("--dpc-steps", type=int, default=None,
                        help="DDIM steps of every DP-C draw, in every row (default: the checkpoint's 10)")
    parser.add_argument("--dpc-spacing", choices=("leading", "trailing"), default=None,
                        help="DDIM timestep spacing of every DP-C draw (default: leading, as trained)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (of each worker with --workers)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes that run a row's episodes in parallel (each loads its own models)")
    parser.add_argument("--n-gifs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=None, help="episode length (default: the env's 350)")
    parser.add_argument("--out", default="outputs/guidance")
    args = parser.parse_args(argv)
    if args.trials_per_task < 1:
        parser.error(f"--trials-per-task must be >= 1, got {args.trials_per_task}")
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    if args.threads:
        torch.set_num_threads(args.threads)
    revision = git_revision()
    results = {row: run_row(row, args, revision) for row in args.rows}
    # Rows finished earlier (same trials and seed) join the summary too.
    for row in ROWS:
        path = row_dir(args.out, row) / "results.json"
        if row not in results and path.exists():
            previous = json.loads(path.read_text())
            if _same_run(previous, args):
                results[row] = previous
    results = {row: results[row] for row in ROWS if row in results}
    rows = summary_rows(results)
    write_report(args.out, "guidance", f"BlockPush guidance, {4 * args.trials_per_task} episodes per row",
                 rows, ["row", "episodes", "task_success", "p1", "ms_per_plan", "evaluations_per_plan",
                        "gap_closed"], vars(args), plot_label="row", plot_rate="task_success", revision=revision)
    return rows


if __name__ == "__main__":
    main()
