"""``aahq``: AAHQ (Artstation-Artistic-face-HQ, Liu et al., BlendGAN, NeurIPS 2021), stylised portraits.

Every image is a *static* sample: one frame, intensity 0 (the paper's "zero-intensity calibration"). The root is the
image folder, or the dataset folder holding ``aligned/`` (the released face-aligned images, preferred) or ``raw/``;
``options.subdir`` names another. Metadata and licence files (txt, json, csv, md, html, pdf) are skipped; other files,
folders named like images, links out of the root and FIFOs are recorded as rejections. The label ``appearance`` says
the picture is an artwork, so the template description reads "A close-up portrait photo of a person, in a stylised
artwork, ...".
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

from human_motion.config import ConfigError
from human_motion.media import IMAGE_EXTENSIONS
from human_motion.sources.config import SourceConfig
from human_motion.sources._common import RootGuard, folder_named_like_media, option_path, rejected, walk
from human_motion.types import ClipSpec

SKIPPED = {".txt", ".json", ".csv", ".md", ".html", ".pdf", ".xlsx", ".tsv"}
DEFAULT_SUBDIRS = ("aligned", "raw")


class AAHQSource:
    """Options: ``subdir`` (default: ``aligned`` if present, else ``raw`` if present, else the root),
    ``appearance`` (the label phrase, default "in a stylised artwork")."""

    def __init__(self, name: str, cfg: SourceConfig, work_dir: pathlib.Path):
        self.name = name
        root = pathlib.Path(cfg.root or ".").expanduser()
        if "subdir" in cfg.options:  # named by the user: read wherever it is
            self.dir = option_path(root, cfg.options["subdir"], f"sources.{name}.options.subdir")
            if not self.dir.is_dir():
                raise ConfigError(f"source {name!r}: subdir {str(self.dir)!r} does not exist")
            self.guard = RootGuard(self.dir, name, cfg.allow_links_outside_root)
        else:
            self.dir = next((root / d for d in DEFAULT_SUBDIRS if (root / d).is_dir()), root)
            self.guard = RootGuard(root, name, cfg.allow_links_outside_root)
        self.appearance = str(cfg.options.get("appearance", "in a stylised artwork"))

    def specs(self) -> Iterator[ClipSpec]:
        for entry in walk(self.dir, self.guard):
            problem = entry.problem or folder_named_like_media(entry)
            ext = entry.path.suffix.lower()
            if problem:
                if ext not in SKIPPED or entry.is_dir:  # a licence file that is a dangling link is no loss
                    yield rejected(self.name, entry.rel, problem.reason, problem.detail)
            elif entry.is_dir:
                continue
            elif ext in IMAGE_EXTENSIONS:
                yield ClipSpec(self.name, entry.rel, str(entry.path), static=True,
                               labels={"appearance": self.appearance, "style": "artwork", "intensity": 0.0})
            elif ext not in SKIPPED:
                yield ClipSpec(self.name, entry.rel, str(entry.path), reject_reason="unsupported_file",
                               reject_detail=f"extension {ext or '(none)'!r} is not an image")
