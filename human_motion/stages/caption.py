"""Captions: an action phrase A and an overall description P per window.

The offline backend (``landmarks``) reads the per-frame expression and pose features that the faces stage wrote
(mouth opening and width, eyelid opening, yaw, pitch, roll; all scale-free) and names what changes over the window:
talking, opening the mouth, smiling, blinking, turning or shaking the head, nodding, looking up or down, tilting
the head, or keeping still. Source labels (CelebV-HQ attributes, CelebV-Text texts), when a source gives them,
become the description and a candidate action. With ``caption.backend`` transformers, vllm or endpoint, a large
multimodal model (backends/captioners.py) writes both; the landmark phrase stays as a cross-check candidate.

Directions are the subject's: "turning head to the left" means the person turns towards their own left (the nose
moves to the image's right).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Literal

import numpy as np

from human_motion.backends.captioners import CaptionFailed, make_captioner, make_request
from human_motion.config import ConfigError
from human_motion.stages.base import RowView, Stage, StageError, StageResources, runtime
from human_motion.types import Row

# from_pretrained / vllm.LLM switches that load and run code from the model repository: only through the explicit
# caption.trust_remote_code key, never through the pass-through caption.model_kwargs.
CODE_LOADING_KWARGS = ("trust_remote_code", "code_revision", "custom_pipeline")


@dataclasses.dataclass(frozen=True)
class CaptionConfig(StageResources):
    """``landmarks``: offline rules on the face features. The others ask a multimodal model (backends/captioners.py;
    docs/backends.md); the landmark phrase stays in ``caption.candidates.landmarks`` as a cross-check."""

    backend: Literal["landmarks", "transformers", "vllm", "endpoint"] = "landmarks"
    num_cpus: float = runtime(0.25)
    model: str | None = None  # transformers/vllm: a hub id or a local folder; endpoint: the served model's name
    endpoint_url: str | None = None  # endpoint: base URL of an OpenAI-compatible server, e.g. http://host:8000/v1
    api_key_env: str | None = None  # endpoint: NAME of the environment variable that holds the API key (not the key)
    num_frames: int = 4  # frames of the window shown to the model (spread over it)
    image_px: int = 448  # side the frames are resized to before the model's own processor
    prompt: str | None = None  # replaces captioners.PROMPT; may use {what}, {words}, {chars}
    max_new_tokens: int = 160
    temperature: float = 0.0  # first try (0: greedy)
    retry_temperature: float = 0.7  # retries of invalid answers sample, so they can differ
    max_retries: int = 2  # then the row is rejected (caption_invalid / caption_request_failed)
    retry_backoff_s: float = runtime(1.0)  # endpoint: wait before retrying failed requests (doubles each time)
    max_action_words: int = 6
    max_description_chars: int = 400
    device: str = runtime("auto")  # transformers: auto | cpu | cuda
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"  # transformers: auto = bf16 on CUDA, fp32 on CPU
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)  # from_pretrained / vllm.LLM extras
    # Runs Python code shipped with the model (transformers/vllm trust_remote_code): off unless set here.
    trust_remote_code: bool = False
    json_mode: bool = True  # endpoint: send response_format={"type": "json_object"}
    request_timeout_s: float = runtime(120.0)
    max_parallel_requests: int = runtime(8)  # endpoint: concurrent requests per actor

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backend != "landmarks" and not self.model:
            raise ConfigError(f"caption.backend={self.backend} needs caption.model (a hub id or local folder; for "
                              "an endpoint, the served model's name)")
        if self.backend == "endpoint" and not self.endpoint_url:
            raise ConfigError("caption.backend=endpoint needs caption.endpoint_url, e.g. http://localhost:8000/v1")
        if self.num_frames < 1 or self.image_px < 28 or self.max_retries < 0 or self.max_action_words < 1:
            raise ConfigError("caption: num_frames >= 1, image_px >= 28, max_retries >= 0, max_action_words >= 1")
        code = [k for k in self.model_kwargs if k in CODE_LOADING_KWARGS]
        if code:
            raise ConfigError(f"caption.model_kwargs may not set {code[0]} (it runs code from the model repository); "
                              "set caption.trust_remote_code: true if you trust that code")

# Thresholds on the features of face_models.mesh_features, set by watching the clips of ../shared/data/dev (the
# README's table lists what each clip shows and what these rules say).
TALK_MIN_CROSSINGS = 3  # mouth opening crosses its midline at least this often in 16 frames
TALK_MIN_RANGE = 0.05  # and its range is at least this (fraction of face height)
MOUTH_OPEN = 0.10  # inner-lip gap / face height counted as an open mouth
SMILE_LIFT_MAX = 0.036  # mouth corners lifted above the lips' midpoint (fraction of face height) at the peak
SMILE_LIFT_MEDIAN = 0.015  # ... and a face that is lifted over the window, not one grimace
BLINK_RATIO = 0.7  # both eyelids at or below this x their median in some frame
WINK_CLOSED, WINK_OPEN = 0.6, 0.85  # one eye below, the other above, in the same frame
YAW_RANGE = 0.15  # nose offset between the cheeks / cheek width
PITCH_RANGE = 0.2  # nose height between eyes and mouth
ROLL_RANGE_DEG = 10.0
SHIFT_RANGE = 0.25  # face-box centre travel / face size: the whole head moving in the frame
SCALE_RATIO = 1.3  # largest / smallest face size (detector boxes jitter by ~10-15% on real clips)
BOX_SALIENCE = 0.7  # box phrases rank after facial ones of the same strength (boxes are noisier)


def _crossings(x: np.ndarray) -> int:
    mid = (x.max() + x.min()) / 2
    signs = np.sign(x - mid)
    signs = signs[signs != 0]
    return int((signs[1:] != signs[:-1]).sum())


def _head_phrase(values: np.ndarray, threshold: float, more: str, less: str, repeated: str, plain: str):
    """A head-motion phrase for one angle: a turn one way, a repeated back-and-forth, or a plain movement."""
    rng = float(np.ptp(values))
    if rng <= threshold:
        return None
    delta = float(values[-1] - values[0])
    if abs(delta) >= 0.5 * rng:
        return rng / threshold, more if delta > 0 else less
    return rng / threshold, repeated if _crossings(values) >= 3 else plain


def box_actions(boxes: list | None) -> list[tuple[float, str]]:
    """Whole-head motion from the face-box track (the landmark features are translation- and scale-free)."""
    if not boxes or len(boxes) < 3:
        return []
    b = np.asarray(boxes, np.float64)
    side = np.sqrt(np.clip(b[:, 2] - b[:, 0], 1, None) * np.clip(b[:, 3] - b[:, 1], 1, None))
    ref = float(np.median(side))
    cx, cy = (b[:, 0] + b[:, 2]) / 2 / ref, (b[:, 1] + b[:, 3]) / 2 / ref
    found = [
        # The box moving to the image's right is the person moving to their own left.
        _head_phrase(cx, SHIFT_RANGE, "moving to the left", "moving to the right", "swaying from side to side",
                     "moving from side to side"),
        _head_phrase(cy, SHIFT_RANGE, "moving down", "moving up", "bobbing up and down", "moving up and down"),
        _head_phrase(np.log(side / ref), np.log(SCALE_RATIO), "moving towards the camera",
                     "moving away from the camera", "moving back and forth", "moving back and forth"),
    ]
    return [(s * BOX_SALIENCE, p) for s, p in (f for f in found if f)]


def landmark_actions(features: list[dict | None], boxes: list | None = None) -> tuple[list[str], dict[str, float]]:
    """Action phrases, most salient first (salience = how far past its threshold), and the numbers behind them."""
    rows = [f for f in features if f]
    if not rows:
        return [p for _, p in sorted(box_actions(boxes), key=lambda x: -x[0])], {}
    f = {k: np.array([r.get(k, np.nan) for r in rows], np.float64) for k in rows[0]}
    eye_r = f["eye_open_r"] / (np.median(f["eye_open_r"]) + 1e-6)
    eye_l = f["eye_open_l"] / (np.median(f["eye_open_l"]) + 1e-6)
    s = {
        "mouth_open_max": float(f["mouth_open"].max()), "mouth_open_range": float(np.ptp(f["mouth_open"])),
        "mouth_crossings": float(_crossings(f["mouth_open"])) if len(rows) > 2 else 0.0,
        "corner_lift_max": float(f["corner_lift"].max()), "corner_lift_median": float(np.median(f["corner_lift"])),
        "eyes_min_ratio": float(((eye_r + eye_l) / 2).min()),
        "wink_frames": float(((np.minimum(eye_r, eye_l) < WINK_CLOSED) & (np.maximum(eye_r, eye_l) > WINK_OPEN)).sum()),
        "yaw_range": float(np.ptp(f["yaw"])), "pitch_range": float(np.ptp(f["pitch"])),
        "roll_range": float(np.ptp(f["roll"])),
    }
    found: list[tuple[float, str]] = box_actions(boxes)
    moving = len(rows) > 2
    if moving:
        for item in (
            # Yaw grows when the nose moves to the image's right: the person turns to their own left.
            _head_phrase(f["yaw"], YAW_RANGE, "turning head to the left", "turning head to the right",
                         "shaking head", "turning head"),
            _head_phrase(f["pitch"], PITCH_RANGE, "looking down", "looking up", "nodding", "nodding"),
            _head_phrase(f["roll"], ROLL_RANGE_DEG, "tilting head", "tilting head", "tilting head", "tilting head"),
        ):
            if item:
                found.append(item)
    if moving and s["mouth_crossings"] >= TALK_MIN_CROSSINGS and s["mouth_open_range"] > TALK_MIN_RANGE:
        found.append((s["mouth_open_range"] / TALK_MIN_RANGE, "talking"))
    elif s["mouth_open_max"] > MOUTH_OPEN:
        found.append((s["mouth_open_max"] / MOUTH_OPEN, "opening mouth"))
    if s["corner_lift_max"] >= SMILE_LIFT_MAX and s["corner_lift_median"] >= SMILE_LIFT_MEDIAN:
        found.append((s["corner_lift_max"] / SMILE_LIFT_MAX, "smiling"))
    if moving and s["wink_frames"] > 0:
        found.append((1.5, "winking"))
    elif moving and s["eyes_min_ratio"] <= BLINK_RATIO:
        found.append((BLINK_RATIO / max(s["eyes_min_ratio"], 1e-3), "blinking"))
    return [p for _, p in sorted(found, key=lambda x: -x[0])], s


def describe(action: str, labels: dict, static: bool) -> str:
    """The overall description P: the source's own text when it has one, else a plain template."""
    for key in ("description", "text"):
        if isinstance(labels.get(key), str) and labels[key].strip():
            return labels[key].strip()
    parts = [labels[k] for k in ("appearance", "emotion") if isinstance(labels.get(k), str) and labels[k]]
    who = "a person" + (f", {', '.join(parts)}," if parts else "")
    if static:
        return f"A close-up portrait photo of {who} {action}.".replace(" ,", ",")
    return f"A close-up video of {who} {action}.".replace(" ,", ",")


