"""What the corpus adapters share: untrusted-field checks, a media index of a root, metadata loading.

Every field of a metadata file is untrusted. Clip ids never become paths: media are found by looking a file *stem*
up in an index built by walking the root, so an id such as ``../../etc/passwd`` can only fail to match (and is
rejected first anyway, with reason ``bad_id``). Numbers must be finite; spans and boxes are checked here, the span
against the video's length later in decode (``span_out_of_range``).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections.abc import Iterable
from typing import Any

from human_motion.config import ConfigError
from human_motion.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from human_motion.types import ClipSpec

MAX_ID_LEN = 200
MAX_METADATA_BYTES = 2 * 2**30  # a metadata file larger than this is not one of the known corpora
BOX_TOLERANCE = 0.01  # a normalised box may stick out of the frame by this much (rounding); it is then clipped


class RowError(Exception):
    """A metadata row that cannot be used: becomes a ClipSpec with ``reject_reason``."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def rejected(source: str, clip_id: Any, reason: str, detail: str = "") -> ClipSpec:
    """A rejection row. The id is kept printable (repr for non-strings); the path is empty, never a guess."""
    text = clip_id if isinstance(clip_id, str) else repr(clip_id)
    text = text.replace("\x00", "\\x00")[:MAX_ID_LEN + 20]
    return ClipSpec(source, text or "(empty id)", "", reject_reason=reason, reject_detail=detail[:2000])


def check_id(clip_id: Any) -> str:
    """The id if it is a safe file stem; raises RowError("bad_id") otherwise."""
    if not isinstance(clip_id, str) or not clip_id.strip():
        raise RowError("bad_id", f"clip id must be a non-empty string, got {clip_id!r}"[:300])
    if len(clip_id) > MAX_ID_LEN:
        raise RowError("bad_id", f"clip id longer than {MAX_ID_LEN} characters")
    if any(ord(c) < 32 or c == "\x7f" for c in clip_id):
        raise RowError("bad_id", "clip id contains control characters (NUL, newline...)")
    if "/" in clip_id or "\\" in clip_id or clip_id in (".", "..") or clip_id.startswith("..") \
            or (len(clip_id) > 1 and clip_id[1] == ":"):
        raise RowError("bad_id", f"clip id {clip_id[:80]!r} is a path, not a name")
    return clip_id


def number(value: Any, what: str) -> float:
    """A finite number (int, float or numeric string); RowError("bad_value") otherwise."""
    if isinstance(value, bool) or value is None:
        raise RowError("bad_value", f"{what} is {value!r}, not a number")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise RowError("bad_value", f"{what} is {str(value)[:40]!r}, not a number") from None
    if not math.isfinite(out):
        raise RowError("bad_value", f"{what} is {out}")
    return out


def check_span_s(start: float, end: float) -> tuple[float, float]:
    if start < 0 or end <= start:
        raise RowError("bad_span", f"span [{start}, {end}) s is empty or negative")
    return start, end


