"""The world model's object-level scorecard (uva_plan.scorecard) on a tiny held-out store."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.test_models import one_thread  # noqa: F401  (autouse: one torch thread)
from uva_plan.data.store import EpisodeStore
from uva_plan.envs import blockpush as bp
from uva_plan.envs import pusht
from uva_plan.locate import ColourLocator
from uva_plan.scorecard import (HELDOUT_SEED, candidate_windows, choose_windows, frame_errors, heldout_store,
                                object_errors, scorecard_rows, select_windows, summarise, window_batch)
from uva_plan.scorecard.sources import copy_last
from uva_plan.scorecard.windows import SELECTION_FILE, displacements, pusher_gap

PUSHT, BLOCKPUSH = "uva_plan/PushT-v0", "uva_plan/BlockPush-v0"


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    """Two held-out BlockPush expert episodes (about 36 candidate windows)."""
    root = tmp_path_factory.mktemp("scorecard") / "heldout"
    heldout_store(root, "blockpush", n_episodes=2)
    return root


@pytest.fixture
def store_copy(tiny_store, tmp_path):
    """A private copy of the tiny store, without a window selection."""
    root = tmp_path / "store"
    shutil.copytree(tiny_store, root, ignore=shutil.ignore_patterns(SELECTION_FILE, ".lock"))
    return root


def blockpush_state(agent=(100.0, 100.0), block0=(250.0, 300.0, 0.3), block1=(400.0, 150.0, 0.0)) -> np.ndarray:
    """A hand-made BlockPush physical state: pusher, two blocks (x, y, angle), targets low down."""
    state = np.zeros(bp.STATE_DIM)
    state[0:2], state[4:7], state[10:13] = agent, block0, block1
    state[16:20] = (100.0, 420.0, 400.0, 420.0)
    state[24] = -1.0
    return state


def test_window_selection_is_deterministic_and_mixed(tiny_store):
    data = EpisodeStore.open(tiny_store).load()
    candidates = candidate_windows(data, "blockpush")
    first, second = choose_windows(candidates, 8, seed=3), choose_windows(candidates, 8, seed=3)
    assert first == second and len(first) == 8
    assert sum("moving" in w["tags"] for w in first) == 4  # half moving: the store offers enough
    assert choose_windows(candidates, 8, seed=4) != first
    for w in candidates:  # tags agree with the states they were read from
        assert ("moving" in w["tags"]) == (w["displacement_px"] >= 16.0)
        assert ("contact" in w["tags"]) == (w["min_gap_px"] <= 2.0)
    with pytest.raises(ValueError, match="fewer than"):
        choose_windows(candidates, len(candidates) + 1)


def test_selection_is_stored_once_and_reloaded(store_copy, tmp_path):
    store = EpisodeStore.open(store_copy)
    chosen = select_windows(store, "blockpush", 6)
    path = store_copy / SELECTION_FILE
    written = path.read_text()
    again = select_windows(EpisodeStore.open(store_copy), "blockpush")  # n_windows omitted: reuse
    assert again == chosen and path.read_text() == written
    assert json.loads(written)["windows"] == chosen["windows"] and len(chosen["windows"]) == 6
    # The same store elsewhere: the same windows (deterministic), chosen afresh.
    other = tmp_path / "other"
    shutil.copytree(store_copy, other, ignore=shutil.ignore_patterns(SELECTION_FILE, ".lock"))
    assert select_windows(EpisodeStore.open(other), "blockpush", 6)["windows"] == chosen["windows"]


def test_selection_that_does_not_match_its_store_is_refused(store_copy):
    select_windows(EpisodeStore.open(store_copy), "blockpush", 6)
    with pytest.raises(ValueError, match="holds 6 windows"):
        select_windows(EpisodeStore.open(store_copy), "blockpush", 8)
    with pytest.raises(ValueError, match="does not match its store.*env 'uva_plan/BlockPush-v0'"):
        select_windows(EpisodeStore.open(store_copy), "pusht")
    # One episode changes (a state nudged): the stored selection no longer fits.
    meta = json.loads((store_copy / "meta.json").read_text())
    meta = {k: v for k, v in meta.items() if k not in ("format_version", "git_revision", "created")}
    with EpisodeStore.create(store_copy, meta) as writer:
        episode = writer.episode(0)
        episode["states"][5, 0] += 1.0
        writer.write_episode(0, episode["states"], episode["actions"], episode["final_state"], episode["rewards"],
                             episode["seed"], episode["metrics"], overwrite=True)
    with pytest.raises(ValueError, match="does not match its store.*fingerprint"):
        select_windows(EpisodeStore.open(store_copy), "blockpush")


def test_a_training_store_is_refused(tmp_path):
    from uva_plan.data.collect import collect

    collect(BLOCKPUSH, "random", 1, tmp_path / "train", seed=0, max_steps=20)
    with pytest.raises(ValueError, match="below 900000"):
        heldout_store(tmp_path / "train", "blockpush")
    with pytest.raises(ValueError, match="holds uva_plan/BlockPush-v0"):
        heldout_store(tmp_path / "train", "pusht")
    assert HELDOUT_SEED == 900_000


def test_contact_from_states():
    touching = blockpush_state(agent=(250.0 - 16.0 - bp.BlockPushEnv.agent_radius, 300.0), block0=(250.0, 300.0, 0.0))
    far = blockpush_state(agent=(60.0, 60.0))
    assert pusher_gap(touching, "blockpush")[0] == pytest.approx(0.0, abs=1e-9)
    assert pusher_gap(far, "blockpush")[0] > 100
    # Push-T: the pusher just below the stem's end (body frame (0, 120 + r), angle 0).
    state = np.zeros(pusht.STATE_DIM)
    state[4:7] = (256.0, 200.0 + 45.0, 0.0)  # the CoG: the body origin (256, 200) is 45 px above it
    state[0:2] = (256.0, 200.0 + 120.0 + pusht.PushTEnv.agent_radius + 1.0)
    assert pusher_gap(state, "pusht")[0] == pytest.approx(1.0, abs=1e-9)


def test_object_errors_of_rendered_states_are_near_zero():
    states = np.stack([blockpush_state(), blockpush_state(agent=(300.0, 420.0), block0=(120.0, 200.0, 1.0)),
                       blockpush_state(block1=(330.0, 80.0, 2.0))])
    located = ColourLocator(BLOCKPUSH).locate(bp.BlockPushEnv.render_states(states, 64))
    errors = object_errors(located, states, "blockpush")
    assert set(errors) == {"agent", "block0", "block1"}
    for name, err in errors.items():
        assert summarise(err)["found"] == 1.0 and err.max() < 3.0, (name, err)
    tee = np.zeros((2, pusht.STATE_DIM))
    tee[:, 0:2], tee[:, 4:7] = (80.0, 80.0), [(256.0, 300.0, 0.5), (300.0, 250.0, 4.0)]
    errors = object_errors(ColourLocator(PUSHT).locate(pusht.PushTEnv.render_states(tee, 64)), tee, "pusht")
    assert errors["tee"].max() < 3.0 and errors["tee_angle"].max() < 4.0 and errors["agent"].max() < 3.0


def test_an_erased_pusher_is_not_found():
    states = np.stack([blockpush_state(), blockpush_state(agent=(420.0, 250.0))])
    frames = bp.BlockPushEnv.render_states(states, 64)
    locator = ColourLocator(BLOCKPUSH)
    agent_share = locator.memberships(frames)[:, locator.names.index("agent")].numpy()
    frames[agent_share > 0] = bp.BACKGROUND
    errors = object_errors(locator.locate(frames), states, "blockpush")
    assert summarise(errors["agent"])["found"] < 1.0 and np.isnan(errors["agent"]).all()
    assert summarise(errors["block0"])["found"] == 1.0 and summarise(errors["block1"])["found"] == 1.0


def test_a_shifted_object_gives_its_shift_as_error():
    truth = blockpush_state()
    shifted = truth.copy()
    shifted[4:6] += (30.0, -40.0)  # block 0 drawn 50 px away from where the state has it
    located = ColourLocator(BLOCKPUSH).locate(bp.BlockPushEnv.render_states(shifted[None], 64))
    errors = object_errors(located, truth[None], "blockpush")
    assert errors["block0"][0] == pytest.approx(50.0, abs=2.0)
    assert errors["block1"][0] < 2.0 and errors["agent"][0] < 2.0


def test_copy_last_error_is_the_displacement(tiny_store):
    data = EpisodeStore.open(tiny_store).load()
    moving = [w for w in candidate_windows(data, "blockpush") if "moving" in w["tags"]][:6]
    assert moving
    batch = window_batch(data, moving, "blockpush", 64)
    states, frames = batch["states"], batch["frames"]
    assert frames.shape == (len(moving), 8, 64, 64, 3) and batch["actions"].shape == (len(moving), 16, 2)
    errors = frame_errors(ColourLocator(BLOCKPUSH), copy_last(frames, 4), states[:, 4:], "blockpush")
    moved = displacements(states[:, 3], states[:, -1], "blockpush")
    for name in ("block0", "block1"):
        np.testing.assert_allclose(errors[name][:, -1], moved[name], atol=3.0)
    assert max(moved["block0"].max(), moved["block1"].max()) >= 16.0


def test_scorecard_rows_aggregate_found_rate_and_quantiles():
    errors = {"imagined": {"agent": np.array([[1.0, 1.0], [2.0, 2.0], [3.0, np.nan], [np.nan, np.nan]]),
                           "tee": np.zeros((4, 2)), "tee_angle": np.array([[10.0, 0.0]] * 4)}}
    subsets = {"all": np.ones(4, bool), "moving": np.array([True, False, True, False])}
    rows = scorecard_rows(errors, subsets, horizons=(8, 16))
    assert [(r["subset"], r["object"]) for r in rows] == [("all", "pusher"), ("all", "T"), ("moving", "pusher"),
                                                         ("moving", "T")]
    pusher = rows[0]
    assert pusher["found_8"] == 0.75 and pusher["median_8"] == 2.0 and pusher["p90_8"] == pytest.approx(2.8)
    assert pusher["found_16"] == 0.5 and pusher["median_16"] == 1.5
    assert rows[1]["angle_median_8"] == 10.0 and "angle_median_8" not in pusher
    assert rows[2]["windows"] == 2 and rows[2]["found_16"] == 0.5 and rows[2]["median_8"] == 2.0
    assert math.isnan(summarise(np.array([np.nan]))["median"]) and summarise(np.array([np.nan]))["found"] == 0.0


def test_cli_end_to_end_on_a_tiny_store(store_copy, tmp_path):
    from uva_plan.scorecard.cli import main

    out = tmp_path / "out"
    result = main(["--env", "blockpush", "--uva", "blockpush", "--data", str(store_copy), "--out", str(out),
                   "--n-windows", "4", "--threads", "1", "--n-gallery", "4"])
    saved = json.loads((out / "scorecard_blockpush.json").read_text())
    assert saved["git_revision"] and saved["config"]["env"] == "blockpush" and len(saved["windows"]) == 4
    assert saved["config"]["temperature"] == 0.01 and saved["wall_time_s"] > 0
    rows = {(r["subset"], r["source"], r["object"]): r for r in saved["rows"]}
    sources = ("imagined", "video only", "copy-last", "vae ceiling", "real")
    assert {(s, o) for _, s, o in rows} == {(s, o) for s in sources for o in ("pusher", "block 0", "block 1")}
    for name in ("pusher", "block 0", "block 1"):  # the locator reads the real frames
        real = rows[("all", "real", name)]
        assert real["found_16"] == 1.0 and real["median_16"] < 3.0 and real["windows"] == 4
    assert np.asarray(saved["per_window"]["imagined"]["block0"], dtype=float).shape == (4, 4)
    assert result["gallery_windows"] == saved["gallery_windows"] and len(saved["gallery_windows"]) == 4
    with Image.open(out / "scorecard_blockpush_gallery.png") as image:
        assert image.size[0] > 1000 and image.size[1] > 400
    assert "### moving windows" in (out / "scorecard_blockpush.md").read_text()
    # A second run reuses the stored windows.
    assert json.loads((store_copy / SELECTION_FILE).read_text())["windows"] == saved["windows"]


def test_truth_fraction_of_perfect_and_reversed_rankings():
    from uva_plan.scorecard.ranking import truth_fraction

    truth = np.random.default_rng(0).normal(size=(3, 20))
    assert truth_fraction(truth, truth, 8) == pytest.approx(1.0)
    assert truth_fraction(-truth, truth, 20) < 0  # picks the worst: below a random candidate
    # Ranking by one cost that ignores the truth gains about nothing on average.
    assert abs(truth_fraction(np.zeros_like(truth) + np.arange(20), truth, 8, n_subsets=2000)) < 0.15
