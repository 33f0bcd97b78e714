"""What every experiment writes: JSON (rows, full config, git revision), a markdown table and a
PNG plot of its rates with their 95% Wilson intervals, and a rich table on the console.

``write_json`` is the one JSON writer of results: every run's file carries its config and the
code's git revision, and is replaced atomically.

A row is a dict; ``columns`` names which keys the tables show, in order. A rate is a key ``k``
with ``k_wilson95`` = [low, high] beside it (``runner.summarize`` writes them that way); the
tables print it as ``0.42 [0.35, 0.49]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from uva_plan.io import atomic_write, atomic_write_json, git_revision

console = Console()
PROVENANCE_KEYS = ("config", "git_revision")


def write_json(path: str | Path, payload: dict[str, Any], *, config: dict[str, Any] | None = None,
               revision: str | None = None) -> Path:
    """Write ``{"config": config, "git_revision": revision, **payload}`` to ``path`` as JSON,
    atomically (numpy values and paths converted); returns the path.

    ``revision`` is the code's git revision, read by the caller when its run started (a long run
    records the code it ran, not later commits); by default it is read now. ``config`` defaults to {}.
    """
    clash = sorted(set(payload) & set(PROVENANCE_KEYS))
    if clash:
        raise ValueError(f"payload keys {clash} are written by write_json itself: pass config= / revision=")
    path = Path(path)
    atomic_write_json(path, {"config": {} if config is None else config,
                             "git_revision": revision or git_revision(), **payload})
    return path


def _cell(row: dict, key: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if f"{key}_wilson95" in row:
        low, high = row[f"{key}_wilson95"]
        return f"{value:.3f} [{low:.3f}, {high:.3f}]"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def markdown_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r, c) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def print_table(title: str, rows: Sequence[dict], columns: Sequence[str]) -> None:
    table = Table(title=title)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(_cell(row, c) for c in columns))
    console.print(table)


def plot_rates(path: Path, title: str, rows: Sequence[dict], label: str, rate: str) -> None:
    """Horizontal bars of ``rate`` per row (labelled by ``row[label]``) with Wilson error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.get(rate) is not None]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.5))
    values = [r[rate] for r in rows]
    errors = [[v - r.get(f"{rate}_wilson95", (v, v))[0] for v, r in zip(values, rows)],
              [r.get(f"{rate}_wilson95", (v, v))[1] - v for v, r in zip(values, rows)]]
    y = list(range(len(rows)))[::-1]
    ax.barh(y, values, xerr=errors, color="#4C72B0", ecolor="black", capsize=3)
    ax.set_yticks(y, [str(r[label]) for r in rows])
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"{rate} (95% Wilson interval)")
    ax.set_title(title)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)


def write_report(out_dir: str | Path, name: str, title: str, rows: Sequence[dict], columns: Sequence[str],
                 config: dict[str, Any], *, plot_label: str | None = None, plot_rate: str | None = None,
                 extra: dict | None = None, revision: str | None = None) -> dict[str, Path]:
    """Write ``name``.json / .md / .png into out_dir and print the table; returns the paths."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / f"{name}.json", "md": out_dir / f"{name}.md"}
    write_json(paths["json"], {"title": title, "rows": list(rows), **(extra or {})}, config=config,
               revision=revision)
    text = f"## {title}\n\n" + markdown_table(rows, columns)
    atomic_write(paths["md"], lambda f: f.write(text.encode()))
    if plot_label and plot_rate:
        paths["png"] = out_dir / f"{name}.png"
        plot_rates(paths["png"], title, rows, plot_label, plot_rate)
    print_table(title, rows, columns)
    console.print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return paths
