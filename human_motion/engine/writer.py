"""Writing a build's rows: workers write what they finish as *parts*; engine/shards.py assembles a shard from its
parts when every clip of it is in, and gathers the shards.

So no sample's bytes pass through the process that started the build, and a build stopped at any point loses only
the work in flight:

- ``PartWriter.write_task`` (the last step on a worker) writes the rows of one *task* (whole clips of one shard,
  engine/tasks.py) as one part, ``_parts/{shard:06d}/t{first clip:07d}.tar``: first ``__rows__.json`` (each row's
  index row or rejection, and its stage timings), then the samples' members. One file and one storage call per
  task, not per row: a task of cheap rows (rejected at probe) holds hundreds of them. With GPU stages, Ray Data
  hands the last operator rows, not whole clips, so ``PartWriter.__call__`` writes one row as
  ``c{clip:07d}_{window:03d}of{n:03d}.tar``. Either way a part is written under a temporary name and renamed (one
  PUT on an object store, engine/storage.py), and a retried task or row rewrites the same name with the same rows.
- ``complete_clips`` reads the ``__rows__.json`` of each part of an unfinished shard: a clip is done when its
  every window is in some part; a part holding a window of an unfinished clip is removed (its clips are redone).
"""

from __future__ import annotations

import io
import json
import re
import socket
import tarfile
from typing import Any

import fsspec
import webdataset as wds

from human_motion.engine.storage import listing, write_atomic
from human_motion.schema import SCORE_COLUMNS
from human_motion.stages.encode import parse_sample_json
from human_motion.types import Row

STATS_SUFFIX = "_stats.json"
PARTS = "_parts"
ROWS_MEMBER = "__rows__.json"
_OLD_ROW_MEMBER = "__row__.json"  # parts written before tasks: one row each
_PART_NAME = re.compile(r"^(t\d{7}|c\d{7}_\d{3}of\d{3})\.tar$")
__all__ = ["write_atomic"]  # re-exported: tests and tools patch it here, where the part writer looks it up


def shard_name(shard: int) -> str:
    return f"{shard:06d}"


def parts_folder(root: str, shard: int) -> str:
    return f"{root}/{PARTS}/{shard_name(shard)}"


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


def tar_writer(fileobj) -> wds.TarWriter:
    """webdataset's writer of samples (``{key}.{member}``), with fixed metadata: the same rows, the same bytes."""
    return wds.TarWriter(fileobj, user="hm", group="hm", mode=0o644, encoder=False, mtime=0)


def worker_node() -> str:
    """Where this process runs: the Ray node's id on a Ray worker, else the host name (a shard's statistics say
    which nodes wrote its rows)."""
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return ray.get_runtime_context().get_node_id()
    return socket.gethostname()


class PartWriter:
    """The last step on a worker: writes finished rows as parts and returns only small results."""

    def __init__(self, out: str):
        self.fs, self.root = fsspec.core.url_to_fs(out)
        self.root = self.root.rstrip("/")
        self.node = worker_node()
        self.made: set[int] = set()  # shard folders made (a local disk needs them; an object store has none)

    def write_task(self, rows: list[Row]) -> list[dict]:
        """Every row of a task (whole clips of one shard) as one part; returns each row's result."""
        shards = {r.shard for r in rows}
        if len(shards) != 1:
            raise ValueError(f"a task holds rows of one shard, got shards {sorted(shards)}")
        first = min(r.clip_index for r in rows)
        self._write(rows, f"t{first:07d}.tar")
        return [result_of(r) for r in rows]

    def __call__(self, row: Row) -> dict:
        """One row as its own part (Ray Data's last operator sees rows, not whole clips)."""
        slot = max(int(row.record.get("window", -1)), 0)
        self._write([row], f"c{row.clip_index:07d}_{slot:03d}of{row.n_windows:03d}.tar")
        return result_of(row)

    def _write(self, rows: list[Row], name: str) -> None:
        shard = rows[0].shard
        infos, samples = [], []
        for row in sorted(rows, key=lambda r: (r.clip_index, int(r.record.get("window", -1)))):
            info: dict[str, Any] = {"clip_index": row.clip_index, "slot": max(int(row.record.get("window", -1)), 0),
                                    "n": row.n_windows, "timings": row.record.get("timings", {}), "node": self.node}
            if row.ok:
                sample = parse_sample_json(row.blobs["json"])
                info.update(key=sample["key"], index=index_row(sample, shard_name(shard)))
                samples.append((sample["key"], row.blobs))
            else:
                info["reject"] = reject_row(row.record, shard_name(shard))
            infos.append(info)
        buf = io.BytesIO()
        sink = tar_writer(buf)
        sink.write({"__key__": ROWS_MEMBER.split(".")[0], "json": json.dumps(infos, default=str).encode()})  # first
        for key, blobs in samples:
            sink.write({"__key__": key, **blobs})
        sink.close()
        folder = parts_folder(self.root, shard)
        if shard not in self.made:
            self.fs.makedirs(folder, exist_ok=True)
            self.made.add(shard)
        write_atomic(self.fs, f"{folder}/{name}", buf.getvalue())


def result_of(row: Row) -> dict:
    """What goes back to the driver for one row: who it was and how it ended (no bytes)."""
    return {"shard": row.shard, "clip_index": row.clip_index, "n_windows": row.n_windows,
            "status": row.record.get("status", "ok"), "stage": row.record.get("stage", "")}


def is_part(name: str) -> bool:
    return bool(_PART_NAME.match(name))


def read_part_rows(fs: fsspec.AbstractFileSystem, path: str) -> list[dict]:
    """The rows a part holds, from its first member only (the samples' bytes are not read)."""
    with fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
        for member in tar:
            if member.name in (ROWS_MEMBER, _OLD_ROW_MEMBER):
                data = json.loads(tar.extractfile(member).read())
                return data if isinstance(data, list) else [data]
            break
    raise ValueError(f"{path}: not a part written by hm build (no {ROWS_MEMBER} first)")


def complete_clips(fs: fsspec.AbstractFileSystem, root: str, shard: int) -> set[int]:
    """Clips of ``shard`` whose every window is written; parts holding windows of unfinished clips are removed,
    with temporary files of writers that died (those clips are redone)."""
    folder = parts_folder(root, shard)
    names = listing(fs, folder)
    rows_of: dict[str, list[dict]] = {}
    stale = [n for n in names if not is_part(n)]
    for name in sorted(set(names) - set(stale)):
        rows_of[name] = read_part_rows(fs, f"{folder}/{name}")
    slots: dict[int, tuple[int, set[int]]] = {}
    for rows in rows_of.values():
        for r in rows:
            slots.setdefault(r["clip_index"], (r["n"], set()))[1].add(r["slot"])
    done = {clip for clip, (n, got) in slots.items() if got == set(range(n))}
    stale += [name for name, rows in rows_of.items() if any(r["clip_index"] not in done for r in rows)]
    for name in stale:
        fs.rm(f"{folder}/{name}")
    return done
