"""What a finished build holds, read once for ``hm stats`` and its plots: the index, the rejects, the manifest and
each shard's ``_stats.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import fsspec
import pandas as pd
import pyarrow as pa

from human_motion.config import ConfigError
from human_motion.schema import INDEX_SCHEMA, REJECTS_SCHEMA

STATS_SUFFIX = "_stats.json"  # as human_motion.engine.writer writes it (not imported: it pulls in the stages)


@dataclass(frozen=True)
class StatsConfig:
    intensity_bin_width: float = 1.0  # histogram bins [0, w), [w, 2w), ... and one last bin [intensity_max, inf)
    intensity_max: float = 20.0  # the paper balances intensities over [0, 20]
    top_actions: int = 20
    sheet_samples: int = 12
    sheet_frames: int = 4  # frames shown per sample (evenly spaced, first and last included), plus a motion tile
    sheet_tile_px: int = 128
    sheet_columns: int = 2
    motion_gain: float = 4.0  # motion tile = mean |frame[t+1] - frame[t]| * gain, the same gain for every sample

    def __post_init__(self):
        if self.intensity_bin_width <= 0 or self.intensity_max <= 0:
            raise ConfigError("intensity_bin_width and intensity_max must be > 0")
        if self.sheet_samples < 1 or self.sheet_frames < 2 or self.sheet_columns < 1 or self.top_actions < 0:
            raise ConfigError(f"--sheet-samples must be >= 1 and --top >= 0 (got {self.sheet_samples} and "
                              f"{self.top_actions}; sheet_frames >= 2, sheet_columns >= 1)")


@dataclass
class BuildTables:
    """What ``hm stats`` reads: the index, the rejects, the manifest and each shard's _stats.json."""

    root: str
    index: pd.DataFrame
    rejects: pd.DataFrame
    manifest: dict = field(default_factory=dict)
    shard_stats: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------- reading
def _read_parquet(fs, paths: list[str], schema) -> pd.DataFrame:
    frames = []
    for p in paths:
        with fs.open(p, "rb") as f:
            frames.append(pd.read_parquet(f))
    if not frames:
        return schema.empty_table().to_pandas()
    return pd.concat(frames, ignore_index=True)


def load_build(root: str) -> BuildTables:
    """Read a build folder (any fsspec path). Falls back to the per-shard parquets when ``index.parquet`` or
    ``rejects.parquet`` is missing (a build that was stopped before ``finalize``) or unreadable, and says so in
    ``notes``."""
    fs, path = fsspec.core.url_to_fs(root)
    path = path.rstrip("/")
    if not fs.isdir(path):
        raise FileNotFoundError(f"{root}: no such folder")
    notes: list[str] = []
    stats_paths = sorted(fs.glob(f"{path}/*{STATS_SUFFIX}"))
    if not stats_paths and not any(fs.exists(f"{path}/{n}") for n in ("manifest.json", "index.parquet", "_build.json")):
        raise FileNotFoundError(f"{root}: not a build folder (no manifest.json, index.parquet, shard statistics or "
                                "_build.json); pass the --out folder of hm build")
    shard_names = [p.rsplit("/", 1)[-1][: -len(STATS_SUFFIX)] for p in stats_paths]
    tables = {}
    for name, schema, per_shard in (("index", INDEX_SCHEMA, "{}.parquet"), ("rejects", REJECTS_SCHEMA,
                                                                            "{}_rejects.parquet")):
        whole = f"{path}/{name}.parquet"
        problem = "missing"
        if fs.exists(whole):
            try:
                tables[name] = _read_parquet(fs, [whole], schema)
                continue
            except (pa.ArrowException, OSError) as e:
                problem = f"unreadable ({str(e).splitlines()[0]})"
        parts = [f"{path}/{per_shard.format(n)}" for n in shard_names]
        tables[name] = _read_parquet(fs, [p for p in parts if fs.exists(p)], schema)
        notes.append(f"{name}.parquet {problem}: read {len(parts)} per-shard files instead")
    manifest = json.loads(fs.cat(f"{path}/manifest.json")) if fs.exists(f"{path}/manifest.json") else {}
    recorded = manifest.get("shards") if isinstance(manifest, dict) else None
    if isinstance(recorded, dict) and sorted(recorded) == shard_names:
        # hm build keeps every shard's statistics in the manifest: one read instead of one per shard (an object
        # store answers each in tens of milliseconds).
        return BuildTables(root, tables["index"], tables["rejects"], manifest, list(recorded.values()), notes)
    shard_stats = []
    for p in stats_paths:
        try:
            shard_stats.append(json.loads(fs.cat(p)))
        except ValueError:
            notes.append(f"{p.rsplit('/', 1)[-1]} is not valid JSON; its timings are left out")
            shard_stats.append({})  # the shard still counts
    if not shard_stats and not manifest:
        notes.append("no shard finished yet (a build that was started, no manifest.json and no *_stats.json)")
    return BuildTables(root, tables["index"], tables["rejects"], manifest, shard_stats, notes)
