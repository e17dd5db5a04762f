"""Media I/O with PyAV and OpenCV: sampled decoding of video windows, H.264 encoding, unicode-safe image reading.

Every function raises :class:`MediaError` with a short reason code for inputs it cannot use, so stages can record a
rejection instead of crashing. What is read is what a player shows: a video's display matrix (phones store pixels
sideways and a matrix that turns them upright) and an image's EXIF orientation are applied, and the turn applied is
reported (:class:`Orientation`). Sizes are checked from headers before pixels are decoded, and FFmpeg's decoders
are capped (``max_pixels``), so a small file that claims a huge frame (a decompression bomb) costs no memory.

PyAV, OpenCV and Pillow are imported inside the functions that use them: importing this module needs numpy only.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import os
import pathlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from human_motion.orientation import Orientation, frame_orientation, tag_orientation
from human_motion.untrusted import file_problem

if TYPE_CHECKING:
    import av

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".ts")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# 8K UHD is 7680x4320; a frame over this (8192^2 px, 200 MB as RGB) is refused from the header.
VIDEO_MAX_SIDE_PX = 8192


class MediaError(Exception):
    """A media file that cannot be used; ``reason`` is a short code for rejects.parquet."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class VideoInfo:
    width: int  # as stored (before the orientation is applied)
    height: int
    fps: float
    duration_s: float
    codec: str
    orientation: Orientation = field(default_factory=Orientation)

    @property
    def rotation_deg(self) -> int:
        return self.orientation.rotation_deg

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as shown, after the orientation."""
        turned = self.orientation.rotation_deg in (90, 270)
        return (self.height, self.width) if turned else (self.width, self.height)


def _check_file(path: str) -> None:
    problem = file_problem(path)  # stat only: a FIFO or device is never opened
    if problem:
        reason = {"not_a_file": "not_a_file", "missing_file": "missing_file"}.get(problem.reason, "unreadable")
        raise MediaError(reason, f"{os.path.basename(path)} {problem.what}")
    if os.path.getsize(path) == 0:
        raise MediaError("empty_file", path)


def content_kind(head: bytes) -> str | None:
    """What the first bytes of a file say it is ("a PNG image", "an MP4/MOV video", "text"), or None."""
    signatures = ((b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
                  (b"BM", "a BMP image"), (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"),
                  (b"\x1aE\xdf\xa3", "a Matroska/WebM video"))
    for magic, kind in signatures:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] in (b"WEBP", b"AVI "):
        return "a WebP image" if head[8:12] == b"WEBP" else "an AVI video"
    if head[4:8] == b"ftyp":
        return "an MP4/MOV video"
    if head and all(32 <= c < 127 or c in b"\t\r\n" for c in head[:256]):
        return "text"
    return None


def probe_video(container: av.container.InputContainer, max_side_px: int = VIDEO_MAX_SIDE_PX,
                orientation: bool = True) -> VideoInfo:
    """The first video stream's size, rate, length and codec from the header, checked against ``max_side_px``
    before any frame is decoded. With ``orientation``, the first frame is decoded to read its display matrix
    (PyAV exposes it on frames only), and the container is rewound to the start."""
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
    if max(width, height) > max_side_px:
        raise MediaError("video_too_large", f"{width}x{height}: a side over {max_side_px} px")
    if not width or not height:
        # open_video caps FFmpeg's decoders at max_pixels; a frame over the cap leaves the size unknown.
        raise MediaError("video_too_large", f"no frame decodes within {max_side_px}x{max_side_px} px: "
                         "its frames are larger (a decompression bomb?) or the stream is broken")
    found = _first_frame_orientation(container, stream) if orientation else tag_orientation(stream)
    return VideoInfo(width, height, fps, duration, stream.codec_context.name, found)


def _first_frame_orientation(container, stream) -> Orientation:
    import av

    fallback = tag_orientation(stream)
    try:
        frame = next(iter(container.decode(stream)), None)
    except av.error.FFmpegError:
        frame = None  # the decode stage finds out (truncated, decode_failed)
    try:
        container.seek(0)
    except av.error.FFmpegError as e:
        raise MediaError("decode_failed", f"cannot seek back to the start: {e}") from None
    return frame_orientation(frame, fallback) if frame is not None else fallback


def open_video(path: str, max_side_px: int = VIDEO_MAX_SIDE_PX) -> av.container.InputContainer:
    """An open PyAV container whose decoders refuse frames over ``max_side_px`` squared pixels (also while FFmpeg
    probes the stream, which decodes a frame for some codecs). An image under a video name is refused."""
    import av

    _check_file(path)
    cap = {"max_pixels": str(max_side_px * max_side_px)}
    try:
        container = av.open(path, mode="r", metadata_errors="ignore", options=cap)
    except av.error.InvalidDataError as e:
        raise MediaError("not_a_video", _not_a_video(path, str(e))) from None
    except av.error.FFmpegError as e:
        raise MediaError("decode_failed", str(e)) from None
    except OSError as e:
        raise MediaError("unreadable", str(e)) from None
    fmt = container.format.name
    if fmt == "image2" or fmt.endswith("_pipe"):
        container.close()
        kind = fmt.removesuffix("_pipe").upper()
        raise MediaError("not_a_video", f"{os.path.basename(path)} is a {kind} image, not a video; give it an "
                         "image extension to use it as a still")
    for stream in container.streams.video:
        stream.thread_type = "AUTO"  # only settable before the codec opens (probe_video may decode a frame)
        stream.codec_context.options = dict(cap)
    return container


def _not_a_video(path: str, error: str) -> str:
    try:
        with open(path, "rb") as f:
            kind = content_kind(f.read(512))
    except OSError:
        kind = None
    return f"{os.path.basename(path)} is {kind}, not a video" if kind else error


def iter_sampled_frames(
    container: av.container.InputContainer, start_s: float, times_s: list[float]
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(i, rgb frame)`` for each requested time: the first decoded frame at or after ``times_s[i]``
    (within half a source frame), turned upright as a player shows it (its display matrix, else the stream's
    ``rotate`` tag). Decodes sequentially from a seek to ``start_s``; stops after the last time.
    A truncated or corrupt stream simply ends early (the caller checks how many frames came)."""
    import av

    stream = container.streams.video[0]
    if not stream.codec_context.is_open:
        stream.thread_type = "AUTO"
    fallback = tag_orientation(stream)
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
                yield i, frame_orientation(frame, fallback).apply(frame.to_ndarray(format="rgb24"))
                i += 1
            if i >= len(times_s):
                return
    except (av.error.InvalidDataError, av.error.EOFError, av.error.FFmpegError):
        return  # truncated: the caller sees fewer frames than it asked for


