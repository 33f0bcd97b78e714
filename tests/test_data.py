"""Tests for the episode store, the collection command, the sequence sampler and normalisers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from uva_plan.data import EpisodeStore, MinMaxNormalizer, SequenceSampler, train_val_split
from uva_plan.data.collect import EpisodeRunner, main, make_expert
from uva_plan.data.sampler import DPC_FRAME_OFFSETS, UVA_FRAME_OFFSETS
from uva_plan.data.store import TMP_PREFIX, atomic_write
from uva_plan.envs import PushTEnv
from uva_plan.metrics import paired_comparison, wilson_interval

P, A = 14, 2
META = {"env_id": "test/Env-v0", "env_kwargs": {}, "expert": "hand", "seed": 0,
        "physical_dim": P, "action_dim": A}


def fake_episode(n_steps: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"states": rng.normal(size=(n_steps, P)), "actions": rng.uniform(0, 512, (n_steps, A)),
            "final_state": rng.normal(size=P), "rewards": rng.uniform(size=n_steps), "seed": seed,
            "metrics": {"success": bool(seed % 2), "length": n_steps, "max_coverage": rng.uniform()}}


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TMP_PREFIX)]


def collect_args(out: Path, n_episodes: int, *extra: str) -> list[str]:
    return ["--env", "uva_plan/PushT-v0", "--expert", "random", "--n-episodes", str(n_episodes),
            "--out", str(out), "--seed", "0", "--max-steps", "30", *extra]


# -- store ------------------------------------------------------------------------------------
def test_write_read_round_trip_is_exact(tmp_path):
    episodes = {0: fake_episode(7, 10), 1: fake_episode(4, 11), 3: fake_episode(5, 12)}  # gap at 2
    with EpisodeStore.create(tmp_path / "s", META) as store:
        for i, ep in episodes.items():
            store.write_episode(i, **ep)
    store = EpisodeStore.open(tmp_path / "s")
    assert len(store) == 3 and store.indices() == [0, 1, 3] and not store.has_episode(2)
    for i, ep in episodes.items():
        back = store.episode(i)
        for key in ("states", "actions", "final_state", "rewards"):
            np.testing.assert_array_equal(back[key], ep[key])
        assert back["seed"] == ep["seed"] and back["metrics"] == ep["metrics"]
        assert type(back["metrics"]["success"]) is bool and type(back["metrics"]["length"]) is int
    data = store.load()
    np.testing.assert_array_equal(data["states"], np.concatenate([e["states"] for e in episodes.values()]))
    np.testing.assert_array_equal(data["actions"], np.concatenate([e["actions"] for e in episodes.values()]))
    np.testing.assert_array_equal(data["episode_ends"], [7, 11, 16])
    np.testing.assert_array_equal(data["episode_seeds"], [10, 11, 12])
    np.testing.assert_array_equal(data["episode_indices"], [0, 1, 3])
    finals = np.stack([e["final_state"] for e in episodes.values()])
    np.testing.assert_array_equal(data["final_states"], finals)
    np.testing.assert_array_equal(data["metrics"]["success"], [False, True, False])
    assert store.meta["format_version"] == "1" and store.meta["git_revision"]


def test_writes_are_atomic_and_leave_no_temp_files(tmp_path):
    with EpisodeStore.create(tmp_path, META) as store:
        for i in range(3):
            store.write_episode(i, **fake_episode(5, i))
        store.finalize()
        before = store.path(0).read_bytes()

        def fail_midway(f):
            f.write(b"half an episode")
            raise RuntimeError("disk full")

        with pytest.raises(RuntimeError, match="disk full"):
            atomic_write(store.path(0), fail_midway)
        assert store.path(0).read_bytes() == before  # the old file is intact
    assert temp_files(tmp_path) == []
    # A writer killed mid-write leaves its temporary file; the next writer removes it.
    (tmp_path / "episodes" / f"{TMP_PREFIX}ep_000003.npz.123.abcd").write_bytes(b"partial")
    with EpisodeStore.create(tmp_path, META) as store:
        assert temp_files(tmp_path) == [] and len(store) == 3


def test_write_validation_names_the_bad_input(tmp_path):
    with EpisodeStore.create(tmp_path, META) as store:
        ep = fake_episode(5, 0)
        with pytest.raises(ValueError, match=r"states has shape \(5, 13\), expected \(T, 14\)"):
            store.write_episode(0, **{**ep, "states": ep["states"][:, :13]})
        with pytest.raises(ValueError, match=r"actions has shape \(4, 2\), expected \(5, 2\)"):
            store.write_episode(0, **{**ep, "actions": ep["actions"][:4]})
        with pytest.raises(ValueError, match=r"final_state has shape"):
            store.write_episode(0, **{**ep, "final_state": ep["final_state"][None]})
        bad = ep["actions"].copy()
        bad[2, 1] = np.nan
        with pytest.raises(ValueError, match=r"actions contains NaN or inf \(first at index \(2, 1\)\)"):
            store.write_episode(0, **{**ep, "actions": bad})
        with pytest.raises(ValueError, match="states contains NaN or inf"):
            store.write_episode(0, **{**ep, "states": np.full((5, P), np.inf)})
        with pytest.raises(ValueError, match="metric names"):
            store.write_episode(0, **{**ep, "metrics": {"states": 1.0}})
        assert len(store) == 0
        store.write_episode(0, **ep)
        with pytest.raises(FileExistsError):
            store.write_episode(0, **ep)
        with pytest.raises(RuntimeError, match="another process"):
            EpisodeStore.create(tmp_path, META)  # one writer at a time
    with pytest.raises(PermissionError):
        EpisodeStore.open(tmp_path).write_episode(1, **ep)


def test_meta_mismatch_on_resume_raises(tmp_path):
    EpisodeStore.create(tmp_path, META).close()
    with pytest.raises(ValueError, match=r"seed: store has 0, this run has 1"):
        EpisodeStore.create(tmp_path, {**META, "seed": 1})
    with pytest.raises(ValueError, match=r"env_kwargs"):
        EpisodeStore.create(tmp_path, {**META, "env_kwargs": {"random_goal": True}})
    EpisodeStore.create(tmp_path, dict(META)).close()  # the same configuration resumes


def test_corrupt_episode_names_the_file_and_others_stay_readable(tmp_path):
    with EpisodeStore.create(tmp_path, META) as store:
        for i in range(3):
            store.write_episode(i, **fake_episode(5, i))
    path = store.path(1)
    path.write_bytes(path.read_bytes()[:200])  # truncated
    with pytest.raises(ValueError, match=r"ep_000001\.npz.*delete it"):
        store.episode(1)
    with pytest.raises(ValueError, match=r"ep_000001\.npz"):
        store.load()
    with pytest.warns(UserWarning, match="skipping episode 1"):
        data = store.load(skip_corrupt=True)
    np.testing.assert_array_equal(data["episode_indices"], [0, 2])
    np.testing.assert_array_equal(data["states"][:5], store.episode(0)["states"])


# -- collection --------------------------------------------------------------------------------
def test_collect_resume_keeps_existing_files_and_workers_match(tmp_path, capsys):
    out = tmp_path / "pusht"
    main(collect_args(out, 3))
    store = EpisodeStore.open(out)
    first = {i: (store.path(i).stat().st_mtime_ns, store.path(i).read_bytes()) for i in range(3)}
    summary = main(collect_args(out, 6, "--workers", "2"))
    assert "3 of 6 episodes already on disk" in " ".join(capsys.readouterr().out.split())
    assert store.indices() == list(range(6))
    assert {i: (store.path(i).stat().st_mtime_ns, store.path(i).read_bytes()) for i in range(3)} == first
    # Parallel episodes equal those of a fresh in-process runner: data independent of --workers.
    runner = EpisodeRunner("uva_plan/PushT-v0", {}, "random", max_steps=30)
    for i in (0, 4):
        expected, stored = runner(i), store.episode(i)
        np.testing.assert_array_equal(stored["states"], expected["states"])
        np.testing.assert_array_equal(stored["actions"], expected["actions"])
        np.testing.assert_array_equal(stored["final_state"], expected["final_state"])
        assert stored["seed"] == i and stored["metrics"]["length"] == 30
        assert set(stored["metrics"]) >= {"success", "length", "max_coverage", "max_reward"}
    saved = json.loads((out / "collection.json").read_text())
    assert saved["n_episodes"] == summary["n_episodes"] == 6 and saved["n_collected_this_run"] == 3
    assert saved["success_ci95"] == list(wilson_interval(saved["n_success"], 6))
    assert saved["disk_bytes"] > 0 and saved["mean_length"] == 30.0
    assert set(store.normalizers()) == {"actions", "agent_pos", "state"}
    assert temp_files(out) == []
    with pytest.raises(ValueError, match="seed: store has 0, this run has 5"):
        main(collect_args(out, 6)[:-4] + ["--seed", "5", "--max-steps", "30"])


def test_collect_killed_midway_then_rerun_completes(tmp_path):
    out, n_episodes = tmp_path / "killed", 150
    args = collect_args(out, n_episodes)
    args[args.index("--max-steps") + 1] = "20"
    proc = subprocess.Popen([sys.executable, "-m", "uva_plan.data.collect", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    episode_dir, deadline = out / "episodes", time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if episode_dir.is_dir() and len(list(episode_dir.glob("ep_*.npz"))) >= 5:
            break
        time.sleep(0.005)
    assert proc.poll() is None, f"collect ended before it could be killed: {proc.stderr.read().decode()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    store = EpisodeStore.open(out)
    n_killed = len(store)
    assert 5 <= n_killed < n_episodes
    store.load()  # every file the killed run left is whole
    main(args)
    assert store.indices() == list(range(n_episodes)) and temp_files(out) == []
    assert len(store.load()["episode_ends"]) == n_episodes


def test_make_expert():
    env = EpisodeRunner("uva_plan/PushT-v0", {}, "random", max_steps=5).env
    a, b = make_expert("random", env, 3), make_expert("random", env, 3)
    np.testing.assert_array_equal(a.act(env), b.act(env))
    with pytest.raises(ValueError, match="unknown expert 'nope'"):
        make_expert("nope", env, 0)


def test_exploring_pusht_expert_plays_other_primitives_than_the_demonstrator():
    """explore=1 executes a random primitive at every decision: from the same state its first
    primitive differs from the demonstrator's; explore=0 is the demonstrator, bit for bit."""
    import gymnasium as gym

    from uva_plan.envs.pusht_expert import PushTExpert

    env = gym.make("uva_plan/PushT-v0")
    env.reset(seed=7)
    state = np.array(env.unwrapped._read_physical())

    def first_plan(expert):
        env.unwrapped.set_state(state)
        expert.reset(env)
        expert.act(env)
        return np.array(expert._queue)

    demo = first_plan(PushTExpert(seed=0))
    np.testing.assert_array_equal(first_plan(PushTExpert(seed=0, explore=0.0)), demo)
    plays = [first_plan(PushTExpert(seed=s, explore=1.0)) for s in range(3)]
    assert all(p.shape != demo.shape or not np.allclose(p, demo) for p in plays)
    assert make_expert("pusht_explore", env, 0).explore == 0.5
    with pytest.raises(ValueError, match="explore is a probability in \\[0, 1\\], got 1.5"):
        PushTExpert(explore=1.5)


