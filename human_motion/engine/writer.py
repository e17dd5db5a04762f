"""Writing a build: workers write each finished row as a *part*; a shard is assembled from its parts when every clip
of it is in; the driver writes only the small files that gather the shards (index, rejects, manifest).

So no sample's bytes pass through the process that started the build, and a build stopped at any point loses only
rows in flight:

- ``PartWriter`` (runs where the last stage runs, in the worker) writes one row as
  ``_parts/{shard:06d}/c{clip:07d}_{slot:03d}of{n:03d}.tar``: the sample's members plus ``__row__.json`` (its index
  row or its rejection, and its stage timings), under a temporary name, then renamed. A retried row rewrites the
  same name with the same bytes, so a part is never doubled.
- ``assemble_shard`` (a worker task on Ray, or this process) streams the parts of a shard, in key order, into
  ``{shard}.tar``, ``{shard}.parquet``, ``{shard}_rejects.parquet`` and last ``{shard}_stats.json``, whose presence
  marks the shard done; then it removes the parts. Killed half way, it is simply run again.
- ``finalize`` (the driver) gathers the done shards' parquet and stats into ``index.parquet``, ``rejects.parquet``
  and ``manifest.json``.
"""

from __future__ import annotations

import io
import json
import logging
import re
import tarfile
import time
import uuid
from collections import Counter
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from human_motion.schema import INDEX_SCHEMA, REJECTS_SCHEMA, SCORE_COLUMNS
from human_motion.stages.encode import parse_sample_json
from human_motion.types import Row

STATS_SUFFIX = "_stats.json"
PARTS = "_parts"
log = logging.getLogger("human_motion")
ROW_MEMBER = "__row__.json"
_PART_NAME = re.compile(r"^c(\d{7})_(\d{3})of(\d{3})\.tar$")


def shard_name(shard: int) -> str:
    return f"{shard:06d}"


def part_path(root: str, shard: int, clip_index: int, slot: int, n: int) -> str:
    return f"{root}/{PARTS}/{shard_name(shard)}/c{clip_index:07d}_{slot:03d}of{n:03d}.tar"


def marked_shards(fs: fsspec.AbstractFileSystem, root: str) -> set[int]:
    """Shards with a ``_stats.json``, the file the assembler writes last (not read: see ``done_shards``)."""
    stems = (path.rsplit("/", 1)[-1][: -len(STATS_SUFFIX)] for path in fs.glob(f"{root}/*{STATS_SUFFIX}"))
    return {int(stem) for stem in stems if stem.isdigit()}


def done_shards(fs: fsspec.AbstractFileSystem, root: str, warn: bool = False) -> set[int]:
    """Shards whose ``_stats.json`` reads back whole, beside their tar and two parquet files (footers read). A shard
    with a damaged or missing file (edited, deleted, cut by the disk) is made again, its files replaced, instead of
    stopping every later run at its end."""
    done = set()
    for shard in marked_shards(fs, root):
        problem = _shard_problem(fs, f"{root}/{shard_name(shard)}")
        if problem is None:
            done.add(shard)
        elif warn:
            log.warning("hm build: shard %s: %s; it will be made again", shard_name(shard), problem)
    return done


def _shard_problem(fs: fsspec.AbstractFileSystem, base: str) -> str | None:
    try:
        stats = json.loads(fs.cat(f"{base}{STATS_SUFFIX}"))
    except ValueError:  # not JSON, or not UTF-8
        stats = None
    if not (isinstance(stats, dict) and isinstance(stats.get("clips"), int)
            and isinstance(stats.get("stage_seconds"), dict)):
        return f"{base}{STATS_SUFFIX} is damaged"
    if not fs.exists(f"{base}.tar"):
        return f"{base}.tar is missing"
    for path in (f"{base}.parquet", f"{base}_rejects.parquet"):
        try:
            with fs.open(path, "rb") as f:
                pq.read_metadata(f)
        except (pa.ArrowException, OSError):
            return f"{path} is missing or damaged"
    return None


