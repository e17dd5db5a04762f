"""``MotionCharacterPipeline`` on a tiny checkpoint saved by `hm train`: loading, defaults, repeatability, the same
maths as the validation sampler, and the reference-face rules of the build."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from human_motion.config import ConfigError
from human_motion.model.sampling import (
    MotionCharacterPipeline,
    MotionCharacterPipelineOutput,
    ReferenceFaceError,
    frames_to_uint8,
)

from .tiny_run import astronaut, coffee, group_photo


def sample(pipe, reference, seed=0, **kw):
    """One video; ``.frames`` holds it alone, (f, H, W, 3) uint8 ("pt": (f, 3, H, W) floats in [0, 1])."""
    kw = {"prompt": "a man in a space suit", "action": "smiling", "intensity": 5.0, "num_inference_steps": 3,
          "output_type": "np", **kw}
    out = pipe(reference_face=reference, generator=torch.Generator().manual_seed(seed), **kw)
    assert len(out.frames) == 1  # the batch dimension: one entry per video
    video = out.frames[0] if kw["output_type"] == "pt" else frames_to_uint8(out.frames[0])
    return MotionCharacterPipelineOutput(frames=video, reference_face=out.reference_face)


def test_loads_a_run_and_defaults_to_its_training_size(pipe, reference):
    assert pipe.device.type == "cpu" and pipe.dtype == torch.float32  # fp32 on the CPU unless .to() says otherwise
    assert (pipe.default_num_frames, pipe.default_size) == (4, 32)  # train_tiny's data.num_frames / resolution
    out = pipe(reference_image=astronaut(), prompt="a man", action="smiling", intensity=3.0, num_inference_steps=2,
               generator=torch.Generator().manual_seed(0), output_type="np")
    assert out.frames.shape == (1, 4, 32, 32, 3) and out.frames.dtype == np.float32  # diffusers' "np": [0, 1]
    assert out.reference_face.shape == (256, 256, 3)  # the build's aligned face (faces.face_size_px)
    custom = sample(pipe, reference, num_frames=6, height=40, width=48, num_inference_steps=2)
    assert custom.frames.shape == (6, 40, 48, 3)
    with pytest.raises(ValueError, match="multiples of 8"):
        sample(pipe, reference, height=30)


def test_loads_a_checkpoint_folder_and_the_adapter_folder(run_dir, pipe, reference):
    a = sample(pipe, reference).frames
    for path in (run_dir / "checkpoints" / "checkpoint-3", run_dir / "adapter"):
        other = MotionCharacterPipeline.from_pretrained(path)
        other.set_progress_bar_config(disable=True)
        np.testing.assert_array_equal(sample(other, reference).frames, a)  # final adapter == last checkpoint
    with pytest.raises(ConfigError, match="does not exist"):
        MotionCharacterPipeline.from_pretrained(run_dir / "missing")
    with pytest.raises(ConfigError, match="no adapter"):
        MotionCharacterPipeline.from_pretrained(run_dir / "logs")


def test_same_seed_same_video_other_seed_or_intensity_another(pipe, reference):
    a, b = sample(pipe, reference).frames, sample(pipe, reference).frames
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, sample(pipe, reference, seed=1).frames)
    low, high = (sample(pipe, reference, intensity=v, output_type="pt").frames for v in (0.0, 20.0))
    assert (low - high).abs().max() > 1e-3


def reference_loop(model, c, cond, num_frames, size, steps, guidance_scale, seed):
    """The DDIM + CFG loop written out (validation.sample_clips before it shared the pipeline's ``denoise``)."""
    from diffusers import DDIMScheduler

    from human_motion.model.components import decode_latents, encode_text
    from human_motion.model.conditioning import unconditional

    scheduler = DDIMScheduler.from_config(c.noise_scheduler.config)
    scheduler.set_timesteps(steps)
    gen = torch.Generator().manual_seed(seed)
    latents = torch.randn((1, 4, num_frames, size // 2, size // 2), generator=gen) * scheduler.init_noise_sigma
    empty = encode_text(c.tokenizer, c.text_encoder, [""], c.tokenizer.model_max_length)
    uncond = unconditional(cond, empty)
    both = {k: torch.cat([uncond[k], cond[k]]) for k in cond}
    for t in scheduler.timesteps:
        pred_uncond, pred_cond = model(torch.cat([latents] * 2), t.expand(2), **both).chunk(2)
        latents = scheduler.step(pred_uncond + guidance_scale * (pred_cond - pred_uncond), t, latents).prev_sample
    return ((decode_latents(c.vae, latents).float() + 1) / 2).clamp(0, 1)


def test_same_maths_as_the_validation_sampler(pipe, reference):
    """The pipeline's DDIM + CFG loop is ``validation.sample_clips`` (and the loop written out) on the same
    conditions and noise."""
    from human_motion.model.components import Components
    from human_motion.model.conditioning import MotionCharacterModel
    from human_motion.model.validation import sample_clips

    ours = sample(pipe, reference, guidance_scale=4.0, output_type="pt").frames  # (f, 3, H, W)
    cond = pipe.encode_conditions(reference, "a man in a space suit", "smiling", 5.0, "cpu", torch.float32)
    c = Components(pipe.unet, pipe.adapter, pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.image_encoder,
                   pipe.scheduler)
    model = MotionCharacterModel(pipe.unet, pipe.adapter)
    theirs = sample_clips(model, c, cond, 4, 32, 3, 4.0, seed=0)[0]
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours, reference_loop(model, c, cond, 4, 32, 3, 4.0, seed=0)[0], rtol=0, atol=1e-6)


def test_reference_face_found_aligned_and_embedded_like_the_build(reference):
    x0, y0, x1, y1 = reference.box
    assert 150 < (x0 + x1) / 2 < 260 and 60 < (y0 + y1) / 2 < 170  # the astronaut's face
    assert reference.embedding.shape == (128,) and abs(np.linalg.norm(reference.embedding) - 1) < 1e-4
    assert reference.aligned.shape == (256, 256, 3)


def test_no_face_and_several_faces_are_clear_errors(pipe):
    with pytest.raises(ReferenceFaceError, match="no face found") as e:
        pipe(reference_image=coffee(), prompt="", action="smiling", intensity=1.0, num_inference_steps=1)
    assert e.value.reason == "no_face"
    with pytest.raises(ReferenceFaceError, match="several faces") as e:
        pipe.prepare_reference(group_photo())
    assert e.value.reason == "several_faces"
    unchecked = pipe.prepare_reference(coffee(), face_check=False)  # an image taken as an aligned crop as is
    assert unchecked.box is None and unchecked.embedding.shape == (128,)


def test_bf16_on_request(run_dir, reference):
    p = MotionCharacterPipeline.from_pretrained(run_dir, torch_dtype=torch.bfloat16)
    p.set_progress_bar_config(disable=True)
    assert p.dtype == torch.bfloat16
    frames = sample(p, reference, num_inference_steps=2).frames
    assert frames.shape == (4, 32, 32, 3) and frames.dtype == np.uint8


def test_arcface_checkpoints_embed_the_reference_with_insightface(tmp_path):
    """An ``arcface`` run's reference goes through the build's insightface embedder (a pack exported by the test)."""
    from human_motion.model.sampling import ReferenceFaces
    from tests.backends.test_insightface import TinyArcface, export

    folder = tmp_path / "models" / "tiny"
    folder.mkdir(parents=True)
    export(TinyArcface(), folder / "rec_tiny.onnx", (1, 3, 112, 112), 1, True)
    faces = ReferenceFaces("arcface", insightface_root=str(tmp_path), overrides=["faces.insightface_pack=tiny"])
    ref = faces(astronaut())
    assert ref.embedding.shape == (512,) and abs(np.linalg.norm(ref.embedding) - 1) < 1e-4
    with pytest.raises(ReferenceFaceError, match="several faces"):
        faces(group_photo())


def test_a_trained_unet_folder_replaces_the_base_unet(run_dir, tmp_path):
    """Runs with ``model.train_unet`` save ``unet/`` (no adapter processors) beside ``adapter/``; it is loaded."""
    import shutil

    from safetensors.torch import save_file

    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    base = MotionCharacterPipeline.from_pretrained(run)
    state = {k: v + 0.5 for k, v in base.unet.state_dict().items() if ".processor." not in k}
    (run / "unet").mkdir()
    save_file(state, str(run / "unet" / "diffusion_pytorch_model.safetensors"))
    trained = MotionCharacterPipeline.from_pretrained(run)
    name = "conv_in.weight"
    torch.testing.assert_close(trained.unet.state_dict()[name], state[name])
    # A run that started from another run's UNet (model.unet) and trained it further: its own unet/ is what it
    # trained, not the start (loading the start instead made every fine-tuned run look like where it began).
    from human_motion.model.components import save_unet

    save_unet(base.unet, tmp_path / "start")
    config = json.loads((run / "config.json").read_text())
    config["model"]["unet"] = str(tmp_path / "start")
    (run / "config.json").write_text(json.dumps(config))
    continued = MotionCharacterPipeline.from_pretrained(run)
    torch.testing.assert_close(continued.unet.state_dict()[name], state[name])
    save_file({name: state[name]}, str(run / "unet" / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(ConfigError, match="do not match"):
        MotionCharacterPipeline.from_pretrained(run)


def test_model_cpu_offload_hooks_give_the_same_video(run_dir, reference):
    """diffusers' model CPU offload with the adapter kept out of the chain (its ID projector and intensity MLP run
    outside the UNet's forward); exercised here with the CPU as the execution device."""
    p = MotionCharacterPipeline.from_pretrained(run_dir)
    p.set_progress_bar_config(disable=True)
    before = sample(p, reference).frames
    p.enable_model_cpu_offload(device="cpu")
    assert p._execution_device.type == "cpu" and len(p._all_hooks) == 4  # text, image, unet, vae
    np.testing.assert_array_equal(sample(p, reference).frames, before)
    np.testing.assert_array_equal(sample(p, reference).frames, before)


def test_samples_with_the_noise_prior_the_run_was_trained_with(pipe, reference, monkeypatch):
    """model.noise_frame_correlation of the run's config shapes the initial noise (model/noise.py)."""
    import human_motion.model.sampling as sampling

    seen = []
    real = sampling.denoise

    def spy(model, scheduler, cond, uncond, noise, *args, **kwargs):
        seen.append(noise.clone())
        return real(model, scheduler, cond, uncond, noise, *args, **kwargs)

    monkeypatch.setattr(sampling, "denoise", spy)
    before = pipe.config.noise_frame_correlation  # from the run's model.noise_frame_correlation
    try:
        for rho in (0.0, 0.9):
            pipe.register_to_config(noise_frame_correlation=rho)
            sample(pipe, reference, num_frames=8, num_inference_steps=1)
    finally:
        pipe.register_to_config(noise_frame_correlation=before)
    independent, shared = seen
    corr = [torch.corrcoef(torch.stack([n[:, :, 0].flatten(), n[:, :, 7].flatten()]))[0, 1].item() for n in seen]
    assert abs(corr[0]) < 0.2 and corr[1] > 0.7
    # The per-frame part is the same draw as with rho 0, plus one common part: recovered from frame 0, it gives all.
    common = (shared[:, :, :1] - 0.1**0.5 * independent[:, :, :1]) / 0.9**0.5
    torch.testing.assert_close(shared, 0.9**0.5 * common + 0.1**0.5 * independent)


def test_samples_with_the_noise_schedule_the_run_was_trained_with(run_dir, tmp_path):
    """model.zero_terminal_snr and model.prediction_type of the run's config reach the sampler."""
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    config = json.loads((run / "config.json").read_text())
    assert MotionCharacterPipeline.from_pretrained(run).scheduler.alphas_cumprod[-1] > 1e-3
    config["model"].update(zero_terminal_snr=True, prediction_type="v_prediction")
    (run / "config.json").write_text(json.dumps(config))
    scheduler = MotionCharacterPipeline.from_pretrained(run).scheduler
    assert scheduler.alphas_cumprod[-1] < 1e-6 and scheduler.config.prediction_type == "v_prediction"