def test_exploring_blockpush_oracle_detours_from_the_demonstrator():
    """explore=0 reproduces the oracle's actions exactly; explore > 0 makes straight-line
    detours (equal steps along one direction) and the episode still goes on under the oracle."""
    import gymnasium as gym

    from uva_plan.envs.blockpush_expert import BlockPushOracle

    def rollout(expert, n=60):
        env = gym.make("uva_plan/BlockPush-v0")
        env.reset(seed=3)
        expert.reset(env)
        actions = []
        for _ in range(n):
            actions.append(expert.act(env))
            env.step(actions[-1])
        return np.array(actions)

    demo = rollout(BlockPushOracle(seed=1))
    np.testing.assert_array_equal(rollout(BlockPushOracle(seed=1, explore=0.0)), demo)
    expert = BlockPushOracle(seed=1, explore=1.0)
    env = gym.make("uva_plan/BlockPush-v0")
    env.reset(seed=3)
    expert.reset(env)
    first = expert.act(env)
    detour = [first, *expert.detour]
    assert 4 <= len(detour) <= 12
    steps = np.diff(np.array(detour), axis=0)
    np.testing.assert_allclose(steps, np.broadcast_to(steps[0], steps.shape), atol=1e-9)
    assert not np.allclose(rollout(BlockPushOracle(seed=1, explore=0.06)), demo)
    assert make_expert("blockpush_explore", env, 0).explore == 0.06
    with pytest.raises(ValueError, match="explore is a probability"):
        BlockPushOracle(explore=-0.1)


