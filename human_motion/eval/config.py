"""``hm eval`` configuration: one dataclass per metric; ``configs/eval.yaml`` lists every key.

A metric whose weights are not given is *not reported* (never replaced by an approximation under the same name):
Motion Smoothness needs AMT-S (``smoothness.amt_config`` + ``smoothness.amt_weights``), DOVER needs
``dover.config`` + ``dover.weights``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from human_motion.config import ConfigError

METRICS = ("face_similarity", "clip", "dynamic_degree", "motion_smoothness", "dover", "intensity_fidelity")


@dataclasses.dataclass
class FaceSimConfig:
    # Paper comparability: insightface detector + ArcFace (a model-pack folder). Offline default: mediapipe + dlib.
    detector: Literal["mediapipe", "dlib", "insightface"] = "mediapipe"
    embedder: Literal["dlib", "insightface"] = "dlib"
    insightface_root: str | None = None
    insightface_pack: str = "buffalo_l"
    detect_min_score: float = 0.3

    def __post_init__(self) -> None:
        if self.embedder == "insightface" and self.detector == "dlib":
            raise ConfigError("face.embedder=insightface aligns on 5 landmarks, which the dlib detector does not give;"
                              " use face.detector=insightface (or mediapipe)")


@dataclasses.dataclass
class ClipConfig:
    # The paper does not name its CLIP; ViT-L/14 is the usual choice of its peers. Hub id or local folder.
    model: str = "openai/clip-vit-large-patch14"
    batch_size: int = 16
    device: str = "auto"


@dataclasses.dataclass
class DynamicDegreeConfig:
    # VBench runs RAFT-large with the original "raft-things" weights; torchvision's port of those is C_T_V1.
    backend: Literal["raft_large", "raft_small", "dis"] = "raft_large"
    raft_weights: str | None = None  # local state dict (.pth/.safetensors); None: torchvision's C_T_V1 weights
    raft_iters: int = 20  # VBench: iters=20
    batch_pairs: int = 4  # frame pairs per RAFT call (memory)
    device: str = "auto"


@dataclasses.dataclass
class SmoothnessConfig:
    amt_config: str | None = None  # AMT-S.yaml (VBench's pretrained/amt_model/AMT-S.yaml)
    amt_weights: str | None = None  # amt-s.pth
    device: str = "auto"

    def __post_init__(self) -> None:
        if bool(self.amt_config) != bool(self.amt_weights):
            raise ConfigError("smoothness.amt_config and smoothness.amt_weights go together (AMT-S.yaml + amt-s.pth)")


@dataclasses.dataclass
class DoverConfig:
    config: str | None = None  # dover.yml of the DOVER repository
    weights: str | None = None  # DOVER.pth
    device: str = "auto"

    def __post_init__(self) -> None:
        if bool(self.config) != bool(self.weights):
            raise ConfigError("dover.config and dover.weights go together (dover.yml + DOVER.pth)")


@dataclasses.dataclass
class IntensityConfig:
    """The build's own flow code (stages/flow.py), so measured and trained intensities share units."""

    backend: Literal["dis", "farneback", "raft_small", "raft_large"] = "dis"
    work_px: int = 256
    out_px: int = 512  # intensities are pixels per step at this side (the build's decode.size_px)
    raft_weights: str | None = None
    device: str = "auto"


@dataclasses.dataclass
class ProtocolConfig:
    """Generation settings of ``hm eval --protocol`` (the paper's sampling: 16 frames, 512x512, 30 steps, 8.0)."""

    num_frames: int = 16
    height: int = 512
    width: int = 512
    num_inference_steps: int = 30
    guidance_scale: float = 8.0
    fps: float = 8.0  # container rate of the written mp4s (VBench's reference rate: its threshold factor is 1)
    pairing: Literal["cycle", "product"] = "cycle"  # see docs/eval.md
    device: str = "auto"


@dataclasses.dataclass
class EvalConfig:
    metrics: list[str] = dataclasses.field(default_factory=lambda: list(METRICS))
    face: FaceSimConfig = dataclasses.field(default_factory=FaceSimConfig)
    clip: ClipConfig = dataclasses.field(default_factory=ClipConfig)
    dynamic_degree: DynamicDegreeConfig = dataclasses.field(default_factory=DynamicDegreeConfig)
    smoothness: SmoothnessConfig = dataclasses.field(default_factory=SmoothnessConfig)
    dover: DoverConfig = dataclasses.field(default_factory=DoverConfig)
    intensity: IntensityConfig = dataclasses.field(default_factory=IntensityConfig)
    protocol: ProtocolConfig = dataclasses.field(default_factory=ProtocolConfig)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.metrics) - set(METRICS))
        if unknown:
            raise ConfigError(f"metrics: unknown {unknown[0]!r}; choose from {', '.join(METRICS)}")
