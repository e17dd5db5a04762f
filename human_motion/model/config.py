"""Training configuration: one dataclass per concern (model, data, loss, optim, train, validation).

Loaded with ``human_motion.config.load_config(TrainConfig, path, overrides)``; packaged recipes live in
``human_motion/configs/train.yaml`` (the paper's) and ``train_tiny.yaml`` (CPU, seconds). Cross-field checks run in
``__post_init__`` so a bad value stops the run before any weights are loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from human_motion.config import ConfigError, DefaultsHelpFormatter, packaged_configs  # noqa: F401 (re-exported)


@dataclass
class ModelConfig:
    # "tiny" builds every part from small configs, "random-sd15" at the paper's shapes with random weights (sizes,
    # FLOPs, GPU timing); otherwise a hub id, a local diffusers folder, or a single-file community SD 1.5 checkpoint
    # (*.safetensors, loaded with StableDiffusionPipeline.from_single_file).
    # (stable-diffusion-v1-5/stable-diffusion-v1-5 is the copy of the withdrawn runwayml/stable-diffusion-v1-5.)
    pretrained_model_name_or_path: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    revision: str | None = None
    # For a single-file checkpoint: a local diffusers folder (or hub id) whose configs describe it; without one,
    # diffusers fetches SD 1.5's configs from the hub, which an offline machine cannot.
    single_file_config: str | None = None
    motion_adapter: str = "guoyww/animatediff-motion-adapter-v1-5-2"  # hub id or local folder ("" for tiny)
    image_encoder: str = "h94/IP-Adapter"  # CLIPVisionModelWithProjection, hub id or local folder
    image_encoder_subfolder: str = "models/image_encoder"
    adapter: str | None = None  # a saved MotionCharacterAdapter folder to start from (fresh when None)
    id_embedding_kind: Literal["arcface", "dlib"] = "arcface"  # what the shards must carry (json id_embedding.kind)
    id_embedding_dim: int = 512  # 512 for insightface ArcFace, 128 for the offline dlib backend
    num_id_tokens: int = 4
    num_action_tokens: int = 8  # action phrase tokens incl. start/end tokens; longer phrases are truncated
    num_intensity_tokens: int = 4
    projector_width: int = 768
    projector_heads: int = 8
    intensity_frequencies: int = 4  # Fourier octaves of the intensity before its MLP (model/motion_control.py)
    intensity_hidden_dim: int = 256
    max_intensity: float = 20.0
    id_scale: float = 1.0  # lambda, Eq. 3
    action_scale: float = 1.0  # beta (ours), Eq. 8
    intensity_scale: float = 1.0  # alpha, Eq. 8
    train_motion_modules: bool = False
    # Train the whole UNet (spatial layers and motion modules) with the adapter: for a base trained from scratch
    # (benchmarks/intensity_control.py), not for SD 1.5. The run then saves ``unet/`` (the UNetMotionModel without
    # the adapter's processors) next to ``adapter/``.
    train_unet: bool = False
    unet: str | None = None  # a ``unet/`` folder saved by a train_unet run: replaces the base UNet when loading
    prediction_type: str | None = None  # overrides the scheduler's ("epsilon" | "v_prediction")
    # Rescale the base's noise schedule so that its last step is pure noise (zero terminal SNR, Lin et al., "Common
    # Diffusion Noise Schedules and Sample Steps are Flawed", 2024); needs v_prediction. None: as the base's scheduler.
    # With AnimateDiff's linear schedule 4% of the clip survives at t=999, so in training the model reads each
    # frame's layout from the noise, and in sampling the random initial noise then sets how much a clip moves
    # (benchmarks/README.md, intensity control).
    zero_terminal_snr: bool | None = None
    # Share of the initial noise's variance common to all frames (model/noise.py), in training and sampling alike.
    # 0: independent per frame, as AnimateDiff and the paper.
    noise_frame_correlation: float = 0.0

    def __post_init__(self):
        expected = {"arcface": 512, "dlib": 128}[self.id_embedding_kind]
        if self.id_embedding_dim != expected:
            raise ConfigError(
                f"model.id_embedding_dim={self.id_embedding_dim} does not match model.id_embedding_kind="
                f"{self.id_embedding_kind!r} ({expected}-d); set both, e.g. --set model.id_embedding_kind=dlib "
                "--set model.id_embedding_dim=128"
            )
        if self.prediction_type not in (None, "epsilon", "v_prediction"):
            raise ConfigError(f"model.prediction_type must be epsilon or v_prediction, got {self.prediction_type!r}")
        if not 0.0 <= self.noise_frame_correlation < 1.0:
            raise ConfigError(f"model.noise_frame_correlation must be in [0, 1), got {self.noise_frame_correlation}")
        sizes = ("num_id_tokens", "num_action_tokens", "num_intensity_tokens", "projector_width", "projector_heads",
                 "intensity_frequencies", "intensity_hidden_dim")
        small = [f"{name}={getattr(self, name)}" for name in sizes if getattr(self, name) < 1]
        if small:
            raise ConfigError(f"model.{small[0]}: the adapter's token counts and layer sizes must be >= 1")
        if self.projector_width % self.projector_heads:
            raise ConfigError(f"model.projector_width ({self.projector_width}) must be a multiple of "
                              f"model.projector_heads ({self.projector_heads})")
        if self.max_intensity <= 0:
            raise ConfigError(f"model.max_intensity must be > 0, got {self.max_intensity}")


@dataclass
class DataConfig:
    dataset_type: Literal["wds", "synthetic"] = "wds"
    resolution: int = 512  # frames are resized then centre-cropped to this square side
    num_frames: int = 16
    frame_stride: int = 1  # take every n-th stored frame (shards store 16 frames at 4 fps)
    static_ratio: float | None = None  # fraction of static (image) samples; None: as they come in the shards
    flip_prob: float = 0.5
    text_drop_prob: float = 0.05  # caption -> "" (classifier-free guidance)
    image_drop_prob: float = 0.05  # identity embedding and CLIP image tokens -> zeros
    clip_drop_prob: float = 0.5  # CLIP image tokens alone -> zeros (the paper's "CLIP embedding dropped")
    face_size: int = 112  # side of the reference / generated face crops given to the face embedder
    shuffle_buffer: int = 64
    max_bad_fraction: float = 0.5  # stop when more than this share of read samples is bad (after 20 reads)
    num_synthetic_samples: int = 8
    # The output of `hm select`: a subset of the shards' samples to train on (.txt keys, .parquet or .csv with a
    # `key` column), e.g. an intensity-balanced one, or with --weights per-sample sampling weights (each pass over
    # the shards draws a sample floor(w) or floor(w) + 1 times, w on average). Samples not listed are passed over.
    keys_file: str | None = None

    def __post_init__(self):
        for name in ("flip_prob", "text_drop_prob", "image_drop_prob", "clip_drop_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"data.{name} must be within [0, 1], got {getattr(self, name)}")
        if self.static_ratio is not None and not 0.0 <= self.static_ratio <= 1.0:
            raise ConfigError(f"data.static_ratio must be within [0, 1] or null, got {self.static_ratio}")
        if self.resolution % 8:
            raise ConfigError(f"data.resolution must be a multiple of 8, got {self.resolution}")


@dataclass
class LossConfig:
    region_delta: float = 1.0  # delta of Eq. 9: weights in [1, 1 + delta], larger where the face moves
    # The stored flow maps are pixels per step at the shards' size, so f / 255 of Eq. 9 stays near 0 for a face that
    # moves 20 px a step (weights 1.00-1.08): the paper's maps are 8-bit images whose scale it does not give. This
    # multiplies the maps before Eq. 9; 255 / f_max spreads the weights over [1, 1 + delta] (identity_control.py).
    region_flow_scale: float = 1.0
    id_weight: float = 0.0  # lambda_id of Eq. 11; 0 disables the ID-consistency loss (and the VAE decode it needs)
    id_max_timestep: int = 400  # t_hat: the ID loss applies to samples noised at t <= t_hat (clean x0 estimates)
    id_num_frames: int = 2  # frames per clip decoded for the ID loss (evenly spaced)
    # Face embedder phi: "tiny" (tests), a SmallFaceEmbedder folder (model/face_embedder.py: ArcFace's objective
    # trained on the run's own faces, for small models trained from scratch), or an ArcFace ONNX file converted with
    # onnx2torch (insightface's buffalo_l/w600k_r50.onnx).
    face_embedder: str = "~/.insightface/models/buffalo_l/w600k_r50.onnx"

    def __post_init__(self):
        if self.region_delta < 0:
            raise ConfigError(f"loss.region_delta must be >= 0, got {self.region_delta}")
        if self.region_flow_scale <= 0:
            raise ConfigError(f"loss.region_flow_scale must be > 0, got {self.region_flow_scale}")
        if self.id_weight < 0 or self.id_num_frames < 1:
            raise ConfigError("loss.id_weight must be >= 0 and loss.id_num_frames >= 1")


@dataclass
class OptimConfig:
    learning_rate: float = 1e-5
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    lr_scheduler: str = "constant"  # any name of diffusers.optimization.get_scheduler
    lr_warmup_steps: int = 0


@dataclass
class LoopConfig:
    seed: int = 42
    train_batch_size: int = 2  # per device
    max_train_steps: int = 12000
    gradient_accumulation_steps: int = 1
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    gradient_checkpointing: bool = False
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = 3
    dataloader_num_workers: int = 0
    log_every_steps: int = 1
    # Experiment tracker through accelerate: "auto" (TensorBoard when installed, else none), "none", "all", or
    # tracker names (tensorboard, wandb, mlflow, comet_ml, aim, clearml, dvclive, swanlab, trackio), comma-separated.
    log_with: str = "auto"
    progress_every_s: float = 30.0  # a plain progress line this often when stderr is not a terminal

    def __post_init__(self):
        if self.train_batch_size < 1 or self.max_train_steps < 1 or self.checkpointing_steps < 1:
            raise ConfigError("train.train_batch_size, train.max_train_steps and train.checkpointing_steps "
                              "must be >= 1")


@dataclass
class ValidationConfig:
    num_samples: int = 2  # videos sampled at every checkpoint (0: none)
    num_inference_steps: int = 25
    guidance_scale: float = 8.0
    fixed_batch_loss: bool = True  # log the loss of the first batch with fixed noise at each checkpoint


@dataclass
class SamplingConfig:
    """What ``hm generate`` / ``MotionCharacterPipeline`` use for a checkpoint of this run unless told otherwise
    (null: the paper's 30 DDIM steps and guidance 8.0). A tiny run samples well enough in a few steps."""

    num_inference_steps: int | None = None
    guidance_scale: float | None = None

    def __post_init__(self) -> None:
        if (self.num_inference_steps is not None and self.num_inference_steps < 1) or \
                (self.guidance_scale is not None and self.guidance_scale < 0):
            raise ConfigError("sampling.num_inference_steps must be >= 1 and sampling.guidance_scale >= 0")


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
