"""Captions: an action phrase A and an overall description P per window.

The offline backend (``landmarks``) reads the per-frame expression and pose features that the faces stage wrote
(mouth opening and width, eyelid opening, yaw, pitch, roll; all scale-free) and names what changes over the window:
talking, opening the mouth, smiling, blinking, turning or shaking the head, nodding, looking up or down, tilting
the head, or keeping still. Source labels (CelebV-HQ attributes, CelebV-Text texts), when a source gives them,
become the description and a candidate action. Large multimodal captioners plug in behind the same ``caption()``.

Directions are the subject's: "turning head to the left" means the person turns towards their own left (the nose
moves to the image's right).
"""

from __future__ import annotations

import numpy as np

from human_motion.pipelines.config import BuildConfig
from human_motion.pipelines.stage import Stage
from human_motion.types import Row

# Thresholds on the features of face_models.mesh_features, set on the dev clips (see the README's table).
TALK_MIN_CROSSINGS = 3  # mouth opening crosses its midline at least this often
TALK_MIN_RANGE = 0.025  # and varies at least this much (fraction of face height)
MOUTH_OPEN = 0.08  # inner-lip gap / face height counted as an open mouth
SMILE_WIDTH = 1.05  # mouth width / inter-ocular distance of a smile
SMILE_RISE = 0.08  # or a rise of the width over the window
BLINK_RATIO = 0.55  # eyelid gap below this x its median
YAW_RANGE = 0.12
PITCH_RANGE = 0.18
ROLL_RANGE_DEG = 8.0


def _crossings(x: np.ndarray) -> int:
    mid = (x.max() + x.min()) / 2
    signs = np.sign(x - mid)
    signs = signs[signs != 0]
    return int((signs[1:] != signs[:-1]).sum())


def landmark_actions(features: list[dict | None]) -> tuple[list[str], dict[str, float]]:
    """Action phrases (most salient first) and the summary numbers they came from."""
    rows = [f for f in features if f]
    if not rows:
        return [], {}
    f = {k: np.array([r[k] for r in rows], np.float64) for k in rows[0]}
    summary = {
        "mouth_open_max": float(f["mouth_open"].max()), "mouth_open_range": float(np.ptp(f["mouth_open"])),
        "mouth_crossings": float(_crossings(f["mouth_open"])) if len(rows) > 2 else 0.0,
        "mouth_width_median": float(np.median(f["mouth_width"])),
        "mouth_width_rise": float(f["mouth_width"].max() - f["mouth_width"][: max(1, len(rows) // 4)].mean()),
        "eye_open_min_ratio": float(f["eye_open"].min() / (np.median(f["eye_open"]) + 1e-6)),
        "yaw_range": float(np.ptp(f["yaw"])), "yaw_delta": float(f["yaw"][-1] - f["yaw"][0]),
        "pitch_range": float(np.ptp(f["pitch"])), "pitch_delta": float(f["pitch"][-1] - f["pitch"][0]),
        "roll_range": float(np.ptp(f["roll"])),
    }
    s = summary
    head: list[tuple[float, str]] = []
    if s["yaw_range"] > YAW_RANGE:
        back_again = abs(s["yaw_delta"]) < 0.5 * s["yaw_range"]
        phrase = "shaking head" if back_again else (
            "turning head to the left" if s["yaw_delta"] > 0 else "turning head to the right")
        head.append((s["yaw_range"] / YAW_RANGE, phrase))
    if s["pitch_range"] > PITCH_RANGE:
        back_again = abs(s["pitch_delta"]) < 0.5 * s["pitch_range"]
        phrase = "nodding" if back_again else ("looking down" if s["pitch_delta"] > 0 else "looking up")
        head.append((s["pitch_range"] / PITCH_RANGE, phrase))
    if s["roll_range"] > ROLL_RANGE_DEG:
        head.append((s["roll_range"] / ROLL_RANGE_DEG, "tilting head"))
    face: list[tuple[float, str]] = []
    if len(rows) > 2 and s["mouth_crossings"] >= TALK_MIN_CROSSINGS and s["mouth_open_range"] > TALK_MIN_RANGE:
        face.append((s["mouth_open_range"] / TALK_MIN_RANGE, "talking"))
    elif s["mouth_open_max"] > MOUTH_OPEN:
        face.append((s["mouth_open_max"] / MOUTH_OPEN, "opening mouth"))
    if s["mouth_width_median"] > SMILE_WIDTH or s["mouth_width_rise"] > SMILE_RISE:
        face.append((max(s["mouth_width_median"] / SMILE_WIDTH, s["mouth_width_rise"] / SMILE_RISE), "smiling"))
    if len(rows) > 2 and s["eye_open_min_ratio"] < BLINK_RATIO:
        face.append((BLINK_RATIO / max(s["eye_open_min_ratio"], 1e-3), "blinking"))
    ranked = [p for _, p in sorted(head, reverse=True)] + [p for _, p in sorted(face, reverse=True)]
    return ranked, summary


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

    def process(self, row: Row) -> list[Row]:
        record = row.record
        phrases, summary = landmark_actions(record.get("faces", {}).get("features") or [])
        static = bool(record["static"])
        if static:
            # One image: expressions only (head motion needs time).
            phrases = [p for p in phrases if p in ("smiling", "opening mouth")]
            landmark_phrase = " and ".join(phrases[:2]) if phrases else "with a neutral expression"
        else:
            landmark_phrase = " and ".join(phrases[:2]) if phrases else "keeping still"
        labels = record.get("labels") or {}
        source_phrase = labels.get("action") if isinstance(labels.get("action"), str) else None
        action = source_phrase or landmark_phrase
        record.update(
            action=action,
            description=describe(action, labels, static),
            caption={"backend": "landmarks", "candidates": {"landmarks": landmark_phrase, "source": source_phrase},
                     "features": summary},
        )
        record.setdefault("backends", {})["caption"] = "landmarks"
        return [row]
