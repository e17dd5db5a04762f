"""Quality: the project page's text-overlay and image-quality filters, as scores on one sampled frame per window.

Runs after decode, on the cropped frames. Writes ``scores.text_frac`` (fraction of the crop covered by text-like
regions, 0..1) and ``scores.image_quality`` (0..1, higher is better); ``select`` applies ``select.max_text_frac``
and ``select.min_image_quality`` (off by default; ``configs/paper.yaml`` turns them on).

Backends, each offline here, with the paper's model as an option:

- text: ``mser`` (default; OpenCV MSER character candidates, kept when their size, fill, stroke width, ink
  uniformity and contrast look like lettering, chained into horizontal lines of >= 4; the face box is ignored.
  On the demo and development media (66 frames) it finds no text; it finds burned-in captions, subtitles and
  lower-third banners at 512 px in every case tried, small channel logos in most, 1-px-thin text rarely) or
  ``easyocr`` (the OCR the paper names; ``pip install easyocr``, with ``quality.easyocr_model_dir`` holding its
  detector weights offline);
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

from human_motion.devices import auto_device
from human_motion.stages.base import RowView, Stage, StageResources, runtime


@dataclasses.dataclass(frozen=True)
class QualityConfig(StageResources):
    """Text-overlay and image-quality scores on one sampled frame per window."""

    text_backend: Literal["mser", "easyocr", "none"] = "mser"
    easyocr_langs: tuple[str, ...] = ("en",)
    easyocr_model_dir: str | None = None  # EasyOCR weights folder (offline); None: EasyOCR's own cache/download
    easyocr_min_conf: float = 0.3
    iq_backend: Literal["sharpness", "clip_iqa", "none"] = "sharpness"
    sharpness_ref: float = 100.0  # Laplacian variance that maps to image_quality 0.5
    clip_model: str = "openai/clip-vit-base-patch32"  # CLIP-IQA: a hub id or a local folder
    device: str = runtime("auto")  # auto | cpu | cuda (easyocr, clip_iqa)
    num_cpus: float = runtime(0.25)

WORK_PX = 512  # text detection runs at this side (crops are 512 by default)
IQ_PX = 256
CLIP_IQA_PROMPTS = ("Good photo.", "Bad photo.")


def union_frac(boxes: list[tuple[float, float, float, float]], h: int, w: int) -> float:
    """Fraction of an h x w frame covered by the union of boxes (x0, y0, x1, y1) in pixels."""
    if not boxes:
        return 0.0
    mask = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in boxes:
        mask[max(0, int(y0)):max(0, int(np.ceil(y1))), max(0, int(x0)):max(0, int(np.ceil(x1)))] = True
    return float(mask.mean())


def text_components(gray: np.ndarray, face_box: np.ndarray | None) -> list[tuple]:
    """Character candidates (x, y, w, h, stroke width, mean gray): MSER regions (dark on light and light on dark)
    of character size, shape, fill and stroke width, with uniform ink that contrasts with its surroundings
    (texture, wrinkles, stars and badges mostly fail one of these); centres inside the face box are ignored."""
    h, w = gray.shape
    mser = cv2.MSER_create(5, max(8, int(h * w * 2e-5)), int(h * w * 0.01))
    out = []
    for inverted, img in ((False, gray), (True, 255 - gray)):
        regions, bboxes = mser.detectRegions(img)
        for pts, (x, y, bw, bh) in zip(regions, bboxes):
            if not (0.012 * h <= bh <= 0.08 * h and 0.08 <= bw / bh <= 1.5):
                continue
            if face_box is not None:
                cx, cy = x + bw / 2, y + bh / 2
                if face_box[0] <= cx <= face_box[2] and face_box[1] <= cy <= face_box[3]:
                    continue
            fill = len(pts) / float(bw * bh)
            if not 0.15 <= fill <= 0.9:
                continue
            mask = np.zeros((bh + 2, bw + 2), np.uint8)
            mask[pts[:, 1] - y + 1, pts[:, 0] - x + 1] = 1
            dt = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
            inner = dt[mask > 0]
            stroke = 2.0 * float(np.percentile(inner, 90))
            if not 0.04 * bh <= stroke <= 0.4 * bh:
                continue
            vals = gray[pts[:, 1], pts[:, 0]].astype(np.float32)
            x0, y0 = max(0, x - 2), max(0, y - 2)
            x1, y1 = min(w, x + bw + 2), min(h, y + bh + 2)
            box = gray[y0:y1, x0:x1].astype(np.float32)
            bmask = np.ones(box.shape, bool)
            bmask[pts[:, 1] - y0, pts[:, 0] - x0] = False
            bg = box[bmask]
            if bg.size < 4:
                continue
            contrast = abs(float(vals.mean()) - float(np.median(bg)))
            if contrast < 40 or vals.std() > 0.45 * contrast:
                continue
            out.append((int(x), int(y), int(bw), int(bh), stroke, float(vals.mean())))
    return out


def mser_text_boxes(gray: np.ndarray, face_box: np.ndarray | None = None) -> list[tuple[int, int, int, int]]:
    """Text line boxes (x0, y0, x1, y1): >= 4 character candidates of similar height, stroke and ink, chained left
    to right with gaps under one character height, spanning at least twice their height."""
    comps = sorted(set(text_components(gray, face_box)))
    kept: list[tuple] = []  # nested duplicates dropped (MSER returns a region and its slightly larger parents)
    for c in comps:
        if any(abs(c[0] - k[0]) <= 2 and abs(c[1] - k[1]) <= 2 and abs(c[2] - k[2]) <= 3 and abs(c[3] - k[3]) <= 3
               for k in kept[-8:]):
            continue
        kept.append(c)
    used = [False] * len(kept)
    lines = []
    for i, (x, y, bw, bh, sw, val) in enumerate(kept):
        if used[i]:
            continue
        line = [i]
        used[i] = True
        right, cy, hh = x + bw, y + bh / 2, bh
        for j in range(i + 1, len(kept)):
            xj, yj, wj, hj, swj, vj = kept[j]
            if xj > right + 1.0 * hh:
                break
            if used[j]:
                continue
            if (abs((yj + hj / 2) - cy) < 0.3 * hh and 0.7 < hj / hh < 1.4 and xj >= right - 0.3 * hh
                    and 0.5 < swj / sw < 2.0 and abs(vj - val) < 50):
                line.append(j)
                used[j] = True
                right = max(right, xj + wj)
        if len(line) >= 4:
            xs = [kept[k] for k in line]
            x0, y0 = min(b[0] for b in xs), min(b[1] for b in xs)
            x1, y1 = max(b[0] + b[2] for b in xs), max(b[1] + b[3] for b in xs)
            if x1 - x0 >= 2.0 * (y1 - y0):
                lines.append((x0, y0, x1, y1))
    return lines


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

    def __init__(self, cfg: QualityConfig):
        super().__init__(cfg)
        q = self.q = cfg
        self.ocr = self._load_easyocr() if q.text_backend == "easyocr" else None
        self.clip = self._load_clip() if q.iq_backend == "clip_iqa" else None

    def _load_easyocr(self):
        try:
            import easyocr
        except ImportError:
            raise ImportError("quality.text_backend=easyocr needs EasyOCR: pip install easyocr "
                              "(or use quality.text_backend=mser, which runs offline)") from None
        kwargs = {"gpu": self.q.device != "cpu"}
        if self.q.easyocr_model_dir:
            kwargs.update(model_storage_directory=self.q.easyocr_model_dir, download_enabled=False)
        return easyocr.Reader(list(self.q.easyocr_langs), **kwargs)

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
        if self.q.text_backend != "none":
            text_boxes = self._text_boxes(frame, face)
            row.score("text_frac", union_frac(text_boxes, s, s))
            info["text_boxes"] = [list(map(int, b)) for b in text_boxes[:20]]
            row.backend("text", self.q.text_backend)
        if self.q.iq_backend != "none":
            row.score("image_quality", self._image_quality(frame, face))
            row.backend("image_quality", self.q.iq_backend if self.q.iq_backend != "clip_iqa"
                        else f"clip_iqa {self.q.clip_model}")
        row["quality"] = info
        return [row]

    def _text_boxes(self, frame: np.ndarray, face: np.ndarray | None) -> list[tuple[float, float, float, float]]:
        if self.ocr is not None:
            out = []
            for pts, _text, conf in self.ocr.readtext(frame):
                if conf >= self.q.easyocr_min_conf:
                    pts = np.asarray(pts, np.float32)
                    out.append((*pts.min(0), *pts.max(0)))
            return out
        s = frame.shape[0]
        k = WORK_PX / s
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if k != 1:
            gray = cv2.resize(gray, (WORK_PX, WORK_PX), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
        lines = mser_text_boxes(gray, face * k if face is not None else None)
        return [tuple(v / k for v in b) for b in lines]

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
