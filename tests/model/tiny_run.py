"""One tiny checkpoint saved by `hm train` per test session, shared by the sampling, generate and demo tests, and
the real reference photos they use (one face, several faces, no face)."""

from __future__ import annotations

import pathlib

import numpy as np

_RUN: dict[str, pathlib.Path] = {}

# 3 steps at lr 1e-2 on synthetic data: enough for the intensity branch (zero-initialised values) to move the output.
TRAIN_SETS = ["data.dataset_type=synthetic", "train.max_train_steps=3", "train.checkpointing_steps=3",
              "optim.learning_rate=1e-2", "validation.num_samples=0", "validation.fixed_batch_loss=false"]


def tiny_run(tmp_path_factory) -> pathlib.Path:
    """runs/x of `hm train --config train_tiny` (32x32, 4 frames, dlib identity embeddings), made once."""
    if "run" not in _RUN:
        from accelerate.state import AcceleratorState

        from human_motion.cli import main

        out = tmp_path_factory.mktemp("tiny_run") / "run"
        assert main(["train", "--config", "train_tiny", "--out", str(out),
                     *[a for s in TRAIN_SETS for a in ("--set", s)]]) == 0
        AcceleratorState._reset_state(reset_partial_state=True)
        _RUN["run"] = out
    return _RUN["run"]


def astronaut() -> np.ndarray:
    """One face (skimage's astronaut photo, 512x512 RGB)."""
    import skimage.data

    return skimage.data.astronaut()


def coffee() -> np.ndarray:
    """No face (a cup of coffee)."""
    import skimage.data

    return skimage.data.coffee()


def group_photo() -> np.ndarray:
    """Several faces: insightface's sample group photo t1.jpg."""
    from human_motion.media import package_file, read_image

    return read_image(str(package_file("insightface", "data", "images", "t1.jpg")))  # importing insightface is slow
