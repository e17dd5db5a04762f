"""``folder``: any directory tree of videos and images (private sets, ready-cut clips).

Every video file is a clip (the whole file); every image is a static sample (intensity 0). The clip id is the path
relative to the root, so unicode and spaces are kept as they are; files of other types, folders named like media
(``x.mp4/``), links out of the root, dangling links and FIFOs are recorded as rejections (see ``_common.walk``);
with ``images: false`` each image is a row too (``image_excluded``).
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

from human_motion.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from human_motion.sources._common import RootGuard, folder_named_like_media, rejected, walk
from human_motion.sources.config import SourceConfig
from human_motion.types import ClipSpec

IGNORED_FILES = {".ds_store", "thumbs.db", "desktop.ini"}


class FolderSource:
    """Reads: ``root`` recursively (hidden files and folders skipped). Options: ``images`` (default true)."""

    def __init__(self, name: str, cfg: SourceConfig, work_dir: pathlib.Path):
        self.name = name
        self.root = pathlib.Path(cfg.root or ".").expanduser()
        self.include_images = bool(cfg.options.get("images", True))
        self.guard = RootGuard(self.root, name, cfg.allow_links_outside_root)

    def specs(self) -> Iterator[ClipSpec]:
        if not self.root.is_dir():  # a single file is a folder of one
            yield from self._spec(self.root, self.root.name)
            return
        for entry in walk(self.root, self.guard):
            problem = entry.problem or folder_named_like_media(entry)
            if problem:
                yield rejected(self.name, entry.rel, problem.reason, problem.detail)
            elif not entry.is_dir and entry.path.name.lower() not in IGNORED_FILES:
                yield from self._spec(entry.path, entry.rel)

    def _spec(self, path: pathlib.Path, rel: str) -> Iterator[ClipSpec]:
        ext = path.suffix.lower()
        if ext in VIDEO_EXTENSIONS:
            yield ClipSpec(self.name, rel, str(path))
        elif ext in IMAGE_EXTENSIONS:
            if self.include_images:
                yield ClipSpec(self.name, rel, str(path), static=True)
            else:  # left out as asked, but still accounted for: every file of the tree is a sample or a row
                yield ClipSpec(self.name, rel, str(path), reject_reason="image_excluded",
                               reject_detail=f"an image, and sources.{self.name}.options.images is false")
        else:
            yield ClipSpec(self.name, rel, str(path), reject_reason="unsupported_file",
                           reject_detail=f"extension {ext or '(none)'!r} is neither a video nor an image")
