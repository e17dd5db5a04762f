"""Load (or, for ``tiny``, build) every part of MotionCharacter, and the small encode/decode helpers around them.

Base weights come through each library's own API: a hub id or local diffusers folder (``from_pretrained`` with
safetensors), or a single-file community SD 1.5 checkpoint (``from_single_file``, ``.safetensors`` only so no pickle is
ever unpickled). AnimateDiff's motion modules join the SD UNet via ``UNetMotionModel.from_unet2d``.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from human_motion.config import ConfigError
from human_motion.model.adapter import MotionCharacterAdapter
from human_motion.model.config import LossConfig, ModelConfig

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class Components:
    unet: nn.Module  # UNetMotionModel with the adapter's processors installed
    adapter: MotionCharacterAdapter
    vae: nn.Module
    text_encoder: nn.Module
    tokenizer: object
    image_encoder: nn.Module
    noise_scheduler: object  # DDIMScheduler: add_noise for training, step for validation samples


def _ddim(config: dict):
    from diffusers import DDIMScheduler

    # AnimateDiff's motion modules were trained with a linear beta schedule and unclipped samples (its v1.5 configs).
    return DDIMScheduler.from_config(
        config, beta_schedule="linear", clip_sample=False, timestep_spacing="linspace", steps_offset=1
    )


def _build_from_configs(cfg: ModelConfig, work_dir: pathlib.Path, seed: int):
    """``tiny`` (seconds on a CPU) or ``random-sd15`` (the paper's shapes, random weights); nothing downloaded."""
    from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel, UNetMotionModel
    from transformers import (CLIPTextConfig, CLIPTextModel, CLIPTokenizer, CLIPVisionConfig,
                              CLIPVisionModelWithProjection)

    from human_motion.model import tiny

    tok_dir = work_dir / "tiny_tokenizer"
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir) if tok_dir.is_dir() else tiny.write_tiny_tokenizer(tok_dir)
    torch.manual_seed(seed)  # frozen base weights must be the same in a resumed run
    if cfg.pretrained_model_name_or_path == "tiny":
        unet2d = UNet2DConditionModel(**tiny.tiny_unet_config())
        unet = UNetMotionModel.from_unet2d(unet2d, MotionAdapter(**tiny.tiny_motion_adapter_config()))
        vae = AutoencoderKL(**tiny.tiny_vae_config())
        text_encoder = CLIPTextModel(CLIPTextConfig(**tiny.tiny_text_config(len(tokenizer))))
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**tiny.tiny_vision_config()))
    else:
        unet = UNetMotionModel.from_unet2d(UNet2DConditionModel(**tiny.sd15_unet_config()), MotionAdapter())
        vae = AutoencoderKL(**tiny.sd15_vae_config())
        text_encoder = CLIPTextModel(CLIPTextConfig(**tiny.sd15_text_config()))
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**tiny.vit_h_vision_config()))
    scheduler = _ddim(dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012))
    return unet, vae, text_encoder, tokenizer, image_encoder, scheduler


def _load_base(cfg: ModelConfig):
    from diffusers import (AutoencoderKL, DDIMScheduler, MotionAdapter, StableDiffusionPipeline,
                           UNet2DConditionModel, UNetMotionModel)
    from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

    path = cfg.pretrained_model_name_or_path
    if path.endswith((".ckpt", ".pt", ".bin")):
        raise ConfigError(f"{path}: only .safetensors single-file checkpoints are loaded (no pickles)")
    if path.endswith(".safetensors"):
        pipe = StableDiffusionPipeline.from_single_file(path, config=cfg.single_file_config, safety_checker=None)
        unet2d, vae, text_encoder, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
        scheduler_config = pipe.scheduler.config
    else:
        kw = dict(revision=cfg.revision)
        unet2d = UNet2DConditionModel.from_pretrained(path, subfolder="unet", use_safetensors=True, **kw)
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae", use_safetensors=True, **kw)
        text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", use_safetensors=True, **kw)
        tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", **kw)
        scheduler_config = DDIMScheduler.load_config(path, subfolder="scheduler", **kw)
    motion_adapter = MotionAdapter.from_pretrained(cfg.motion_adapter, use_safetensors=True)
    unet = UNetMotionModel.from_unet2d(unet2d, motion_adapter)
    image_encoder = CLIPVisionModelWithProjection.from_pretrained(
        cfg.image_encoder, subfolder=cfg.image_encoder_subfolder or "", use_safetensors=True
    )
    return unet, vae, text_encoder, tokenizer, image_encoder, _ddim(scheduler_config)


