"""insightface backends: SCRFD detection with 5-point landmarks and ArcFace 512-d embeddings from a model pack.

A model pack is insightface's own layout, ``<root>/models/<pack>/*.onnx`` (``buffalo_l``: ``det_10g.onnx`` SCRFD-10G,
``w600k_r50.onnx`` ArcFace R50 on WebFace600K, plus landmark and attribute models this project does not use).
``decode.insightface_root`` (the detector) and ``faces.insightface_root`` (the embedder) name ``<root>`` (``null``:
``~/.insightface``, insightface's default); a folder that holds the ``.onnx`` files directly also works. A missing
pack is fetched by insightface's own ``ensure_available`` when the machine is online; offline, the error says where
the files must go.

Models load through ``insightface.model_zoo.get_model`` (it recognises the task from the ONNX graph: ``SCRFD`` for
detection, ``ArcFaceONNX`` for recognition) once per Ray actor, on onnxruntime's ``CUDAExecutionProvider`` when that
provider is available (onnxruntime-gpu and a visible GPU), else on the CPU. Faces are aligned with insightface's
``face_align.norm_crop`` (the ArcFace 5-point template), as in insightface's own ``ArcFaceONNX.get``. Written for
insightface 2.1 (``scripts/setup.sh`` installs it without its dependencies: it asks for the non-headless opencv-python);
``FaceAnalysis`` is not used, so its 2.x default of several detection passes (no ``det_size``) does not apply: the
detector is prepared with one explicit size.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pathlib
import warnings

import numpy as np

from human_motion.backends.common import Detection, missing_backend

log = logging.getLogger("human_motion")

# Known file names per task in insightface's packs, tried first so a pack loads only the models it needs.
KNOWN_FILES = {
    "detection": ("det_10g.onnx", "det_2.5g.onnx", "det_500m.onnx", "scrfd_10g_bnkps.onnx", "scrfd_2.5g_bnkps.onnx"),
    "recognition": ("w600k_r50.onnx", "w600k_mbf.onnx", "glintr100.onnx"),
}


def _import_insightface():
    try:
        import insightface
        import onnxruntime
        from insightface.model_zoo import model_zoo
        from insightface.utils import face_align
    except ImportError as e:
        raise missing_backend("insightface", "insightface and onnxruntime (pip install 'human-motion[insightface]'; "
                       "onnxruntime-gpu for CUDA)") from e
    # norm_crop calls scikit-image's SimilarityTransform.estimate, deprecated since scikit-image 0.26: a warning in
    # every worker of every build, about insightface's code, that the user can do nothing about.
    warnings.filterwarnings("ignore", message="`estimate` is deprecated", category=FutureWarning,
                            module="insightface")
    return insightface, onnxruntime, model_zoo, face_align


def providers(device: str = "auto") -> list[str]:
    """onnxruntime providers: CUDA first when available (and not ``device='cpu'``), then the CPU."""
    _, onnxruntime, _, _ = _import_insightface()
    available = onnxruntime.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise RuntimeError("faces.device=cuda but onnxruntime has no CUDAExecutionProvider; install onnxruntime-gpu "
                           f"(available providers: {available})")
    # Ray hides the GPUs from actors without num_gpus (CUDA_VISIBLE_DEVICES=""): a CUDA session would fail there.
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES") == ""
    if device != "cpu" and "CUDAExecutionProvider" in available and not (hidden and device == "auto"):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def pack_dir(root: str | None, pack: str) -> pathlib.Path:
    """The folder of a model pack: ``<root>/models/<pack>``, or ``root`` itself when it holds .onnx files.
    Missing: insightface downloads it (online), else a FileNotFoundError that says where the files go."""
    base = pathlib.Path(os.path.expanduser(root or "~/.insightface"))
    for candidate in (base / "models" / pack, base):
        if candidate.is_dir() and any(candidate.glob("*.onnx")):
            return candidate
    from insightface.utils import ensure_available

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            found = pathlib.Path(ensure_available("models", pack, root=str(base)))
    except Exception as e:  # any download failure (offline, proxy, bad zip) means the same to a user
        raise FileNotFoundError(
            f"insightface model pack {pack!r} not found under {base / 'models' / pack} and could not be downloaded "
            f"({type(e).__name__}: {e}); unpack {pack}.zip there (e.g. {base / 'models' / pack / 'det_10g.onnx'}) "
            "and set decode.insightface_root (detector) or faces.insightface_root (embedder)") from e
    if not any(found.glob("*.onnx")):
        raise FileNotFoundError(f"no .onnx files in {found}: a {pack}.zip nested in a sub-folder? move its files up")
    return found


def load_pack_model(folder: pathlib.Path, task: str, device: str = "auto"):
    """(model, file) for ``task`` ('detection' | 'recognition') from a pack, loaded by insightface's model zoo."""
    _, _, model_zoo, _ = _import_insightface()
    files = sorted(folder.glob("*.onnx"))
    known = [f for name in KNOWN_FILES[task] for f in files if f.name == name]
    order = known + [f for f in files if f not in known and f.name not in sum(KNOWN_FILES.values(), ())]
    provs = providers(device)
    for path in order:
        model = model_zoo.get_model(str(path), providers=provs)
        if model is not None and model.taskname == task:
            log.info("insightface %s: %s on %s", task, path, model.session.get_providers())
            return model, path
        del model
    raise FileNotFoundError(f"no insightface {task} model in {folder} (files: {[f.name for f in files]})")


