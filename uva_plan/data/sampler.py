"""Windows of states, frames and actions around every step of every episode, for training.

Shape letters: B batch, T frames per window, P physical state dim, A action dim, H actions per
window, S frame side.
"""

from __future__ import annotations

from collections.abc import Sequence

import einops
import numpy as np

from uva_plan.data.store import EpisodeStore

# UVA: 4 history + 4 future frames, one every 4 control steps; the 16 actions t..t+15 lead
# from frame t to frame t+16 (4 actions per future frame).
UVA_FRAME_OFFSETS = (-12, -8, -4, 0, 4, 8, 12, 16)
# Diffusion Policy: 2 observations (t-1, t) and a 16-action horizon starting with the action
# taken at t-1 (its sequences start at the first observation).
DPC_FRAME_OFFSETS = (-1, 0)


class SequenceSampler:
    """Samples anchored at each step t of the chosen episodes (``len`` = number of steps).

    A sample holds the physical states at ``t + frame_offsets`` and the actions at
    ``t + action_offset + (0, ..., n_actions - 1)``. Indices outside the episode are clamped
    to its first or last element (edge padding, as Diffusion Policy's SequenceSampler pads)
    and flagged True in ``frame_mask`` / ``action_mask``; a window never crosses into another
    episode. When the data has ``final_states`` (``EpisodeStore.load`` provides them), frames
    may reach the state after the last action, so the frame that an episode's last action
    leads to is real, not padding. Unlike Diffusion Policy, every step is an anchor, however
    much of its window is padding; callers that want fewer padded targets use the masks.

    Nothing is normalised here: callers apply ``store.normalizers()`` ("actions",
    "agent_pos", "state") to the returned arrays.

    Args:
        data: an EpisodeStore, or arrays with ``states`` (N, P), ``actions`` (N, A),
            ``episode_ends`` (E,) cumulative ends, optionally ``final_states`` (E, P).
        frame_offsets: frame times relative to the anchor, e.g. ``UVA_FRAME_OFFSETS``.
        action_offset: time of the first action relative to the anchor.
        n_actions: actions per sample (H).
        render_size, env_cls: give both to also return ``frames`` rendered from the states
            with ``env_cls.render_states``.
        episodes: positions (0..E-1 in the data's order) of the episodes to sample from,
            e.g. one side of ``train_val_split``; default all. With a store that has gaps,
            ``data["episode_indices"][position]`` is the store index.
        anchor_steps: (E,) per episode, the one step to anchor at, or -1 for every step (a branch
            store's ``branch_t`` metric: only the counterfactual window of each branch).
    """

    def __init__(self, data: EpisodeStore | dict, frame_offsets: Sequence[int], action_offset: int,
                 n_actions: int, render_size: int | None = None, env_cls: type | None = None,
                 episodes: Sequence[int] | None = None, anchor_steps: Sequence[int] | None = None):
        if isinstance(data, EpisodeStore):
            data = data.load()
        self.states = np.asarray(data["states"], dtype=np.float64)
        self.actions = np.asarray(data["actions"], dtype=np.float64)
        ends = np.asarray(data["episode_ends"], dtype=np.int64)
        n_steps = len(self.states)
        if self.states.ndim != 2 or self.actions.ndim != 2 or len(self.actions) != n_steps:
            raise ValueError(f"states (N, P) and actions (N, A) must share N, got "
                             f"{self.states.shape=}, {self.actions.shape=}")
        if (ends.ndim != 1 or len(ends) == 0 or ends[0] <= 0 or (np.diff(ends) <= 0).any()
                or ends[-1] != n_steps):
            raise ValueError(f"episode_ends must be strictly increasing positive ends finishing at "
                             f"N={n_steps}, got {ends.tolist()}")
        self.frame_offsets = np.asarray(frame_offsets, dtype=np.int64)
        if self.frame_offsets.ndim != 1 or len(self.frame_offsets) == 0:
            raise ValueError(f"frame_offsets must be a non-empty sequence of ints, got {frame_offsets!r}")
        if int(n_actions) < 1:
            raise ValueError(f"n_actions must be >= 1, got {n_actions=}")
        if (render_size is None) != (env_cls is None):
            raise ValueError(f"give both render_size and env_cls to render frames, got "
                             f"{render_size=}, {env_cls=}")
        self.action_offset, self.n_actions = int(action_offset), int(n_actions)
        self.render_size, self.env_cls = render_size, env_cls

        n_episodes = len(ends)
        self.episode_starts = np.concatenate([[0], ends[:-1]])
        self.episode_lengths = ends - self.episode_starts
        final_states = data.get("final_states")
        if final_states is not None:
            final_states = np.asarray(final_states, dtype=np.float64)
            if final_states.shape != (n_episodes, self.states.shape[1]):
                raise ValueError(f"final_states must be (E, P) = {(n_episodes, self.states.shape[1])}, "
                                 f"got {final_states.shape}")
            # Each episode's states followed by its final state: T + 1 frames per episode.
            self._frame_table = np.insert(self.states, ends, final_states, axis=0)
            self._frame_starts = self.episode_starts + np.arange(n_episodes)
            self._last_frame = self.episode_lengths
        else:
            self._frame_table = self.states
            self._frame_starts = self.episode_starts
            self._last_frame = self.episode_lengths - 1

        chosen = (np.arange(n_episodes) if episodes is None
                  else np.unique(np.asarray(episodes, dtype=np.int64)))
        if len(chosen) and (chosen.min() < 0 or chosen.max() >= n_episodes):
            raise ValueError(f"episodes must lie in [0, {n_episodes}), got {sorted(chosen.tolist())}")
        self.episodes = chosen
        self._anchor_episode = np.repeat(chosen, self.episode_lengths[chosen])
        self._anchor_t = np.concatenate([np.zeros(0, np.int64)]
                                        + [np.arange(n) for n in self.episode_lengths[chosen]])
        if anchor_steps is not None:
            anchor_steps = np.asarray(anchor_steps, dtype=np.int64)
            if anchor_steps.shape != (n_episodes,):
                raise ValueError(f"anchor_steps must be (E,) = ({n_episodes},), got {anchor_steps.shape}")
            if (anchor_steps >= self.episode_lengths).any():
                bad = int(np.flatnonzero(anchor_steps >= self.episode_lengths)[0])
                raise ValueError(f"anchor_steps[{bad}] = {anchor_steps[bad]} is not a step of episode {bad} "
                                 f"(length {self.episode_lengths[bad]})")
            wanted = anchor_steps[self._anchor_episode]
            keep = (wanted < 0) | (self._anchor_t == wanted)
            self._anchor_episode, self._anchor_t = self._anchor_episode[keep], self._anchor_t[keep]

    @classmethod
    def uva(cls, data: EpisodeStore | dict, render_size: int | None = None, env_cls: type | None = None,
            episodes: Sequence[int] | None = None, anchor_steps: Sequence[int] | None = None) -> SequenceSampler:
        """UVA's windows: frames t-12, ..., t+16 every 4 steps; actions t..t+15."""
        return cls(data, UVA_FRAME_OFFSETS, 0, 16, render_size, env_cls, episodes, anchor_steps)

    @classmethod
    def dpc(cls, data: EpisodeStore | dict, render_size: int | None = None, env_cls: type | None = None,
            episodes: Sequence[int] | None = None) -> SequenceSampler:
        """Diffusion Policy's windows: frames t-1, t; actions t-1..t+14."""
        return cls(data, DPC_FRAME_OFFSETS, -1, 16, render_size, env_cls, episodes)

    def __len__(self) -> int:
        return len(self._anchor_t)

    def __getitem__(self, i: int) -> dict:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range for {n} samples")
        sample = {key: value[0] for key, value in self.batch([i % n]).items()}
        sample["episode"], sample["t"] = int(sample["episode"]), int(sample["t"])
        return sample

    @property
    def frame_table(self) -> np.ndarray:
        """(R, P) every frame's state: each episode's states, then its final state when the
        data has final states. ``row_indices`` index into it."""
        return self._frame_table

    def anchors(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(episode (B,), t (B,)) of the samples ``indices``: which episode, which step."""
        idx = self._checked_indices(indices)
        return self._anchor_episode[idx], self._anchor_t[idx]

    def row_indices(self, indices: Sequence[int]) -> np.ndarray:
        """Rows (B, T) of ``frame_table`` holding the states that ``batch(indices)`` returns, to
        gather per-frame data computed once for the table (e.g. cached VAE latents)."""
        episode, t = self.anchors(indices)
        frame_clamped = np.clip(t[:, None] + self.frame_offsets, 0, self._last_frame[episode][:, None])
        return self._frame_starts[episode][:, None] + frame_clamped

    def _checked_indices(self, indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"indices must lie in [0, {len(self)}), got min {idx.min()}, max {idx.max()}")
        return idx

    def batch(self, indices: Sequence[int]) -> dict:
        """Stacked samples; all frames of the batch are rendered in one ``render_states`` call.

        Returns states (B, T, P), agent_pos (B, T, 2), actions (B, H, A), frame_mask (B, T)
        and action_mask (B, H) (True = padded), episode (B,), t (B,), and with rendering
        frames (B, T, S, S, 3) uint8.
        """
        idx = self._checked_indices(indices)
        episode, t = self.anchors(idx)

        frame_t = t[:, None] + self.frame_offsets                                  # (B, T)
        frame_clamped = np.clip(frame_t, 0, self._last_frame[episode][:, None])
        states = self._frame_table[self._frame_starts[episode][:, None] + frame_clamped]  # (B, T, P)

        action_t = t[:, None] + self.action_offset + np.arange(self.n_actions)    # (B, H)
        action_clamped = np.clip(action_t, 0, self.episode_lengths[episode][:, None] - 1)
        actions = self.actions[self.episode_starts[episode][:, None] + action_clamped]  # (B, H, A)

        out = {"states": states, "agent_pos": states[..., :2].copy(), "actions": actions,
               "frame_mask": frame_clamped != frame_t, "action_mask": action_clamped != action_t,
               "episode": episode, "t": t}
        if self.env_cls is not None:
            size = self.render_size
            if len(idx) == 0:
                out["frames"] = np.zeros((0, len(self.frame_offsets), size, size, 3), np.uint8)
            else:
                flat = einops.rearrange(states, "b t p -> (b t) p")
                frames = self.env_cls.render_states(flat, size)                   # (B*T, S, S, 3)
                out["frames"] = einops.rearrange(frames, "(b t) h w c -> b t h w c", b=len(idx))
        return out


def branch_anchor_steps(data: dict) -> np.ndarray | None:
    """(E,) the ``anchor_steps`` a store's data asks for: a branch store's (``uva_plan.data.branches``)
    per-episode ``branch_t`` metric (the branch point; -1: every step), or None (every step of
    every episode) for any other store."""
    steps = data.get("metrics", {}).get("branch_t")
    return None if steps is None else np.asarray(steps, dtype=np.int64)


def episode_frame_rows(data: dict, episodes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, frame_table): the ``frame_table`` rows (sorted, unique) of the chosen episodes'
    frames, final states included, and the table (R, P) they index."""
    sampler = SequenceSampler(data, (0, 1), 0, 1, episodes=episodes)  # t and t + 1 reach the final state
    return np.unique(sampler.row_indices(np.arange(len(sampler)))), sampler.frame_table


def train_val_split(n_episodes: int, val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Random episode split (train, val), both sorted; Diffusion Policy's rule: with a
    positive fraction, at least one validation episode and at least one training episode."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction=}")
    if n_episodes < 0:
        raise ValueError(f"n_episodes must be >= 0, got {n_episodes=}")
    n_val = 0
    if val_fraction > 0 and n_episodes > 1:
        n_val = min(max(1, round(n_episodes * val_fraction)), n_episodes - 1)
    val = np.random.default_rng(seed).choice(n_episodes, size=n_val, replace=False)
    val_set = set(val.tolist())
    return [i for i in range(n_episodes) if i not in val_set], sorted(val_set)
