"""What ``MotionCharacterPipeline`` returns, in diffusers' video conventions, and the checks on its batch inputs.

``frames`` has a batch dimension as ``AnimateDiffPipeline``'s has: ``out.frames[0]`` is the first video, as a list
of PIL images (``output_type="pil"``, the default), a float array (f, H, W, 3) in [0, 1] (``"np"``), a float tensor
(f, 3, H, W) in [0, 1] (``"pt"``), or, for ``"latent"``, the undecoded latents (b, c, f, h, w). Any of the first
three goes straight into ``diffusers.utils.export_to_video`` (and PIL frames into ``export_to_gif``);
:func:`frames_to_uint8` turns one video of any of them into (f, H, W, 3) uint8, the layout the project's own
writers (``media.write_mp4``) and metrics read.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import numpy as np
import torch
from diffusers.utils import BaseOutput

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


@dataclasses.dataclass
class MotionCharacterPipelineOutput(BaseOutput):
    """``frames``: one entry per video (see the module docstring for each ``output_type``); ``reference_face``: the
    aligned reference crop the model saw, (S, S, 3) uint8."""

    frames: Any
    reference_face: np.ndarray | None = None


def frames_to_uint8(video) -> np.ndarray:
    """One video (``out.frames[i]`` of any decoded ``output_type``) as (f, H, W, 3) uint8 RGB; floats are read as
    [0, 1] and rounded (as diffusers' ``numpy_to_pil`` does, so "np" and "pil" give the same bytes)."""
    if isinstance(video, (list, tuple)) and video and hasattr(video[0], "convert"):  # PIL images
        return np.stack([np.asarray(im.convert("RGB")) for im in video])
    if isinstance(video, torch.Tensor):
        if video.ndim != 4 or video.shape[1] != 3:
            raise ValueError(f"a 'pt' video is (frames, 3, height, width), got {tuple(video.shape)}")
        video = video.detach().float().permute(0, 2, 3, 1).cpu().numpy()
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"a video is (frames, height, width, 3), got {video.shape}; pass one video (frames[i])")
    if video.dtype == np.uint8:
        return video
    return (np.clip(video, 0, 1) * 255).round().astype(np.uint8)


def postprocess(video_processor, decoded: torch.Tensor, output_type: str):
    """Decoded frames (b, f, 3, H, W) in about [-1, 1] -> ``frames`` of ``output_type`` (diffusers'
    ``VideoProcessor``, which reads (b, 3, f, H, W); fp32 first, as AnimateDiff decodes)."""
    return video_processor.postprocess_video(decoded.float().permute(0, 2, 1, 3, 4), output_type=output_type)


def check_output_type(output_type) -> None:
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {', '.join(map(repr, OUTPUT_TYPES))}, got {output_type!r}")


def _as_list(value, name: str) -> list:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{name} is an empty list; give at least one value")
        return list(value)
    raise ValueError(f"{name} must be a string or a list of strings, got {type(value).__name__}")


def check_intensities(intensity) -> list[float]:
    """One intensity or a list (a 1-D array or tensor too) -> a list of finite floats >= 0; anything else is one
    ``ValueError`` line (a string, a bool, NaN, a negative value, an empty or nested list)."""
    if isinstance(intensity, (torch.Tensor, np.ndarray)):
        if intensity.ndim > 1:
            raise ValueError(f"intensity must be a number or a 1-D list of numbers, got shape {tuple(intensity.shape)}")
        intensity = intensity.tolist()
    values = intensity if isinstance(intensity, (list, tuple)) else [intensity]
    if not values:
        raise ValueError("intensity is an empty list; give at least one number")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise ValueError(f"intensity must be a number or a list of numbers (0 = static, trained range 0..20), "
                             f"got {v!r} ({type(v).__name__})")
        if not math.isfinite(float(v)) or float(v) < 0:
            raise ValueError(f"intensity must be a finite number >= 0, got {v!r}")
        out.append(float(v))
    return out


def broadcast_batch(prompt, action, intensity) -> tuple[list[str], list[str], list[float]]:
    """``prompt``, ``action`` and ``intensity``, each one value or a list, as three lists of one length: lists must
    agree in length, single values repeat (one video per entry)."""
    columns = {"prompt": _as_list(prompt, "prompt"), "action": _as_list(action, "action"),
               "intensity": check_intensities(intensity)}
    if not all(isinstance(p, str) for p in columns["prompt"] + columns["action"]):
        raise ValueError("prompt and action must be strings or lists of strings")
    lengths = {name: len(v) for name, v in columns.items() if len(v) > 1}
    if len(set(lengths.values())) > 1:
        raise ValueError("prompt, action and intensity lists must have the same length (or be single values), got "
                         + ", ".join(f"{n} {k}" for n, k in lengths.items()))
    n = max(lengths.values(), default=1)
    return tuple(v * n if len(v) == 1 else v for v in columns.values())
