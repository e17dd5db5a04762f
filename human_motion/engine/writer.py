"""The sink: the only code that writes a build's outputs.

Per shard (the unit of work and of restart), under temporary names then renamed:
``{id:06d}.tar`` (WebDataset), ``{id:06d}.parquet`` (index rows), ``{id:06d}_rejects.parquet``, and last
``{id:06d}_stats.json``, whose presence marks the shard done. A shard is written only once every clip assigned to
it has come back from the stages, so a restart redoes whole shards and never duplicates or loses a sample.
``finalize`` gathers the done shards into ``index.parquet``, ``rejects.parquet`` and ``manifest.json``.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import time
from collections import Counter, defaultdict
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from human_motion.stages.encode import parse_sample_json
from human_motion.schema import INDEX_SCHEMA, REJECTS_SCHEMA
from human_motion.types import Row

log = logging.getLogger("human_motion")

STATS_SUFFIX = "_stats.json"


def shard_name(shard: int) -> str:
    return f"{shard:06d}"


def done_shards(fs: fsspec.AbstractFileSystem, root: str) -> set[int]:
    done = set()
    for path in fs.glob(f"{root}/*{STATS_SUFFIX}"):
        stem = path.rsplit("/", 1)[-1][: -len(STATS_SUFFIX)]
        if stem.isdigit():
            done.add(int(stem))
    return done


def write_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    tmp = f"{path}.tmp"
    with fs.open(tmp, "wb") as f:
        f.write(data)
    fs.mv(tmp, path)


def index_row(sample: dict, shard: str) -> dict:
    span = sample.get("span_s") or [None, None]
    return {
        "key": sample["key"], "shard": shard, "source": sample["source"], "clip_id": sample["clip_id"],
        "window": sample["window"], "static": sample["static"], "media_path": sample["media_path"],
        "start_s": span[0], "end_s": span[1], "fps": sample["fps"], "num_frames": sample["num_frames"],
        "size_px": sample["size_px"], "description": sample["description"], "action": sample["action"],
        "action_landmarks": sample.get("caption", {}).get("candidates", {}).get("landmarks"),
        "intensity": sample["intensity"], "flow_backend": sample.get("intensity_units", {}).get("backend"),
        "embedding_kind": sample["id_embedding"].get("kind"), "embedding_dim": sample["id_embedding"].get("dim"),
        "face_area_frac": sample["scores"].get("face_area_frac"), "face_score": sample["scores"].get("face_score"),
        "id_min_cos": sample["scores"].get("id_min_cos"),
        "source_min_side_px": int(sample["scores"].get("source_min_side_px", 0)),
        "caption_backend": sample.get("caption", {}).get("backend"),
    }


def reject_row(record: dict, shard: str) -> dict:
    return {
        "source": record.get("source", ""), "clip_id": record.get("clip_id", ""),
        "window": int(record.get("window", -1)), "media_path": record.get("media_path", ""),
        "stage": record.get("stage", ""), "reason": record.get("status", ""),
        "detail": record.get("detail", ""), "shard": shard,
    }


def _tar_bytes(samples: dict[str, dict[str, bytes]]) -> bytes:
    """A WebDataset tar: members ``{key}.{ext}`` grouped by key, in key order, with fixed metadata so the same
    samples always give the same bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key in sorted(samples):
            for ext in sorted(samples[key]):
                data = samples[key][ext]
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                info.uname = info.gname = "hm"
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class ShardSink:
    """Collects finished rows per shard and writes each shard once all of its clips have arrived."""

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str, expected: dict[int, int]):
        self.fs, self.root = fs, root
        self.expected = dict(expected)  # shard -> number of input clips
        self.samples: dict[int, dict[str, dict[str, bytes]]] = defaultdict(dict)
        self.rejects: dict[int, list[dict]] = defaultdict(list)
        self.windows_seen: dict[tuple[int, int], int] = Counter()
        self.clips_done: dict[int, int] = Counter()
        self.timings: dict[int, Counter] = defaultdict(Counter)
        self.written: list[int] = []

    def add(self, row: Row) -> int | None:
        """Take one row; returns the shard id if this row completed (and so wrote) its shard."""
        shard = row.shard
        if row.ok:
            self.samples[shard][row.record["key"]] = row.blobs
        else:
            self.rejects[shard].append(reject_row(row.record, shard_name(shard)))
        self.timings[shard].update(row.record.get("timings", {}))
        clip = (shard, row.clip_index)
        self.windows_seen[clip] += 1
        if self.windows_seen[clip] == row.n_windows:
            self.clips_done[shard] += 1
            del self.windows_seen[clip]
        if self.clips_done[shard] == self.expected.get(shard, -1):
            self.write(shard)
            return shard
        return None

    def write(self, shard: int) -> None:
        name = shard_name(shard)
        samples = self.samples.pop(shard, {})
        rejects = self.rejects.pop(shard, [])
        rows = [index_row(parse_sample_json(s["json"]), name) for _, s in sorted(samples.items())]
        base = f"{self.root}/{name}"
        write_atomic(self.fs, f"{base}.tar", _tar_bytes(samples))
        write_atomic(self.fs, f"{base}.parquet", _parquet_bytes(rows, INDEX_SCHEMA))
        write_atomic(self.fs, f"{base}_rejects.parquet", _parquet_bytes(rejects, REJECTS_SCHEMA))
        stats = {
            "shard": name, "clips": self.expected[shard], "samples": len(rows), "rejects": len(rejects),
            "rejects_by_reason": dict(Counter(r["reason"] for r in rejects)),
            "stage_seconds": {k: round(v, 4) for k, v in self.timings.pop(shard, {}).items()},
            "written_at": time.time(),
        }
        # Written last: its presence is what marks the shard done.
        write_atomic(self.fs, f"{base}{STATS_SUFFIX}", json.dumps(stats, indent=1).encode())
        self.written.append(shard)

    def forget_unwritten(self) -> None:
        """Drop what arrived for shards not yet written (their clips will all be run again)."""
        for shard in self.incomplete:
            for table in (self.samples, self.rejects, self.clips_done, self.timings):
                table.pop(shard, None)
        self.windows_seen = Counter()  # a written shard's clips are all whole: what is left belongs to the others

    @property
    def incomplete(self) -> list[int]:
        return sorted(s for s in self.expected if s not in self.written)


