"""Encode: the last worker stage. Turns an accepted row into the members of one WebDataset sample (schema.py):
the video as H.264 MP4 (or the image as JPEG), and the ``json`` member; the frames are dropped here, so the driver
receives only bytes.
"""

from __future__ import annotations

import json

from human_motion import __version__
from human_motion.media import encode_jpg, encode_mp4
from human_motion.stages.base import Stage
from human_motion.schema import SCHEMA_VERSION
from human_motion.types import Row, dumps

# Per-row bookkeeping that stays out of the sample.
INTERNAL = {"spec", "status", "stage", "detail", "timings", "detections", "source_fps"}


def sample_json(record: dict) -> dict:
    faces = dict(record.get("faces", {}))
    faces.pop("kps5_detector", None)
    out = {
        "schema_version": SCHEMA_VERSION,
        "key": record["key"],
        "source": record["source"],
        "clip_id": record["clip_id"],
        "window": int(record["window"]),
        "static": bool(record["static"]),
        "media_path": record["media_path"],
        "span_s": record["span_s"],
        "fps": float(record["fps"]),
        "num_frames": int(record["num_frames"]),
        "size_px": int(record["size_px"]),
        "crop": record["crop"],
        "description": record.get("description", ""),
        "action": record.get("action", ""),
        "caption": record.get("caption", {}),
        "intensity": float(record.get("intensity", 0.0)),
        "intensity_per_step": record.get("intensity_per_step", []),
        "intensity_units": record.get("intensity_units", {}),
        "faces": faces,
        "id_embedding": record.get("id_embedding", {}),
        "scores": record.get("scores", {}),
        "labels": record.get("labels", {}),
        "backends": dict(record.get("backends", {}), human_motion=__version__),
    }
    return out


class Encode(Stage):
    name = "encode"

    def process(self, row: Row) -> list[Row]:
        frames = row.frames
        row.record["num_frames"] = int(frames.shape[0])
        row.record["size_px"] = int(frames.shape[1])
        if row.record["static"]:
            row.blobs["jpg"] = encode_jpg(frames[0], self.cfg.sink.jpeg_quality)
        else:
            row.blobs["mp4"] = encode_mp4(frames, self.cfg.decode.fps, self.cfg.sink.crf, self.cfg.sink.preset)
        row.record.setdefault("backends", {})["encode"] = f"libx264 crf{self.cfg.sink.crf} {self.cfg.sink.preset}"
        row.blobs["json"] = dumps(sample_json(row.record)).encode("utf-8")
        row.frames = None
        return [row]


def parse_sample_json(data: bytes) -> dict:
    return json.loads(data.decode("utf-8"))
