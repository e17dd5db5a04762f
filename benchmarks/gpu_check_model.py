"""The model sections of ``gpu_check.py``: adapters' FLOPs over the bare UNet, one training step with and without the
MotionCharacter adapters (and with the ID-consistency loss), and generation with and without CPU offload.

Everything is built from configs with random weights (``random-sd15``: SD 1.5 + AnimateDiff + the adapters at the
paper's shapes; ``tiny`` for the dry run) through the project's own ``load_components``, losses, conditioning and
``load_pipeline``, so what is timed is what ``hm train`` and ``hm generate`` run.
"""

from __future__ import annotations

import tempfile
import time

import torch

from human_motion.config import load_config, resolve_config_path
from human_motion.model.config import TrainConfig

ID_TIMESTEP = 300  # <= loss.id_max_timestep (400): the ID loss, with its VAE decode of x0, runs on every timed step


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def paper_config(dry_run: bool) -> TrainConfig:
    """train.yaml (the paper's recipe) on random SD 1.5 shapes, or train_tiny for the dry run; synthetic data."""
    if dry_run:
        # fp32: bf16 convolutions on a CPU have no fast kernels (seconds a step even for the tiny model).
        return load_config(TrainConfig, resolve_config_path("train_tiny"), ["data.dataset_type=synthetic"])
    sets = ["model.pretrained_model_name_or_path=random-sd15", "data.dataset_type=synthetic"]
    return load_config(TrainConfig, resolve_config_path("train"), sets)


def build_components(cfg: TrainConfig, device: str, work_dir: str):
    """``load_components`` with every tensor created on ``device``: random init of 2 billion parameters takes
    minutes on a CPU and a second on a GPU."""
    from human_motion.model.components import load_components

    with torch.device(device):
        return load_components(cfg.model, work_dir, cfg.train.seed)


