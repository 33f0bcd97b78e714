"""Print markdown tables of finished experiments from their results.json files.

    python benchmarks/results_table.py outputs/issue3/*/results.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _rate(summary: dict, key: str) -> str:
    if key not in summary:
        return ""
    low, high = summary[f"{key}_wilson95"]
    return f"{summary[key]:.2f} [{low:.2f}, {high:.2f}]"


def main(paths: list[str]) -> None:
    print("| run | env | planner | episodes | success [95% CI] | score | task success [95% CI] | ms / plan | evals / plan |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        data = json.loads(Path(path).read_text())
        summary, config = data["summary"], data.get("config", {})
        planner = config.get("planner", "?")
        planner = planner if isinstance(planner, str) else planner.get("_target_", "?").split(".")[-1]
        score = f"{summary['mean_score']:.3f}" if "mean_score" in summary else ""
        evals = summary.get("mean_evaluations_per_plan")
        evals = f"{evals:.0f}" if evals is not None else ""
        print(f"| {Path(path).parent.name} | {data['env_id'].split('/')[-1]} | {planner} | "
              f"{summary['n_episodes']} | {_rate(summary, 'success')} | {score} | "
              f"{_rate(summary, 'task_success')} | {summary['mean_ms_per_plan']:.0f} | "
              f"{evals} |")


if __name__ == "__main__":
    main(sys.argv[1:])