def _version(onnx_session) -> str:
    insightface, onnxruntime, _, _ = _import_insightface()
    return f"{insightface.__version__} onnxruntime {onnxruntime.__version__} {onnx_session.get_providers()[0]}"


class InsightfaceDetector:
    """SCRFD (or RetinaFace) from a pack: boxes, scores and 5 points (eyes, nose, mouth corners; image-left first).

    Frames are letterboxed into ``det_size_px`` square by insightface's ``detect``; models with a fixed input size use
    their own. Images are RGB here and BGR for insightface (its blob swaps channels back)."""

    def __init__(self, root: str | None, pack: str = "buffalo_l", min_score: float = 0.3, det_size_px: int = 640,
                 device: str = "auto"):
        _import_insightface()
        folder = pack_dir(root, pack)
        self.model, path = load_pack_model(folder, "detection", device)
        # One explicit size, one pass (a model with a fixed input size keeps its own).
        self.model.prepare(0, input_size=(det_size_px, det_size_px), det_thresh=min_score)
        self.name = f"insightface:{pack}/{path.name}"
        self.version = _version(self.model.session)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        boxes, kpss = self.model.detect(bgr, max_num=0)
        out = []
        for i, b in enumerate(boxes):
            kps = None if kpss is None else np.asarray(kpss[i], np.float32).reshape(5, 2)
            out.append(Detection(np.asarray(b[:4], np.float32), float(b[4]), kps))
        return out


class ArcfaceEmbedder:
    """ArcFace from a pack: the face aligned by its 5 points (``norm_crop`` to the model's input size), then the
    model's embedding, L2-normalised. ``embed_batch`` runs several faces in one onnxruntime call (one GPU launch)."""

    kind = "arcface"

    def __init__(self, root: str | None, pack: str = "buffalo_l", device: str = "auto"):
        _, _, _, self.face_align = _import_insightface()
        folder = pack_dir(root, pack)
        self.model, path = load_pack_model(folder, "recognition", device)
        self.dim = int(self.model.output_shape[-1])
        self.backend = f"insightface:{pack}/{path.name}"  # the sample's id_embedding.backend names the model file
        self.version = _version(self.model.session)
        self.input_px = int(self.model.input_size[0])

    def align(self, rgb: np.ndarray, kps5: np.ndarray) -> np.ndarray:
        """The aligned crop, BGR (what insightface's recognition models read), ``input_px`` square."""
        if kps5 is None:
            raise ValueError("the insightface embedder needs 5-point landmarks to align the face")
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        return self.face_align.norm_crop(bgr, landmark=np.asarray(kps5, np.float32).reshape(5, 2),
                                         image_size=self.input_px)

    def embed_batch(self, faces: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """(n, dim) float32, each row L2-normalised, for ``[(rgb, kps5), ...]``."""
        crops = [self.align(rgb, kps) for rgb, kps in faces]
        feats = np.asarray(self.model.get_feat(crops), np.float32).reshape(len(crops), -1)
        return feats / (np.linalg.norm(feats, axis=1, keepdims=True) + 1e-8)

    def embed(self, rgb: np.ndarray, box: np.ndarray | None = None, kps5: np.ndarray | None = None) -> np.ndarray:
        return self.embed_batch([(rgb, kps5)])[0]
