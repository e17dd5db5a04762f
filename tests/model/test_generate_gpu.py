"""fp16 sampling on a GPU, with and without model CPU offload, placed by ``load_pipeline`` as ``hm generate`` places
it. Runs only where CUDA is (``pytest -m gpu``, as ``benchmarks/gpu_check.py`` calls it). The module needs neither
PyAV nor dlib, which the lent GPU machine's image lacks: the pipeline is a tiny one built from configs and saved with
``save_pretrained``, and the reference face is given rather than detected."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def saved_pipeline(tmp_path_factory) -> str:
    """A save_pretrained folder of the tiny MotionCharacter pipeline (random weights, train_tiny's shapes)."""
    from human_motion.config import load_config, resolve_config_path, to_dict
    from human_motion.model.components import load_components
    from human_motion.model.config import TrainConfig
    from human_motion.model.pipeline_loading import settings_from_run
    from human_motion.model.sampling import MotionCharacterPipeline

    cfg = load_config(TrainConfig, resolve_config_path("train_tiny"), ["data.dataset_type=synthetic"])
    work = tmp_path_factory.mktemp("tiny_pipeline")
    c = load_components(cfg.model, work / "parts", cfg.train.seed)
    pipe = MotionCharacterPipeline(c.vae, c.text_encoder, c.tokenizer, c.image_encoder, c.unet, c.adapter,
                                   c.noise_scheduler, **settings_from_run(to_dict(cfg), cfg))
    pipe.save_pretrained(work / "saved")
    return str(work / "saved")


def given_reference(dim: int):
    """A reference face as ``prepare_reference`` returns one, without a detector: a fixed crop and unit embedding."""
    from human_motion.model.reference import ReferenceFace

    rng = np.random.default_rng(0)
    embedding = rng.standard_normal(dim).astype(np.float32)
    return ReferenceFace(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8), embedding / np.linalg.norm(embedding),
                         None, 1)


@pytest.mark.gpu
def test_fp16_and_model_cpu_offload_on_a_gpu(saved_pipeline):
    """fp16 on the GPU, and model CPU offload giving the same frames (up to fp16 noise)."""
    import torch

    from human_motion.model.generate import load_pipeline
    from human_motion.model.sampling import frames_to_uint8

    frames = {}
    for offload in (False, True):
        pipe = load_pipeline(saved_pipeline, "cuda", "fp16", cpu_offload=offload)
        pipe.set_progress_bar_config(disable=True)
        assert pipe.dtype == torch.float16
        ref = given_reference(pipe.adapter.config.id_dim)
        out = pipe(reference_face=ref, prompt="a man", action="smiling", intensity=5.0, height=64, width=64,
                   num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np")
        frames[offload] = frames_to_uint8(out.frames[0])
        assert frames[offload].shape == (4, 64, 64, 3)
        assert frames[offload].std() > 0  # fp16 overflow would give one flat colour (NaNs clipped)
    assert np.abs(frames[True].astype(int) - frames[False]).max() <= 2


def test_the_tiny_pipeline_round_trips_and_samples_on_the_cpu(saved_pipeline):
    """What the GPU test relies on, checked everywhere: the saved folder loads through ``load_pipeline`` and the
    given reference drives a sample of the asked shape."""
    import torch

    from human_motion.model.generate import load_pipeline
    from human_motion.model.sampling import frames_to_uint8

    pipe = load_pipeline(saved_pipeline, "cpu", "fp32")
    pipe.set_progress_bar_config(disable=True)
    out = pipe(reference_face=given_reference(pipe.adapter.config.id_dim), prompt="a man", action="smiling",
               intensity=5.0, height=32, width=32, num_inference_steps=2,
               generator=torch.Generator().manual_seed(0), output_type="np")
    assert frames_to_uint8(out.frames[0]).shape == (4, 32, 32, 3)
