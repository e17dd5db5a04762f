"""ID Content Insertion (paper Eq. 2-3): identity tokens from ArcFace + CLIP image features, and the decoupled
cross-attention that adds them to the UNet's spatial cross-attention layers.

    C_id = Proj(Attn(E_arc W_q, E W_k, E W_v)),   E = E_clip + E_arc           (Eq. 2)
    z'   = Attn(Q, K_t, V_t) + lambda * Attn(Q, K_i, V_i)                     (Eq. 3)

The processor follows diffusers' ``IPAdapterAttnProcessor2_0``: an ``nn.Module`` owning its extra key/value projections,
sized from the ``Attention`` module it patches, installed with ``unet.set_attn_processor``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class IDProjector(ModelMixin, ConfigMixin):
    """Eq. 2. Reads an identity embedding (b, id_dim) and CLIP image tokens (b, l, clip_dim); writes identity tokens
    (b, num_tokens, cross_attention_dim) at the text-embedding width.

    Both embeddings are first projected to a common ``width`` so they can be summed into E (the paper adds them; their
    native widths differ: 512 or 128 for the face embedding, 1280 for CLIP ViT-H). The identity embedding is expanded to
    ``num_tokens`` queries, so each output token can pick different facial detail from the CLIP patches.
    """

    @register_to_config
    def __init__(
        self,
        id_dim: int = 512,
        clip_dim: int = 1280,
        cross_attention_dim: int = 768,
        num_tokens: int = 4,
        width: int = 768,
        num_heads: int = 8,
    ):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"IDProjector: width {width} must be divisible by num_heads {num_heads}")
        self.id_in = nn.Linear(id_dim, width)
        self.clip_in = nn.Linear(clip_dim, width)
        self.query_tokens = nn.Linear(width, num_tokens * width)  # E_arc -> num_tokens queries
        self.attn = nn.MultiheadAttention(width, num_heads, batch_first=True)  # owns W_q, W_k, W_v
        self.proj_out = nn.Linear(width, cross_attention_dim)
        self.norm_out = nn.LayerNorm(cross_attention_dim)

    def forward(self, id_embeds: torch.Tensor, clip_embeds: torch.Tensor) -> torch.Tensor:
        b = id_embeds.shape[0]
        e_arc = self.id_in(id_embeds)  # (b, w)
        e_clip = self.clip_in(clip_embeds)  # (b, l, w)
        e = e_clip + e_arc[:, None, :]  # (b, l, w): E = E_clip + E_arc
        query = self.query_tokens(e_arc).view(b, self.config.num_tokens, -1)  # (b, n, w)
        tokens, _ = self.attn(query, e, e, need_weights=False)  # (b, n, w)
        return self.norm_out(self.proj_out(tokens))  # (b, n, cross_attention_dim)


def attend(attn, query: torch.Tensor, context: torch.Tensor, to_k: nn.Module, to_v: nn.Module, mask=None):
    """Multi-head attention of ``query`` (b*f, s, inner) over ``context`` (b*f, l, d) with the given key/value
    projections and ``attn``'s head count; returns (b*f, s, inner) before ``attn.to_out``.

    Written like diffusers' ``AttnProcessor2_0``: the batch is the context's, so a context of one row per video
    (b, l, d) also works, with the video's frames folded into the query sequence.
    """
    b = context.shape[0]
    key, value = to_k(context), to_v(context)  # (b, l, inner)
    head_dim = key.shape[-1] // attn.heads
    q = query.reshape(b, -1, attn.heads, head_dim).transpose(1, 2)  # (b, h, f*s, d)
    k = key.view(b, -1, attn.heads, head_dim).transpose(1, 2)  # (b, h, l, d)
    v = value.view(b, -1, attn.heads, head_dim).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False)
    return out.transpose(1, 2).reshape(query.shape).to(query.dtype)  # (b*f, s, inner)


class IDAttnProcessor(nn.Module):
    """Decoupled cross-attention for identity tokens (Eq. 3), for the ``attn2`` of spatial transformer blocks.

    Reads ``encoder_hidden_states`` (b, l_text + extra, d) laid out as ``[text | id tokens | ...]``: the trailing
    groups named in ``token_groups`` (sizes from ``group_sizes``) are split off; the text part goes through the frozen
    ``attn.to_k/to_v`` and the identity tokens through this module's own ``to_k_id/to_v_id``. Writes the attention
    output (b, s, hidden_size) like ``AttnProcessor2_0``. Subclasses add more token groups (see ``motion_control``).
    """

    token_groups: tuple[str, ...] = ("id",)

    def __init__(self, hidden_size: int, cross_attention_dim: int, num_id_tokens: int = 4, id_scale: float = 1.0):
        super().__init__()
        self.hidden_size = hidden_size
        self.cross_attention_dim = cross_attention_dim
        self.num_id_tokens = num_id_tokens
        self.id_scale = id_scale
        self.to_k_id = nn.Linear(cross_attention_dim, hidden_size, bias=False)
        self.to_v_id = nn.Linear(cross_attention_dim, hidden_size, bias=False)

    def init_from_attention(self, attn) -> None:
        """Start the identity projections as copies of the patched layer's text projections (as IP-Adapter does), so
        the identity branch begins in the same feature space as the text branch. Sizes come from ``attn`` too
        (``MotionCharacterAdapter.from_unet``: ``attn.to_k.out_features``, ``attn.to_k.in_features``)."""
        with torch.no_grad():
            self.to_k_id.weight.copy_(attn.to_k.weight)
            self.to_v_id.weight.copy_(attn.to_v.weight)

    def group_sizes(self) -> dict[str, int]:
        return {"id": self.num_id_tokens}

    def split_tokens(self, encoder_hidden_states: torch.Tensor) -> dict[str, torch.Tensor]:
        """(b, l, d) -> {"text": (b, l_text, d), "id": (b, n_id, d), ...} following ``token_groups``."""
        sizes = self.group_sizes()
        n_extra = sum(sizes[g] for g in self.token_groups)
        if encoder_hidden_states.shape[1] <= n_extra:
            raise ValueError(
                f"{type(self).__name__}: encoder_hidden_states has {encoder_hidden_states.shape[1]} tokens, expected "
                f"text tokens followed by {n_extra} ({', '.join(f'{g}={sizes[g]}' for g in self.token_groups)})"
            )
        parts = {"text": encoder_hidden_states[:, : encoder_hidden_states.shape[1] - n_extra]}
        start = parts["text"].shape[1]
        for g in self.token_groups:
            parts[g] = encoder_hidden_states[:, start : start + sizes[g]]
            start += sizes[g]
        return parts

    def extra_attention(self, attn, z: torch.Tensor, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """Hook for subclasses: what to add to the ID-inserted features z' (b, s, inner). Nothing here."""
        return z

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        if encoder_hidden_states is None:
            raise ValueError(f"{type(self).__name__} is for cross-attention layers (attn2); got no encoder states")
        residual = hidden_states
        input_ndim = hidden_states.ndim
        if input_ndim == 4:  # (b, c, h, w) -> (b, h*w, c)
            batch, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channels, height * width).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        parts = self.split_tokens(encoder_hidden_states)
        text = parts["text"]
        if attn.norm_cross:
            text = attn.norm_encoder_hidden_states(text)
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, text.shape[1], text.shape[0])
            attention_mask = attention_mask.view(text.shape[0], attn.heads, -1, attention_mask.shape[-1])

        query = attn.to_q(hidden_states)  # (b, s, inner)
        z = attend(attn, query, text, attn.to_k, attn.to_v, attention_mask)  # Attn(Q, K_t, V_t)
        # Always computed, also at scale 0, so every trainable parameter takes part in the graph (DDP needs that).
        z = z + self.id_scale * attend(attn, query, parts["id"], self.to_k_id, self.to_v_id)  # Eq. 3
        z = self.extra_attention(attn, z, parts)

        hidden_states = attn.to_out[1](attn.to_out[0](z))  # linear, dropout
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor
