"""Docs rows from scorecard runs: one line per world-model variant, read from the scorecards' JSON.

    python -m uva_plan.scorecard.summary --out docs/results/world_model_blockpush.json \
        shipped=outputs/scorecard/shipped/scorecard_blockpush.json \
        base_3k=outputs/scorecard/base_3k/scorecard_blockpush.json --cpu-hours base_3k=0.27

Each cell is "found / median px" (and "/ median angle error" for the T) of an object at t+16 in the imagined frames, on all windows
and on the moving ones; the CPU-hours come from the UVA checkpoint's ``compute`` record
(training writes it) unless ``--cpu-hours NAME=H`` gives them. The reference rows (copy-last,
the VAE ceiling) are taken from the first scorecard: they do not depend on the model.
``docs/build_tables.py`` renders the written file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from uva_plan.io import atomic_write_json

REFERENCES = ("copy-last", "vae ceiling")


def _cell(row: dict) -> str:
    """found / median px at t+16, and the median angle error for the T."""
    text = f"{row['found_16']:.2f} / {row['median_16']:.1f}"
    return text + f" / {row['angle_median_16']:.0f}°" if "angle_median_16" in row else text


def _cells(rows: list[dict], source: str, objects: list[str]) -> list[str]:
    by_key = {(r["subset"], r["source"], r["object"]): r for r in rows}
    return [_cell(by_key[(subset, source, name)]) for subset in ("all", "moving") for name in objects]


def _cpu_hours(scorecard: dict) -> str:
    uva = Path(str(scorecard["config"].get("uva", "")))
    meta = uva / "meta.json"
    if meta.exists():
        compute = json.loads(meta.read_text()).get("extra", {}).get("compute")
        if compute:
            return f"{compute['cpu_hours']:.2f}"
    return "?"


def summarise(runs: dict[str, Path], cpu_hours: dict[str, str]) -> dict:
    """The docs results dict (columns, rows, commands) of named scorecard JSON files."""
    loaded = {name: json.loads(Path(path).read_text()) for name, path in runs.items()}
    first = next(iter(loaded.values()))
    objects, env = first["objects"], first["config"]["env"]
    for name, card in loaded.items():
        if card["config"]["env"] != env or card["objects"] != objects:
            raise ValueError(f"run {name!r} scored {card['config']['env']}, the first run {env}: one env per table")
    columns = ["variant", "CPU-h"] + [f"{o} (all)" for o in objects] + [f"{o} (moving)" for o in objects]
    rows = [[name, cpu_hours.get(name) or _cpu_hours(card)] + _cells(card["rows"], "imagined", objects)
            for name, card in loaded.items()]
    rows += [[source, "-"] + _cells(first["rows"], source, objects) for source in REFERENCES]
    tags = [tag for window in first["windows"] for tag in window["tags"]]
    windows = {"all": len(first["windows"]), **{tag: tags.count(tag) for tag in sorted(set(tags))}}
    return {"env": env, "columns": columns, "rows": rows, "windows": windows,
            "sources": {name: str(path) for name, path in runs.items()},
            "uva": {name: card["config"]["uva"] for name, card in loaded.items()}}


def summarise_ranking(runs: dict[str, Path]) -> dict:
    """The docs results dict of the ranking-fidelity part of named scorecards (``--ranking-states``)."""
    columns = ["model", "env", "states x candidates", "rho", "truth_fraction at 8 / 32 / 100"]
    rows = []
    for name, path in runs.items():
        card = json.loads(Path(path).read_text())
        ranking = card.get("ranking")
        if not ranking:
            raise ValueError(f"run {name!r} ({path}) has no ranking: score it with --ranking-states N")
        fractions = " / ".join(f"{ranking[f'truth_fraction_at_{n}']:.2f}" for n in (8, 32, 100)
                               if f"truth_fraction_at_{n}" in ranking)
        rows.append([name, card["config"]["env"], f"{ranking['states']} x {ranking['candidates']}",
                     f"{ranking['rho']:.2f}", fractions])
    return {"columns": columns, "rows": rows, "sources": {name: str(path) for name, path in runs.items()}}


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"{what} must be NAME=VALUE, got {item!r}")
        out[name] = value
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="NAME=path/to/scorecard_<env>.json, in table order")
    parser.add_argument("--cpu-hours", nargs="*", default=[], help="NAME=H for runs whose checkpoint has no record")
    parser.add_argument("--ranking", action="store_true", help="summarise the runs' ranking fidelity instead")
    parser.add_argument("--command", action="append", default=[],
                        help="a command behind the table (repeatable), recorded for its docs page")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    runs = {name: Path(path) for name, path in _pairs(args.runs, "a run").items()}
    missing = [str(p) for p in runs.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"no scorecard JSON at {missing}")
    result = (summarise_ranking(runs) if args.ranking
              else summarise(runs, _pairs(args.cpu_hours, "--cpu-hours")))
    result["command"] = args.command
    atomic_write_json(args.out, result)
    print(f"wrote {args.out} ({len(result['rows'])} rows)")
    return result


if __name__ == "__main__":
    main()
