"""``hm build`` configuration: one dataclass per concern (sources, decode, faces, flow, caption, select, sink, ray).

Defaults are the paper's where it fixes them (16 frames at 4 fps, 512x512 crops) and offline CPU backends
otherwise. ``configs/build.yaml`` lists every key with a comment; ``configs/paper.yaml`` tightens the filters to
the project page's (512 px sources).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from human_motion.config import ConfigError
from human_motion.sources.config import SourceConfig


@dataclasses.dataclass
class StageResources:
    """How Ray runs a stage: rows per call, actors in the pool, CPUs and GPUs per actor."""

    batch_size: int = 1
    concurrency: int = 1
    num_cpus: float = 0.5
    num_gpus: float = 0.0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.concurrency < 1:
            raise ConfigError("batch_size and concurrency must be >= 1")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ConfigError("num_cpus and num_gpus must be >= 0")


@dataclasses.dataclass
class DecodeConfig(StageResources):
    fps: float = 4.0  # sampling rate of the stored frames (the paper: 4 fps)
    num_frames: int = 16  # frames per window (the paper: 16)
    size_px: int = 512  # side of the stored square crop
    max_windows_per_clip: int = 4  # non-overlapping windows taken from a long clip
    crop_scale: float = 1.8  # crop side = this x the side of the union of face boxes over the window
    detect_max_side_px: int = 640  # frames are shrunk to this longest side for face detection
    image_max_side_px: int = 4096  # larger images are rejected (decompression bombs)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fps <= 0 or self.num_frames < 2 or self.size_px < 64 or self.size_px % 8:
            raise ConfigError("decode: fps > 0, num_frames >= 2, size_px >= 64 and a multiple of 8")
        if self.crop_scale < 1.0:
            raise ConfigError("decode.crop_scale must be >= 1 (the crop must contain the face)")


@dataclasses.dataclass
class FacesConfig(StageResources):
    detector: Literal["mediapipe", "dlib", "insightface"] = "mediapipe"
    embedder: Literal["dlib", "insightface"] = "dlib"
    landmarker: Literal["mediapipe", "none"] = "mediapipe"
    insightface_root: str | None = None  # folder of an insightface model pack (buffalo_l layout)
    insightface_pack: str = "buffalo_l"
    detect_min_score: float = 0.3  # detections below this are ignored entirely
    # Frames embedded besides the reference to catch identity switches. dlib's embedding costs ~60-90 ms a face
    # on one CPU core, the largest share of a CPU build: 2 checks (first and last part of the window) by default.
    id_check_frames: int = 2
    face_size_px: int = 256  # side of the stored aligned reference face


@dataclasses.dataclass
class FlowConfig(StageResources):
    backend: Literal["dis", "farneback", "raft_small", "raft_large"] = "dis"
    work_px: int = 256  # flow is computed at this side; magnitudes are reported at decode.size_px scale
    raft_weights: str | None = None  # local .pth (state dict); default: torchvision's cache / download
    raft_iters: int = 12
    raft_pairs_per_call: int = 0  # RAFT: frame pairs per forward pass (0: all pairs of a window; lower caps GPU memory)
    device: str = "auto"  # auto | cpu | cuda
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.work_px < 32 or self.work_px % 8:
            raise ConfigError("flow.work_px must be >= 32 and a multiple of 8")
        if self.raft_pairs_per_call < 0 or self.raft_iters < 1:
            raise ConfigError("flow.raft_pairs_per_call must be >= 0 (0: all pairs) and flow.raft_iters >= 1")
        if self.backend.startswith("raft") and self.work_px < 128:
            raise ConfigError("RAFT needs flow.work_px >= 128 (its correlation pyramid downsamples by 8 x 2^3)")


@dataclasses.dataclass
class CaptionConfig(StageResources):
    """``landmarks``: offline rules on the face features. The others ask a multimodal model (backends/captioners.py;
    docs/backends.md); the landmark phrase stays in ``caption.candidates.landmarks`` as a cross-check."""

    backend: Literal["landmarks", "transformers", "vllm", "endpoint"] = "landmarks"
    num_cpus: float = 0.25
    model: str | None = None  # transformers/vllm: a hub id or a local folder; endpoint: the served model's name
    endpoint_url: str | None = None  # endpoint: base URL of an OpenAI-compatible server, e.g. http://host:8000/v1
    api_key_env: str | None = None  # endpoint: NAME of the environment variable that holds the API key (not the key)
    num_frames: int = 4  # frames of the window shown to the model (spread over it)
    image_px: int = 448  # side the frames are resized to before the model's own processor
    prompt: str | None = None  # replaces captioners.PROMPT; may use {what}, {words}, {chars}
    max_new_tokens: int = 160
    temperature: float = 0.0  # first try (0: greedy)
    retry_temperature: float = 0.7  # retries of invalid answers sample, so they can differ
    max_retries: int = 2  # then the row is rejected (caption_invalid / caption_request_failed)
    retry_backoff_s: float = 1.0  # endpoint: wait before retrying failed requests (doubles each time)
    max_action_words: int = 6
    max_description_chars: int = 400
    device: str = "auto"  # transformers: auto | cpu | cuda
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"  # transformers: auto = bf16 on CUDA, fp32 on CPU
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)  # from_pretrained / vllm.LLM extras
    json_mode: bool = True  # endpoint: send response_format={"type": "json_object"}
    request_timeout_s: float = 120.0
    max_parallel_requests: int = 8  # endpoint: concurrent requests per actor

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backend != "landmarks" and not self.model:
            raise ConfigError(f"caption.backend={self.backend} needs caption.model (a hub id or local folder; for "
                              "an endpoint, the served model's name)")
        if self.backend == "endpoint" and not self.endpoint_url:
            raise ConfigError("caption.backend=endpoint needs caption.endpoint_url, e.g. http://localhost:8000/v1")
        if self.num_frames < 1 or self.image_px < 28 or self.max_retries < 0 or self.max_action_words < 1:
            raise ConfigError("caption: num_frames >= 1, image_px >= 28, max_retries >= 0, max_action_words >= 1")


@dataclasses.dataclass
class QualityConfig(StageResources):
    """Text-overlay and image-quality scores on one sampled frame per window (stages/quality.py)."""

    text_backend: Literal["mser", "easyocr", "none"] = "mser"
    easyocr_langs: list[str] = dataclasses.field(default_factory=lambda: ["en"])
    easyocr_model_dir: str | None = None  # EasyOCR weights folder (offline); None: EasyOCR's own cache/download
    easyocr_min_conf: float = 0.3
    iq_backend: Literal["sharpness", "clip_iqa", "none"] = "sharpness"
    sharpness_ref: float = 100.0  # Laplacian variance that maps to image_quality 0.5
    clip_model: str = "openai/clip-vit-base-patch32"  # CLIP-IQA: a hub id or a local folder
    device: str = "auto"  # auto | cpu | cuda (easyocr, clip_iqa)
    num_cpus: float = 0.25


@dataclasses.dataclass
class SelectConfig:
    """Thresholds, applied in one place (stages/select.py) to the scores the stages write."""

    min_source_side_px: int = 384  # the paper used 512; the dev clips include 410-480 px videos
    min_face_side_px: int = 64  # median face box side in source pixels
    min_face_score: float = 0.7  # median detector confidence of the main face (real faces here: 0.88-0.97)
    max_missing_face_frac: float = 0.25  # frames of the window where the main face is not found
    max_multi_face_frac: float = 0.25  # frames showing a second face (large and confident enough)
    second_face_min_rel_side: float = 0.35  # a second face counts when its side >= this x the main face's
    second_face_min_score: float = 0.6
    # Cosine of frame embeddings to the reference, per embedding kind: dlib's vectors are not centred (two
    # different people score ~0.88; dlib's own 0.6 distance rule is ~0.915), ArcFace's are (same person > ~0.4).
    min_id_cos: dict[str, float] = dataclasses.field(default_factory=lambda: {"dlib": 0.92, "arcface": 0.4})
    min_mean_luma: float = 0.0  # reject nearly black windows when > 0
    max_text_frac: float = 1.0  # text overlays: fraction of the crop covered by text lines (1.0: off)
    min_image_quality: float = 0.0  # image quality score 0..1 of a sampled frame (0.0: off)


@dataclasses.dataclass
class SinkConfig:
    clips_per_shard: int = 16  # input clips per shard: the unit of work and of restart
    mode: Literal["incremental", "overwrite"] = "incremental"
    crf: int = 18  # H.264 quality of the stored windows
    preset: str = "veryfast"  # x264 preset: at 16 frames of 512x512, 2.5x faster than medium and no larger
    jpeg_quality: int = 95


@dataclasses.dataclass
class RayConfig:
    address: str | None = None  # None: start Ray in this process; "auto" or host:port joins a cluster
    num_cpus: int | None = None  # for the in-process Ray; None: all cores
    object_store_memory_mb: int | None = None
    progress: bool = True
    max_retries: int = 3  # restarts of a crashed actor and retries of its task; then its clip is quarantined


@dataclasses.dataclass
class BuildConfig:
    sources: dict[str, SourceConfig] = dataclasses.field(default_factory=dict)
    decode: DecodeConfig = dataclasses.field(default_factory=DecodeConfig)
    faces: FacesConfig = dataclasses.field(default_factory=FacesConfig)
    flow: FlowConfig = dataclasses.field(default_factory=FlowConfig)
    caption: CaptionConfig = dataclasses.field(default_factory=CaptionConfig)
    quality: QualityConfig = dataclasses.field(default_factory=QualityConfig)
    encode: StageResources = dataclasses.field(default_factory=StageResources)
    select: SelectConfig = dataclasses.field(default_factory=SelectConfig)
    sink: SinkConfig = dataclasses.field(default_factory=SinkConfig)
    ray: RayConfig = dataclasses.field(default_factory=RayConfig)
    stages: list[str] = dataclasses.field(default_factory=lambda: ["decode", "quality", "faces", "flow", "caption", "encode"])

    def __post_init__(self) -> None:
        known = ("decode", "quality", "faces", "flow", "caption", "encode")
        bad = [s for s in self.stages if s not in known]
        if bad:
            raise ConfigError(f"unknown stage {bad[0]!r}; stages are {', '.join(known)}")
        for required in ("decode", "encode"):
            if required not in self.stages:
                raise ConfigError(f"stages must include {required!r}")


def stage_resources(cfg: BuildConfig, stage: str) -> StageResources:
    """Ray resources of a stage: its own section, or ``encode``'s."""
    return cfg.encode if stage == "encode" else getattr(cfg, stage)