def bare_processors(unet) -> dict:
    """The UNet's attention processors with each MotionCharacter processor replaced by diffusers' SDPA one: the bare
    AnimateDiff UNet (motion modules keep theirs)."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    from human_motion.model.motion_control import MotionControlAttnProcessor

    return {name: AttnProcessor2_0() if isinstance(p, MotionControlAttnProcessor) else p
            for name, p in unet.attn_processors.items()}


def conditions(cfg: TrainConfig, c, batch_size: int, device: str) -> dict:
    """Random conditions of the shapes ``encode_conditions`` gives (text 77 tokens, ArcFace, CLIP image tokens)."""
    width = c.text_encoder.config.hidden_size
    n_clip = (c.image_encoder.config.image_size // c.image_encoder.config.patch_size) ** 2 + 1
    return {"text_embeds": torch.randn(batch_size, c.tokenizer.model_max_length, width, device=device),
            "id_embeds": torch.randn(batch_size, cfg.model.id_embedding_dim, device=device),
            "clip_embeds": torch.randn(batch_size, n_clip, c.image_encoder.config.hidden_size, device=device),
            "action_embeds": torch.randn(batch_size, cfg.model.num_action_tokens, width, device=device),
            "intensity": torch.full((batch_size,), 5.0, device=device)}


def adapter_flops(dry_run: bool) -> dict:
    """Forward FLOPs (ptflops' aten backend, as ``hm model-info``) of one denoising step at the config's size, batch 1:
    ``MotionCharacterModel`` (adapter tokens + UNet with the adapter's processors) against the bare UNet on text.

    Counted on the ``meta`` device: shapes only, no memory and no arithmetic, so the paper's size takes seconds on
    any machine (the counts equal a CPU run's). ``_flops`` runs attention as SDPA's math path, whose matmuls
    ptflops counts."""
    from human_motion.model.conditioning import MotionCharacterModel
    from human_motion.model.info import _flops

    cfg = paper_config(dry_run)
    device = "meta"
    with tempfile.TemporaryDirectory() as tmp:
        c = build_components(cfg, device, tmp)
    f, r = cfg.data.num_frames, cfg.data.resolution
    down = 2 ** (len(c.vae.config.block_out_channels) - 1)
    latents = torch.randn(1, 4, f, r // down, r // down, device=device)
    t = torch.tensor([500], device=device)
    cond = conditions(cfg, c, 1, device)
    model = MotionCharacterModel(c.unet, c.adapter)
    with_adapters = _flops(model, [model], {"noisy_latents": latents, "timesteps": t, **cond})
    c.unet.set_attn_processor(bare_processors(c.unet))
    text = cond["text_embeds"].repeat_interleave(f, dim=0)
    bare = _flops(lambda **x: c.unet(**x).sample, [c.unet],
                  {"sample": latents, "timestep": t, "encoder_hidden_states": text})
    return {"config": "train_tiny" if dry_run else "train (random-sd15)", "frames": f, "resolution": r,
            "counted_on": device, "gflops_bare_unet": bare / 1e9, "gflops_with_adapters": with_adapters / 1e9,
            "overhead": with_adapters / bare - 1, "goal": 0.10}


def face_embedder(cfg: TrainConfig, dry_run: bool, device: str):
    """phi of Eq. 4: ``tiny`` in the dry run; otherwise a frozen ResNet-50 with 512 outputs, the size of insightface's
    w600k_r50 ArcFace (its ONNX file cannot be downloaded on the GPU machine)."""
    from human_motion.model.components import load_face_embedder

    if dry_run:
        return load_face_embedder("tiny").to(device)
    import torchvision

    net = torchvision.models.resnet50(num_classes=cfg.model.id_embedding_dim)
    return net.requires_grad_(False).eval().to(device)


class TrainStep:
    """One optimiser step of ``hm train``'s loop body on a synthetic batch, for three variants of the same UNet:
    ``bare`` (AnimateDiff: text only, motion modules train), ``adapters`` (MotionCharacter: the adapter trains,
    region-aware loss) and ``adapters+id`` (plus the ID-consistency loss: x0 estimate -> VAE decode -> phi)."""

    def __init__(self, cfg: TrainConfig, dry_run: bool, device: str, work_dir: str):
        from human_motion.model.conditioning import MotionCharacterModel

        self.cfg, self.device = cfg, device
        self.dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[cfg.train.mixed_precision]
        self.c = build_components(cfg, device, work_dir)
        for m in (self.c.vae, self.c.text_encoder, self.c.image_encoder):
            m.to(device, self.dtype)
        self.phi = face_embedder(cfg, dry_run, device)
        self.model = MotionCharacterModel(self.c.unet, self.c.adapter)
        self.bare = bare_processors(self.c.unet)
        self.batches = {}

    def batch(self, size: int) -> dict:
        from human_motion.model.data import get_dataset

        if size not in self.batches:
            data = get_dataset(self.cfg.data, self.cfg.model, None, self.cfg.train.seed)
            self.batches[size] = next(data.batches(size))[0]
        return self.batches[size]

    def prepare(self, variant: str, checkpointing: bool):
        """Trainable parameters as ``hm train`` sets them (frozen base in bf16, trained weights in fp32); optimiser."""
        from diffusers.training_utils import cast_training_params

        from human_motion.model.adapter import set_trainable

        unet, adapter = self.c.unet, self.c.adapter
        if variant == "bare":
            unet.set_attn_processor(dict(self.bare))
            adapter.requires_grad_(False)
            unet.freeze_unet2d_params()  # AnimateDiff's own training: the motion modules
            params = [p for p in unet.parameters() if p.requires_grad]
        else:
            adapter.install(unet)
            params = set_trainable(unet, adapter, self.cfg.model.train_motion_modules)
        if checkpointing:
            unet.enable_gradient_checkpointing()
        else:
            unet.disable_gradient_checkpointing()
        self.model.to(self.dtype)
        cast_training_params(self.model, dtype=torch.float32)
        self.model.train()
        return params, torch.optim.AdamW(params, lr=self.cfg.optim.learning_rate)

    def step(self, variant: str, batch: dict, params, optimizer) -> float:
        """``hm train``'s step (``train.compute_loss``, backward, clipping, AdamW) at a fixed timestep; ``bare``
        predicts from the text alone with the same region-aware loss (the frozen condition encoders still run, their
        other outputs unused, so the variants differ by the adapters' trainable part and the ID loss)."""
        from human_motion.model.train import compute_loss

        c, cfg, device = self.c, self.cfg, self.device
        gen = torch.Generator(device).manual_seed(0)
        batch_size = batch["pixel_values"].shape[0]
        timesteps = torch.full((batch_size,), ID_TIMESTEP, device=device, dtype=torch.long)
        model = self.bare_forward if variant == "bare" else self.autocast_forward
        phi = self.phi if variant == "adapters+id" else None
        loss = compute_loss(c, model, phi, batch, gen, cfg, self.dtype, timesteps=timesteps)[0]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.optim.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def _autocast(self):
        """accelerate's mixed precision: the prepared model's forward runs under autocast, nothing else does."""
        return torch.autocast(self.device.split(":")[0], dtype=self.dtype, enabled=self.dtype != torch.float32)

    def autocast_forward(self, noisy, timesteps, **cond):
        with self._autocast():
            return self.model(noisy, timesteps, **cond)

    def bare_forward(self, noisy, timesteps, text_embeds, **_):
        """AnimateDiff's UNet on the prompt's embeddings only (one copy per frame, as diffusers' motion UNet takes
        them)."""
        with self._autocast():
            text = text_embeds.to(self.dtype).repeat_interleave(noisy.shape[2], dim=0)  # (b * f, 77, d)
            return self.c.unet(noisy, timesteps, text).sample


VARIANTS = ("bare", "adapters", "adapters+id")


def train_steps(dry_run: bool, device: str, deadline: float) -> dict:
    """Seconds per step and peak memory for each variant, batch 2 and 1, gradient checkpointing on and off (the
    paper's setting first); ratios to ``bare`` in the same run. Stops starting new settings past ``deadline``."""
    cfg = paper_config(dry_run)
    warmup, timed = (0, 1) if dry_run else (1, 3)
    out = {"config": "train_tiny" if dry_run else "train (random-sd15)", "resolution": cfg.data.resolution,
           "frames": cfg.data.num_frames, "mixed_precision": cfg.train.mixed_precision, "timed_steps": timed,
           "id_timestep": ID_TIMESTEP, "runs": [], "not_run": []}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        runner = TrainStep(cfg, dry_run, device, tmp)
        out["build_s"] = time.perf_counter() - t0
        for batch_size, checkpointing in ((2, True), (1, True), (2, False), (1, False)):
            for variant in VARIANTS:
                label = {"variant": variant, "batch": batch_size, "checkpointing": checkpointing}
                if time.monotonic() > deadline:
                    out["not_run"].append(label)
                    continue
                out["runs"].append({**label, **_time_steps(runner, variant, batch_size, checkpointing, warmup,
                                                           timed)})
    base = {(r["batch"], r["checkpointing"]): r.get("s_per_step") for r in out["runs"] if r["variant"] == "bare"}
    for r in out["runs"]:
        b = base.get((r["batch"], r["checkpointing"]))
        r["vs_bare"] = r["s_per_step"] / b if b and r.get("s_per_step") else None
    return out


def _time_steps(runner: TrainStep, variant: str, batch_size: int, checkpointing: bool, warmup: int,
                timed: int) -> dict:
    device = runner.device
    try:
        params, optimizer = runner.prepare(variant, checkpointing)
        batch = runner.batch(batch_size)
        reset_peak(device)
        for _ in range(warmup):
            runner.step(variant, batch, params, optimizer)
        sync(device)
        start = time.perf_counter()
        for _ in range(timed):
            loss = runner.step(variant, batch, params, optimizer)
        sync(device)
        return {"s_per_step": (time.perf_counter() - start) / timed, "peak_gib": peak_gib(device),
                "trainable_m": sum(p.numel() for p in params) / 1e6, "loss": loss}
    except torch.OutOfMemoryError as e:  # one setting out of memory: record it, try the next
        return {"error": f"out of memory: {str(e).splitlines()[0]}"}
    finally:
        reset_peak(device)


def generation(dry_run: bool, device: str, deadline: float) -> dict:
    """One video of ``MotionCharacterPipeline`` with random weights: the paper's 16x512x512, 30 DDIM steps, guidance
    8, fp16, without and with model CPU offload (which needs CUDA), placed on the device as ``hm generate``'s
    ``load_pipeline`` places it. The components are built once, on the GPU (building them through
    ``from_pretrained`` would initialise 2 billion random weights on the CPU for each variant)."""
    import numpy as np

    from human_motion.config import to_dict
    from human_motion.model.pipeline_loading import settings_from_run
    from human_motion.model.reference import ReferenceFace
    from human_motion.model.sampling import MotionCharacterPipeline

    cfg = paper_config(dry_run)
    steps = 2 if dry_run else 30
    dtype = torch.float32 if dry_run else torch.float16
    out = {"frames": cfg.data.num_frames, "resolution": cfg.data.resolution, "steps": steps, "guidance": 8.0,
           "dtype": str(dtype).removeprefix("torch."), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        c = build_components(cfg, device, tmp)
    pipe = MotionCharacterPipeline(c.vae, c.text_encoder, c.tokenizer, c.image_encoder, c.unet, c.adapter,
                                   c.noise_scheduler, **settings_from_run(to_dict(cfg), cfg))
    del c
    pipe.set_progress_bar_config(disable=True)
    rng = np.random.default_rng(0)
    embedding = rng.standard_normal(cfg.model.id_embedding_dim).astype(np.float32)
    face = ReferenceFace(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8), embedding / np.linalg.norm(embedding),
                         None, 1)
    for offload in (False, True):
        if offload and not device.startswith("cuda"):
            out["runs"].append({"cpu_offload": True, "skipped": "model CPU offload needs CUDA"})
            continue
        if time.monotonic() > deadline:
            out["runs"].append({"cpu_offload": offload, "skipped": "time budget"})
            continue
        if offload:  # as load_pipeline(cpu_offload=True)
            pipe.to(dtype=dtype)
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device, dtype)
        pipe.enable_vae_slicing()
        reset_peak(device)
        start = time.perf_counter()
        video = pipe(reference_face=face, prompt="a person", action="smiling", intensity=5.0,
                     num_inference_steps=steps, guidance_scale=8.0, output_type="np",
                     generator=torch.Generator().manual_seed(0)).frames
        sync(device)
        out["runs"].append({"cpu_offload": offload, "seconds": time.perf_counter() - start,
                            "peak_gib": peak_gib(device), "shape": list(np.shape(video))})
        reset_peak(device)
    return out
