"""``MotionCharacterPipeline``: a reference face, prompts, action phrases and intensities in, videos out.

A diffusers ``DiffusionPipeline`` with one ``__call__`` (diffusers argument names and output conventions, as
``AnimateDiffPipeline``), loaded from a run folder of ``hm train`` (or one of its ``checkpoints/checkpoint-N``, or
its ``adapter/``) or from a folder written by ``save_pretrained``::

    pipe = MotionCharacterPipeline.from_pretrained("runs/mc")      # or a save_pretrained folder
    pipe.to("cuda", torch.float16)                                  # fp32 on the CPU unless .to() says otherwise
    out = pipe(reference_image=rgb, prompt="a woman in a park", action="smiling", intensity=[0, 5, 10],
               generator=torch.Generator().manual_seed(0))
    export_to_video(out.frames[0], "i0.mp4", fps=4)                # frames[i]: video i, PIL images by default

The reference face is found and aligned by the build's own stages (``model/reference.py``); no face or several
faces raise :class:`ReferenceFaceError`. Sampling is the DDIM + classifier-free-guidance loop of
``validation.sample_clips``: the unconditional branch drops text and identity and keeps action and intensity (what
the dropouts train). Loading and saving: ``model/pipeline_loading.py``; outputs: ``model/pipeline_output.py``.
"""

from __future__ import annotations

import pathlib
import re

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor

from human_motion.config import ConfigError
from human_motion.model.components import decode_latents, encode_clip_image, encode_text
from human_motion.model.conditioning import MotionCharacterModel, unconditional
from human_motion.model.noise import with_shared
from human_motion.model.pipeline_loading import (  # noqa: F401 - find_run_dir re-exported
    PAPER_DEFAULTS,
    check_pipeline_file,
    class_name_entry,
    components_from_run,
    find_run_dir,
    is_saved_pipeline,
    load_error,
    write_pipeline_file,
)
from human_motion.model.pipeline_output import (  # noqa: F401 - re-exported: callers import them from here
    MotionCharacterPipelineOutput,
    broadcast_batch,
    check_output_type,
    frames_to_uint8,
    postprocess,
)
from human_motion.model.reference import (  # noqa: F401 - re-exported: callers import them from here
    ReferenceFace,
    ReferenceFaceError,
    ReferenceFaces,
    _to_rgb_array,
    read_reference,
)

# The paper's sampling settings (Sec. 4.1): 16 frames at 512x512, 30 DDIM steps, guidance 8.0.
PAPER_NUM_FRAMES = PAPER_DEFAULTS["num_frames"]
PAPER_SIZE = PAPER_DEFAULTS["resolution"]
PAPER_STEPS = PAPER_DEFAULTS["num_inference_steps"]
PAPER_GUIDANCE = PAPER_DEFAULTS["guidance_scale"]
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


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