def image_header(data: bytes | np.ndarray, name: str = "") -> tuple[int, int, Orientation, str]:
    """(width, height, orientation, format) of an encoded image from its header alone (Pillow parses headers
    lazily; no pixel is decoded). EXIF orientation is read from JPEG, WebP and TIFF, and from a PNG's eXIf chunk
    when it comes before the pixels (a later one would need decoding, and is rare)."""
    from PIL import Image, UnidentifiedImageError

    head = bytes(data[:512])
    buf = io.BytesIO(data if isinstance(data, bytes) else data.tobytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(buf) as im:
                (width, height), fmt = im.size, im.format or ""
                orientation = Orientation()
                if fmt != "PNG" or "exif" in im.info:
                    with contextlib.suppress(Exception):  # broken EXIF: viewers show the pixels as stored
                        orientation = Orientation.from_exif(im.getexif().get(0x0112))
        except Image.DecompressionBombError as e:  # Pillow's own cap (~179 Mpx) fires before our side check
            pixels = re.search(r"\((\d+) pixels\)", str(e))
            size = f"{int(pixels[1]) / 1e6:.0f} megapixels" if pixels else "too many pixels"
            # Neutral words: this header reader serves the build (decode.image_max_side_px) and reference photos.
            raise MediaError("image_too_large", f"{name}: {size} by its header, more than any image is decoded at; "
                                                "refused before decoding") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
            kind = content_kind(head)
            detail = f"{name} is {kind}, not an image" if kind and not kind.endswith("image") else f"{name}: {e}"
            raise MediaError("not_an_image", detail) from None
    return width, height, orientation, fmt


def _decode_upright(data: np.ndarray, fmt: str, orientation: Orientation) -> np.ndarray | None:
    """RGB pixels with the orientation applied. OpenCV's TIFF reader applies the orientation tag whatever the
    flags say, and Pillow's TIFF reader half-applies it (the size it reports is already turned), so a TIFF is
    decoded and turned by Pillow's own exif_transpose (its size is already checked)."""
    import cv2

    if fmt == "TIFF":
        from PIL import Image, ImageOps

        try:
            with Image.open(io.BytesIO(data.tobytes())) as im:
                return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        except (OSError, ValueError, SyntaxError, EOFError):
            return None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    return None if img is None else orientation.apply(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))


