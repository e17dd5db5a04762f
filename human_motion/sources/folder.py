"""``folder``: any directory tree of videos and images (private sets, ready-cut clips).

Every video file is a clip (the whole file); every image is a static sample (intensity 0). The clip id is the path
relative to the root, so unicode and spaces are kept as they are; files of other types are recorded as rejections.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator

from human_motion.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from human_motion.sources.config import SourceConfig
from human_motion.types import ClipSpec

IGNORED_FILES = {".ds_store", "thumbs.db", "desktop.ini"}


class FolderSource:
    """Reads: ``root`` recursively (hidden files and folders skipped). Options: ``images`` (default true)."""

    def __init__(self, name: str, cfg: SourceConfig, work_dir: pathlib.Path):
        self.name = name
        self.root = pathlib.Path(cfg.root or ".").expanduser()
        self.include_images = bool(cfg.options.get("images", True))

    def specs(self) -> Iterator[ClipSpec]:
        if self.root.is_file():  # a single file is a folder of one
            yield from self._spec(self.root, self.root.name)
            return
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fname in sorted(filenames):
                if fname.startswith(".") or fname.lower() in IGNORED_FILES:
                    continue
                path = pathlib.Path(dirpath) / fname
                yield from self._spec(path, path.relative_to(self.root).as_posix())

    def _spec(self, path: pathlib.Path, rel: str) -> Iterator[ClipSpec]:
        ext = path.suffix.lower()
        if ext in VIDEO_EXTENSIONS:
            yield ClipSpec(self.name, rel, str(path))
        elif ext in IMAGE_EXTENSIONS:
            if self.include_images:
                yield ClipSpec(self.name, rel, str(path), static=True)
        else:
            yield ClipSpec(self.name, rel, str(path), reject_reason="unsupported_file",
                           reject_detail=f"extension {ext or '(none)'!r} is neither a video nor an image")
