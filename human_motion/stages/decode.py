"""Decode: the windows a probe planned -> ``num_frames`` frames at ``fps``, one fixed square crop per window around
the face track, resized to ``size_px``.

Detection runs here because the crop must follow the face over the whole window: the detector sees each sampled
frame shrunk to ``detect_max_side_px``, and the crop is cut from the full-resolution frame. Decode writes the scores
of what it saw (faces found, second faces, face size and confidence, how much of the crop the face fills, darkness,
shot cuts); the select step after it applies the thresholds. A window in which no face is found at all cannot be
cropped: that window alone is rejected.

Shot cuts are counted on every decoded source frame, not only the sampled ones: the sampling loop decodes every
frame anyway (it converts only the samples), so a :class:`ShotTap` on the container takes a 64x64 thumbnail of each
and its HSV content change from the one before (PySceneDetect's content detector, on consecutive frames as it
runs). A window whose frames come from two shots has an intensity that measures the cut, not the motion.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Literal

import cv2
import numpy as np

from human_motion.backends.face_models import Detection, make_detector
from human_motion.config import ConfigError
from human_motion.media import iter_sampled_frames, open_video, read_image
from human_motion.metrics import (
    box_iou, box_side, content_change, cut_steps, face_fill, interpolate_missing, square_crop_box, window_cuts,
)
from human_motion.schema import safe_key
from human_motion.stages.base import ContractError, RowView, Stage, StageError, StageResources
from human_motion.types import ClipSpec


@dataclasses.dataclass(frozen=True)
class DecodeConfig(StageResources):
    fps: float = 4.0  # sampling rate of the stored frames (the paper: 4 fps)
    num_frames: int = 16  # frames per window (the paper: 16)
    size_px: int = 512  # side of the stored square crop
    max_windows_per_clip: int = 4  # non-overlapping windows taken from a long clip
    crop_scale: float = 1.8  # crop side = this x the side of the union of face boxes over the window
    image_max_side_px: int = 4096  # larger images are rejected from their header (decompression bombs)
    detector: Literal["mediapipe", "dlib", "insightface"] = "mediapipe"
    detect_min_score: float = 0.3  # detections below this are ignored entirely
    detect_max_side_px: int = 640  # frames are shrunk to this longest side for face detection
    insightface_root: str | None = None  # detector=insightface: folder of an insightface model pack
    insightface_pack: str = "buffalo_l"
    # What counts as a second face in a frame (the score multi_face_frac; select.max_multi_face_frac is the
    # threshold on it): at least this share of the main face's side, and this confident.
    second_face_min_rel_side: float = 0.35
    second_face_min_score: float = 0.6
    # A shot cut (the score ``cuts``; select.max_cuts is the threshold on it), on the HSV content change between
    # consecutive source frames (64x64 thumbnails): over cut_threshold (PySceneDetect's content detector), or at
    # least cut_min_change and cut_ratio times the mean change of the two steps on each side (its adaptive
    # detector; 0: off). The dev clips' frames change by at most 11 (and 20 on a first frame that jumps, with no
    # steps before it), cuts between two framings of the same person by 25-46, 6-27 times their neighbours'.
    cut_threshold: float = 27.0
    cut_min_change: float = 15.0
    cut_ratio: float = 3.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fps <= 0 or self.num_frames < 2 or self.size_px < 64 or self.size_px % 8:
            raise ConfigError("decode: fps > 0, num_frames >= 2, size_px >= 64 and a multiple of 8")
        if self.crop_scale < 1.0:
            raise ConfigError("decode.crop_scale must be >= 1 (the crop must contain the face)")
        if self.max_windows_per_clip < 1:
            raise ConfigError("decode.max_windows_per_clip must be >= 1 (a clip with no window gives nothing)")
        if self.image_max_side_px < self.size_px // 4 or self.detect_max_side_px < 64:
            raise ConfigError("decode.image_max_side_px and decode.detect_max_side_px are too small")
        if self.cut_threshold <= 0 or self.cut_min_change < 0 or self.cut_ratio < 0:
            raise ConfigError("decode.cut_threshold must be > 0 (HSV content change, 0..255; 27 as PySceneDetect), "
                              "cut_min_change and cut_ratio >= 0 (cut_ratio 0: no adaptive detection)")


class Decode(Stage):
    name = "decode"
    Config = DecodeConfig
    reads = ("spec", "static", "source", "clip_id", "window_times_s")
    writes = ("window", "key", "span_s", "fps", "num_frames", "frames", "detections", "crop", "faces")
    scores = ("cuts", "face_found_frac", "multi_face_frac", "face_side_px", "face_score", "face_missing_frac",
              "face_area_frac", "face_fill", "crop_side_px", "mean_luma")
    version = 2  # 2: the cuts and face_fill scores

    def __init__(self, cfg: DecodeConfig):
        super().__init__(cfg)
        self.detector = make_detector(cfg.detector, cfg.detect_min_score, cfg.insightface_root, cfg.insightface_pack)

    def close(self) -> None:
        getattr(self.detector, "close", lambda: None)()

    def process(self, row: RowView) -> list[RowView]:
        spec = ClipSpec.from_json(row["spec"])
        if row["static"]:
            image = read_image(spec.path, self.cfg.image_max_side_px)
            windows = [(np.asarray(image)[None], [0.0, 0.0], 0)]
        else:
            windows = self._video_windows(spec.path, row["window_times_s"])
        out = row.split(len(windows))
        for w, (child, (frames, span, cuts)) in enumerate(zip(out, windows)):
            child.score("cuts", cuts)
            child["window"] = w
            child["key"] = safe_key(row["source"], row["clip_id"], w)
            child["span_s"] = span
            child["fps"] = float(self.cfg.fps)  # a static sample is stored as a still video at the same rate
            child["num_frames"] = self.cfg.num_frames  # a static sample is stored as its one frame, repeated
            try:
                self.locate_and_crop(child, frames, spec.bbox)
            except StageError as e:  # this window only; the clip's other windows go on
                child.reject(e.reason, e.detail)
        return out

    def _video_windows(self, path: str, times: list[list[float]]) -> list[tuple[np.ndarray, list[float], int]]:
        """(frames, span, shot cuts) of each window that decoded whole."""
        d = self.cfg
        flat = [t for window in times for t in window]
        with open_video(path) as container:
            tap = ShotTap(container)
            frames = [frame for _, frame in iter_sampled_frames(tap, times[0][0], flat)]
            half = 0.5 / float(container.streams.video[0].average_rate or 25.0)  # as iter_sampled_frames takes it
        if frames and not tap.times:
            raise ContractError("decode: media.iter_sampled_frames no longer decodes through container.decode(), "
                                "so ShotTap saw no frame; update stages/decode.py")
        complete = len(frames) // d.num_frames
        if complete == 0:
            raise StageError("truncated", f"decoded {len(frames)} of {len(flat)} sampled frames")
        cuts = cut_steps(np.asarray(tap.changes), d.cut_threshold, d.cut_min_change, d.cut_ratio)
        return [(np.stack(frames[w * d.num_frames:(w + 1) * d.num_frames]), [times[w][0], times[w][-1] + 1 / d.fps],
                 window_cuts(np.asarray(tap.times), cuts, times[w][0] - half, times[w][-1] + half))
                for w in range(complete)]

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        h, w = frame.shape[:2]
        scale = min(1.0, self.cfg.detect_max_side_px / max(h, w))
        small = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) \
            if scale < 1 else frame
        dets = self.detector.detect(small)
        for d in dets:
            d.box = d.box / scale
            if d.kps5 is not None:
                d.kps5 = d.kps5 / scale
        return dets

    def locate_and_crop(self, row: RowView, frames: np.ndarray, hint_box: tuple | None) -> None:
        """Find the main face on every frame, score what was seen, and store the square crop around the track."""
        d = self.cfg
        t, h, w = frames.shape[:3]
        hint = np.array(hint_box, np.float32) * [w, h, w, h] if hint_box else None
        started = time.perf_counter()
        per_frame = [self._detect(f) for f in frames]
        row.add_time("decode.detect", time.perf_counter() - started)  # part of decode's time, shown apart
        main = track_main_face(per_frame, hint)
        present = np.array([m is not None for m in main])
        row["detections"] = [[[*map(float, x.box), x.score] for x in dets] for dets in per_frame]
        row.score("face_found_frac", float(present.mean()))
        if not present.any():
            raise StageError("no_face", f"no face in any of {t} sampled frames")
        boxes = interpolate_missing(np.stack([m.box if m else np.zeros(4, np.float32) for m in main]), present)
        row.score("multi_face_frac", self._second_faces(per_frame, main) / t)
        row.score("face_side_px", float(np.median(box_side(boxes[present]))))
        row.score("face_score", float(np.median([m.score for m in main if m])))
        row.score("face_missing_frac", float(1 - present.mean()))
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        row.score("face_area_frac", float(np.median(areas)) / (w * h))
        x0, y0, x1, y1 = square_crop_box(boxes, w, h, d.crop_scale)
        side = x1 - x0
        row.score("face_fill", face_fill(boxes, present, side))
        interp = cv2.INTER_AREA if side > d.size_px else cv2.INTER_CUBIC
        crops = np.stack([cv2.resize(f[y0:y1, x0:x1], (d.size_px, d.size_px), interpolation=interp) for f in frames])
        k = d.size_px / side

        def to_crop(points: np.ndarray) -> np.ndarray:
            """Source pixels -> stored-frame pixels, for arrays whose last axis is x, y, x, y..."""
            return (points - np.array([x0, y0] * (points.shape[-1] // 2), np.float32)) * k

        kps = [to_crop(m.kps5.reshape(-1)).reshape(5, 2).tolist() if m and m.kps5 is not None else None for m in main]
        row.score("crop_side_px", float(side))
        row.score("mean_luma", float(crops.mean() / 255.0))
        row["crop"] = {"source_box": [x0, y0, x1, y1], "source_size": [w, h]}
        row["faces"] = {"boxes": to_crop(boxes).tolist(), "present": present.tolist(),
                        "scores": [m.score if m else 0.0 for m in main], "kps5_detector": kps}
        row.backend("detector", f"{self.detector.name} {self.detector.version}")
        row["frames"] = crops

    def _second_faces(self, per_frame: list[list[Detection]], main: list[Detection | None]) -> int:
        """Frames that show a second face large and confident enough to count."""
        count = 0
        for dets, m in zip(per_frame, main):
            if m is None:
                continue
            side = box_side(m.box[None])[0]
            count += any(x is not m and box_side(x.box[None])[0] >= self.cfg.second_face_min_rel_side * side
                         and x.score >= self.cfg.second_face_min_score for x in dets)
        return count


class ShotTap:
    """A video container whose ``decode`` also records, for every frame it yields, the frame's time and the HSV
    content change from the frame before (on 64x64 thumbnails, ~0.1-0.6 ms a frame beside 0.5-2.6 ms of decoding
    on the dev clips). The mean absolute change of a thumbnail does not depend on how the frame is turned, so the
    frames are not turned upright for it. Everything else is the container's."""

    THUMB_PX = 64

    def __init__(self, container):
        from av.video.reformatter import VideoReformatter

        self._container = container
        self._reformatter = VideoReformatter()  # one for the clip: making one per frame costs more than the resize
        self._prev: np.ndarray | None = None
        self.times: list[float] = []
        self.changes: list[float] = []

    def __getattr__(self, name: str):
        return getattr(self._container, name)

    def seek(self, *args, **kwargs):
        self._prev = None  # the next frame does not follow the last one
        return self._container.seek(*args, **kwargs)

    def decode(self, *args, **kwargs):
        for frame in self._container.decode(*args, **kwargs):
            if frame.time is not None:
                small = self._reformatter.reformat(frame, width=self.THUMB_PX, height=self.THUMB_PX, format="rgb24",
                                                   interpolation="AREA").to_ndarray()
                hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
                self.times.append(float(frame.time))
                self.changes.append(content_change(self._prev, hsv) if self._prev is not None else 0.0)
                self._prev = hsv
            yield frame


def track_main_face(per_frame: list[list[Detection]], hint: np.ndarray | None) -> list[Detection | None]:
    """The tracked face per frame: the one overlapping the previous main box (or the source's hint), else the most
    prominent (confidence x size)."""
    main, prev = [], hint
    for dets in per_frame:
        pick = _pick_main(dets, prev)
        main.append(pick)
        if pick is not None:
            prev = pick.box
    return main


def _pick_main(dets: list[Detection], prev: np.ndarray | None) -> Detection | None:
    if not dets:
        return None
    if prev is not None:
        best = max(dets, key=lambda x: box_iou(x.box, prev))
        if box_iou(best.box, prev) > 0.2:
            return best
    return max(dets, key=lambda x: x.score * math.sqrt(max(1.0, (x.box[2] - x.box[0]) * (x.box[3] - x.box[1]))))
