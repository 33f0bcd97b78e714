"""UVA behind the planners' protocols: a Dynamics (imagined futures), a Proposer (UVA as a
policy), and the pose head that reads object poses off UVA's joint latent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from planners.best_of_n import BestOfN
from planners.checks import check_float, check_int
from planners.protocols import Rollout, RolloutRequest

# ``Planner(model)`` with no optimizer ranks this many proposals (of them, only the n_central most
# typical when ``n_central`` is set: ``uva_plan.pretrained.DEFAULT_N_CENTRAL``).
DEFAULT_N_SAMPLES = 100


def as_request(request: RolloutRequest | None, frames: tuple[int, ...] | None = None,
               imagine: str | None = None) -> RolloutRequest:
    """``request``, or one made from the ``frames=`` / ``imagine=`` shorthand (not both)."""
    if request is None:
        return RolloutRequest(frames=frames, imagine="video" if imagine is None else imagine)
    if not isinstance(request, RolloutRequest):
        raise ValueError(f"request must be a RolloutRequest or None, got {request!r}")
    if frames is not None or imagine is not None:
        raise ValueError(f"give request= or the frames= / imagine= shorthand, not both, got {request=}, "
                         f"{frames=}, {imagine=}")
    return request


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
    # Push-T with a random goal (PushTRandomGoal): the episode's goal pose (x, y, angle) from the
    # observation ("goal_pose"), which the objectives read; None: the env's fixed goal.
    goal_pose: np.ndarray | None = None

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
        check_int("seed", seed, 0)
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
    def from_pretrained(cls, env: str, **kwargs) -> UVAWorldModel:
        """The shipped UVA of ``env`` ("pusht" or "blockpush") with its VAE, proposer and objective,
        ready to plan with: ``uva_plan.pretrained.pretrained_world_model`` (every argument is there)."""
        from uva_plan.pretrained import pretrained_world_model

        return pretrained_world_model(env, **kwargs)

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
        # BlockPush observations name the task; Push-T's do not: an observation of the other env
        # would otherwise be imagined and scored as if it were this one's.
        if self.env_id is not None and ("BlockPush" in self.env_id) != ("task" in history[-1]):
            raise ValueError(f"this UVA plans for {self.env_id}, but the observation (keys "
                             f"{sorted(history[-1])}) is not one of its observations")
        frame_steps = list(range(0, self.n_history, self.stride))  # t - 12, ..., t
        steps = sorted(set(frame_steps) | {self.n_history - 2, self.n_history - 1})
        latents = self.encode(np.stack([history[i]["image"] for i in steps]))
        row = {step: k for k, step in enumerate(steps)}
        agent = np.stack([np.asarray(obs["agent_pos"], dtype=np.float64) for obs in history])
        task = targets = None
        if "task" in history[-1]:  # BlockPush: the named assignment and where the targets are
            task = int(history[-1]["task"])
            targets = np.asarray(history[-1]["state"], dtype=np.float64)[8:12].reshape(2, 2)
        goal_pose = None
        if "goal_pose" in history[-1]:
            goal_pose = np.asarray(history[-1]["goal_pose"], dtype=np.float64)
            if goal_pose.shape != (3,) or not np.isfinite(goal_pose).all():
                raise ValueError(f"obs['goal_pose'] must be a finite (x, y, angle), got {history[-1]['goal_pose']!r}")
        return LatentContext(latents=latents[[row[i] for i in frame_steps]][None],
                             recent_latents=latents[[row[self.n_history - 2], row[self.n_history - 1]]][None],
                             agent_pos_history=agent, agent_pos=agent[-1], task=task, targets=targets,
                             goal_pose=goal_pose)

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

    def rollout(self, context: LatentContext, actions: Tensor, request: RolloutRequest | None = None, *,
                frames: tuple[int, ...] | None = None, imagine: str | None = None) -> Rollout:
        """Imagined latents (N, n_future, C, h, w) of the future frames each chunk leads to.

        request: what the caller reads (``Planner`` passes its objective's ``request``);
        ``frames=`` / ``imagine=`` are shorthand for ``request=RolloutRequest(frames=..., imagine=...)``.
        Its frames: the future frames read; the others are not finished and come back NaN
        (``UVA.forward_dynamics``), so a last-frame objective runs the video head on a quarter of
        the tokens. Its imagine: "video" (latents), "poses" (``extras["poses"]`` (N, n_future, P)
        env units: the ``pose_head`` on UVA's joint latent; no video head runs, ``latents`` is
        None) or "both".
        """
        if actions.ndim != 3 or actions.shape[1:] != (self.horizon, len(self.action_low)):
            raise ValueError(f"actions must be (N, {self.horizon}, {len(self.action_low)}), got {tuple(actions.shape)}")
        request = as_request(request, frames, imagine)
        frames, imagine = request.frames, request.imagine
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
