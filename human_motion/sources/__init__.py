"""Source adapters: each corpus yields ``ClipSpec``s; a registry maps names to adapters.

An adapter is a class ``Adapter(name, cfg: SourceConfig, work_dir: Path)`` with ``specs() -> Iterator[ClipSpec]``.
It reads metadata, never decodes media, and turns every row it cannot use into a ``ClipSpec`` with
``reject_reason`` set, so the row is recorded in rejects.parquet rather than lost.
"""

from __future__ import annotations

import hashlib
import importlib
import pathlib
from collections.abc import Iterator
from typing import Protocol

from human_motion.config import ConfigError
from human_motion.sources.config import SourceConfig
from human_motion.types import ClipSpec

# name -> "module:Class"; modules load lazily so an adapter's optional dependencies cost nothing elsewhere.
REGISTRY: dict[str, str] = {
    "folder": "human_motion.sources.folder:FolderSource",
    "demo": "human_motion.sources.demo:DemoSource",
    "celebv-hq": "human_motion.sources.celebv_hq:CelebVHQSource",
    "celebv-text": "human_motion.sources.celebv_text:CelebVTextSource",
    "vfhq": "human_motion.sources.vfhq:VFHQSource",
    "aahq": "human_motion.sources.aahq:AAHQSource",
}

# Rows for files that are not media at all (a README beside the videos), or media the source's options leave out:
# recorded, but not counted by ``limit``.
NOT_MEDIA = {"unsupported_file", "image_excluded"}

# Sources that need no root (they make their own media).
ROOTLESS = {"demo"}


class Source(Protocol):
    def specs(self) -> Iterator[ClipSpec]: ...


def get_adapter(name: str) -> type:
    if name not in REGISTRY:
        raise ConfigError(f"unknown source {name!r}; known sources: {', '.join(sorted(REGISTRY))}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def parse_sources_arg(text: str) -> dict[str, dict]:
    """``--sources celebv-hq,folder=videos/`` -> {"celebv-hq": {}, "folder": {"root": "videos/"}}."""
    out: dict[str, dict] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, root = part.partition("=")
        name = name.strip()
        if name not in REGISTRY:
            raise ConfigError(f"unknown source {name!r} in --sources; known sources: {', '.join(sorted(REGISTRY))}")
        out[name] = {"root": root.strip()} if root else {}
    if not out:
        raise ConfigError("--sources is empty; name at least one source, for example --sources folder=videos/")
    return out


def _keep(clip_id: str, fraction: float) -> bool:
    if fraction >= 1.0:
        return True
    h = int(hashlib.sha1(clip_id.encode("utf-8", "surrogatepass")).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


def check_sources(sources: dict[str, SourceConfig]) -> None:
    """Fail fast on a configuration that cannot work (unknown source, missing root folder)."""
    if not sources:
        raise ConfigError("no sources: pass --sources NAME[=ROOT],... or a [sources] section in --config")
    for name, scfg in sources.items():
        get_adapter(name)
        if name in ROOTLESS:
            continue
        if not scfg.root:
            raise ConfigError(f"source {name!r} needs a root folder: --sources {name}=PATH or sources.{name}.root")
        if not pathlib.Path(scfg.root).expanduser().exists():
            raise ConfigError(f"source {name!r}: root {scfg.root!r} does not exist; check the path")


def collect_specs(sources: dict[str, SourceConfig], work_dir: pathlib.Path) -> list[ClipSpec]:
    """Every clip of every configured source, in a repeatable order, after per-source sampling and limits."""
    check_sources(sources)
    specs: list[ClipSpec] = []
    for name in sorted(sources):
        scfg = sources[name]
        adapter = get_adapter(name)(name, scfg, work_dir)
        clips = sorted(adapter.specs(), key=lambda s: s.clip_id)
        clips = [c for c in clips if _keep(c.clip_id, scfg.sample_fraction)]
        if scfg.limit is not None:
            clips = _first_runnable(clips, scfg.limit)
        specs.extend(clips)
    return specs


def _first_runnable(clips: list[ClipSpec], limit: int) -> list[ClipSpec]:
    """The first ``limit`` clips that can be built, with the rows rejected on the way to them (a partial download
    lists thousands of clips without media before the first that has some: they are recorded, not counted) and
    every row for a file that is not media."""
    out, runnable = [], 0
    for c in clips:
        if runnable == limit:
            break
        out.append(c)
        runnable += c.reject_reason is None
    kept = {id(c) for c in out}
    return out + [c for c in clips if id(c) not in kept and c.reject_reason in NOT_MEDIA]
