"""Validation at each checkpoint: the loss of one fixed batch with fixed noise (a curve free of the timestep lottery
of the training loss), and a few sampled clips saved as GIFs and sent to the run's trackers. Sampling is the DDIM +
classifier-free-guidance loop of ``MotionCharacterPipeline`` (``sampling.denoise``) on the fixed batch's conditions.
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch

from human_motion.model.components import Components, decode_latents, encode_text, encode_video
from human_motion.model.conditioning import encode_conditions, unconditional
from human_motion.model.losses import region_aware_loss, region_weights
from human_motion.model.noise import video_noise
from human_motion.model.tracking import gif_bytes, log_videos


def target_for(scheduler, latents, noise, timesteps) -> torch.Tensor:
    """The regression target by ``prediction_type`` (diffusers' train_text_to_image.py)."""
    if scheduler.config.prediction_type == "epsilon":
        return noise
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"Unknown prediction type {scheduler.config.prediction_type}")


@torch.no_grad()
def fixed_batch_loss(model, c: Components, batch: dict, cond: dict, region_delta: float, seed: int,
                     rho: float = 0.0, flow_scale: float = 1.0) -> float:
    """Region-aware loss of ``batch`` at evenly spread timesteps with noise drawn from ``seed``: comparable across
    checkpoints and across resumed runs."""
    device = cond["text_embeds"].device
    gen = torch.Generator(device).manual_seed(seed)
    latents = encode_video(c.vae, batch["pixel_values"].to(device), generator=gen).float()  # (b, c, f, h, w)
    noise = video_noise(latents.shape, gen, device, rho)
    n = c.noise_scheduler.config.num_train_timesteps
    timesteps = torch.linspace(n * 0.1, n * 0.9, latents.shape[0], device=device).long()
    noisy_latents = c.noise_scheduler.add_noise(latents, noise, timesteps)
    model_pred = model(noisy_latents, timesteps, **cond)
    weights = region_weights(batch["flow"].to(device), region_delta, latents.shape[-2:], flow_scale)
    return float(region_aware_loss(model_pred, target_for(c.noise_scheduler, latents, noise, timesteps), weights))


@torch.no_grad()
def sample_clips(model, c: Components, cond: dict, num_frames: int, size: int, steps: int, guidance_scale: float,
                 seed: int, rho: float = 0.0) -> torch.Tensor:
    """DDIM sampling with classifier-free guidance -> frames (b, f, 3, H, W) in [0, 1]; ``rho``: the model's
    noise_frame_correlation."""
    from diffusers import DDIMScheduler

    from human_motion.model.sampling import denoise

    device = cond["text_embeds"].device
    scheduler = DDIMScheduler.from_config(c.noise_scheduler.config)
    scheduler.set_timesteps(steps, device=device)
    b = cond["text_embeds"].shape[0]
    latent_size = size // 2 ** (len(c.vae.config.block_out_channels) - 1)
    shape = (b, c.vae.config.latent_channels, num_frames, latent_size, latent_size)
    gen = torch.Generator(device).manual_seed(seed)
    noise = video_noise(shape, gen, device, rho)  # (b, c, f, h, w)
    uncond = None
    if guidance_scale > 1.0:
        empty = encode_text(c.tokenizer, c.text_encoder, [""], c.tokenizer.model_max_length)
        uncond = unconditional(cond, empty)
    latents = denoise(model, scheduler, cond, uncond, noise, guidance_scale)  # the loop of MotionCharacterPipeline
    return ((decode_latents(c.vae, latents).float() + 1) / 2).clamp(0, 1)  # (b, f, 3, H, W)


def save_gif(frames: np.ndarray, path: str | pathlib.Path, fps: float = 4.0) -> None:
    """(f, H, W, 3) uint8 -> an animated GIF (viewable anywhere, no video encoder needed)."""
    pathlib.Path(path).write_bytes(gif_bytes(frames, fps))


def validate(accelerator, model, c: Components, fixed_batch: dict, cfg, out: pathlib.Path, step: int, log,
             weight_dtype) -> None:
    """At ``step``: the fixed batch's loss into the run log, and ``validation.num_samples`` clips into
    ``out/samples`` and the trackers (main process only)."""
    if not accelerator.is_main_process:
        return
    unwrapped = accelerator.unwrap_model(model)
    cond = encode_conditions(c, fixed_batch, cfg.model.num_action_tokens, accelerator.device, weight_dtype)
    seed, rho = cfg.train.seed, cfg.model.noise_frame_correlation
    record = {"step": step, "event": "validation"}
    with accelerator.autocast():
        if cfg.validation.fixed_batch_loss:
            record["val_loss"] = fixed_batch_loss(unwrapped, c, fixed_batch, cond, cfg.loss.region_delta, seed, rho,
                                                  cfg.loss.region_flow_scale)
        n = min(cfg.validation.num_samples, cfg.train.train_batch_size)
        if n:
            clips = sample_clips(unwrapped, c, {k: v[:n] for k, v in cond.items()}, cfg.data.num_frames,
                                 cfg.data.resolution, cfg.validation.num_inference_steps,
                                 cfg.validation.guidance_scale, seed, rho)
            clips = (clips.permute(0, 1, 3, 4, 2).float().cpu().numpy() * 255).round().astype(np.uint8)
            (out / "samples").mkdir(exist_ok=True)
            for i, clip in enumerate(clips):  # (f, H, W, 3)
                save_gif(clip, out / "samples" / f"step{step:06d}_{i}.gif")
            log_videos(accelerator, clips, step)
    log(record)
