"""Decode: clip spec -> windows of ``num_frames`` frames at ``fps``, one fixed square crop per window around the
face track, resized to ``size_px``.

Reads a row whose record is a ClipSpec; writes one row per window with the cropped frames and the detection scores
the select step needs (source resolution, faces found, second faces, face size and confidence). Detection runs
here because the crop must follow the face's track over the whole window; it runs on frames shrunk to
``detect_max_side_px``, and the crop is cut from the full-resolution frame.
"""

from __future__ import annotations

import math
import time

import cv2
import numpy as np

from human_motion.media import iter_sampled_frames, open_video, probe_video, read_image, window_times
from human_motion.engine.config import BuildConfig
from human_motion.backends.face_models import Detection, make_detector
from human_motion.metrics import box_iou, box_side, interpolate_missing, square_crop_box
from human_motion.stages.select import select
from human_motion.stages.base import Stage, StageError
from human_motion.schema import safe_key
from human_motion.types import ClipSpec, Row


class Decode(Stage):
    """Adds ``window``, ``span_s``, ``crop``, ``detections`` and face scores; emits one row per window."""

    name = "decode"

    def __init__(self, cfg: BuildConfig):
        super().__init__(cfg)
        f = cfg.faces
        self.detector = make_detector(f.detector, f.detect_min_score, f.insightface_root, f.insightface_pack)

    def process(self, row: Row) -> list[Row]:
        spec = ClipSpec.from_json(row.record["spec"])
        if spec.reject_reason:
            raise StageError(spec.reject_reason, spec.reject_detail)
        if spec.static:
            image = read_image(spec.path, self.cfg.decode.image_max_side_px)
            windows = [(np.asarray(image)[None], [0.0, 0.0])]
            fps = 0.0
        else:
            windows, fps = self._video_windows(spec)
        out = []
        for w, (frames, span) in enumerate(windows):
            record = dict(row.record, window=w, key=safe_key(spec.source, spec.clip_id, w), span_s=span,
                          fps=0.0 if spec.static else self.cfg.decode.fps, source_fps=fps)
            new = Row(row.shard, row.clip_index, len(windows), record)
            self.locate_and_crop(new, frames, spec)
            out.append(new)
        return out

    def _video_windows(self, spec: ClipSpec) -> tuple[list[tuple[np.ndarray, list[float]]], float]:
        d = self.cfg.decode
        with open_video(spec.path) as container:
            info = probe_video(container)
            if min(info.width, info.height) < self.cfg.select.min_source_side_px:
                # Cheapest filter first: no decoding for a source below the resolution floor.
                raise StageError("low_resolution", f"{info.width}x{info.height} < select.min_source_side_px="
                                 f"{self.cfg.select.min_source_side_px}")
            start, end = _span(spec, info.fps, info.duration_s)
            times = window_times(start, end, d.fps, d.num_frames, d.max_windows_per_clip)
            if not times:
                raise StageError("too_short", f"span {end - start:.2f}s < {d.num_frames / d.fps:.2f}s "
                                 f"({d.num_frames} frames at {d.fps} fps)")
            flat = [t for window in times for t in window]
            frames: list[np.ndarray] = []
            for _, frame in iter_sampled_frames(container, start, flat):
                frames.append(frame)
        complete = len(frames) // d.num_frames
        if complete == 0:
            raise StageError("truncated", f"decoded {len(frames)} of {len(flat)} sampled frames")
        return [
            (np.stack(frames[w * d.num_frames:(w + 1) * d.num_frames]), [times[w][0], times[w][-1] + 1 / d.fps])
            for w in range(complete)
        ], info.fps

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        h, w = frame.shape[:2]
        scale = min(1.0, self.cfg.decode.detect_max_side_px / max(h, w))
        small = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) \
            if scale < 1 else frame
        dets = self.detector.detect(small)
        for d in dets:
            d.box = d.box / scale
            if d.kps5 is not None:
                d.kps5 = d.kps5 / scale
        return dets

    def locate_and_crop(self, row: Row, frames: np.ndarray, spec: ClipSpec) -> None:
        d, s = self.cfg.decode, self.cfg.select
        t, h, w = frames.shape[:3]
        hint = np.array(spec.bbox, np.float32) * [w, h, w, h] if spec.bbox else None
        started = time.perf_counter()
        per_frame = [self._detect(f) for f in frames]
        row.add_time("decode.detect", time.perf_counter() - started)  # part of decode's time, shown apart
        main: list[Detection | None] = []
        prev = hint
        for dets in per_frame:
            pick = _pick_main(dets, prev)
            main.append(pick)
            if pick is not None:
                prev = pick.box
        present = np.array([m is not None for m in main])
        scores = {"source_min_side_px": float(min(h, w)), "face_found_frac": float(present.mean())}
        row.record["detections"] = [[[*map(float, x.box), x.score] for x in dets] for dets in per_frame]
        if not present.any():
            row.record["scores"] = scores
            raise StageError("no_face", f"no face in any of {t} sampled frames")
        boxes = interpolate_missing(np.stack([m.box if m else np.zeros(4, np.float32) for m in main]), present)
        sides = box_side(boxes[present])
        multi = 0
        for dets, m in zip(per_frame, main):
            if m is None:
                continue
            side = box_side(m.box[None])[0]
            others = [x for x in dets if x is not m and box_side(x.box[None])[0] >= s.second_face_min_rel_side * side
                      and x.score >= s.second_face_min_score]
            multi += bool(others)
        scores.update(
            multi_face_frac=multi / t,
            face_side_px=float(np.median(sides)),
            face_score=float(np.median([m.score for m in main if m])),
            face_missing_frac=float(1 - present.mean()),
            face_area_frac=float(np.median((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])) / (w * h)),
        )
        x0, y0, x1, y1 = square_crop_box(boxes, w, h, d.crop_scale)
        side = x1 - x0
        interp = cv2.INTER_AREA if side > d.size_px else cv2.INTER_CUBIC
        crops = np.stack([cv2.resize(f[y0:y1, x0:x1], (d.size_px, d.size_px), interpolation=interp) for f in frames])
        k = d.size_px / side

        def to_crop(points: np.ndarray) -> np.ndarray:
            """Source pixels -> stored-frame pixels, for arrays whose last axis is x, y, x, y..."""
            return (points - np.array([x0, y0] * (points.shape[-1] // 2), np.float32)) * k

        kps = [to_crop(m.kps5.reshape(-1)).reshape(5, 2).tolist() if m and m.kps5 is not None else None for m in main]
        scores["crop_side_px"] = float(side)
        scores["mean_luma"] = float(crops.mean() / 255.0)
        row.record.update(
            crop={"source_box": [x0, y0, x1, y1], "source_size": [w, h]},
            faces={"boxes": to_crop(boxes).tolist(), "present": present.tolist(),
                   "scores": [m.score if m else 0.0 for m in main], "kps5_detector": kps},
            scores=scores,
            backends=dict(row.record.get("backends", {}), detector=f"{self.detector.name} {self.detector.version}"),
        )
        row.frames = crops
        failed = select(scores, self.cfg.select)
        if failed:
            raise StageError(*failed)


def _pick_main(dets: list[Detection], prev: np.ndarray | None) -> Detection | None:
    """The tracked face: the one overlapping the previous main box (or the source's hint), else the most
    prominent (confidence x size)."""
    if not dets:
        return None
    if prev is not None:
        best = max(dets, key=lambda x: box_iou(x.box, prev))
        if box_iou(best.box, prev) > 0.2:
            return best
    return max(dets, key=lambda x: x.score * math.sqrt(max(1.0, (x.box[2] - x.box[0]) * (x.box[3] - x.box[1]))))


def _span(spec: ClipSpec, fps: float, duration_s: float) -> tuple[float, float]:
    """[start, end) in seconds from the spec's span (seconds or frames), checked against the video."""
    if spec.span_frames is not None:
        if not fps:
            raise StageError("bad_span", "span given in frames but the video has no frame rate")
        start, end = spec.span_frames[0] / fps, spec.span_frames[1] / fps
    else:
        start = spec.start_s if spec.start_s is not None else 0.0
        end = spec.end_s if spec.end_s is not None else duration_s
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
        raise StageError("bad_span", f"span [{start}, {end}) is empty or negative")
    if math.isfinite(duration_s):
        tolerance = 0.25 + (1 / fps if fps else 0)
        if start >= duration_s or end > duration_s + tolerance:
            raise StageError("span_out_of_range", f"span [{start:.2f}, {end:.2f}) s past the video's end "
                             f"({duration_s:.2f} s)")
        end = min(end, duration_s)
    return start, end

