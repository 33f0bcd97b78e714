"""Numba rasteriser for the 2-D scenes of both environments.

A scene is a stack of filled polygons followed by filled discs, painted in order onto a flat
background. Every shape is anti-aliased by supersampling: each pixel tests ``ss x ss``
sub-pixel points and blends the shape's colour by the covered fraction. No window system
is involved, so frames can be rendered from stored states at any resolution, in batches.

Shapes, for a batch of B scenes (world coordinates, y down, origin top-left):
    polygons  (B, P, V, 2)  vertices; polygon p uses its first ``n_vertices[p]`` rows
    discs     (B, D, 3)     centre x, centre y, radius
Colours are (P, 3) and (D, 3) RGB in [0, 255]; frames come back as uint8 (B, H, W, 3).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _inside_polygon(x: float, y: float, verts: np.ndarray, n_vertices: int) -> bool:
    # Even-odd crossing rule: works for any simple polygon, convex or not.
    inside = False
    j = n_vertices - 1
    for i in range(n_vertices):
        xi, yi = verts[i, 0], verts[i, 1]
        xj, yj = verts[j, 0], verts[j, 1]
        if (yi > y) != (yj > y):
            x_cross = xi + (y - yi) * (xj - xi) / (yj - yi)
            if x < x_cross:
                inside = not inside
        j = i
    return inside


@numba.njit(cache=True)
def _blend(image, row, col, color, alpha):
    for c in range(3):
        image[row, col, c] = image[row, col, c] * (1.0 - alpha) + color[c] * alpha


@numba.njit(cache=True)
def _paint_polygon(image, verts, n_vertices, color, sx, sy, ss):
    height, width = image.shape[0], image.shape[1]
    # Pixel-space bounding box, clipped to the image.
    x_min, x_max = verts[0, 0] * sx, verts[0, 0] * sx
    y_min, y_max = verts[0, 1] * sy, verts[0, 1] * sy
    px = np.empty((n_vertices, 2))
    for i in range(n_vertices):
        px[i, 0] = verts[i, 0] * sx
        px[i, 1] = verts[i, 1] * sy
        x_min, x_max = min(x_min, px[i, 0]), max(x_max, px[i, 0])
        y_min, y_max = min(y_min, px[i, 1]), max(y_max, px[i, 1])
    c0, c1 = max(int(np.floor(x_min)), 0), min(int(np.ceil(x_max)), width)
    r0, r1 = max(int(np.floor(y_min)), 0), min(int(np.ceil(y_max)), height)
    inv = 1.0 / (ss * ss)
    for row in range(r0, r1):
        for col in range(c0, c1):
            hits = 0
            for a in range(ss):
                y = row + (a + 0.5) / ss
                for b in range(ss):
                    if _inside_polygon(col + (b + 0.5) / ss, y, px, n_vertices):
                        hits += 1
            if hits > 0:
                _blend(image, row, col, color, hits * inv)


@numba.njit(cache=True)
def _paint_disc(image, cx, cy, radius, color, sx, sy, ss):
    height, width = image.shape[0], image.shape[1]
    cx, cy, rx, ry = cx * sx, cy * sy, radius * sx, radius * sy
    c0, c1 = max(int(np.floor(cx - rx)), 0), min(int(np.ceil(cx + rx)), width)
    r0, r1 = max(int(np.floor(cy - ry)), 0), min(int(np.ceil(cy + ry)), height)
    inv = 1.0 / (ss * ss)
    for row in range(r0, r1):
        for col in range(c0, c1):
            hits = 0
            for a in range(ss):
                dy = (row + (a + 0.5) / ss - cy) / ry
                for b in range(ss):
                    dx = (col + (b + 0.5) / ss - cx) / rx
                    if dx * dx + dy * dy <= 1.0:
                        hits += 1
            if hits > 0:
                _blend(image, row, col, color, hits * inv)


@numba.njit(cache=True)
def _render_batch(polygons, n_vertices, poly_colors, discs, disc_colors, background,
                  height, width, world_w, world_h, ss):
    n_scenes = polygons.shape[0]
    sx, sy = width / world_w, height / world_h
    out = np.empty((n_scenes, height, width, 3), dtype=np.uint8)
    image = np.empty((height, width, 3), dtype=np.float32)
    for s in range(n_scenes):
        for row in range(height):
            for col in range(width):
                for c in range(3):
                    image[row, col, c] = background[c]
        for p in range(polygons.shape[1]):
            _paint_polygon(image, polygons[s, p], n_vertices[p], poly_colors[p], sx, sy, ss)
        for d in range(discs.shape[1]):
            _paint_disc(image, discs[s, d, 0], discs[s, d, 1], discs[s, d, 2], disc_colors[d],
                        sx, sy, ss)
        for row in range(height):
            for col in range(width):
                for c in range(3):
                    out[s, row, col, c] = np.uint8(min(max(image[row, col, c] + 0.5, 0.0), 255.0))
    return out


def render_scenes(
    polygons: np.ndarray,
    n_vertices: np.ndarray,
    poly_colors: np.ndarray,
    discs: np.ndarray,
    disc_colors: np.ndarray,
    *,
    height: int,
    width: int,
    world_size: tuple[float, float] = (512.0, 512.0),
    background: tuple[int, int, int] = (255, 255, 255),
    supersample: int = 4,
) -> np.ndarray:
    """Rasterise a batch of scenes to uint8 (B, H, W, 3). See the module docstring for shapes."""
    polygons = np.ascontiguousarray(polygons, dtype=np.float64)
    discs = np.ascontiguousarray(discs, dtype=np.float64)
    if polygons.ndim != 4 or polygons.shape[-1] != 2:
        raise ValueError(f"polygons must be (B, P, V, 2), got shape {polygons.shape}")
    if discs.ndim != 3 or discs.shape[-1] != 3 or discs.shape[0] != polygons.shape[0]:
        raise ValueError(f"discs must be (B={polygons.shape[0]}, D, 3), got shape {discs.shape}")
    n_vertices = np.ascontiguousarray(n_vertices, dtype=np.int64)
    if n_vertices.shape != (polygons.shape[1],) or (n_vertices > polygons.shape[2]).any() \
            or (n_vertices < 3).any():
        raise ValueError(f"n_vertices must be ({polygons.shape[1]},) with values in "
                         f"[3, {polygons.shape[2]}], got {n_vertices}")
    poly_colors = np.ascontiguousarray(poly_colors, dtype=np.float32).reshape(-1, 3)
    disc_colors = np.ascontiguousarray(disc_colors, dtype=np.float32).reshape(-1, 3)
    if len(poly_colors) != polygons.shape[1] or len(disc_colors) != discs.shape[1]:
        raise ValueError(f"need one colour per shape: {len(poly_colors)} colours for "
                         f"{polygons.shape[1]} polygons, {len(disc_colors)} for {discs.shape[1]} discs")
    if not (isinstance(height, (int, np.integer)) and isinstance(width, (int, np.integer))
            and height >= 1 and width >= 1):
        raise ValueError(f"height and width must be positive ints, got {height=}, {width=}")
    if not (isinstance(supersample, (int, np.integer)) and supersample >= 1):
        raise ValueError(f"supersample must be an int >= 1, got {supersample=}")
    if not (np.isfinite(polygons).all() and np.isfinite(discs).all()):
        raise ValueError("shape coordinates must be finite (got NaN or inf)")
    return _render_batch(polygons, n_vertices, poly_colors, discs, disc_colors,
                         np.asarray(background, dtype=np.float32), int(height), int(width),
                         float(world_size[0]), float(world_size[1]), int(supersample))
