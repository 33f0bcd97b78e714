"""A literal pymunk-7 transcription of Diffusion Policy's Push-T physics, used only as the
reference that our environment must replay: persistent space (contact caches kept across
control steps), T body with its origin at the crossbar's top edge and CoG (0, 45), Vec2d
controller arithmetic. Trajectories recorded here stand in for data recorded in the original.
"""

import numpy as np
import pymunk
from pymunk.vec2d import Vec2d


class DPPushTReference:
    def __init__(self):
        self.space = pymunk.Space()
        self.space.gravity = 0, 0
        self.space.damping = 0
        walls = [pymunk.Segment(self.space.static_body, a, b, 2) for a, b in
                 [((5, 506), (5, 5)), ((5, 5), (506, 5)), ((506, 5), (506, 506)), ((5, 506), (506, 506))]]
        self.space.add(*walls)
        self.agent = pymunk.Body(body_type=pymunk.Body.KINEMATIC)
        self.agent.position = (256, 400)
        self.space.add(self.agent, pymunk.Circle(self.agent, 15))
        v1 = [(-60, 30), (60, 30), (60, 0), (-60, 0)]
        v2 = [(-15, 30), (-15, 120), (15, 120), (15, 30)]
        inertia = pymunk.moment_for_poly(1, vertices=v1) * 2
        self.block = pymunk.Body(1, inertia)
        s1, s2 = pymunk.Poly(self.block, v1), pymunk.Poly(self.block, v2)
        self.block.center_of_gravity = (s1.center_of_gravity + s2.center_of_gravity) / 2
        self.block.position = (256, 300)
        self.space.add(self.block, s1, s2)

    def set_state(self, state):
        state = list(map(float, state))
        self.agent.position = state[:2]
        self.block.angle = state[4]
        self.block.position = state[2:4]
        self.space.step(0.01)

    def step(self, action):
        for _ in range(10):
            acc = 100 * (Vec2d(*action) - self.agent.position) + 20 * (Vec2d(0, 0) - self.agent.velocity)
            self.agent.velocity += acc * 0.01
            self.space.step(0.01)

    def obs(self):
        return np.array(tuple(self.agent.position) + tuple(self.block.position)
                        + (self.block.angle % (2 * np.pi),))


def pushing_actions(reference, n_steps, rng):
    """Contact-rich actions that keep the block away from the walls: pick a random goal
    point in the middle of the workspace, go behind the block, push through its centre
    towards the goal for a while, repeat."""
    actions, goal, pushing = [], rng.uniform(200, 312, 2), 0
    for _ in range(n_steps):
        cog = np.array(reference.block.local_to_world((0, 45)))
        agent = np.array(reference.agent.position)
        d = (goal - cog) / (np.linalg.norm(goal - cog) + 1e-9)
        if pushing > 0:
            target, pushing = agent + 15 * d, pushing - 1
        else:
            target = cog - 90 * d
            if np.linalg.norm(agent - target) < 15:
                pushing, goal = 12, rng.uniform(200, 312, 2)
        action = np.clip(target + rng.normal(0, 3, 2), 20, 492)
        actions.append(action)
        reference.step(action)
    return np.array(actions)
