"""What one training or sampling step feeds the UNet: the conditions of a batch, and the module that accelerate wraps.

``MotionCharacterModel`` is the single ``nn.Module`` handed to ``accelerator.prepare`` (DDP needs one module whose
forward touches every trainable parameter); the frozen encoders stay outside it.
"""

from __future__ import annotations

import torch
from torch import nn

from human_motion.model.components import Components, encode_clip_image, encode_text


class MotionCharacterModel(nn.Module):
    """Reads noisy latents (b, c, f, h, w), timesteps (b,) and the conditions of ``encode_conditions``; writes the
    UNet prediction (b, c, f, h, w). The adapter's processors live inside ``unet``; ``adapter`` is kept here too so
    the identity projector and intensity embedding are part of the same module."""

    def __init__(self, unet: nn.Module, adapter: nn.Module):
        super().__init__()
        self.unet = unet
        self.adapter = adapter

    def forward(self, noisy_latents, timesteps, text_embeds, id_embeds, clip_embeds, action_embeds, intensity):
        encoder_hidden_states = self.adapter.encoder_hidden_states(
            text_embeds, id_embeds, clip_embeds, action_embeds, intensity, num_frames=noisy_latents.shape[2]
        )  # (b*f, l, d)
        return self.unet(noisy_latents, timesteps, encoder_hidden_states).sample


@torch.no_grad()
def encode_conditions(c: Components, batch: dict, num_action_tokens: int, device, dtype=torch.float32) -> dict:
    """Frozen encoders on a batch; applies the batch's dropout flags (text is dropped in the data already):
    ``drop_image`` zeroes identity and CLIP inputs, ``drop_clip`` the CLIP image tokens alone."""
    text_embeds = encode_text(c.tokenizer, c.text_encoder, batch["text"], c.tokenizer.model_max_length)  # (b, 77, d)
    action_embeds = encode_text(c.tokenizer, c.text_encoder, batch["action"], num_action_tokens)  # (b, n_a, d)
    face = batch["face"].to(device)
    clip_embeds = encode_clip_image(c.image_encoder, face)  # (b, l, clip_dim)
    keep_id = (~batch["drop_image"]).to(device, torch.float32)  # (b,)
    keep_clip = keep_id * (~batch["drop_clip"]).to(device, torch.float32)
    return {
        "text_embeds": text_embeds.to(device, dtype),
        "id_embeds": (batch["id_embedding"].to(device) * keep_id[:, None]).to(dtype),
        "clip_embeds": (clip_embeds * keep_clip[:, None, None]).to(dtype),
        "action_embeds": action_embeds.to(device, dtype),
        "intensity": batch["intensity"].to(device, torch.float32),
    }


def unconditional(cond: dict, empty_text_embeds: torch.Tensor) -> dict:
    """The classifier-free-guidance counterpart of ``cond``: empty text, no identity (what the dropouts train); the
    action and intensity stay, so guidance sharpens appearance without cancelling the motion request.
    ``empty_text_embeds`` (1, 77, d) is the text encoder's output for ""."""
    b = cond["text_embeds"].shape[0]
    return {**cond, "text_embeds": empty_text_embeds.expand(b, -1, -1).to(cond["text_embeds"]),
            "id_embeds": torch.zeros_like(cond["id_embeds"]), "clip_embeds": torch.zeros_like(cond["clip_embeds"])}