def _override_schedule(scheduler, cfg: ModelConfig):
    """The base's DDIM with ``model.prediction_type`` and ``model.zero_terminal_snr`` applied, checked together."""
    config = {k: v for k, v in scheduler.config.items() if k != "_use_default_values"}  # else from_config resets them
    if cfg.prediction_type is not None:
        config["prediction_type"] = cfg.prediction_type
    if cfg.zero_terminal_snr is not None:
        config["rescale_betas_zero_snr"] = cfg.zero_terminal_snr
    if config.get("rescale_betas_zero_snr") and config["prediction_type"] != "v_prediction":
        # At zero SNR the last step's noise prediction says nothing about the clip: x0 = (x - eps) / ~0.
        raise ConfigError(
            f"a zero-terminal-SNR schedule needs model.prediction_type=v_prediction, not {config['prediction_type']}"
        )
    return _ddim(config) if any(config[k] != scheduler.config.get(k) for k in config) else scheduler


def load_components(cfg: ModelConfig, work_dir: str | pathlib.Path, seed: int = 0) -> Components:
    """All parts, frozen base in eval mode, adapter fresh (or from ``cfg.adapter``) and installed in the UNet."""
    work_dir = pathlib.Path(work_dir)
    if cfg.pretrained_model_name_or_path in ("tiny", "random-sd15"):
        unet, vae, text_encoder, tokenizer, image_encoder, scheduler = _build_from_configs(cfg, work_dir, seed)
    else:
        unet, vae, text_encoder, tokenizer, image_encoder, scheduler = _load_base(cfg)
    if cfg.unet:  # a UNet trained with model.train_unet (2D layers and motion modules), before the adapter joins
        from diffusers import UNetMotionModel

        unet = UNetMotionModel.from_pretrained(cfg.unet, use_safetensors=True)
    scheduler = _override_schedule(scheduler, cfg)
    if cfg.adapter:
        adapter = MotionCharacterAdapter.from_pretrained(cfg.adapter, use_safetensors=True)
    else:
        torch.manual_seed(seed + 1)
        adapter = MotionCharacterAdapter.from_unet(
            unet,
            id_dim=cfg.id_embedding_dim,
            clip_dim=image_encoder.config.hidden_size,
            num_id_tokens=cfg.num_id_tokens,
            num_action_tokens=cfg.num_action_tokens,
            num_intensity_tokens=cfg.num_intensity_tokens,
            projector_width=cfg.projector_width,
            projector_heads=cfg.projector_heads,
            intensity_frequencies=cfg.intensity_frequencies,
            intensity_hidden_dim=cfg.intensity_hidden_dim,
            max_intensity=cfg.max_intensity,
        )
    if adapter.config.id_dim != cfg.id_embedding_dim:
        raise ConfigError(
            f"adapter {cfg.adapter} takes {adapter.config.id_dim}-d identity embeddings, the config says "
            f"{cfg.id_embedding_dim} ({cfg.id_embedding_kind})"
        )
    adapter.install(unet)
    adapter.set_scales(cfg.id_scale, cfg.action_scale, cfg.intensity_scale)
    for m in (vae, text_encoder, image_encoder):
        m.requires_grad_(False).eval()
    return Components(unet, adapter, vae, text_encoder, tokenizer, image_encoder, scheduler)