# -- sampler -------------------------------------------------------------------------------------
def hand_made(with_final: bool = True) -> dict:
    """Episode 0 has 5 steps, episode 1 has 3; every value encodes (episode, t) as 100 e + t."""
    code = np.array([0, 1, 2, 3, 4, 100, 101, 102], dtype=np.float64)
    data = {"states": np.stack([code, -code, code], axis=1), "actions": np.stack([code, code + 0.5], axis=1),
            "episode_ends": np.array([5, 8])}
    if with_final:  # the state after the last action: t = T
        data["final_states"] = np.array([[5.0, -5.0, 5.0], [103.0, -103.0, 103.0]])
    return data


def test_sampler_windows_and_padding_exact():
    uva = SequenceSampler.uva(hand_made())
    assert len(uva) == 8
    s = uva[6]  # episode 1, t = 1
    assert (s["episode"], s["t"]) == (1, 1)
    np.testing.assert_array_equal(s["states"][:, 0], [100, 100, 100, 101, 103, 103, 103, 103])
    np.testing.assert_array_equal(s["frame_mask"], [True, True, True, False, True, True, True, True])
    np.testing.assert_array_equal(s["agent_pos"], s["states"][:, :2])
    np.testing.assert_array_equal(s["actions"][:, 0], [101] + [102] * 15)
    np.testing.assert_array_equal(s["action_mask"], [False, False] + [True] * 14)
    s = uva[1]  # episode 0, t = 1: frame 5 is the real final state, not padding
    np.testing.assert_array_equal(s["states"][:, 0], [0, 0, 0, 1, 5, 5, 5, 5])
    np.testing.assert_array_equal(s["frame_mask"], [True] * 3 + [False, False] + [True] * 3)

    dpc = SequenceSampler.dpc(hand_made())
    s = dpc[0]  # episode 0, t = 0
    np.testing.assert_array_equal(s["states"][:, 0], [0, 0])
    np.testing.assert_array_equal(s["frame_mask"], [True, False])
    np.testing.assert_array_equal(s["actions"][:, 0], [0, 0, 1, 2, 3, 4] + [4] * 10)
    np.testing.assert_array_equal(s["action_mask"], [True] + [False] * 5 + [True] * 10)
    s = dpc[5]  # episode 1, t = 0: nothing from episode 0
    np.testing.assert_array_equal(s["states"][:, 0], [100, 100])
    np.testing.assert_array_equal(s["actions"][:3, 1], [100.5, 100.5, 101.5])

    no_final = SequenceSampler.uva(hand_made(with_final=False))
    np.testing.assert_array_equal(no_final[1]["states"][:, 0], [0, 0, 0, 1, 4, 4, 4, 4])
    np.testing.assert_array_equal(no_final[1]["frame_mask"], [True] * 3 + [False] + [True] * 4)


