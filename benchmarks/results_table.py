"""Print markdown tables of finished experiments from their results.json files.

    python benchmarks/results_table.py outputs/sim/*/results.json
    python benchmarks/results_table.py --paired BASE/results.json A/results.json B/results.json
    python benchmarks/results_table.py --paired BASE1.json,BASE2.json A1.json,A2.json

``--paired BASE``: each run against BASE over the seeds they share, episode by episode (seeds
only one of them solved, the exact McNemar p-value; ``uva_plan.metrics.paired_comparison``).
Comma-joined files are one run: the episodes of runs over different seeds, pooled.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _rate(summary: dict, key: str) -> str:
    if key not in summary:
        return ""
    low, high = summary[f"{key}_wilson95"]
    return f"{summary[key]:.2f} [{low:.2f}, {high:.2f}]"


def episodes(spec: str) -> list[dict]:
    """The episodes of one results.json, or of several comma-joined ones pooled."""
    return [e for path in spec.split(",") for e in json.loads(Path(path).read_text())["episodes"]]


def _name(spec: str) -> str:
    return " + ".join(str(Path(path).parent) for path in spec.split(","))


def paired(base: str, paths: list[str], key: str = "success") -> list[dict]:
    from uva_plan.metrics import paired_comparison

    base_episodes = episodes(base)
    print(f"paired against {_name(base)} ({key})\n")
    print("| run | seeds | base [95% CI] | run [95% CI] | only base | only run | difference | McNemar p |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for path in paths:
        c = paired_comparison(base_episodes, episodes(path), key)
        rows.append({"run": path, **c})
        print(f"| {_name(path)} | {c['n']} | {_count(c['base'], c['n'])} | {_count(c['other'], c['n'])} | "
              f"{c['only_base']} | {c['only_other']} | {c['difference']:+.2f} | {c['mcnemar_p']:.3f} |")
    return rows


def _count(successes: int, n: int) -> str:
    from uva_plan.metrics import wilson_interval

    low, high = wilson_interval(successes, n)
    return f"{successes} = {successes / n:.2f} [{low:.2f}, {high:.2f}]"


def main(paths: list[str]) -> None:
    if paths[:1] == ["--paired"]:
        if len(paths) < 3:
            raise SystemExit("usage: results_table.py --paired BASE.json RUN.json [RUN.json ...]")
        first = paths[1].split(",")[0]
        key = "task_success" if "task_success" in json.loads(Path(first).read_text())["summary"] else "success"
        paired(paths[1], paths[2:], key)
        return
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
