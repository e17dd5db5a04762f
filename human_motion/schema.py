"""The shard contract: what one sample holds, and the columns of ``index.parquet`` and ``rejects.parquet``.

The sink writes it, ``hm stats``/``hm verify`` check it, and ``model/data.py`` reads it; change it here only.

A sample in a WebDataset tar (key ``{source}__{clip}__w{window}``, made safe by :func:`safe_key`):

    mp4          16 frames, size_px x size_px, H.264 (a static sample: its one image repeated, ``static`` in json)
    face.jpg     aligned reference face crop (``face_size_px`` square, 5-point alignment)
    arcface.npy  float32 [D], L2-normalised identity embedding of the reference face; D and the model that made it
                 are in ``json["id_embedding"]`` (``insightface`` ArcFace: 512; the offline ``dlib`` backend: 128)
    flow.npy     uint8 [frames-1, size_px/8, size_px/8] foreground flow magnitude M_i*|f_i| in pixels per step at
                 size_px scale, clipped at 255 (zeros for static samples)
    json         see SAMPLE_FIELDS
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata

import pyarrow as pa

# 2: every sample has the same members (static samples are still videos, not ``jpg``), every score is an index
# column, and the json records the source media's header (``media``). Readers accept 1 too.
SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)

MEMBERS = ("mp4", "face.jpg", "arcface.npy", "flow.npy", "json")
VIDEO_MEMBERS = MEMBERS
STATIC_MEMBERS_V1 = ("jpg", "face.jpg", "arcface.npy", "flow.npy", "json")  # schema 1 only

# json member: field -> (python type, meaning). Nested values are plain JSON.
SAMPLE_FIELDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "schema_version": (int, "this module's SCHEMA_VERSION"),
    "key": (str, "sample key (also the tar member prefix)"),
    "source": (str, "source adapter name (folder, demo, celebv-hq, ...)"),
    "clip_id": (str, "clip id inside the source"),
    "window": (int, "window index inside the clip (0-based)"),
    "static": (bool, "True for image samples (the image repeated for the whole window, intensity 0)"),
    "media_path": (str, "path of the source media, as the source gave it"),
    "span_s": (list, "[start, end] of the window in seconds of the source media"),
    "fps": (float, "sampling rate of the stored frames"),
    "num_frames": (int, "frames stored (a static sample repeats its image this many times)"),
    "size_px": (int, "side of the stored square frames"),
    "crop": (dict, "source_box [x0, y0, x1, y1] in source pixels, source_size [w, h]"),
    "description": (str, "overall description P"),
    "action": (str, "action phrase A"),
    "caption": (dict, "backend, candidates {landmarks, source, model} (phrases; \"\" when none), features (JSON "
                      "text: the landmark captioner's numbers), attempts and raw answer of a model captioner"),
    "intensity": (float, "motion intensity M (Eq. 7), pixels per step at size_px and fps"),
    "intensity_per_step": (list, "f_i,fg per step (Eq. 6)"),
    "intensity_units": (dict, "unit, flow backend, resolution_px, fps, work_px"),
    "faces": (dict, "boxes [[x0,y0,x1,y1]] and landmarks5 [[[x,y]x5]] per frame in stored-frame pixels, present, "
                    "scores, reference_frame, features (JSON text: expression/pose numbers per frame)"),
    "id_embedding": (dict, "kind (arcface|dlib), backend, dim, model"),
    "scores": (dict, "every score of SCORE_COLUMNS (null when its stage did not run): the values select applied"),
    "labels": ((dict, str), "source labels (attributes, texts) as the source gave them, as JSON text (a dict in "
                            "schema 1)"),
    "backends": (dict, "stage -> backend name and version"),
    "media": (dict, "the source media's header: kind, width, height (as displayed), fps, duration_s, orientation "
                    "(rotation_deg clockwise and mirrored: the turn applied to make the frames upright), codec"),
}

# Every score a stage writes, in dataflow order: each is also an index column, so a threshold can be tightened on a
# finished build (hm select) without a model run. tests/stages check this list against the stages' headers.
SCORE_COLUMNS = ("source_min_side_px", "cuts", "face_found_frac", "multi_face_frac", "face_side_px", "face_score",
                 "face_missing_frac", "face_area_frac", "face_fill", "crop_side_px", "mean_luma", "text_frac",
                 "image_quality", "id_min_cos", "face_flow_px")

# index.parquet: one row per sample, every scalar field (lists and dicts stay in the json member).
INDEX_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("shard", pa.string()),
        ("source", pa.string()),
        ("clip_id", pa.string()),
        ("window", pa.int32()),
        ("static", pa.bool_()),
        ("media_path", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("fps", pa.float64()),
        ("num_frames", pa.int32()),
        ("size_px", pa.int32()),
        ("description", pa.string()),
        ("action", pa.string()),
        ("action_landmarks", pa.string()),
        ("intensity", pa.float64()),
        ("flow_backend", pa.string()),
        ("embedding_kind", pa.string()),
        ("embedding_dim", pa.int32()),
        ("caption_backend", pa.string()),
    ]
    + [(name, pa.float64()) for name in SCORE_COLUMNS]
)

REJECTS_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("clip_id", pa.string()),
        ("window", pa.int32()),  # -1 when the whole clip was rejected
        ("media_path", pa.string()),
        ("stage", pa.string()),  # sources | decode | faces | flow | caption | select | encode
        ("reason", pa.string()),  # short code: decode_failed, no_face, several_faces, small_face, ...
        ("detail", pa.string()),  # human-readable detail (exception text, the score that failed)
        ("shard", pa.string()),
    ]
)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, max_len: int = 80) -> str:
    """A file-name-safe, deterministic rendering of an untrusted id (no ``/``, no ``..``, no control characters).

    Unicode is folded to ASCII where it has an equivalent, other characters become ``_``; when anything was changed
    or cut, a short hash of the original keeps distinct ids distinct.
    """
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    cleaned = _UNSAFE.sub("_", folded).strip("._-")
    cleaned = re.sub(r"\.{2,}", "_", cleaned)
    if cleaned == text and 0 < len(cleaned) <= max_len:
        return cleaned
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{cleaned[: max_len - 9] or 'id'}-{digest}"


def safe_key(source: str, clip_id: str, window: int) -> str:
    """Sample key ``{source}__{clip}__w{window}``; webdataset splits member names at the first dot, so none here."""
    return f"{safe_name(source)}__{safe_name(clip_id)}__w{int(window):03d}".replace(".", "_")


# Fields of the json member stored as JSON text (schema 2), so every sample has one layout; load_sample_json
# turns them back into objects.
JSON_TEXT_FIELDS = (("labels",), ("caption", "features"), ("faces", "features"))


def load_sample_json(data: bytes | str) -> dict:
    """A sample's json member as Python objects, its JSON-text fields (labels, feature summaries) decoded too."""
    meta = json.loads(data)
    for path in JSON_TEXT_FIELDS:
        node = meta
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(path[-1]), str):
            node[path[-1]] = json.loads(node[path[-1]])
    return meta
