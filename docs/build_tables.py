"""Rewrite the result tables of README.md and docs/**/*.md from docs/results/*.json.

A generated table sits between ``<!-- table: NAME -->`` and ``<!-- /table -->``; its rows come
from docs/results/NAME.json:

    {"command": ..., "episodes": ..., "columns": [...], "rows": [[cell, ...], ...]}

A cell is a string, a rate ``{"successes": k, "n": n, "format": "p2"}`` (rendered with its 95%
Wilson interval; ``format`` is a name from FORMATS or a format string over k, n, p, lo, hi and
their percentages P, LO, HI), or a list of strings and rates that are joined. A rate may carry
``"link"``: the rendered text becomes a link to that target.

    python docs/build_tables.py           # rewrite the tables in place
    python docs/build_tables.py --check   # exit 1 and name every table that is stale
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
sys.path.insert(0, str(ROOT))

from uva_plan.metrics import wilson_interval  # noqa: E402  (needs ROOT on the path)

FORMATS = {
    "p2": "{p:.2f} [{lo:.2f}, {hi:.2f}]",
    "p3": "{p:.3f} [{lo:.3f}, {hi:.3f}]",
    "p3_ci2": "{p:.3f} [{lo:.2f}, {hi:.2f}]",
    "pct1": "{P:.1f}% [{LO:.1f}, {HI:.1f}]",
    "k_p2": "{k} = {p:.2f} [{lo:.2f}, {hi:.2f}]",
    "k_p3_ci2": "{k} = {p:.3f} [{lo:.2f}, {hi:.2f}]",
    "kn_p2": "{k}/{n} = {p:.2f} [{lo:.2f}, {hi:.2f}]",
    "kn_p3": "{k}/{n} = {p:.3f} [{lo:.3f}, {hi:.3f}]",
    "kn_comma_p2": "{k}/{n}, {p:.2f} [{lo:.2f}, {hi:.2f}]",
    "kn_ci2": "{k}/{n} [{lo:.2f}, {hi:.2f}]",
    "kn_ci3": "{k}/{n} [{lo:.3f}, {hi:.3f}]",
}
MARKED = re.compile(r"(<!-- table: ([\w-]+) -->\n)(.*?)(<!-- /table -->)", re.S)
MARKED_NAME = re.compile(r"<!-- table: ([\w-]+) -->")


def format_rate(rate: dict) -> str:
    """A success rate with its 95% Wilson interval, in the cell's format."""
    k, n = rate["successes"], rate["n"]
    lo, hi = wilson_interval(k, n)
    p = k / n if n else 0.0
    spec = rate.get("format", "p2")
    text = FORMATS.get(spec, spec).format(k=k, n=n, p=p, lo=lo, hi=hi, P=100 * p, LO=100 * lo, HI=100 * hi)
    return f"[{text}]({rate['link']})" if "link" in rate else text


def format_cell(cell) -> str:
    if isinstance(cell, str):
        return cell
    if isinstance(cell, dict):
        return format_rate(cell)
    if isinstance(cell, list):
        return "".join(format_cell(part) for part in cell)
    raise ValueError(f"a cell is a string, a rate dict or a list of them, got {cell!r}")


def render(name: str) -> str:
    """The markdown table of docs/results/<name>.json."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"table {name!r} has no results file {path.relative_to(ROOT)}")
    spec = json.loads(path.read_text())
    columns = spec["columns"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in spec["rows"]:
        if len(row) != len(columns):
            raise ValueError(f"{path.name}: row {row!r} has {len(row)} cells, expected {len(columns)}")
        lines.append("| " + " | ".join(format_cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def rebuild(text: str) -> str:
    """The text with every marked table regenerated."""
    return MARKED.sub(lambda m: m.group(1) + render(m.group(2)) + m.group(4), text)


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report stale tables; exit 1 if any")
    args = parser.parse_args(argv)
    stale, used = [], set()
    for path in documents():
        text = path.read_text()
        used.update(MARKED_NAME.findall(text))
        new = rebuild(text)
        if new == text:
            continue
        names = [m.group(2) for m in MARKED.finditer(text) if m.group(3) != render(m.group(2))]
        stale += [f"{path.relative_to(ROOT)}: table {name!r}" for name in names]
        if not args.check:
            path.write_text(new)
    unused = sorted(p.stem for p in RESULTS.glob("*.json") if p.stem not in used)
    for name in unused:
        print(f"docs/results/{name}.json is not shown by any page", file=sys.stderr)
    if args.check and stale:
        print("stale tables (run python docs/build_tables.py):\n  " + "\n  ".join(stale), file=sys.stderr)
        return 1
    if not args.check and stale:
        print("rewrote:\n  " + "\n  ".join(stale))
    return 0

if __name__ == "__main__":
    sys.exit(main())