class MotionCharacterPipeline(DiffusionPipeline):
    """Text + reference face + action phrase + intensity -> video, with AnimateDiff + the MotionCharacter adapter.

    Components: ``vae``, ``text_encoder``, ``tokenizer``, ``image_encoder``, ``unet`` (``UNetMotionModel``; the
    adapter's processors are installed in it when the pipeline is built), ``adapter`` (``MotionCharacterAdapter``),
    ``scheduler`` (DDIM). The other ``__init__`` arguments are the pipeline's settings, kept in ``model_index.json``:
    the training size and noise prior the defaults follow, the sampling defaults, and how the reference face is
    found and embedded (the build's ``id_embedding_kind`` embedder, ``face_detector``, ``hm build`` settings).
    """

    model_cpu_offload_seq = "text_encoder->image_encoder->unet->vae"
    # The adapter's ID projector and intensity MLP run outside the UNet's forward (they build its
    # encoder_hidden_states); they are small and stay on the accelerator.
    _exclude_from_cpu_offload = ["adapter"]  # diffusers' own attribute is a list

    def __init__(self, vae, text_encoder, tokenizer, image_encoder, unet, adapter, scheduler,
                 num_frames: int = PAPER_NUM_FRAMES, resolution: int = PAPER_SIZE, face_size: int = 112,
                 noise_frame_correlation: float = 0.0, num_inference_steps: int = PAPER_STEPS,
                 guidance_scale: float = PAPER_GUIDANCE, id_embedding_kind: str | None = None,
                 face_detector: str | None = None, insightface_root: str | None = None,
                 face_overrides: list[str] | tuple[str, ...] = ()):
        super().__init__()
        adapter.install(unet)  # a UNet loaded on its own (save_pretrained's unet/) has diffusers' processors
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, image_encoder=image_encoder,
                              unet=unet, adapter=adapter, scheduler=scheduler)
        self.register_to_config(
            num_frames=int(num_frames), resolution=int(resolution), face_size=int(face_size),
            noise_frame_correlation=float(noise_frame_correlation), num_inference_steps=int(num_inference_steps),
            guidance_scale=float(guidance_scale), id_embedding_kind=id_embedding_kind, face_detector=face_detector,
            insightface_root=insightface_root, face_overrides=list(face_overrides),
        )
        self.video_processor = VideoProcessor(do_resize=False, vae_scale_factor=self.vae_scale_factor)
        self.reference_faces: ReferenceFaces | None = None  # made on first use, from the settings above
        self.train_config: dict = {}  # the run's resolved config, when loaded from a run folder

    # ---------------------------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> MotionCharacterPipeline:
        """A folder of ``save_pretrained`` (``model_index.json``; diffusers' loader, safetensors only), a run folder
        of ``hm train`` (its ``checkpoints/checkpoint-N`` or ``adapter/`` too), or a Hub id. Keywords: the
        ``__init__`` settings (``face_detector="dlib"``, ``insightface_root=`` the model pack of ArcFace-trained
        checkpoints, ``face_overrides=["faces.insightface_pack=antelopev2"]``, ...) and ``torch_dtype``; for saved
        folders and Hub ids, diffusers' own ``from_pretrained`` keywords."""
        settings = cls._get_signature_keys(cls)[1]
        # None or empty: not given (the CLI passes its unset options), so the saved or run's settings stay.
        kwargs = {k: v for k, v in kwargs.items() if k not in settings or (v is not None and v != [] and v != ())}
        path = pathlib.Path(pretrained_model_name_or_path).expanduser()
        if not is_saved_pipeline(path) and (path.exists() or not _HUB_ID.fullmatch(str(path))):
            return cls._from_run(path, **kwargs)
        kwargs.setdefault("use_safetensors", True)  # never a pickle, whatever the folder or repo holds
        if not path.exists():  # a Hub repo: diffusers downloads it and asks for trust_remote_code itself
            from huggingface_hub import constants

            if constants.HF_HUB_OFFLINE:  # no fetch to try: say what is missing without diffusers' retry lines
                raise ConfigError(f"checkpoint {path} does not exist (and HF_HUB_OFFLINE is set, so it is not looked "
                                  "up on the Hub); pass a run folder saved by `hm train` or a folder saved by "
                                  "`save_pretrained`")
            try:
                return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
            except OSError as e:  # offline, no such repo, or a local folder that is not there ("runs/mc")
                raise ConfigError(f"checkpoint {path} does not exist here and could not be fetched as a Hub repo "
                                  f"({type(e).__name__}); pass a run folder saved by `hm train` or a folder saved by "
                                  "`save_pretrained`") from None
        trusted = check_pipeline_file(path)  # our two-line pipeline.py, or none: no code from the folder runs
        try:
            pipe = super().from_pretrained(str(path), trust_remote_code=trusted, **kwargs)
        except (OSError, RuntimeError, ValueError) as e:  # truncated or pickled weights, missing files
            raise load_error(path, e) from None
        pipe.checkpoint_path = str(path)
        return pipe

    @classmethod
    def _from_run(cls, path: pathlib.Path, torch_dtype: torch.dtype | None = None, **settings):
        from safetensors import SafetensorError

        try:
            c, run_settings, data = components_from_run(path)
        except (OSError, SafetensorError) as e:
            raise load_error(path, e) from None
        unknown = sorted(set(settings) - set(cls._get_signature_keys(cls)[1]))
        if unknown:
            raise TypeError(f"unexpected arguments {unknown}")
        pipe = cls(c.vae, c.text_encoder, c.tokenizer, c.image_encoder, c.unet, c.adapter, c.noise_scheduler,
                   **{**run_settings, **settings})
        c.unet.eval()
        c.adapter.eval()
        pipe.train_config = data
        pipe.checkpoint_path = str(path)
        if torch_dtype is not None:
            pipe.to(dtype=torch_dtype)
        return pipe

    def save_pretrained(self, save_directory, safe_serialization: bool = True, **kwargs) -> None:
        """A standard diffusers folder: ``model_index.json`` (with the settings), one subfolder per component in
        safetensors (``unet/`` without the adapter's processors, which ``adapter/`` holds), and ``pipeline.py`` so
        that ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` finds this class."""
        from diffusers.models.attention_processor import AttnProcessor2_0

        if not safe_serialization:
            raise ValueError("MotionCharacterPipeline saves safetensors only (safe_serialization=True)")
        write_pipeline_file(pathlib.Path(save_directory))  # first, so that push_to_hub=True uploads it too
        processors = dict(self.unet.attn_processors)
        ours = {f"{name}.processor" for name, _, _ in self.adapter.config.layers}
        self.unet.set_attn_processor({k: AttnProcessor2_0() if k in ours else p for k, p in processors.items()})
        try:
            super().save_pretrained(str(save_directory), safe_serialization=True, **kwargs)  # diffusers splits it
        finally:
            self.unet.set_attn_processor(processors)

    def to_json_string(self) -> str:
        """``model_index.json`` (``save_config`` writes this) with ``_class_name`` = ``["pipeline", class]``."""
        return class_name_entry(super().to_json_string())

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
        return int(self.config.num_frames)

    @property
    def default_size(self) -> int:
        """The run's training resolution (the paper's 512 for the paper's recipe)."""
        return int(self.config.resolution)

    @property
    def face_size(self) -> int:
        return int(self.config.face_size)

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    # ---------------------------------------------------------------------------------------------- encoding
    def prepare_reference(self, reference_image, face_check: bool = True) -> ReferenceFace:
        """Find, align and embed the face of ``reference_image`` (array, PIL image or path) as the build does."""
        if self.reference_faces is None:
            kind = self.config.id_embedding_kind or ("dlib" if self.adapter.config.id_dim == 128 else "arcface")
            self.reference_faces = ReferenceFaces(kind, self.config.face_detector, self.config.insightface_root,
                                                  self.config.face_overrides)
        return self.reference_faces(_to_rgb_array(reference_image), face_check=face_check)

    def reference_tensor(self, ref: ReferenceFace) -> torch.Tensor:
        """The aligned crop as the training data gives it (``data.decode_sample``): (3, S, S) in [-1, 1]."""
        face = torch.from_numpy(np.array(ref.aligned)).permute(2, 0, 1).float()[None] / 127.5 - 1
        size = (self.face_size, self.face_size)
        return F.interpolate(face, size=size, mode="bilinear", align_corners=False, antialias=True)[0]

    @torch.no_grad()
    def encode_conditions(self, ref: ReferenceFace, prompt, action, intensity, device, dtype) -> dict:
        """The keys of ``conditioning.encode_conditions`` for a batch of b videos of one identity (``prompt``,
        ``action``, ``intensity``: single values or lists of b): text (b, 77, d), id (b, D), clip image tokens
        (b, l, clip_dim), action tokens (b, n_a, d), intensity (b,)."""
        prompts, actions, intensities = broadcast_batch(prompt, action, intensity)
        b, tok = len(prompts), self.tokenizer
        text = encode_text(tok, self.text_encoder, prompts, tok.model_max_length)
        action_embeds = encode_text(tok, self.text_encoder, actions, self.adapter.config.num_action_tokens)
        clip = encode_clip_image(self.image_encoder, self.reference_tensor(ref)[None].to(device))  # (1, l, c)
        return {
            "text_embeds": text.to(device, dtype),
            "id_embeds": torch.from_numpy(ref.embedding)[None].expand(b, -1).to(device, dtype),
            "clip_embeds": clip.expand(b, -1, -1).to(device, dtype),
            "action_embeds": action_embeds.to(device, dtype),
            "intensity": torch.tensor(intensities, device=device, dtype=torch.float32),
        }

    def encode_unconditional(self, cond: dict, negative_prompt, device, dtype) -> dict:
        """The guidance branch of ``cond``: the empty text (or ``negative_prompt``, one or one per video), no
        identity; action and intensity kept."""
        b, tok = cond["text_embeds"].shape[0], self.tokenizer
        negative = [negative_prompt or ""] if not isinstance(negative_prompt, (list, tuple)) else negative_prompt
        if len(negative) not in (1, b):
            raise ValueError(f"negative_prompt has {len(negative)} entries for {b} videos; give one, or one per video")
        empty = encode_text(tok, self.text_encoder, list(negative), tok.model_max_length)
        return unconditional(cond, empty.to(device, dtype))

    def check_inputs(self, num_frames, height, width, num_inference_steps, num_videos_per_prompt, output_type):
        multiple = 8
        if height % multiple or width % multiple or height <= 0 or width <= 0:
            raise ValueError(f"height and width must be positive multiples of {multiple}, got {height}x{width}")
        max_frames = getattr(self.unet.config, "motion_max_seq_length", None)
        if num_frames < 1 or (max_frames and num_frames > max_frames):
            raise ValueError(f"num_frames must be within 1..{max_frames} (the motion modules' positional "
                             f"encoding), got {num_frames}")
        if num_inference_steps < 1:
            raise ValueError("num_inference_steps must be >= 1")
        if not isinstance(num_videos_per_prompt, int) or num_videos_per_prompt < 1:
            raise ValueError(f"num_videos_per_prompt must be an integer >= 1, got {num_videos_per_prompt!r}")
        check_output_type(output_type)

    def prepare_latents(self, batch_size: int, num_frames: int, height: int, width: int, generator, latents,
                        device) -> torch.Tensor:
        """The initial noise (b, c, f, h, w), fp32: ``latents`` if given, else drawn with ``generator`` (one, or
        one per video) with the noise prior the run was trained with (``model/noise.py``)."""
        shape = (batch_size, self.vae.config.latent_channels, num_frames, height // self.vae_scale_factor,
                 width // self.vae_scale_factor)
        if latents is not None:
            if tuple(latents.shape) != shape:
                raise ValueError(f"latents must have the shape {shape} for these inputs, got {tuple(latents.shape)}")
            return latents.to(device, torch.float32)
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"{len(generator)} generators for {batch_size} videos; give one, or one per video")
        latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        rho = float(self.config.noise_frame_correlation)
        if rho:
            shared = randn_tensor((*shape[:2], 1, *shape[3:]), generator=generator, device=device,
                                  dtype=torch.float32)
            latents = with_shared(latents, shared, rho)
        return latents

    # ---------------------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def __call__(self, reference_image=None, prompt="", action="", intensity=0.0, num_frames: int | None = None,
                 height: int | None = None, width: int | None = None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, negative_prompt=None, num_videos_per_prompt: int = 1,
                 generator=None, latents: torch.Tensor | None = None, output_type: str = "pil",
                 return_dict: bool = True, face_check: bool = True, reference_face: ReferenceFace | None = None):
        """Sample ``len(batch) * num_videos_per_prompt`` videos of one identity in one batch.

        Args:
            reference_image: the identity, an RGB uint8 array (H, W, 3), a PIL image or a path; its one face is
                found and aligned like the build's reference faces (``face_check=False``: the image is already an
                aligned face crop). ``reference_face`` (from :meth:`prepare_reference`) skips that step.
            prompt, action, intensity: the scene, the action phrase ("smiling") and the motion intensity (the
                shards' optical-flow scale, 0 = static; trained range 0..``adapter.config.max_intensity``); each one
                value or a list, lists of one length: one video per entry (``intensity=[0, 5, 10, 20]``).
            num_frames, height, width: default to the run's training size (16 x 512 x 512 in the paper).
            num_inference_steps, guidance_scale: DDIM steps and classifier-free guidance; default to the run's
                (``sampling`` in its config), else the paper's 30 and 8.0. The unconditional branch drops the text
                (``negative_prompt`` if given) and the identity, keeping the action and intensity.
            num_videos_per_prompt: videos per entry, consecutive in ``frames``.
            generator: a torch.Generator (CPU generators work with any device), or one per video (the same seed
                in each: the same noise for every entry, so only the inputs differ).
            output_type: "pil" (default), "np", "pt" or "latent"; ``out.frames[i]`` is video i (see
                ``pipeline_output``).
        """
        prompts, actions, intensities = broadcast_batch(prompt, action, intensity)
        num_frames, height, width = (num_frames or self.default_num_frames, height or self.default_size,
                                     width or self.default_size)
        steps = num_inference_steps or self.config.num_inference_steps
        guidance_scale = self.config.guidance_scale if guidance_scale is None else guidance_scale
        self.check_inputs(num_frames, height, width, steps, num_videos_per_prompt, output_type)
        if reference_face is None:
            if reference_image is None:
                raise ValueError("reference_image is required (a photo with one face)")
            reference_face = self.prepare_reference(reference_image, face_check=face_check)

        device, dtype = self._execution_device, self.unet.dtype
        cond = self.encode_conditions(reference_face, prompts, actions, intensities, device, dtype)
        cond = {k: v.repeat_interleave(num_videos_per_prompt, dim=0) for k, v in cond.items()}  # (b * n, ...)
        uncond = self.encode_unconditional(cond, negative_prompt, device, dtype) if guidance_scale > 1.0 else None
        self.scheduler.set_timesteps(steps, device=device)
        noise = self.prepare_latents(len(cond["intensity"]), num_frames, height, width, generator, latents, device)
        model = MotionCharacterModel(self.unet, self.adapter)  # what training and validation call
        with self.progress_bar(total=len(self.scheduler.timesteps)) as bar:
            latents = denoise(model, self.scheduler, cond, uncond, noise, guidance_scale, dtype=dtype,
                              callback=lambda i, t: bar.update())
        frames = latents if output_type == "latent" else postprocess(
            self.video_processor, decode_latents(self.vae, latents), output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return MotionCharacterPipelineOutput(frames=frames, reference_face=reference_face.aligned)
