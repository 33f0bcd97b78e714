"""What storing the shipped weights in float16 costs: the trained float32 checkpoints against
their fp16 exports in uva_plan/pretrained/, on the same held-out inputs and the same noise.

    python benchmarks/fp16_quality.py --env pusht --uva outputs/train/uva_pusht/final \\
        --vae outputs/train/vae/final --store data/pusht

Reports VAE reconstruction PSNR of both, and UVA forward-dynamics latent MSE to the truth for
both (same windows, same generator seed), plus the mean difference between the two models'
predictions. Writes outputs/bench/fp16_quality_<env>.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uva_plan.dynamics import UVAWorldModel  # noqa: E402
from uva_plan.checkpoint import read_meta, resolve_checkpoint  # noqa: E402
from uva_plan.data.store import EpisodeStore  # noqa: E402
from uva_plan.evaluate import held_out_windows  # noqa: E402
from uva_plan.pretrained import load_world_model  # noqa: E402
from uva_plan.io import git_revision  # noqa: E402
from uva_plan.models.vae import psnr  # noqa: E402
from uva_plan.report import write_json  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", required=True, choices=["pusht", "blockpush"])
    parser.add_argument("--uva", required=True)
    parser.add_argument("--vae", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--n-windows", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fp32 = UVAWorldModel.load(args.uva, args.vae)
    fp16 = load_world_model(args.env)
    meta = read_meta(resolve_checkpoint(args.uva))
    windows = held_out_windows(fp32, EpisodeStore.open(args.store), meta, args.n_windows, args.seed, args.vae)
    frames = windows["frames"].reshape(-1, *windows["frames"].shape[2:])
    n = fp32.n_frames
    revision = git_revision()  # read before the run: the code that runs
    result = {}
    for name, model in (("float32", fp32), ("float16_export", fp16)):
        recon = model.decode(model.encode(frames))
        # Both models see the float32 VAE's latents, so the comparison isolates the UVA weights.
        with torch.inference_mode():
            pred = model.uva.forward_dynamics({"latents": windows["latents"][:, :n]}, windows["actions"],
                                              generator=torch.Generator().manual_seed(args.seed))
        result[name] = {"vae_psnr_db": psnr(recon, frames),
                        "fd_latent_mse": float((pred - windows["latents"][:, n:]).square().mean())}
        result[name + "_pred"] = pred
    diff = float((result.pop("float32_pred") - result.pop("float16_export_pred")).square().mean())
    result["fd_prediction_mse_between_the_two"] = diff
    table = Table(title=f"float16 export vs float32 ({args.env}, {len(windows['latents'])} held-out windows)")
    for col in ("weights", "VAE PSNR (dB)", "forward-dynamics latent MSE"):
        table.add_column(col)
    for name in ("float32", "float16_export"):
        table.add_row(name, f"{result[name]['vae_psnr_db']:.3f}", f"{result[name]['fd_latent_mse']:.5f}")
    Console().print(table)
    print(f"mean squared difference between the two models' predictions: {diff:.2e}")
    out = Path("outputs/bench") / f"fp16_quality_{args.env}.json"
    write_json(out, result, config=vars(args), revision=revision)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
