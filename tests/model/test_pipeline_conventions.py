"""``MotionCharacterPipeline`` in diffusers' conventions, on the tiny checkpoint of `hm train`: a save_pretrained
folder that ``DiffusionPipeline`` loads, the same frames for the same seed after the round trip, AnimateDiff's
output types with their batch dimension, batches of intensities in one call, and one-line refusals of bad inputs and
damaged or pickled weights."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from human_motion.config import ConfigError
from human_motion.model.sampling import MotionCharacterPipeline, frames_to_uint8

from .tiny_run import astronaut


@pytest.fixture(scope="module")
def saved(pipe, tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "pipe"
    pipe.save_pretrained(folder)
    return folder


def call(pipe, reference, seed=0, **kw):
    kw = {"prompt": "a man in a space suit", "action": "smiling", "intensity": 5.0, "num_inference_steps": 2,
          "output_type": "np", **kw}
    return pipe(reference_face=reference, generator=torch.Generator().manual_seed(seed), **kw)


def loaded(path, **kw):
    p = MotionCharacterPipeline.from_pretrained(path, **kw)
    p.set_progress_bar_config(disable=True)
    return p


# ------------------------------------------------------------------------------------------ save_pretrained
def test_save_pretrained_writes_a_standard_diffusers_folder(saved):
    index = json.loads((saved / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline", "MotionCharacterPipeline"]  # diffusers' custom-pipeline form
    assert index["unet"] == ["diffusers", "UNetMotionModel"] and index["scheduler"] == ["diffusers", "DDIMScheduler"]
    assert index["adapter"] == ["human_motion.model.adapter", "MotionCharacterAdapter"]
    assert (index["num_frames"], index["resolution"], index["id_embedding_kind"]) == (4, 32, "dlib")
    for name in ("vae", "unet", "adapter"):
        assert (saved / name / "diffusion_pytorch_model.safetensors").is_file()
    for name in ("text_encoder", "image_encoder"):
        assert (saved / name / "model.safetensors").is_file()
    assert not list(saved.rglob("*.bin")) and (saved / "tokenizer").is_dir()
    from safetensors import safe_open

    with safe_open(str(saved / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if ".processor." in k]  # noqa: SIM118 - safe_open is not iterable  # the adapter's weights live in adapter/ only


def test_same_frames_for_the_same_seed_after_save_and_load(pipe, reference, saved):
    from diffusers import DiffusionPipeline

    before = call(pipe, reference).frames
    ours = loaded(saved)
    np.testing.assert_array_equal(call(ours, reference).frames, before)
    theirs = DiffusionPipeline.from_pretrained(saved, trust_remote_code=True)  # what a diffusers user types
    assert type(theirs) is MotionCharacterPipeline
    theirs.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(call(theirs, reference).frames, before)
    with pytest.raises(ValueError, match="trust_remote_code"):
        DiffusionPipeline.from_pretrained(saved)  # diffusers asks before importing the folder's pipeline.py


def test_settings_and_adapter_scales_round_trip(pipe, saved, tmp_path):
    p = loaded(saved, face_detector="mediapipe", face_overrides=["faces.face_size_px=128"])
    assert p.config.face_detector == "mediapipe" and p.config.face_overrides == ["faces.face_size_px=128"]
    p.adapter.set_scales(id_scale=0.5, intensity_scale=0.0)
    p.save_pretrained(tmp_path / "again")
    q = loaded(tmp_path / "again")
    assert (q.config.face_detector, q.config.face_overrides) == ("mediapipe", ["faces.face_size_px=128"])
    assert (q.default_num_frames, q.default_size, q.face_size) == (pipe.default_num_frames, 32, 32)
    scales = {(proc.id_scale, proc.action_scale, proc.intensity_scale) for proc in q.adapter.processors.values()}
    assert scales == {(0.5, 1.0, 0.0)}
    assert q.prepare_reference(astronaut()).aligned.shape == (128, 128, 3)  # the saved hm build setting applies
    assert loaded(tmp_path / "again", face_detector=None).config.face_detector == "mediapipe"  # None: not given


def test_a_foreign_pipeline_file_is_never_run(saved, tmp_path):
    folder = tmp_path / "pipe"
    shutil.copytree(saved, folder)
    marker = tmp_path / "ran"
    (folder / "pipeline.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    with pytest.raises(ConfigError, match="not the file MotionCharacterPipeline.save_pretrained writes"):
        MotionCharacterPipeline.from_pretrained(folder)
    assert not marker.exists()
    (folder / "pipeline.py").unlink()  # without it the weights still load through this class
    assert loaded(folder).default_size == 32


def test_sampling_defaults_follow_the_run_when_it_says_so(run_dir, pipe, tmp_path):
    assert (pipe.config.num_inference_steps, pipe.config.guidance_scale) == (2, 2.0)  # train_tiny's sampling
    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    config = json.loads((run / "config.json").read_text())
    config["sampling"] = {"num_inference_steps": None, "guidance_scale": None}  # a run that says nothing
    (run / "config.json").write_text(json.dumps(config))
    assert (loaded(run).config.num_inference_steps, loaded(run).config.guidance_scale) == (30, 8.0)  # the paper's
    config["sampling"] = {"num_inference_steps": 2, "guidance_scale": 3.0}
    (run / "config.json").write_text(json.dumps(config))
    p = loaded(run)
    assert (p.config.num_inference_steps, p.config.guidance_scale) == (2, 3.0)
    p.save_pretrained(tmp_path / "saved")
    assert loaded(tmp_path / "saved").config.num_inference_steps == 2


# ------------------------------------------------------------------------------------------ outputs and batches
def test_output_types_have_a_batch_dimension_like_animatediff(pipe, reference, tmp_path):
    from diffusers.utils import export_to_gif

    pil = call(pipe, reference, output_type="pil").frames
    assert len(pil) == 1 and len(pil[0]) == 4 and isinstance(pil[0][0], Image.Image) and pil[0][0].size == (32, 32)
    np_frames = call(pipe, reference, output_type="np").frames
    assert np_frames.shape == (1, 4, 32, 32, 3) and np_frames.dtype == np.float32
    assert np_frames.min() >= 0 and np_frames.max() <= 1
    pt = call(pipe, reference, output_type="pt").frames
    assert isinstance(pt, torch.Tensor) and pt.shape == (1, 4, 3, 32, 32)
    latent = call(pipe, reference, output_type="latent").frames
    assert latent.shape == (1, 4, 4, 16, 16)  # (b, c, f, h, w): the tiny VAE halves the side
    np.testing.assert_array_equal(frames_to_uint8(pil[0]), frames_to_uint8(np_frames[0]))  # same rounding
    np.testing.assert_array_equal(frames_to_uint8(pt[0]), frames_to_uint8(np_frames[0]))
    assert pipe(reference_face=reference, action="smiling", num_inference_steps=1).frames[0][0].mode == "RGB"
    with Image.open(export_to_gif(pil[0], str(tmp_path / "v.gif"), fps=4)) as gif:
        assert gif.n_frames == 4
    with pytest.raises(ValueError, match="output_type must be one of"):
        call(pipe, reference, output_type="mp4")


def test_a_list_of_intensities_is_one_batch(pipe, reference, monkeypatch):
    import human_motion.model.sampling as sampling

    calls = []
    real = sampling.denoise
    monkeypatch.setattr(sampling, "denoise", lambda *a, **k: calls.append(a[4].shape) or real(*a, **k))
    gens = [torch.Generator().manual_seed(3) for _ in range(3)]
    out = pipe(reference_face=reference, prompt="a man", action="smiling", intensity=[0.0, 10.0, 20.0],
               num_inference_steps=2, generator=gens, output_type="latent").frames
    assert calls == [(3, 4, 4, 16, 16)] and out.shape[0] == 3  # one denoising loop for the three videos
    alone = [call(pipe, reference, seed=3, prompt="a man", intensity=v, output_type="latent").frames[0]
             for v in (0.0, 20.0)]
    # Batch-mates match single calls up to float rounding (kernels differ with the batch size).
    torch.testing.assert_close(out[0], alone[0], rtol=0, atol=1e-3)
    torch.testing.assert_close(out[2], alone[1], rtol=0, atol=1e-3)
    assert (out[0] - out[2]).abs().max() > 1e-2  # the same noise: only the intensity differs


def test_num_videos_per_prompt_and_lists_of_prompts(pipe, reference):
    out = call(pipe, reference, prompt=["a man", "a man in a park"], intensity=[2.0, 8.0], num_videos_per_prompt=2)
    assert out.frames.shape == (4, 4, 32, 32, 3)
    assert not np.array_equal(out.frames[0], out.frames[1])  # one generator: two draws of noise per entry
    with pytest.raises(ValueError, match="generators for 4 videos"):
        pipe(reference_face=reference, intensity=[1.0, 2.0], num_videos_per_prompt=2, num_inference_steps=1,
             generator=[torch.Generator()] * 3)


@pytest.mark.parametrize("bad, message", [
    ("5", "got '5' \\(str\\)"), ("abc", "number or a list of numbers"), (float("nan"), "finite number >= 0"),
    (-1.0, "finite number >= 0"), ([1.0, "a"], "got 'a'"), ([], "empty list"), ([[1.0, 2.0]], "got \\[1.0, 2.0\\]"),
    (True, "got True"), (None, "got None"), (torch.ones(2, 2), "1-D"),
])
def test_bad_intensities_are_one_line_value_errors(pipe, reference, bad, message):
    with pytest.raises(ValueError, match=message) as e:
        pipe(reference_face=reference, action="smiling", intensity=bad, num_inference_steps=1)
    assert "\n" not in str(e.value) and not isinstance(e.value, TypeError)


def test_list_lengths_must_agree(pipe, reference):
    with pytest.raises(ValueError, match="same length .*prompt 2, intensity 3"):
        pipe(reference_face=reference, prompt=["a", "b"], action="smiling", intensity=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="negative_prompt has 2 entries for 3 videos"):
        pipe(reference_face=reference, action="smiling", intensity=[1.0, 2.0, 3.0], negative_prompt=["x", "y"],
             num_inference_steps=1)
    with pytest.raises(ValueError, match="num_videos_per_prompt"):
        pipe(reference_face=reference, action="smiling", num_videos_per_prompt=0)


# ------------------------------------------------------------------------------------------ damaged checkpoints
def damaged_copy(source, tmp_path, case: str):
    folder = tmp_path / case
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    weights = folder / "adapter" / "diffusion_pytorch_model.safetensors"
    if case == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif case == "pickle":  # what torch.save writes where safetensors belong
        torch.save({"weight": torch.zeros(2)}, weights)
    elif case == "raw_pickle":
        weights.write_bytes(pickle.dumps({"weight": [0.0]}))
    else:  # only a pickled .bin beside the config
        weights.unlink()
        torch.save({"weight": torch.zeros(2)}, weights.with_suffix(".bin"))
    return folder, weights


@pytest.mark.parametrize("kind", ["run", "saved"])
@pytest.mark.parametrize("case, message", [
    ("truncated", "is not a complete safetensors file"), ("pickle", "is a pickle \\(torch.save\\), not safetensors"),
    ("raw_pickle", "is a pickle"), ("bin_only", "is missing: only safetensors weights are read"),
])
def test_damaged_or_pickled_weights_are_one_line_refusals(run_dir, saved, tmp_path, kind, case, message, monkeypatch):
    folder, weights = damaged_copy(run_dir if kind == "run" else saved, tmp_path, case)
    seen = []  # nothing may be unpickled, not even with torch.load(weights_only=True)
    for module, name in ((pickle, "loads"), (pickle, "load"), (torch, "load")):
        monkeypatch.setattr(module, name, lambda *a, _name=name, **k: seen.append(_name) or {})
    with pytest.raises(ConfigError, match=message) as e:
        MotionCharacterPipeline.from_pretrained(folder)
    assert str(weights) in str(e.value) and "\n" not in str(e.value) and not seen


def test_a_missing_folder_that_looks_like_a_hub_id_is_one_line_offline(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="checkpoint runs/mc does not exist .*HF_HUB_OFFLINE"):
        MotionCharacterPipeline.from_pretrained("runs/mc")


def test_push_to_hub_uploads_the_folder_diffusers_loads(pipe, reference, tmp_path, monkeypatch):
    """save_pretrained(push_to_hub=True): what is uploaded, as it is at the moment of the upload, is a folder that
    ``DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`` loads as this class, giving the same frames
    (the Hub itself is replaced by a stand-in that keeps a copy of each upload: no network here)."""
    import types

    import diffusers.pipelines.pipeline_utils as pipeline_utils
    from diffusers import DiffusionPipeline
    from huggingface_hub import ModelCard

    hub = tmp_path / "hub"

    def upload(folder, repo_id):
        shutil.copytree(folder, hub / repo_id)  # the folder may be a temporary one, gone after the call

    monkeypatch.setattr(pipeline_utils, "create_repo", lambda repo_id, **kw: types.SimpleNamespace(repo_id=repo_id))
    monkeypatch.setattr(pipeline_utils, "load_or_create_model_card", lambda *a, **k: ModelCard("---\n---\n"))
    monkeypatch.setattr(type(pipe), "_upload_folder", lambda self, folder, repo_id, **kw: upload(folder, repo_id))
    pipe.save_pretrained(tmp_path / "pipe", push_to_hub=True, repo_id="me/motion-character")
    assert [p.relative_to(hub).as_posix() for p in hub.glob("*/*")] == ["me/motion-character"]
    uploaded = hub / "me" / "motion-character"
    assert json.loads((uploaded / "model_index.json").read_text())["_class_name"] == [
        "pipeline", "MotionCharacterPipeline"]
    theirs = DiffusionPipeline.from_pretrained(uploaded, trust_remote_code=True)  # what a Hub user types
    assert type(theirs) is MotionCharacterPipeline
    theirs.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(call(theirs, reference).frames, call(pipe, reference).frames)
