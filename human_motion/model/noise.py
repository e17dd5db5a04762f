"""The initial noise of a clip: independent per frame (AnimateDiff, the paper), or with a share shared by all frames.

    eps_i = sqrt(rho) * eps_shared + sqrt(1 - rho) * eps_i'        (each frame still N(0, I))

``model.noise_frame_correlation`` is rho. 0 (the default) is plain ``randn``, bit for bit. A model trained with
rho > 0 must be sampled with the same rho (the pipeline reads it from the run's config): it learns to turn the part
the frames share into what they share (the face, the background), so the motion has to come from the conditions
rather than from differences between the frames' own noise. This is the "mixed" noise prior of Ge et al., "Preserve
Your Own Correlation" (ICCV 2023); it is a training choice for small models trained from scratch
(benchmarks/intensity_control.py), not part of MotionCharacter.
"""

from __future__ import annotations

import torch


def with_shared(independent: torch.Tensor, shared: torch.Tensor, rho: float) -> torch.Tensor:
    """Mix per-frame noise (b, c, f, h, w) with noise common to all frames (b, c, 1, h, w)."""
    return rho**0.5 * shared + (1 - rho) ** 0.5 * independent


def video_noise(shape: tuple[int, ...], generator: torch.Generator | None, device, rho: float = 0.0) -> torch.Tensor:
    """Noise of ``shape`` (b, c, f, h, w); ``rho`` in [0, 1) is the variance share common to all frames."""
    independent = torch.randn(shape, generator=generator, device=device)
    if not rho:
        return independent
    b, c, _, h, w = shape
    return with_shared(independent, torch.randn((b, c, 1, h, w), generator=generator, device=device), rho)
