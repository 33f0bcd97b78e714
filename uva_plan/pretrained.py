"""The shipped models, ready to plan with, and the settings they plan with.

``UVA.from_pretrained(env)`` (``UVAWorldModel.from_pretrained``) and
``DPCProposer.from_pretrained(env)`` call ``pretrained_world_model`` and
``pretrained_dpc_proposer`` here; the weights' paths and their export are ``uva_plan.hub``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from planners.checks import check_int, check_n_central
from uva_plan import hub
from uva_plan.checkpoint import load_model
from uva_plan.dynamics.uva import DEFAULT_N_SAMPLES, UVAWorldModel, load_pose_head
from uva_plan.objectives import EnvGoalImage, LocatedReward, PoseReward, StateReward
from uva_plan.proposers import DPCProposer

# DDIM steps and timestep spacing of each DP-C draw when planning with the shipped models: None,
# the checkpoint's own (10 "leading" steps, as trained), the sampler DP-C alone runs with. 5
# "trailing" steps halve the sampling time and lose little when the simulator ranks 100
# candidates (Push-T 19/20 against 20/20), but each draw is worse: DP-C alone with them succeeds
# in 6/50 Push-T episodes against 17/50 (README), so a planner that ranks poorly, as UVA does,
# inherits the weaker proposals.
DPC_PLANNING_STEPS, DPC_PLANNING_SPACING = None, None
# How the shipped UVA imagines when planning: every future token at once (1 unmasking step), 4 DDIM
# steps of the video head, near the mode (README: forward dynamics 0.65x copy-last at these settings).
PLANNING_SAMPLING = {"n_video_steps": 1, "video_head_steps": 4, "temperature": 0.01}
# What ``Planner(UVA.from_pretrained(env))`` searches with: of DP-C's ``DEFAULT_N_SAMPLES`` (100)
# proposals, UVA ranks only the 10 most typical (``BestOfN(n_central=10)``). Ranking all 100 lets the
# argmin find UVA's imagination errors: Push-T 9/50 against DP-C alone's 17/50; the 10 most typical:
# 87/200 against DP-C alone's 58/200 on the same seeds (README, "Push-T planning with UVA").
DEFAULT_N_CENTRAL = 10

__all__ = ["DEFAULT_N_CENTRAL", "DEFAULT_N_SAMPLES", "DPC_PLANNING_SPACING", "DPC_PLANNING_STEPS",
           "PLANNING_SAMPLING", "load_world_model", "pretrained_dpc_proposer", "pretrained_world_model"]


def load_world_model(env: str, root: Path = hub.PRETRAINED_DIR, **kwargs) -> UVAWorldModel:
    """The shipped UVA of ``env`` with the shipped VAE, as a ``UVAWorldModel`` (no proposer or
    objective: ``pretrained_world_model`` adds them)."""
    if env not in hub.ENVS:
        raise ValueError(f"env must be one of {sorted(hub.ENVS)}, got {env!r}")
    return UVAWorldModel.load(hub.pretrained_checkpoint(f"{env}/uva", root), hub.pretrained_checkpoint("vae", root),
                              **kwargs)


def pretrained_dpc_proposer(env: str, **kwargs) -> DPCProposer:
    """The shipped DP-C of ``env`` ("pusht" or "blockpush") with the shipped VAE; keyword
    arguments as ``DPCProposer`` (``action_low`` / ``action_high``, ``seed``)."""
    if env not in hub.ENVS:
        raise ValueError(f"env must be one of {sorted(hub.ENVS)}, got {env!r}")
    vae, _ = load_model(hub.pretrained_checkpoint("vae"), expected_kind="vae")
    return DPCProposer.from_checkpoint(hub.pretrained_checkpoint(f"{env}/dpc"), vae=vae, **kwargs)


def pretrained_world_model(env: str, proposer: str = "dpc", objective: str = "state",
                           checkpoints: dict | None = None, dpc_steps: int | None = DPC_PLANNING_STEPS,
                           dpc_spacing: str | None = DPC_PLANNING_SPACING, state_head: str = "imagined",
                           n_central: int | None = DEFAULT_N_CENTRAL, **kwargs) -> UVAWorldModel:
    """The shipped UVA of ``env`` ("pusht" or "blockpush") with its VAE, ready to plan with.

    ``proposer``: "dpc" (the shipped DP-C, the paper's guidance setting) or "uva" (UVA's own
    policy samples). ``objective``: "state" (``StateReward`` on the shipped state head) or
    "goal_image" (``EnvGoalImage``) or "located" (``LocatedReward``: the simulator's objective on
    objects located by colour in the decoded imagined frames) or "pose" (``PoseReward``: the
    task's cost on the poses a ``PoseHead`` reads off UVA's joint latent, no video head runs;
    the head is ``checkpoints["pose_head"]`` or the UVA's own, none ships), what
    ``Planner(model)`` minimises when given none.
    ``checkpoints`` replaces shipped parts by trained ones, e.g. ``{"uva": "outputs/train/
    uva_pusht/final"}`` (keys "uva", "dpc", "state_head", "pose_head"; the VAE stays the shipped one).
    ``state_head``: which shipped head the "state" objective reads, "imagined" (trained on
    real frames and on this UVA's imagined ones: it reads imagined frames about twice as
    accurately, and ranks BlockPush candidates better, README) or "real" (real frames only);
    a ``checkpoints["state_head"]`` overrides both.
    ``dpc_steps`` / ``dpc_spacing``: DDIM steps and timestep spacing of each DP-C draw (None,
    the default: the checkpoint's 10, "leading", as DP-C alone samples); 5 "trailing" steps
    halve the proposer's time but make each draw worse (``DPC_PLANNING_STEPS``).
    ``n_central``: ``Planner(model)`` with no optimizer ranks the n_central most typical of
    100 proposals (``default_optimizer``; None: all 100, the paper's best of 100).
    UVA's own action chunks (``policy``, ``proposer="uva"``) take 8 DDIM steps of the action
    head, half the config's 16, at no measured cost (Push-T policy action error 61.9 against
    63.7 px); the policy call was 0-22% faster over three runs (README speed table). Other keyword arguments go
    to the constructor (``n_video_steps``, ``video_head_steps``, ``action_head_steps``,
    ``temperature``, ``max_batch``, ``seed``). The defaults are ``PLANNING_SAMPLING``, measured
    in the README: every future token at once (1 unmasking step), 4 DDIM steps of the video
    head, temperature 0.01 (near the mode: forward-dynamics error 0.65x copy-last-frame's on
    held-out Push-T windows, against 0.89x at temperature 1).
    """
    if env not in hub.ENVS:
        raise ValueError(f"env must be one of {sorted(hub.ENVS)}, got {env!r}")
    if proposer not in ("dpc", "uva"):
        raise ValueError(f"proposer must be 'dpc' or 'uva', got {proposer!r}")
    if objective not in ("state", "goal_image", "located", "pose"):
        raise ValueError(f"objective must be 'state', 'goal_image', 'located' or 'pose', got {objective!r}")
    if state_head not in ("imagined", "real"):
        raise ValueError(f"state_head must be 'imagined' or 'real', got {state_head!r}")
    if dpc_steps is not None:
        check_int("dpc_steps", dpc_steps, 2)  # DDIM steps per DP-C draw
    check_n_central(n_central, DEFAULT_N_SAMPLES)
    if checkpoints is not None and not isinstance(checkpoints, Mapping):
        raise ValueError(f"checkpoints must be a dict of part -> checkpoint path (parts {hub.PARTS}), "
                         f"got {checkpoints=}")
    paths = dict(checkpoints or {})
    unknown = set(paths) - set(hub.PARTS)
    if unknown:
        raise ValueError(f"checkpoints keys must be among {hub.PARTS}, got {sorted(unknown)}")
    for part in hub.PARTS:
        paths.setdefault(part, None)
    kwargs = {**PLANNING_SAMPLING, "action_head_steps": 8, **kwargs}
    if paths["uva"] is None:
        model = load_world_model(env, **kwargs)
    else:
        model = UVAWorldModel.load(paths["uva"], hub.pretrained_checkpoint("vae"), **kwargs)
        if model.env_id not in (None, hub.ENVS[env]):
            raise ValueError(f"{paths['uva']} was trained on {model.env_id}, not {hub.ENVS[env]}")
    if proposer == "dpc":
        model.proposer = DPCProposer.from_checkpoint(paths["dpc"] or hub.pretrained_checkpoint(f"{env}/dpc"),
                                                     vae=model.vae, seed=model.seed, n_sample_steps=dpc_steps,
                                                     timestep_spacing=dpc_spacing)
        if model.proposer.env_id not in (None, hub.ENVS[env]):
            raise ValueError(f"the DP-C {paths['dpc']} was trained on {model.proposer.env_id}, not {hub.ENVS[env]}")
    if objective == "state":
        shipped = f"{env}/state_head" + ("_imagined" if state_head == "imagined" else "")
        given = paths["state_head"] or (paths["state_head_imagined"] if state_head == "imagined" else None)
        head, _ = load_model(given or hub.pretrained_checkpoint(shipped), expected_kind="state_head")
        model.objective = StateReward(head.eval(), hub.ENVS[env])
    elif objective == "located":
        model.objective = LocatedReward(model, hub.ENVS[env])
    elif objective == "pose":
        if paths["pose_head"] is not None:
            model.pose_head = load_pose_head(paths["pose_head"], model)
        elif model.pose_head is None:  # else: the UVA's own pose head (train=uva_pose)
            shipped = hub.entry_path(f"{env}/pose_head")
            if not (shipped / "meta.json").exists():
                raise ValueError("objective='pose' needs a pose head: checkpoints={'pose_head': <a train=pose_head "
                                 "run on this UVA>} or a UVA trained with its own (train=uva_pose, "
                                 f"checkpoints={{'uva': ...}}); none ships for {env!r}")
            model.pose_head = load_pose_head(shipped, model)
        model.objective = PoseReward(model.pose_head, hub.ENVS[env])
    else:
        model.objective = EnvGoalImage(hub.ENVS[env], model)
    model.n_central = n_central
    return model
