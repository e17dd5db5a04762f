"""Fixtures of the ``hm eval`` tests: real face photos shipped by packages, videos whose motion the test controls,
and a tiny CLIP saved to a folder (loaded through the same ``from_pretrained`` path as real weights)."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

ASTRONAUT_FACE = (0.44, 0.255, 0.195)  # face centre x, y and side as fractions (sources/demo.py)


@pytest.fixture(autouse=True, scope="session")
def _threads():
    import torch

    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    import skimage.data

    return skimage.data.astronaut()  # 512x512 RGB, a real face (public domain)


def pan_video(image: np.ndarray, px_per_frame: float, num_frames: int = 16) -> np.ndarray:
    """Frames (num_frames, 512, 512, 3) of the framed photo panning ``px_per_frame`` pixels per frame (bouncing)."""
    from human_motion.sources.demo import render

    return render(image, ASTRONAUT_FACE, "pan", px_per_frame)[::2][:num_frames]


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> pathlib.Path:
    """A tiny random CLIP (model + processor with a character-level tokenizer) saved to a folder."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from human_motion.model.tiny import TINY_IMAGE_SIZE, tiny_text_config, tiny_vision_config, write_tiny_tokenizer

    path = tmp_path_factory.mktemp("tiny_clip")
    tokenizer = write_tiny_tokenizer(path)
    torch.manual_seed(0)
    config = CLIPConfig(text_config=tiny_text_config(len(tokenizer)), vision_config=tiny_vision_config(),
                        projection_dim=16)
    CLIPModel(config).save_pretrained(path)
    image_processor = CLIPImageProcessor(size={"shortest_edge": TINY_IMAGE_SIZE},
                                         crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path