def write_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write under a temporary name unique to this writer, then rename: a reader never sees half a file."""
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    with fs.open(tmp, "wb") as f:
        f.write(data)
    fs.mv(tmp, path)


def index_row(sample: dict, shard: str) -> dict:
    span = sample.get("span_s") or [None, None]
    scores = sample.get("scores", {})
    row = {
        "key": sample["key"], "shard": shard, "source": sample["source"], "clip_id": sample["clip_id"],
        "window": sample["window"], "static": sample["static"], "media_path": sample["media_path"],
        "start_s": span[0], "end_s": span[1], "fps": sample["fps"], "num_frames": sample["num_frames"],
        "size_px": sample["size_px"], "description": sample["description"], "action": sample["action"],
        "action_landmarks": sample.get("caption", {}).get("candidates", {}).get("landmarks"),
        "intensity": sample["intensity"], "flow_backend": sample.get("intensity_units", {}).get("backend"),
        "embedding_kind": sample["id_embedding"].get("kind"), "embedding_dim": sample["id_embedding"].get("dim"),
        "caption_backend": sample.get("caption", {}).get("backend"),
    }
    row.update({name: scores.get(name) for name in SCORE_COLUMNS})
    return row


def reject_row(record: dict, shard: str) -> dict:
    return {
        "source": record.get("source", ""), "clip_id": record.get("clip_id", ""),
        "window": int(record.get("window", -1)), "media_path": record.get("media_path", ""),
        "stage": record.get("stage", ""), "reason": record.get("status", ""),
        "detail": record.get("detail", ""), "shard": shard,
    }


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed metadata: same samples, same bytes
    info.uname = info.gname = "hm"
    tar.addfile(info, io.BytesIO(data))


class PartWriter:
    """The last step on a worker: writes each finished row as a part and returns only a small result."""

    def __init__(self, out: str):
        self.fs, self.root = fsspec.core.url_to_fs(out)
        self.root = self.root.rstrip("/")

    def __call__(self, row: Row) -> dict:
        window = int(row.record.get("window", -1))
        slot = max(window, 0)
        shard = shard_name(row.shard)
        info: dict[str, Any] = {"shard": row.shard, "clip_index": row.clip_index, "slot": slot, "n": row.n_windows,
                                "timings": row.record.get("timings", {})}
        if row.ok:
            sample = parse_sample_json(row.blobs["json"])
            info.update(key=sample["key"], index=index_row(sample, shard))
        else:
            info["reject"] = reject_row(row.record, shard)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            _add_member(tar, ROW_MEMBER, json.dumps(info, default=str).encode())
            if row.ok:
                for ext in sorted(row.blobs):
                    _add_member(tar, f"{info['key']}.{ext}", row.blobs[ext])
        path = part_path(self.root, row.shard, row.clip_index, slot, row.n_windows)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        write_atomic(self.fs, path, buf.getvalue())
        return result_of(row)


def result_of(row: Row) -> dict:
    """What goes back to the driver for one row: who it was and how it ended (no bytes)."""
    return {"shard": row.shard, "clip_index": row.clip_index, "n_windows": row.n_windows,
            "status": row.record.get("status", "ok"), "stage": row.record.get("stage", "")}


def complete_clips(fs: fsspec.AbstractFileSystem, root: str, shard: int) -> set[int]:
    """Clips of ``shard`` whose every part is written; parts of incomplete clips are removed (they are redone)."""
    folder = f"{root}/{PARTS}/{shard_name(shard)}"
    if not fs.exists(folder):
        return set()
    slots: dict[int, tuple[int, set[int]]] = {}
    partial: list[str] = []
    for path in fs.ls(folder, detail=False):
        m = _PART_NAME.match(path.rsplit("/", 1)[-1])
        if not m:  # a temporary file of a writer that died
            partial.append(path)
            continue
        clip, slot, n = int(m[1]), int(m[2]), int(m[3])
        have = slots.setdefault(clip, (n, set()))
        have[1].add(slot)
    done = {clip for clip, (n, got) in slots.items() if got == set(range(n))}
    for path in fs.ls(folder, detail=False):
        m = _PART_NAME.match(path.rsplit("/", 1)[-1])
        if m and int(m[1]) not in done:
            partial.append(path)
    for path in partial:
        fs.rm(path)
    return done


def _read_part(fs, path: str) -> tuple[dict, dict[str, bytes]]:
    with fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    return json.loads(members.pop(ROW_MEMBER)), members


def assemble_shard(out: str, shard: int, expected_clips: int) -> int:
    """Write shard ``shard`` from its parts (every clip must be complete); returns the shard id."""
    fs, root = fsspec.core.url_to_fs(out)
    root = root.rstrip("/")
    name = shard_name(shard)
    folder = f"{root}/{PARTS}/{name}"
    paths = sorted(fs.ls(folder, detail=False)) if fs.exists(folder) else []
    infos = [(p, _read_part(fs, p)[0]) for p in paths if _PART_NAME.match(p.rsplit("/", 1)[-1])]
    clips = {i["clip_index"] for _, i in infos}
    if len(clips) != expected_clips:
        raise RuntimeError(f"shard {name}: parts of {len(clips)} clips, expected {expected_clips}")
    samples = sorted((i["key"], p) for p, i in infos if "key" in i)
    timings: Counter = Counter()
    for _, i in infos:
        timings.update(i.get("timings", {}))
    base = f"{root}/{name}"
    for stale in fs.glob(f"{base}*.tmp"):  # an earlier attempt at this shard, killed half way
        fs.rm(stale)
    tmp = f"{base}.tar.{uuid.uuid4().hex[:8]}.tmp"
    with fs.open(tmp, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for _key, path in samples:  # one sample in memory at a time
            _, members = _read_part(fs, path)
            for member in sorted(members):
                _add_member(tar, member, members[member])
    fs.mv(tmp, f"{base}.tar")
    by_key = {i["key"]: i["index"] for _, i in infos if "key" in i}
    rows = [by_key[k] for k, _ in samples]
    rejects = [i["reject"] for _, i in sorted(infos, key=lambda pi: (pi[1]["clip_index"], pi[1]["slot"]))
               if "reject" in i]
    write_atomic(fs, f"{base}.parquet", _parquet_bytes(rows, INDEX_SCHEMA))
    write_atomic(fs, f"{base}_rejects.parquet", _parquet_bytes(rejects, REJECTS_SCHEMA))
    stats = {
        "shard": name, "clips": expected_clips, "samples": len(rows), "rejects": len(rejects),
        "rejects_by_reason": dict(Counter(r["reason"] for r in rejects)),
        "stage_seconds": {k: round(v, 4) for k, v in timings.items()},
        "written_at": time.time(),
    }
    # Written last: its presence is what marks the shard done.
    write_atomic(fs, f"{base}{STATS_SUFFIX}", json.dumps(stats, indent=1).encode())
    fs.rm(folder, recursive=True)
    return shard


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


def _read_manifest(fs: fsspec.AbstractFileSystem, path: str) -> dict:
    """The manifest of earlier runs, or {} (with a warning when one is there but damaged: its history is lost, the
    shards are not)."""
    if not fs.exists(path):
        return {}
    try:
        previous = json.loads(fs.cat(path))
    except ValueError:
        previous = None
    if not isinstance(previous, dict) or not isinstance(previous.get("runs", []), list):
        log.warning("hm build: %s is damaged; it is written anew (the earlier runs' records are lost)", path)
        return {}
    return previous


def finalize(fs: fsspec.AbstractFileSystem, root: str, run: dict[str, Any], manifest_extra: dict) -> dict:
    """Gather done shards into index.parquet / rejects.parquet and update manifest.json; returns the summary."""
    shards = sorted(marked_shards(fs, root))  # the plan checked the shards it found; the rest were written now
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
    previous = _read_manifest(fs, manifest_path)
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
