"""The one place thresholds are applied. Stages write scores into ``record["scores"]``; after each stage,
:func:`select` checks every threshold whose score exists and names the first that fails. Changing a threshold
needs no recomputation of the scores (they are kept for accepted and rejected rows alike).
"""

from __future__ import annotations

from human_motion.engine.config import SelectConfig

# (score, reason, fails(value, cfg) -> bool, threshold for the message), checked in this order.
CHECKS = [
    ("source_min_side_px", "low_resolution", lambda v, c: v < c.min_source_side_px, "min_source_side_px"),
    ("face_found_frac", "no_face", lambda v, c: v == 0, None),
    ("multi_face_frac", "several_faces", lambda v, c: v > c.max_multi_face_frac, "max_multi_face_frac"),
    ("face_side_px", "small_face", lambda v, c: v < c.min_face_side_px, "min_face_side_px"),
    ("face_score", "low_confidence", lambda v, c: v < c.min_face_score, "min_face_score"),
    ("face_missing_frac", "face_lost", lambda v, c: v > c.max_missing_face_frac, "max_missing_face_frac"),
    ("id_min_cos", "identity_switch", lambda v, c, kind: v < c.min_id_cos.get(kind, 0.0), "min_id_cos"),
    ("mean_luma", "too_dark", lambda v, c: v < c.min_mean_luma, "min_mean_luma"),
    ("text_frac", "text_overlay", lambda v, c: v > c.max_text_frac, "max_text_frac"),
    ("image_quality", "low_quality", lambda v, c: v < c.min_image_quality, "min_image_quality"),
]


def select(scores: dict[str, float], cfg: SelectConfig, embedding_kind: str | None = None) -> tuple[str, str] | None:
    """(reason, detail) of the first failed threshold, or None when every available score passes.
    ``embedding_kind`` picks the identity threshold (cosines of different embedders are not comparable)."""
    for score, reason, fails, threshold in CHECKS:
        value = scores.get(score)
        if value is None:
            continue
        failed = fails(value, cfg, embedding_kind) if score == "id_min_cos" else fails(value, cfg)
        if failed:
            detail = f"{score}={value:.4g}"
            if threshold:
                limit = getattr(cfg, threshold)
                limit = limit.get(embedding_kind) if isinstance(limit, dict) else limit
                detail += f" (select.{threshold}={limit})"
            return reason, detail
    return None
