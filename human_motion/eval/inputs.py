"""The evaluation set: which reference, prompt, action and asked intensity belong to each video, and video reading.

``prompts.jsonl`` has one row per video::

    {"video": "a__p000__i5.mp4", "ref": "a.jpg", "prompt": "a woman ...", "action": "smiling", "intensity": 5}

``video`` is relative to VIDEOS_DIR and ``ref`` to --refs (absolute paths work too). ``ref``, ``prompt``, ``action``
and ``intensity`` are optional: a metric that needs a missing field is not computed for that video (recorded in its
row), the others are. Videos in VIDEOS_DIR without a row are listed as ``unlisted`` and not scored.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib

import numpy as np

from human_motion.config import ConfigError
from human_motion.media import (
    REFERENCE_MAX_SIDE_PX, VIDEO_EXTENSIONS, MediaError, open_video, probe_video, read_reference_image,
)



@dataclasses.dataclass
class EvalItem:
    video: str  # as written in prompts.jsonl (the row's id in the outputs)
    video_path: pathlib.Path
    ref_path: pathlib.Path | None = None
    prompt: str | None = None
    action: str | None = None
    intensity: float | None = None  # the asked intensity (pixels per step at 512 px)
    extra: dict = dataclasses.field(default_factory=dict)  # other fields of the row (seed, ...), kept in the output


def read_eval_set(prompts_jsonl: str | pathlib.Path, videos_dir: str | pathlib.Path,
                  refs_dir: str | pathlib.Path | None) -> tuple[list[EvalItem], list[str]]:
    """The rows of ``prompts_jsonl`` as items, and the names of videos in ``videos_dir`` that no row lists."""
    path = pathlib.Path(prompts_jsonl)
    if not path.is_file():
        raise ConfigError(f"--prompts {str(path)!r} does not exist")
    videos_dir = pathlib.Path(videos_dir)
    if not videos_dir.is_dir():
        raise ConfigError(f"videos folder {str(videos_dir)!r} does not exist")
    refs = pathlib.Path(refs_dir) if refs_dir else None
    items, seen = [], set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path.name} line {n}: not JSON ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("video"), str):
            raise ConfigError(f"{path.name} line {n}: each row needs a \"video\" name")
        if row["video"] in seen:
            raise ConfigError(f"{path.name} line {n}: video {row['video']!r} is listed twice")
        seen.add(row["video"])
        ref = row.get("ref")
        if ref is not None and refs is None and not pathlib.Path(ref).is_absolute():
            raise ConfigError(f"{path.name} line {n}: a relative \"ref\" needs --refs")
        intensity = row.get("intensity")
        if intensity is not None:
            try:
                intensity = float(intensity)
            except (TypeError, ValueError):
                raise ConfigError(f"{path.name} line {n}: intensity must be a number, got {intensity!r}") from None
            if not math.isfinite(intensity):
                raise ConfigError(f"{path.name} line {n}: intensity must be finite")
        extra = {k: v for k, v in row.items() if k not in ("video", "ref", "prompt", "action", "intensity")}
        items.append(EvalItem(
            video=row["video"], video_path=videos_dir / row["video"],
            ref_path=(refs / ref if refs is not None else pathlib.Path(ref)) if ref is not None else None,
            prompt=row.get("prompt"), action=row.get("action"), intensity=intensity, extra=extra,
        ))
    if not items:  # before any model loads (CLIP, RAFT, DOVER: downloads on a first run)
        raise ConfigError(f"{path}: no rows; write one JSON object per line: video, ref, prompt, action, intensity")
    listed = {i.video_path.resolve() for i in items}
    unlisted = sorted(p.name for p in videos_dir.iterdir()
                      if p.suffix.lower() in VIDEO_EXTENSIONS and p.resolve() not in listed)
    return items, unlisted


def read_video(path: str | pathlib.Path) -> tuple[np.ndarray, float]:
    """Every frame of a video, (t, h, w, 3) uint8 RGB, and its frame rate (raises MediaError)."""
    import av

    with open_video(str(path)) as container:
        info = probe_video(container)
        try:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        except av.error.FFmpegError as e:
            raise MediaError("decode_failed", str(e)) from None
    if not frames:
        raise MediaError("decode_failed", "no frames")
    return np.stack(frames), info.fps


def load_reference(path: str | pathlib.Path) -> np.ndarray:
    """A reference image as RGB uint8, at most ``REFERENCE_MAX_SIDE_PX`` on its longer side: full-size stock photos
    (Unsplash originals) are accepted; the face crop the metrics take from it is far smaller."""
    return read_reference_image(str(path), REFERENCE_MAX_SIDE_PX)