@pytest.mark.parametrize("offsets, action_offset, n_actions",
                         [(UVA_FRAME_OFFSETS, 0, 16), (DPC_FRAME_OFFSETS, -1, 16), ((-2, 3), 2, 3)])
def test_sampler_matches_a_naive_loop(offsets, action_offset, n_actions):
    sampler = SequenceSampler(hand_made(), offsets, action_offset, n_actions)
    lengths = {0: 5, 1: 3}
    batch = sampler.batch(np.arange(len(sampler)))
    for i in range(len(sampler)):
        e, t = int(batch["episode"][i]), int(batch["t"][i])
        for j, off in enumerate(offsets):
            k = min(max(t + off, 0), lengths[e])
            assert batch["states"][i, j, 0] == 100 * e + k
            assert batch["frame_mask"][i, j] == (k != t + off)
        for j in range(n_actions):
            k = min(max(t + action_offset + j, 0), lengths[e] - 1)
            assert batch["actions"][i, j, 0] == 100 * e + k
            assert batch["action_mask"][i, j] == (k != t + action_offset + j)


def test_sampler_restricted_to_episodes_and_split():
    only_1 = SequenceSampler.dpc(hand_made(), episodes=[1])
    assert len(only_1) == 3 and {only_1[i]["episode"] for i in range(3)} == {1}
    train, val = train_val_split(10, 0.2, seed=0)
    assert len(val) == 2 and sorted(train + val) == list(range(10))
    assert train_val_split(10, 0.2, seed=0) == (train, val) and train_val_split(10, 0.0, 0)[1] == []
    assert len(train_val_split(2, 0.01, seed=1)[1]) == 1
    with pytest.raises(ValueError, match="episodes must lie"):
        SequenceSampler.dpc(hand_made(), episodes=[2])


