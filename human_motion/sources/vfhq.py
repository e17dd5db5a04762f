"""``vfhq``: VFHQ (Xie et al., CVPRW 2022) from its per-clip meta files and its clips.

Meta: one text file per clip, ``Clip+{ytid}+P{pid}+C{clip}+F{start}-{end}.txt`` (anywhere under the root, or under
``options.meta_dir``)::

    Video ID: {ytid}
    H: 1080
    W: 1920
    FPS: 25.0
    FRAME INDEX X0 Y0 X1 Y1 [Landmarks (5 Points)]
    000125 812 211 1031 495 870 330 975 328 925 390 880 440 968 438
    ...
    CROP_BBOX: 640 80 1216 656

Frame rows are ``index x0 y0 x1 y1`` plus 10 landmark numbers (rows with only the box are accepted). As the
official processing script does, the clip's frames are ``start+1 .. end-1`` of the file name (``F{start}-{end}``),
i.e. ``span_frames = (start+1, end)``; ``options.trim_ends: false`` takes ``start .. end-1`` instead.

Media, looked up by name under the root (or ``options.media_dir``), in this order:

- a folder of frames named like the meta file (``Clip+...+F{start}-{end}/00000000.png``, what the official
  processing writes). Decode reads videos, so with ``options.frames: concat`` (default) the adapter writes, in
  ``{out}/_vfhq_media/``, an FFmpeg concat list (``.ffconcat``) of the frames at the meta FPS plus a symlink to
  the folder (FFmpeg's safe mode only reads plain relative names): nothing is copied and the frames are decoded by
  the decode workers. ``frames: convert`` encodes each folder into an MP4 there instead (no symlinks, but slow:
  it runs in the driver), ``frames: skip`` ignores frame folders;
- a video named like the meta file (``Clip+...+F{start}-{end}.mp4``, or ``Clip+{ytid}+P{pid}+C{clip}.mp4`` as
  third-party croppers write it), already cut and cropped;
- the raw YouTube video ``{ytid}.mp4``: the span comes from the name (frames / FPS, in seconds, so a download at
  another frame rate still gets the right span), the face hint from the frame rows.

For cut clips the face hint is the first frame's box relative to ``CROP_BBOX``; for raw videos it is that box in
the ``W`` x ``H`` frame. A meta file that does not parse, names that do not match, a crop or face box outside the
frame: each becomes a rejection of that clip.
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Iterator

import numpy as np

from human_motion.config import ConfigError
from human_motion.sources.config import SourceConfig
from human_motion.schema import safe_name
from human_motion.sources._common import (
    Entry, MediaIndex, RootGuard, RowError, check_id, norm_box, number, option_path, rejected, walk,
)
from human_motion.types import ClipSpec
from human_motion.untrusted import FileProblem, read_bytes

CLIP_NAME = re.compile(r"^Clip\+(?P<ytid>[^+/\\]+)\+P(?P<pid>\d+)\+C(?P<clip>\d+)\+F(?P<start>\d+)-(?P<end>\d+)$")
MAX_META_BYTES = 8 * 2**20
MAX_SIDE_PX = 16384
SAFE_FILE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")


def parse_meta(text: str) -> dict:
    """The fields of one meta file; RowError("bad_metadata") when it does not follow the format."""
    header: dict[str, str] = {}
    frames: dict[int, list[float]] = {}
    crop = None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.upper().startswith("CROP_BBOX"):
            values = line.split(":", 1)[1].split() if ":" in line else line.split()[1:]
            if len(values) != 4:
                raise RowError("bad_metadata", f"line {n}: CROP_BBOX needs 4 numbers")
            crop = [number(v, "CROP_BBOX") for v in values]
        elif line[0].isdigit():
            values = line.split()
            if len(values) not in (5, 15):
                raise RowError("bad_metadata", f"line {n}: a frame row has index, 4 box and 10 landmark numbers")
            nums = [number(v, f"line {n}") for v in values]
            frames[int(nums[0])] = nums[1:]
        elif ":" in line:
            key, value = line.split(":", 1)
            header[key.strip().lower()] = value.strip()
        elif line.upper().startswith("FRAME INDEX"):
            continue
        else:
            raise RowError("bad_metadata", f"line {n}: unexpected {line[:40]!r}")
    for key in ("video id", "h", "w", "fps"):
        if key not in header:
            raise RowError("bad_metadata", f"header line {key.title()!r} is missing")
    if crop is None:
        raise RowError("bad_metadata", "the CROP_BBOX line is missing")
    h, w, fps = number(header["h"], "H"), number(header["w"], "W"), number(header["fps"], "FPS")
    if not (0 < h <= MAX_SIDE_PX and 0 < w <= MAX_SIDE_PX) or not 0 < fps <= 1000:
        raise RowError("bad_metadata", f"H {h}, W {w}, FPS {fps} out of range")
    return {"video_id": header["video id"], "h": h, "w": w, "fps": fps, "frames": frames, "crop": crop}


def frames_to_mp4(folder: pathlib.Path, target: pathlib.Path, fps: float) -> None:
    """Encode a folder of frames (sorted by name) into an H.264 MP4, one frame at a time."""
    import av

    from human_motion.media import MediaError, read_image

    names = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"))
    if not names:
        raise RowError("missing_file", f"no frames in {folder.name}")
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with av.open(str(tmp), mode="w", format="mp4") as out:
            stream = None
            for p in names:
                try:  # checks the size from the header first: a frame cannot be a decompression bomb
                    rgb = read_image(str(p), MAX_SIDE_PX)
                except MediaError as e:
                    raise RowError("bad_frame", f"{folder.name}/{p.name}: {e}") from None
                if stream is None:
                    h, w = rgb.shape[:2]
                    stream = out.add_stream("libx264", rate=round(fps * 1000) / 1000 if fps % 1 else int(fps))
                    stream.width, stream.height = w - w % 2, h - h % 2
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"crf": "18"}
                rgb = np.ascontiguousarray(rgb[: stream.height, : stream.width])
                if rgb.shape[:2] != (stream.height, stream.width):
                    raise RowError("bad_frame", f"{folder.name}/{p.name} has another size than the first frame")
                for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def frames_to_concat(folder: pathlib.Path, target: pathlib.Path, fps: float) -> None:
    """An FFmpeg concat list ``target`` playing the frames of ``folder`` (sorted by name) at ``fps``, through a
    symlink beside it named like the list (both plain names, as FFmpeg's safe mode requires)."""
    names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"))
    if not names:
        raise RowError("missing_file", f"no frames in {folder.name}")
    if any(not SAFE_FILE.match(n) for n in names):
        raise RowError("bad_frame", f"frame names in {folder.name} are not plain (letters, digits, . _ -); "
                       "use sources.vfhq.options.frames=convert")
    target.parent.mkdir(parents=True, exist_ok=True)
    link = target.with_suffix("")
    if link.is_symlink() and link.resolve() != folder.resolve():
        link.unlink()
    if not link.is_symlink():
        link.symlink_to(folder.resolve(), target_is_directory=True)
    lines = ["ffconcat version 1.0"]
    for n in names:
        lines += [f"file '{link.name}/{n}'", f"duration {1.0 / fps:.6f}"]
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    tmp.write_text("\n".join(lines) + "\n", encoding="ascii")
    os.replace(tmp, target)


class VFHQSource:
    """Options: ``meta_dir`` (default: the root), ``media_dir`` (default: the root), ``trim_ends`` (default true),
    ``frames`` (frame folders: ``concat``, default, ``convert`` to MP4, or ``skip``)."""

    def __init__(self, name: str, cfg: SourceConfig, work_dir: pathlib.Path):
        self.name = name
        self.root = pathlib.Path(cfg.root or ".").expanduser()
        opts = cfg.options
        self.meta_dir = option_path(self.root, opts["meta_dir"], f"sources.{name}.options.meta_dir") \
            if "meta_dir" in opts else self.root
        self.media_dir = option_path(self.root, opts["media_dir"], f"sources.{name}.options.media_dir") \
            if "media_dir" in opts else self.root
        self.trim = bool(opts.get("trim_ends", True))
        self.frames_mode = opts.get("frames", "concat")
        if self.frames_mode not in ("concat", "convert", "skip"):
            raise ConfigError(f"sources.{name}.options.frames must be concat, convert or skip")
        self.cache = pathlib.Path(work_dir) / "_vfhq_media"
        self.allow_outside = cfg.allow_links_outside_root
        self.meta_guard = RootGuard(self.meta_dir, name, self.allow_outside)

    def meta_files(self) -> list[Entry]:
        """The ``Clip+*.txt`` entries under the meta folder, with the problem of those that must not be read."""
        if not self.meta_dir.is_dir():
            raise ConfigError(f"source {self.name!r}: meta folder {str(self.meta_dir)!r} does not exist")
        out = [e for e in walk(self.meta_dir, self.meta_guard)
               if not e.is_dir and e.path.name.startswith("Clip+") and e.path.name.endswith(".txt")]
        if not out:
            raise ConfigError(f"source {self.name!r}: no Clip+*.txt meta files under {str(self.meta_dir)!r}")
        return out

    def specs(self) -> Iterator[ClipSpec]:
        metas = self.meta_files()
        media = MediaIndex([self.media_dir], source=self.name, allow_outside=self.allow_outside)
        folders = MediaIndex([self.media_dir], frame_dirs=True, source=self.name, allow_outside=self.allow_outside) \
            if self.frames_mode != "skip" else None
        seen: set[str] = set()
        for entry in metas:
            clip_name = entry.path.stem
            try:
                if entry.problem:  # a link out of the root, a dangling link, a FIFO: never opened
                    raise entry.problem
                if clip_name in seen:  # the same clip's meta file in two folders: its samples would collide
                    raise RowError("duplicate_id", f"another {entry.path.name} was read first")
                seen.add(clip_name)
                yield self.spec(entry.path, clip_name, media, folders)
            except RowError as e:
                yield rejected(self.name, clip_name, e.reason, e.detail)

    def spec(self, path: pathlib.Path, clip_name: str, media: MediaIndex, folders: MediaIndex | None) -> ClipSpec:
        check_id(clip_name)
        m = CLIP_NAME.match(clip_name)
        if not m:
            raise RowError("bad_id", f"{clip_name[:80]!r} is not Clip+{{ytid}}+P{{pid}}+C{{clip}}+F{{start}}-{{end}}")
        start, end = int(m["start"]), int(m["end"])
        first, stop = (start + 1, end) if self.trim else (start, end)
        if stop <= first:
            raise RowError("bad_span", f"frames F{start}-{end} hold no frame")
        try:
            data = read_bytes(path, MAX_META_BYTES)
        except FileProblem as e:
            raise RowError("bad_metadata" if e.reason == "too_large" else e.reason, f"{path.name} {e.what}") from None
        meta = parse_meta(data.decode("utf-8", errors="replace"))
        if meta["video_id"] != m["ytid"]:
            raise RowError("bad_metadata", f"Video ID {meta['video_id'][:40]!r} differs from the name's {m['ytid']!r}")
        w, h = meta["w"], meta["h"]
        cx0, cy0, cx1, cy1 = meta["crop"]
        norm_box(cx0, cy0, cx1, cy1, w, h)  # the crop box must lie in the frame
        in_span = [i for i in sorted(meta["frames"]) if first <= i < stop] or sorted(meta["frames"])
        face = meta["frames"][in_span[0]][:4] if in_span else None
        labels = {"ytid": m["ytid"], "pid": int(m["pid"]), "clip": int(m["clip"]), "frames": [first, stop],
                  "source_size": [int(w), int(h)], "crop_bbox": [cx0, cy0, cx1, cy1]}
        frame_dirs = folders.frame_dirs if folders is not None else {}
        if clip_name in frame_dirs:
            if self.frames_mode == "concat":
                target = self.cache / f"{safe_name(clip_name, 120)}.ffconcat"
                frames_to_concat(frame_dirs[clip_name], target, meta["fps"])
            else:
                target = self.cache / f"{safe_name(clip_name, 120)}.mp4"
                if not target.exists():
                    frames_to_mp4(frame_dirs[clip_name], target, meta["fps"])
            return self._cut(clip_name, target, face, meta, dict(labels, layout="frames"))
        short = clip_name.rsplit("+F", 1)[0]  # third-party croppers name clips Clip+{ytid}+P{pid}+C{clip}.mp4
        video = media.videos.get(clip_name) or media.videos.get(short)
        if video is not None:
            return self._cut(clip_name, video, face, meta, dict(labels, layout="clips"))
        ytid = check_id(m["ytid"])
        if ytid in media.videos:
            bbox = norm_box(*face, w, h) if face else None
            # Frame numbers count frames at the meta's FPS; a download may come at another rate, so the span is
            # given in seconds (the official script's start_t = frame / FPS).
            fps = meta["fps"]
            return ClipSpec(self.name, clip_name, str(media.videos[ytid]), start_s=first / fps, end_s=stop / fps,
                            bbox=bbox, labels=dict(labels, layout="raw"))
        if folders is not None and clip_name in folders.problems:  # e.g. a frame folder linking out of the root
            raise folders.missing([clip_name], "", self.media_dir)
        raise media.missing([clip_name, short, ytid], f"{clip_name}/ frames, {clip_name}.mp4 or {ytid}.mp4",
                            self.media_dir)

    def _cut(self, clip_name: str, path: pathlib.Path, face, meta: dict, labels: dict) -> ClipSpec:
        """A clip already cut and cropped to CROP_BBOX: the face box relative to the crop is the hint."""
        cx0, cy0, cx1, cy1 = meta["crop"]
        bbox = None
        if face:
            norm_box(*face, meta["w"], meta["h"])  # the face box must lie in the source frame
            fx0, fy0, fx1, fy1 = face
            bbox = norm_box(max(fx0, cx0) - cx0, max(fy0, cy0) - cy0, min(fx1, cx1) - cx0, min(fy1, cy1) - cy0,
                            cx1 - cx0, cy1 - cy0)
        return ClipSpec(self.name, clip_name, str(path), bbox=bbox, labels=labels)
