"""Planar pushing environments (Push-T, BlockPush), registered with gymnasium on import."""

import gymnasium as gym

from uva_plan.envs.blockpush import BlockPushEnv, BlockPushOracle
from uva_plan.envs.pusht import PushTEnv

__all__ = ["BlockPushEnv", "BlockPushOracle", "PushTEnv"]


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
