"""``hm build`` configuration: one section per concern. Each stage's section is defined next to the stage
(stages/*.py) and is all that stage receives; this file adds the engine's own (sink, ray) and assembles them.

Defaults are the paper's where it fixes them (16 frames at 4 fps, 512x512 crops) and offline CPU backends
otherwise. ``configs/build.yaml`` lists every key with a comment; ``configs/paper.yaml`` tightens the filters to
the project page's (512 px sources).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Literal

from human_motion.config import ConfigError
from human_motion.sources.config import SourceConfig
from human_motion.stages.base import Stage, output_settings
from human_motion.stages.caption import CaptionConfig
from human_motion.stages.dataflow import OPTIONAL, STAGE_NAMES, dataflow
from human_motion.stages.decode import DecodeConfig
from human_motion.stages.encode import EncodeConfig
from human_motion.stages.faces import FacesConfig
from human_motion.stages.flow import FlowConfig
from human_motion.stages.quality import QualityConfig
from human_motion.stages.select import SelectConfig


@dataclasses.dataclass(frozen=True)
class SinkConfig:
    # Input clips per shard (of those that can run: rows the sources reject take no place). A kept clip stores
    # ~0.4-0.9 MB (one to four 16-frame 512 px windows at ~0.45 MB, benchmarks/scale.py), so a shard is ~100-400 MB:
    # inside WebDataset's 100 MB-1 GB, and 106k clips still make ~200 shards, enough for every loader worker of an
    # 8-GPU node to stream its own. A build stopped mid-shard loses nothing (parts are kept per task).
    clips_per_shard: int = 512
    mode: Literal["incremental", "overwrite"] = dataclasses.field(default="incremental", metadata={"runtime": True})

    def __post_init__(self) -> None:
        if self.clips_per_shard < 1:
            raise ConfigError(f"sink.clips_per_shard must be >= 1 (got {self.clips_per_shard}): a shard holds at "
                              "least one clip")


@dataclasses.dataclass(frozen=True)
class RayConfig:
    # None: join RAY_ADDRESS if set, else start a Ray here; "auto" or host:port: join that Ray; local: no Ray.
    address: str | None = None
    num_cpus: int | None = None  # for the in-process Ray; None: all cores
    object_store_memory_mb: int | None = None
    # Stages with no GPU share one actor (decode ... encode in one call, no hand-over between processes); each
    # GPU stage keeps a pool of its own. False: one pool per stage, each with its section's resources.
    fuse_cpu_stages: bool = True
    cpu_actors: int | None = None  # actors of the fused CPU pool; None: one per CPU Ray sees, minus GPU stages'
    max_retries: int = 3  # restarts of a crashed actor and retries of its task; then its clip is quarantined
    progress: bool = False  # Ray Data's own operator progress bars (hm build shows its own)
    # Without Ray (address: local): clips worked on at once in this process, each thread with its own models
    # (~250 MB each); 2 is 1.3x faster than 1 on 2 cores. None: 2 (1 on a one-core machine). No crash quarantine
    # without Ray.
    local_threads: int | None = None
    # The nice value of the workers of a Ray this build starts. Ray's own default, 15, gives its workers about a
    # thirtieth of the CPU time of a process at 0: on a node that runs other CPU-bound work, a clip's probe took
    # 70 ms instead of 4 (benchmarks/README.md, "Corpus scale"). 0: the share of any other process. A joined Ray
    # keeps the value it was started with (``RAY_worker_niceness=0 ray start ...``); the build says so.
    worker_niceness: int = 0

    def __post_init__(self) -> None:
        at_least_one = (self.cpu_actors, self.local_threads)
        if self.max_retries < 0 or any(n is not None and n < 1 for n in at_least_one):
            raise ConfigError("ray.max_retries must be >= 0, ray.cpu_actors >= 1 (or null) and ray.local_threads "
                              ">= 1 (or null)")
        if not 0 <= self.worker_niceness <= 19:
            raise ConfigError(f"ray.worker_niceness must be 0..19 (a nice value), not {self.worker_niceness}")

    def in_process_threads(self) -> int:
        """Threads of a build without Ray: ``local_threads``, else 2 (1 on a one-core machine)."""
        return self.local_threads or min(2, os.cpu_count() or 1)


@dataclasses.dataclass
class BuildConfig:
    sources: dict[str, SourceConfig] = dataclasses.field(default_factory=dict)
    decode: DecodeConfig = dataclasses.field(default_factory=DecodeConfig)
    quality: QualityConfig = dataclasses.field(default_factory=QualityConfig)
    faces: FacesConfig = dataclasses.field(default_factory=FacesConfig)
    flow: FlowConfig = dataclasses.field(default_factory=FlowConfig)
    caption: CaptionConfig = dataclasses.field(default_factory=CaptionConfig)
    encode: EncodeConfig = dataclasses.field(default_factory=EncodeConfig)
    select: SelectConfig = dataclasses.field(default_factory=SelectConfig)
    sink: SinkConfig = dataclasses.field(default_factory=SinkConfig)
    ray: RayConfig = dataclasses.field(default_factory=RayConfig)
    stages: list[str] = dataclasses.field(default_factory=lambda: list(STAGE_NAMES))
    progress: Literal["auto", "bar", "lines", "off"] = "auto"  # bar in a terminal, plain lines otherwise

    def __post_init__(self) -> None:
        bad = [s for s in self.stages if s not in STAGE_NAMES]
        if bad:
            raise ConfigError(f"unknown stage {bad[0]!r}; stages are {', '.join(STAGE_NAMES)} "
                              f"(optional: {', '.join(OPTIONAL)})")
        for required in ("decode", "encode"):
            if required not in self.stages:
                raise ConfigError(f"stages must include {required!r}")

    def steps(self) -> list[type[Stage]]:
        return dataflow(self.stages)

    def section(self, step: type[Stage]):
        """The one config section a step receives."""
        return getattr(self, step.config_section())


def fingerprint(cfg: BuildConfig) -> dict:
    """What decides a build's output, derived from what its steps declare: the sources, each step with its
    version and its section's output settings (runtime fields left out), and how clips are grouped into shards."""
    data = {
        "sources": {name: dataclasses.asdict(s) for name, s in sorted(cfg.sources.items())},
        "steps": [{"step": step.__name__, "version": step.version, "section": step.config_section(),
                   "settings": output_settings(cfg.section(step))} for step in cfg.steps()],
        "sink": output_settings(cfg.sink),
    }
    return json.loads(json.dumps(data, default=str))  # as it reads back from _build.json (tuples as lists)


def stage_resources(cfg: BuildConfig, step: type[Stage]):
    """Ray resources of a step (its section's, when it has them; select steps run inside their neighbour)."""
    section = cfg.section(step)
    return section if hasattr(section, "num_gpus") else None
