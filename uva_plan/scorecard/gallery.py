"""The scorecard's gallery: real future frames above the imagined ones, for a few windows."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from uva_plan.envs.base import WORKSPACE
from uva_plan.io import atomic_write_bytes

LABEL_W, HEADER_H, GAP = 96, 22, 14


def gallery_windows(windows: list[dict], n: int = 8) -> list[int]:
    """Indices of n windows to show, in the selection's order: half moving (the largest
    displacements), then contact windows spread over the selection, static ones first, then any."""
    by_motion = sorted(range(len(windows)), key=lambda i: -windows[i].get("displacement_px", 0.0))
    chosen = [i for i in by_motion if "moving" in windows[i]["tags"]][: n // 2]
    for static in (True, False):
        pool = [i for i in range(len(windows)) if "contact" in windows[i]["tags"] and i not in chosen
                and ("static" in windows[i]["tags"]) == static]
        wanted = n - len(chosen)
        if wanted > 0 and pool:
            chosen += [pool[k] for k in np.linspace(0, len(pool) - 1, min(wanted, len(pool))).round().astype(int)]
    chosen += [i for i in range(len(windows)) if i not in chosen][: n - len(chosen)]
    return sorted(chosen)


def draw_gallery(path: str | Path, now: np.ndarray, real: np.ndarray, imagined: np.ndarray,
                 titles: list[str], marks: np.ndarray | None = None, horizons=(4, 8, 12, 16),
                 scale: int = 3, columns: int = 2) -> None:
    """Write a PNG: per window, the frame at t and the real future frames (top row), the
    imagined future frames below them; each pixel ``scale`` x ``scale``.

    now (W, S, S, 3), real and imagined (W, T, S, S, 3) uint8; titles (W,); marks (W, T, K, 2)
    px: the true positions of the pushed objects, drawn as small crosses on the imagined frames.
    """
    n_windows, n_frames, size = real.shape[0], real.shape[1], real.shape[2]
    if imagined.shape != real.shape or now.shape != (n_windows, size, size, 3) or len(titles) != n_windows:
        raise ValueError(f"need now (W, S, S, 3), real and imagined (W, T, S, S, 3) and W titles, got "
                         f"{now.shape}, {real.shape}, {imagined.shape}, {len(titles)} titles")
    cell = size * scale
    block_w, block_h = LABEL_W + (n_frames + 1) * cell, HEADER_H + 2 * cell + 16
    rows = -(-n_windows // columns)
    canvas = Image.new("RGB", (columns * block_w + (columns - 1) * GAP, rows * (block_h + GAP)), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=14)
    small = ImageFont.load_default(size=12)

    def paste(frame: np.ndarray, x: int, y: int) -> None:
        canvas.paste(Image.fromarray(frame).resize((cell, cell), Image.NEAREST), (x, y))

    for w in range(n_windows):
        x0, y0 = (w % columns) * (block_w + GAP), (w // columns) * (block_h + GAP)
        draw.text((x0 + 4, y0 + 3), titles[w], fill="black", font=font)
        top, bottom = y0 + HEADER_H + 14, y0 + HEADER_H + 14 + cell
        draw.text((x0 + 4, top + cell // 2 - 8), "real", fill="black", font=font)
        draw.text((x0 + 4, bottom + cell // 2 - 8), "imagined", fill="black", font=font)
        draw.text((x0 + LABEL_W + 4, y0 + HEADER_H - 2), "t", fill="black", font=small)
        paste(now[w], x0 + LABEL_W, top)
        for k in range(n_frames):
            x = x0 + LABEL_W + (k + 1) * cell
            draw.text((x + 4, y0 + HEADER_H - 2), f"t+{horizons[k]}", fill="black", font=small)
            paste(real[w, k], x, top)
            paste(imagined[w, k], x, bottom)
            if marks is not None:
                for px, py in marks[w, k] * cell / WORKSPACE:
                    cx, cy = x + px, bottom + py
                    draw.line([(cx - 6, cy), (cx + 6, cy)], fill="black", width=2)
                    draw.line([(cx, cy - 6), (cx, cy + 6)], fill="black", width=2)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
