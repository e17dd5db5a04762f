"""Fixtures for the model tests: no hub access, tiny models, a few threads (the CPU is shared)."""

from __future__ import annotations

import pytest
import torch

from human_motion.model.config import ModelConfig


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="module")
def _threads():
    # One intra-op thread: on a CPU shared with other jobs, two OpenMP threads wait on each other and tiny models
    # run 10-20x slower; results are also bitwise reproducible only at a fixed thread count.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)  # tests outside tests/model keep their own setting


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """The tiny `hm train` run (trained once per session; tests/model/tiny_run.py)."""
    from .tiny_run import tiny_run

    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def pipe(run_dir):
    """The tiny run's pipeline, loaded once per test module."""
    from human_motion.model.sampling import MotionCharacterPipeline

    torch.set_num_threads(1)
    p = MotionCharacterPipeline.from_pretrained(run_dir)
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def reference(pipe):
    """The prepared reference of one face photo (skimage's astronaut)."""
    from .tiny_run import astronaut

    return pipe.prepare_reference(astronaut())


def tiny_model_config(**overrides) -> ModelConfig:
    values = dict(
        pretrained_model_name_or_path="tiny", motion_adapter="", image_encoder="", id_embedding_kind="dlib",
        id_embedding_dim=128, projector_width=32, projector_heads=4, intensity_hidden_dim=32, num_action_tokens=6,
    )
    values.update(overrides)
    return ModelConfig(**values)


@pytest.fixture
def tiny_components(tmp_path):
    from human_motion.model.components import load_components

    return load_components(tiny_model_config(), tmp_path, seed=0)


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """accelerate keeps one process-wide state; each `hm train` in this process may ask for another precision."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
