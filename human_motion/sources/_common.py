"""What the corpus adapters share: untrusted-field checks, a guarded walk of a root, a media index, metadata loading.

Every field of a metadata file is untrusted. Clip ids never become paths: media are found by looking a file *stem*
up in an index built by walking the root, so an id such as ``../../etc/passwd`` can only fail to match (and is
rejected first anyway, with reason ``bad_id``). Numbers must be finite; spans and boxes are checked here, the span
against the video's length later in decode (``span_out_of_range``).

Nothing outside a source's root is opened: the walk resolves every link with ``realpath`` (never opening it) and
turns a link that leads out of the root into a rejection (``outside_root``) unless the source allows it
(``allow_links_outside_root``); FIFOs, devices and dangling links become rejections without being opened.
"""

from __future__ import annotations

import logging
import math
import os
import pathlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from human_motion.config import ConfigError
from human_motion.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from human_motion.types import ClipSpec
from human_motion.untrusted import FileProblem, decode_utf8, file_problem, loads_json, nesting_problem, read_bytes

log = logging.getLogger("human_motion")

MAX_ID_LEN = 200
MAX_METADATA_BYTES = 2 * 2**30  # a metadata file larger than this is not one of the known corpora
MAX_ROW_DEPTH = 12  # a CelebV row nests 7 levels (row, attributes, emotion, labels, segments, segment, value)
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
    top, bottom, left, right = (number(bbox[k], f"{what}.{k}") for k in ("top", "bottom", "left", "right"))
    return left, top, right, bottom


def need(row: dict, key: str, where: str = "") -> Any:
    if key not in row or row[key] is None:
        raise RowError("missing_key", f"{where}{key!r} is missing")
    return row[key]


def load_json(path: pathlib.Path, what: str) -> Any:
    """A whole metadata file, read as untrusted (see human_motion.untrusted); a file that is missing, not a regular
    file, not UTF-8 or not JSON is a configuration problem: one clear line."""
    try:
        return loads_json(decode_utf8(read_bytes(path, MAX_METADATA_BYTES)))
    except FileProblem as e:
        fix = {"missing_file": "set the source's root (or its options.info)",
               "not_a_file": "point the source's options.info at the metadata file"}.get(e.reason,
                                                                                       "download the file again")
        raise ConfigError(f"{what}: {str(path)!r} {e.what}; {fix}") from None


def check_nesting(row: Any) -> None:
    """RowError("bad_row") for a row nested deeper than any corpus nests its rows (labels recurse over them)."""
    problem = nesting_problem(row, MAX_ROW_DEPTH)
    if problem:
        raise RowError("bad_row", f"the row {problem}")


class RootGuard:
    """Where a source may read: below ``root``, links resolved (with realpath, which opens nothing)."""

    def __init__(self, root: pathlib.Path, source: str, allow_outside: bool = False):
        self.root = root
        self.real = os.path.realpath(root)
        self.source, self.allow_outside = source, allow_outside

    def contains(self, real: str) -> bool:
        return real == self.real or real.startswith(self.real.rstrip(os.sep) + os.sep)

    def problem(self, path: pathlib.Path, rel: str) -> RowError | None:
        """Why ``path`` (a link, or a folder reached through one) may not be read: it resolves outside the root
        (``outside_root``) or to nothing (``missing_file``); None if it may."""
        real = os.path.realpath(path)
        if not self.allow_outside and not self.contains(real):
            return RowError("outside_root", f"{rel} is a link to {real!r}, outside the source root "
                            f"{str(self.root)!r}; set sources.{self.source}.allow_links_outside_root: true to "
                            "read links into other disks")
        if not os.path.exists(path):
            return RowError("missing_file", f"{rel} is a link to {real!r}, which does not exist")
        return None


@dataclass
class Entry:
    """One thing found by :func:`walk`: ``path`` as found (links not resolved), ``rel`` relative to the walked
    folder; ``problem`` says why it must not be read (a link out of the root, a FIFO...)."""

    path: pathlib.Path
    rel: str
    is_dir: bool = False
    problem: RowError | None = None


