"""benchmarks/results_table.py: paired comparisons, over one run or comma-joined runs pooled."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import results_table  # noqa: E402


def _run(path: Path, outcomes: dict[int, bool]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"summary": {"success": 0.0},
                                "episodes": [{"seed": s, "success": ok} for s, ok in outcomes.items()]}))
    return str(path)


def test_paired_pools_comma_joined_runs(tmp_path, capsys):
    base1 = _run(tmp_path / "base1" / "results.json", {0: True, 1: False, 2: False})
    base2 = _run(tmp_path / "base2" / "results.json", {3: False, 4: True})
    run1 = _run(tmp_path / "run1" / "results.json", {0: True, 1: True, 2: True})
    run2 = _run(tmp_path / "run2" / "results.json", {3: True, 4: False})
    (one,) = results_table.paired(base1, [run1])
    assert (one["n"], one["only_base"], one["only_other"]) == (3, 0, 2)
    (pooled,) = results_table.paired(f"{base1},{base2}", [f"{run1},{run2}"])
    assert (pooled["n"], pooled["base"], pooled["other"]) == (5, 2, 4)
    assert (pooled["only_base"], pooled["only_other"]) == (1, 3)
    out = capsys.readouterr().out
    assert "base1 +" in out and "| 4 = 0.80 [" in out  # pooled run: 4 of 5 with its Wilson interval
