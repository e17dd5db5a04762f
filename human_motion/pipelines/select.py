"""The one place thresholds are applied. Stages write scores into ``record["scores"]``; after each stage,
:func:`select` checks every threshold whose score exists and names the first that fails. Changing a threshold
needs no recomputation of the scores (they are kept for accepted and rejected rows alike).
"""

from __future__ import annotations

from human_motion.pipelines.config import SelectConfig

# (score, reason, fails(value, cfg) -> bool, threshold for the message), checked in this order.
CHECKS = [
    ("source_min_side_px", "low_resolution", lambda v, c: v < c.min_source_side_px, "min_source_side_px"),
    ("face_found_frac", "no_face", lambda v, c: v == 0, None),
    ("multi_face_frac", "several_faces", lambda v, c: v > c.max_multi_face_frac, "max_multi_face_frac"),
    ("face_side_px", "small_face", lambda v, c: v < c.min_face_side_px, "min_face_side_px"),
    ("face_score", "low_confidence", lambda v, c: v < c.min_face_score, "min_face_score"),
    ("face_missing_frac", "face_lost", lambda v, c: v > c.max_missing_face_frac, "max_missing_face_frac"),
    ("id_min_cos", "identity_switch", lambda v, c: v < c.min_id_cos, "min_id_cos"),
    ("mean_luma", "too_dark", lambda v, c: v < c.min_mean_luma, "min_mean_luma"),
]


def select(scores: dict[str, float], cfg: SelectConfig) -> tuple[str, str] | None:
    """(reason, detail) of the first failed threshold, or None when every available score passes."""
    for score, reason, fails, threshold in CHECKS:
        value = scores.get(score)
        if value is None:
            continue
        if fails(value, cfg):
            detail = f"{score}={value:.4g}"
            if threshold:
                detail += f" (select.{threshold}={getattr(cfg, threshold)})"
            return reason, detail
    return None
