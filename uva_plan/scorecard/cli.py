"""``python -m uva_plan.scorecard``: the world model's object-level scorecard on held-out windows.

    python -m uva_plan.scorecard --env blockpush --uva blockpush --out outputs/scorecard
    python -m uva_plan.scorecard --env pusht --uva outputs/train/uva_pusht/final --data data/heldout_pusht

Writes scorecard_<env>.json (rows, per-window errors, config, git revision, wall time),
scorecard_<env>.md, scorecard_<env>_gallery.png into --out and prints one rich table per subset.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from uva_plan.io import atomic_write_bytes, atomic_write_json, git_revision
from uva_plan.locate import ColourLocator
from uva_plan.scorecard.errors import OBJECT_LABELS, frame_errors, scorecard_rows
from uva_plan.scorecard.gallery import draw_gallery, gallery_windows
from uva_plan.scorecard.sources import SOURCES, future_frames, load_world_model
from uva_plan.scorecard.windows import (ENV_IDS, N_HELDOUT_EPISODES, PUSHED, heldout_store, select_windows,
                                        window_batch)

SUBSETS = ("all", "moving", "contact")
SHOWN_SUBSETS = ("all", "moving")  # the tables; the JSON holds every subset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m uva_plan.scorecard", description=__doc__.split("\n")[0])
    parser.add_argument("--env", required=True, choices=sorted(ENV_IDS))
    parser.add_argument("--uva", default=None, help="shipped name (pusht, blockpush) or checkpoint directory "
                                                    "(default: the shipped UVA of --env)")
    parser.add_argument("--vae", default=None, help="VAE checkpoint (default: the one the UVA names)")
    parser.add_argument("--data", default=None, help="held-out store, collected there when missing "
                                                     "(default: data/heldout_<env>)")
    parser.add_argument("--out", default="outputs/scorecard")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-windows", type=int, default=None,
                        help="windows to choose when the store has no selection yet (default 64); "
                             "a stored selection of another size is refused")
    parser.add_argument("--n-episodes", type=int, default=N_HELDOUT_EPISODES, help="episodes when collecting")
    parser.add_argument("--batch", type=int, default=64, help="windows per UVA call")
    parser.add_argument("--seed", type=int, default=0, help="UVA sampling seed")
    parser.add_argument("--n-video-steps", type=int, default=None, help="default: the planning settings")
    parser.add_argument("--video-head-steps", type=int, default=None, help="default: the planning settings")
    parser.add_argument("--temperature", type=float, default=None, help="default: the planning settings")
    parser.add_argument("--n-gallery", type=int, default=8, help="windows in the gallery")
    parser.add_argument("--ranking-states", type=int, default=0,
                        help="also rank a frozen DP-C candidate set at this many window states (0: skip)")
    parser.add_argument("--n-candidates", type=int, default=100, help="candidates per ranking state")
    args = parser.parse_args(argv)
    for name in ("threads", "n_episodes", "batch", "n_gallery"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.ranking_states < 0 or args.n_candidates < 2:
        parser.error(f"need --ranking-states >= 0 and --n-candidates >= 2, got {args.ranking_states}, "
                     f"{args.n_candidates}")
    if args.n_windows is not None and args.n_windows < 1:
        parser.error(f"--n-windows must be >= 1, got {args.n_windows}")
    return args


def _fmt(value, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def display_rows(rows: list[dict], subset: str, horizons: tuple[int, ...], angles: bool) -> tuple[list[str], list[list[str]]]:
    """Columns and formatted cells of one subset's table: found rate and errors at the last
    horizon, the median error at the earlier ones."""
    last = horizons[-1]
    columns = ["source", "object", "windows", f"found t+{last}", f"median px t+{last}", f"p90 px t+{last}"]
    columns += [f"median px t+{h}" for h in horizons[:-1]]
    if angles:
        columns += [f"T angle median deg t+{last}", f"T angle p90 deg t+{last}"]
    cells = []
    for r in (r for r in rows if r["subset"] == subset):
        line = [r["source"], r["object"], str(r["windows"]), _fmt(r[f"found_{last}"], 2),
                _fmt(r[f"median_{last}"]), _fmt(r[f"p90_{last}"])]
        line += [_fmt(r[f"median_{h}"]) for h in horizons[:-1]]
        if angles:
            line += [_fmt(r.get(f"angle_median_{last}")), _fmt(r.get(f"angle_p90_{last}"))]
        cells.append(line)
    return columns, cells


def _finite(x):
    """NaN -> None, recursively, so the JSON is strict."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    revision = git_revision()
    torch.set_num_threads(args.threads)
    console = Console()
    if not console.is_terminal:  # logs and pipes: wide enough for the tables' columns
        console = Console(width=150)
    env, timings = args.env, {}
    uva = args.uva or env
    model = load_world_model(uva, args.vae, seed=args.seed, n_video_steps=args.n_video_steps,
                             video_head_steps=args.video_head_steps, temperature=args.temperature)
    if model.env_id != ENV_IDS[env]:
        raise ValueError(f"--uva {uva} was trained on {model.env_id}, not {ENV_IDS[env]} (--env {env})")
    timings["load_s"] = time.perf_counter() - started

    mark = time.perf_counter()
    data_dir = Path(args.data or f"data/heldout_{env}")
    store = heldout_store(data_dir, env, n_episodes=args.n_episodes, workers=args.threads, console=console)
    selection = select_windows(store, env, args.n_windows, console=console)
    windows = selection["windows"]
    batch = window_batch(store.load(), windows, env, model.image_size)
    timings["data_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    frames = future_frames(model, batch["frames"], batch["actions"], batch=args.batch)
    timings["imagine_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    n_hist = model.n_frames
    horizons = tuple(int(h) for h in (np.arange(1, frames["real"].shape[1] + 1) * model.stride))
    future_states = batch["states"][:, n_hist:]
    locator = ColourLocator(ENV_IDS[env])
    errors = {source: frame_errors(locator, frames[source], future_states, env) for source in SOURCES}
    tags = [w["tags"] for w in windows]
    subsets = {"all": np.ones(len(windows), bool)}
    subsets.update({tag: np.array([tag in t for t in tags]) for tag in SUBSETS[1:]})
    rows = scorecard_rows(errors, subsets, horizons)
    timings["locate_s"] = time.perf_counter() - mark

    out = Path(args.out)
    shown = gallery_windows(windows, args.n_gallery)
    marks = np.stack([future_states[shown][..., where] for where in PUSHED[env].values()], axis=2)  # (W, T, K, 2)
    titles = [f"episode {windows[i]['episode']}, t = {windows[i]['t']}: {' + '.join(windows[i]['tags'])}, "
              f"moved {windows[i]['displacement_px']:.0f} px" for i in shown]
    paths = {"json": out / f"scorecard_{env}.json", "md": out / f"scorecard_{env}.md",
             "gallery": out / f"scorecard_{env}_gallery.png"}
    draw_gallery(paths["gallery"], batch["frames"][shown, n_hist - 1], frames["real"][shown],
                 frames["imagined"][shown], titles, marks=marks, horizons=horizons)

    title = (f"UVA object scorecard, {env}: {len(windows)} held-out windows ({selection['counts']}), "
             f"errors in px of the 512 px workspace")
    markdown = [f"## {title}\n"]
    for subset in SHOWN_SUBSETS:
        columns, cells = display_rows(rows, subset, horizons, angles=env == "pusht")
        table = Table(title=f"{env}: {subset} windows ({int(subsets[subset].sum())})")
        for i, column in enumerate(columns):
            table.add_column(column, justify="left" if i < 2 else "right")
        for line in cells:
            table.add_row(*line)
        console.print(table)
        markdown += [f"\n### {subset} windows ({int(subsets[subset].sum())})\n",
                     "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
                     *("| " + " | ".join(line) + " |" for line in cells)]
    ranking = None
    if args.ranking_states:
        from uva_plan.scorecard.ranking import frozen_candidates, ranking_fidelity

        mark = time.perf_counter()
        frozen = frozen_candidates(store, selection, env, model, args.ranking_states, args.n_candidates, args.seed)
        timings["candidates_s"] = time.perf_counter() - mark
        mark = time.perf_counter()
        ranking = ranking_fidelity(model, frozen, env, args.seed)
        timings["ranking_s"] = time.perf_counter() - mark
        keys = [k for k in ranking if k.startswith("truth_fraction_at_")]
        line = [str(ranking["states"]), str(ranking["candidates"]), _fmt(ranking["rho"], 3),
                _fmt(ranking["found_fraction"], 2), *(_fmt(ranking[k], 3) for k in keys)]
        columns = ["states", "candidates", "rho", "found", *(k.replace("truth_fraction_at_", "truth fraction N=")
                                                             for k in keys)]
        table = Table(title=f"{env}: ranking fidelity of UVA + LocatedReward on frozen DP-C candidates")
        for column in columns:
            table.add_column(column, justify="right")
        table.add_row(*line)
        console.print(table)
        markdown += ["\n### Ranking fidelity (LocatedReward on imagined frames vs the task cost on simulated states)\n",
                     "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns), "| " + " | ".join(line) + " |"]
    wall = time.perf_counter() - started
    config = {**vars(args), "uva_resolved": uva, "env_id": ENV_IDS[env], "data": str(data_dir),
              "uva_weights_sha256": model.uva_weights_sha256, "n_video_steps": model.n_video_steps,
              "video_head_steps": model.video_head_steps, "temperature": model.temperature,
              "mode_probs": list(model.uva.config.mode_probs), "torch_threads": torch.get_num_threads(),
              "selection_fingerprint": selection["store_fingerprint"], "selection_rule": selection["rule"],
              "selection_counts": selection["counts"], "horizons": list(horizons)}
    result = {"title": title, "config": config, "git_revision": revision, "wall_time_s": wall, "timings_s": timings,
              "sources": list(SOURCES), "objects": [OBJECT_LABELS[n] for n in errors["real"] if n in OBJECT_LABELS],
              "rows": rows, "ranking": ranking, "windows": windows, "gallery_windows": shown,
              "per_window": {s: {n: e.tolist() for n, e in per.items()} for s, per in errors.items()}}
    atomic_write_json(paths["json"], _finite(result))
    markdown.append(f"\nWall time {wall:.1f} s on {torch.get_num_threads()} threads; git {revision}.\n")
    atomic_write_bytes(paths["md"], "\n".join(markdown).encode())
    console.print(f"wall time {wall:.1f} s ({', '.join(f'{k} {v:.1f}' for k, v in timings.items())}); "
                  f"wrote {', '.join(str(p) for p in paths.values())}")
    return result
