"""``celebv-hq``: CelebV-HQ (Zhu et al., ECCV 2022) from ``celebvhq_info.json`` and its videos.

Metadata (``celebvhq_info.json``, as published)::

    {"meta_info": {"appearance_mapping": [...40], "action_mapping": [...35], "emotion_mapping": [...8]},
     "clips": {"{clip_id}": {"ytb_id": "...", "duration": {"start_sec": 1.2, "end_sec": 9.8},
                            "bbox": {"top": 0.1, "bottom": 0.6, "left": 0.3, "right": 0.7},   # fractions 0..1
                            "attributes": {"appearance": [0/1 x40], "action": [0/1 x35],
                                           "emotion": {"sep_flag": false, "labels": "happy"}},
                            "version": "v0.1"}}}

Media, looked up by file stem anywhere under the root (or under ``options.clips_dir`` / ``options.raw_dir``):

- the *clip* layout, what the official ``download_and_process.py`` writes: ``{clip_id}.mp4``, already cut to the
  span and cropped around the box (the whole file is the clip; no box hint, since the face fills the crop);
- the *raw* layout: ``{ytb_id}.mp4``, the full YouTube video; the span and the box (as the face hint) come from
  the row.

``options.layout``: ``auto`` (default: the clip file if present, else the raw video), ``clips`` or ``raw``.
Every row is checked before use (id, ytb_id, span, box, attribute vectors); a row that fails becomes a rejection.
"""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Iterator
from typing import Any

from human_motion.config import ConfigError
from human_motion.sources.config import SourceConfig
from human_motion.sources import celebv_labels
from human_motion.sources._common import (
    MediaIndex, RootGuard, RowError, box_tblr, check_id, check_nesting, check_span_s, load_json, need, norm_box, number,
    option_path, rejected,
)
from human_motion.types import ClipSpec
from human_motion.untrusted import has_control_chars

log = logging.getLogger("human_motion")

LAYOUTS = ("auto", "clips", "raw")


