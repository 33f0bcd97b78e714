"""The docs rows built from scorecard JSON (``python -m uva_plan.scorecard.summary``)."""

from __future__ import annotations

import json

import pytest

from uva_plan.scorecard.summary import main, summarise

OBJECTS = ["pusher", "block 0", "block 1"]


def card(path, env="blockpush", uva="outputs/x/final", found=0.5, median=10.0):
    rows = [{"subset": subset, "source": source, "object": name, "windows": 4,
             "found_16": found if source == "imagined" else 1.0,
             "median_16": median + i if source == "imagined" else 0.5}
            for subset in ("all", "moving") for source in ("imagined", "copy-last", "vae ceiling")
            for i, name in enumerate(OBJECTS)]
    windows = [{"tags": ["moving", "contact"]}, {"tags": ["static"]}]
    path.write_text(json.dumps({"config": {"env": env, "uva": uva}, "objects": OBJECTS, "rows": rows,
                                "windows": windows}))
    return path


def test_one_row_per_run_then_the_references(tmp_path):
    result = summarise({"a": card(tmp_path / "a.json", found=0.25, median=3.0),
                        "b": card(tmp_path / "b.json", found=0.75)}, {"a": "1.50"})
    assert result["columns"][:3] == ["variant", "CPU-h", "pusher (all)"]
    assert result["rows"][0] == ["a", "1.50", "0.25 / 3.0", "0.25 / 4.0", "0.25 / 5.0",
                                 "0.25 / 3.0", "0.25 / 4.0", "0.25 / 5.0"]
    assert result["rows"][1][:3] == ["b", "?", "0.75 / 10.0"]  # no compute record: unknown, not 0
    assert [r[0] for r in result["rows"][2:]] == ["copy-last", "vae ceiling"]
    assert result["windows"] == {"all": 2, "contact": 1, "moving": 1, "static": 1}


def test_the_t_carries_its_angle_error(tmp_path):
    path = card(tmp_path / "t.json", env="pusht")
    data = json.loads(path.read_text())
    for row in data["rows"]:
        row["angle_median_16"] = 12.4
    path.write_text(json.dumps(data))
    assert summarise({"t": path}, {})["rows"][0][2] == "0.50 / 10.0 / 12°"


def test_cpu_hours_come_from_the_checkpoint_record(tmp_path):
    ckpt = tmp_path / "final"
    ckpt.mkdir()
    (ckpt / "meta.json").write_text(json.dumps({"extra": {"compute": {"cpu_hours": 2.345, "wall_hours": 3.0}}}))
    result = summarise({"a": card(tmp_path / "a.json", uva=str(ckpt))}, {})
    assert result["rows"][0][1] == "2.35"


def test_mixed_envs_and_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="one env per table"):
        summarise({"a": card(tmp_path / "a.json"), "b": card(tmp_path / "b.json", env="pusht")}, {})
    with pytest.raises(ValueError, match="NAME=VALUE"):
        main(["a", "--out", str(tmp_path / "o.json")])
    with pytest.raises(FileNotFoundError, match="no scorecard JSON"):
        main([f"a={tmp_path / 'missing.json'}", "--out", str(tmp_path / "o.json")])
    assert not (tmp_path / "o.json").exists()


def test_ranking_rows_and_a_run_without_ranking(tmp_path):
    path = card(tmp_path / "r.json")
    data = json.loads(path.read_text())
    data["ranking"] = {"states": 8, "candidates": 100, "rho": -0.0207, "truth_fraction_at_8": -0.327,
                       "truth_fraction_at_32": -0.28, "truth_fraction_at_100": 0.5}
    path.write_text(json.dumps(data))
    result = main([f"r={path}", "--ranking", "--out", str(tmp_path / "o.json")])
    assert result["rows"] == [["r", "blockpush", "8 x 100", "-0.02", "-0.33 / -0.28 / 0.50"]]
    with pytest.raises(ValueError, match="no ranking"):
        main([f"a={card(tmp_path / 'a.json')}", "--ranking", "--out", str(tmp_path / "p.json")])