class Caption(Stage):
    """Adds ``action``, ``description`` and ``caption`` (backend, candidates, feature summary)."""

    name = "caption"
    Config = CaptionConfig
    reads = ("static", "labels", "faces", "landmarks", "frames", "fps")
    writes = ("action", "description", "caption")

    def __init__(self, cfg: CaptionConfig):
        super().__init__(cfg)
        self.captioner = make_captioner(cfg)  # the multimodal model, loaded once per actor (None: landmarks)
        self._answers: dict[int, object] = {}

    def process_rows(self, rows: list[Row]) -> list[Row]:
        """With a multimodal captioner, the accepted rows of a batch are captioned together (one generate call,
        or parallel requests), then each row is finished by ``process``."""
        if self.captioner is None:
            return super().process_rows(rows)
        todo = [r for r in rows if r.ok and r.frames is not None]
        start = time.perf_counter()
        self._answers = {}
        for group in self.in_flight_batches(todo):
            requests = [make_request(r.frames, bool(r.record["static"]), r.record["fps"], self.cfg) for r in group]
            with self.in_flight(group):
                self._answers.update(zip(map(id, group), self.captioner.caption_many(requests)))
        elapsed = time.perf_counter() - start
        for r in todo:  # the batch's model time, shared among its rows (the stage's timing covers process only)
            r.add_time(self.name, elapsed / len(todo))
        try:
            return super().process_rows(rows)
        finally:
            self._answers = {}

    def process(self, row: RowView) -> list[RowView]:
        landmarks = row.get("landmarks") or {}
        phrases, summary = landmark_actions(landmarks.get("features") or [], (row.get("faces") or {}).get("boxes"))
        static = bool(row["static"])
        if static:
            # One image: expressions only (head motion needs time).
            phrases = [p for p in phrases if p in ("smiling", "opening mouth")]
            landmark_phrase = " and ".join(phrases[:2]) if phrases else "with a neutral expression"
        else:
            landmark_phrase = " and ".join(phrases[:2]) if phrases else "keeping still"
        labels = row.get("labels") or {}
        source_phrase = labels.get("action") if isinstance(labels.get("action"), str) else None
        action = source_phrase or landmark_phrase
        caption = {"backend": "landmarks", "candidates": {"landmarks": landmark_phrase, "source": source_phrase},
                   "features": summary}
        description = describe(action, labels, static)
        if self.captioner is not None:
            answer = self._answers.pop(id(row.row), None)
            if answer is None:  # process() called on its own
                answer = self.captioner.caption_many([make_request(row["frames"], static, row["fps"], self.cfg)])[0]
            if isinstance(answer, CaptionFailed):
                raise StageError(answer.reason, answer.detail)
            action, description = answer.action, answer.description
            caption.update(backend=self.captioner.name, attempts=answer.attempts, raw=answer.raw)
            caption["candidates"]["model"] = answer.action
        row["action"], row["description"], row["caption"] = action, description, caption
        row.backend("caption", caption["backend"])
        return [row]
