"""Models behind the planners' protocols: the ground-truth simulator and simple proposers.

``SimulatorDynamics`` rolls candidates out in the real environment from its exact state: the
upper bound every learned dynamics model is judged against. It needs the environment's full
state in each observation, which ``PrivilegedState`` (a gymnasium wrapper) adds as
``obs["sim_state"]``. Proposers draw normalised action chunks around the pusher's position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from planners import Rollout
from planners.base import check_float, check_int
from planners.best_of_n import BestOfN, check_n_central
from uva_plan.envs.base import WORKSPACE


@dataclass
class SimContext:
    """What the simulator plans from: the env's exact full state and the pusher position."""

    state: np.ndarray  # full state from env.unwrapped.get_state()
    agent_pos: np.ndarray  # (2,) env units
    # With SimulatorDynamics(n_history >= 2): the last n_history observations' frames (T, S, S, 3)
    # and pusher positions (T, 2), oldest first, for a proposer that reads them (DP-C).
    frames: np.ndarray | None = None
    agent_pos_history: np.ndarray | None = None


class PrivilegedState(gym.ObservationWrapper):
    """Adds the exact simulator state, ``obs["sim_state"]``, for ground-truth planning."""

    # The full state's length varies with the contact-cache replay, so ``sim_state`` is not
    # declared in the observation space: it is privileged side information for planners.

    def observation(self, observation: dict) -> dict:
        return {**observation, "sim_state": self.env.unwrapped.get_state()}


def normalize_actions(actions: np.ndarray | Tensor, low, high):
    """Env units -> [-1, 1]."""
    return 2.0 * (actions - low) / (high - low) - 1.0


def unnormalize_actions(actions: np.ndarray | Tensor, low, high):
    """[-1, 1] -> env units."""
    return low + (actions + 1.0) / 2.0 * (high - low)


class SimulatorDynamics:
    """Ground-truth dynamics: every candidate is executed in a private copy of the environment
    from the exact current state (bit-identical to what the real episode would do).

    One ``rollout`` call takes the whole population; Chipmunk is sequential, so inside it the
    candidates run one after another. ``Rollout.states`` is (N, H, P): the physical state after
    each action; ``extras["terminated"]`` (N, H) marks steps where the task ended.
    """

    def __init__(self, env_id: str, env_kwargs: dict | None = None, n_history: int = 1):
        if isinstance(n_history, bool) or not isinstance(n_history, int) or n_history < 1:
            raise ValueError(f"n_history must be an int >= 1, got {n_history=}")
        self.env_id, self.n_history = env_id, n_history
        try:
            self.env = gym.make(env_id, render_mode=None, **(env_kwargs or {})).unwrapped
        except gym.error.Error as error:
            ours = sorted(k for k in gym.registry if k.startswith("uva_plan/"))
            raise ValueError(f"env_id {env_id!r} is not a registered environment ({error}); ours: {ours}") from error
        self.physical_dim = self.env.physical_dim
        self.action_low = np.zeros(2)
        self.action_high = np.full(2, WORKSPACE)

    def context(self, history: Sequence[dict]) -> SimContext:
        obs = history[-1]
        if "sim_state" not in obs:
            raise ValueError("SimulatorDynamics needs the exact env state in obs['sim_state']: wrap the "
                             "env with uva_plan.adapters.PrivilegedState (the runner does this)")
        context = SimContext(state=np.asarray(obs["sim_state"], dtype=np.float64),
                             agent_pos=np.asarray(obs["agent_pos"], dtype=np.float64))
        if self.n_history > 1:
            context.frames = np.stack([o["image"] for o in history])
            context.agent_pos_history = np.stack([np.asarray(o["agent_pos"], dtype=np.float64) for o in history])
        return context

    def initial_plan(self, context: SimContext, horizon: int) -> Tensor:
        """Hold the pusher where it is: (H, 2) normalised."""
        here = normalize_actions(context.agent_pos, self.action_low, self.action_high)
        return torch.from_numpy(np.tile(here, (horizon, 1))).float()

    @torch.no_grad()
    def rollout(self, context: SimContext, actions: Tensor) -> Rollout:
        if actions.ndim != 3 or actions.shape[-1] != 2:
            raise ValueError(f"actions must be (N, H, 2), got {tuple(actions.shape)}")
        targets = unnormalize_actions(actions.detach().cpu().double().numpy(), self.action_low, self.action_high)
        n, horizon, _ = targets.shape
        states = np.empty((n, horizon, self.physical_dim))
        terminated = np.zeros((n, horizon), dtype=bool)
        env = self.env
        for i in range(n):
            env.set_state(context.state)
            for h in range(horizon):
                _, terminated[i, h], _ = env.sim_step(targets[i, h])
                states[i, h] = env._read_physical()
        return Rollout(actions=actions, states=torch.from_numpy(states), context=context,
                       extras={"terminated": torch.from_numpy(terminated)})


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
# What ``Planner(UVA.from_pretrained(env))`` searches with: of DP-C's 100 proposals, UVA ranks
# only the 10 most typical (``BestOfN(n_central=10)``). Ranking all 100 lets the argmin find
# UVA's imagination errors: Push-T 9/50 against DP-C alone's 17/50; the 10 most typical: 87/200
# against DP-C alone's 58/200 on the same seeds (README, "Push-T planning with UVA").
DEFAULT_N_SAMPLES, DEFAULT_N_CENTRAL = 100, 10