def read_image_oriented(path: str, max_side_px: int = 4096) -> tuple[np.ndarray, Orientation]:
    """RGB uint8 image as a viewer shows it (EXIF orientation applied), and the orientation applied. The size is
    checked from the header first (decompression bombs: a 20000x20000 PNG of 0.4 MB never reaches the decoder).
    Works with unicode paths (cv2.imread does not on every platform)."""
    _check_file(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise MediaError("unreadable", str(e)) from None
    name = os.path.basename(path)
    width, height, orientation, fmt = image_header(data, name)
    if max(width, height) > max_side_px:
        raise MediaError("image_too_large", f"{width}x{height} > {max_side_px}")
    img = _decode_upright(data, fmt, orientation)
    if img is None:
        raise MediaError("not_an_image", name)
    h, w = img.shape[:2]
    if max(h, w) > max_side_px:
        raise MediaError("image_too_large", f"{w}x{h} > {max_side_px}")
    return img, orientation


def read_image(path: str, max_side_px: int = 4096) -> np.ndarray:
    """RGB uint8 image as a viewer shows it; see :func:`read_image_oriented`."""
    return read_image_oriented(path, max_side_px)[0]


def probe_image(path: str, max_side_px: int = 4096) -> dict:
    """An image's header facts (size as shown, orientation, format) without decoding a pixel; the size is checked
    against ``max_side_px`` here, so a decompression bomb costs nothing. Raises MediaError."""
    _check_file(path)
    with open(path, "rb") as f:
        data = f.read()
    width, height, orientation, fmt = image_header(data, os.path.basename(path))
    if orientation.rotation_deg in (90, 270):
        width, height = height, width
    if max(width, height) > max_side_px:
        raise MediaError("image_too_large", f"{width}x{height} > {max_side_px} px (decode.image_max_side_px)")
    return {"kind": "image", "width": int(width), "height": int(height), "fps": 0.0, "duration_s": None,
            "orientation": orientation.to_json(), "codec": fmt.lower()}


REFERENCE_MAX_SIDE_PX = 2048  # stock-photo originals run to 6000-10000 px; the face crop needs far less


def read_reference_image(path: str, max_side_px: int = REFERENCE_MAX_SIDE_PX) -> np.ndarray:
    """A reference photo (generation, evaluation) as RGB uint8, area-downscaled so its longer side is at most
    ``max_side_px``: full-size camera and stock photos are accepted. Raises MediaError for unreadable files."""
    import cv2

    img = read_image(str(path), max_side_px=16384)
    h, w = img.shape[:2]
    scale = max_side_px / max(h, w)
    if scale < 1:
        img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return img


def encode_mp4(frames: np.ndarray, fps: float, crf: int = 18, preset: str = "veryfast", still: bool = False) -> bytes:
    """H.264 (libx264, yuv420p) MP4 of ``frames`` (t, h, w, 3) uint8 RGB, as bytes: the same bytes for the same
    frames. x264's macroblock-tree rate control is off: with it on, identical frames encoded in a busy process
    (PyAV 18.1 and the libx264 of its wheel) came out as different bitstreams from time to time (3 variants in 20
    encodes), which would break "same seed, same video" and byte-identical rebuilds. ``still`` (one image
    repeated): a constant quantiser ``crf`` instead: under CRF x264 keeps refining a still picture frame after
    frame (frames drift by up to 38 levels); at a constant quantiser they stay within rounding (mean 0.04 levels)
    and the file is half the size."""
    import av

    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise MediaError("encode_failed", f"yuv420p needs even frame sides, got {w}x{h}")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"qp" if still else "crf": str(crf), "preset": preset, "x264-params": "mbtree=0"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def decode_mp4_bytes(data: bytes) -> np.ndarray:
    """All frames of an in-memory video as (t, h, w, 3) uint8 RGB, as stored (the shards' own videos carry no
    display matrix)."""
    import av

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
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise MediaError("encode_failed", "jpeg")
    return buf.tobytes()


def decode_jpg(data: bytes) -> np.ndarray:
    import cv2

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
