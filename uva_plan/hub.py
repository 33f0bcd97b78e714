"""Shipped weights: where they live under ``uva_plan/pretrained/`` and how a trained checkpoint is
exported there (loading them ready to plan with is ``uva_plan.pretrained``).

Layout (each a checkpoint directory: model.safetensors + meta.json, see ``checkpoint``)::

    uva_plan/pretrained/vae/                 the frame VAE shared by both environments
    uva_plan/pretrained/<env>/uva/           UVA trained on that environment's latents
    uva_plan/pretrained/<env>/dpc/           DP-C proposal policy          (when trained)
    uva_plan/pretrained/<env>/state_head/    object poses from one latent  (when trained)
    uva_plan/pretrained/<env>/state_head_imagined/   the same head, also trained on the UVA's
                                             imagined frames (uva_plan/data/imagined.py)

Weights are stored in float16 (``dtype``) and load back into float32 modules. Each exported
checkpoint that was trained on VAE latents records the shipped VAE's weights hash, so the
loader can refuse a mismatched pair. ``python -m uva_plan.hub export ...`` writes one entry.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from uva_plan.checkpoint import MODEL_FILE, _write_checkpoint_dir, read_meta, resolve_checkpoint

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
ENVS = {"pusht": "uva_plan/PushT-v0", "blockpush": "uva_plan/BlockPush-v0"}
PARTS = ("uva", "dpc", "state_head", "state_head_imagined", "pose_head")
KIND_OF_PART = {"state_head_imagined": "state_head"}  # the checkpoint kind of a part, when not its name
DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}


def entry_path(name: str, root: Path = PRETRAINED_DIR) -> Path:
    """``vae`` or ``<env>/<part>`` -> its directory (which need not exist yet)."""
    if name != "vae":
        env, _, part = name.partition("/")
        if env not in ENVS or part not in PARTS:
            raise ValueError(f"pretrained entry must be 'vae' or '<env>/<part>' with env in {sorted(ENVS)} "
                             f"and part in {PARTS}, got {name!r}")
    return root / name


def pretrained_checkpoint(name: str, root: Path = PRETRAINED_DIR) -> Path:
    """The shipped checkpoint directory of ``name``; a clear error when it is not shipped."""
    path = entry_path(name, root)
    if not (path / "meta.json").exists():
        have = sorted(str(p.parent.relative_to(root)) for p in root.glob("**/meta.json")) if root.exists() else []
        raise FileNotFoundError(f"no pretrained weights {name!r} under {root} (shipped: {have or 'none'}); "
                                f"`make pretrained` trains and exports them")
    return path


def export(name: str, checkpoint: str | Path, dtype: str = "float16", root: Path = PRETRAINED_DIR) -> Path:
    """Copy a trained checkpoint's weights (cast to ``dtype``) and metadata to ``root/name``.

    A checkpoint trained on latents (``meta.extra.vae``) must be exported after the VAE: its
    record is pointed at the shipped VAE (``vae``), which must be the VAE it trained on or the
    fp16 export of it.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    dest = entry_path(name, root)
    src = resolve_checkpoint(checkpoint)
    meta = read_meta(src)
    part = name.partition("/")[2]
    expected_kind = "vae" if name == "vae" else KIND_OF_PART.get(part, part)
    if meta["kind"] != expected_kind:
        raise ValueError(f"{src} is a {meta['kind']!r} checkpoint; {name!r} needs a {expected_kind!r} one")
    if name != "vae" and meta.get("env_id") not in (None, ENVS[name.partition('/')[0]]):
        raise ValueError(f"{src} was trained on {meta['env_id']}, not {ENVS[name.partition('/')[0]]}")
    state = safetensors_load((src / MODEL_FILE).read_bytes())
    state = {k: (v.to(DTYPES[dtype]) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    extra = dict(meta.get("extra") or {})
    if "vae" in extra:
        vae_dir = pretrained_checkpoint("vae", root)
        vae_meta = read_meta(vae_dir)
        trained_on = extra["vae"].get("weights_sha256")
        shipped_from = vae_meta["extra"].get("exported_from", {}).get("weights_sha256")
        shipped = vae_meta["files"][MODEL_FILE]["sha256"]
        # Trained on the VAE the shipped one was exported from, or on the shipped VAE itself.
        if trained_on not in (shipped_from, shipped):
            raise ValueError(f"{src} was trained on latents of the VAE with weights {str(trained_on)[:12]}..., "
                             f"but the shipped VAE is {shipped[:12]}..., exported from {str(shipped_from)[:12]}...")
        extra["vae"] = {**extra["vae"], "path": "vae", "weights_sha256": shipped,
                        "trained_on_weights_sha256": trained_on}
    extra["exported_from"] = {"path": str(src), "weights_sha256": meta["files"][MODEL_FILE]["sha256"],
                              "dtype": dtype}
    out_meta = {k: v for k, v in meta.items() if k != "files"}
    out_meta["extra"] = extra
    return _write_checkpoint_dir(dest, {MODEL_FILE: safetensors_save(state)}, out_meta)


def total_bytes(root: Path = PRETRAINED_DIR) -> int:
    return sum(p.stat().st_size for p in root.glob("**/*") if p.is_file())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="export a trained checkpoint into uva_plan/pretrained/")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export")
    ex.add_argument("name", help="'vae' or '<env>/<part>', e.g. pusht/uva")
    ex.add_argument("checkpoint", help="checkpoint directory, e.g. outputs/train/uva_pusht/final")
    ex.add_argument("--dtype", default="float16", choices=sorted(DTYPES))
    sub.add_parser("list")
    args = parser.parse_args(argv)
    if args.command == "export":
        path = export(args.name, args.checkpoint, args.dtype)
        print(f"exported {args.checkpoint} -> {path} ({(path / MODEL_FILE).stat().st_size / 2**20:.2f} MiB)")
    print(json.dumps({str(p.parent.relative_to(PRETRAINED_DIR)): p.parent.joinpath(MODEL_FILE).stat().st_size
                      for p in sorted(PRETRAINED_DIR.glob("**/meta.json"))}, indent=1))
    print(f"total {total_bytes() / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
