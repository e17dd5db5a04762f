"""Faces: landmarks on every stored frame, the reference face (aligned crop) and its identity embedding, and an
identity check across the window.

Reads the cropped frames and the face boxes that decode found. Writes ``faces.landmarks5`` and per-frame
expression/pose ``features`` (for the landmark captioner), ``faces.reference_frame``, the ``face.jpg`` and
``arcface.npy`` members, ``id_embedding`` (kind, dim, backend) and the ``id_min_cos`` score.
"""

from __future__ import annotations

import io

import numpy as np

from human_motion.media import encode_jpg
from human_motion.engine.config import BuildConfig
from human_motion.backends.face_models import align_face, make_embedder, make_landmarker, mesh_features, mesh_to_kps5
from human_motion.stages.select import select
from human_motion.stages.base import Stage, StageError
from human_motion.types import Row


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


class Faces(Stage):
    name = "faces"

    def __init__(self, cfg: BuildConfig):
        super().__init__(cfg)
        f = cfg.faces
        self.landmarker = make_landmarker(f.landmarker)
        self.embedder = make_embedder(f.embedder, f.insightface_root, f.insightface_pack)

    def process(self, row: Row) -> list[Row]:
        frames = row.frames
        faces = row.record["faces"]
        boxes = np.asarray(faces["boxes"], np.float32)
        kps5, features = [], []
        for i, frame in enumerate(frames):
            mesh = self.landmarker.landmarks(frame) if self.landmarker else None
            if mesh is not None:
                kps5.append(mesh_to_kps5(mesh))
                features.append(mesh_features(mesh))
            else:
                det = faces["kps5_detector"][i]
                kps5.append(np.asarray(det, np.float32) if det is not None else None)
                features.append(None)
        usable = [i for i, k in enumerate(kps5) if k is not None]
        if not usable:
            raise StageError("no_landmarks", "no frame has facial landmarks")
        ref = _reference_frame(features, usable, faces["scores"])
        # Frames without landmarks borrow the nearest frame's (boxes were already interpolated by decode).
        filled = [kps5[i] if kps5[i] is not None else kps5[min(usable, key=lambda u: abs(u - i))]
                  for i in range(len(kps5))]
        aligned = align_face(frames[ref], filled[ref], self.cfg.faces.face_size_px)
        # Identity switch: embed a few frames spread over the window besides the reference, and compare.
        others = sorted({int(i) for i in np.linspace(0, len(frames) - 1, self.cfg.faces.id_check_frames + 2).round()
                         if i != ref and faces["present"][int(i)]})
        embeddings = self._embed([ref, *others], frames, boxes, filled)
        embedding = embeddings[0]
        cosines = [float(embedding @ e) for e in embeddings[1:]]
        scores = row.record["scores"]
        scores["id_min_cos"] = min(cosines) if cosines else 1.0
        faces.update(landmarks5=[k.tolist() for k in filled], features=features, reference_frame=ref)
        faces.pop("kps5_detector", None)
        row.record["id_embedding"] = {"kind": self.embedder.kind, "dim": int(embedding.shape[0]),
                                      "backend": self.embedder.backend}
        backends = row.record.setdefault("backends", {})
        backends["embedder"] = f"{self.embedder.backend} {self.embedder.version}"
        if self.landmarker:
            backends["landmarker"] = f"{self.landmarker.name} {self.landmarker.version}"
        row.blobs["face.jpg"] = encode_jpg(aligned, self.cfg.sink.jpeg_quality)
        row.blobs["arcface.npy"] = npy_bytes(embedding.astype(np.float32))
        failed = select(scores, self.cfg.select, self.embedder.kind)
        if failed:
            raise StageError(*failed)
        return [row]

    def _embed(self, idx: list[int], frames: np.ndarray, boxes: np.ndarray, kps: list) -> np.ndarray:
        """Embeddings (n, D) of the faces of frames ``idx``: one batched call when the embedder has one (ArcFace
        on a GPU), else one call per face (dlib)."""
        if hasattr(self.embedder, "embed_batch"):
            return self.embedder.embed_batch([(frames[i], kps[i]) for i in idx])
        return np.stack([self.embedder.embed(frames[i], boxes[i], kps[i]) for i in idx])


def _reference_frame(features: list[dict | None], usable: list[int], det_scores: list[float]) -> int:
    """The most frontal frame with landmarks (smallest |yaw|, then |pitch - typical|), else the most confident."""
    with_mesh = [i for i in usable if features[i] is not None]
    if with_mesh:
        return min(with_mesh, key=lambda i: abs(features[i]["yaw"]) + 0.1 * abs(features[i]["roll"]) / 10)
    return max(usable, key=lambda i: det_scores[i])
