"""Loading through the real code paths, offline: a local diffusers folder, and an ONNX face embedder via onnx2torch."""

from __future__ import annotations

import pytest
import torch

from human_motion.config import ConfigError
from human_motion.model.components import load_components, load_face_embedder
from human_motion.model.tiny import TinyFaceEmbedder

from .conftest import tiny_model_config


def test_onnx_face_embedder_is_differentiable_and_matches(tmp_path):
    pytest.importorskip("onnx2torch")
    reference = TinyFaceEmbedder().eval()
    path = tmp_path / "face.onnx"
    torch.onnx.export(reference, (torch.randn(2, 3, 32, 32),), str(path), input_names=["input.1"],
                      dynamic_axes={"input.1": {0: "n"}}, dynamo=False)  # the shape of insightface's w600k_r50.onnx
    phi = load_face_embedder(str(path))
    faces = torch.randn(3, 3, 32, 32, requires_grad=True)
    torch.testing.assert_close(phi(faces), reference(faces), rtol=1e-5, atol=1e-5)
    phi(faces).sum().backward()
    assert faces.grad.abs().sum() > 0 and not any(p.requires_grad for p in phi.parameters())


def test_missing_face_embedder_says_what_to_do():
    with pytest.raises(ConfigError, match="ArcFace ONNX file"):
        load_face_embedder("/nonexistent/w600k_r50.onnx")


def test_local_diffusers_folders_load_like_hub_ids(tmp_path):
    """Save tiny parts in the hub layout, then load them through the from_pretrained path of real weights."""
    from diffusers import UNet2DConditionModel

    from human_motion.model import tiny as tiny_configs

    tiny = load_components(tiny_model_config(), tmp_path / "tiny", seed=0)
    base = tmp_path / "sd"
    unet2d_state = {k: v for k, v in tiny.unet.state_dict().items()
                    if "motion_modules" not in k and "processor" not in k}
    unet2d = UNet2DConditionModel(**tiny_configs.tiny_unet_config())
    missing, unexpected = unet2d.load_state_dict(unet2d_state, strict=False)
    assert not missing and not unexpected
    unet2d.save_pretrained(base / "unet")
    tiny.vae.save_pretrained(base / "vae")
    tiny.text_encoder.save_pretrained(base / "text_encoder")
    tiny.tokenizer.save_pretrained(base / "tokenizer")
    tiny.noise_scheduler.save_pretrained(base / "scheduler")
    tiny.unet.save_motion_modules(str(tmp_path / "motion"))  # a MotionAdapter folder, as on the hub
    tiny.image_encoder.save_pretrained(tmp_path / "image_encoder")

    cfg = tiny_model_config(pretrained_model_name_or_path=str(base), motion_adapter=str(tmp_path / "motion"),
                            image_encoder=str(tmp_path / "image_encoder"), image_encoder_subfolder="")
    loaded = load_components(cfg, tmp_path / "loaded", seed=0)
    for name in ("unet", "vae", "text_encoder", "image_encoder"):
        a, b = getattr(tiny, name).state_dict(), getattr(loaded, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_pickled_single_file_checkpoints_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="only .safetensors"):
        load_components(tiny_model_config(pretrained_model_name_or_path=str(tmp_path / "model.ckpt")), tmp_path)


def test_zero_terminal_snr_makes_the_last_step_pure_noise_and_needs_v_prediction(tmp_path):
    plain = load_components(tiny_model_config(), tmp_path, seed=0).noise_scheduler
    assert plain.alphas_cumprod[-1] > 1e-3  # SD's schedule: some of the clip survives at t = 999
    zero = load_components(tiny_model_config(zero_terminal_snr=True, prediction_type="v_prediction"), tmp_path,
                           seed=0).noise_scheduler
    assert zero.alphas_cumprod[-1] < 1e-6 and zero.config.prediction_type == "v_prediction"
    torch.testing.assert_close(zero.alphas_cumprod[0], plain.alphas_cumprod[0], rtol=0.05, atol=0)
    zero.set_timesteps(25)
    assert int(zero.timesteps[0]) == 999  # sampling starts where training saw no signal at all
    with pytest.raises(ConfigError, match="v_prediction"):
        load_components(tiny_model_config(zero_terminal_snr=True), tmp_path, seed=0)