@dataclass
class LatentContext:
    """What the learned models plan from: VAE latents of past frames and the pusher's track.

    ``latents`` are UVA's history frames (t - 12, t - 8, t - 4, t for the default config),
    ``recent_latents`` the last two control steps' frames (t - 1, t: DP-C's observation).
    """

    latents: Tensor  # (1, T, C, h, w) scaled VAE latents, oldest first
    recent_latents: Tensor  # (1, 2, C, h, w)
    agent_pos_history: np.ndarray  # (n_history, 2) env units, oldest first; the last is now
    agent_pos: np.ndarray  # (2,) env units
    # BlockPush: the named task (0..3, -1 none) and the target centres (2, 2) px, read from the
    # observation ("task", "state"[8:12]) for the objectives; None for Push-T.
    task: int | None = None
    targets: np.ndarray | None = None

    @property
    def device(self) -> torch.device:
        return self.latents.device


class UVAWorldModel:
    """UVA behind the planners' protocols, with the frozen VAE that turns observations into
    latents: a Dynamics (``rollout`` imagines the future frames' latents of each candidate
    chunk), a Proposer (``sample``: UVA as a policy) and ``policy`` (one chunk, no video).

    ``n_history`` counts control steps: UVA's history spans (n_history - 1) * frame_stride + 1
    of them, so the ``Planner`` must see every step (``Planner.observe``; the runner does this).
    Actions are normalised with the training data's min-max normaliser: ``action_low`` /
    ``action_high`` are its limits.
    """

    def __init__(self, uva, vae, action_normalizer, env_id: str | None = None,
                 n_video_steps: int | None = None, temperature: float = 1.0,
                 max_batch: int | None = None, seed: int = 0, video_head_steps: int | None = None,
                 action_head_steps: int | None = None,
                 proposer=None, objective=None, pose_head=None):
        c = uva.config
        if vae.config.latent_channels != c.latent_channels or vae.config.latent_size != c.latent_size:
            raise ValueError(f"the VAE makes {vae.config.latent_channels} x {vae.config.latent_size}^2 latents "
                             f"but the UVA expects {c.latent_channels} x {c.latent_size}^2")
        if action_normalizer.dim != c.action_dim:
            raise ValueError(f"action normaliser is {action_normalizer.dim}-d, the UVA's actions are {c.action_dim}-d")
        if n_video_steps is not None and not (isinstance(n_video_steps, int) and 1 <= n_video_steps <= c.n_tokens):
            raise ValueError(f"n_video_steps must be an int in [1, {c.n_tokens}] or None, got {n_video_steps=}")
        check_float("temperature", temperature, 0.0, open_low=True)
        if max_batch is not None and not (isinstance(max_batch, int) and max_batch >= 1):
            raise ValueError(f"max_batch must be an int >= 1 or None, got {max_batch=}")
        for name, steps in (("video_head_steps", video_head_steps), ("action_head_steps", action_head_steps)):
            if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 2):
                raise ValueError(f"{name} must be an int >= 2 (DDIM) or None, got {name}={steps!r}")
        if proposer is not None and not callable(getattr(proposer, "sample", None)):
            raise ValueError(f"proposer must have sample(context, n), got {type(proposer).__name__}")
        if objective is not None and not callable(getattr(objective, "cost", None)):
            raise ValueError(f"objective must have cost(rollout), got {type(objective).__name__}")
        self.video_head_steps, self.proposer, self.objective = video_head_steps, proposer, objective
        if pose_head is None:  # a UVA trained with its own pose head (train=uva_pose) brings it
            pose_head = getattr(uva, "pose_head", None)
        if pose_head is not None:
            pc = getattr(pose_head, "config", None)
            grid = c.latent_size // c.patch_size
            if pc is None or (pc.width, pc.n_future, pc.grid) != (c.width, c.n_future, grid):
                have = None if pc is None else (pc.width, pc.n_future, pc.grid)
                raise ValueError(f"pose_head must read this UVA's joint latent (width, n_future, grid) = "
                                 f"{(c.width, c.n_future, grid)}, got {have}")
            pose_head = pose_head.eval()
        self.pose_head = pose_head
        self.uva_weights_sha256: str | None = None  # set by ``load``: the UVA a pose head must have read
        self.action_head_steps = action_head_steps
        self.uva, self.vae = uva.eval(), vae.eval()
        self.normalizer, self.env_id = action_normalizer, env_id
        self.n_video_steps, self.temperature, self.max_batch, self.seed = n_video_steps, temperature, max_batch, seed
        self.n_central: int | None = None  # default_optimizer ranks every proposal (from_pretrained sets 10)
        self.stride, self.n_frames = c.frame_stride, c.n_history
        self.n_history = (c.n_history - 1) * c.frame_stride + 1
        self.horizon = c.horizon
        self.action_low = np.asarray(action_normalizer.low, dtype=np.float64)
        self.action_high = np.asarray(action_normalizer.high, dtype=np.float64)
        self.image_size = vae.config.image_size
        self.reset()

    @classmethod
    def load(cls, uva_checkpoint, vae_checkpoint=None, **kwargs) -> UVAWorldModel:
        """From a UVA checkpoint (directory, or a run's ``ckpt`` directory) and the VAE it was
        trained on (default: the one its metadata names; another VAE is refused)."""
        from uva_plan.checkpoint import MODEL_FILE, CheckpointError, load_model, read_meta, resolve_checkpoint
        from uva_plan.data.latents import vae_identity
        from uva_plan.data.store import MinMaxNormalizer

        uva, meta = load_model(uva_checkpoint, expected_kind="uva")
        trained_on = meta.get("extra", {}).get("vae") or {}
        if vae_checkpoint is None:
            if "path" not in trained_on:
                raise CheckpointError(f"{uva_checkpoint} does not name its VAE; pass vae_checkpoint=")
            vae_checkpoint = trained_on["path"]
        identity = vae_identity(vae_checkpoint)
        # A shipped (exported) VAE also answers to the sha of the checkpoint it was exported from.
        exported_from = read_meta(resolve_checkpoint(vae_checkpoint), verify=False).get("extra", {}).get("exported_from", {})
        accepted = (None, identity["weights_sha256"], exported_from.get("weights_sha256"))
        if trained_on.get("weights_sha256") not in accepted:
            raise CheckpointError(f"{uva_checkpoint} was trained on latents of the VAE with weights sha256 "
                                  f"{trained_on['weights_sha256'][:12]}..., but {vae_checkpoint} has "
                                  f"{identity['weights_sha256'][:12]}...")
        vae, _ = load_model(vae_checkpoint, expected_kind="vae")
        normalizer = MinMaxNormalizer.from_dict(meta["normalizers"]["actions"])
        model = cls(uva, vae, normalizer, env_id=meta.get("env_id"), **kwargs)
        model.uva_weights_sha256 = meta["files"][MODEL_FILE]["sha256"]  # what a pose head must have read
        return model

    @classmethod
    def from_pretrained(cls, env: str, proposer: str = "dpc", objective: str = "state",
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
        from uva_plan import hub
        from uva_plan.checkpoint import load_model
        from uva_plan.objectives import EnvGoalImage, LocatedReward, PoseReward, StateReward

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
        paths = dict(checkpoints or {})
        unknown = set(paths) - set(hub.PARTS)
        if unknown:
            raise ValueError(f"checkpoints keys must be among {hub.PARTS}, got {sorted(unknown)}")
        for part in hub.PARTS:
            paths.setdefault(part, None)
        kwargs = {**PLANNING_SAMPLING, "action_head_steps": 8, **kwargs}
        if paths["uva"] is None:
            model = hub.load_world_model(env, **kwargs)
        else:
            model = cls.load(paths["uva"], hub.pretrained_checkpoint("vae"), **kwargs)
            if model.env_id not in (None, hub.ENVS[env]):
                raise ValueError(f"{paths['uva']} was trained on {model.env_id}, not {hub.ENVS[env]}")
        if proposer == "dpc":
            model.proposer = DPCProposer.from_checkpoint(paths["dpc"] or hub.pretrained_checkpoint(f"{env}/dpc"),
                                                         vae=model.vae, seed=model.seed, n_sample_steps=dpc_steps,
                                                         timestep_spacing=dpc_spacing)
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

    def default_optimizer(self, max_batch: int | None = None):
        """What ``Planner(model)`` searches with when given no optimizer: best of
        ``DEFAULT_N_SAMPLES`` proposals, only the ``n_central`` most typical ranked (None: all)."""
        return BestOfN(n_samples=DEFAULT_N_SAMPLES, n_central=self.n_central, seed=self.seed, max_batch=max_batch)

    def default_objective(self):
        """What ``Planner(model)`` minimises when given no objective (``from_pretrained`` sets it)."""
        if self.objective is None:
            raise ValueError("this UVAWorldModel has no objective: pass objective=... to the Planner, or build "
                             "it with UVAWorldModel.from_pretrained(env, objective='state' | 'goal_image')")
        return self.objective

    def reset(self) -> None:
        """Re-seed the sampling generator (the Planner calls this at each episode start)."""
        self.generator = torch.Generator().manual_seed(self.seed)
        if callable(getattr(self.proposer, "reset", None)):
            self.proposer.reset()

    # -- observations -> context --

    def encode(self, images: np.ndarray) -> Tensor:
        """uint8 frames (B, S, S, 3) at the VAE's size -> scaled latents (B, C, h, w)."""
        images = np.asarray(images)
        S = self.image_size
        if images.ndim != 4 or images.shape[1:] != (S, S, 3) or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (B, {S}, {S}, 3) (make the env with render_size={S}), "
                             f"got {images.dtype} {images.shape}")
        with torch.inference_mode():
            return self.vae.encode(images)

    def context(self, history: Sequence[dict]) -> LatentContext:
        if len(history) != self.n_history:
            raise ValueError(f"history must hold the last {self.n_history} observations (one per control "
                             f"step), got {len(history)}")
        for key in ("image", "agent_pos"):
            if key not in history[-1]:
                raise ValueError(f"observations must hold {key!r}, got keys {sorted(history[-1])}")
        frame_steps = list(range(0, self.n_history, self.stride))  # t - 12, ..., t
        steps = sorted(set(frame_steps) | {self.n_history - 2, self.n_history - 1})
        latents = self.encode(np.stack([history[i]["image"] for i in steps]))
        row = {step: k for k, step in enumerate(steps)}
        agent = np.stack([np.asarray(obs["agent_pos"], dtype=np.float64) for obs in history])
        task = targets = None
        if "task" in history[-1]:  # BlockPush: the named assignment and where the targets are
            task = int(history[-1]["task"])
            targets = np.asarray(history[-1]["state"], dtype=np.float64)[8:12].reshape(2, 2)
        return LatentContext(latents=latents[[row[i] for i in frame_steps]][None],
                             recent_latents=latents[[row[self.n_history - 2], row[self.n_history - 1]]][None],
                             agent_pos_history=agent, agent_pos=agent[-1], task=task, targets=targets)

    # -- the protocols --

    def initial_plan(self, context: LatentContext, horizon: int) -> Tensor:
        """Hold the pusher where it is: (H, A) normalised."""
        here = self.normalizer.normalize(context.agent_pos[None])[0]
        return torch.from_numpy(np.tile(here, (horizon, 1))).float()

    def sample(self, context: LatentContext, n: int) -> Tensor:
        """n chunks (n, H, A): from ``proposer`` when set (e.g. DP-C), else from UVA as a policy
        (one transformer pass, n action-head draws)."""
        if self.proposer is not None:
            return self.proposer.sample(context, n)
        with torch.inference_mode():
            return self.uva.sample_actions({"latents": context.latents}, n, generator=self.generator,
                                           n_steps=self.action_head_steps).clamp(-1, 1)

    def policy(self, context: LatentContext) -> Tensor:
        """One chunk (H, A), normalised; the video head never runs."""
        with torch.inference_mode():
            return self.uva.policy({"latents": context.latents}, generator=self.generator,
                                   n_steps=self.action_head_steps)[0].clamp(-1, 1)

    def rollout(self, context: LatentContext, actions: Tensor, frames: tuple[int, ...] | None = None,
                imagine: str = "video") -> Rollout:
        """Imagined latents (N, n_future, C, h, w) of the future frames each chunk leads to.

        frames: the future frames the caller reads (an objective's ``frames``); the others are
        not finished and come back NaN (``UVA.forward_dynamics``). ``Planner`` passes its
        objective's frames, so a last-frame objective runs the video head on a quarter of the tokens.
        imagine: "video" (latents), "poses" (``extras["poses"]`` (N, n_future, P) env units: the
        ``pose_head`` on UVA's joint latent; no video head runs, ``latents`` is None) or "both".
        """
        if actions.ndim != 3 or actions.shape[1:] != (self.horizon, len(self.action_low)):
            raise ValueError(f"actions must be (N, {self.horizon}, {len(self.action_low)}), got {tuple(actions.shape)}")
        if imagine not in ("video", "poses", "both"):
            raise ValueError(f"imagine must be 'video', 'poses' or 'both', got {imagine!r}")
        if imagine != "video" and self.pose_head is None:
            raise ValueError(f"imagine={imagine!r} needs a pose_head (UVAWorldModel(..., pose_head=...), or "
                             "from_pretrained(env, objective='pose'))")
        n = actions.shape[0]
        size = n if self.max_batch is None else self.max_batch
        out, poses = [], []
        with torch.inference_mode():
            for start in range(0, n, size):
                chunk = actions[start: start + size].float()
                history = context.latents.expand(len(chunk), *context.latents.shape[1:])
                if imagine != "video":
                    poses.append(self.pose_head.predict(self.uva.joint_latent({"latents": history}, chunk)))
                if imagine != "poses":
                    out.append(self.uva.forward_dynamics({"latents": history}, chunk, n_steps=self.n_video_steps,
                                                         generator=self.generator, temperature=self.temperature,
                                                         head_steps=self.video_head_steps, frames=frames))
        extras = {"poses": torch.cat(poses)} if poses else {}
        return Rollout(actions=actions, latents=torch.cat(out) if out else None, context=context, extras=extras)

    def decode(self, latents: Tensor) -> np.ndarray:
        """Latents (..., C, h, w) -> uint8 frames (..., S, S, 3)."""
        lead = latents.shape[:-3]
        with torch.inference_mode():
            frames = self.vae.to_uint8(self.vae.decode(latents.reshape(-1, *latents.shape[-3:])))
        return frames.reshape(*lead, *frames.shape[1:]).numpy()