def _parquet_bytes(rows: list[dict], schema: pa.Schema) -> bytes:
    table = pa.Table.from_pylist(rows, schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _read_tables(fs: fsspec.AbstractFileSystem, paths: list[str], schema: pa.Schema) -> pa.Table:
    tables = []
    for p in paths:
        with fs.open(p, "rb") as f:
            tables.append(pq.read_table(f))
    return pa.concat_tables(tables).cast(schema) if tables else schema.empty_table()


def finalize(fs: fsspec.AbstractFileSystem, root: str, run: dict[str, Any], manifest_extra: dict) -> dict:
    """Gather done shards into index.parquet / rejects.parquet and update manifest.json; returns the summary."""
    shards = sorted(done_shards(fs, root))
    names = [shard_name(s) for s in shards]
    index = _read_tables(fs, [f"{root}/{n}.parquet" for n in names], INDEX_SCHEMA)
    rejects = _read_tables(fs, [f"{root}/{n}_rejects.parquet" for n in names], REJECTS_SCHEMA)
    for name, table in (("index.parquet", index), ("rejects.parquet", rejects)):
        buf = io.BytesIO()
        pq.write_table(table, buf)
        write_atomic(fs, f"{root}/{name}", buf.getvalue())
    stage_seconds: Counter = Counter()
    clips = 0
    for n in names:
        with fs.open(f"{root}/{n}{STATS_SUFFIX}", "r") as f:
            stats = json.load(f)
        stage_seconds.update(stats["stage_seconds"])
        clips += stats["clips"]
    manifest_path = f"{root}/manifest.json"
    previous = json.loads(fs.cat(manifest_path)) if fs.exists(manifest_path) else {}
    summary = {
        "shards": len(shards),
        "clips": clips,
        "samples": index.num_rows,
        "rejects": rejects.num_rows,
        "rejects_by_reason": dict(Counter(rejects.column("reason").to_pylist()).most_common()),
        "rejects_by_stage": dict(Counter(rejects.column("stage").to_pylist()).most_common()),
        "samples_by_source": dict(Counter(index.column("source").to_pylist()).most_common()),
        "stage_seconds": {k: round(v, 3) for k, v in sorted(stage_seconds.items())},
    }
    manifest = dict(previous, **manifest_extra, summary=summary, runs=previous.get("runs", []) + [run])
    write_atomic(fs, manifest_path, json.dumps(manifest, indent=1, default=str).encode())
    return summary
