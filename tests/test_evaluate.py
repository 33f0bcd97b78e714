"""The UVA evaluation command end to end on a tiny store, VAE and UVA (seconds)."""

from __future__ import annotations

import json

import numpy as np

from tests.test_models import one_thread  # noqa: F401  (autouse: one torch thread)
from tests.test_train import compose_train, store, vae_run  # noqa: F401  (fixtures)
from uva_plan.evaluate import main
from uva_plan.train import train


def test_evaluate_writes_every_figure(vae_run, store, tmp_path):  # noqa: F811
    run = tmp_path / "uva"
    train(compose_train(["train=uva_tiny", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                         f"out_dir={run}", "steps=2", "log_every=1", "val_every=2"]))
    out = tmp_path / "eval.json"
    result = main(["--uva", str(run / "final"), "--store", str(store), "--n-windows", "5", "--episodes", "1",
                   "--latency-batches", "2", "--threads", "1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["git_revision"] and saved["config"]["n_windows"] == 5 and saved["env_id"] == result["env_id"]
    dyn = saved["dynamics"]
    assert dyn["n_windows"] == 5
    assert dyn["copy_last_frame"]["latent_mse"] > 0
    for name in ("forward_dynamics", "video_prediction"):  # a 2-step UVA is far from the truth
        ratio = dyn[name]["latent_mse"] / dyn["copy_last_frame"]["latent_mse"]
        assert np.isclose(dyn[name]["latent_mse_vs_copy_last"], ratio) and len(dyn[name]["decoded_psnr_db_per_frame"]) == 4
    assert 0 < saved["inverse_dynamics"]["inverse_dynamics"]["mean_px"] < 800
    assert saved["vae"]["n_frames"] == 5 * 8 and np.isfinite(saved["vae"]["psnr_db"])
    assert set(saved["latency"]["batch_2"]) == {"policy_ms", "policy_video_decode_ms"}
    assert saved["policy"]["n_episodes"] == 1 and (tmp_path / "eval" / "policy" / "results.json").exists()


def test_evaluate_dpc_and_state_head(vae_run, store, tmp_path):  # noqa: F811
    from uva_plan.evaluate_dpc import main as evaluate_dpc

    dpc, head = tmp_path / "dpc", tmp_path / "head"
    train(compose_train(["train=dpc_tiny", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                         f"out_dir={dpc}", "steps=2", "log_every=1", "val_every=2"]))
    train(compose_train(["train=state_head_tiny", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                         f"out_dir={head}", "steps=2", "log_every=1", "val_every=2"]))
    out = tmp_path / "dpc_eval.json"
    evaluate_dpc(["--dpc", str(dpc / "final"), "--episodes", "1", "--n-candidates", "6", "--diversity-states", "2",
                  "--state-head", str(head / "final"), "--store", str(store), "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["latency"]["n_candidates"] == 6 and saved["latency"]["median_ms"] > 0
    assert saved["diversity"]["n_states"] == 2 and saved["diversity"]["mean_endpoint_spread_px"] >= 0
    assert saved["policy"]["n_episodes"] == 1 and "mean_score" in saved["policy"]
    err = saved["state_head"]["object0"]
    assert 0 < err["xy_mean_px"] < 800 and 0 <= err["angle_mean_deg"] <= 180

    # The UVA evaluation reads the same head on imagined frames.
    run = tmp_path / "uva"
    train(compose_train(["train=uva_tiny", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                         f"out_dir={run}", "steps=2", "log_every=1", "val_every=2"]))
    result = main(["--uva", str(run / "final"), "--store", str(store), "--n-windows", "3", "--episodes", "0",
                   "--skip", "vae", "inverse", "latency", "--state-head", str(head / "final"),
                   "--n-steps", "1", "--head-steps", "2", "--temperature", "0.01",
                   "--threads", "1", "--out", str(tmp_path / "e.json")])
    assert (result["dynamics"]["n_steps"], result["dynamics"]["head_steps"]) == (1, 2)
    assert set(result["state_head"]) == {"n_windows", "real", "forward_dynamics", "copy_last_frame"}
    assert result["state_head"]["real"]["n_frames"] == 3 * 4


def test_evaluate_state_mode_dpc_reads_the_simulator_state(store, tmp_path):  # noqa: F811
    from uva_plan.evaluate_dpc import main as evaluate_dpc

    run = tmp_path / "dpc_state"
    train(compose_train(["train=dpc_tiny", f"data.stores=[{store}]", "model.obs_mode=state",
                         f"out_dir={run}", "steps=2", "log_every=1", "val_every=2"]))
    result = evaluate_dpc(["--dpc", str(run / "final"), "--episodes", "1", "--n-candidates", "3",
                           "--diversity-states", "1", "--out", str(tmp_path / "e.json")])
    assert result["policy"]["n_episodes"] == 1 and result["diversity"]["n_states"] == 1