def test_sampler_frames_match_render_states(tmp_path):
    runner = EpisodeRunner("uva_plan/PushT-v0", {}, "random", max_steps=10)
    with EpisodeStore.create(tmp_path, {"env_id": "uva_plan/PushT-v0", "physical_dim": P,
                                        "action_dim": A}) as store:
        for i in range(2):
            store.write_episode(i, **runner(i))
    sampler = SequenceSampler.uva(store, render_size=32, env_cls=PushTEnv)
    batch = sampler.batch([0, 9, 15])
    assert batch["frames"].shape == (3, 8, 32, 32, 3) and batch["frames"].dtype == np.uint8
    expected = PushTEnv.render_states(batch["states"].reshape(-1, P), 32).reshape(3, 8, 32, 32, 3)
    np.testing.assert_array_equal(batch["frames"], expected)
    np.testing.assert_array_equal(sampler[9]["frames"], batch["frames"][1])


# -- normalisers and metrics ---------------------------------------------------------------------
def test_normalizer_round_trip_and_constant_dims(tmp_path):
    x = np.random.default_rng(0).uniform(-3, 7, size=(50, 3))
    x[:, 1] = 2.5  # constant dimension
    norm = MinMaxNormalizer.fit(x)
    y = norm.normalize(x)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y[:, [0, 2]].min(0), -1)
    np.testing.assert_allclose(y[:, [0, 2]].max(0), 1)
    np.testing.assert_array_equal(y[:, 1], 0.0)
    np.testing.assert_allclose(norm.unnormalize(y), x, rtol=0, atol=1e-12)
    back = MinMaxNormalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    np.testing.assert_array_equal(back.low, norm.low)
    np.testing.assert_array_equal(back.high, norm.high)
    t = torch.as_tensor(x, dtype=torch.float32)
    assert torch.allclose(norm.unnormalize(norm.normalize(t)), t, atol=1e-5)
    with pytest.raises(ValueError, match="expected"):
        norm.normalize(x[:, :2])

    with EpisodeStore.create(tmp_path, META) as store:
        for i in range(2):
            store.write_episode(i, **fake_episode(6, i))
        fitted = store.finalize()
    loaded = EpisodeStore.open(tmp_path).normalizers()
    data = store.load()
    for name, values in (("actions", data["actions"]), ("agent_pos", data["states"][:, :2]),
                         ("state", data["states"])):
        np.testing.assert_array_equal(loaded[name].low, values.min(0))
        np.testing.assert_array_equal(loaded[name].high, fitted[name].high)


