"""The reference face of ``MotionCharacterPipeline``: a photo in, the aligned crop and identity embedding out.

The face is found and aligned by the build's own stages (``Decode`` picks the main face, scores second faces and
crops; ``Faces`` aligns it and embeds the identity), so the model sees the same kind of reference crop and
embedding it was trained on; no face or several faces raise :class:`ReferenceFaceError`.
"""

from __future__ import annotations

import dataclasses
import io
import pathlib
import types

import numpy as np

from human_motion.media import REFERENCE_MAX_SIDE_PX, read_reference_image


class ReferenceFaceError(ValueError):
    """The reference image cannot be used: ``reason`` is the build's rejection reason (``no_face``,
    ``several_faces``, ``small_face``, ``low_confidence``, ...)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass
class ReferenceFace:
    aligned: np.ndarray  # (S, S, 3) uint8: the build's face.jpg content (JPEG round trip included)
    embedding: np.ndarray  # (D,) float32, L2-normalised
    box: list[float] | None  # main face box in the input image's pixels (None without the face check)
    num_faces: int  # faces the detector found (before the second-face size/confidence rules)


def read_reference(path: str | pathlib.Path) -> np.ndarray:
    """A reference photo as RGB uint8, at most ``REFERENCE_MAX_SIDE_PX`` on its longer side (as ``hm eval`` reads
    it); raises ``media.MediaError`` for unreadable files."""
    return read_reference_image(str(path), REFERENCE_MAX_SIDE_PX)


def _to_rgb_array(image) -> np.ndarray:
    """An RGB uint8 (H, W, 3) array from an array (RGB, gray or RGBA), a PIL image or a file path."""
    if isinstance(image, (str, pathlib.Path)):
        return read_reference(image)
    if hasattr(image, "convert"):  # PIL
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"reference_image must be (H, W, 3) RGB, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8) if arr.dtype.kind == "f" else arr.astype(np.uint8)
    return np.ascontiguousarray(arr[..., :3])


def reference_sections(overrides: list[str]) -> types.SimpleNamespace:
    """The ``decode``, ``faces`` and ``select`` sections of ``hm build`` (the three the reference face goes
    through), with ``overrides`` such as ``faces.insightface_pack=antelopev2``."""
    from human_motion.config import ConfigError, load_config
    from human_motion.stages.decode import DecodeConfig
    from human_motion.stages.faces import FacesConfig
    from human_motion.stages.select import SelectConfig

    sections = {"decode": DecodeConfig, "faces": FacesConfig, "select": SelectConfig}
    other = [o for o in overrides if o.split(".", 1)[0] not in sections]
    if other:
        raise ConfigError(f"{other[0]!r}: the reference face takes hm build settings of the decode, faces and "
                          "select sections only")
    return types.SimpleNamespace(**{
        name: load_config(cls, None, [o.split(".", 1)[1] for o in overrides if o.split(".", 1)[0] == name])
        for name, cls in sections.items()})


class ReferenceFaces:
    """The build's face code on one photo: ``Decode`` (detector on a shrunk copy, main face by track/prominence,
    second faces by relative size and confidence, square crop), the build's face checks (the select step after
    decode), then ``Faces`` (FaceMesh landmarks, ArcFace-template alignment, identity embedding)."""

    def __init__(self, embedding_kind: str, detector: str | None = None, insightface_root: str | None = None,
                 overrides: list[str] | tuple[str, ...] = ()):
        embedder = {"dlib": "dlib", "arcface": "insightface"}[embedding_kind]
        sets = [f"faces.embedder={embedder}"]
        if detector:
            sets.append(f"decode.detector={detector}")
        if insightface_root:  # the detector's and the embedder's model pack
            sets += [f"decode.insightface_root={insightface_root}", f"faces.insightface_root={insightface_root}"]
        self.cfg = reference_sections([*sets, *overrides])
        self._decode = self._faces = None

    def _stages(self):
        if self._decode is None:
            from human_motion.stages.decode import Decode
            from human_motion.stages.faces import Faces

            self._decode, self._faces = Decode(self.cfg.decode), Faces(self.cfg.faces)
        return self._decode, self._faces

    def __call__(self, rgb: np.ndarray, face_check: bool = True) -> ReferenceFace:
        from human_motion.media import decode_jpg
        from human_motion.stages.base import RowView, StageError
        from human_motion.stages.dataflow import FACE_CHECKS
        from human_motion.stages.select import first_failure
        from human_motion.types import Row

        decode, faces = self._stages()
        if not face_check:
            return self._as_aligned(rgb, faces)
        row = Row(0, 0, 1, {"clip_id": "reference", "status": "ok"})
        try:
            decode.locate_and_crop(RowView(row, decode), rgb[None], None)
            failed = first_failure(row.record["scores"], self.cfg.select, FACE_CHECKS)
            if failed:
                raise StageError(*failed)
            faces.process(RowView(row, faces))
        except StageError as e:
            raise ReferenceFaceError(e.reason, _face_message(e, row, decode)) from None
        embedding = np.load(io.BytesIO(row.blobs["arcface.npy"]), allow_pickle=False).astype(np.float32)
        crop = row.record["crop"]["source_box"]
        k = (crop[2] - crop[0]) / self.cfg.decode.size_px
        box = [float(v * k + crop[i % 2]) for i, v in enumerate(row.record["faces"]["boxes"][0])]
        return ReferenceFace(decode_jpg(row.blobs["face.jpg"]), embedding, box, len(row.record["detections"][0]))

    def _as_aligned(self, rgb: np.ndarray, faces) -> ReferenceFace:
        """No detection: the image (centre square) is taken as an already aligned face crop; the embedder reads it
        with the ArcFace template's landmarks (and the whole image as the box)."""
        import cv2

        from human_motion.media import decode_jpg, encode_jpg
        from human_motion.backends.face_models import ARCFACE_TEMPLATE_112

        h, w = rgb.shape[:2]
        side = min(h, w)
        y0, x0 = (h - side) // 2, (w - side) // 2
        size = self.cfg.faces.face_size_px
        square = cv2.resize(rgb[y0:y0 + side, x0:x0 + side], (size, size), interpolation=cv2.INTER_AREA
                            if side > size else cv2.INTER_CUBIC)
        kps5 = ARCFACE_TEMPLATE_112 * (size / 112.0)
        embedding = faces.embedder.embed(square, np.array([0, 0, size, size], np.float32), kps5)
        aligned = decode_jpg(encode_jpg(square, self.cfg.faces.jpeg_quality))
        return ReferenceFace(aligned, np.asarray(embedding, np.float32), None, 0)


def _face_message(e, row, decode) -> str:
    detections = (row.record.get("detections") or [[]])[0]
    detector = getattr(decode.detector, "name", "the detector")
    if e.reason == "no_face":
        return (f"no face found in the reference image ({detector}); use a photo with one clearly visible face "
                "(or --no-face-check / face_check=False for an image that is already an aligned face crop)")
    if e.reason == "several_faces":
        return (f"several faces in the reference image ({len(detections)} found by {detector}); crop it to the one "
                "person whose identity the video should keep")
    return f"the reference face is not usable: {e.reason} ({e.detail}), the same rule `hm build` applies"
