"""Probe: what the media header says, before any pixel is decoded, and the windows the clip will give.

Reads the clip spec; writes ``media`` (kind, size as displayed, fps, duration, rotation, codec), the sample times
of every window (``window_times_s``) and the ``source_min_side_px`` score, so the select step after it rejects
low-resolution sources without decoding them. Rejects here are facts, not thresholds: a spec the source could not
use, a file that is missing or not media, a span outside the video, a clip too short for one window.
"""

from __future__ import annotations

import math

from human_motion.media import open_video, probe_image, probe_video, window_times
from human_motion.stages.base import RowView, Stage, StageError
from human_motion.stages.decode import DecodeConfig
from human_motion.types import ClipSpec


class Probe(Stage):
    name = "probe"
    section = "decode"  # the windows are decode's settings (fps, num_frames, max_windows_per_clip)
    Config = DecodeConfig
    reads = ("spec", "static")
    writes = ("media", "window_times_s")
    scores = ("source_min_side_px",)

    def process(self, row: RowView) -> list[RowView]:
        spec = ClipSpec.from_json(row["spec"])
        if spec.reject_reason:
            raise StageError(spec.reject_reason, spec.reject_detail)
        if row["static"]:
            media = probe_image(spec.path, self.cfg.image_max_side_px)
            row["window_times_s"] = []
        else:
            with open_video(spec.path) as container:
                info = probe_video(container)
            start, end = clip_span(spec, info.fps, info.duration_s)
            d = self.cfg
            times = window_times(start, end, d.fps, d.num_frames, d.max_windows_per_clip)
            if not times:
                raise StageError("too_short", f"span {end - start:.2f}s < {d.num_frames / d.fps:.2f}s "
                                 f"({d.num_frames} frames at {d.fps} fps)")
            width, height = info.display_size  # as a player shows it (display matrix or rotate tag applied)
            media = {"kind": "video", "width": width, "height": height, "fps": info.fps,
                     "duration_s": info.duration_s if math.isfinite(info.duration_s) else None,
                     "orientation": info.orientation.to_json(), "codec": info.codec}
            row["window_times_s"] = times
        row["media"] = media
        row.score("source_min_side_px", min(media["width"], media["height"]))
        return [row]


def clip_span(spec: ClipSpec, fps: float, duration_s: float) -> tuple[float, float]:
    """[start, end) in seconds from the spec's span (seconds or frames), checked against the video."""
    if spec.span_frames is not None:
        if not fps:
            raise StageError("bad_span", "span given in frames but the video has no frame rate")
        start, end = spec.span_frames[0] / fps, spec.span_frames[1] / fps
    else:
        start = spec.start_s if spec.start_s is not None else 0.0
        end = spec.end_s if spec.end_s is not None else duration_s
    if not math.isfinite(start) or start < 0:
        raise StageError("bad_span", f"span start {start} is negative or not a number")
    if not math.isfinite(end):
        raise StageError("no_duration", "the video states no duration and the source gives no end time; "
                         "re-mux it (ffmpeg -i in -c copy out.mp4) or give the span in the metadata")
    if end <= start:
        raise StageError("bad_span", f"span [{start}, {end}) is empty or negative")
    if math.isfinite(duration_s):
        tolerance = 0.25 + (1 / fps if fps else 0)
        if start >= duration_s or end > duration_s + tolerance:
            raise StageError("span_out_of_range", f"span [{start:.2f}, {end:.2f}) s past the video's end "
                             f"({duration_s:.2f} s)")
        end = min(end, duration_s)
    return start, end
