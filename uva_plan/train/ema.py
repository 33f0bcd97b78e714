"""The averaged copy of a model that validates and ships, averaged by diffusers' ``EMAModel``."""

from __future__ import annotations

import copy

import torch
from torch import nn

from uva_plan.checkpoint import CheckpointError


class EMA:
    """Exponential moving average of a model's weights; ``model`` (a frozen copy) holds it.

    diffusers' ``EMAModel`` averages the parameters: at its m-th update the decay is
    min(decay, m / (9 + m)) for m >= 2 and 0 at m = 1 (the first update copies the weights).
    Buffers (e.g. norm statistics) are copied, not averaged."""

    def __init__(self, model: nn.Module, decay: float):
        from diffusers.training_utils import EMAModel  # diffusers is imported only by runs that use it

        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.average = EMAModel(model.parameters(), decay=decay)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.average.step(model.parameters())
        self.average.copy_to(self.model.parameters())
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)

    def state_dict(self) -> dict:
        """``EMAModel``'s counters and settings; the averaged weights are ``model``'s (a
        checkpoint's model.safetensors), so they are left out here."""
        return {k: v for k, v in self.average.state_dict().items() if k != "shadow_params"}

    def load(self, weights: dict[str, torch.Tensor], state: dict) -> None:
        """Restore the averaged weights (``model``'s state dict) and the counters of ``state_dict``.

        The counter format {"decay", "n_updates"} is read too: its decay at update n was
        min(decay, (1 + n) / (10 + n)), so it continues as ``EMAModel`` step n + 1, whose next
        update has the decay its next update would have had."""
        if "n_updates" in state and "optimization_step" not in state:
            state = {"decay": state["decay"], "optimization_step": int(state["n_updates"]) + 1}
        if "optimization_step" not in state or "decay" not in state:
            raise CheckpointError(f"the checkpoint's EMA state {sorted(state)} is neither diffusers' EMAModel "
                                  "counters (decay, optimization_step, ...) nor {decay, n_updates}")
        self.model.load_state_dict(weights)
        self.average.load_state_dict(state)
        self.average.shadow_params = [p.detach().clone() for p in self.model.parameters()]
