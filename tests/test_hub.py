"""Exporting trained checkpoints into a pretrained directory and loading them back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.test_models import one_thread  # noqa: F401  (autouse: one torch thread)
from tests.test_train import compose_train, store, vae_run  # noqa: F401  (fixtures)
from uva_plan.checkpoint import MODEL_FILE, load_model, read_meta, save_checkpoint
from uva_plan.hub import export, pretrained_checkpoint, total_bytes
from uva_plan.pretrained import load_world_model
from uva_plan.train import train


@pytest.fixture(scope="module")
def uva_run(vae_run, store, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("uva")
    train(compose_train(["train=uva_tiny", f"data.stores=[{store}]", f"vae_checkpoint={vae_run}",
                         f"out_dir={out}", "steps=2", "log_every=1", "val_every=2"]))
    return out / "final"


def test_export_fp16_and_load_a_world_model(vae_run, uva_run, tmp_path):  # noqa: F811
    root = tmp_path / "pretrained"
    with pytest.raises(FileNotFoundError, match="make pretrained"):
        load_world_model("pusht", root)
    with pytest.raises(FileNotFoundError, match="no pretrained weights 'vae'"):
        export("pusht/uva", uva_run, root=root)  # the VAE must be exported first
    export("vae", vae_run, root=root)
    export("pusht/uva", uva_run, root=root)
    fp32 = (uva_run / MODEL_FILE).stat().st_size
    assert (root / "pusht" / "uva" / MODEL_FILE).stat().st_size < 0.6 * fp32
    assert total_bytes(root) == sum(p.stat().st_size for p in root.glob("**/*") if p.is_file())

    world = load_world_model("pusht", root)
    original, _ = load_model(uva_run)
    for a, b in zip(world.uva.state_dict().values(), original.state_dict().values()):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, atol=2e-3, rtol=1e-3)  # float16 rounding only
    obs = {"image": np.zeros((world.image_size,) * 2 + (3,), np.uint8), "agent_pos": np.array([200.0, 300.0])}
    context = world.context([obs] * world.n_history)
    assert world.rollout(context, torch.zeros(2, world.horizon, 2)).latents.shape[0] == 2


def test_export_refuses_wrong_kind_env_and_vae(vae_run, uva_run, tmp_path):  # noqa: F811
    root = tmp_path / "pretrained"
    with pytest.raises(ValueError, match="'uva' checkpoint; 'vae' needs a 'vae'"):
        export("vae", uva_run, root=root)
    with pytest.raises(ValueError, match="got 'pusht/policy'"):
        export("pusht/policy", uva_run, root=root)
    with pytest.raises(ValueError, match="trained on uva_plan/PushT-v0"):
        export("blockpush/uva", uva_run, root=root)
    # A VAE other than the one the UVA learnt on is refused.
    other, _ = load_model(vae_run)
    with torch.no_grad():
        next(other.parameters()).add_(0.1)
    other_dir = save_checkpoint(tmp_path / "other", other, kind="vae", config=other.config.__dict__,
                                normalizers=None, env_id=None, extra={}, step=1)
    export("vae", other_dir, root=root)
    with pytest.raises(ValueError, match="trained on latents of the VAE"):
        export("pusht/uva", uva_run, root=root)
    with pytest.raises(FileNotFoundError, match="shipped: \\['vae'\\]"):
        pretrained_checkpoint("pusht/uva", root)


def test_export_takes_a_model_trained_on_the_shipped_vae_itself(vae_run, uva_run, tmp_path):  # noqa: F811
    """A model that learnt on the shipped (fp16) VAE's latents exports; its record names that VAE."""
    root = tmp_path / "pretrained"
    shipped_vae = export("vae", vae_run, root=root)
    shipped_sha = read_meta(shipped_vae)["files"][MODEL_FILE]["sha256"]
    model, _ = load_model(uva_run)
    meta = read_meta(uva_run)
    extra = {**meta["extra"], "vae": {**meta["extra"]["vae"], "weights_sha256": shipped_sha}}
    on_shipped = save_checkpoint(tmp_path / "on_shipped", model, kind="uva", config=model.config.__dict__,
                                 normalizers=None, env_id=meta["env_id"], extra=extra, step=1)
    out = read_meta(export("pusht/uva", on_shipped, root=root))
    assert out["extra"]["vae"]["weights_sha256"] == shipped_sha
    assert out["extra"]["vae"]["trained_on_weights_sha256"] == shipped_sha
