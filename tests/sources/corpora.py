"""Tiny corpora for the source tests: real face photos moved around in small videos, written by the test.

The astronaut portrait (scikit-image, public domain) gives a real face the detectors find at 128-192 px.
"""

from __future__ import annotations

import functools
import pathlib

import cv2
import numpy as np

from human_motion.media import write_mp4

FPS = 4.0


@functools.lru_cache(maxsize=1)
def face_photo() -> np.ndarray:
    """The astronaut's head and shoulders (RGB), face roughly centred."""
    import skimage.data

    img = skimage.data.astronaut()
    return np.ascontiguousarray(img[20:260, 110:350])  # face box ~x 0.34-0.54, y 0.15-0.35 of 512


def face_frames(width: int, height: int, seconds: float, box: tuple[float, float, float, float],
                fps: float = FPS, pan_px: float = 1.0) -> np.ndarray:
    """Frames (t, h, w, 3) with the face photo pasted into ``box`` (normalised x0, y0, x1, y1), panning slowly."""
    photo = face_photo()
    n = int(round(seconds * fps))
    x0, y0, x1, y1 = box
    bw, bh = int((x1 - x0) * width), int((y1 - y0) * height)
    patch = cv2.resize(photo, (bw, bh), interpolation=cv2.INTER_AREA)
    frames = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        frame = np.full((height, width, 3), 90, np.uint8)
        dx = int(round(pan_px * ((i % 6) - 3)))
        px, py = int(x0 * width) + dx, int(y0 * height)
        px = min(max(px, 0), width - bw)
        frame[py:py + bh, px:px + bw] = patch
        frames[i] = frame
    return frames


def write_face_video(path: pathlib.Path, width: int = 160, height: int = 160, seconds: float = 2.0,
                     box: tuple[float, float, float, float] = (0.1, 0.05, 0.9, 0.95)) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(str(path), face_frames(width, height, seconds, box), FPS)
    return path


def write_face_image(path: pathlib.Path, side: int = 160) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = face_frames(side, side, 1 / FPS, (0.1, 0.05, 0.9, 0.95))[0]
    cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return path


# Small, fast builds: 4 frames per window (1 s at 4 fps), 128 px crops, thresholds for 160 px test media.
FAST_SETS = {
    "decode.num_frames": 4, "decode.size_px": 128, "decode.max_windows_per_clip": 1,
    "select.min_source_side_px": 64, "select.min_face_side_px": 24, "sink.clips_per_shard": 50,
}


def fast_config(sources: dict, **sets):
    from human_motion.config import load_config
    from human_motion.engine.config import BuildConfig

    base = {"sources": sources, "ray": {"address": "local", "progress": False}}
    merged = dict(FAST_SETS, **sets)
    return load_config(BuildConfig, None, [f"{k}={v}" for k, v in merged.items()], base=base)


def read_samples(out: pathlib.Path) -> dict[str, dict]:
    """clip id -> the ``json`` member of its first window, from every shard of a build."""
    import tarfile

    from human_motion.schema import load_sample_json

    samples = {}
    for tar_path in sorted(out.glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    sample = load_sample_json(tar.extractfile(member).read())
                    samples.setdefault(sample["clip_id"], sample)
    return samples


def read_rejects(out: pathlib.Path) -> dict[str, str]:
    """clip id -> rejection reason."""
    import pyarrow.parquet as pq

    table = pq.read_table(out / "rejects.parquet").to_pylist()
    return {r["clip_id"]: r["reason"] for r in table}


def center_inside(box_norm, crop_px, size) -> bool:
    """Whether the centre of a normalised box lies inside a crop given in source pixels."""
    w, h = size
    cx, cy = (box_norm[0] + box_norm[2]) / 2 * w, (box_norm[1] + box_norm[3]) / 2 * h
    x0, y0, x1, y1 = crop_px
    return x0 <= cx <= x1 and y0 <= cy <= y1
