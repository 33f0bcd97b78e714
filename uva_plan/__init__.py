"""uva_plan: model-predictive planning with a learned Unified Video Action model.

    import gymnasium as gym
    from uva_plan import UVA, Planner

    env = gym.make("uva_plan/PushT-v0")
    planner = Planner(UVA.from_pretrained("pusht"))
    obs, _ = env.reset(seed=0)
    action = planner.select_action(obs)  # (2,) pusher target in px; call it every step

``UVA`` is the world model as the planners use it (``uva_plan.dynamics.UVAWorldModel``: the
network, its VAE, a proposer and an objective); the network itself is ``uva_plan.models.UVA``.
"""

from uva_plan import envs  # noqa: F401  (registers the gymnasium environments)

__version__ = "0.1.0"
__all__ = ["UVA", "Planner"]


def __getattr__(name: str):
    # Lazy: importing uva_plan (to register the envs) must not import torch and diffusers.
    if name == "UVA":
        from uva_plan.dynamics.uva import UVAWorldModel

        return UVAWorldModel
    if name == "Planner":
        from planners import Planner

        return Planner
    raise AttributeError(f"module 'uva_plan' has no attribute {name!r}")
