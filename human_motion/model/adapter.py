"""``MotionCharacterAdapter``: every new trainable part of MotionCharacter in one ``ModelMixin``, so the new weights
alone save and load as ``diffusion_pytorch_model.safetensors`` + ``config.json`` next to an untouched base model.

It owns the ID projector (Eq. 2), the intensity embedding (Eq. 8) and one ``MotionControlAttnProcessor`` per spatial
cross-attention layer of the UNet; ``install(unet)`` hands those processors to the UNet (the same module objects, so
training the adapter trains what the UNet runs).
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention_processor import Attention
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from human_motion.model.id_insertion import IDProjector
from human_motion.model.motion_control import MotionControlAttnProcessor, MotionIntensityEmbedding


def spatial_cross_attention_layers(unet) -> dict[str, Attention]:
    """The UNet's spatial cross-attention modules (``attn2`` of its transformer blocks), by module name.

    Chosen by type, not by name patterns: an ``Attention`` that is cross-attention and does not sit inside a motion
    module (AnimateDiff's temporal layers are self-attention, but we exclude them explicitly too).
    """
    motion = set()
    for block in [*unet.down_blocks, unet.mid_block, *unet.up_blocks]:
        for module in getattr(block, "motion_modules", None) or []:
            motion.update(id(m) for m in module.modules())
    return {
        name: m
        for name, m in unet.named_modules()
        if isinstance(m, Attention) and m.is_cross_attention and id(m) not in motion
    }


class MotionCharacterAdapter(ModelMixin, ConfigMixin):
    """Reads the conditions of one sample batch; writes the UNet's ``encoder_hidden_states`` (b, l, d) laid out as
    ``[text | id (num_id_tokens) | action (num_action_tokens) | intensity (num_intensity_tokens)]``.

    ``layers`` lists ``[module name, hidden size, cross-attention dim]`` of each patched layer, taken from the UNet by
    ``from_unet``; it lets ``from_pretrained`` rebuild the processors without the UNet at hand.
    """

    @register_to_config
    def __init__(
        self,
        layers: list = (),
        id_dim: int = 512,
        clip_dim: int = 1280,
        cross_attention_dim: int = 768,
        num_id_tokens: int = 4,
        num_action_tokens: int = 8,
        num_intensity_tokens: int = 4,
        projector_width: int = 768,
        projector_heads: int = 8,
        intensity_frequencies: int = 4,
        intensity_hidden_dim: int = 256,
        max_intensity: float = 20.0,
        id_scale: float = 1.0,
        action_scale: float = 1.0,
        intensity_scale: float = 1.0,
    ):
        super().__init__()
        self.id_projector = IDProjector(
            id_dim, clip_dim, cross_attention_dim, num_id_tokens, projector_width, projector_heads
        )
        self.intensity_embedding = MotionIntensityEmbedding(
            cross_attention_dim, num_intensity_tokens, intensity_frequencies, intensity_hidden_dim, max_intensity
        )
        # ModuleDict keys cannot hold dots; module names map back through `layers`.
        self.processors = nn.ModuleDict(
            {
                name.replace(".", "__"): MotionControlAttnProcessor(
                    hidden, cross, num_id_tokens, num_action_tokens, num_intensity_tokens,
                    id_scale, action_scale, intensity_scale,
                )
                for name, hidden, cross in layers
            }
        )

    @classmethod
    def from_unet(cls, unet, **kwargs) -> MotionCharacterAdapter:
        """A fresh adapter sized from ``unet``: text-branch copies for id/action keys, zero motion values."""
        found = spatial_cross_attention_layers(unet)
        if not found:
            raise ValueError("the UNet has no spatial cross-attention layers to patch")
        layers = [[name, attn.to_k.out_features, attn.to_k.in_features] for name, attn in found.items()]
        adapter = cls(layers=layers, cross_attention_dim=layers[0][2], **kwargs)
        for name, attn in found.items():
            adapter.processors[name.replace(".", "__")].init_from_attention(attn)
        return adapter

    def install(self, unet) -> None:
        """Give ``unet`` this adapter's processors (other layers keep theirs); raises if the layers do not match."""
        found = spatial_cross_attention_layers(unet)
        expected = [name for name, _, _ in self.config.layers]
        if sorted(found) != sorted(expected):
            raise ValueError(
                f"adapter was built for {len(expected)} cross-attention layers, this UNet has {len(found)}; "
                "load an adapter made for this base model"
            )
        processors = dict(unet.attn_processors)
        for name in expected:
            processors[f"{name}.processor"] = self.processors[name.replace(".", "__")]
        unet.set_attn_processor(processors)

    def set_scales(self, id_scale=None, action_scale=None, intensity_scale=None) -> None:
        """lambda (Eq. 3), beta and alpha (Eq. 8) in every patched layer; ``None`` keeps a value. The config records
        them too, so ``save_pretrained`` (of the adapter or of the pipeline) keeps the scales the model runs with."""
        scales = {"id_scale": id_scale, "action_scale": action_scale, "intensity_scale": intensity_scale}
        scales = {k: float(v) for k, v in scales.items() if v is not None}
        for proc in self.processors.values():
            for name, value in scales.items():
                setattr(proc, name, value)
        if scales:
            self.register_to_config(**scales)

    def encoder_hidden_states(
        self,
        text_embeds: torch.Tensor,
        id_embeds: torch.Tensor,
        clip_embeds: torch.Tensor,
        action_embeds: torch.Tensor,
        intensity: torch.Tensor,
        num_frames: int = 1,
    ) -> torch.Tensor:
        """text (b, l_t, d), id (b, id_dim), clip image tokens (b, l_c, clip_dim), action tokens (b, n_a, d),
        intensity (b,) -> (b * num_frames, l_t + n_id + n_a + n_m, d), one row per frame as ``UNetMotionModel``
        expects (diffusers' AnimateDiffPipeline repeats its prompt embeddings the same way)."""
        if action_embeds.shape[1] != self.config.num_action_tokens:
            raise ValueError(
                f"action tokens: got {action_embeds.shape[1]}, the adapter expects {self.config.num_action_tokens}"
            )
        id_tokens = self.id_projector(id_embeds, clip_embeds)  # (b, n_id, d)
        intensity_tokens = self.intensity_embedding(intensity)  # (b, n_m, d)
        dtype = text_embeds.dtype
        states = torch.cat([text_embeds, id_tokens.to(dtype), action_embeds, intensity_tokens.to(dtype)], dim=1)
        return states.repeat_interleave(num_frames, dim=0)  # (b * f, l, d)


def set_trainable(unet, adapter: MotionCharacterAdapter, train_motion_modules: bool = False,
                  train_unet: bool = False) -> list[nn.Parameter]:
    """Freeze everything of ``unet`` but the adapter (and AnimateDiff's motion modules if asked, or the whole UNet
    with ``train_unet``, for a base trained from scratch); return the parameters to optimise. The adapter's processors
    live inside ``unet``, so order matters: freeze, then unfreeze."""
    unet.requires_grad_(False)
    if train_unet:
        unet.requires_grad_(True)
    elif train_motion_modules:
        unet.freeze_unet2d_params()  # diffusers: everything frozen but the motion modules
    adapter.requires_grad_(True)
    seen, params = set(), []
    for p in [*adapter.parameters(), *unet.parameters()]:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            params.append(p)
    return params
