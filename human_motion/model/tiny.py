"""Tiny stand-ins for every pretrained part, built from configs so tests and ``train_tiny`` run on a CPU in seconds.

Nothing here is downloaded: the tokenizer is a character-level CLIP BPE vocabulary written to a local folder, and each
network is a few thousand parameters with the same classes (and so the same code paths) as the real weights.
"""

from __future__ import annotations

import pathlib

import torch
from torch import nn

# Shapes follow diffusers' own tiny test models (tests/models/unets/test_models_unet_motion.py).
TINY_TEXT_WIDTH = 32
TINY_IMAGE_SIZE = 32


def tiny_unet_config() -> dict:
    return dict(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TINY_TEXT_WIDTH,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def tiny_motion_adapter_config() -> dict:
    return dict(
        block_out_channels=(16, 32),
        motion_layers_per_block=1,
        motion_num_attention_heads=2,
        motion_norm_num_groups=8,
        motion_max_seq_length=32,
    )


def tiny_vae_config() -> dict:
    # Two blocks: a downsampling factor of 2 (32x32 frames -> 16x16 latents), 4 latent channels like SD.
    return dict(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=TINY_IMAGE_SIZE,
    )


def tiny_text_config(vocab_size: int) -> dict:
    return dict(
        vocab_size=vocab_size,
        hidden_size=TINY_TEXT_WIDTH,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=TINY_TEXT_WIDTH,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )


def tiny_vision_config() -> dict:
    return dict(
        hidden_size=24,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=TINY_IMAGE_SIZE,
        patch_size=8,
        projection_dim=24,
    )


def write_tiny_tokenizer(path: str | pathlib.Path):
    """Write a character-level ``CLIPTokenizer`` (256 byte symbols, their word-final forms, 2 specials) to ``path``.

    With no merges, CLIP's byte-level BPE splits every word into characters, so any text tokenises without an
    ``<unk>``; the vocabulary has 514 entries and the files are a few kB.
    """
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    tokenizer.model_max_length = 77
    tokenizer.save_pretrained(str(path))
    return tokenizer


class TinyFaceEmbedder(nn.Module):
    """A frozen, randomly initialised stand-in for ArcFace: reads (b, 3, s, s) faces in [-1, 1], writes (b, 16)."""

    def __init__(self, dim: int = 16, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.SiLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, dim),
        )
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return self.net(faces)


# SD 1.5-shaped parts with random weights ("random-sd15"): the paper's model size without a download, for
# `hm model-info` and for timing a training step at full size on a GPU (benchmarks/README.md).
def sd15_unet_config() -> dict:
    return dict(sample_size=64, cross_attention_dim=768, attention_head_dim=8)  # the rest are SD 1.5's defaults


def sd15_vae_config() -> dict:
    return dict(
        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2, sample_size=512,
    )


def sd15_text_config(vocab_size: int = 49408) -> dict:
    return dict(vocab_size=vocab_size, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                num_attention_heads=12, max_position_embeddings=77, projection_dim=768, hidden_act="quick_gelu")


def vit_h_vision_config() -> dict:  # IP-Adapter's image encoder (OpenCLIP ViT-H/14)
    return dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                image_size=224, patch_size=14, projection_dim=1024, hidden_act="gelu")
