"""Validation at each checkpoint: the loss of one fixed batch with fixed noise (a curve free of the timestep lottery
of the training loss), and a few sampled clips saved as GIFs. Sampling is the DDIM + classifier-free-guidance loop
of ``MotionCharacterPipeline`` (``sampling.denoise``) on the fixed batch's conditions.
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch

from human_motion.model.components import Components, decode_latents, encode_text, encode_video
from human_motion.model.conditioning import unconditional
from human_motion.model.losses import region_aware_loss, region_weights
from human_motion.model.noise import video_noise


def target_for(scheduler, latents, noise, timesteps) -> torch.Tensor:
    """The regression target by ``prediction_type`` (diffusers' train_text_to_image.py)."""
    if scheduler.config.prediction_type == "epsilon":
        return noise
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"Unknown prediction type {scheduler.config.prediction_type}")


@torch.no_grad()
def fixed_batch_loss(model, c: Components, batch: dict, cond: dict, region_delta: float, seed: int,
                     rho: float = 0.0) -> float:
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
    weights = region_weights(batch["flow"].to(device), region_delta, latents.shape[-2:])
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


def save_gif(frames: torch.Tensor, path: str | pathlib.Path, fps: float = 4.0) -> None:
    """(f, 3, H, W) in [0, 1] -> an animated GIF (viewable anywhere, no video encoder needed)."""
    from PIL import Image

    images = [Image.fromarray(f) for f in (frames.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
