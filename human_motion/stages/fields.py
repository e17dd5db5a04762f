"""Every field a row can carry between the stages: name -> (type, meaning).

A stage declares which of these it reads and writes (``Stage.reads`` / ``Stage.writes``), which scores it adds
(``Stage.scores``) and which shard members it makes (``Stage.members``); ``stages/base.py`` holds it to that while
the build runs, and ``stages/dataflow.py`` checks before the first clip that every field a step reads was written by
an earlier one. This file is therefore the whole vocabulary of the dataflow; the sample JSON (``schema.py``) is made
from it by the encode stage.
"""

from __future__ import annotations

import numpy as np

# Set by the build's planner from the clip spec, before any stage runs.
INPUT_FIELDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "spec": (str, "the clip spec as JSON (sources/: path, span, face-box hint, labels, a source's rejection)"),
    "source": (str, "source adapter name"),
    "clip_id": (str, "clip id inside the source"),
    "media_path": (str, "path of the source media, as the source gave it"),
    "static": (bool, "an image sample (one frame, intensity 0)"),
    "labels": (dict, "the source's own labels (attributes, texts)"),
    "window": (int, "window index inside the clip; -1 until decode splits the clip"),
}

STAGE_FIELDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    # probe
    "media": (dict, "header facts read without decoding: kind, width, height (as displayed), fps, duration_s, "
                    "orientation (rotation_deg clockwise, mirrored), codec"),
    "window_times_s": (list, "sample times of each window, in seconds of the source ([] for an image)"),
    # decode
    "key": (str, "sample key {source}__{clip}__w{window}, safe as a file name"),
    "span_s": (list, "[start, end] of the window in seconds of the source media"),
    "fps": (float, "sampling rate of the stored frames (an image is stored as a still video at this rate)"),
    "num_frames": (int, "frames in the stored sample (decode.num_frames; an image's one frame is repeated)"),
    "frames": (np.ndarray, "(t, size_px, size_px, 3) uint8 RGB: the square crop around the face track"),
    "detections": (list, "every detection per sampled frame: [x0, y0, x1, y1, score] in source pixels"),
    "crop": (dict, "source_box [x0, y0, x1, y1] in source pixels, source_size [w, h]"),
    "faces": (dict, "the main face per frame in stored-frame pixels: boxes, present, scores, kps5_detector"),
    # faces
    "landmarks": (dict, "landmarks5 per frame, expression/pose features per frame, reference_frame"),
    "id_embedding": (dict, "kind (arcface|dlib), backend, dim of arcface.npy"),
    # quality
    "quality": (dict, "frame_index used, text boxes in crop pixels"),
    # flow
    "intensity": (float, "motion intensity M (paper Eq. 7), pixels per step at size_px and fps"),
    "intensity_per_step": (list, "f_i,fg per step (Eq. 6)"),
    "intensity_units": (dict, "unit, flow backend, resolution_px, fps, work_px"),
    # caption
    "action": (str, "action phrase A"),
    "description": (str, "overall description P"),
    "caption": (dict, "backend, candidates (landmark phrase, source phrase, model phrase), features"),
}

FIELDS = {**INPUT_FIELDS, **STAGE_FIELDS}

# Bookkeeping the stage shell keeps on every row; no stage reads or writes them directly.
SHELL_FIELDS = ("status", "stage", "detail", "timings", "scores", "backends")


def check_value(name: str, value) -> None:
    """Raise TypeError when ``value`` is not of the declared type of field ``name``."""
    expected, _ = FIELDS[name]
    if name == "frames":
        if not (isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 4 and value.shape[-1] == 3):
            raise TypeError(f"field 'frames' must be a (t, h, w, 3) uint8 array, got {type(value).__name__} "
                            f"{getattr(value, 'shape', '')}")
        return
    if expected is float and isinstance(value, (int, np.integer, np.floating)) and not isinstance(value, bool):
        return
    if not isinstance(value, expected):
        raise TypeError(f"field {name!r} must be {getattr(expected, '__name__', expected)}, got {type(value).__name__}")
