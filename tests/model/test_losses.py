"""Each loss against a value worked out by hand on small tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from human_motion.model.losses import (crop_faces, id_consistency_loss, predict_x0, region_aware_loss,
                                       region_weights)


def test_region_aware_with_ones_is_mse():
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 4, 3, 5, 5, generator=gen), torch.randn(2, 4, 3, 5, 5, generator=gen)
    weights = region_weights(torch.zeros(2, 3, 5, 5), delta=0.5, size=(5, 5))  # no motion -> all 1
    assert torch.equal(weights, torch.ones(2, 1, 3, 5, 5))
    torch.testing.assert_close(region_aware_loss(pred, target, weights), F.mse_loss(pred, target))


def test_region_weights_by_hand():
    # flow 0 -> clip(0 + 0.5, 1, 1.5) = 1; 255 -> clip(1.5) = 1.5; 153 -> 0.6 + 0.5 = 1.1; delta 0 -> always 1
    flow = torch.tensor([[[[0.0, 255.0], [153.0, 51.0]]]])  # (1, 1, 2, 2)
    w = region_weights(flow, delta=0.5, size=(2, 2))
    torch.testing.assert_close(w[0, 0, 0], torch.tensor([[1.0, 1.5], [1.1, 1.0]]))
    assert torch.equal(region_weights(flow, 0.0, (2, 2)), torch.ones(1, 1, 1, 2, 2))
    # pred - target = [1, 2, 3, 0] -> mean(w * d^2) = (1*1 + 1.5*4 + 1.1*9 + 1*0) / 4 = 4.225
    pred = torch.tensor([1.0, 2.0, 3.0, 0.0]).view(1, 1, 1, 2, 2)
    torch.testing.assert_close(region_aware_loss(pred, torch.zeros_like(pred), w), torch.tensor(4.225))
    assert region_weights(flow, 0.5, (4, 4)).shape == (1, 1, 1, 4, 4)  # resized to latent size


def test_id_consistency_by_hand():
    ref = torch.tensor([[1.0, 0.0]])  # (b=1, d=2)
    frames = torch.tensor([[[1.0, 0.0], [0.0, 3.0]]])  # cos 1 and 0 -> mean 0.5 -> loss 0.5
    torch.testing.assert_close(id_consistency_loss(ref, frames), torch.tensor(0.5))
    frames = torch.tensor([[[2.0, 2.0], [-1.0, 0.0]]])  # cos 1/sqrt(2) and -1
    torch.testing.assert_close(id_consistency_loss(ref, frames), torch.tensor(1 - (1 / math.sqrt(2) - 1) / 2))


def test_predict_x0_inverts_add_noise():
    alphas_cumprod = torch.linspace(0.99, 0.01, 10)
    x0, eps = torch.randn(2, 4, 3, 2, 2), torch.randn(2, 4, 3, 2, 2)
    t = torch.tensor([1, 8])
    a = alphas_cumprod[t].view(-1, 1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    torch.testing.assert_close(predict_x0(x_t, eps, t, alphas_cumprod, "epsilon"), x0)
    v = a.sqrt() * eps - (1 - a).sqrt() * x0
    torch.testing.assert_close(predict_x0(x_t, v, t, alphas_cumprod, "v_prediction"), x0)
    with pytest.raises(ValueError, match="Unknown prediction type"):
        predict_x0(x_t, eps, t, alphas_cumprod, "sample")


def test_crop_faces_takes_the_box_and_passes_gradients():
    frames = torch.arange(16.0).view(1, 1, 4, 4).repeat(1, 3, 1, 1).requires_grad_(True)  # (1, 3, 4, 4)
    crop = crop_faces(frames, torch.tensor([[0.5, 0.0, 1.0, 0.5]]), size=2)  # the top-right 2x2 quadrant
    torch.testing.assert_close(crop[0, 0], torch.tensor([[2.0, 3.0], [6.0, 7.0]]))
    crop.sum().backward()
    assert frames.grad[0, 0, :2, 2:].sum() == 4 and frames.grad[0, 0, 2:].sum() == 0