def load_pose_head(path, model: UVAWorldModel) -> torch.nn.Module:
    """A ``PoseHead`` checkpoint for ``model``: refused when it was trained on another UVA's
    joint latent (its metadata's ``uva.weights_sha256``) or another env."""
    from uva_plan.checkpoint import CheckpointError, load_model

    head, meta = load_model(path, expected_kind="pose_head", expected_env_id=model.env_id)
    read = meta.get("extra", {}).get("uva", {}).get("weights_sha256")
    have = model.uva_weights_sha256
    if read is not None and have is not None and read != have:
        raise CheckpointError(f"the pose head {path} reads the joint latent of the UVA with weights sha256 "
                              f"{read[:12]}..., but this world model's UVA has {have[:12]}...")
    return head.eval()


class StaticWorldModel:
    """The no-dynamics baseline of a world model: every candidate's imagined future frames are
    the context's last real frame, so an objective can only rank what it reads from the actions
    themselves (e.g. ``LocatedReward(pusher="actions")``'s approach term). Everything else
    (context, proposer, objective, decode) is the wrapped ``UVAWorldModel``'s. Comparing a
    planner over it with the same planner over UVA measures what UVA's imagination adds."""

    def __init__(self, model: UVAWorldModel):
        self.model = model

    def __getattr__(self, name):
        return getattr(self.model, name)

    def rollout(self, context: LatentContext, actions: Tensor, frames: tuple[int, ...] | None = None) -> Rollout:
        last = context.latents[:, -1:]
        n_future = self.model.uva.config.n_future
        return Rollout(actions=actions, latents=last.expand(actions.shape[0], n_future, *last.shape[2:]).clone(),
                       context=context)


