"""``aahq``: AAHQ (Artstation-Artistic-face-HQ, Liu et al., BlendGAN, NeurIPS 2021), stylised portraits.

Every image is a *static* sample: one frame, intensity 0 (the paper's "zero-intensity calibration"). The root is the
image folder, or the dataset folder holding ``aligned/`` (the released face-aligned images, preferred) or ``raw/``;
``options.subdir`` names another. Metadata and licence files (txt, json, csv, md, html, pdf) are skipped; other files
are recorded as rejections. The label ``appearance`` says the picture is an artwork, so the template description
reads "A close-up portrait photo of a person, in a stylised artwork, ...".
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator

from human_motion.config import ConfigError
from human_motion.media import IMAGE_EXTENSIONS
from human_motion.sources.config import SourceConfig
from human_motion.sources._common import option_path
from human_motion.types import ClipSpec

SKIPPED = {".txt", ".json", ".csv", ".md", ".html", ".pdf", ".xlsx", ".tsv"}
DEFAULT_SUBDIRS = ("aligned", "raw")


class AAHQSource:
    """Options: ``subdir`` (default: ``aligned`` if present, else ``raw`` if present, else the root),
    ``appearance`` (the label phrase, default "in a stylised artwork")."""

    def __init__(self, name: str, cfg: SourceConfig, work_dir: pathlib.Path):
        self.name = name
        root = pathlib.Path(cfg.root or ".").expanduser()
        if "subdir" in cfg.options:
            self.dir = option_path(root, cfg.options["subdir"], f"sources.{name}.options.subdir")
            if not self.dir.is_dir():
                raise ConfigError(f"source {name!r}: subdir {str(self.dir)!r} does not exist")
        else:
            self.dir = next((root / d for d in DEFAULT_SUBDIRS if (root / d).is_dir()), root)
        self.appearance = str(cfg.options.get("appearance", "in a stylised artwork"))

    def specs(self) -> Iterator[ClipSpec]:
        for dirpath, dirnames, filenames in os.walk(self.dir, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fname in sorted(filenames):
                if fname.startswith("."):
                    continue
                path = pathlib.Path(dirpath) / fname
                rel = path.relative_to(self.dir).as_posix()
                ext = path.suffix.lower()
                if ext in IMAGE_EXTENSIONS:
                    yield ClipSpec(self.name, rel, str(path), static=True,
                                   labels={"appearance": self.appearance, "style": "artwork", "intensity": 0.0})
                elif ext not in SKIPPED:
                    yield ClipSpec(self.name, rel, str(path), reject_reason="unsupported_file",
                                   reject_detail=f"extension {ext or '(none)'!r} is not an image")
