"""Shards: assembled from their parts, checked when a build starts again, gathered into the index at the end.

- ``assemble_shard`` (a worker task on Ray, or this process) lists the shard's own parts folder, reads each part's
  rows, and writes, in key order, ``{shard}.tar`` (only when the shard has samples: a training loader never opens
  an empty tar), ``{shard}.parquet`` (its index rows, when it has samples), ``{shard}_rejects.parquet`` (when it
  has rejections) and last ``{shard}_stats.json``, whose presence marks the shard done and which records the size
  of each of the shard's files; then it removes the parts. Killed half way, it is simply run again.
- ``done_shards`` says which marked shards are whole. The manifest keeps every done shard's statistics and file
  sizes (a running table), so a shard whose files the one listing of the folder shows with the recorded sizes is
  taken as done without reading it; any other is read back (its stats, tar and parquet footers) and made again
  when something is missing or damaged.
- ``finalize`` (the driver) gathers the shards into ``index.parquet``, ``rejects.parquet`` (with the rows the
  sources rejected at plan time) and ``manifest.json``, reading only the shards written or changed since the last
  run: a rerun of a finished build reads three small files, not three per shard.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import time
from collections import Counter, OrderedDict
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset
import pyarrow.parquet as pq

from human_motion.engine.storage import atomic_open, listing, write_atomic
from human_motion.engine.writer import (STATS_SUFFIX, is_part, parts_folder, read_part_rows, shard_name,
                                        tar_writer)
from human_motion.schema import INDEX_SCHEMA, REJECTS_SCHEMA

log = logging.getLogger("human_motion")

MANIFEST = "manifest.json"
SOURCE_REJECTS = "_source_rejects.parquet"  # the rows the sources rejected, recorded at plan time
TAR, INDEX_PART, REJECTS_PART = ".tar", ".parquet", "_rejects.parquet"
SHARD_FILES = (TAR, INDEX_PART, REJECTS_PART, STATS_SUFFIX)
OPEN_PARTS = 8  # parts kept open while a shard is assembled


class _Parts:
    """The parts of one shard, opened as needed (a few at a time), each member read at its offset."""

    def __init__(self, fs, folder: str):
        self.fs, self.folder = fs, folder
        self.open: OrderedDict[str, tuple[Any, tarfile.TarFile, dict]] = OrderedDict()

    def members(self, part: str, key: str) -> dict[str, bytes]:
        if part not in self.open:
            if len(self.open) >= OPEN_PARTS:
                self._close(next(iter(self.open)))
            f = self.fs.open(f"{self.folder}/{part}", "rb")
            tar = tarfile.open(fileobj=f, mode="r:")  # noqa: SIM115 - kept open across calls, closed in _close
            by_key: dict[str, list[tarfile.TarInfo]] = {}
            for m in tar.getmembers():
                by_key.setdefault(m.name.split(".", 1)[0], []).append(m)
            self.open[part] = (f, tar, by_key)
        _, tar, by_key = self.open[part]
        return {m.name.split(".", 1)[1]: tar.extractfile(m).read() for m in by_key.get(key, [])}

    def _close(self, part: str) -> None:
        f, tar, _ = self.open.pop(part)
        tar.close()
        f.close()

    def close(self) -> None:
        for part in list(self.open):
            self._close(part)


def assemble_shard(out: str, shard: int, expected_clips: int) -> dict:
    """Write shard ``shard`` from its parts (every clip must be complete); returns its statistics."""
    fs, root = fsspec.core.url_to_fs(out)
    root = root.rstrip("/")
    name, folder = shard_name(shard), parts_folder(root, shard)
    infos = [(info, part) for part in sorted(n for n in listing(fs, folder) if is_part(n))
             for info in read_part_rows(fs, f"{folder}/{part}")]
    clips = {i["clip_index"] for i, _ in infos}
    if len(clips) != expected_clips:
        raise RuntimeError(f"shard {name}: parts of {len(clips)} clips, expected {expected_clips}")
    samples = sorted((i["key"], part, i["index"]) for i, part in infos if "key" in i)
    rejects = [i["reject"] for i, _ in sorted(infos, key=lambda ip: (ip[0]["clip_index"], ip[0]["slot"]))
               if "reject" in i]
    base, files = f"{root}/{name}", {}
    if samples:
        parts = _Parts(fs, folder)
        try:
            with atomic_open(fs, f"{base}{TAR}") as f:
                sink = tar_writer(f)
                for key, part, _ in samples:  # one sample in memory at a time
                    sink.write({"__key__": key, **parts.members(part, key)})
                sink.close()
                files[TAR] = f.tell()
        finally:
            parts.close()
        files[INDEX_PART] = _write_parquet(fs, f"{base}{INDEX_PART}", [s[2] for s in samples], INDEX_SCHEMA)
    if rejects:
        files[REJECTS_PART] = _write_parquet(fs, f"{base}{REJECTS_PART}", rejects, REJECTS_SCHEMA)
    timings: Counter = Counter()
    for i, _ in infos:
        timings.update(i.get("timings", {}))
    stats = {
        "shard": name, "clips": expected_clips, "samples": len(samples), "rejects": len(rejects),
        "rejects_by_reason": dict(Counter(r["reason"] for r in rejects)),
        "stage_seconds": {k: round(v, 4) for k, v in timings.items()},
        "nodes": dict(Counter(i.get("node", "?") for i, _ in infos)), "files": files, "written_at": time.time(),
    }
    data = json.dumps(stats, indent=1).encode()
    write_atomic(fs, f"{base}{STATS_SUFFIX}", data)  # last: its presence marks the shard done
    fs.rm(folder, recursive=True)
    stats["files"] = dict(files, **{STATS_SUFFIX: len(data)})
    return stats


def _write_parquet(fs, path: str, rows: list[dict], schema: pa.Schema) -> int:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buf)
    write_atomic(fs, path, buf.getvalue())
    return buf.tell()


def marked_shards(sizes: dict[str, int]) -> set[int]:
    """Shards with a ``_stats.json`` in a listing of the build folder (the file the assembler writes last)."""
    stems = (n[: -len(STATS_SUFFIX)] for n in sizes if n.endswith(STATS_SUFFIX))
    return {int(s) for s in stems if s.isdigit() and len(s) == 6}


def shard_sizes(sizes: dict[str, int], name: str) -> dict[str, int]:
    return {suffix: sizes[f"{name}{suffix}"] for suffix in SHARD_FILES if f"{name}{suffix}" in sizes}


def done_shards(fs, root: str, sizes: dict[str, int], recorded: dict[str, dict], warn: bool = False
                ) -> tuple[dict[int, dict], set[int]]:
    """(statistics of every whole shard, those among them read back rather than known from the manifest's
    ``recorded`` shards). A shard with a damaged or missing file (edited, deleted, cut by the disk) is left out, to
    be made again, instead of stopping every later run at its end."""
    done, read = {}, set()
    for shard in sorted(marked_shards(sizes)):
        name = shard_name(shard)
        have, known = shard_sizes(sizes, name), recorded.get(name)
        if isinstance(known, dict) and known.get("files") == have:
            done[shard] = known
            continue
        stats, problem = _read_shard(fs, f"{root}/{name}", have)
        if problem is None:
            done[shard], stats["files"] = stats, have
            read.add(shard)
        elif warn:
            log.warning("hm build: shard %s: %s; it will be made again", name, problem)
    return done, read


def _read_shard(fs, base: str, have: dict[str, int]) -> tuple[dict, str | None]:
    try:
        stats = json.loads(fs.cat(f"{base}{STATS_SUFFIX}"))
    except ValueError:  # not JSON, or not UTF-8
        stats = None
    if not (isinstance(stats, dict) and isinstance(stats.get("clips"), int) and isinstance(stats.get("samples"), int)
            and isinstance(stats.get("stage_seconds"), dict)):
        return {}, f"{base}{STATS_SUFFIX} is damaged"
    # Shards written before empty ones were left without a tar have all four files.
    needed = {TAR: stats["samples"] > 0 or TAR in have, INDEX_PART: stats["samples"] > 0 or INDEX_PART in have,
              REJECTS_PART: stats.get("rejects", 0) > 0 or REJECTS_PART in have}
    if needed[TAR] and TAR not in have:
        return {}, f"{base}{TAR} is missing"
    for suffix in (INDEX_PART, REJECTS_PART):
        if not needed[suffix]:
            continue
        try:
            with fs.open(f"{base}{suffix}", "rb") as f:
                pq.read_metadata(f)
        except (pa.ArrowException, OSError):
            return {}, f"{base}{suffix} is missing or damaged"
    return stats, None


def read_manifest(fs, root: str, sizes: dict[str, int]) -> dict:
    """The manifest of earlier runs, or {} (with a warning when one is there but damaged: its history is lost, the
    shards are not)."""
    if MANIFEST not in sizes:
        return {}
    try:
        previous = json.loads(fs.cat(f"{root}/{MANIFEST}"))
    except ValueError:
        previous = None
    if not isinstance(previous, dict) or not isinstance(previous.get("runs", []), list) \
            or not isinstance(previous.get("shards", {}), dict):
        log.warning("hm build: %s/%s is damaged; it is written anew (the earlier runs' records are lost)", root,
                    MANIFEST)
        return {}
    return previous


def _read_tables(fs, paths: list[str], schema: pa.Schema) -> pa.Table:
    """Many parquet files as one table, read by pyarrow's dataset reader (in parallel, through ``fs``); a file
    written before a column was added gets nulls in it."""
    if not paths:
        return schema.empty_table()
    return pyarrow.dataset.dataset(paths, schema=schema, format="parquet", filesystem=fs).to_table()


def _gather(fs, root: str, table: str, suffix: str, schema: pa.Schema, shards: dict[int, dict], keep: set[int],
            previous_ok: bool) -> pa.Table:
    """One of index.parquet / rejects.parquet: the rows of the ``keep`` shards from the previous file (when it is
    whole), every other shard's from its own file."""
    pieces, names = [], {shard_name(s) for s in keep}
    if previous_ok and keep:
        with fs.open(f"{root}/{table}", "rb") as f:
            prev = pq.read_table(f).cast(schema)
        pieces.append(prev.filter(pc.is_in(prev.column("shard"), pa.array(sorted(names)))))
    read = [s for s in sorted(shards) if s not in keep or not previous_ok]
    pieces.append(_read_tables(fs, [f"{root}/{shard_name(s)}{suffix}" for s in read
                                    if suffix in shards[s].get("files", {suffix: 1})], schema))
    return pa.concat_tables(pieces).sort_by([("shard", "ascending")]) if pieces else schema.empty_table()


