"""The no-dynamics baseline of a world model."""

from __future__ import annotations

from torch import Tensor

from planners.protocols import Rollout, RolloutRequest
from uva_plan.dynamics.uva import LatentContext, UVAWorldModel, as_request


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

    def rollout(self, context: LatentContext, actions: Tensor, request: RolloutRequest | None = None, *,
                frames: tuple[int, ...] | None = None, imagine: str | None = None) -> Rollout:
        """Every future frame is the last real one; a ``request``'s frames are all there."""
        request = as_request(request, frames, imagine)
        if request.imagine != "video":
            raise ValueError(f"StaticWorldModel repeats the last real frame: it cannot imagine {request.imagine!r} "
                             "(the objective's RolloutRequest)")
        last = context.latents[:, -1:]
        n_future = self.model.uva.config.n_future
        return Rollout(actions=actions, latents=last.expand(actions.shape[0], n_future, *last.shape[2:]).clone(),
                       context=context)
