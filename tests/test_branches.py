"""Counterfactual DP-C branches: the collector, anchor-restricted windows, the sparse latent cache."""

from __future__ import annotations

import numpy as np
import pytest

from uva_plan import hub
from uva_plan.data import EpisodeStore, SequenceSampler
from uva_plan.data.branches import collect_branches, episode_block
from uva_plan.data.latents import LatentWindows, cache_latents, load_latents, needed_rows


@pytest.fixture(scope="module")
def branch_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("branches") / "pusht_branches"
    summary = collect_branches("pusht", 2, out, seed=123, branches=3, max_steps=24, threads=1)
    return out, summary


def test_branches_start_from_the_executed_state_and_differ(branch_store):
    out, summary = branch_store
    store = EpisodeStore.open(out)
    meta = store.meta
    block = episode_block(24, 8, 3)
    assert meta["block"] == block and meta["branch_t"] == 12
    # 24 steps, replanning every 8: 3 plans x 3 branches + the executed episode, per DP-C episode.
    assert summary["n_branches_collected"] == 2 * 3 * 3 and len(store) == 2 * (3 * 3 + 1)
    executed = store.episode(block - 1)
    assert executed["metrics"]["branch_t"] == -1 and len(executed["states"]) == 24
    for plan in range(3):
        first = store.episode(plan * 3)
        t = plan * 8
        assert first["metrics"]["t"] == t and first["metrics"]["branch_t"] == 12
        # Branch 0 is the chunk DP-C executed: its first 8 steps are the executed trajectory's.
        np.testing.assert_array_equal(first["states"][12:20], executed["states"][t:t + 8])
        if t:  # the prefix is the executed past (edge-padded before the episode's 12th step)
            n = min(12, t)
            np.testing.assert_array_equal(first["states"][12 - n:12], executed["states"][t - n:t])
        others = [store.episode(plan * 3 + b) for b in (1, 2)]
        for other in others:  # same start, other chunk: same state at the branch point, other actions
            np.testing.assert_array_equal(other["states"][12], first["states"][12])
            assert not np.allclose(other["actions"][12:], first["actions"][12:])


def test_branch_collection_resumes_without_redoing_episodes(branch_store):
    out, _ = branch_store
    again = collect_branches("pusht", 2, out, seed=123, branches=3, max_steps=24, threads=1)
    assert again["n_collected"] == 0 and again["n_branches_collected"] == 0


def test_branch_collection_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="branches must be an int >= 1"):
        collect_branches("pusht", 1, tmp_path / "x", branches=0)
    with pytest.raises(ValueError, match="env must be one of"):
        collect_branches("cartpole", 1, tmp_path / "x")


def test_anchor_steps_keep_one_window_per_restricted_episode():
    ends = np.array([10, 30])
    data = {"states": np.arange(30 * 2, dtype=np.float64).reshape(30, 2),
            "actions": np.zeros((30, 2)), "episode_ends": ends}
    sampler = SequenceSampler.uva(data, anchor_steps=[4, -1])
    episode, t = sampler.anchors(np.arange(len(sampler)))
    assert len(sampler) == 1 + 20
    assert (episode[0], t[0]) == (0, 4) and (episode[1:] == 1).all() and (t[1:] == np.arange(20)).all()
    with pytest.raises(ValueError, match=r"anchor_steps\[0\] = 10 is not a step of episode 0"):
        SequenceSampler.uva(data, anchor_steps=[10, -1])
    with pytest.raises(ValueError, match="anchor_steps must be"):
        SequenceSampler.uva(data, anchor_steps=[1])


def test_branch_store_cache_encodes_only_what_its_windows_read(branch_store):
    out, _ = branch_store
    store = EpisodeStore.open(out)
    data = store.load()
    needed = needed_rows(data)
    assert 0 < needed.sum() < len(needed)
    cache_latents(out, hub.pretrained_checkpoint("vae"))
    latents, info = load_latents(out, data=data)
    assert info["encoded_rows"] == needed.sum() and info["encoded_frames"] < needed.sum()  # shared prefixes
    assert np.isnan(latents[~needed]).all() and np.isfinite(latents[needed]).all()
    windows = LatentWindows(SequenceSampler.uva(data, anchor_steps=data["metrics"]["branch_t"]), latents,
                            store.normalizers())
    batch = windows.batch(np.arange(len(windows)))
    assert np.isfinite(batch["latents"].numpy()).all()
    # Every window a branch store trains on, and no window at any other step of a branch.
    assert len(windows) == 18 + 2 * 24
