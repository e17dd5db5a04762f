"""Encode: the last stage. Turns an accepted row into the members of one WebDataset sample (schema.py): the
window as H.264 MP4 and the ``json`` member. A static (image) sample is stored the same way, its one frame repeated
for the whole window, as the paper trains on still images ("zero-intensity calibration"); the JSON and the index
mark it ``static``. So every sample has the same members, and any WebDataset loader reads the shards as they are.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from human_motion import __version__
from human_motion.media import encode_mp4
from human_motion.schema import SCHEMA_VERSION, SCORE_COLUMNS
from human_motion.stages.base import RowView, Stage, StageResources
from human_motion.types import dumps


@dataclasses.dataclass(frozen=True)
class EncodeConfig(StageResources):
    crf: int = 18  # H.264 quality of the stored windows
    # x264 preset, by measurement at 16 frames of 512x512 (benchmarks/README.md): superfast takes 55% of veryfast's
    # time for 18% more bytes; medium is 2.5x veryfast's time and no smaller.
    preset: str = "superfast"


# The sample JSON, field by field, from the row's fields (schema.SAMPLE_FIELDS documents each).
JSON_FIELDS = ("key", "source", "clip_id", "window", "static", "media_path", "span_s", "fps", "num_frames", "crop",
               "description", "action", "caption", "intensity", "intensity_per_step", "intensity_units",
               "id_embedding", "labels", "media")


class Encode(Stage):
    name = "encode"
    Config = EncodeConfig
    reads = JSON_FIELDS + ("frames", "faces", "landmarks")
    members = ("mp4", "json")

    def process(self, row: RowView) -> list[RowView]:
        frames = row["frames"]
        if row["static"]:
            frames = np.repeat(frames[:1], row["num_frames"], axis=0)
        row.backend("encode", f"libx264 crf{self.cfg.crf} {self.cfg.preset}")
        row.member("mp4", encode_mp4(frames, row["fps"], self.cfg.crf, self.cfg.preset, still=bool(row["static"])))
        row.member("json", dumps(sample_json(row, int(frames.shape[1]))).encode("utf-8"))
        row.row.frames = None  # the bytes are all that travels on
        return [row]


def sample_json(row: RowView, size_px: int) -> dict:
    """The json member. Its layout is the same for every sample of every source, so that loaders which infer a
    schema from the first samples they see (Hugging Face ``datasets``) keep every field of every sample: values a
    source shapes freely (its labels, the captioner's feature summary, per-frame expression features) are JSON
    text, and every score, candidate and header field is always present."""
    record = row.row.record
    static = bool(row["static"])
    faces = {k: v for k, v in row["faces"].items() if k != "kps5_detector"}
    landmarks = dict(row.get("landmarks") or {"landmarks5": [], "features": [], "reference_frame": 0})
    landmarks["features"] = _text(landmarks.get("features", []))
    faces.update(landmarks)
    if static:  # one image stored as a still video: its per-frame values hold for every frame
        n = int(row["num_frames"])
        faces = {k: v * n if isinstance(v, list) and len(v) == 1 else v for k, v in faces.items()}
    caption = dict(row.get("caption") or {})
    candidates = caption.get("candidates") or {}
    scores = {name: record.get("scores", {}).get(name) for name in SCORE_COLUMNS}
    if static:
        scores["face_flow_px"] = 0.0  # a still image does not move
    media = dict(row.get("media") or {})
    out = {"schema_version": SCHEMA_VERSION}
    for name in JSON_FIELDS:
        out[name] = row.get(name)
    out.update(
        window=int(out["window"]), static=static, fps=float(out["fps"]), num_frames=int(out["num_frames"]),
        size_px=size_px, description=out["description"] or "", action=out["action"] or "",
        caption={"backend": caption.get("backend", ""),
                 "candidates": {k: candidates.get(k) or "" for k in ("landmarks", "source", "model")},
                 "features": _text(caption.get("features", {})), "attempts": int(caption.get("attempts", 0)),
                 "raw": str(caption.get("raw", ""))},
        intensity=float(out["intensity"] or 0.0), intensity_per_step=out["intensity_per_step"] or [],
        intensity_units=out["intensity_units"] or {}, id_embedding=out["id_embedding"] or {},
        labels=_text(out["labels"] or {}), faces=faces, scores=scores,
        media={"kind": media.get("kind", ""), "width": int(media.get("width", 0)),
               "height": int(media.get("height", 0)), "fps": float(media.get("fps") or 0.0),
               "duration_s": float(media.get("duration_s") or 0.0), "codec": str(media.get("codec", "")),
               "orientation": media.get("orientation") or {"rotation_deg": 0, "mirrored": False}},
        backends=dict(record.get("backends", {}), human_motion=__version__),
    )
    return out


def _text(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def parse_sample_json(data: bytes) -> dict:
    return json.loads(data.decode("utf-8"))