def norm_box(x0: float, y0: float, x1: float, y1: float, width: float = 1.0, height: float = 1.0
             ) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) in ``width``x``height`` units -> normalised 0..1; RowError("bad_bbox") when the box is
    inverted, empty or outside the frame (beyond BOX_TOLERANCE)."""
    if width <= 0 or height <= 0:
        raise RowError("bad_bbox", f"frame size {width}x{height} is not positive")
    box = (x0 / width, y0 / height, x1 / width, y1 / height)
    if box[2] <= box[0] or box[3] <= box[1]:
        raise RowError("bad_bbox", f"box x {x0}..{x1}, y {y0}..{y1} is inverted or empty")
    if min(box) < -BOX_TOLERANCE or max(box) > 1 + BOX_TOLERANCE:
        raise RowError("bad_bbox", f"box x {x0}..{x1}, y {y0}..{y1} lies outside the {width:g}x{height:g} frame")
    return tuple(min(1.0, max(0.0, v)) for v in box)  # type: ignore[return-value]


def box_tblr(bbox: Any, what: str = "bbox") -> tuple[float, float, float, float]:
    """``{"top", "bottom", "left", "right"}`` -> (x0, y0, x1, y1) as given (pixels or fractions)."""
    if not isinstance(bbox, dict):
        raise RowError("missing_key" if bbox is None else "bad_bbox", f"{what} is {str(bbox)[:60]!r}, not a mapping")
    missing = [k for k in ("top", "bottom", "left", "right") if k not in bbox]
    if missing:
        raise RowError("missing_key", f"{what} lacks {', '.join(missing)}")
    t, b, l, r = (number(bbox[k], f"{what}.{k}") for k in ("top", "bottom", "left", "right"))
    return l, t, r, b


def need(row: dict, key: str, where: str = "") -> Any:
    if key not in row or row[key] is None:
        raise RowError("missing_key", f"{where}{key!r} is missing")
    return row[key]


def load_json(path: pathlib.Path, what: str) -> Any:
    """A whole metadata file; a file that does not parse is a configuration problem (one clear line)."""
    if not path.is_file():
        raise ConfigError(f"{what}: {str(path)!r} does not exist; set the source's root (or its options.info)")
    if path.stat().st_size > MAX_METADATA_BYTES:
        raise ConfigError(f"{what}: {str(path)!r} is larger than {MAX_METADATA_BYTES >> 30} GiB; not a metadata file")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{what}: {str(path)!r} is not valid JSON ({str(e).splitlines()[0][:120]}); "
                          "download the file again") from None


class MediaIndex:
    """Media under a root by file stem: ``{stem: path}`` for videos, images and folders of frames.

    Built once per adapter by walking the root (hidden entries skipped, symlinked folders not followed). When two
    files share a stem, the one met first in sorted walk order wins and the duplicate is counted.
    """

    def __init__(self, roots: Iterable[pathlib.Path], frame_dirs: bool = False):
        self.videos: dict[str, pathlib.Path] = {}
        self.images: dict[str, pathlib.Path] = {}
        self.frame_dirs: dict[str, pathlib.Path] = {}
        self.duplicates = 0
        for root in roots:
            if root.is_dir():
                self._walk(root, frame_dirs)

    def _walk(self, root: pathlib.Path, frame_dirs: bool) -> None:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            here = pathlib.Path(dirpath)
            images_here = 0
            for fname in sorted(filenames):
                if fname.startswith("."):
                    continue
                stem, ext = os.path.splitext(fname)
                ext = ext.lower()
                if ext in VIDEO_EXTENSIONS:
                    self._add(self.videos, stem, here / fname)
                elif ext in IMAGE_EXTENSIONS:
                    images_here += 1
                    if not frame_dirs:
                        self._add(self.images, stem, here / fname)
            if frame_dirs and images_here and here != root:
                self._add(self.frame_dirs, here.name, here)

    def _add(self, table: dict, stem: str, path: pathlib.Path) -> None:
        if stem in table:
            self.duplicates += 1
        else:
            table[stem] = path


def first_existing(root: pathlib.Path, names: Iterable[str]) -> pathlib.Path | None:
    for name in names:
        p = root / name
        if p.exists():
            return p
    return None


def option_path(root: pathlib.Path, value: Any, key: str) -> pathlib.Path:
    """An option naming a file or folder, relative to the root unless absolute."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"sources option {key!r} must be a path string, got {value!r}")
    p = pathlib.Path(value).expanduser()
    return p if p.is_absolute() else root / p


def probe_size(path: pathlib.Path) -> tuple[int, int] | None:
    """(width, height) of a video from its header, or None if it cannot be opened (decode records why)."""
    from human_motion.media import MediaError, open_video, probe_video

    try:
        with open_video(str(path)) as container:
            info = probe_video(container)
        return info.width, info.height
    except MediaError:
        return None
