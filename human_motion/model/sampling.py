"""``MotionCharacterPipeline``: a reference face, a prompt, an action phrase and an intensity in, a video out.

A diffusers ``DiffusionPipeline`` with one ``__call__`` (diffusers argument names), loaded from a folder saved by
``hm train`` (the run folder, one of its ``checkpoints/checkpoint-N``, or its ``adapter/``)::

    pipe = MotionCharacterPipeline.from_pretrained("runs/mc")
    pipe.to("cuda", torch.float16)                     # fp32 on the CPU unless .to() says otherwise
    out = pipe(reference_image=rgb, prompt="a woman in a park", action="smiling", intensity=5.0,
               generator=torch.Generator().manual_seed(0))
    out.frames                                          # (num_frames, height, width, 3) uint8

The reference face is found and aligned by the build's own stages (``stages/decode.py`` picks the main face,
scores second faces and crops; ``stages/faces.py`` aligns it and embeds the identity), so the model sees the
same kind of reference crop and embedding it was trained on; no face or several faces raise
:class:`ReferenceFaceError`. Sampling is the DDIM + classifier-free-guidance loop of ``validation.sample_clips``:
the unconditional branch drops text and identity and keeps action and intensity (what the dropouts train).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from human_motion.config import ConfigError
from human_motion.model.components import decode_latents, encode_clip_image, encode_text, load_unet_weights
from human_motion.model.conditioning import MotionCharacterModel, unconditional
from human_motion.model.noise import with_shared
from human_motion.model.reference import (  # noqa: F401 - re-exported: callers import them from here
    ReferenceFace,
    ReferenceFaceError,
    ReferenceFaces,
    _to_rgb_array,
    read_reference,
)

# The paper's sampling settings (Sec. 4.1): 16 frames at 512x512, 30 DDIM steps, guidance 8.0.
PAPER_NUM_FRAMES = 16
PAPER_SIZE = 512
PAPER_STEPS = 30
PAPER_GUIDANCE = 8.0


@torch.no_grad()
def denoise(model, scheduler, cond: dict, uncond: dict | None, noise: torch.Tensor, guidance_scale: float,
            dtype: torch.dtype | None = None, callback=None) -> torch.Tensor:
    """DDIM (any diffusers scheduler, ``set_timesteps`` already called) with classifier-free guidance.

    ``model`` is a ``MotionCharacterModel``; ``cond``/``uncond`` hold the keys of ``conditioning.encode_conditions``
    (``uncond`` None: no guidance); ``noise`` (b, c, f, h, w) is the unscaled initial noise. Latents stay fp32
    between steps; the model reads them in ``dtype`` (None: as they are, e.g. under autocast). Returns the final
    latents (b, c, f, h, w). Shared by the pipeline and the validation samples of ``hm train``.
    """
    latents = noise * scheduler.init_noise_sigma
    both = {k: torch.cat([uncond[k], cond[k]]) for k in cond} if uncond is not None else cond
    for i, t in enumerate(scheduler.timesteps):
        x = torch.cat([latents] * 2) if uncond is not None else latents
        x = scheduler.scale_model_input(x, t)
        pred = model(x if dtype is None else x.to(dtype), t.expand(x.shape[0]), **both).float()
        if uncond is not None:
            pred_uncond, pred_cond = pred.chunk(2)
            pred = pred_uncond + guidance_scale * (pred_cond - pred_uncond)
        latents = scheduler.step(pred, t, latents).prev_sample
        if callback is not None:
            callback(i, t)
    return latents


@dataclasses.dataclass
class MotionCharacterPipelineOutput(BaseOutput):
    """``frames``: (num_frames, height, width, 3) uint8 (``output_type="np"``) or (num_frames, 3, height, width)
    float in [0, 1] (``"pt"``). ``reference_face``: the aligned reference crop the model saw, (S, S, 3) uint8."""

    frames: Any
    reference_face: np.ndarray | None = None


def find_run_dir(path: str | pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """(run folder with the resolved ``config.json``, adapter folder) for a run folder, a checkpoint folder
    (``runs/x/checkpoints/checkpoint-N``) or an adapter folder (``runs/x/adapter``)."""
    path = pathlib.Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"checkpoint {path} does not exist; pass a run folder saved by `hm train`")
    if (path / "adapter").is_dir():
        adapter = path / "adapter"
    elif (path / "diffusion_pytorch_model.safetensors").is_file():
        adapter = path
    else:
        raise ConfigError(f"{path} has no adapter/ folder; pass a run folder saved by `hm train` (or one of its "
                          "checkpoints/checkpoint-N)")
    for run in [path, *list(path.parents)[:3]]:
        cfg = run / "config.json"
        if cfg.is_file():
            try:
                data = json.loads(cfg.read_text())
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict) and "model" in data and "train" in data:
                return run, adapter
    raise ConfigError(f"no training config.json (written by `hm train`) in {path} or the folders above it")


class MotionCharacterPipeline(DiffusionPipeline):
    """Text + reference face + action phrase + intensity -> video, with AnimateDiff + the MotionCharacter adapter.

    Components: ``vae``, ``text_encoder``, ``tokenizer``, ``image_encoder``, ``unet`` (``UNetMotionModel`` with the
    adapter's processors installed), ``adapter`` (``MotionCharacterAdapter``), ``scheduler`` (DDIM).
    """

    model_cpu_offload_seq = "text_encoder->image_encoder->unet->vae"
    # The adapter's ID projector and intensity MLP run outside the UNet's forward (they build its
    # encoder_hidden_states); they are small and stay on the accelerator.
    _exclude_from_cpu_offload = ["adapter"]  # noqa: RUF012 - diffusers' own attribute is a list

    def __init__(self, vae, text_encoder, tokenizer, image_encoder, unet, adapter, scheduler):
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, image_encoder=image_encoder,
                              unet=unet, adapter=adapter, scheduler=scheduler)
        self.train_config: dict = {}
        self.reference_faces: ReferenceFaces | None = None

    # ---------------------------------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, face_detector: str | None = None,
                        insightface_root: str | None = None, torch_dtype: torch.dtype | None = None,
                        face_overrides: list[str] | tuple[str, ...] = (), **kwargs) -> MotionCharacterPipeline:
        """Load a folder saved by ``hm train``: its resolved ``config.json`` names the base weights (rebuilt with the
        run's seed for ``tiny``/``random-sd15``), ``adapter/`` the new weights, ``motion_modules/`` (if present)
        trained motion modules and ``unet/`` (if present, from ``model.train_unet``) a whole trained UNet.
        ``face_detector`` overrides the build's detector (mediapipe);
        ``insightface_root`` is the model pack for ArcFace-trained (``arcface``) checkpoints; ``face_overrides`` are
        ``hm build`` settings for the reference face (``["faces.insightface_pack=antelopev2"]``)."""
        from human_motion.config import _build
        from human_motion.model.components import load_components
        from human_motion.model.config import TrainConfig

        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}")
        run, adapter_dir = find_run_dir(pretrained_model_name_or_path)
        data = json.loads((run / "config.json").read_text())
        cfg = _build(TrainConfig, data)
        model_cfg = dataclasses.replace(cfg.model, adapter=str(adapter_dir))
        c = load_components(model_cfg, run, seed=cfg.train.seed)
        unet_dir = adapter_dir.parent / "unet"
        if unet_dir.is_dir() and not getattr(cfg.model, "unet", None):
            load_unet_weights(c.unet, unet_dir)  # a run with model.train_unet: its whole UNet trained
        motion_dir = adapter_dir.parent / "motion_modules"
        if motion_dir.is_dir():
            from diffusers import MotionAdapter

            c.unet.load_motion_modules(MotionAdapter.from_pretrained(motion_dir, use_safetensors=True))
        c.unet.eval()
        c.adapter.eval()
        pipe = cls(c.vae, c.text_encoder, c.tokenizer, c.image_encoder, c.unet, c.adapter, c.noise_scheduler)
        pipe.train_config = data
        pipe.reference_faces = ReferenceFaces(cfg.model.id_embedding_kind, face_detector, insightface_root,
                                              face_overrides)
        pipe.checkpoint_path = str(pathlib.Path(pretrained_model_name_or_path))
        if torch_dtype is not None:
            pipe.to(dtype=torch_dtype)
        return pipe

    # --------------------------------------------------------------------------------------------- memory savers
    def enable_vae_slicing(self):
        """Decode the frames one at a time (less peak memory at 16 x 512 x 512)."""
        self.vae.enable_slicing()

    def disable_vae_slicing(self):
        self.vae.disable_slicing()

    # ---------------------------------------------------------------------------------------------- defaults
    @property
    def default_num_frames(self) -> int:
        """The run's training clip length (the paper's 16 for the paper's recipe)."""
        return int(self.train_config.get("data", {}).get("num_frames", PAPER_NUM_FRAMES))

    @property
    def default_size(self) -> int:
        """The run's training resolution (the paper's 512 for the paper's recipe)."""
        return int(self.train_config.get("data", {}).get("resolution", PAPER_SIZE))

    @property
    def face_size(self) -> int:
        return int(self.train_config.get("data", {}).get("face_size", 112))

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    # ---------------------------------------------------------------------------------------------- encoding
    def prepare_reference(self, reference_image, face_check: bool = True) -> ReferenceFace:
        """Find, align and embed the face of ``reference_image`` (array, PIL image or path) as the build does."""
        if self.reference_faces is None:
            kind = "dlib" if self.adapter.config.id_dim == 128 else "arcface"
            self.reference_faces = ReferenceFaces(kind)
        return self.reference_faces(_to_rgb_array(reference_image), face_check=face_check)

    def reference_tensor(self, ref: ReferenceFace) -> torch.Tensor:
        """The aligned crop as the training data gives it (``data.decode_sample``): (3, S, S) in [-1, 1]."""
        face = torch.from_numpy(np.array(ref.aligned)).permute(2, 0, 1).float()[None] / 127.5 - 1
        size = (self.face_size, self.face_size)
        return F.interpolate(face, size=size, mode="bilinear", align_corners=False, antialias=True)[0]

    @torch.no_grad()
    def encode_conditions(self, ref: ReferenceFace, prompt: str, action: str, intensity: float,
                          device, dtype) -> dict:
        """The keys of ``conditioning.encode_conditions`` for one sample: text (1, 77, d), id (1, D), clip image
        tokens (1, l, clip_dim), action tokens (1, n_a, d), intensity (1,)."""
        tok = self.tokenizer
        text = encode_text(tok, self.text_encoder, [prompt], tok.model_max_length)
        action_embeds = encode_text(tok, self.text_encoder, [action], self.adapter.config.num_action_tokens)
        face = self.reference_tensor(ref)[None].to(device)
        clip = encode_clip_image(self.image_encoder, face)
        return {
            "text_embeds": text.to(device, dtype),
            "id_embeds": torch.from_numpy(ref.embedding)[None].to(device, dtype),
            "clip_embeds": clip.to(device, dtype),
            "action_embeds": action_embeds.to(device, dtype),
            "intensity": torch.tensor([float(intensity)], device=device, dtype=torch.float32),
        }

    def check_inputs(self, prompt, action, intensity, num_frames, height, width, num_inference_steps):
        if not isinstance(prompt, str) or not isinstance(action, str):
            raise TypeError("prompt and action must be strings (one video per call)")
        if not np.isfinite(float(intensity)) or float(intensity) < 0:
            raise ValueError(f"intensity must be a finite number >= 0, got {intensity}")
        multiple = 8
        if height % multiple or width % multiple or height <= 0 or width <= 0:
            raise ValueError(f"height and width must be positive multiples of {multiple}, got {height}x{width}")
        max_frames = getattr(self.unet.config, "motion_max_seq_length", None)
        if num_frames < 1 or (max_frames and num_frames > max_frames):
            raise ValueError(f"num_frames must be within 1..{max_frames} (the motion modules' positional "
                             f"encoding), got {num_frames}")
        if num_inference_steps < 1:
            raise ValueError("num_inference_steps must be >= 1")

    # ---------------------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def __call__(
        self,
        reference_image=None,
        prompt: str = "",
        action: str = "",
        intensity: float = 0.0,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = PAPER_STEPS,
        guidance_scale: float = PAPER_GUIDANCE,
        negative_prompt: str | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        face_check: bool = True,
        reference_face: ReferenceFace | None = None,
    ):
        """Sample one video.

        Args:
            reference_image: the identity, an RGB uint8 array (H, W, 3), a PIL image or a path; its one face is
                found and aligned like the build's reference faces (``face_check=False``: the image is already an
                aligned face crop). ``reference_face`` (from :meth:`prepare_reference`) skips that step.
            prompt: the scene and appearance. action: the action phrase ("smiling", "turning head left").
            intensity: motion intensity (the shards' optical-flow scale, 0 = static; trained range
                0..``adapter.config.max_intensity``).
            num_frames, height, width: default to the run's training size (16 x 512 x 512 in the paper).
            num_inference_steps, guidance_scale: DDIM steps and classifier-free guidance (paper: 30, 8.0); the
                unconditional branch drops the text (``negative_prompt`` if given) and the identity, keeping the
                action and intensity.
            generator: a torch.Generator (CPU generators work with any device) for repeatable results.
            output_type: "np" (uint8 frames) or "pt" (float frames in [0, 1]).
        """
        num_frames = num_frames or self.default_num_frames
        height = height or self.default_size
        width = width or self.default_size
        self.check_inputs(prompt, action, intensity, num_frames, height, width, num_inference_steps)
        if output_type not in ("np", "pt"):
            raise ValueError(f"output_type must be 'np' or 'pt', got {output_type!r}")
        if reference_face is None:
            if reference_image is None:
                raise ValueError("reference_image is required (a photo with one face)")
            reference_face = self.prepare_reference(reference_image, face_check=face_check)

        device = self._execution_device
        dtype = self.unet.dtype
        cond = self.encode_conditions(reference_face, prompt, action, intensity, device, dtype)
        b = 1
        uncond = None
        if guidance_scale > 1.0:
            tok = self.tokenizer
            empty = encode_text(tok, self.text_encoder, [negative_prompt or ""], tok.model_max_length)
            uncond = unconditional(cond, empty.to(device, dtype))

        scheduler = self.scheduler
        scheduler.set_timesteps(num_inference_steps, device=device)
        shape = (b, self.vae.config.latent_channels, num_frames, height // self.vae_scale_factor,
                 width // self.vae_scale_factor)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
            rho = float(self.train_config.get("model", {}).get("noise_frame_correlation", 0.0))
            if rho:  # the noise prior the run was trained with (model/noise.py)
                shared = randn_tensor((*shape[:2], 1, *shape[3:]), generator=generator, device=device,
                                      dtype=torch.float32)
                latents = with_shared(latents, shared, rho)
        model = MotionCharacterModel(self.unet, self.adapter)  # what training and validation call
        with self.progress_bar(total=len(scheduler.timesteps)) as bar:
            latents = denoise(model, scheduler, cond, uncond, latents.to(device, torch.float32), guidance_scale,
                              dtype=dtype, callback=lambda i, t: bar.update())

        video = ((decode_latents(self.vae, latents).float() + 1) / 2).clamp(0, 1)[0]  # (f, 3, H, W)
        self.maybe_free_model_hooks()
        if output_type == "np":
            video = (video.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)  # (f, H, W, 3)
        else:
            video = video.cpu()
        if not return_dict:
            return (video,)
        return MotionCharacterPipelineOutput(frames=video, reference_face=reference_face.aligned)