def finalize(fs: fsspec.AbstractFileSystem, root: str, shards: dict[int, dict], changed: set[int],
             previous: dict, sizes: dict[str, int], run: dict[str, Any], manifest_extra: dict) -> dict:
    """Gather the done ``shards`` (their statistics; ``changed``: written or read back in this run) into
    index.parquet / rejects.parquet and update manifest.json; returns the summary. ``previous`` is the manifest
    and ``sizes`` the listing taken when the run started."""
    recorded = previous.get("files", {})
    tables_ok = all(recorded.get(n) is not None and recorded.get(n) == sizes.get(n)
                    for n in ("index.parquet", "rejects.parquet"))
    keep = {s for s in shards if s not in changed and shard_name(s) in previous.get("shards", {})}
    unchanged = tables_ok and not changed and {shard_name(s) for s in shards} == set(previous.get("shards", {}))
    if unchanged:
        files = {n: recorded[n] for n in ("index.parquet", "rejects.parquet")}
        summary = dict(previous["summary"])
    else:
        index = _gather(fs, root, "index.parquet", INDEX_PART, INDEX_SCHEMA, shards, keep, tables_ok)
        rejects = _gather(fs, root, "rejects.parquet", REJECTS_PART, REJECTS_SCHEMA, shards, keep, tables_ok)
        if SOURCE_REJECTS in sizes or fs.exists(f"{root}/{SOURCE_REJECTS}"):
            rejects = pa.concat_tables([_read_tables(fs, [f"{root}/{SOURCE_REJECTS}"], REJECTS_SCHEMA), rejects])
        files = {}
        for name, table in (("index.parquet", index), ("rejects.parquet", rejects)):
            buf = io.BytesIO()
            pq.write_table(table, buf)
            write_atomic(fs, f"{root}/{name}", buf.getvalue())
            files[name] = buf.tell()
        summary = _summary(shards, index, rejects)
    summary["complete"] = bool(run.get("complete"))
    manifest = dict(previous, **manifest_extra, summary=summary, files=files,
                    shards={shard_name(s): shards[s] for s in sorted(shards)},
                    tars=[f"{shard_name(s)}{TAR}" for s in sorted(shards) if shards[s].get("samples", 1) > 0],
                    runs=previous.get("runs", []) + [run])
    write_atomic(fs, f"{root}/{MANIFEST}", json.dumps(manifest, indent=1, default=str).encode())
    return summary


