"""The configuration of one source (the ``sources.NAME`` sections of ``hm build``'s config)."""

from __future__ import annotations

import dataclasses
from typing import Any

from human_motion.config import ConfigError


@dataclasses.dataclass
class SourceConfig:
    """One corpus. ``root`` is its folder; adapters read their own ``options`` (see the README's source table)."""

    root: str | None = None
    limit: int | None = None  # at most this many clips that can be built (after sorting, so repeatable); --limit
    sample_fraction: float = 1.0  # keep this fraction of clips, chosen by a hash of the clip id (repeatable)
    # Links under the root that resolve outside it are rejected (outside_root) unless this is true: for corpora
    # whose files or folders are links into another disk.
    allow_links_outside_root: bool = False
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 0:
            raise ConfigError("sources.*.limit must be >= 0 (or null for no limit)")
        if not 0.0 < self.sample_fraction <= 1.0:
            raise ConfigError("sources.*.sample_fraction must be in (0, 1]")