def test_wilson_interval_known_values():
    np.testing.assert_allclose(wilson_interval(0, 10), (0.0, 0.2775), atol=5e-5)
    np.testing.assert_allclose(wilson_interval(5, 10), (0.2366, 0.7634), atol=5e-5)
    np.testing.assert_allclose(wilson_interval(10, 10), (0.7225, 1.0), atol=5e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_paired_comparison_counts_discordant_seeds_and_tests_them_exactly():
    def run(successes, seeds=range(10)):
        return [{"seed": s, "success": bool(x)} for s, x in zip(seeds, successes)]

    base = run([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    other = run([1, 0, 0, 1, 1, 1, 1, 1, 1, 0])
    c = paired_comparison(base, other)
    assert (c["n"], c["base"], c["other"], c["only_base"], c["only_other"]) == (10, 3, 7, 2, 6)
    assert c["difference"] == pytest.approx(0.4)
    assert c["mcnemar_p"] == pytest.approx(2 * (1 + 8 + 28) / 256)  # two-sided binomial, 2 of 8 discordant
    assert paired_comparison(base, base)["mcnemar_p"] == 1.0  # nothing discordant
    assert paired_comparison(base, run([1] * 5, seeds=range(5, 10)))["n"] == 5  # only shared seeds count
    with pytest.raises(ValueError, match="share no seed"):
        paired_comparison(base, run([1], seeds=[99]))
    with pytest.raises(ValueError, match="seed 0 twice"):
        paired_comparison(base + base[:1], other)
    with pytest.raises(ValueError, match="'task_success'"):
        paired_comparison(base, other, key="task_success")


def test_concat_windows_keep_the_order_of_the_indices():
    from uva_plan.data.windows import ConcatWindows

    class Part:
        def __init__(self, values):
            self.values = torch.tensor(values)

        def __len__(self):
            return len(self.values)

        def batch(self, indices):
            return {"x": self.values[torch.as_tensor(indices)]}

    windows = ConcatWindows([Part([10, 11, 12]), Part([20, 21])])
    assert len(windows) == 5
    assert windows.batch([4, 0, 3, 2])["x"].tolist() == [21, 10, 20, 12]
    with pytest.raises(IndexError, match=r"window indices must lie in \[0, 5\)"):
        windows.batch([5])
    with pytest.raises(ValueError, match="at least one part"):
        ConcatWindows([])


def test_rendered_frames_render_each_part_with_its_env():
    from uva_plan.data.frames import RenderedFrames, episode_frames

    data = {"states": np.zeros((6, 20)), "actions": np.zeros((6, 2)), "episode_ends": np.array([3, 6]),
            "final_states": np.zeros((2, 20))}
    assert episode_frames(data, [1]).shape == (4, 20) and episode_frames(data, []).shape == (0, 20)

    class Env:
        def __init__(self, value):
            self.value = value

        def render_states(self, states, size):
            return np.full((len(states), size, size, 3), self.value, np.uint8)

    frames = RenderedFrames([(np.zeros((2, 20)), Env(1)), (np.zeros((3, 20)), Env(2))], render_size=4)
    batch = frames.batch([4, 0, 2])["frames"]
    assert len(frames) == 5 and batch.shape == (3, 4, 4, 3) and batch[:, 0, 0, 0].tolist() == [2, 1, 2]
