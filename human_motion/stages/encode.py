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
from human_motion.schema import SCHEMA_VERSION
from human_motion.stages.base import RowView, Stage, StageResources
from human_motion.types import dumps


@dataclasses.dataclass(frozen=True)
class EncodeConfig(StageResources):
    crf: int = 18  # H.264 quality of the stored windows
    preset: str = "veryfast"  # x264 preset: at 16 frames of 512x512, 2.5x faster than medium and no larger


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
        row.member("mp4", encode_mp4(frames, row["fps"], self.cfg.crf, self.cfg.preset))
        row.member("json", dumps(sample_json(row, int(frames.shape[1]))).encode("utf-8"))
        row.row.frames = None  # the bytes are all that travels on
        return [row]


def sample_json(row: RowView, size_px: int) -> dict:
    record = row.row.record
    faces = {k: v for k, v in row["faces"].items() if k != "kps5_detector"}
    faces.update(row.get("landmarks") or {})
    out = {"schema_version": SCHEMA_VERSION}
    for name in JSON_FIELDS:
        out[name] = row.get(name)
    out.update(
        window=int(out["window"]), static=bool(out["static"]), fps=float(out["fps"]), num_frames=int(out["num_frames"]),
        size_px=size_px, description=out["description"] or "", action=out["action"] or "",
        caption=out["caption"] or {}, intensity=float(out["intensity"] or 0.0),
        intensity_per_step=out["intensity_per_step"] or [], intensity_units=out["intensity_units"] or {},
        id_embedding=out["id_embedding"] or {}, labels=out["labels"] or {}, media=out["media"] or {}, faces=faces,
        scores=dict(record.get("scores", {})),
        backends=dict(record.get("backends", {}), human_motion=__version__),
    )
    return out


def parse_sample_json(data: bytes) -> dict:
    return json.loads(data.decode("utf-8"))
