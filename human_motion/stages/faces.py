"""Faces: landmarks on every stored frame, the reference face (aligned crop) and its identity embedding, and the
score of an identity check across the window.

Writes ``landmarks`` (5 points and expression/pose features per frame, for the landmark captioner, and the
reference frame), the ``face.jpg`` and ``arcface.npy`` members, ``id_embedding`` (kind, dim, backend) and the
``id_min_cos`` score: the lowest cosine between the reference embedding and a few frames spread over the window.
The select step after it applies ``select.min_id_cos``.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Literal

import cv2
import numpy as np

from human_motion.backends.face_models import align_face, make_embedder, make_landmarker, mesh_features, mesh_to_kps5
from human_motion.media import encode_jpg
from human_motion.metrics import content_change, segment_starts
from human_motion.stages.base import RowView, Stage, StageError, StageResources


@dataclasses.dataclass(frozen=True)
class FacesConfig(StageResources):
    embedder: Literal["dlib", "insightface"] = "dlib"
    landmarker: Literal["mediapipe", "none"] = "mediapipe"
    insightface_root: str | None = None  # embedder=insightface: folder of an insightface model pack
    insightface_pack: str = "buffalo_l"
    # Identity switches: besides the reference, one frame of every shot or face track of the window that does not
    # hold the reference is embedded (a cut: the HSV content change between sampled frames over cut_threshold, as
    # PySceneDetect's content detector; a track jump: consecutive face boxes overlapping by less than
    # track_min_iou, or the face found again after frames without it). dlib's embedding costs ~60-90 ms a face on
    # one CPU core, the largest share of a CPU build, so a window of one shot costs one. id_check_frames adds that
    # many frames spread over the window, checked whatever the track says (the behaviour before: 2).
    cut_threshold: float = 27.0
    track_min_iou: float = 0.3
    id_check_frames: int = 0
    face_size_px: int = 256  # side of the stored aligned reference face
    jpeg_quality: int = 95  # of face.jpg


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


class Faces(Stage):
    name = "faces"
    Config = FacesConfig
    reads = ("frames", "faces")
    writes = ("landmarks", "id_embedding")
    scores = ("id_min_cos",)
    members = ("face.jpg", "arcface.npy")

    def __init__(self, cfg: FacesConfig):
        super().__init__(cfg)
        self.landmarker = make_landmarker(cfg.landmarker)
        self.embedder = make_embedder(cfg.embedder, cfg.insightface_root, cfg.insightface_pack)

    def close(self) -> None:
        getattr(self.landmarker, "close", lambda: None)()

    def process(self, row: RowView) -> list[RowView]:
        frames = row["frames"]
        faces = row["faces"]
        kps5, features = self._landmarks(frames, faces["kps5_detector"])
        usable = [i for i, k in enumerate(kps5) if k is not None]
        if not usable:
            raise StageError("no_landmarks", "no frame has facial landmarks")
        ref = _reference_frame(features, usable, faces["scores"])
        # Frames without landmarks borrow the nearest frame's (boxes were already interpolated by decode).
        filled = [kps5[i] if kps5[i] is not None else kps5[min(usable, key=lambda u: abs(u - i))]
                  for i in range(len(kps5))]
        aligned = align_face(frames[ref], filled[ref], self.cfg.face_size_px)
        others = self._identity_checks(frames, faces, ref)
        embeddings = self._embed([ref, *others], frames, np.asarray(faces["boxes"], np.float32), filled)
        embedding = embeddings[0]
        cosines = [float(embedding @ e) for e in embeddings[1:]]
        row.score("id_min_cos", min(cosines) if cosines else 1.0)
        row["landmarks"] = {"landmarks5": [k.tolist() for k in filled], "features": features, "reference_frame": ref}
        row["id_embedding"] = {"kind": self.embedder.kind, "dim": int(embedding.shape[0]),
                               "backend": self.embedder.backend}
        row.backend("embedder", f"{self.embedder.backend} {self.embedder.version}")
        if self.landmarker:
            row.backend("landmarker", f"{self.landmarker.name} {self.landmarker.version}")
        row.member("face.jpg", encode_jpg(aligned, self.cfg.jpeg_quality))
        row.member("arcface.npy", npy_bytes(embedding.astype(np.float32)))
        return [row]

    def _landmarks(self, frames: np.ndarray, detector_kps: list) -> tuple[list, list]:
        """5 points and expression/pose features per frame: FaceMesh's, else the detector's points (no features)."""
        kps5, features = [], []
        for i, frame in enumerate(frames):
            mesh = self.landmarker.landmarks(frame) if self.landmarker else None
            if mesh is not None:
                kps5.append(mesh_to_kps5(mesh))
                features.append(mesh_features(mesh))
            else:
                det = detector_kps[i]
                kps5.append(np.asarray(det, np.float32) if det is not None else None)
                features.append(None)
        return kps5, features

    def _identity_checks(self, frames: np.ndarray, faces: dict, ref: int) -> list[int]:
        """Frames to embed besides the reference: the middle frame with a face of every segment (shot or face
        track) other than the reference's, plus ``id_check_frames`` spread over the window."""
        present = np.asarray(faces["present"], bool)
        small = [cv2.cvtColor(cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2HSV)
                 for f in frames]
        changes = [content_change(a, b) for a, b in zip(small[:-1], small[1:])]
        starts = segment_starts(changes, np.asarray(faces["boxes"], np.float32), present, self.cfg.cut_threshold,
                                self.cfg.track_min_iou) + [len(frames)]
        picks = set()
        for a, b in zip(starts[:-1], starts[1:]):
            with_face = [i for i in range(a, b) if present[i]]
            if with_face and not a <= ref < b:
                picks.add(with_face[len(with_face) // 2])
        if self.cfg.id_check_frames:
            picks |= {int(i) for i in np.linspace(0, len(frames) - 1, self.cfg.id_check_frames + 2).round()}
        return sorted(i for i in picks if i != ref and present[i])

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
