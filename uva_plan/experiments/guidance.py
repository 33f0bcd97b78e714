"""The block-pushing guidance experiment (UVA, Li et al. 2025): its rows, one row's run, the summary.

Two blocks, two targets; each episode names one (block, target) assignment, cycled over the 4
of them. At each replanning step a proposer samples candidate chunks of 16 actions, a dynamics
model rolls every candidate out, an objective scores the outcome, the best candidate's first 6
actions run. Every row's budget is a named one of ``planners.presets.BUDGETS``.

Each row is written to ``<out_dir>/rows/<row>/results.json``; a finished row (same trials,
seed, episode length, UVA, heads and DP-C sampler: ``same_run``) is not rerun, and every
finished episode is kept at once (``runner.run_episodes(resume=True)``), so a killed experiment
resumes at the episode it was in and a run with more trials reuses the episodes of one with
fewer. The summary (``guidance.json`` / ``.md`` / ``.png``) gives each row's task success with
its 95% Wilson interval, ms per plan, and the gap closed, (row - dpc) / (dpc+sim - dpc).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from planners import Planner
from planners.checks import check_int
from planners.presets import make_budget
from uva_plan import hub
from uva_plan.dynamics import SimulatorDynamics, StaticWorldModel, UVAWorldModel
from uva_plan.proposers import DPCProposer
from uva_plan.controllers import DPCPolicy
from uva_plan.io import git_revision
from uva_plan.objectives import BlockPushSimObjective, LocatedReward
from uva_plan.report import console, write_report
from uva_plan.runner import run_episodes

ENV_ID = hub.ENVS["blockpush"]
N_ACTION_STEPS = 6  # the paper's protocol: execute the first 6 of 16
N_TASKS = 4  # the named (block, target) assignments, cycled over episodes

# Each row: its description and its budget (a key of planners.presets.BUDGETS; None: DP-C alone,
# one sample per replanning step).
ROW_TABLE: dict[str, tuple[str, str | None]] = {
    "dpc": ("DP-C alone", None),
    "dpc+uva": ("DP-C + UVA, state head, best of 100", "best_of_100"),
    "dpc+uva:pose": ("DP-C + UVA, pose head on UVA's joint latent, best of 100", "best_of_100"),
    "dpc+uva:goal": ("DP-C + UVA, goal image, best of 100", "best_of_100"),
    "dpc+uva:located": ("DP-C + UVA, simulator objective on colour-located objects, best of 100", "best_of_100"),
    "dpc+uva:located-act": ("... the pusher from the commanded actions, the blocks from UVA", "best_of_100"),
    "dpc+static:located-act": ("... no dynamics: the blocks stay in the last real frame", "best_of_100"),
    "dpc+sim": ("DP-C + simulator, best of 100", "best_of_100"),
    "uva+uva": ("UVA-policy proposals + UVA, state head, best of 100", "best_of_100"),
    "cem": ("CEM seeded with DP-C, UVA, state head", "cem_seeded"),
    "mppi": ("MPPI seeded with DP-C, UVA, state head", "mppi_seeded"),
    "icem": ("iCEM seeded with DP-C, UVA, state head", "icem_seeded"),
    "dpc+uva:n8": ("DP-C + UVA, state head, best of 8", "best_of_8"),
    "dpc+uva:n32": ("DP-C + UVA, state head, best of 32", "best_of_32"),
    "dpc+uva:c10": ("DP-C + UVA, state head, best of the 10 most typical of 100", "central_10_of_100"),
}
ROWS = tuple(ROW_TABLE)
DESCRIPTIONS = {row: description for row, (description, _) in ROW_TABLE.items()}

# The rows whose objective is the state head (the ones GuidanceConfig.state_head changes).
STATE_HEAD_ROWS = ("dpc+uva", "uva+uva", "cem", "mppi", "icem", "dpc+uva:n8", "dpc+uva:n32",
                   "dpc+uva:c10")


def check_rows(rows) -> tuple[str, ...]:
    """``rows`` (a row name, or a list of them) as a tuple of known row names (at least one);
    else a ValueError naming the bad one."""
    if isinstance(rows, str):
        rows = [rows]
    if not rows:
        raise ValueError(f"rows must be a non-empty list of row names from {ROWS}, got rows={rows!r}")
    for row in rows:
        if row not in ROW_TABLE:
            raise ValueError(f"unknown row {row!r}; rows are {ROWS}")
    return tuple(rows)


@dataclass
class GuidanceConfig:
    """One run of the experiment; ``rows=None``: every row. ``state_head``: the UVA rows' state
    objective's head (None: the shipped, imagination-trained one); ``pose_head``: the ``:pose``
    row's (None: that of a ``uva`` trained with its own, ``train=uva_pose``; none ships);
    ``dpc_steps`` / ``dpc_spacing``: DDIM steps and spacing of every DP-C draw, in every row
    (None: the checkpoint's 10, leading, as trained). ``threads``: torch threads (of each
    worker when ``workers`` > 1); ``workers``: processes that run a row's episodes, each
    loading its own models. ``max_steps``: episode length (None: the env's 350)."""

    rows: tuple[str, ...] | None = None
    trials_per_task: int = 50  # episodes per named assignment
    seed: int = 100000  # the first episode's seed (then +1 per episode)
    uva: str | None = None  # a UVA checkpoint (None: the shipped one)
    state_head: str | None = None
    pose_head: str | None = None
    dpc_steps: int | None = None
    dpc_spacing: str | None = None
    threads: int | None = None
    workers: int = 1
    n_gifs: int = 1
    max_steps: int | None = None
    out_dir: str = "outputs/guidance"

    def __post_init__(self) -> None:
        self.rows = ROWS if self.rows is None else check_rows(self.rows)
        check_int("trials_per_task", self.trials_per_task, 1)
        check_int("workers", self.workers, 1)
        check_int("seed", self.seed, 0)
        check_int("n_gifs", self.n_gifs, 0)
        for name in ("dpc_steps", "threads", "max_steps"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 1)
        if self.dpc_spacing not in (None, "leading", "trailing"):
            raise ValueError(f"dpc_spacing must be None, 'leading' or 'trailing', got dpc_spacing={self.dpc_spacing!r}")


def row_optimizer(row: str, seed: int):
    """The optimiser of a planning row, at its budget (``planners.presets.BUDGETS``)."""
    budget = ROW_TABLE[check_rows([row])[0]][1]
    if budget is None:
        raise ValueError(f"row {row!r} plans with no optimiser (one DP-C sample per replanning step)")
    return make_budget(budget, seed=seed)


def build(row: str, seed: int, uva_checkpoint: str | None, state_head: str | None = None,
          pose_head: str | None = None, dpc_steps: int | None = None, dpc_spacing: str | None = None):
    """The controller of one row (anything with reset / observe / plan). ``state_head``: the
    state head checkpoint of the UVA rows' state objective (default: the shipped one);
    ``pose_head``: the pose head of the ``:pose`` row (default: the UVA's own, ``train=uva_pose``;
    none ships, so without either the row stops with a clear error); ``dpc_steps`` /
    ``dpc_spacing``: DDIM steps and spacing of every DP-C draw, the same in every row (None: the
    checkpoint's, as DP-C was trained)."""
    check_rows([row])
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
        return Planner(sim, row_optimizer(row, seed), proposer=proposer, objective=BlockPushSimObjective(),
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
    return Planner(model, row_optimizer(row, seed), n_action_steps=N_ACTION_STEPS, warm_start=False)


def row_dir(out_dir: str | Path, row: str) -> Path:
    """Where one row's results.json, episodes and GIFs go."""
    return Path(out_dir) / "rows" / row.replace(":", "_").replace("+", "_")


def state_head_id(config: GuidanceConfig) -> str:
    """What the UVA rows' state objective reads: the given checkpoint, or the shipped default."""
    return config.state_head or "shipped:state_head_imagined"


def dpc_sampling(config: GuidanceConfig) -> list:
    """[DDIM steps, spacing] every DP-C draw of this run takes (what a row records)."""
    from uva_plan.checkpoint import read_meta, resolve_checkpoint

    steps = config.dpc_steps or read_meta(
        resolve_checkpoint(hub.pretrained_checkpoint("blockpush/dpc")), verify=False)["config"]["n_sample_steps"]
    return [steps, config.dpc_spacing or "leading"]


def same_run(previous: dict, config: GuidanceConfig) -> bool:
    """A finished row counts for this run when its trials, seed, episode length and UVA match."""
    recorded = previous["config"]
    # Rows recorded before the imagination-trained head became the default say "shipped" (or
    # nothing): they read the real-frame head.
    if recorded.get("row") in STATE_HEAD_ROWS and recorded.get("state_head", "shipped") != state_head_id(config):
        return False
    if str(recorded.get("row")).endswith(":pose") and recorded.get("pose_head") != (config.pose_head or "uva:own"):
        return False
    if "dpc_sampling" in recorded and recorded["dpc_sampling"] != dpc_sampling(config):  # another DP-C sampler
        return False
    return (recorded.get("n_episodes") == N_TASKS * config.trials_per_task and previous["seed"] == config.seed
            and recorded.get("max_steps") == config.max_steps and recorded.get("uva") == (config.uva or "shipped"))


def run_row(row: str, config: GuidanceConfig, revision: str) -> dict:
    """Run (or resume, or read back) one row; returns its results.json."""
    out = row_dir(config.out_dir, row)
    n_episodes = N_TASKS * config.trials_per_task
    done = out / "results.json"
    if done.exists():
        previous = json.loads(done.read_text())
        if same_run(previous, config):
            console.print(f"[dim]{row}: done earlier ({done})[/]")
            return previous
    torch.manual_seed(config.seed)
    make = functools.partial(build, row, config.seed, config.uva, config.state_head, config.pose_head,
                             config.dpc_steps, config.dpc_spacing)
    controller = make()
    record = {"row": row, "description": DESCRIPTIONS[row], "n_episodes": n_episodes,
              "trials_per_task": config.trials_per_task, "n_action_steps": N_ACTION_STEPS,
              "uva": config.uva or "shipped", "threads": torch.get_num_threads(), "max_steps": config.max_steps,
              "git_revision": revision}
    if getattr(getattr(controller, "model", None), "action_head_steps", None) is not None:
        record["uva_action_head_steps"] = controller.model.action_head_steps
    if row in STATE_HEAD_ROWS:
        record["state_head"] = state_head_id(config)
    if row.endswith(":pose"):
        record["pose_head"] = config.pose_head or "uva:own"
    proposer = getattr(getattr(controller, "model", None), "proposer", None) or getattr(controller, "proposer", None)
    if proposer is not None and hasattr(proposer, "n_sample_steps"):  # DP-C sampling: DDIM steps, spacing
        record["dpc_sampling"] = [proposer.n_sample_steps or proposer.config.n_sample_steps,
                                  proposer.timestep_spacing or "leading"]
    env_kwargs = {"render_size": 64}
    if config.max_steps:
        env_kwargs["max_episode_steps"] = config.max_steps
    record["workers"] = config.workers
    run_episodes(ENV_ID, controller, n_episodes, config.seed, env_kwargs=env_kwargs, tasks=list(range(N_TASKS)),
                 out_dir=out, n_gifs=config.n_gifs, config=record, title=f"{row}: {DESCRIPTIONS[row]}",
                 resume=True, workers=config.workers, worker_threads=config.threads or 1,
                 make_planner=make)
    return json.loads(done.read_text())


def summary_rows(results: dict[str, dict]) -> list[dict]:
    """One summary row per row's results, with the gap closed when dpc and dpc+sim are there."""
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


def run_guidance(config: GuidanceConfig) -> list[dict]:
    """Run every row of ``config`` (rows finished earlier are read back), then write the summary
    of these and of every other finished row of the same run; returns the summary rows."""
    if config.threads:
        torch.set_num_threads(config.threads)
    revision = git_revision()
    results = {row: run_row(row, config, revision) for row in config.rows}
    # Rows finished earlier (same trials and seed) join the summary too.
    for row in ROWS:
        path = row_dir(config.out_dir, row) / "results.json"
        if row not in results and path.exists():
            previous = json.loads(path.read_text())
            if same_run(previous, config):
                results[row] = previous
    results = {row: results[row] for row in ROWS if row in results}
    rows = summary_rows(results)
    write_report(config.out_dir, "guidance", f"BlockPush guidance, {N_TASKS * config.trials_per_task} episodes per row",
                 rows, ["row", "episodes", "task_success", "p1", "ms_per_plan", "evaluations_per_plan",
                        "gap_closed"], {**dataclasses.asdict(config), "rows": list(config.rows)},
                 plot_label="row", plot_rate="task_success", revision=revision)
    return rows