class CelebVHQSource:
    """Options: ``info`` (metadata file, default ``{root}/celebvhq_info.json``), ``layout`` (auto | clips | raw),
    ``clips_dir`` and ``raw_dir`` (where the cut clips / full videos are; default: anywhere under the root)."""

    info_names = ("celebvhq_info.json",)
    bbox_in_pixels = False

    def __init__(self, name: str, cfg: SourceConfig, work_dir: pathlib.Path):
        self.name = name
        self.root = pathlib.Path(cfg.root or ".").expanduser()
        self.options = dict(cfg.options)
        self.layout = self.options.get("layout", "auto")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"sources.{name}.options.layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        self.work_dir = pathlib.Path(work_dir)
        self.allow_outside = cfg.allow_links_outside_root
        self.guard = RootGuard(self.root, name, self.allow_outside)

    # --- metadata -------------------------------------------------------------------------------------------------
    def info_path(self) -> pathlib.Path:
        """The metadata file. One found by default must lie in the root (a link out of it is refused unless
        allowed); one named in options.info is read wherever it is. Whether it is a readable file is load_json's
        to say (a FIFO, a dangling link), without opening it."""
        if "info" in self.options:
            return option_path(self.root, self.options["info"], f"sources.{self.name}.options.info")
        if not self.root.is_dir():
            return self.root
        found = [self.root / n for n in self.info_names if os.path.lexists(self.root / n)]
        found = found or sorted(p for n in self.info_names for p in self.root.glob(f"*/{n}"))
        if not found:
            raise ConfigError(f"source {self.name!r}: no {' or '.join(self.info_names)} in {str(self.root)!r}; "
                              f"put it in the root or set sources.{self.name}.options.info")
        problem = self.guard.problem(found[0], repr(str(found[0])))
        if problem and problem.reason == "outside_root":
            raise ConfigError(f"source {self.name!r}: {problem.detail}, or name the file in options.info")
        return found[0]

    def clip_rows(self, data: Any, path: pathlib.Path) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("clips"), dict):
            raise ConfigError(f"source {self.name!r}: {str(path)!r} has no 'clips' mapping at top level; "
                              "is it celebvhq_info.json?")
        return data["clips"]

    def mappings(self, data: dict) -> dict[str, list[str]]:
        """The file's own label names when it has valid ones, else the published lists."""
        meta = data.get("meta_info") if isinstance(data.get("meta_info"), dict) else {}
        out = {}
        for key, default in (("appearance", celebv_labels.APPEARANCE), ("action", celebv_labels.ACTION),
                             ("emotion", celebv_labels.EMOTION)):
            names = meta.get(f"{key}_mapping")
            ok = isinstance(names, list) and len(names) == len(default) and all(
                isinstance(n, str) and len(n) <= 40 and not has_control_chars(n) for n in names)
            out[key] = [n.strip().lower() for n in names] if ok else default
        return out

    # --- media ----------------------------------------------------------------------------------------------------
    def media_index(self) -> tuple[MediaIndex, MediaIndex]:
        def roots(key: str) -> list[pathlib.Path]:
            return [option_path(self.root, self.options[key], f"sources.{self.name}.options.{key}")] \
                if key in self.options else [self.root]
        clips = MediaIndex(roots("clips_dir"), source=self.name, allow_outside=self.allow_outside)
        raw = clips if roots("raw_dir") == roots("clips_dir") else MediaIndex(
            roots("raw_dir"), source=self.name, allow_outside=self.allow_outside)
        if clips.duplicates or raw.duplicates:
            log.warning("source %s: %d media files share a name with another; the first in sorted order is used",
                        self.name, clips.duplicates + (raw.duplicates if raw is not clips else 0))
        return clips, raw

    def specs(self) -> Iterator[ClipSpec]:
        path = self.info_path()
        data = load_json(path, f"source {self.name!r}")
        rows = self.clip_rows(data, path)
        mappings = self.mappings(data) if isinstance(data, dict) else {}
        clips, raw = self.media_index()
        self.prepare(rows)
        for clip_id, row in rows.items():
            try:
                yield self.spec(clip_id, row, mappings, clips, raw)
            except RowError as e:
                yield rejected(self.name, clip_id, e.reason, e.detail)

    def prepare(self, rows: dict[str, Any]) -> None:
        """Hook for subclasses (CelebV-Text indexes its text files here)."""

    # --- one row --------------------------------------------------------------------------------------------------
    def span(self, duration: Any) -> tuple[float | None, float | None, tuple[int, int] | None]:
        if not isinstance(duration, dict):
            raise RowError("bad_span", f"duration is {str(duration)[:60]!r}, not a mapping")
        start = number(need(duration, "start_sec", "duration."), "duration.start_sec")
        end = number(need(duration, "end_sec", "duration."), "duration.end_sec")
        start, end = check_span_s(start, end)
        return start, end, None

    def box(self, bbox: Any, raw_video: pathlib.Path | None) -> tuple[float, float, float, float]:
        return norm_box(*box_tblr(bbox))

    def labels(self, clip_id: str, row: dict, mappings: dict[str, list[str]]) -> dict[str, Any]:
        return celebv_labels.celebvhq_labels(row.get("attributes"), mappings)

    def spec(self, clip_id: Any, row: Any, mappings: dict, clips: MediaIndex, raw: MediaIndex) -> ClipSpec:
        clip_id = check_id(clip_id)
        if not isinstance(row, dict):
            raise RowError("bad_row", f"row is a {type(row).__name__}, not a mapping")
        check_nesting(row)
        ytb_id = check_id(need(row, "ytb_id"))
        start, end, frames = self.span(need(row, "duration"))
        raw_path = raw.videos.get(ytb_id) if self.layout in ("auto", "raw") else None
        clip_path = clips.videos.get(clip_id) if self.layout in ("auto", "clips") else None
        bbox = self.box(need(row, "bbox"), raw_path if clip_path is None else None)
        labels = dict(self.labels(clip_id, row, mappings), ytb_id=ytb_id)
        if clip_path is not None:
            labels["layout"] = "clips"
            return ClipSpec(self.name, clip_id, str(clip_path), labels=labels)
        if raw_path is not None:
            labels["layout"] = "raw"
            return ClipSpec(self.name, clip_id, str(raw_path), start_s=start, end_s=end, span_frames=frames,
                            bbox=bbox, labels=labels)
        wanted = {"auto": f"{clip_id}.mp4 or {ytb_id}.mp4", "clips": f"{clip_id}.mp4", "raw": f"{ytb_id}.mp4"}
        looked = [(index, stem) for index, stem, layout in ((clips, clip_id, "clips"), (raw, ytb_id, "raw"))
                  if self.layout in ("auto", layout)]
        for index, stem in looked:  # a file by that name that must not be read (a link out of the root...)
            if stem in index.problems:
                raise index.missing([stem], wanted[self.layout], self.root)
        raise looked[-1][0].missing([], wanted[self.layout], self.root)
