"""What a run reports: running metric means, metrics.jsonl, the progress display and the
final summary (summary.json and a table)."""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from uva_plan.io import atomic_write_bytes, atomic_write_json
from uva_plan.progress import progress_bar

if TYPE_CHECKING:
    from uva_plan.train.distributed import Dist
    from uva_plan.train.loop import TrainConfig


class MetricSums:
    """Running {key: (sum, count)}; NaN values mean "not applicable" (e.g. UVA's video loss in
    a policy-mode batch) and are left out of the mean rather than counted as anything."""

    def __init__(self):
        self.sums: dict[str, tuple[float, float]] = {}

    def add(self, metrics: dict[str, float], weight: float = 1.0) -> None:
        for key, value in metrics.items():
            if math.isfinite(value):
                s, n = self.sums.get(key, (0.0, 0.0))
                self.sums[key] = (s + weight * value, n + weight)


class MetricsLog:
    """metrics.jsonl, one JSON object per line, written by rank 0. On start, rows after the
    resumed step (logged by a run that was killed after its last checkpoint) and a torn last
    line are dropped, so a resumed run's log reads like an uninterrupted one."""

    def __init__(self, path: Path, start_step: int):
        self.path = path
        if path.exists():
            kept = []
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if row.get("step", math.inf) <= start_step:
                    kept.append(line + "\n")
            atomic_write_bytes(path, "".join(kept).encode())
        else:
            path.touch()

    def write(self, row: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


class Reporter:
    """Rich progress bar on a terminal; one plain line per log interval otherwise."""

    def __init__(self, title: str, total: int, start: int, enabled: bool, console: Console):
        self.total, self.enabled, self.console = total, enabled, console
        self.live = enabled and console.is_terminal
        if self.live:
            self.progress = progress_bar("{task.fields[status]}", console=console)
            self.task = self.progress.add_task(title, total=total, completed=start, status="")
            self.progress.start()

    def update(self, step: int, row: dict, eta_s: float) -> None:
        if not self.enabled:
            return
        status = f"loss {row['loss']:.4f}  lr {row['lr']:.2e}  {row['samples_per_s']:.0f} samples/s"
        if self.live:
            self.progress.update(self.task, completed=step, status=status)
        else:
            self.console.print(f"step {step}/{self.total}  {status}  eta {datetime.timedelta(seconds=round(eta_s))}")

    def note(self, text: str) -> None:
        if self.enabled:
            (self.progress.console if self.live else self.console).print(text)

    def close(self) -> None:
        if self.live:
            self.progress.stop()


def summarise(cfg: TrainConfig, out_dir: Path, checkpoint: Path | None, dist: Dist, stopped_early: bool,
              console: Console) -> dict:
    """Last train and val rows of metrics.jsonl; rank 0 prints a table and writes summary.json."""
    summary = {"kind": cfg.kind, "out_dir": str(out_dir), "steps": cfg.steps,
               "checkpoint": str(checkpoint) if checkpoint else None, "stopped_early": stopped_early,
               "final": str(out_dir / "final") if (out_dir / "final" / "meta.json").exists() else None}
    if not dist.main:
        return summary
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    for split in ("train", "val"):
        summary[split] = next((r for r in reversed(rows) if r["split"] == split), None)
    summary["step"] = max((r["step"] for r in rows), default=0)
    atomic_write_json(out_dir / "summary.json", summary)
    table = Table(title=f"{cfg.kind} training: {out_dir}")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("step", f"{summary['step']} / {cfg.steps}" + (" (time budget)" if stopped_early else ""))
    for split in ("train", "val"):
        if summary[split]:
            for key in ("loss", *sorted(k for k in summary[split] if k not in ("loss", "step", "split"))):
                if key in summary[split]:
                    table.add_row(f"{split} {key}", f"{summary[split][key]:.4g}")
    table.add_row("checkpoint", summary["checkpoint"] or "-")
    table.add_row("final model", summary["final"] or "-")
    console.print(table)
    return summary