def load_face_embedder(spec: str) -> nn.Module:
    """phi of Eq. 4, frozen: ``tiny``, a ``SmallFaceEmbedder`` folder (``model/face_embedder.py``, saved with
    ``save_pretrained``), or an ArcFace ONNX file turned into a differentiable torch module."""
    if not spec:
        raise ConfigError("loss.face_embedder is empty; name an ArcFace ONNX file or a SmallFaceEmbedder folder, or "
                          "set loss.id_weight=0")
    path = pathlib.Path(spec).expanduser()
    if spec == "tiny":
        from human_motion.model.tiny import TinyFaceEmbedder

        module = TinyFaceEmbedder()
    elif path.is_dir():
        from human_motion.model.face_embedder import SmallFaceEmbedder

        if not (path / "config.json").is_file():
            raise ConfigError(f"loss.face_embedder {spec!r} is a folder without config.json; point it at a folder "
                              "saved by SmallFaceEmbedder.save_pretrained or at an ArcFace ONNX file")
        module = SmallFaceEmbedder.from_pretrained(str(path), use_safetensors=True)
    else:
        if not path.is_file():
            raise ConfigError(
                f"loss.face_embedder {spec!r} does not exist; point it at an ArcFace ONNX file (insightface's "
                "buffalo_l/w600k_r50.onnx), a SmallFaceEmbedder folder, or set loss.id_weight=0"
            )
        try:
            import onnx2torch
        except ImportError:
            raise ConfigError("an ONNX face embedder (the ID loss) needs onnx2torch: pip install onnx2torch") from None
        module = onnx2torch.convert(str(path))
    return module.requires_grad_(False).eval()


def wants_face_embedder(loss: LossConfig) -> bool:
    return loss.id_weight > 0


@torch.no_grad()
def encode_text(tokenizer, text_encoder, texts: list[str], max_length: int) -> torch.Tensor:
    """Texts -> CLIP text tokens (b, max_length, d); padded or truncated to exactly ``max_length``."""
    ids = tokenizer(texts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
    return text_encoder(ids.input_ids.to(text_encoder.device))[0]


@torch.no_grad()
def encode_clip_image(image_encoder, faces: torch.Tensor) -> torch.Tensor:
    """Faces (b, 3, s, s) in [-1, 1] -> CLIP penultimate hidden states (b, l, clip_dim), as IP-Adapter-Plus uses."""
    size = image_encoder.config.image_size
    x = F.interpolate(faces.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(CLIP_MEAN, device=x.device)[None, :, None, None]
    std = torch.tensor(CLIP_STD, device=x.device)[None, :, None, None]
    x = ((x + 1) / 2 - mean) / std
    return image_encoder(x.to(image_encoder.dtype), output_hidden_states=True).hidden_states[-2]


def encode_video(vae, pixel_values: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(b, f, 3, H, W) in [-1, 1] -> scaled latents (b, c, f, h, w); sampled from the posterior like SD training
    (with ``generator``, so a resumed run draws the same samples)."""
    b, f = pixel_values.shape[:2]
    with torch.no_grad():
        posterior = vae.encode(pixel_values.flatten(0, 1).to(vae.dtype)).latent_dist
        latents = posterior.sample(generator=generator)  # (b*f, c, h, w)
    latents = latents * vae.config.scaling_factor
    return latents.unflatten(0, (b, f)).permute(0, 2, 1, 3, 4)  # (b, c, f, h, w)


def decode_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents (b, c, f, h, w) -> frames (b, f, 3, H, W) in about [-1, 1]; differentiable (ID loss)."""
    b, _, f = latents.shape[:3]
    flat = latents.permute(0, 2, 1, 3, 4).flatten(0, 1) / vae.config.scaling_factor  # (b*f, c, h, w)
    return vae.decode(flat.to(vae.dtype)).sample.unflatten(0, (b, f))  # (b, f, 3, H, W)


def save_unet(unet, path: str | pathlib.Path) -> None:
    """Save a ``UNetMotionModel`` without the adapter's processors (those live in ``adapter/``), so that
    ``UNetMotionModel.from_pretrained(path)`` (``model.unet``) rebuilds it with diffusers' own processors."""
    from safetensors.torch import save_file

    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    unet.save_config(path)
    state = {k: v.detach().contiguous() for k, v in unet.state_dict().items() if ".processor." not in k}
    save_file(state, str(path / "diffusion_pytorch_model.safetensors"))


def load_unet_weights(unet, path: str | pathlib.Path) -> None:
    """Load ``save_unet``'s weights into a UNet whose adapter processors are installed (strict on the base keys)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from human_motion.model.weights_errors import weights_error

    file = pathlib.Path(path) / "diffusion_pytorch_model.safetensors"
    try:
        state = load_file(str(file))
    except (OSError, SafetensorError) as e:
        raise weights_error(file, e) from None
    missing, unexpected = unet.load_state_dict(state, strict=False)
    missing = [k for k in missing if ".processor." not in k]
    if missing or unexpected:
        raise ConfigError(f"{path}: the UNet weights do not match the run's base model "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
