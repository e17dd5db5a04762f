"""Write small, valid shards following ``human_motion/schema.py`` (what ``hm build`` writes), for the model tests.

Videos are a coloured disc ("face") on a gradient that moves a few pixels per frame, so clips differ and flow maps
are non-zero where the disc moves. Static samples have zero flow and come in both layouts the loader reads: ``jpg``
(the sink's first layout) or ``mp4`` of the image repeated ``num_frames`` times with ``"static": true`` (issue 17).
"""

from __future__ import annotations

import io
import json
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import webdataset as wds

from human_motion.media import encode_mp4
from PIL import Image

from human_motion.schema import INDEX_SCHEMA, SCHEMA_VERSION, safe_key

ACTIONS = ["smiling", "turning head to the left", "nodding", "talking"]


def make_frames(seed: int, num_frames: int, size: int, static: bool) -> tuple[np.ndarray, list[list[float]]]:
    """(f, size, size, 3) uint8 frames and per-frame face boxes [x0, y0, x1, y1] in pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.stack([xx * 255 // size, yy * 255 // size, np.full_like(xx, 40 * (seed % 5))], -1).astype(np.uint8)
    colour = rng.integers(80, 255, 3)
    r = size // 5
    cx, cy = rng.integers(r + 4, size - r - 4, 2)
    dx, dy = (0, 0) if static else rng.integers(-2, 3, 2)
    frames, boxes = [], []
    for i in range(1 if static else num_frames):
        x, y = int(np.clip(cx + dx * i, r, size - r)), int(np.clip(cy + dy * i, r, size - r))
        frame = base.copy()
        frame[(xx - x) ** 2 + (yy - y) ** 2 < r * r] = colour
        frames.append(frame)
        boxes.append([float(x - r), float(y - r), float(x + r), float(y + r)])
    return np.stack(frames), boxes


def encode_jpg(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def sample(index: int, static: bool, size: int = 64, num_frames: int = 16, kind: str = "dlib", dim: int = 128,
           static_layout: str = "jpg"):
    """One sample as a dict of tar members (schema.VIDEO_MEMBERS or STATIC_MEMBERS; ``static_layout`` "mp4": a
    static sample as a video of its image repeated)."""
    source = "aahq" if static else "demo"
    key = safe_key(source, f"clip{index:03d}", 0)
    frames, boxes = make_frames(index, num_frames, size, static)
    x0, y0, x1, y1 = (int(v) for v in boxes[0])
    face = np.asarray(Image.fromarray(frames[0][y0:y1, x0:x1]).resize((32, 32)))
    rng = np.random.default_rng(1000 + index)
    embedding = rng.standard_normal(dim).astype(np.float32)
    embedding /= np.linalg.norm(embedding)
    steps = num_frames - 1
    flow = np.zeros((steps, size // 8, size // 8), np.uint8)
    if not static:
        flow[:, 2:6, 2:6] = rng.integers(20, 200, (steps, 4, 4))
    intensity = 0.0 if static else float(flow[flow > 0].mean() / 10)
    meta = {
        "schema_version": SCHEMA_VERSION, "key": key, "source": source, "clip_id": f"clip{index:03d}", "window": 0,
        "static": static, "media_path": f"/data/{source}/clip{index:03d}.mp4", "span_s": [0.0, 4.0],
        "fps": 0.0 if static else 4.0, "num_frames": 1 if static else num_frames, "size_px": size,
        "crop": {"source_box": [0, 0, size, size], "source_size": [size, size]},
        "description": f"a person {ACTIONS[index % len(ACTIONS)]} in a room",
        "action": "" if static else ACTIONS[index % len(ACTIONS)],
        "caption": {"backend": "test", "candidates": [], "features": {}},
        "intensity": intensity, "intensity_per_step": [0.0 if static else intensity] * steps,
        "intensity_units": {"unit": "px_per_step", "backend": "test", "resolution_px": size, "fps": 4.0,
                            "work_px": size},
        "faces": {"boxes": boxes, "landmarks5": [[[0.0, 0.0]] * 5] * len(boxes), "scores": [0.99] * len(boxes),
                  "reference_frame": 0},
        "id_embedding": {"kind": kind, "backend": "test", "dim": dim, "model": f"{kind}-test"},
        "scores": {"face_count": 1, "face_area_frac": 0.1}, "labels": {}, "backends": {"test": "1"},
    }
    members = {"__key__": key, "face.jpg": encode_jpg(face), "json": json.dumps(meta).encode()}
    buf = io.BytesIO()
    np.save(buf, embedding)
    members["arcface.npy"] = buf.getvalue()
    buf = io.BytesIO()
    np.save(buf, flow)
    members["flow.npy"] = buf.getvalue()
    if static and static_layout == "jpg":
        members["jpg"] = encode_jpg(frames[0])
    elif static:
        members["mp4"] = encode_mp4(np.repeat(frames[:1], num_frames, axis=0), 4.0)
        meta["num_frames"] = num_frames
        members["json"] = json.dumps(meta).encode()
    else:
        members["mp4"] = encode_mp4(frames, 4.0)
    return members, meta


def write_shards(out: str | pathlib.Path, num_video: int = 4, num_static: int = 2, per_shard: int = 3,
                 size: int = 64, kind: str = "dlib", dim: int = 128, corrupt: int = 0,
                 static_layout: str = "jpg") -> pathlib.Path:
    """Write ``{out}/000000.tar ...`` and ``index.parquet``; ``corrupt`` extra samples carry an undecodable mp4."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specs = [(i, False) for i in range(num_video)] + [(num_video + i, True) for i in range(num_static)]
    rows, writer = [], None
    for n, (index, static) in enumerate(specs + [(100 + i, False) for i in range(corrupt)]):
        if n % per_shard == 0:
            if writer is not None:
                writer.close()
            shard = f"{n // per_shard:06d}.tar"
            writer = wds.TarWriter(str(out / shard))
        members, meta = sample(index, static, size, kind=kind, dim=dim, static_layout=static_layout)
        if index >= 100:
            members["mp4"] = b"not a video"
        writer.write(members)
        rows.append({"key": meta["key"], "shard": shard, "source": meta["source"], "clip_id": meta["clip_id"],
                     "window": 0, "static": static, "media_path": meta["media_path"], "start_s": 0.0, "end_s": 4.0,
                     "fps": meta["fps"], "num_frames": meta["num_frames"], "size_px": size,
                     "description": meta["description"], "action": meta["action"], "action_landmarks": "",
                     "intensity": meta["intensity"], "flow_backend": "test", "embedding_kind": kind,
                     "embedding_dim": dim, "face_area_frac": 0.1, "face_score": 0.99, "id_min_cos": 0.9,
                     "source_min_side_px": size, "caption_backend": "test"})
    writer.close()
    pq.write_table(pa.Table.from_pylist(rows, schema=INDEX_SCHEMA), out / "index.parquet")
    return out
