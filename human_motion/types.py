"""The records that move between stages.

``ClipSpec`` is what a source yields: one clip of one corpus (a span of a video, or an image). ``Row`` is one
window of one clip as it travels through the Ray stages: a JSON-able ``record`` that every stage adds scores to,
and the decoded frames. Rows that a stage rejects keep travelling (without frames) so the sink can write them to
``rejects.parquet``: nothing is dropped on the way.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

OK = "ok"


@dataclasses.dataclass
class ClipSpec:
    """One clip of a source. ``bbox`` is a face box hint, normalised (x0, y0, x1, y1) in 0..1 of the source frame."""

    source: str
    clip_id: str
    path: str
    static: bool = False
    start_s: float | None = None
    end_s: float | None = None
    span_frames: tuple[int, int] | None = None  # [start, end) in source frames, for sources that count frames
    bbox: tuple[float, float, float, float] | None = None
    labels: dict[str, Any] = dataclasses.field(default_factory=dict)
    # A source that cannot make sense of a metadata row still yields it, with the reason: it becomes a rejection.
    reject_reason: str | None = None
    reject_detail: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, default=_json_default)

    @classmethod
    def from_json(cls, text: str) -> ClipSpec:
        data = json.loads(text)
        if data.get("span_frames") is not None:
            data["span_frames"] = tuple(data["span_frames"])
        if data.get("bbox") is not None:
            data["bbox"] = tuple(data["bbox"])
        return cls(**data)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=_json_default)


@dataclasses.dataclass
class Row:
    """One window of one clip inside the pipeline. Columns in Ray: shard, clip_index, n_windows, record, frames.

    ``n_windows`` is how many rows the clip produced (1 for a clip rejected before windowing), so the sink knows
    when every row of a clip, and so of a shard, has arrived.
    """

    shard: int
    clip_index: int
    n_windows: int
    record: dict[str, Any]
    frames: np.ndarray | None = None  # (t, h, w, 3) uint8 RGB
    blobs: dict[str, bytes] = dataclasses.field(default_factory=dict)  # encoded members, filled by the encode stage

    @property
    def ok(self) -> bool:
        return self.record.get("status", OK) == OK

    def reject(self, stage: str, reason: str, detail: str = "") -> None:
        """Mark the row rejected; the first rejection wins and the frames are released."""
        if not self.ok:
            return
        self.record.update(status=reason, stage=stage, detail=str(detail)[:2000])
        self.frames = None

    def add_time(self, stage: str, seconds: float) -> None:
        timings = self.record.setdefault("timings", {})
        timings[stage] = timings.get(stage, 0.0) + seconds

    # Ray Data carries rows as columns of plain types: frames as raw bytes plus their shape in the record.
    def to_columns(self) -> dict[str, Any]:
        record = dict(self.record)
        frames = b""
        if self.frames is not None:
            record["_frames_shape"] = list(self.frames.shape)
            frames = np.ascontiguousarray(self.frames, dtype=np.uint8).tobytes()
        else:
            record.pop("_frames_shape", None)
        return {
            "shard": self.shard,
            "clip_index": self.clip_index,
            "n_windows": self.n_windows,
            "record": dumps(record),
            "frames": frames,
            "blobs": pack_blobs(self.blobs),
        }

    @classmethod
    def from_columns(cls, cols: dict[str, Any]) -> Row:
        record = json.loads(cols["record"])
        shape = record.pop("_frames_shape", None)
        raw = cols.get("frames") or b""
        frames = np.frombuffer(raw, dtype=np.uint8).reshape(shape) if shape and len(raw) else None
        blobs = unpack_blobs(cols.get("blobs") or b"")
        return cls(int(cols["shard"]), int(cols["clip_index"]), int(cols["n_windows"]), record, frames, blobs)


def pack_blobs(blobs: dict[str, bytes]) -> bytes:
    """Named byte strings in one value: a JSON header of (name, length) pairs, a newline, then the bytes."""
    if not blobs:
        return b""
    header = json.dumps([[k, len(v)] for k, v in blobs.items()]).encode()
    return header + b"\n" + b"".join(blobs.values())


def unpack_blobs(data: bytes) -> dict[str, bytes]:
    if not data:
        return {}
    header, _, body = bytes(data).partition(b"\n")
    out, pos = {}, 0
    for name, length in json.loads(header):
        out[name] = body[pos : pos + length]
        pos += length
    return out


def rows_from_batch(batch: dict[str, Any]) -> list[Row]:
    n = len(batch["record"])
    return [Row.from_columns({k: v[i] for k, v in batch.items()}) for i in range(n)]


def batch_from_rows(rows: list[Row]) -> dict[str, np.ndarray]:
    cols = [r.to_columns() for r in rows]
    keys = ("shard", "clip_index", "n_windows", "record", "frames", "blobs")
    out: dict[str, np.ndarray] = {}
    for k in keys:
        values = [c[k] for c in cols]
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        out[k] = arr if k in ("record", "frames", "blobs") else np.asarray(values, dtype=np.int64)
    return out
