"""The per-clip noise prior: independent frames by default (bit for bit plain randn), or a share common to all."""

from __future__ import annotations

import pytest
import torch

from human_motion.config import ConfigError
from human_motion.model.config import ModelConfig
from human_motion.model.noise import video_noise


def test_rho_zero_is_plain_randn():
    shape = (2, 4, 8, 6, 6)
    torch.testing.assert_close(video_noise(shape, torch.Generator().manual_seed(3), "cpu"),
                               torch.randn(shape, generator=torch.Generator().manual_seed(3)), rtol=0, atol=0)


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_frames_share_rho_of_their_variance(rho):
    noise = video_noise((128, 4, 8, 8, 8), torch.Generator().manual_seed(0), "cpu", rho)
    assert noise.var().item() == pytest.approx(1.0, abs=0.04)  # each frame is still N(0, I)
    a, b = noise[:, :, 0].flatten(), noise[:, :, 5].flatten()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1].item() == pytest.approx(rho, abs=0.03)


def test_rho_must_be_below_one():
    with pytest.raises(ConfigError, match="noise_frame_correlation"):
        ModelConfig(pretrained_model_name_or_path="tiny", noise_frame_correlation=1.0)
