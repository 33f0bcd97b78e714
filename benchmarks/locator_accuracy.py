"""How well the colour locator (uva_plan.locate) reads object positions, and what that says of UVA.

At held-out demonstration windows (the split UVA trained without), the locator reads the pusher
and the objects (Push-T: the T's CoG and angle; BlockPush: both blocks) from four kinds of frame
and each is compared with the simulator's true state:
- rendered: the real frame at t (the locator's own error);
- vae: the same frame through the shipped VAE (encode, decode);
- uva: UVA's imagined last future frame (t + 16) given the demonstration's own 16 actions
  (planning settings of ``UVA.from_pretrained``), against the true state at t + 16;
- copy_last: the real frame at t read as if it were t + 16 (the error of "nothing moves");
- commanded (pusher only): the demonstration's 16th action, the pusher's commanded target.

    python benchmarks/locator_accuracy.py --env blockpush --n-windows 200

Writes locator_<env>.json / .md into --out and prints a rich table (mean and median px; angles
in degrees).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uva_plan import hub  # noqa: E402
from uva_plan.dynamics import UVAWorldModel  # noqa: E402
from uva_plan.data.sampler import train_val_split  # noqa: E402
from uva_plan.data.store import EpisodeStore  # noqa: E402
from uva_plan.envs.blockpush import BlockPushEnv, observed_state  # noqa: E402
from uva_plan.envs.pusht import PushTEnv  # noqa: E402
from uva_plan.io import git_revision  # noqa: E402
from uva_plan.locate import ColourLocator  # noqa: E402
from uva_plan.report import write_report  # noqa: E402

ENV_CLASSES = {"pusht": PushTEnv, "blockpush": BlockPushEnv}
# Each object's true position (and angle) in a physical state.
TRUTH = {"pusht": {"agent": slice(0, 2), "tee": slice(4, 6)},
         "blockpush": {"agent": slice(0, 2), "block0": slice(4, 6), "block1": slice(10, 12)}}


def errors(located: dict, states: np.ndarray, env: str) -> dict[str, np.ndarray]:
    out = {}
    for name, where in TRUTH[env].items():
        out[name] = np.linalg.norm(located[name].position - states[:, where], axis=1)
        if located[name].angle is not None:
            out[f"{name}_angle_deg"] = np.degrees(np.abs((located[name].angle - states[:, 6] + np.pi)
                                                        % (2 * np.pi) - np.pi))
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="blockpush", choices=sorted(hub.ENVS))
    parser.add_argument("--store", default=None, help="demonstration store (default data/<env>)")
    parser.add_argument("--n-windows", type=int, default=200)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="outputs/bench")
    args = parser.parse_args(argv)
    if args.n_windows < 1 or args.batch < 1:
        parser.error(f"need --n-windows >= 1 and --batch >= 1, got {args.n_windows}, {args.batch}")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    env_cls, env_id = ENV_CLASSES[args.env], hub.ENVS[args.env]
    model = UVAWorldModel.from_pretrained(args.env, objective="goal_image", seed=args.seed)
    locator = ColourLocator(env_id)
    store = EpisodeStore.open(args.store or f"data/{args.env}")
    _, val = train_val_split(len(store), 0.05, 0)
    rng = np.random.default_rng(args.seed)
    horizon, history = model.horizon, model.n_history
    windows = []
    while len(windows) < args.n_windows:
        i = int(rng.choice(val))
        n = len(store.episode(i)["states"])
        if n > history + horizon:
            windows.append((i, int(rng.integers(history - 1, n - horizon))))
    kinds = {k: {} for k in ("rendered", "vae", "uva", "copy_last", "commanded")}
    start = time.perf_counter()
    for b in range(0, len(windows), args.batch):
        batch = windows[b: b + args.batch]
        now, future, rolled = [], [], []
        for i, t in batch:
            episode = store.episode(i)
            states, actions = episode["states"], episode["actions"]
            images = env_cls.render_states(states[t - history + 1: t + 1], model.image_size)
            obs = [{"image": im, "agent_pos": s[:2], "task": np.int64(0), "state": observed_state(s)}
                   if args.env == "blockpush" else {"image": im, "agent_pos": s[:2]}
                   for s, im in zip(states[t - history + 1: t + 1], images)]
            context = model.context(obs)
            chunk = torch.from_numpy(model.normalizer.normalize(actions[t: t + horizon])).float()[None]
            rolled.append(model.rollout(context, chunk, frames=(-1,)).latents[0, -1])
            now.append(states[t])
            future.append(states[t + horizon])
            kinds["commanded"].setdefault("agent", []).append(
                float(np.linalg.norm(actions[t + horizon - 1] - states[t + horizon][:2])))
        now, future = np.asarray(now), np.asarray(future)
        frames = env_cls.render_states(now, model.image_size)
        reads = {"rendered": (locator.locate(frames), now),
                 "vae": (locator.locate(model.decode(model.encode(frames))), now),
                 "uva": (locator.locate(model.decode(torch.stack(rolled))), future),
                 "copy_last": (locator.locate(frames), future)}
        for kind, (located, truth) in reads.items():
            for name, values in errors(located, truth, args.env).items():
                kinds[kind].setdefault(name, []).extend(values.tolist())
    rows = []
    for kind, per_object in kinds.items():
        for name, values in per_object.items():
            values = np.asarray(values)
            found = np.isfinite(values)
            rows.append({"frames": kind, "object": name, "windows": len(values),
                         "found": float(found.mean()),
                         "mean": float(values[found].mean()) if found.any() else None,
                         "median": float(np.median(values[found])) if found.any() else None})
    config = {**vars(args), "seconds": time.perf_counter() - start, "n_video_steps": model.n_video_steps,
              "video_head_steps": model.video_head_steps, "temperature": model.temperature}
    write_report(args.out, f"locator_{args.env}", f"Colour locator error, {args.env} (px; angles deg)", rows,
                 ["frames", "object", "windows", "found", "mean", "median"], config, revision=git_revision())
    return rows


if __name__ == "__main__":
    main()
