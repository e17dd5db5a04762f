"""Pure numpy maths of the curation stages: motion intensity (paper Eq. 5-7), flow maps (Eq. 9 input), crop
geometry and face-size scores. No I/O, no models: everything here is tested on hand-made arrays.
"""

from __future__ import annotations

import cv2
import numpy as np


def flow_magnitude(flow: np.ndarray) -> np.ndarray:
    """|f| per pixel of a flow field (h, w, 2) -> (h, w) float32."""
    return np.sqrt(np.square(flow[..., 0], dtype=np.float32) + np.square(flow[..., 1], dtype=np.float32))


def compute_flow_intensity(magnitudes: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Motion intensity of a clip from its flow magnitudes, as the paper defines it.

    magnitudes: (n, h, w) float, |f_i| for the n steps between consecutive frames, in pixels per step.
    Per step i (Eq. 5): tau_i = mean(|f_i|); foreground mask m_i = |f_i| > tau_i.
    Eq. 6: f_i,fg = mean of |f_i| over the mask (0 when the mask is empty: a perfectly uniform or still field
    has no foreground... except uniform motion, where every pixel moves by the same amount: see below).
    Eq. 7: M = mean_i f_i,fg.

    Returns (M, per_step (n,), foreground maps (n, h, w) = m_i * |f_i|).
    A perfectly uniform field (every pixel moving by exactly tau_i) has an empty strict mask; its foreground motion
    is tau_i itself, so we use it rather than report 0 for a clip that clearly moves.
    """
    mags = np.asarray(magnitudes, dtype=np.float32)
    if mags.ndim != 3:
        raise ValueError(f"magnitudes must be (steps, h, w), got {mags.shape}")
    if mags.shape[0] == 0:
        return 0.0, np.zeros(0, np.float32), np.zeros_like(mags)
    tau = mags.mean(axis=(1, 2), keepdims=True)  # (n, 1, 1)
    mask = mags > tau
    counts = mask.sum(axis=(1, 2))
    sums = np.where(mask, mags, 0.0).sum(axis=(1, 2))
    per_step = np.where(counts > 0, sums / np.maximum(counts, 1), tau[:, 0, 0]).astype(np.float32)
    fg = np.where(mask, mags, 0.0).astype(np.float32)
    return float(per_step.mean()), per_step, fg


def flow_maps_uint8(fg: np.ndarray, out_px: int) -> np.ndarray:
    """Foreground flow maps (n, h, w) in pixels -> uint8 (n, out_px, out_px), area-averaged, clipped at 255."""
    out = np.empty((fg.shape[0], out_px, out_px), dtype=np.uint8)
    for i, m in enumerate(fg):
        small = cv2.resize(m, (out_px, out_px), interpolation=cv2.INTER_AREA)
        out[i] = np.clip(np.rint(small), 0, 255).astype(np.uint8)
    return out


def square_crop_box(
    boxes: np.ndarray, frame_w: int, frame_h: int, scale: float
) -> tuple[int, int, int, int]:
    """One square crop (x0, y0, x1, y1) for a whole window: centred on the union of the face boxes (n, 4), side
    ``scale`` x the union's longer side, shrunk to fit the frame and shifted inside it. Fixed over the window, so
    head motion stays in the picture (as in CelebV-HQ's clips)."""
    x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
    x1, y1 = boxes[:, 2].max(), boxes[:, 3].max()
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = min(max(x1 - x0, y1 - y0) * scale, frame_w, frame_h)
    side = int(round(side))
    left = int(round(min(max(cx - side / 2, 0), frame_w - side)))
    top = int(round(min(max(cy - side / 2, 0), frame_h - side)))
    return left, top, left + side, top + side


def box_side(boxes: np.ndarray) -> np.ndarray:
    """Face box side (geometric mean of width and height) of boxes (n, 4)."""
    w = np.clip(boxes[:, 2] - boxes[:, 0], 0, None)
    h = np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    return np.sqrt(w * h)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def face_area_frac(box: np.ndarray, frame_w: int, frame_h: int) -> float:
    """Fraction of the frame covered by a face box."""
    w, h = max(0.0, box[2] - box[0]), max(0.0, box[3] - box[1])
    return float(w * h / (frame_w * frame_h))


def interpolate_missing(boxes: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Fill rows of (n, k) where ``present`` is False by linear interpolation over frame index (edges: nearest)."""
    if present.all() or not present.any():
        return boxes
    idx = np.arange(len(boxes))
    out = boxes.copy()
    for j in range(boxes.shape[1]):
        out[~present, j] = np.interp(idx[~present], idx[present], boxes[present, j])
    return out


def content_change(a: np.ndarray, b: np.ndarray) -> float:
    """How much the picture changes between two small HSV frames (h, w, 3): the mean absolute difference of hue,
    saturation and value, averaged over the three (PySceneDetect's content detector measures a cut this way; its
    default threshold is 27 on 0..255 channels)."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).reshape(-1, 3).mean(axis=0)
    return float(diff.mean())


def segment_starts(changes: list[float], boxes: np.ndarray, present: np.ndarray, cut_threshold: float,
                   min_iou: float) -> list[int]:
    """Frames where a new shot or a new face track begins: 0, every frame after a content change above
    ``cut_threshold``, every frame whose face box overlaps the previous one's by less than ``min_iou``, and the
    frame where a face is found again after frames without it. ``changes[i]`` is the change from frame i to i+1."""
    starts = [0]
    last = None
    for i in range(len(present)):
        new = False
        if i and changes[i - 1] > cut_threshold:
            new = True
        if present[i]:
            if last is not None and (last != i - 1 or box_iou(boxes[i], boxes[last]) < min_iou):
                new = True
            last = i
        if new and starts[-1] != i:
            starts.append(i)
    return starts


def cut_steps(changes: np.ndarray, threshold: float, min_change: float, ratio: float, width: int = 2) -> np.ndarray:
    """Which steps between consecutive frames are shot cuts, from ``changes`` (n,): the content change from the
    frame before (``changes[0]`` unused). A step is a cut when its change is over ``threshold`` (PySceneDetect's
    content detector), or, PySceneDetect's adaptive detector, when it is at least ``min_change`` and ``ratio``
    times the mean change of the ``width`` steps on each side (only where both sides have them): a cut between
    two framings of the same person in the same place can change the picture less than a fixed threshold, but
    far more than the motion around it, which also keeps a fast pan (large changes on every step) from counting.
    Returns (n,) bool."""
    c = np.asarray(changes, np.float64)
    cut = c > threshold
    cut[0] = False
    if ratio > 0 and len(c) > 2 * width + 1:
        ks = np.arange(width + 1, len(c) - width)  # step 0 is no step: steps 1.. have a left side
        sides = np.stack([c[ks + o] for o in range(-width, width + 1) if o]).mean(axis=0)
        cut[ks] |= (c[ks] >= min_change) & (c[ks] >= ratio * np.maximum(sides, 1e-6))
    return cut


def window_cuts(times_s: np.ndarray, cuts: np.ndarray, start_s: float, end_s: float) -> int:
    """Shot cuts inside a window: cut steps (``cut_steps``) between consecutive decoded source frames whose times
    (``times_s`` (n,)) both lie in [start_s, end_s]. Every source frame counts, not only the sampled ones, so a cut
    that falls between two samples 0.25 s apart is found, and measured against the small change of 1/25-1/30 s of
    motion rather than a quarter second's (PySceneDetect works on consecutive frames too)."""
    times_s = np.asarray(times_s, np.float64)
    inside = (times_s[:-1] >= start_s) & (times_s[1:] <= end_s)
    return int(np.count_nonzero(inside & np.asarray(cuts, bool)[1:]))


def face_fill(boxes: np.ndarray, present: np.ndarray, crop_side: float) -> float:
    """How much of the stored crop the face fills: the face box side (geometric mean of width and height) over the
    crop's side, on the frame where it is smallest among frames with a detected face (boxes (n, 4) and crop_side
    in the same pixels). A still head in the default 1.8x crop fills ~0.55; a face crossing the frame, or a
    zoom-out to the whole body, leaves frames where it fills a tenth."""
    found = np.asarray(present, bool)
    if not found.any() or crop_side <= 0:
        return 0.0
    return float(box_side(np.asarray(boxes, np.float32)[found]).min() / crop_side)
