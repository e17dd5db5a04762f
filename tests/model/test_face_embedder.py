"""phi for the ID-consistency loss: the small ArcFace-trained face embedder, its loss, its loading as
``loss.face_embedder``, and the loss options identity_control.py uses (square face crops, region_flow_scale)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from human_motion.config import ConfigError
from human_motion.model.components import load_face_embedder
from human_motion.model.config import LossConfig
from human_motion.model.face_embedder import SmallFaceEmbedder, arcface_loss, augment_faces, fit_face_embedder
from human_motion.model.losses import region_weights, square_face_crops


def test_embeddings_are_unit_vectors_for_any_crop_size():
    phi = SmallFaceEmbedder(channels=(8, 16), dim=12).eval()
    for size in (16, 32, 48):
        e = phi(torch.rand(3, 3, size, size) * 2 - 1)
        assert e.shape == (3, 12)
        torch.testing.assert_close(e.norm(dim=-1), torch.ones(3))


def test_arcface_loss_is_cross_entropy_of_scaled_cosines_without_margin_and_larger_with_it():
    gen = torch.Generator().manual_seed(0)
    embeds, centres = torch.randn(6, 8, generator=gen), torch.randn(3, 8, generator=gen)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    cos = F.normalize(embeds, dim=-1) @ F.normalize(centres, dim=-1).T
    torch.testing.assert_close(arcface_loss(embeds, labels, centres, scale=10.0, margin=0.0),
                               F.cross_entropy(10.0 * cos, labels))
    assert arcface_loss(embeds, labels, centres, margin=0.3) > arcface_loss(embeds, labels, centres, margin=0.0)
    # The true class's logit is s * cos(theta + m): checked for one sample whose angle is below pi - m.
    theta = torch.acos(cos[0, 0])
    assert theta < math.pi - 0.3
    one = arcface_loss(embeds[:1], labels[:1], centres, scale=1.0, margin=0.3)
    logits = cos[0].clone()
    logits[0] = torch.cos(theta + 0.3)
    torch.testing.assert_close(one, F.cross_entropy(logits[None], labels[:1]))


def faces_of(n_people: int, per_person: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic 'people': a coloured disc on a coloured ground, each person its own pair of colours and disc size,
    with noise and jitter in every sample."""
    gen = torch.Generator().manual_seed(seed)
    people = torch.Generator().manual_seed(123)
    colours = torch.rand(n_people, 2, 3, generator=people) * 2 - 1
    radii = 0.3 + 0.4 * torch.rand(n_people, generator=people)
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    faces, labels = [], []
    for k in range(n_people):
        for _ in range(per_person):
            cx, cy = (torch.rand(2, generator=gen) - 0.5) * 0.3
            disc = ((x - cx) ** 2 + (y - cy) ** 2 < radii[k] ** 2).float()
            img = disc * colours[k, 0][:, None, None] + (1 - disc) * colours[k, 1][:, None, None]
            faces.append((img + 0.1 * torch.randn(img.shape, generator=gen)).clamp(-1, 1))
            labels.append(k)
    return torch.stack(faces), torch.tensor(labels)


def test_fit_separates_people_it_has_not_seen_these_samples_of():
    faces, labels = faces_of(4, 12, 16, seed=0)
    phi = fit_face_embedder(faces, labels, steps=60, batch_size=32, seed=0, channels=(8, 16), dim=16)
    assert not phi.training and not any(p.requires_grad for p in phi.parameters())
    test, test_labels = faces_of(4, 6, 16, seed=1)  # new samples of the same people
    with torch.no_grad():
        train_e, test_e = phi(faces), phi(test)
    centres = F.normalize(torch.stack([train_e[labels == k].mean(0) for k in range(4)]), dim=-1)
    assert ((test_e @ centres.T).argmax(1) == test_labels).float().mean() == 1.0


def test_augment_keeps_shape_and_range_and_is_seeded():
    x = torch.rand(5, 3, 16, 16) * 2 - 1
    a = augment_faces(x, torch.Generator().manual_seed(3))
    b = augment_faces(x, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    torch.testing.assert_close(a, b)


def test_a_saved_embedder_loads_as_loss_face_embedder_frozen_and_identical(tmp_path):
    phi = SmallFaceEmbedder(channels=(8, 16), dim=12).eval()
    phi.save_pretrained(tmp_path / "phi")
    loaded = load_face_embedder(str(tmp_path / "phi"))
    assert isinstance(loaded, SmallFaceEmbedder) and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    torch.testing.assert_close(loaded(x), phi(x))
    loaded(x).sum().backward()  # differentiable with respect to the faces (what L_id needs)
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_face_embedder_settings_that_cannot_load_say_so(tmp_path):
    with pytest.raises(ConfigError, match="loss.face_embedder is empty"):
        load_face_embedder("")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="folder without config.json"):
        load_face_embedder(str(tmp_path / "empty"))


def test_square_face_crops_take_a_square_of_the_longer_side_about_the_centre():
    frames = torch.arange(16.0).view(1, 1, 4, 4).repeat(1, 3, 1, 1)
    # A box 2 wide and 4 tall in the middle of the frame: the crop is the whole 4x4 frame, not a stretched strip.
    crop = square_face_crops(frames, torch.tensor([[0.25, 0.0, 0.75, 1.0]]), size=4)
    torch.testing.assert_close(crop, frames)


def test_region_flow_scale_spreads_the_weights_and_is_checked():
    flow = torch.tensor([0.0, 1.0, 5.0, 10.0]).view(1, 4, 1, 1)
    plain = region_weights(flow, delta=1.0, size=(1, 1))
    scaled = region_weights(flow, delta=1.0, size=(1, 1), flow_scale=51.0)
    torch.testing.assert_close(plain.flatten(), 1 + flow.flatten() / 255)
    torch.testing.assert_close(scaled.flatten(), torch.tensor([1.0, 1.2, 2.0, 2.0]))
    assert region_weights(flow, delta=0.0, size=(1, 1), flow_scale=51.0).eq(1).all()  # no L_R: plain MSE
    with pytest.raises(ConfigError, match="region_flow_scale"):
        LossConfig(region_flow_scale=0)


def test_train_with_a_small_face_embedder_logs_an_id_loss(tmp_path):
    from accelerate.state import AcceleratorState

    from human_motion.cli import main

    SmallFaceEmbedder(channels=(8, 16), dim=12).save_pretrained(tmp_path / "phi")
    out = tmp_path / "run"
    sets = ["data.dataset_type=synthetic", "train.max_train_steps=2", "train.checkpointing_steps=2",
            "validation.num_samples=0", "validation.fixed_batch_loss=false", "train.log_with=none",
            f"loss.face_embedder={tmp_path / 'phi'}", "loss.region_flow_scale=51"]
    try:
        args = [a for s in sets for a in ("--set", s)]
        assert main(["train", "--config", "train_tiny", "--out", str(out), *args]) == 0
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    logged = [json.loads(line) for line in (out / "logs" / "train.jsonl").read_text().splitlines()]
    steps = [r for r in logged if "loss_id" in r]
    assert steps and all(0 < r["loss_id"] <= 2 for r in steps)  # 1 - cosine of unit vectors
