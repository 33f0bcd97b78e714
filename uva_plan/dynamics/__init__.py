"""Dynamics models behind the planners' protocol: the simulator, UVA and a no-dynamics baseline."""

from uva_plan.dynamics.simulator import PrivilegedState, SimContext, SimulatorDynamics
from uva_plan.dynamics.static import StaticWorldModel
from uva_plan.dynamics.uva import LatentContext, UVAWorldModel, load_pose_head

__all__ = [
    "LatentContext",
    "PrivilegedState",
    "SimContext",
    "SimulatorDynamics",
    "StaticWorldModel",
    "UVAWorldModel",
    "load_pose_head",
]
