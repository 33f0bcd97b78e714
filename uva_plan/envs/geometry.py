"""Exact planar geometry: rigid transforms and convex-polygon intersection areas (numba).

Push-T's coverage is area(T ∩ goal T) / area(goal T). The T is two convex parts with disjoint
interiors (crossbar and stem), so the intersection of two Ts is the sum of four convex-convex
intersections, each computed exactly (up to float rounding) by Sutherland-Hodgman clipping
and the shoelace formula. No sampling, no rasterisation.
"""

from __future__ import annotations

import numba
import numpy as np

# Push-T's T in body coordinates (Diffusion Policy's ``add_tee`` with scale 30, length 4).
# The body origin is the middle of the crossbar's top edge; counter-clockwise in y-down space
# does not matter for the area formulas below, which take absolute values.
TEE_PARTS = np.array(
    [
        [[-60.0, 30.0], [60.0, 30.0], [60.0, 0.0], [-60.0, 0.0]],  # crossbar
        [[-15.0, 30.0], [-15.0, 120.0], [15.0, 120.0], [15.0, 30.0]],  # stem
    ]
)
TEE_AREA = 120.0 * 30.0 + 30.0 * 90.0  # 6300
TEE_COG = np.array([0.0, 45.0])  # mean of the two parts' centroids (0, 15) and (0, 75)


@numba.njit(cache=True)
def transform_points(points: np.ndarray, x: float, y: float, angle: float) -> np.ndarray:
    """Rotate (..., 2) body-frame points by ``angle`` and translate by (x, y)."""
    c, s = np.cos(angle), np.sin(angle)
    flat = points.reshape(-1, 2)
    out = np.empty_like(flat)
    for i in range(flat.shape[0]):
        out[i, 0] = c * flat[i, 0] - s * flat[i, 1] + x
        out[i, 1] = s * flat[i, 0] + c * flat[i, 1] + y
    return out.reshape(points.shape)


@numba.njit(cache=True)
def signed_area(poly: np.ndarray, n: int) -> float:
    """Shoelace area of the first n vertices of poly (V, 2); the sign gives the orientation."""
    area = 0.0
    for i in range(n):
        j = (i + 1) % n
        area += poly[i, 0] * poly[j, 1] - poly[j, 0] * poly[i, 1]
    return area * 0.5


@numba.njit(cache=True)
def convex_intersection_area(subject: np.ndarray, clip: np.ndarray) -> float:
    """Area of the intersection of two convex polygons (V, 2), any vertex order."""
    max_vertices = subject.shape[0] + clip.shape[0] + 2
    current = np.empty((max_vertices * 2, 2))
    nxt = np.empty((max_vertices * 2, 2))
    n_current = subject.shape[0]
    current[:n_current] = subject
    sign = 1.0 if signed_area(clip, clip.shape[0]) >= 0.0 else -1.0
    n_clip = clip.shape[0]
    for e in range(n_clip):
        ax, ay = clip[e, 0], clip[e, 1]
        bx, by = clip[(e + 1) % n_clip, 0], clip[(e + 1) % n_clip, 1]
        n_next = 0
        for i in range(n_current):
            px, py = current[i, 0], current[i, 1]
            qx, qy = current[(i + 1) % n_current, 0], current[(i + 1) % n_current, 1]
            # Signed distance-like values: >= 0 means on the inner side of edge a->b.
            dp = sign * ((bx - ax) * (py - ay) - (by - ay) * (px - ax))
            dq = sign * ((bx - ax) * (qy - ay) - (by - ay) * (qx - ax))
            if dp >= 0.0:
                nxt[n_next, 0], nxt[n_next, 1] = px, py
                n_next += 1
            if (dp >= 0.0) != (dq >= 0.0):
                t = dp / (dp - dq)
                nxt[n_next, 0] = px + t * (qx - px)
                nxt[n_next, 1] = py + t * (qy - py)
                n_next += 1
        n_current = n_next
        if n_current < 3:
            return 0.0
        current[:n_current] = nxt[:n_current]
    return abs(signed_area(current, n_current))


@numba.njit(cache=True)
def tee_coverage(poses: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """Push-T coverage of the goal T by the block T for (N, 3) poses (x, y, angle) -> (N,).

    Poses are in Diffusion Policy's convention: (x, y) is the body origin (middle of the
    crossbar's top edge) and the angle rotates about it.
    """
    goal_parts = transform_points(TEE_PARTS, goal[0], goal[1], goal[2])
    out = np.empty(poses.shape[0])
    for n in range(poses.shape[0]):
        parts = transform_points(TEE_PARTS, poses[n, 0], poses[n, 1], poses[n, 2])
        area = 0.0
        for i in range(2):
            for j in range(2):
                area += convex_intersection_area(parts[i], goal_parts[j])
        out[n] = area / TEE_AREA
    return out
