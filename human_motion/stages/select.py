"""Select: the thresholds, applied to the scores the stages wrote. Stages only score; select steps that the
dataflow (``stages/dataflow.py``) places between them reject the rows whose scores fail, so cheap filters still run
before expensive stages, and every threshold lives here. A threshold changed after a build needs no model run:
the scores are kept on every sample and in ``index.parquet``, and ``hm select`` applies the same checks there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar

from human_motion.config import ConfigError
from human_motion.stages.base import RowView, Stage, UndeclaredFieldError


@dataclasses.dataclass(frozen=True)
class SelectConfig:
    """Thresholds on the stages' scores (each check names its score and reason below)."""

    min_source_side_px: int = 384  # the paper used 512; the dev clips include 410-480 px videos
    min_face_side_px: int = 64  # median face box side in source pixels
    min_face_score: float = 0.7  # median detector confidence of the main face (real faces here: 0.88-0.97)
    max_missing_face_frac: float = 0.25  # frames of the window where the main face is not found
    max_multi_face_frac: float = 0.25  # frames showing a second face (large and confident enough)
    second_face_min_rel_side: float = 0.35  # a second face counts when its side >= this x the main face's
    second_face_min_score: float = 0.6
    # Cosine of frame embeddings to the reference, per embedding kind: dlib's vectors are not centred (two
    # different people score ~0.88; dlib's own 0.6 distance rule is ~0.915), ArcFace's are (same person > ~0.4).
    min_id_cos: dict[str, float] = dataclasses.field(default_factory=lambda: {"dlib": 0.92, "arcface": 0.4})
    min_mean_luma: float = 0.0  # reject nearly black windows when > 0
    # Text overlays: share of the crop that detected text lines cover, on a sampled frame (1.0: off). The dev clips
    # and demo samples score 0 on every 4th frame; drawn text over their faces 0.008 (a three-letter channel logo)
    # to 0.08 (subtitles, captions, lower thirds): docs/sources.md. As configs/paper.yaml.
    max_text_frac: float = 0.003
    min_image_quality: float = 0.0  # image quality score 0..1 of a sampled frame (0.0: off)
    max_cuts: int = 0  # shot cuts inside a window: its frames would mix shots and its intensity measure the cut
    # The face's side over the crop's side on the frame where it is smallest: a head in the 1.8x crop fills ~0.55
    # (dev clips and demo >= 0.29); a crop that is mostly body (a face crossing the frame, a zoom-out) ~0.1.
    min_face_fill: float = 0.2

    def __hash__(self) -> int:  # frozen but holds a dict
        return id(self)

    def __post_init__(self) -> None:
        if self.max_cuts < 0:
            raise ConfigError(f"select.max_cuts must be >= 0 (0: no shot cut inside a window), got {self.max_cuts}")
        if not 0.0 <= self.min_face_fill < 1.0:
            raise ConfigError(f"select.min_face_fill must be in [0, 1) (0: off; a head in the crop fills ~0.55), "
                              f"got {self.min_face_fill}")


@dataclasses.dataclass(frozen=True)
class Check:
    """``reason`` when ``fails(score value, threshold)``; ``threshold`` is a SelectConfig field (None: fixed);
    ``hint`` (optional) says, in the rejection's one line, what the score means and how to keep such samples."""

    score: str
    reason: str
    threshold: str | None
    fails: Callable[[float, float | None], bool]
    hint: str = ""


CHECKS: dict[str, Check] = {c.reason: c for c in (
    Check("source_min_side_px", "low_resolution", "min_source_side_px", lambda v, t: v < t),
    Check("cuts", "shot_cut", "max_cuts", lambda v, t: v > t,
          "the window spans a shot cut, so its intensity would measure the cut (the clip's one-shot windows are "
          "kept); to keep such windows, raise select.max_cuts"),
    Check("face_found_frac", "no_face", None, lambda v, t: v == 0),
    Check("multi_face_frac", "several_faces", "max_multi_face_frac", lambda v, t: v > t),
    Check("face_side_px", "small_face", "min_face_side_px", lambda v, t: v < t),
    Check("face_score", "low_confidence", "min_face_score", lambda v, t: v < t),
    Check("face_missing_frac", "face_lost", "max_missing_face_frac", lambda v, t: v > t),
    Check("face_fill", "low_face_fill", "min_face_fill", lambda v, t: v < t,
          "the face's side over the crop's on its smallest frame: the crop is mostly body (a face crossing the "
          "frame, a zoom-out); to keep it, lower select.min_face_fill"),
    Check("id_min_cos", "identity_switch", "min_id_cos", lambda v, t: v < t),
    Check("mean_luma", "too_dark", "min_mean_luma", lambda v, t: v < t),
    Check("text_frac", "text_overlay", "max_text_frac", lambda v, t: v > t,
          "share of the crop covered by burnt-in text (subtitles, captions, logos); to keep text, set "
          "select.max_text_frac=1.0"),
    Check("image_quality", "low_quality", "min_image_quality", lambda v, t: v < t),
)}


def threshold(cfg: SelectConfig, check: Check, embedding_kind: str | None = None) -> float | None:
    if check.threshold is None:
        return None
    value = getattr(cfg, check.threshold)
    if isinstance(value, dict):  # per embedding kind: cosines of different embedders are not comparable
        return value.get(embedding_kind or "", 0.0)
    return value


def first_failure(scores: dict[str, float], cfg: SelectConfig, reasons: tuple[str, ...] | None = None,
                  embedding_kind: str | None = None) -> tuple[str, str] | None:
    """(reason, detail) of the first failed check among ``reasons`` (all, in CHECKS order, when None) whose score
    exists, or None when every one passes."""
    for reason in reasons or tuple(CHECKS):
        check = CHECKS[reason]
        value = scores.get(check.score)
        if value is None:
            continue
        limit = threshold(cfg, check, embedding_kind)
        if check.fails(value, limit):
            detail = f"{check.score}={value:.4g}"
            if check.threshold:
                detail += f" (select.{check.threshold}={limit})"
            if check.hint:
                detail += f": {check.hint}"
            return reason, detail
    return None


class Select(Stage):
    """A select step: rejects a row whose scores fail one of ``checks`` (reason codes of CHECKS); writes nothing.
    Made with :func:`select_step`, one per place in the dataflow."""

    name = "select"
    Config = SelectConfig
    checks: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def needs_scores(cls) -> tuple[str, ...]:
        return tuple(CHECKS[r].score for r in cls.checks)

    def process(self, row: RowView) -> list[RowView]:
        scores = row.row.record.get("scores", {})
        kind = (row.get("id_embedding") or {}).get("kind") if "id_embedding" in self.reads else None
        failed = first_failure(scores, self.cfg, self.checks, kind)
        if failed:
            row.reject(*failed)
        return [row]


def select_step(*reasons: str, reads: tuple[str, ...] = ()) -> type[Select]:
    """A Select subclass applying ``reasons`` (its header names the checks, so a reader sees them in the dataflow)."""
    unknown = [r for r in reasons if r not in CHECKS]
    if unknown:
        raise UndeclaredFieldError(f"select step with unknown check(s) {unknown}; checks: {', '.join(CHECKS)}")
    return type(f"Select[{','.join(reasons)}]", (Select,), {"checks": tuple(reasons), "reads": tuple(reads)})