def _summary(shards: dict[int, dict], index: pa.Table, rejects: pa.Table) -> dict:
    stage_seconds: Counter = Counter()
    for stats in shards.values():
        stage_seconds.update(stats.get("stage_seconds", {}))
    sourced = rejects.filter(pc.equal(rejects.column("shard"), "")).num_rows
    return {
        "shards": len(shards),
        "tars": sum(1 for s in shards.values() if s.get("samples", 1) > 0),
        "clips": sum(int(s.get("clips", 0)) for s in shards.values()) + sourced,
        "clips_rejected_by_sources": sourced,
        "samples": index.num_rows,
        "rejects": rejects.num_rows,
        "rejects_by_reason": dict(Counter(rejects.column("reason").to_pylist()).most_common()),
        "rejects_by_stage": dict(Counter(rejects.column("stage").to_pylist()).most_common()),
        "samples_by_source": dict(Counter(index.column("source").to_pylist()).most_common()),
        "rejects_by_source": _by_source(rejects),
        "stage_seconds": {k: round(v, 3) for k, v in sorted(stage_seconds.items())},
    }


def _by_source(rejects: pa.Table) -> dict[str, dict[str, int]]:
    """``{source: {reason: rows}}``: what the summary's advice (engine/command.py) reads."""
    out: dict[str, Counter] = {}
    for source, reason in zip(rejects.column("source").to_pylist(), rejects.column("reason").to_pylist()):
        out.setdefault(source, Counter())[reason] += 1
    return {s: dict(c.most_common()) for s, c in sorted(out.items())}
