"""Locate the objects of a scene in RGB frames by their colours: the renderer's palette, no learning.

A state head trained on real latents reads a blurred imagined frame out of its training
distribution and answers with a pose near its training mean (the README's ranking table: the
argmin then picks what UVA imagines worst). Colour needs no training and degrades gracefully:
every pixel is split among the palette's colours (its pure colours and their pairwise blends,
nearest entry, ``memberships``), an object's position is the centroid of its share, and its *mass*
(the summed share, in pixels) says how much of it the frame still shows. A smeared object keeps
its centroid; a vanished one has no mass, which the caller can treat as "unknown" instead of
"solved".

The Push-T block's angle comes from its moments: the T's area has a clear major axis (second
moments about the CoG 7.8e6 against 4.5e6 px^4 in the body frame), which is the stem's, and the third moment
along that axis is positive towards the stem's end, which fixes the sign. The state's block
position is the centre of gravity of ``TEE_COG`` (0, 45), not the area centroid (0, 40.7):
the located centroid is moved along the stem axis by the difference.

    locator = ColourLocator("uva_plan/BlockPush-v0")
    located = locator.locate(frames)      # uint8 (B, S, S, 3)
    located["block0"].position            # (B, 2) px, y down; NaN where under min_visible of it shows
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from uva_plan.envs import blockpush as bp
from uva_plan.envs import env_name, pusht
from uva_plan.envs.base import WORKSPACE
from uva_plan.envs.geometry import TEE_COG, TEE_PARTS

# The renderer's colours (envs/*.py `_scene`): the objects to locate and everything else a pixel
# can be. Order matters only for the returned dict.
PALETTES = {
    "pusht": {"background": (255, 255, 255), "goal": pusht.GOAL_COLOR, "tee": pusht.TEE_COLOR,
              "agent": pusht.AGENT_COLOR},
    "blockpush": {"background": bp.BACKGROUND, "target0": bp.TARGET_COLORS[0], "target1": bp.TARGET_COLORS[1],
                  "agent": bp.AGENT_COLOR, "block0": bp.BLOCK_COLORS[0], "block1": bp.BLOCK_COLORS[1]},
}
MIX_LEVELS = (0.25, 0.5, 0.75)  # the blends of two colours the palette holds (anti-aliased edges)
OBJECTS = {"pusht": ("agent", "tee"), "blockpush": ("agent", "block0", "block1")}


def _tee_area_centroid() -> np.ndarray:
    areas, centroids = [], []
    for part in TEE_PARTS:  # axis-aligned rectangles in the body frame
        low, high = part.min(axis=0), part.max(axis=0)
        areas.append(np.prod(high - low))
        centroids.append((low + high) / 2)
    areas = np.asarray(areas)
    return (areas[:, None] * np.asarray(centroids)).sum(axis=0) / areas.sum()


TEE_AREA = float(sum(np.prod(p.max(axis=0) - p.min(axis=0)) for p in TEE_PARTS))  # 6300 px^2
TEE_CENTROID_TO_COG = float(TEE_COG[1] - _tee_area_centroid()[1])  # +4.29 px along the stem
# World areas (px^2) of each object, for the expected mass at a frame size.
AREAS = {"pusht": {"agent": math.pi * pusht.PushTEnv.agent_radius ** 2, "tee": TEE_AREA},
         "blockpush": {"agent": math.pi * bp.BlockPushEnv.agent_radius ** 2,
                       "block0": bp.BLOCK_SIZE ** 2, "block1": bp.BLOCK_SIZE ** 2}}


# How far (px) an object's pixels reach from its centroid: circumradius plus a 2-pixel margin at
# 64 x 64 (16 px). The T's farthest point is 81 px from its area centroid (93: a 1.5-pixel margin);
# a block's corner 23 px.
REACH = {"pusht": {"agent": pusht.PushTEnv.agent_radius + 16.0, "tee": 93.0},
         "blockpush": {"agent": bp.BlockPushEnv.agent_radius + 16.0, "block0": 39.0, "block1": 39.0}}


@dataclass
class Located:
    """One object in a batch of frames: ``position`` (B, 2) px (NaN where not found), ``mass``
    (B,) in pixels of the frame, ``expected_mass`` the mass of the whole object at this frame
    size, and ``angle`` (B,) rad for the Push-T block (else None)."""

    position: np.ndarray
    mass: np.ndarray
    expected_mass: float
    angle: np.ndarray | None = None

    @property
    def visible(self) -> np.ndarray:
        """(B,) fraction of the object the frame shows (mass over the whole object's)."""
        return self.mass / self.expected_mass


class ColourLocator:
    """Object positions (and the T's angle) from RGB frames of one env, by palette colour.

    Args:
        env_id: the env whose renderer made the frames (its palette and object sizes).
        min_visible: an object showing less than this fraction of its area is not found (NaN).
    """

    def __init__(self, env_id: str, min_visible: float = 0.25):
        self.env = env_name(env_id)
        if not (isinstance(min_visible, (int, float)) and 0 <= min_visible < 1):
            raise ValueError(f"min_visible must be a number in [0, 1), got {min_visible=!r}")
        self.min_visible = float(min_visible)
        self.names = list(PALETTES[self.env])
        self.colours = torch.tensor([PALETTES[self.env][k] for k in self.names], dtype=torch.float32)
        k = len(self.names)
        entries, shares = list(self.colours), list(torch.eye(k))
        for i in range(k):
            for j in range(i + 1, k):
                for level in MIX_LEVELS:
                    entries.append(level * self.colours[i] + (1 - level) * self.colours[j])
                    shares.append(level * torch.eye(k)[i] + (1 - level) * torch.eye(k)[j])
        self.entries, self.entry_shares = torch.stack(entries), torch.stack(shares)  # (E, 3), (E, K)

    def memberships(self, frames) -> torch.Tensor:
        """uint8 or float (B, S, S, 3) RGB in [0, 255] -> (B, K, S, S) shares of the K palette
        colours (summing to 1 per pixel), in ``self.names`` order.

        The renderer's anti-aliased edges blend two colours, so besides the K pure colours the
        palette holds each pair's blends at ``MIX_LEVELS``, each owning its shares of the two
        (a 1:3 blend of red and grey is a quarter red). A pixel takes the shares of its nearest
        palette entry (RGB distance). With
        pure colours only, the blue-on-white rim of Push-T's pusher would count as grey, the T's
        colour, far from the T, which ruins its moments. Blends are kept to a few discrete
        levels: a continuous mix of any two colours explains too many pure pixels as blends.
        """
        x = torch.as_tensor(np.asarray(frames)).float()
        if x.ndim != 4 or x.shape[-1] != 3 or x.shape[1] != x.shape[2]:
            raise ValueError(f"frames must be RGB (B, S, S, 3), got shape {tuple(x.shape)}")
        flat = x.reshape(-1, 3)  # (B S S, 3): pixels as rows, one matmul against the entries
        # Nearest entry; |pixel|^2 is the same for every entry, so it drops out of the argmin.
        nearest = (self.entries.square().sum(1)[None] - 2 * flat @ self.entries.T).argmin(dim=1)
        shares = self.entry_shares[nearest]  # (B S S, K)
        return shares.reshape(*x.shape[:3], -1).permute(0, 3, 1, 2)

    def locate(self, frames) -> dict[str, Located]:
        """Each object of the env (``OBJECTS``) in every frame.

        Only pixels within the object's reach (``REACH``: its circumradius plus a margin) of
        a seed count, so stray pixels of its colour elsewhere (a blend on another object's
        rim, a blot in a blurred frame) do not pull the centroid: the seed is the peak of the
        share map averaged over the object's size, then the window is re-centred once on the
        centroid it gives.
        """
        shares = self.memberships(frames).double()
        size = shares.shape[-1]
        scale = WORKSPACE / size
        centres = (torch.arange(size, dtype=torch.float64) + 0.5) * scale  # pixel centres, px
        out = {}
        for name in OBJECTS[self.env]:
            m = shares[:, self.names.index(name)]  # (B, S, S): rows are y, columns x
            reach = REACH[self.env][name]
            kernel = max(1, int(round(reach / scale)) | 1)  # odd, about the object's radius in pixels
            pooled = torch.nn.functional.avg_pool2d(m[:, None], kernel, stride=1, padding=kernel // 2,
                                                    count_include_pad=True)[:, 0]
            peak = pooled.flatten(1).argmax(dim=1)
            centre = torch.stack([centres[peak % size], centres[peak // size]], dim=1)  # (B, 2) x, y
            for _ in range(2):
                dx = centres[None, None, :] - centre[:, 0, None, None]  # (B, 1, S)
                dy = centres[None, :, None] - centre[:, 1, None, None]  # (B, S, 1)
                window = m * ((dx ** 2 + dy ** 2) <= reach ** 2)
                mass = window.sum(dim=(1, 2))
                safe = mass.clamp_min(1e-9)
                centre = torch.stack([(window.sum(dim=1) * centres).sum(dim=1) / safe,
                                      (window.sum(dim=2) * centres).sum(dim=1) / safe], dim=1)
            expected = AREAS[self.env][name] / scale ** 2
            found = (mass / expected >= self.min_visible).numpy()
            position = centre.numpy().copy()
            angle = None
            if name == "tee":
                angle, position = self._tee_pose(window, position, centres)
            position[~found] = np.nan
            if angle is not None:
                angle[~found] = np.nan
            out[name] = Located(position=position, mass=mass.numpy(), expected_mass=expected, angle=angle)
        return out

    @staticmethod
    def _tee_pose(m: torch.Tensor, centroid: np.ndarray, centres: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The T's angle (B,) and centre of gravity (B, 2) from its membership map."""
        c = torch.from_numpy(centroid)
        dx = centres[None, None, :] - c[:, 0, None, None]  # (B, 1, S)
        dy = centres[None, :, None] - c[:, 1, None, None]  # (B, S, 1)
        mu20, mu02, mu11 = (m * dx ** 2).sum((1, 2)), (m * dy ** 2).sum((1, 2)), (m * dx * dy).sum((1, 2))
        phi = 0.5 * torch.atan2(2 * mu11, mu20 - mu02)  # the major axis: the stem's
        u = dx * torch.cos(phi)[:, None, None] + dy * torch.sin(phi)[:, None, None]
        sign = torch.where((m * u ** 3).sum((1, 2)) >= 0, 1.0, -1.0).double()
        direction = torch.stack([torch.cos(phi), torch.sin(phi)], dim=1) * sign[:, None]  # towards the stem's end
        # The body's +y axis is (-sin a, cos a) in the world (y down).
        angle = torch.atan2(-direction[:, 0], direction[:, 1]) % (2 * math.pi)
        cog = c + TEE_CENTROID_TO_COG * direction
        return angle.numpy(), cog.numpy()