class UVAPolicy:
    """UVA alone as the controller: each ``plan`` returns the first ``n_action_steps`` of one
    ``policy`` chunk (no candidates, no video). Same interface as ``Planner``."""

    def __init__(self, model: UVAWorldModel, n_action_steps: int = 8):
        if not (isinstance(n_action_steps, int) and 1 <= n_action_steps <= model.horizon):
            raise ValueError(f"n_action_steps must be an int in [1, {model.horizon}], got {n_action_steps=}")
        self.model, self.n_action_steps = model, n_action_steps
        self.reset()

    def reset(self) -> None:
        self.history: list[dict] = []
        self.model.reset()

    def observe(self, obs: dict) -> None:
        if not self.history:  # the first obs stands in for the steps before the episode
            self.history = [obs] * self.model.n_history
        else:
            self.history = self.history[1:] + [obs]

    def plan(self, obs: dict) -> np.ndarray:
        self.observe(obs)
        chunk = self.model.policy(self.model.context(self.history))[: self.n_action_steps]
        return self.model.normalizer.unnormalize(chunk.double().numpy())


class _Proposer:
    """Shared seeding and bounds; subclasses draw (n, H, A) env-unit chunks in ``_draw``."""

    def __init__(self, horizon: int = 16, action_low=(0.0, 0.0), action_high=(WORKSPACE, WORKSPACE),
                 seed: int = 0):
        if not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be an int >= 1, got {horizon=}")
        self.horizon, self.seed = horizon, seed
        self.low = np.asarray(action_low, dtype=np.float64)
        self.high = np.asarray(action_high, dtype=np.float64)
        if self.low.shape != self.high.shape or not (self.low < self.high).all():
            raise ValueError(f"need action_low < action_high, got {action_low=}, {action_high=}")
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def sample(self, context, n: int) -> Tensor:
        """(n, H, A) normalised proposals starting from ``context.agent_pos``."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n=}")
        start = np.asarray(context.agent_pos, dtype=np.float64)
        chunk = np.clip(self._draw(start, n), self.low, self.high)
        return torch.from_numpy(normalize_actions(chunk, self.low, self.high)).float()

    def _draw(self, start: np.ndarray, n: int) -> np.ndarray:
        raise NotImplementedError


class GaussianProposer(_Proposer):
    """Gaussian random walks of the pusher target from its current position (``step_std`` px
    per step): absolute-position actions make independent per-step noise a jitter, a walk a path."""

    def __init__(self, step_std: float = 12.0, **kwargs):
        super().__init__(**kwargs)
        check_float("step_std", step_std, 0.0, open_low=True)
        self.step_std = step_std

    def _draw(self, start: np.ndarray, n: int) -> np.ndarray:
        steps = self.rng.normal(0.0, self.step_std, (n, self.horizon, len(start)))
        return start + np.cumsum(steps, axis=1)


class UniformProposer(_Proposer):
    """Straight moves from the pusher's position to a target drawn uniformly in the workspace,
    at a speed drawn uniformly up to ``max_speed`` px per step, then holding there."""

    def __init__(self, max_speed: float = 25.0, **kwargs):
        super().__init__(**kwargs)
        check_float("max_speed", max_speed, 0.0, open_low=True)
        self.max_speed = max_speed

    def _draw(self, start: np.ndarray, n: int) -> np.ndarray:
        goals = self.rng.uniform(self.low, self.high, (n, len(start)))
        speed = self.rng.uniform(0.2, 1.0, (n, 1)) * self.max_speed
        distance = np.linalg.norm(goals - start, axis=1, keepdims=True)
        t = np.arange(1, self.horizon + 1)[None, :, None]
        fraction = np.minimum(1.0, t * (speed / np.maximum(distance, 1e-9))[:, None])
        return start + fraction * (goals - start)[:, None]


class DPCProposer:
    """DP-C (``uva_plan.models.dpc.DPC``) as a Proposer: n action chunks (n, H, A) in [-1, 1],
    all drawn in one batched DDIM run.

    Context contract (attributes, or keys of a dict), oldest first, the last 2 entries used:
        latents            (1, T >= 2, C, h, w) torch, scaled VAE latents of the last frames;
        recent_latents     (1, 2, C, h, w), optional, preferred over ``latents`` when present
                           (``LatentContext``: its ``latents`` are UVA's strided history);
        agent_pos_history  (T, 2) numpy, the pusher's positions in env units (px);
        state_history      (T, S) numpy physical states: required by a state-mode DP-C;
        frames             (T, S, S, 3) uint8, optional: encoded with ``vae`` when there are
                           no latents.

    The chunks come out normalised with the DP-C's own action normaliser (its training
    store's, as UVA's). Give ``action_low`` / ``action_high`` (the dynamics' bounds, e.g.
    SimulatorDynamics' workspace) to have them renormalised onto that range instead.

    Args:
        dpc: the policy; normalizers: its checkpoint's normalisers ("actions", "agent_pos",
            "state"), ``MinMaxNormalizer`` or their dicts; vae: a ``FrameVAE`` for contexts
            that carry frames; seed: seeds the sampling noise (``reset`` restarts it);
            n_sample_steps: DDIM steps per draw (default the DP-C's config, 10 for the shipped ones);
            timestep_spacing: None ("leading", as trained) or "trailing" (``diff_head.ddim_schedule``).
    """

    def __init__(self, dpc: torch.nn.Module, normalizers: dict, vae: torch.nn.Module | None = None,
                 action_low=None, action_high=None, seed: int = 0, n_sample_steps: int | None = None,
                 timestep_spacing: str | None = None):
        from uva_plan.data.store import MinMaxNormalizer

        self.dpc, self.vae, self.seed = dpc, vae, seed
        self.config = dpc.config
        if n_sample_steps is not None and (isinstance(n_sample_steps, bool) or not isinstance(n_sample_steps, int)
                                           or not 2 <= n_sample_steps <= self.config.n_train_steps):
            raise ValueError(f"n_sample_steps must be None or an int in [2, {self.config.n_train_steps}] "
                             f"(DDIM steps), got {n_sample_steps=}")
        if timestep_spacing not in (None, "leading", "trailing"):
            raise ValueError(f"timestep_spacing must be None, 'leading' or 'trailing', got {timestep_spacing=}")
        self.n_sample_steps, self.timestep_spacing = n_sample_steps, timestep_spacing
        needed = ("actions", "state") if self.config.obs_mode == "state" else ("actions", "agent_pos")
        missing = [k for k in needed if k not in (normalizers or {})]
        if missing:
            raise ValueError(f"normalizers must hold {list(needed)} for a {self.config.obs_mode}-mode DP-C, "
                             f"missing {missing}")
        self.normalizers = {k: v if isinstance(v, MinMaxNormalizer) else MinMaxNormalizer.from_dict(v)
                            for k, v in normalizers.items() if k in needed}
        if (action_low is None) != (action_high is None):
            raise ValueError(f"give both action_low and action_high or neither, got {action_low=}, {action_high=}")
        self.action_bounds = None
        if action_low is not None:
            low, high = np.asarray(action_low, dtype=np.float64), np.asarray(action_high, dtype=np.float64)
            if low.shape != high.shape or not (low < high).all():
                raise ValueError(f"need action_low < action_high, got {action_low=}, {action_high=}")
            self.action_bounds = (low, high)
        self.reset()

    @classmethod
    def from_checkpoint(cls, path, vae: torch.nn.Module | None = None, **kwargs) -> DPCProposer:
        """From a DP-C checkpoint directory (its normalisers come with it)."""
        from uva_plan.checkpoint import load_model

        dpc, meta = load_model(path, expected_kind="dpc")
        return cls(dpc, meta["normalizers"], vae=vae, **kwargs)

    @classmethod
    def from_pretrained(cls, env: str, **kwargs) -> DPCProposer:
        """The shipped DP-C of ``env`` ("pusht" or "blockpush") with the shipped VAE; keyword
        arguments as the constructor (``action_low`` / ``action_high``, ``seed``)."""
        from uva_plan import hub
        from uva_plan.checkpoint import load_model

        if env not in hub.ENVS:
            raise ValueError(f"env must be one of {sorted(hub.ENVS)}, got {env!r}")
        vae, _ = load_model(hub.pretrained_checkpoint("vae"), expected_kind="vae")
        return cls.from_checkpoint(hub.pretrained_checkpoint(f"{env}/dpc"), vae=vae, **kwargs)

    def reset(self) -> None:
        device = next(self.dpc.parameters()).device
        self.generator = torch.Generator(device=device).manual_seed(self.seed)

    def observation(self, context) -> dict[str, Tensor]:
        """The DP-C's observation dict (B = 1) from a context (see the class docstring)."""
        c, device = self.config, next(self.dpc.parameters()).device

        def get(name):
            return context.get(name) if isinstance(context, dict) else getattr(context, name, None)

        def last(name: str, width: int) -> np.ndarray:
            value = get(name)
            if value is None:
                raise ValueError(f"a {c.obs_mode}-mode DP-C needs context.{name} (T >= {c.n_obs_steps}, {width})")
            value = np.asarray(value, dtype=np.float64)
            if value.ndim != 2 or len(value) < c.n_obs_steps or value.shape[1] < width:
                raise ValueError(f"context.{name} must be (T >= {c.n_obs_steps}, {width}), got {value.shape}")
            return value[-c.n_obs_steps:, :width]

        def tensor(x: np.ndarray) -> Tensor:
            return torch.from_numpy(x).float()[None].to(device)

        if c.obs_mode == "state":
            return {"states": tensor(self.normalizers["state"].normalize(last("state_history", c.state_dim)))}
        latents = get("recent_latents") if get("recent_latents") is not None else get("latents")
        if latents is None and get("frames") is not None and self.vae is not None:
            with torch.no_grad():
                latents = self.vae.encode(np.asarray(get("frames"))[-c.n_obs_steps:])[None]
        expected = (c.latent_channels, c.latent_size, c.latent_size)
        if not isinstance(latents, Tensor) or latents.ndim != 5 or latents.shape[0] != 1 \
                or latents.shape[1] < c.n_obs_steps or tuple(latents.shape[2:]) != expected:
            shape = tuple(latents.shape) if isinstance(latents, Tensor) else type(latents).__name__
            raise ValueError(f"context.latents must be a tensor (1, T >= {c.n_obs_steps}, "
                             f"{', '.join(map(str, expected))}) (or give frames and a vae), got {shape}")
        agent_pos = self.normalizers["agent_pos"].normalize(last("agent_pos_history", 2))
        return {"latents": latents[:, -c.n_obs_steps:].float().to(device), "agent_pos": tensor(agent_pos)}

    def sample(self, context, n: int) -> Tensor:
        """(n, H, A) normalised action chunks for one context, starting at the current step.

        DP-C predicts actions t - 1 .. t + H - 2 (its window starts at the older observation,
        as Diffusion Policy's): the action for the past step is dropped and the last one held,
        so every caller (the DP-C policy, the planners) gets actions t .. t + H - 1.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n=}")
        actions = self.dpc.sample(self.observation(context), n, generator=self.generator,
                                  n_steps=self.n_sample_steps, spacing=self.timestep_spacing)[0]
        past = self.config.n_obs_steps - 1
        if past:
            actions = torch.cat([actions[:, past:], actions[:, -1:].expand(-1, past, -1)], dim=1)
        if self.action_bounds is None:
            return actions
        low, high = self.action_bounds
        env_units = self.normalizers["actions"].unnormalize(actions.double().cpu().numpy())
        return torch.from_numpy(normalize_actions(env_units, low, high)).float().clamp(-1, 1).to(actions.device)
