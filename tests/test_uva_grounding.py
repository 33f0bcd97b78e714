"""UVA's spatially grounded action tokens and the changed-token video-loss weight."""

from __future__ import annotations

import pytest
import torch

from uva_plan.models.uva import UVA, UVAConfig, grounded_actions, token_centres


def tiny(**overrides) -> UVAConfig:
    config = dict(latent_channels=4, latent_size=8, patch_size=2, width=32, depth=1, n_heads=2,
                  video_head={"width": 32, "depth": 1}, action_head={"width": 32, "depth": 1, "clip_sample": True},
                  n_video_sample_steps=2, n_action_sample_steps=2, action_loss_repeats=1)
    return UVAConfig(**{**config, **overrides})


def test_token_centres_follow_the_image_axes():
    centres = token_centres(4)  # row-major: token 1 is right of token 0, token 4 below it
    assert torch.allclose(centres[0], torch.tensor([-0.75, -0.75]))
    assert torch.allclose(centres[1], torch.tensor([-0.25, -0.75]))
    assert torch.allclose(centres[4], torch.tensor([-0.75, -0.25]))


def test_bump_peaks_at_the_token_the_target_lies_in():
    grid, n_frames, per_frame = 4, 2, 3
    actions = torch.zeros(1, n_frames * per_frame, 2)
    actions[0, :per_frame] = torch.tensor([0.3, -0.7])   # frame 0: column 2, row 0 -> token 2
    actions[0, per_frame:] = torch.tensor([-0.9, 0.9])   # frame 1: column 0, row 3 -> token 12
    features = grounded_actions(actions, token_centres(grid), n_frames)
    assert features.shape == (1, n_frames, grid * grid, per_frame * 5)
    bumps = features[0, :, :, 4::5]  # (T, N, L): the bump of each action
    assert bumps[0, :, 0].argmax().item() == 2 and bumps[1, :, 0].argmax().item() == 12
    # The offset is the target minus the token centre, the raw action is kept beside it.
    assert torch.allclose(features[0, 0, 2, 0:2], torch.tensor([0.3, -0.7]))
    assert torch.allclose(features[0, 0, 2, 2:4], torch.tensor([0.3, -0.7]) - token_centres(grid)[2])


def test_grounded_uva_trains_and_plans():
    torch.manual_seed(0)
    model = UVA(tiny(action_grounding="offset"))
    c = model.config
    batch = {"latents": torch.randn(2, 8, 4, 8, 8), "actions": torch.rand(2, c.horizon, 2) * 2 - 1}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(4):  # the heads start at zero output (adaLN-Zero): a few steps open the path back
        optimizer.zero_grad()
        loss, _ = model.compute_loss(batch, mode="forward_dynamics")
        loss.backward()
        optimizer.step()
    assert torch.isfinite(loss) and model.in_proj.weight.grad[:, -c.action_token_dim:].abs().sum() > 0
    assert model.in_proj.in_features == 2 * c.patch_dim + c.actions_per_frame * 5
    future = model.forward_dynamics({"latents": batch["latents"][:, :4]}, batch["actions"], n_steps=2)
    assert future.shape == (2, 4, 4, 8, 8) and torch.isfinite(future).all()


def test_grounded_tokens_see_where_the_pusher_goes():
    # Two chunks differing only in where they send the pusher reach different tokens differently:
    # the features of the token under the target change most.
    centres = token_centres(4)
    a = torch.full((1, 16, 2), -0.75)
    b = a.clone()
    b[0, :4] = torch.tensor([0.75, 0.75])
    diff = (grounded_actions(b, centres, 4) - grounded_actions(a, centres, 4))[0, 0, :, 4::5].abs().sum(-1)
    assert diff.argmax().item() in (0, 15)
    assert diff[5] < diff[0] and diff[5] < diff[15]


def test_changed_token_weight_changes_the_video_loss():
    torch.manual_seed(0)
    latents = torch.zeros(2, 8, 4, 8, 8)
    latents[:, 4:, :, :2, :2] = 3.0  # one future token changes, the rest repeat the last frame
    actions = torch.zeros(2, 16, 2)
    losses = []
    for weight in (1.0, 50.0):
        torch.manual_seed(0)
        model = UVA(tiny(changed_token_weight=weight))
        torch.manual_seed(1)
        losses.append(model.compute_loss({"latents": latents, "actions": actions}, mode="video")[0].item())
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)


@pytest.mark.parametrize("field, value", [("action_grounding", "map"), ("changed_token_weight", 0.0),
                                          ("changed_token_weight", float("nan")),
                                          ("changed_token_threshold", -1.0)])
def test_bad_grounding_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        tiny(**{field: value})
