"""ID insertion + motion control installed in a tiny UNetMotionModel: base equivalence, gradients, save/load."""

from __future__ import annotations

import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

from human_motion.model import tiny
from human_motion.model.adapter import MotionCharacterAdapter, set_trainable, spatial_cross_attention_layers
from human_motion.model.motion_control import MotionControlAttnProcessor


def bare_unet(seed=0) -> UNetMotionModel:
    torch.manual_seed(seed)
    unet2d = UNet2DConditionModel(**tiny.tiny_unet_config())
    return UNetMotionModel.from_unet2d(unet2d, MotionAdapter(**tiny.tiny_motion_adapter_config())).eval()


def make_adapter(unet, randomize=True) -> MotionCharacterAdapter:
    adapter = MotionCharacterAdapter.from_unet(
        unet, id_dim=128, clip_dim=24, num_action_tokens=5, projector_width=32, projector_heads=4,
        intensity_hidden_dim=32,
    )
    if randomize:  # the zero-initialised values would make "scale 0 == base" hold trivially
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in adapter.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return adapter


def inputs(b=2, f=4):
    gen = torch.Generator().manual_seed(2)
    return dict(
        latents=torch.randn(b, 4, f, 16, 16, generator=gen),  # (b, c, f, h, w)
        timesteps=torch.tensor([10, 700])[:b],
        text=torch.randn(b, 77, 32, generator=gen),
        id_embeds=torch.randn(b, 128, generator=gen),
        clip=torch.randn(b, 17, 24, generator=gen),
        action=torch.randn(b, 5, 32, generator=gen),
        intensity=torch.tensor([3.0, 12.0])[:b],
    )


def run(unet, adapter, x, **changes):
    x = {**x, **changes}
    f = x["latents"].shape[2]
    ehs = adapter.encoder_hidden_states(x["text"], x["id_embeds"], x["clip"], x["action"], x["intensity"], f)
    return unet(x["latents"], x["timesteps"], ehs).sample


def test_patches_only_spatial_cross_attention():
    unet = bare_unet()
    adapter = make_adapter(unet)
    adapter.install(unet)
    patched = {n for n, p in unet.attn_processors.items() if isinstance(p, MotionControlAttnProcessor)}
    assert patched == {f"{n}.processor" for n in spatial_cross_attention_layers(unet)}
    assert len(patched) == 4 and not any("motion_modules" in n for n in patched)


def test_zero_scales_reproduce_bare_unet():
    unet, x = bare_unet(), inputs()
    with torch.no_grad():
        expected = unet(x["latents"], x["timesteps"], x["text"].repeat_interleave(4, 0)).sample
        adapter = make_adapter(unet)
        adapter.install(unet)
        adapter.set_scales(id_scale=0.0, action_scale=0.0, intensity_scale=0.0)
        got = run(unet, adapter, x)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
        adapter.set_scales(id_scale=1.0, action_scale=1.0, intensity_scale=1.0)
        assert (run(unet, adapter, x) - expected).abs().max() > 1e-3  # the branches do act when switched on


def test_fresh_adapter_is_identity_without_id_and_alpha_scales_intensity():
    unet, x = bare_unet(), inputs()
    with torch.no_grad():
        expected = unet(x["latents"], x["timesteps"], x["text"].repeat_interleave(4, 0)).sample
        adapter = make_adapter(unet, randomize=False)  # zero motion values: only lambda matters at start
        adapter.install(unet)
        adapter.set_scales(id_scale=0.0)
        torch.testing.assert_close(run(unet, adapter, x), expected, rtol=0, atol=1e-6)
        adapter = make_adapter(unet)
        adapter.install(unet)
        adapter.set_scales(intensity_scale=0.0)  # alpha = 0: the intensity has no effect
        a = run(unet, adapter, x, intensity=torch.tensor([0.0, 0.0]))
        torch.testing.assert_close(run(unet, adapter, x, intensity=torch.tensor([20.0, 5.0])), a)
        adapter.set_scales(intensity_scale=1.0)
        assert (run(unet, adapter, x, intensity=torch.tensor([20.0, 5.0])) - a).abs().max() > 1e-4


def _grads(unet, adapter, train_motion_modules):
    params = set_trainable(unet, adapter, train_motion_modules)
    run(unet, adapter, inputs()).square().mean().backward()
    got = {id(p) for p in [*unet.parameters(), *adapter.parameters()] if p.grad is not None and p.grad.abs().sum() > 0}
    return {id(p) for p in params}, got


def test_only_adapter_parameters_get_gradients():
    unet = bare_unet()
    adapter = make_adapter(unet)
    adapter.install(unet)
    intended, got = _grads(unet, adapter, train_motion_modules=False)
    assert intended == {id(p) for p in adapter.parameters()}
    assert got == intended


def test_motion_modules_train_when_asked():
    unet = bare_unet()
    adapter = make_adapter(unet)
    adapter.install(unet)
    intended, got = _grads(unet, adapter, train_motion_modules=True)
    motion = {id(p) for n, p in unet.named_parameters() if ".motion_modules." in n}
    assert motion and intended == {id(p) for p in adapter.parameters()} | motion
    assert got == intended
    frozen = {id(p) for n, p in unet.named_parameters() if "attn1" in n and "motion_modules" not in n}
    assert frozen and not frozen & got


def test_save_load_round_trip(tmp_path):
    x = inputs()
    unet = bare_unet()
    adapter = make_adapter(unet)
    adapter.install(unet)
    adapter.set_scales(id_scale=0.7)
    with torch.no_grad():
        expected = run(unet, adapter, x)
    adapter.save_pretrained(tmp_path / "adapter")
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == [
        "config.json", "diffusion_pytorch_model.safetensors"]
    fresh = bare_unet()
    loaded = MotionCharacterAdapter.from_pretrained(tmp_path / "adapter")
    loaded.install(fresh)
    loaded.set_scales(id_scale=0.7)
    with torch.no_grad():
        torch.testing.assert_close(run(fresh, loaded, x), expected, rtol=0, atol=0)
