"""A small differentiable face embedder phi for the ID-consistency loss (Eq. 4), trained with ArcFace's own objective.

The paper's phi is ArcFace: a CNN whose L2-normalised embedding is trained to classify identities with an additive
angular margin (Deng et al., CVPR 2019: logits ``s * cos(theta_y + m)`` for the true class, ``s * cos(theta_j)``
for the others). Where that network cannot be had or does not fit the frames (a model trained from scratch at 32 px,
benchmarks/identity_control.py), ``fit_face_embedder`` trains the same objective on the training set's own face
crops: ``SmallFaceEmbedder`` is saved with ``save_pretrained`` and ``loss.face_embedder`` takes its folder.

    phi = SmallFaceEmbedder()                               # (b, 3, s, s) in [-1, 1] -> (b, dim), unit length
    phi = fit_face_embedder(faces, labels, steps=400)       # faces (n, 3, s, s), labels (n,) identity indices
    phi.save_pretrained("runs/phi")                         # hm train --set loss.face_embedder=runs/phi
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class SmallFaceEmbedder(ModelMixin, ConfigMixin):
    """Reads face crops (b, 3, s, s) in [-1, 1] (any s >= 8); writes unit-length embeddings (b, dim).

    ArcFace's layout at small scale: stages of two 3x3 convolutions with BatchNorm and PReLU, each stage halving the
    side, then BatchNorm, dropout, a linear layer to ``dim`` and a last BatchNorm (ArcFace's "BN-Dropout-FC-BN"
    output), L2-normalised. An adaptive pooling to 4x4 before the linear layer lets any crop size through."""

    @register_to_config
    def __init__(self, channels: tuple[int, ...] = (32, 64, 128), dim: int = 64, dropout: float = 0.2):
        super().__init__()
        layers, c_in = [], 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.PReLU(c),
                       nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.PReLU(c)]
            c_in = c
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.BatchNorm2d(c_in))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in * 16, dim), nn.BatchNorm1d(dim))

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        x = self.features(faces.to(self.head[2].weight.dtype))  # (b, c, 4, 4)
        return F.normalize(self.head(x), dim=-1)  # (b, dim)


def arcface_loss(embeds: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor, scale: float = 16.0,
                 margin: float = 0.3) -> torch.Tensor:
    """Additive angular margin loss (ArcFace, Eq. 3 of Deng et al.). ``embeds`` (b, d), ``class_weights`` (k, d) one
    centre per identity (normalised here), ``labels`` (b,) in [0, k) -> scalar cross-entropy of
    ``scale * cos(theta + margin)`` for the true class against ``scale * cos(theta_j)``."""
    cos = F.normalize(embeds, dim=-1) @ F.normalize(class_weights, dim=-1).T  # (b, k)
    theta = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))
    target = torch.cos(theta + margin)
    # Past pi - margin, cos(theta + m) would rise again; ArcFace's usual fallback keeps the logit monotone there.
    target = torch.where(theta < math.pi - margin, target, cos - margin * math.sin(margin))
    one_hot = F.one_hot(labels, cos.shape[1]).bool()
    logits = scale * torch.where(one_hot, target, cos)
    return F.cross_entropy(logits, labels)


def augment_faces(faces: torch.Tensor, gen: torch.Generator, shift: float = 0.08, zoom: float = 0.1,
                  turn_deg: float = 10.0) -> torch.Tensor:
    """Random crops, flips, small turns, colour and blur changes of (b, 3, s, s) in [-1, 1]: the ways a generated
    face differs from its training frames (placement, motion, a blurry decode of an x0 estimate)."""
    b, device = faces.shape[0], faces.device

    def uniform(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=gen).to(device)

    z = uniform(1 - zoom, 1 + zoom, b)
    a = torch.deg2rad(uniform(-turn_deg, turn_deg, b))
    sign = torch.where(torch.rand(b, generator=gen).to(device) < 0.5, -1.0, 1.0)  # horizontal flip
    theta = torch.zeros(b, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 0, 1] = z * torch.cos(a) * sign, -z * torch.sin(a)
    theta[:, 1, 0], theta[:, 1, 1] = z * torch.sin(a) * sign, z * torch.cos(a)
    theta[:, :, 2] = uniform(-shift, shift, b, 2)
    grid = F.affine_grid(theta, list(faces.shape), align_corners=False)
    x = F.grid_sample(faces, grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = x * uniform(0.8, 1.2, b, 1, 1, 1) + uniform(-0.15, 0.15, b, 1, 1, 1)  # contrast, brightness
    blur = torch.rand(b, generator=gen).to(device) < 0.5
    if blur.any():  # a 3x3 box blur on half of them, like a soft decode
        soft = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        x = torch.where(blur[:, None, None, None], soft, x)
    return (x + 0.03 * torch.randn(x.shape, generator=gen).to(device)).clamp(-1, 1)


def fit_face_embedder(faces: torch.Tensor, labels: torch.Tensor, steps: int = 400, batch_size: int = 64,
                      seed: int = 0, lr: float = 2e-3, log=None, **config) -> SmallFaceEmbedder:
    """Train a ``SmallFaceEmbedder`` (``config``: its settings) with ``arcface_loss`` on ``faces`` (n, 3, s, s) in
    [-1, 1] with identity ``labels`` (n,), augmented by ``augment_faces``; returned frozen, in eval mode."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = SmallFaceEmbedder(**config)
    num_classes = int(labels.max()) + 1
    centres = nn.Parameter(torch.randn(num_classes, model.config.dim, generator=gen))
    opt = torch.optim.AdamW([*model.parameters(), centres], lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(faces), (batch_size,), generator=gen)
        loss = arcface_loss(model(augment_faces(faces[idx], gen)), labels[idx], centres)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log is not None and (step % 100 == 0 or step == steps - 1):
            log(f"face embedder step {step} arcface loss {loss.item():.3f}")
    return model.eval().requires_grad_(False)
