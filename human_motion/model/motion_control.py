"""Motion Control Module (paper Eq. 8): action-phrase tokens and motion-intensity tokens attended in parallel from the
ID-inserted features.

    Z'' = beta * Attn(Q', K_a, V_a) + alpha * Attn(Q', K_m, V_m),   Q' = z' W_q'          (Eq. 8; beta = 1 in the paper)

``z'`` is the output of the ID insertion (Eq. 3). The layer then writes ``to_out(z' + Z'')``: the motion branch is a
residual on the ID-inserted features, and its value projections start at zero, so a fresh adapter leaves a pretrained
UNet's output unchanged (the ControlNet / IP-Adapter habit of starting new branches as no-ops). ``beta`` (the action
scale) is our addition: with lambda = alpha = beta = 0 the layer is exactly the base cross-attention.
"""

from __future__ import annotations

import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from human_motion.model.id_insertion import IDAttnProcessor, attend


class MotionIntensityEmbedding(ModelMixin, ConfigMixin):
    """Reads intensities M (b,) in pixels per step; writes intensity tokens E_M (b, num_tokens, cross_attention_dim).

    M is scaled by ``max_intensity`` (the paper balances intensities over [0, 20]) and expanded into Fourier features
    before the MLP: a plain MLP on one scalar learns slowly and tends to a near-linear response, while sin/cos features
    let nearby intensities (5 vs 10) map to clearly different tokens. The frequencies are pi * 2^k, k < 4: periods
    down to a quarter of the range (5 px per step at 20). More octaves are worse, not finer: intensity labels are
    measured to about half a pixel, and a feature whose period is near that is a hash of the label's noise. With 8
    octaves (period 0.3 px) the model of benchmarks/intensity_control.py could not tell 10, 15 and 20 apart.
    """

    @register_to_config
    def __init__(
        self,
        cross_attention_dim: int = 768,
        num_tokens: int = 4,
        num_frequencies: int = 4,
        hidden_dim: int = 256,
        max_intensity: float = 20.0,
    ):
        super().__init__()
        freqs = math.pi * 2.0 ** torch.arange(num_frequencies, dtype=torch.float32)
        self.register_buffer("freqs", freqs, persistent=False)
        self.mlp = nn.Sequential(
            nn.Linear(2 * num_frequencies + 1, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, num_tokens * cross_attention_dim),
        )
        self.norm = nn.LayerNorm(cross_attention_dim)

    def forward(self, intensity: torch.Tensor) -> torch.Tensor:
        x = (intensity.float() / self.config.max_intensity)[:, None]  # (b, 1)
        angles = x * self.freqs[None, :]  # (b, f)
        features = torch.cat([x, angles.sin(), angles.cos()], dim=-1).to(self.mlp[0].weight.dtype)  # (b, 2f + 1)
        tokens = self.mlp(features).view(x.shape[0], self.config.num_tokens, -1)  # (b, n, d)
        return self.norm(tokens)


class MotionControlAttnProcessor(IDAttnProcessor):
    """ID insertion (Eq. 3) followed by motion control (Eq. 8) in one ``attn2`` processor.

    Reads ``encoder_hidden_states`` (b, l, d) laid out as ``[text | id | action | intensity]`` with the last three
    groups ``num_id_tokens``, ``num_action_tokens``, ``num_intensity_tokens`` long (the text part is whatever precedes
    them, 77 tokens for SD 1.5). Owns ``to_k_id/to_v_id``, ``to_q_motion``, ``to_k_action/to_v_action`` and
    ``to_k_intensity/to_v_intensity``; writes the layer output like ``AttnProcessor2_0``.
    """

    token_groups = ("id", "action", "intensity")

    def __init__(
        self,
        hidden_size: int,
        cross_attention_dim: int,
        num_id_tokens: int = 4,
        num_action_tokens: int = 8,
        num_intensity_tokens: int = 4,
        id_scale: float = 1.0,
        action_scale: float = 1.0,
        intensity_scale: float = 1.0,
    ):
        super().__init__(hidden_size, cross_attention_dim, num_id_tokens, id_scale)
        self.num_action_tokens = num_action_tokens
        self.num_intensity_tokens = num_intensity_tokens
        self.action_scale = action_scale
        self.intensity_scale = intensity_scale
        self.to_q_motion = nn.Linear(hidden_size, hidden_size, bias=False)
        self.to_k_action = nn.Linear(cross_attention_dim, hidden_size, bias=False)
        self.to_v_action = nn.Linear(cross_attention_dim, hidden_size, bias=False)
        self.to_k_intensity = nn.Linear(cross_attention_dim, hidden_size, bias=False)
        self.to_v_intensity = nn.Linear(cross_attention_dim, hidden_size, bias=False)

    def init_from_attention(self, attn) -> None:
        super().init_from_attention(attn)
        with torch.no_grad():
            if attn.to_q.weight.shape == self.to_q_motion.weight.shape:
                self.to_q_motion.weight.copy_(attn.to_q.weight)
            self.to_k_action.weight.copy_(attn.to_k.weight)  # action phrases live in the text encoder's space
            self.to_v_action.weight.zero_()  # zero values: the motion branch starts as a no-op
            self.to_v_intensity.weight.zero_()

    def group_sizes(self) -> dict[str, int]:
        return {"id": self.num_id_tokens, "action": self.num_action_tokens, "intensity": self.num_intensity_tokens}

    def extra_attention(self, attn, z: torch.Tensor, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        query = self.to_q_motion(z)  # Q' from the ID-inserted features, (b, s, inner)
        z_action = attend(attn, query, parts["action"], self.to_k_action, self.to_v_action)
        z_intensity = attend(attn, query, parts["intensity"], self.to_k_intensity, self.to_v_intensity)
        return z + self.action_scale * z_action + self.intensity_scale * z_intensity  # z' + Z''
