"""Regressions for the bad inputs that benchmarks/bad_inputs.py found without a clear error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.test_data import META, fake_episode
from tests.test_models import make_uva
from uva_plan.data.store import EpisodeStore
from uva_plan.envs import BlockPushEnv


@pytest.mark.parametrize("seed", [-1, 1.5])
def test_blockpush_reset_names_a_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        BlockPushEnv(render_size=16).reset(seed=seed)


@pytest.mark.parametrize("seed", ["x", None, math.nan, 1.5, True])
def test_write_episode_names_a_bad_seed(tmp_path, seed):
    with EpisodeStore.create(tmp_path, META) as store:
        with pytest.raises(ValueError, match="seed must be an int"):
            store.write_episode(0, **{**fake_episode(3, 0), "seed": seed})
        store.write_episode(0, **{**fake_episode(3, 0), "seed": np.int64(4)})  # numpy ints still pass


def test_uva_names_missing_latents_and_a_bad_n():
    model = make_uva()
    latents = torch.zeros(1, 2, 4, 4, 4)
    with pytest.raises(ValueError, match="latents"):
        model.policy({})
    for n in (0, -1, 2.0):
        with pytest.raises(ValueError, match="n must be an int >= 1"):
            model.sample_actions({"latents": latents}, n)
    assert model.sample_actions({"latents": latents}, 2).shape == (2, model.config.horizon, 2)