def walk(top: pathlib.Path, guard: RootGuard) -> Iterator[Entry]:
    """Every file and folder under ``top`` in sorted order, hidden names skipped, without recursion (a deep tree
    cannot exhaust the stack). Links are followed only when they resolve inside the guard's root (or it allows
    links out); each real folder is walked once, so link loops end. A link out of the root, a dangling link, a
    FIFO, socket or device is yielded with its problem, never opened."""
    if top.is_symlink() or not guard.contains(os.path.realpath(top)):
        problem = guard.problem(top, str(top))
        if problem:
            yield Entry(top, top.name, True, problem)
            return
    seen = {os.path.realpath(top)}
    stack = [(top, "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            with os.scandir(folder) as it:
                names = sorted((e.name, e.is_symlink()) for e in it if not e.name.startswith("."))
        except OSError as e:
            rel = prefix.rstrip("/") or "."
            yield Entry(folder, rel, True, RowError("unreadable", f"{rel} cannot be listed ({e.strerror})"))
            continue
        subdirs = []
        for name, is_link in names:
            path, rel = folder / name, prefix + name
            link_problem = guard.problem(path, rel) if is_link else None
            if link_problem:
                yield Entry(path, rel, False, link_problem)
                continue
            if os.path.isdir(path):  # stat, following a link already checked above
                real = os.path.realpath(path)
                if real not in seen:
                    seen.add(real)
                    subdirs.append((path, rel + "/"))
                    yield Entry(path, rel, True)
                continue
            kind = file_problem(path)
            yield Entry(path, rel, False, RowError(kind.reason, f"{rel} {kind.what}") if kind else None)
        stack.extend(reversed(subdirs))


def media_kind(name: str) -> str | None:
    ext = os.path.splitext(name)[1].lower()
    return "video" if ext in VIDEO_EXTENSIONS else "image" if ext in IMAGE_EXTENSIONS else None


def folder_named_like_media(entry: Entry) -> RowError | None:
    """A folder named like a video or an image (``x.mp4/``): not media, but a row should say so."""
    kind = media_kind(entry.path.name) if entry.is_dir and entry.problem is None else None
    return RowError("not_a_file", f"{entry.rel} is a directory named like {'an' if kind == 'image' else 'a'} "
                    f"{kind}") if kind else None


class MediaIndex:
    """Media under roots by file stem: ``{stem: path}`` for videos, images and folders of frames, and
    ``problems`` (stem -> RowError) for media-looking entries that must not be read (links out of the root, FIFOs,
    folders named like videos, frame folders holding such a frame).

    Built once per adapter by walking each root with :func:`walk`. When two files share a stem, the one met first
    in sorted walk order wins and the duplicate is counted.
    """

    def __init__(self, roots: Iterable[pathlib.Path], frame_dirs: bool = False, source: str = "",
                 allow_outside: bool = False):
        self.videos: dict[str, pathlib.Path] = {}
        self.images: dict[str, pathlib.Path] = {}
        self.frame_dirs: dict[str, pathlib.Path] = {}
        self.problems: dict[str, RowError] = {}
        self.blocked: list[str] = []  # links to folders that were not followed (outside the root)
        self.duplicates = 0
        for root in roots:
            if root.is_dir():
                self._walk(root, RootGuard(root, source, allow_outside), frame_dirs)

    def _walk(self, root: pathlib.Path, guard: RootGuard, frame_dirs: bool) -> None:
        frames_in: dict[pathlib.Path, RowError | None] = {}  # folder -> the problem of its first bad frame
        for e in walk(root, guard):
            stem, kind = os.path.splitext(e.path.name)[0], media_kind(e.path.name)
            if e.problem is not None:
                if kind:
                    self.problems.setdefault(stem, e.problem)
                else:  # a folder link (or any link) without a media name: it may hold the media
                    self.problems.setdefault(e.path.name, e.problem)
                    if e.problem.reason == "outside_root":
                        self.blocked.append(e.rel)
                if frame_dirs and kind == "image" and e.path.parent != root:
                    frames_in[e.path.parent] = frames_in.get(e.path.parent) or e.problem
            elif e.is_dir:
                if kind:
                    self.problems.setdefault(stem, folder_named_like_media(e))
            elif kind == "video":
                self._add(self.videos, stem, e.path)
            elif kind == "image" and frame_dirs:
                if e.path.parent != root:
                    frames_in.setdefault(e.path.parent, None)
            elif kind == "image":
                self._add(self.images, stem, e.path)
        for folder, problem in frames_in.items():
            if problem is None:
                self._add(self.frame_dirs, folder.name, folder)
            else:
                self.problems.setdefault(folder.name, problem)

    def _add(self, table: dict, stem: str, path: pathlib.Path) -> None:
        if stem in table:
            self.duplicates += 1
        else:
            table[stem] = path

    def missing(self, stems: Iterable[str], wanted: str, where: Any) -> RowError:
        """The rejection for media not found under any of ``stems``: the problem of a matching entry if there is
        one (a link out of the root, a FIFO...), else ``missing_file``, naming links to folders not followed."""
        for stem in stems:
            if stem in self.problems:
                p = self.problems[stem]
                return RowError(p.reason, p.detail)
        detail = f"no {wanted} under {where}"
        if self.blocked:
            detail += (f" (links to folders outside the root were not followed: {', '.join(self.blocked[:3])}; "
                       "allow_links_outside_root: true follows them)")
        return RowError("missing_file", detail)


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
        return info.display_size  # the boxes are measured on the frames as shown
    except MediaError:
        return None
