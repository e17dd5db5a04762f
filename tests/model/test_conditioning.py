"""The conditions a batch gives the UNet: dropout semantics and the token layout."""

from __future__ import annotations

import numpy as np
import torch

from human_motion.model.conditioning import encode_conditions, unconditional
from human_motion.model.config import DataConfig
from human_motion.model.data import collate, get_dataset

from .conftest import tiny_model_config


def test_dropout_flags_zero_the_right_inputs(tiny_components):
    cfg = DataConfig(dataset_type="synthetic", resolution=32, num_frames=4, face_size=32)
    samples = [s for _, s in zip(range(3), (s for _, s in get_dataset(cfg, tiny_model_config(), None, 0).samples()))]
    samples[1]["drop_image"] = True  # no identity at all
    samples[2]["drop_clip"] = True  # the paper's CLIP-embedding dropout: ArcFace stays
    cond = encode_conditions(tiny_components, collate(samples), num_action_tokens=6, device="cpu")
    assert cond["id_embeds"][0].abs().sum() > 0 and cond["clip_embeds"][0].abs().sum() > 0
    assert cond["id_embeds"][1].abs().sum() == 0 and cond["clip_embeds"][1].abs().sum() == 0
    assert cond["id_embeds"][2].abs().sum() > 0 and cond["clip_embeds"][2].abs().sum() == 0
    assert cond["text_embeds"].shape == (3, 77, 32) and cond["action_embeds"].shape == (3, 6, 32)

    states = tiny_components.adapter.encoder_hidden_states(**cond, num_frames=4)  # (b * f, l, d)
    assert states.shape == (12, 77 + 4 + 6 + 4, 32)
    torch.testing.assert_close(states[4, :77], cond["text_embeds"][1])  # one row per frame, text first

    empty = torch.zeros(1, 77, 32)
    uncond = unconditional(cond, empty)
    assert uncond["text_embeds"].abs().sum() == 0 and uncond["id_embeds"].abs().sum() == 0
    assert torch.equal(uncond["intensity"], cond["intensity"])  # guidance keeps the motion request


def test_intensity_tokens_tell_intensities_apart(tiny_components):
    tokens = tiny_components.adapter.intensity_embedding(torch.tensor([0.0, 5.0, 10.0, 20.0]))  # (4, n, d)
    distances = torch.cdist(tokens.flatten(1), tokens.flatten(1))
    assert (distances + torch.eye(4) > 1e-3).all()


def intensity_tokens_by_definition(emb, intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E_M of model/motion_control.py written out in numpy from its docstring, with the module's weights only:
    x = M / max_intensity, Fourier features [x, sin(pi 2^k x), cos(pi 2^k x)] for k < num_frequencies, a two-layer
    SiLU MLP, tokens (b, num_tokens, d) each layer-normalised. Returns (features, tokens)."""
    cfg = emb.config
    x = intensity.astype(np.float64)[:, None] / cfg.max_intensity  # (b, 1)
    angles = x * (np.pi * 2.0 ** np.arange(cfg.num_frequencies))[None]  # (b, f)
    features = np.concatenate([x, np.sin(angles), np.cos(angles)], 1)  # (b, 2f + 1)
    w = {k: v.detach().double().numpy() for k, v in emb.state_dict().items()}
    hidden = features @ w["mlp.0.weight"].T + w["mlp.0.bias"]
    hidden = hidden / (1 + np.exp(-hidden))  # SiLU
    tokens = (hidden @ w["mlp.2.weight"].T + w["mlp.2.bias"]).reshape(len(x), cfg.num_tokens, -1)  # (b, n, d)
    mean, var = tokens.mean(-1, keepdims=True), tokens.var(-1, keepdims=True)
    tokens = (tokens - mean) / np.sqrt(var + emb.norm.eps) * w["norm.weight"] + w["norm.bias"]
    return features, tokens


def test_intensity_features_are_smooth_at_the_scale_labels_are_measured():
    """A label measured half a pixel off must look like its neighbour, not like a random intensity: the Fourier
    features' shortest period is a quarter of the range (model/motion_control.py). The features are the ones the
    module's forward feeds its MLP, and its tokens are checked against the definition computed independently."""
    from human_motion.model.motion_control import MotionIntensityEmbedding

    torch.manual_seed(0)
    emb = MotionIntensityEmbedding(cross_attention_dim=16, num_tokens=2, hidden_dim=8)
    with torch.no_grad():  # a non-trivial norm, so the definition's affine part is checked too
        emb.norm.weight.uniform_(0.5, 1.5)
        emb.norm.bias.uniform_(-0.5, 0.5)
    fed = []
    emb.mlp[0].register_forward_pre_hook(lambda module, args: fed.append(args[0].detach()))
    intensity = np.array([10.0, 10.5, 15.0, 20.0, 0.0, 3.3], np.float32)
    tokens = emb(torch.from_numpy(intensity))
    features, expected = intensity_tokens_by_definition(emb, intensity)
    np.testing.assert_allclose(fed[0].numpy(), features, atol=1e-4)  # float32 angles
    np.testing.assert_allclose(tokens.detach().numpy(), expected, rtol=1e-4, atol=1e-5)
    features = fed[0]
    near, far = (features[0] - features[1]).norm(), (features[0] - features[2:4]).norm(dim=1)
    assert near < 0.35 * far.min()  # with 8 octaves (periods down to 0.3 px) near and far are alike
