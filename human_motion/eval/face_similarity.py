"""Face Similarity: cosine between the reference face's identity embedding and each frame's, averaged over the
frames where a face is found (frames without one are counted and reported, never scored as 0).

The build's face code does the work (backends/face_models.py): a detector gives boxes and 5 points, the largest face
is kept, and the embedder aligns it (ArcFace: similarity transform to its 112 px template; dlib: its 5-point shape
predictor) and returns an L2-normalised vector. The paper's number is ArcFace (insightface); the offline default is
dlib's 128-d ResNet, whose cosines are on another scale (same-person pairs ~0.9+), so the output names the embedder.
"""

from __future__ import annotations

import numpy as np

from human_motion.backends.face_models import make_detector, make_embedder


class FaceSimilarity:
    """Reads a reference image and frames (h, w, 3) uint8 RGB; writes the mean cosine and the face counts."""

    def __init__(self, cfg):
        self.detector = make_detector(cfg.detector, cfg.detect_min_score, cfg.insightface_root, cfg.insightface_pack)
        self.embedder = make_embedder(cfg.embedder, cfg.insightface_root, cfg.insightface_pack)
        self.name = f"{self.detector.name} + {self.embedder.backend} ({self.embedder.kind}, {self.embedder.dim}-d)"

    def embed_largest(self, rgb: np.ndarray) -> np.ndarray | None:
        """Identity embedding of the largest face in ``rgb``, or None when there is no face."""
        dets = self.detector.detect(rgb)
        if not dets:
            return None
        d = max(dets, key=lambda d: float((d.box[2] - d.box[0]) * (d.box[3] - d.box[1])))
        return self.embedder.embed(rgb, d.box, d.kps5)

    def score(self, reference: np.ndarray, frames: np.ndarray, ref_embedding: np.ndarray | None = None) -> dict:
        ref = self.embed_largest(reference) if ref_embedding is None else ref_embedding
        if ref is None:
            return {"face_similarity": None, "face_error": "no face in the reference image"}
        cosines, missing = [], 0
        for frame in frames:
            emb = self.embed_largest(frame)
            if emb is None:
                missing += 1
            else:
                cosines.append(float(np.dot(ref, emb)))
        return {
            "face_similarity": float(np.mean(cosines)) if cosines else None,
            "frames_with_face": len(cosines), "frames_without_face": missing,
            **({"face_error": "no face in any frame"} if not cosines else {}),
        }
