"""Object errors of frames against true states, and their aggregation into scorecard rows.

The colour locator (``uva_plan.locate``) reads each object from a frame; the truth is the
physical state the frame shows. An object the locator does not find (under a quarter of it
visible) has a NaN error: it counts against the found rate and is left out of the error
quantiles, so a row needs both numbers to be read.
"""

from __future__ import annotations

import math

import numpy as np

from uva_plan.locate import ColourLocator

# Each located object's true position in a physical state, and the state entry of its angle.
TRUTH = {"pusht": {"agent": slice(0, 2), "tee": slice(4, 6)},
         "blockpush": {"agent": slice(0, 2), "block0": slice(4, 6), "block1": slice(10, 12)}}
TEE_ANGLE = 6
OBJECT_LABELS = {"agent": "pusher", "tee": "T", "block0": "block 0", "block1": "block 1"}


def angle_difference_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| wrapped to [0, 180] degrees, for angles in radians."""
    return np.degrees(np.abs((np.asarray(a) - np.asarray(b) + math.pi) % (2 * math.pi) - math.pi))


def object_errors(located: dict, states: np.ndarray, env: str) -> dict[str, np.ndarray]:
    """Per object, (N,) px between located and true positions (NaN: not found); the T's angle
    error in degrees as ``tee_angle``. ``located``: ``ColourLocator.locate`` of N frames;
    ``states`` (N, >= P) the physical states they show."""
    states = np.atleast_2d(np.asarray(states, dtype=np.float64))
    out = {}
    for name, where in TRUTH[env].items():
        if located[name].position.shape != (len(states), 2):
            raise ValueError(f"located {name} has {located[name].position.shape[0]} frames, states {len(states)}")
        out[name] = np.linalg.norm(located[name].position - states[:, where], axis=1)
        if located[name].angle is not None:
            out[f"{name}_angle"] = angle_difference_deg(located[name].angle, states[:, TEE_ANGLE])
    return out


def frame_errors(locator: ColourLocator, frames: np.ndarray, states: np.ndarray, env: str) -> dict[str, np.ndarray]:
    """``object_errors`` of frames (B, T, S, S, 3) against states (B, T, P), each (B, T)."""
    b, t = frames.shape[:2]
    if states.shape[:2] != (b, t):
        raise ValueError(f"frames {frames.shape[:2]} and states {states.shape[:2]} must share (B, T)")
    flat = object_errors(locator.locate(frames.reshape(b * t, *frames.shape[2:])),
                         states.reshape(b * t, -1), env)
    return {name: err.reshape(b, t) for name, err in flat.items()}


def summarise(errors: np.ndarray) -> dict:
    """Found rate and error quantiles of (N,) errors, NaN where not found; quantiles over found."""
    errors = np.asarray(errors, dtype=np.float64)
    found = np.isfinite(errors)
    out = {"n": int(len(errors)), "found": float(found.mean()) if len(errors) else float("nan")}
    for key, q in (("median", 50), ("p90", 90)):
        out[key] = float(np.percentile(errors[found], q)) if found.any() else float("nan")
    return out


def scorecard_rows(errors: dict[str, dict[str, np.ndarray]], subsets: dict[str, np.ndarray],
                   horizons: tuple[int, ...]) -> list[dict]:
    """One row per (subset, source, object): found rate, median and p90 error at each horizon.

    errors: {source: {object: (B, T) errors}} (``frame_errors``; an object ``<name>_angle``
    becomes the ``angle_*`` columns of its object's row); subsets: {name: (B,) bool};
    horizons: the future frames' steps after the anchor, one per T (e.g. 4, 8, 12, 16).
    Keys: ``found_<h>``, ``median_<h>``, ``p90_<h>`` (px), ``angle_median_<h>``, ``angle_p90_<h>`` (deg).
    """
    rows = []
    for subset, mask in subsets.items():
        for source, per_object in errors.items():
            for name, err in per_object.items():
                if name.endswith("_angle"):
                    continue
                if err.shape[1] != len(horizons):
                    raise ValueError(f"{source}/{name} errors have {err.shape[1]} frames, horizons {horizons}")
                row = {"subset": subset, "source": source, "object": OBJECT_LABELS.get(name, name),
                       "windows": int(mask.sum())}
                for k, h in enumerate(horizons):
                    s = summarise(err[mask, k])
                    row.update({f"found_{h}": s["found"], f"median_{h}": s["median"], f"p90_{h}": s["p90"]})
                    if f"{name}_angle" in per_object:
                        a = summarise(per_object[f"{name}_angle"][mask, k])
                        row.update({f"angle_median_{h}": a["median"], f"angle_p90_{h}": a["p90"]})
                rows.append(row)
    return rows
