"""Tests for the training loop, checkpoints and the latent cache.

Most runs use ``TinyFrameNet``, a deterministic MLP with the model interface (``config``,
``from_config``, ``compute_loss``, and the VAE's ``encode`` / ``fit_scaling``), plugged into
the real VAE data pipeline with ``model_class``; subprocesses import it from this module.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from torch import nn

from uva_plan import checkpoint as ckpt
from uva_plan.checkpoint import (
    KINDS,
    CheckpointError,
    check_config,
    latest_valid_checkpoint,
    load_checkpoint,
    load_model,
    read_meta,
    read_trainer_state,
    save_checkpoint,
    save_training_checkpoint,
)
from uva_plan.data import EpisodeStore, SequenceSampler
from uva_plan.data.latents import frame_rows
from uva_plan.envs.pusht import STATE_DIM
from uva_plan.io import TMP_PREFIX
from uva_plan.train import EMA, TrainConfig, batch_indices, train

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
ENV_ID = "uva_plan/PushT-v0"


# -- a tiny deterministic model with the model interface ----------------------------------------
@dataclass
class TinyConfig:
    image_size: int = 8
    hidden: int = 16
    noise: float = 0.05  # input noise from the global torch RNG: resume must restore its stream
    sleep_s: float = 0.0  # slows steps down so that a test can kill a run midway
    scale: float = 1.0  # set by fit_scaling


class TinyFrameNet(nn.Module):
    """An MLP autoencoder of frames."""

    def __init__(self, config: TinyConfig):
        super().__init__()
        self.config = config
        pixels = 3 * config.image_size ** 2
        self.enc = nn.Linear(pixels, config.hidden)
        self.dec = nn.Linear(config.hidden, pixels)

    @classmethod
    def from_config(cls, config: dict) -> TinyFrameNet:
        return cls(TinyConfig(**config))

    @staticmethod
    def _pixels(frames: torch.Tensor) -> torch.Tensor:
        return frames.float().flatten(1) / 127.5 - 1.0  # uint8 (B, S, S, 3) -> (B, 3 S S)

    def encode(self, frames: torch.Tensor, scaled: bool = True) -> torch.Tensor:
        z = torch.tanh(self.enc(self._pixels(frames)))
        return z * self.config.scale if scaled else z

    def fit_scaling(self, latents: torch.Tensor) -> None:
        self.config = replace(self.config, scale=1.0 / latents.std().item())

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        if self.config.sleep_s:
            time.sleep(self.config.sleep_s)
        x = self._pixels(batch["frames"])
        recon = self.dec(torch.tanh(self.enc(x + self.config.noise * torch.randn_like(x))))
        loss = F.mse_loss(recon, x)
        return loss, {"loss": loss.item()}


# -- fixtures -------------------------------------------------------------------------------------
def make_store(root: Path, n_episodes: int = 6, n_steps: int = 24, seed: int = 0) -> Path:
    """A Push-T store of random-walk episodes (states need only be renderable)."""
    meta = {"env_id": ENV_ID, "env_kwargs": {}, "expert": "random_walk", "seed": seed,
            "physical_dim": STATE_DIM, "action_dim": 2}
    rng = np.random.default_rng(seed)
    with EpisodeStore.create(root, meta) as store:
        for i in range(n_episodes):
            agent = np.cumsum(rng.normal(0, 8, (n_steps + 1, 2)), axis=0) + rng.uniform(150, 350, 2)
            states = np.zeros((n_steps + 1, STATE_DIM))
            states[:, :2] = agent
            states[:, 4:6] = rng.uniform(150, 350, 2)
            states[:, 6] = rng.uniform(0, 2 * np.pi)
            states[:, 10:13] = [256.0, 256.0, np.pi / 4]
            store.write_episode(i, states[:-1], agent[1:], states[-1], np.zeros(n_steps), seed=seed + i)
        store.finalize()
    return root


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("data") / "pusht")


def tiny_overrides(store: Path, out: Path, *extra: str, sleep_s: float = 0.0) -> list[str]:
    """Hydra overrides of the TinyFrameNet run used throughout (the CLI takes the same list)."""
    return ["train=vae_tiny", "~model", f"+model={{image_size:8,hidden:16,sleep_s:{sleep_s}}}",
            "model_class=tests.test_train:TinyFrameNet", f"data.stores=[{store}]", "data.scaling_samples=32",
            f"out_dir={out}", "batch_size=8", "steps=20", "lr=0.003", "warmup_steps=2", "checkpoint_every=5",
            "val_every=10", "val_batches=1", "log_every=5", "threads=1", "ema_decay=0.9", *extra]


def compose_train(overrides: list[str]):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            return compose(config_name="train", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


def run_tiny(store: Path, out: Path, *extra: str) -> dict:
    return train(compose_train(tiny_overrides(store, out, *extra)))


def metric_rows(out: Path, split: str = "train") -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == split]


def weights(path: Path, name: str = "model.safetensors") -> dict[str, torch.Tensor]:
    return ckpt.read_weights(path / name)


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


def tiny_model(seed: int = 0) -> TinyFrameNet:
    torch.manual_seed(seed)
    return TinyFrameNet(TinyConfig())


def save_tiny(path: Path, model: nn.Module, step: int, kind: str = "vae", env_id: str | None = ENV_ID,
              normalizers: dict | None = None, **kw) -> Path:
    return save_checkpoint(path, model, kind=kind, config={"image_size": 8, "hidden": 16},
                           normalizers=normalizers, env_id=env_id, extra={}, step=step, **kw)


# -- configuration ---------------------------------------------------------------------------------
@pytest.mark.parametrize("option", sorted(p.stem for p in (CONFIGS / "train").glob("*.yaml")))
def test_every_train_option_composes_and_validates(option, tmp_path):
    cfg = TrainConfig.from_dict(OmegaConf.to_container(
        compose_train([f"train={option}", f"out_dir={tmp_path}"]), resolve=True))
    assert cfg.kind in KINDS and cfg.steps > 0
    assert (cfg.weight_decay, cfg.betas) == (0.02, (0.9, 0.95))  # the UVA paper's AdamW
    assert 1e-5 <= cfg.lr <= 1e-3  # 1e-4 (the paper) to 5e-4 (short runs from scratch: see the configs)


def test_config_validation_names_the_bad_value(tmp_path):
    base = OmegaConf.to_container(compose_train(["train=vae_tiny", f"out_dir={tmp_path}"]), resolve=True)
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig.from_dict({**base, "batch_size": 0})
    with pytest.raises(ValueError, match="unknown training config keys"):
        TrainConfig.from_dict({**base, "lerning_rate": 1.0})
    with pytest.raises(ValueError, match="kind"):
        TrainConfig.from_dict({**base, "kind": "gan"})
    with pytest.raises(ValueError, match=r"unknown data config keys \['joint_uva'\] for kind='vae'"):
        TrainConfig.from_dict({**base, "data": {**base["data"], "joint_uva": "outputs/uva"}})
    with pytest.raises(ValueError, match="data.joint_window_stride must be an int >= 1"):
        TrainConfig.from_dict({**base, "kind": "pose_head", "data": {"stores": ["s"], "joint_window_stride": 0}})


def test_batch_indices_are_a_function_of_seed_and_step():
    n, b = 10, 4
    first_epochs = np.concatenate([batch_indices(n, b, seed=3, step=s) for s in range(5)])  # 20 = 2 epochs
    assert sorted(first_epochs[:10]) == list(range(10)) and sorted(first_epochs[10:]) == list(range(10))
    np.testing.assert_array_equal(batch_indices(n, b, 3, 7), batch_indices(n, b, 3, 7))
    assert not np.array_equal(batch_indices(n, b, 3, 0), batch_indices(n, b, 4, 0))


def test_sampler_row_indices_gather_the_batch_states(store):
    data = EpisodeStore.open(store).load()
    sampler = SequenceSampler.uva(data, episodes=[1, 3])
    idx = np.arange(0, len(sampler), 5)
    rows = sampler.row_indices(idx)
    np.testing.assert_array_equal(sampler.frame_table[rows], sampler.batch(idx)["states"])
    np.testing.assert_array_equal(frame_rows(data), sampler.frame_table)
    assert len(frame_rows(data)) == len(data["states"]) + len(data["episode_ends"])  # + final states


# -- the loop ----------------------------------------------------------------------------------------
def test_tiny_run_trains_and_writes_a_loadable_model(store, tmp_path):
    out = tmp_path / "run"
    summary = run_tiny(store, out, "steps=40", "val_every=20")
    losses = [r["loss"] for r in metric_rows(out)]
    assert [r["step"] for r in metric_rows(out)] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert losses[-1] < 0.7 * losses[0], losses
    assert [r["step"] for r in metric_rows(out, "val")] == [20, 40]
    assert summary["step"] == 40 and summary["final"] == str(out / "final")
    model, meta = load_model(out / "final", expected_kind="vae", expected_env_id=ENV_ID, model_class=TinyFrameNet)
    assert meta["step"] == 40 and meta["config"]["scale"] != 1.0  # fit_scaling ran before the save
    assert model.config.scale == meta["config"]["scale"] and not model.training
    assert meta["extra"]["train_config"]["lr"] == 0.003 and meta["extra"]["model_class"].endswith("TinyFrameNet")
    assert not (out / "final" / "trainer.pt").exists()
    assert sorted(p.name for p in (out / "ckpt").iterdir()) == ["latest.json", "step_00000035", "step_00000040"]
    assert json.loads((out / "ckpt" / "latest.json").read_text())["step"] == 40
    # A finished run reruns as a no-op; a changed training config is refused, naming the key.
    assert run_tiny(store, out, "steps=40", "val_every=20")["step"] == 40
    with pytest.raises(CheckpointError, match=r"lr: checkpoint has 0.003, wanted 0.001"):
        run_tiny(store, out, "steps=40", "val_every=20", "lr=0.001")
    with pytest.raises(ValueError, match="resume=false"):
        run_tiny(store, out, "steps=40", "val_every=20", "resume=false")


def test_time_budget_stops_cleanly_and_rerun_matches_uninterrupted(store, tmp_path):
    run_tiny(store, tmp_path / "ref", "steps=8")
    first = run_tiny(store, tmp_path / "cut", "steps=8", "max_minutes=1e-6")  # stops after one step
    assert first["stopped_early"] and latest_valid_checkpoint(tmp_path / "cut" / "ckpt").name == "step_00000001"
    assert not (tmp_path / "cut" / "final").exists()
    cut = read_meta(tmp_path / "cut" / "ckpt" / "step_00000001")["extra"]["compute"]
    run_tiny(store, tmp_path / "cut", "steps=8")
    for name in ("model.safetensors", "raw.safetensors"):
        assert_same_weights(weights(tmp_path / "ref" / "ckpt" / "step_00000008", name),
                            weights(tmp_path / "cut" / "ckpt" / "step_00000008", name))
    assert [r["step"] for r in metric_rows(tmp_path / "cut")] == [5, 8]
    # The cost is carried across the resume: the finished run's meta counts both invocations.
    done = read_meta(tmp_path / "cut" / "final")["extra"]["compute"]
    assert 0 < cut["cpu_hours"] < done["cpu_hours"] and 0 < cut["wall_hours"] < done["wall_hours"]


def test_resume_reads_the_n_updates_ema_format_and_data_keys_the_kind_does_not_read(store, tmp_path):
    """A resumable checkpoint whose trainer.pt holds the EMA counters {decay, n_updates} (n
    updates continue as EMAModel's optimisation step n + 1) and whose recorded data config has
    keys the kind's data config lacks resumes, and ends with the uninterrupted run's weights."""
    run_tiny(store, tmp_path / "ref", "steps=8")
    cut = tmp_path / "cut"
    run_tiny(store, cut, "steps=8", "max_minutes=1e-6")  # stops after one step
    step = cut / "ckpt" / "step_00000001"
    trainer = torch.load(step / "trainer.pt", weights_only=True)
    assert trainer["ema"]["optimization_step"] == 1
    trainer["ema"] = {"decay": trainer["ema"]["decay"], "n_updates": 0}
    buffer = io.BytesIO()
    torch.save(trainer, buffer)
    (step / "trainer.pt").write_bytes(buffer.getvalue())
    meta = json.loads((step / "meta.json").read_text())
    meta["files"]["trainer.pt"] = {"bytes": len(buffer.getvalue()),
                                   "sha256": hashlib.sha256(buffer.getvalue()).hexdigest()}
    meta["extra"]["train_config"]["data"].update(imagined_uva=None, imagined_window_stride=2, play_stores=[],
                                                 joint_uva=None, joint_window_stride=2)
    (step / "meta.json").write_text(json.dumps(meta))
    run_tiny(store, cut, "steps=8")
    for name in ("model.safetensors", "raw.safetensors"):
        assert_same_weights(weights(tmp_path / "ref" / "ckpt" / "step_00000008", name),
                            weights(cut / "ckpt" / "step_00000008", name))
    ema = EMA(tiny_model(), decay=0.9)
    with pytest.raises(CheckpointError, match=r"EMA state \['steps'\] is neither"):
        ema.load(tiny_model().state_dict(), {"steps": 3})


def _cli(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def test_kill_and_resume_matches_uninterrupted_run(store, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    run_tiny(store, reference)
    args = ["-m", "uva_plan.train", *tiny_overrides(store, killed, sleep_s=0.1)]
    proc = _cli(args)
    latest = killed / "ckpt" / "latest.json"
    deadline = time.monotonic() + 60
    while not (latest.exists() and json.loads(latest.read_text())["step"] >= 10):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the run never reached step 10"
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = latest_valid_checkpoint(killed / "ckpt").name
    assert killed_at in ("step_00000010", "step_00000015")

    resumed = _cli(args)
    output = resumed.communicate(timeout=120)[0]
    assert resumed.returncode == 0, output
    assert f"from {killed_at}" in output
    for name in ("model.safetensors", "raw.safetensors"):
        assert_same_weights(weights(reference / "ckpt" / "step_00000020", name),
                            weights(killed / "ckpt" / "step_00000020", name))
    assert_same_weights(weights(reference / "final"), weights(killed / "final"))
    assert [r["step"] for r in metric_rows(killed)] == [5, 10, 15, 20]  # no duplicates after the resume
    ref_losses = [r["loss"] for r in metric_rows(reference)]
    assert [r["loss"] for r in metric_rows(killed)] == ref_losses


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_with_two_gloo_processes(store, tmp_path):
    out = tmp_path / "ddp"
    args = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(_free_port()), "-m", "uva_plan.train",
            *tiny_overrides(store, out, "steps=6", "checkpoint_every=3", "log_every=3", "val_every=6")]
    proc = _cli(args)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, output
    meta = json.loads((out / "final" / "meta.json").read_text())
    assert meta["step"] == 6 and meta["extra"]["world_size"] == 2
    assert [r["step"] for r in metric_rows(out)] == [3, 6]  # rank 0 alone logs
    assert [r["step"] for r in metric_rows(out, "val")] == [6]
    assert sorted(p.name for p in (out / "ckpt").glob("step_*")) == ["step_00000003", "step_00000006"]


# -- checkpoints -------------------------------------------------------------------------------------
def test_checkpoint_round_trip_is_exact(tmp_path):
    model = tiny_model()
    ema = EMA(model, decay=0.5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    for _ in range(3):  # make the raw and EMA weights differ
        model.compute_loss({"frames": torch.randint(0, 256, (4, 8, 8, 3), dtype=torch.uint8)})[0].backward()
        optimizer.step()
        ema.update(model)
    path = save_tiny(tmp_path / "c", model, step=3, optimizer=optimizer, ema=ema,
                     normalizers={"actions": {"low": [0.0], "high": [1.0], "range_eps": 1e-4}})
    loaded, meta = load_model(path, expected_kind="vae", model_class=TinyFrameNet)
    frames = torch.randint(0, 256, (5, 8, 8, 3), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(loaded.encode(frames), ema.model.encode(frames))
    assert meta["step"] == 3 and meta["normalizers"]["actions"]["high"] == [1.0]
    assert meta["torch_version"] == torch.__version__ and meta["git_revision"]
    state = read_trainer_state(path)
    assert_same_weights(state["raw_weights"], model.state_dict())
    assert state["ema"] == {"decay": 0.5, "min_decay": 0.0, "optimization_step": 3, "update_after_step": 0,
                            "use_ema_warmup": False, "inv_gamma": 1.0, "power": 2 / 3} and state["step"] == 3
    fresh = torch.optim.AdamW(tiny_model(1).parameters(), lr=0.1)
    fresh.load_state_dict(state["optimizer"])
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])


def test_crash_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    ckpt_dir = tmp_path / "ckpt"
    model = tiny_model()
    save_training_checkpoint(ckpt_dir, model, step=5, kind="vae", config={}, normalizers=None, env_id=ENV_ID,
                             extra={}, optimizer=torch.optim.AdamW(model.parameters()))
    real_write = ckpt._write_synced

    def crash_on_meta(path, data):
        if path.name == "meta.json":
            raise OSError("disk full")
        real_write(path, data)

    monkeypatch.setattr(ckpt, "_write_synced", crash_on_meta)
    with pytest.raises(OSError, match="disk full"):
        save_training_checkpoint(ckpt_dir, tiny_model(1), step=10, kind="vae", config={}, normalizers=None,
                                 env_id=ENV_ID, extra={})
    monkeypatch.undo()
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["latest.json", "step_00000005"]
    # What a SIGKILL mid-save leaves: a temporary directory, never a candidate.
    (ckpt_dir / f"{TMP_PREFIX}step_00000010.123.abcd").mkdir()
    (ckpt_dir / f"{TMP_PREFIX}step_00000010.123.abcd" / "model.safetensors").write_bytes(b"half")
    assert latest_valid_checkpoint(ckpt_dir) == ckpt_dir / "step_00000005"
    state, meta = load_checkpoint(ckpt_dir)
    assert meta["step"] == 5
    assert_same_weights(state, model.state_dict())


def test_corrupt_checkpoint_names_the_file_and_falls_back(tmp_path):
    ckpt_dir = tmp_path / "ckpt"
    for step in (5, 10):
        save_training_checkpoint(ckpt_dir, tiny_model(step), step=step, kind="vae", config={}, normalizers=None,
                                 env_id=ENV_ID, extra={})
    newest = ckpt_dir / "step_00000010" / "model.safetensors"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights: same size, still parses
    newest.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"step_00000010/model\.safetensors is corrupt"):
        load_checkpoint(ckpt_dir / "step_00000010")
    with pytest.warns(UserWarning, match="skipping damaged checkpoint .*step_00000010"):
        assert latest_valid_checkpoint(ckpt_dir) == ckpt_dir / "step_00000005"
    with pytest.warns(UserWarning):
        assert load_checkpoint(ckpt_dir)[1]["step"] == 5
    (ckpt_dir / "step_00000005" / "meta.json").write_text('{"format_version": 1, "kind": ')
    with pytest.raises(CheckpointError, match=r"step_00000005/meta\.json is corrupt"):
        load_checkpoint(ckpt_dir / "step_00000005")
    (ckpt_dir / "step_00000005" / "meta.json").unlink()
    with pytest.raises(CheckpointError, match="meta.json is missing"):
        load_checkpoint(ckpt_dir / "step_00000005")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")
    garbage = tmp_path / "garbage.safetensors"  # a file that does not parse is named too
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(CheckpointError, match=r"cannot read .*garbage\.safetensors"):
        ckpt.read_weights(garbage)


def test_wrong_kind_env_and_format_version_are_refused(tmp_path):
    path = save_tiny(tmp_path / "c", tiny_model(), step=1)
    with pytest.raises(CheckpointError, match=r"is a 'vae' checkpoint, expected 'uva'"):
        load_checkpoint(path, expected_kind="uva")
    with pytest.raises(CheckpointError, match="trained on uva_plan/PushT-v0, expected uva_plan/BlockPush-v0"):
        load_checkpoint(path, expected_env_id="uva_plan/BlockPush-v0")
    load_checkpoint(save_tiny(tmp_path / "any", tiny_model(), step=1, env_id=None),
                    expected_env_id="uva_plan/BlockPush-v0")  # an env-agnostic model (a VAE of both envs)
    meta = json.loads((path / "meta.json").read_text())
    for version, word in ((0, "older"), (2, "newer")):
        (path / "meta.json").write_text(json.dumps({**meta, "format_version": version}))
        with pytest.raises(CheckpointError, match=f"format version {version}, {word}"):
            load_checkpoint(path)


def test_check_config_names_the_differing_keys():
    check_config({"a": 1, "b": {"c": [1, 2]}}, {"a": 1, "b": {"c": (1, 2)}})  # tuples and lists are equal
    with pytest.raises(CheckpointError) as err:
        check_config({"a": 1, "b": {"c": 2, "d": 3}}, {"a": 1, "b": {"c": 5}, "e": 0}, ignore=("a",))
    message = str(err.value)
    assert "b.c: checkpoint has 2, wanted 5" in message and "b.d" in message and "e:" in message
    assert "a:" not in message


# -- the real VAE, the latent cache and UVA ------------------------------------------------------------
@pytest.fixture(scope="module")
def vae_run(store, tmp_path_factory) -> Path:
    pytest.importorskip("uva_plan.models.vae")
    out = tmp_path_factory.mktemp("vae")
    train(compose_train(["train=vae_tiny", f"data.stores=[{store}]", f"out_dir={out}", "steps=3",
                         "checkpoint_every=3", "log_every=1", "val_every=3"]))
    return out / "final"


def test_tiny_vae_trains_and_fits_its_latent_scaling(vae_run):
    model, meta = load_model(vae_run, expected_kind="vae")
    assert meta["step"] == 3 and meta["config"]["scaling_factor"] != 1.0
    assert model.config.scaling_factor == meta["config"]["scaling_factor"]


def test_latent_cache_matches_the_vae_and_is_invalidated_by_another(vae_run, store, tmp_path, capsys):
    from uva_plan.data.latents import (
        LatentCacheError,
        cache_latents,
        ensure_latents,
        load_latents,
    )
    from uva_plan.envs import PushTEnv

    root = tmp_path / "store"
    make_store(root, n_episodes=3, n_steps=20, seed=1)
    npy = cache_latents(root, vae_run)
    latents, info = load_latents(root, expected_vae=vae_run)
    data = EpisodeStore.open(root).load()
    rows = frame_rows(data)
    assert npy == root / "latents.npy" and latents.dtype == np.float16 and latents.shape == (len(rows), 4, 8, 8)
    assert info["vae"]["step"] == 3 and info["render_size"] == 32
    vae, _ = load_model(vae_run)
    with torch.no_grad():
        direct = vae.encode(torch.from_numpy(PushTEnv.render_states(rows[[0, 21, 40]], 32))).numpy()
    np.testing.assert_allclose(latents[[0, 21, 40]].astype(np.float32), direct, rtol=1e-2, atol=1e-2)

    # Another VAE (same architecture, other weights) invalidates the cache.
    other_model = vae
    with torch.no_grad():
        next(other_model.parameters()).add_(0.1)
    other = save_checkpoint(tmp_path / "other_vae", other_model, kind="vae", config=_asdict(other_model.config),
                            normalizers=None, env_id=None, extra={}, step=7)
    with pytest.raises(LatentCacheError, match=r"encoded by the VAE at .*final \(step 3.*not by .*other_vae \(step 7"):
        load_latents(root, expected_vae=other)
    rebuilt, info = ensure_latents(root, other)
    assert "building the latent cache" in capsys.readouterr().out and info["vae"]["step"] == 7
    assert not np.array_equal(rebuilt, latents)
    # So does a change of the store (an episode added by a resumed collection).
    with EpisodeStore.create(root, EpisodeStore.open(root).meta) as writer:
        writer.write_episode(3, rows[:20], data["actions"][:20], rows[20], np.zeros(20), seed=9)
    with pytest.raises(LatentCacheError, match="has changed"):
        load_latents(root, expected_vae=other)


def _asdict(config) -> dict:
    from dataclasses import asdict

    return asdict(config)


def test_tiny_uva_trains_on_cached_latents(vae_run, store, tmp_path):
    pytest.importorskip("uva_plan.models.uva")
    out = tmp_path / "uva"
    summary = train(compose_train(["train=uva_tiny", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                                   f"out_dir={out}", "steps=2", "log_every=1", "val_every=2"]))
    assert summary["step"] == 2 and np.isfinite(summary["train"]["loss"])
    model, meta = load_model(out / "final", expected_kind="uva", expected_env_id=ENV_ID)
    assert meta["extra"]["vae"]["step"] == 3 and set(meta["normalizers"]) >= {"actions", "agent_pos"}
    assert model.config.width == 32 and not model.training


def test_uva_fine_tunes_from_a_checkpoint_on_demos_plus_play_data(vae_run, store, tmp_path):
    """init_from starts from another run's weights (a zero-step run reproduces them exactly);
    play_stores add training windows (and only training windows); both refuse misfits."""
    pytest.importorskip("uva_plan.models.uva")
    base = tmp_path / "base"
    train(compose_train(["train=uva_tiny", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                         f"out_dir={base}", "steps=2", "log_every=1", "val_every=2"]))
    play = make_store(tmp_path / "play", n_episodes=3, n_steps=24, seed=5)
    common = ["train=uva_tiny", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}", "log_every=1",
              f"data.play_stores=[{play}]", f"init_from={base / 'final'}"]
    # lr ~ 0 for one step: the EMA of the initial weights is the initial weights.
    tuned = train(compose_train([*common, f"out_dir={tmp_path / 'tuned'}", "steps=1", "lr=1e-12",
                                 "warmup_steps=0", "val_every=1"]))
    assert tuned["step"] == 1
    a, _ = load_checkpoint(base / "final")
    b, meta = load_checkpoint(tmp_path / "tuned" / "final")
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    assert meta["extra"]["train_config"]["data"]["play_stores"] == [str(play)]

    # The play windows join training only: the training set grows by the play store's windows.
    from uva_plan.data.windows import ConcatWindows
    from uva_plan.train import Dist
    from uva_plan.train.uva import build_uva
    cfg = TrainConfig.from_dict(OmegaConf.to_container(compose_train([*common, f"out_dir={tmp_path / 'z'}"]),
                                                     resolve=True))
    task = build_uva(cfg, Dist(rank=0, world=1))
    alone = build_uva(replace(cfg, data=replace(cfg.data, play_stores=[])), Dist(rank=0, world=1))
    assert isinstance(task.train, ConcatWindows) and len(task.val) == len(alone.val)
    n_play = len(SequenceSampler.uva(EpisodeStore.open(play).load(), episodes=range(3)))
    assert len(task.train) == len(alone.train) + n_play
    idx = np.array([len(task.train) - 1, 0, len(alone.train), 3])
    batch = task.train.batch(idx)
    first = alone.train.batch(np.array([0, 3]))
    torch.testing.assert_close(batch["latents"][[1, 3]], first["latents"])
    assert batch["actions"].shape[0] == 4

    wide = tmp_path / "wide"
    train(compose_train(["train=uva_tiny", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                         f"out_dir={wide}", "steps=1", "model.width=48", "log_every=1", "val_every=1"]))
    with pytest.raises(ValueError, match=r"init_from=.*wide.*does not fit"):
        train(compose_train([*common[:-1], f"init_from={wide / 'final'}", f"out_dir={tmp_path / 'x'}", "steps=1"]))
    with pytest.raises(CheckpointError, match="expected 'uva'"):
        train(compose_train([*common[:-1], f"init_from={vae_run}", f"out_dir={tmp_path / 'y'}", "steps=1"]))
