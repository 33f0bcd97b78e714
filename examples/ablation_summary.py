"""A hydra callback that ends a planner ablation (a multirun) in one summary table. It lives
beside ``ablate_planners.py`` (examples read hydra configs; the library takes plain arguments),
and hydra imports it from there: the script's directory is on ``sys.path``.

Each job of the sweep writes ``results.json`` (``runner.run_episodes``) into its own directory;
when the multirun ends, ``AblationSummary`` reads them all and writes ``summary.json`` / ``.md``
/ ``.png`` into the sweep directory, one row per job, through ``report.write_report``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from uva_plan.report import write_report

KEYS = ("env", "planner", "objective", "proposer", "n_samples")


def summarize_sweep(sweep_dir: str | Path) -> list[dict]:
    """One row per finished job under sweep_dir: its swept settings and outcome."""
    rows = []
    for path in sorted(Path(sweep_dir).glob("*/results.json")):
        result = json.loads(path.read_text())
        config, summary = result["config"], result["summary"]
        rate = "task_success" if "task_success" in summary else "success"
        row = {k: config.get(k) for k in KEYS}
        row.update(job=path.parent.name, episodes=summary["n_episodes"], success=summary[rate],
                   success_wilson95=summary[f"{rate}_wilson95"], score=summary.get("mean_score"),
                   ms_per_plan=summary.get("mean_ms_per_plan"),
                   evaluations_per_plan=summary.get("mean_evaluations_per_plan"))
        rows.append(row)
    return rows


class AblationSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = summarize_sweep(sweep_dir)
        if not rows:
            print(f"no finished jobs under {sweep_dir}")
            return
        label_rows = [{**r, "setting": f"{r['planner']} / {r['objective']} / {r['n_samples']}"} for r in rows]
        write_report(sweep_dir, "summary", f"Planner ablation ({rows[0]['env']}), {len(rows)} settings",
                     label_rows, ["setting", "proposer", "episodes", "success", "score", "ms_per_plan",
                                  "evaluations_per_plan"],
                     {"sweep_dir": str(sweep_dir), "jobs": [r["job"] for r in rows]},
                     plot_label="setting", plot_rate="success")
