"""Planar pushing environments (Push-T, BlockPush), registered with gymnasium on import.

Each env's module (``pusht``, ``blockpush``) also holds its task: named views of physical
states and the costs the objectives apply. ``env_module(env_id)`` finds it.
"""

from types import ModuleType

import gymnasium as gym

from uva_plan.envs import blockpush, pusht
from uva_plan.envs.blockpush import BlockPushEnv
from uva_plan.envs.blockpush_expert import BlockPushOracle
from uva_plan.envs.pusht import PushTEnv

__all__ = ["BlockPushEnv", "BlockPushOracle", "PushTEnv", "env_module", "env_name"]

ENV_MODULES = {"pusht": pusht, "blockpush": blockpush}


def env_name(env_id: str) -> str:
    """"pusht" or "blockpush" for a registered env id (e.g. uva_plan/PushTRandomGoal-v0) or a name."""
    name = str(env_id).split("/")[-1].lower()
    for env in ENV_MODULES:
        if name.startswith(env):
            return env
    raise ValueError(f"no task for {env_id=}; expected a Push-T or BlockPush env id (e.g. uva_plan/PushT-v0)")


def env_module(env_id: str) -> ModuleType:
    """The module with the task of ``env_id``'s env: ``pusht`` or ``blockpush``."""
    return ENV_MODULES[env_name(env_id)]


def _register() -> None:
    specs = [
        ("uva_plan/PushT-v0", "uva_plan.envs.pusht:PushTEnv", 300, {}),
        ("uva_plan/PushTRandomGoal-v0", "uva_plan.envs.pusht:PushTEnv", 300, {"random_goal": True}),
        ("uva_plan/BlockPush-v0", "uva_plan.envs.blockpush:BlockPushEnv", 350, {}),
    ]
    for env_id, entry_point, steps, kwargs in specs:
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry_point, max_episode_steps=steps, kwargs=kwargs)


_register()
