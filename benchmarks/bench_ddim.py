"""Does the hand-written DDIM loop (``diff_head.ddim_schedule`` / ``ddim_step``) pay for itself?

Times each shipped sampler twice in the same run, on the same inputs: diffusers'
``DDIMScheduler.step`` in the loop, and the precomputed schedule with ``ddim_step``; checks that
both give the same samples. The fast loop stays only where this shows it pays.

    python benchmarks/bench_ddim.py --threads 1 --repeats 20
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from uva_plan.metrics import median_ms  # noqa: E402
from uva_plan.pretrained import load_world_model  # noqa: E402
from uva_plan.report import print_table, write_json  # noqa: E402


def diffusers_loop(scheduler, denoise, x: torch.Tensor, n_steps: int) -> torch.Tensor:
    """The reference: diffusers' own DDIM step in the loop (eta 0)."""
    scheduler.set_timesteps(n_steps, device=x.device)
    for t in scheduler.timesteps:
        x = scheduler.step(denoise(x, t), t, x, eta=0.0).prev_sample
    return x


def head_cases(env: str) -> dict:
    """name -> (scheduler, denoise(x, t), x0 shape, n_steps, fast sampler) of the shipped samplers."""
    world = load_world_model(env)
    uva, cases = world.uva, {}
    for name, head, batch, steps in (("UVA action head, 1 chunk", uva.action_head, 1, uva.config.n_action_sample_steps),
                                     ("UVA video head, 100 x 16 tokens", uva.video_head, 1600, 4)):
        cond = torch.randn(batch, head.config.cond_dim)
        denoise = (lambda h, c: lambda x, t: h(x, t.expand(x.shape[0]), c))(head, cond)
        cases[name] = (head.sample_scheduler, denoise, (batch, head.config.target_dim), steps,
                       (lambda h, c, s: lambda: h.sample(c, n_steps=s, generator=torch.Generator().manual_seed(0)))(head, cond, steps))
    return cases


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="pusht")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default="outputs/bench/ddim.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    with torch.inference_mode():
        for name, (scheduler, denoise, shape, steps, fast) in head_cases(args.env).items():
            def reference():
                return diffusers_loop(scheduler, denoise, torch.randn(shape, generator=torch.Generator().manual_seed(0)), steps)
            same = torch.allclose(fast(), reference(), atol=1e-4)
            slow_ms, fast_ms = median_ms(reference, args.repeats), median_ms(fast, args.repeats)
            rows.append({"sampler": name, "steps": steps, "diffusers_ms": round(slow_ms, 2),
                         "precomputed_ms": round(fast_ms, 2), "speedup": round(slow_ms / fast_ms, 2), "same_samples": same})
    print_table(f"DDIM loops, {args.env}, {args.threads} thread(s), median of {args.repeats}", rows, list(rows[0]))
    write_json(args.out, {"rows": rows}, config=vars(args))
    return {"rows": rows}


if __name__ == "__main__":
    main()
