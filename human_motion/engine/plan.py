"""Planning a build: the output folder (is it a build? is another build writing it?), the input manifest, and
what is left to do.

The input manifest (``_inputs.parquet``) fixes, on the first run, which clip goes to which shard; a later run with
the same configuration (``_build.json`` holds its fingerprint) reuses it, skips every shard whose ``_stats.json``
exists and every clip whose parts are all written, and does the rest. So a build killed at any point and started
again with the same command ends with exactly the samples of an uninterrupted one.

Rows the sources reject (a clip whose video was never downloaded, an id that is a path, a link out of the root) are
recorded here, at plan time, in ``_source_rejects.parquet`` (stage ``probe``, as a worker would have said), and take
no place in a shard: shards are made of the clips that can run, so a partial download of a corpus costs no worker
time for what is missing and makes no shard of nothing.

The driver holds each clip once, as the manifest's Arrow columns, and hands the clips to run out in tasks
(engine/tasks.py) as it goes; what it keeps besides is counts per shard.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pathlib
import re
import socket
import time
from collections import Counter
from collections.abc import Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from human_motion.config import ConfigError
from human_motion.engine import crashes
from human_motion.engine.config import BuildConfig, fingerprint
from human_motion.engine.shards import SOURCE_REJECTS, done_shards
from human_motion.engine.storage import is_local, listing, write_atomic
from human_motion.engine.writer import PARTS, complete_clips, reject_row
from human_motion.schema import REJECTS_SCHEMA
from human_motion.sources import collect_specs

INPUTS = "_inputs.parquet"
FINGERPRINT = "_build.json"
LOCK = "_lock"
# Everything a build writes into --out, and nothing else: --overwrite removes these names only. (_demo_media: the
# demo source's generated clips, made again when missing.)
_BUILD_FILE = re.compile(r"^(\d{6}(\.tar|\.parquet|_rejects\.parquet|_stats\.json)|index\.parquet|rejects\.parquet|"
                         r"manifest\.json|config\.yaml|_inputs\.parquet|_source_rejects\.parquet|_build\.json|"
                         r"_quarantine\.json|_parts|_lock|_demo_media)"
                         r"(\.[0-9a-f]{8}\.tmp)?$")
_MARKERS = (FINGERPRINT, INPUTS, "manifest.json")


def build_files(fs, root: str) -> tuple[list[str], list[str]]:
    """(paths a build wrote, names of everything else) in ``root``."""
    ours, others = [], []
    for path in fs.ls(root, detail=False) if fs.exists(root) else []:
        name = path.rstrip("/").rsplit("/", 1)[-1]
        (ours if _BUILD_FILE.match(name) else others).append(path if _BUILD_FILE.match(name) else name)
    return ours, sorted(others)


def check_output(fs, root: str, overwrite: bool) -> list[str]:
    """Refuse a folder that holds files but is not a build; with ``overwrite``, remove what a build wrote (and only
    that). Returns the names of files kept that are not the build's."""
    ours, others = build_files(fs, root)
    names = {p.rstrip("/").rsplit("/", 1)[-1] for p in ours}
    if others and not names & set(_MARKERS):
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise ConfigError(f"{root} is not a build folder (it holds {shown}); choose an empty or new --out "
                          "(hm build never deletes files it did not write)")
    if overwrite:
        for path in ours:
            if not path.endswith(f"/{LOCK}"):
                fs.rm(path, recursive=True)
    return others


class OutputLock:
    """One build at a time per folder: an exclusive ``flock`` on ``<out>/_lock`` held for the build's life. The
    kernel drops it when the holder dies, however it dies, so a killed build never leaves a stale lock. (On a
    filesystem without locks, such as an object store, builds are not guarded: one at a time is then the user's
    care.)"""

    def __init__(self, fs, root: str):
        self.path = f"{root}/{LOCK}"
        self.local = isinstance(fs, fsspec.implementations.local.LocalFileSystem)
        self.handle = None

    def __enter__(self) -> OutputLock:
        if not self.local:
            return self
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            self.handle.seek(0)
            holder = self.handle.read().strip() or "another process"
            self.handle.close()
            raise ConfigError(f"{os.path.dirname(self.path)} is being written by another build ({holder}); wait for "
                              "it to finish, or choose another --out") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started "
                          f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
        self.handle.flush()
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            self.handle.close()  # releases the lock; the file stays (removing it would race a new holder)


def prepare_inputs(cfg: BuildConfig, fs, root: str) -> pa.Table:
    """Create (first run) or reuse (later runs) the input manifest; refuse a folder built with another config. The
    rows the sources reject are written to ``_source_rejects.parquet`` and left out of the manifest."""
    fp_path, inputs_path = f"{root}/{FINGERPRINT}", f"{root}/{INPUTS}"
    fs.makedirs(root, exist_ok=True)
    wanted = fingerprint(cfg)
    if fs.exists(fp_path) and fs.exists(inputs_path):
        try:
            have = json.loads(fs.cat(fp_path))
        except ValueError:
            have = None
        if not isinstance(have, dict) or not isinstance(have.get("config"), dict):
            raise _damaged(root, FINGERPRINT, "not the JSON of a build's fingerprint")
        if have.get("config") != wanted:
            diff = sorted(_diff_keys(have.get("config", {}), wanted))
            raise ConfigError(
                f"{root} holds a build made with a different configuration (differs in: {', '.join(diff[:6])}); "
                "run the same command to resume it, add --overwrite to start again, or choose another --out")
        return read_inputs(fs, root)
    specs = collect_specs(cfg.sources, local_work_dir(fs, root))
    if not specs:
        raise ConfigError("the sources yielded no clips; check the source roots (and limits) in the config")
    rejected = [s for s in specs if s.reject_reason]
    rejects = pa.Table.from_pylist([reject_row({"source": s.source, "clip_id": s.clip_id, "media_path": s.path,
                                                "stage": "probe", "status": s.reject_reason,
                                                "detail": s.reject_detail}, "") for s in rejected],
                                   schema=REJECTS_SCHEMA)
    del rejected
    runnable = [s for s in specs if not s.reject_reason]
    del specs
    per = cfg.sink.clips_per_shard
    table = pa.table({
        "shard": pa.array([i // per for i in range(len(runnable))], pa.int64()),
        "clip_index": pa.array(range(len(runnable)), pa.int64()),
        "source": pa.array([s.source for s in runnable], pa.string()),
        "clip_id": pa.array([s.clip_id for s in runnable], pa.string()),
        "static": pa.array([bool(s.static) for s in runnable], pa.bool_()),
        "spec": pa.array([s.to_json() for s in runnable], pa.string()),
    })
    del runnable
    # The source rejections first, the fingerprint last: a folder with _build.json has a whole plan.
    write_atomic(fs, f"{root}/{SOURCE_REJECTS}", _parquet(rejects))
    write_atomic(fs, inputs_path, _parquet(table))
    write_atomic(fs, fp_path, json.dumps({"config": wanted, "created": time.time()}, indent=1).encode())
    return table


def local_work_dir(fs, root: str) -> pathlib.Path:
    """Where sources that make media (the demo) put it: the output folder on a local disk; for an object store, a
    folder of this machine's cache named after the output (the workers read it by path, so a build into an object
    store from a cluster needs its sources on storage every node sees)."""
    if is_local(fs):
        return pathlib.Path(root)
    import hashlib

    name = hashlib.sha1(fs.unstrip_protocol(root).encode()).hexdigest()[:16]
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "human_motion" / name


def _parquet(table: pa.Table) -> bytes:
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, row_group_size=4096)
    return buf.getvalue().to_pybytes()


def _diff_keys(a, b, prefix: str = "") -> set[str]:
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = set()
        for x, y in zip(a, b):
            name = x.get("section", "") if isinstance(x, dict) else ""
            out |= _diff_keys(x, y, f"{prefix}{name}." if name else prefix)
        return out
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return {prefix.rstrip(".") or "?"} if a != b else set()
    out = set()
    for k in set(a) | set(b):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, (dict, list)) and isinstance(vb, (dict, list)):
            out |= _diff_keys(va, vb, f"{prefix}{k}." if k not in ("settings", "steps") else prefix)
        elif va != vb:
            out.add(f"{prefix}{k}")
    return out


class Plan:
    """What a run of the build has to do: the shards not done, and in them the clips whose parts are not all
    written. Holds small things only: the manifest's columns (each clip once), counts per shard, the done shards'
    statistics. ``sizes`` is the one listing of the output folder, ``manifest`` the manifest of earlier runs."""

    def __init__(self, fs, root: str, inputs: pa.Table, sizes: dict[str, int], manifest: dict):
        self.fs, self.root = fs, root
        self.inputs = inputs
        self.sizes, self.manifest = sizes, manifest
        self.expected = Counter(inputs.column("shard").to_pylist())  # shard -> clips
        self.shards, self.read_back = done_shards(fs, root, sizes, manifest.get("shards", {}), warn=True)
        self.parts = {n for n in listing(fs, f"{root}/{PARTS}") if n.isdigit()}  # shards with a parts folder
        for name in sorted(n for n in self.parts if int(n) in self.shards):  # an assembler killed after its stats
            fs.rm(f"{root}/{PARTS}/{name}", recursive=True)
        self.complete: dict[int, set[int]] = {}
        self.refresh()
        self.source_reasons = source_reject_reasons(fs, root)
        self.source_rejects = sum(self.source_reasons.values())

    @property
    def done(self) -> set[int]:
        return set(self.shards)

    def refresh(self) -> None:
        """Re-read which clips of unfinished shards are complete (after a failed pass)."""
        self.complete = {s: complete_clips(self.fs, self.root, s) for s in self.expected
                         if s not in self.shards and f"{s:06d}" in self.parts}

    def add(self, stats: dict) -> None:
        """A shard written in this run."""
        self.shards[int(stats["shard"])] = stats
        self.parts.discard(stats["shard"])

    @property
    def todo_shards(self) -> list[int]:
        return sorted(s for s in self.expected if s not in self.shards)

    def ready_shards(self) -> list[int]:
        """Unfinished shards whose every clip is already written (to assemble without running anything)."""
        return [s for s in self.todo_shards if len(self.complete.get(s, ())) == self.expected[s]]

    def pending(self, quarantine: dict[str, dict]) -> Iterator[tuple[bool, tuple[int, int, str]]]:
        """The clips of unfinished shards not yet written, in manifest order: (quarantined, (shard, clip_index,
        spec JSON)) each, read from the manifest a slice at a time."""
        for batch in self.inputs.select(["shard", "clip_index", "spec"]).to_batches(max_chunksize=4096):
            for shard, clip, spec in zip(*(c.to_pylist() for c in batch.columns)):
                if shard in self.shards or clip in self.complete.get(shard, ()):
                    continue
                yield crashes.clip_key(shard, clip) in quarantine, (shard, clip, spec)

    def count_pending(self) -> int:
        return sum(self.expected[s] - len(self.complete.get(s, ())) for s in self.todo_shards)

    def clip_id(self, clip_index: int) -> str:
        return str(self.inputs.column("clip_id")[clip_index].as_py())


def source_reject_reasons(fs, root: str) -> Counter:
    """How many rows the sources rejected at plan time, by reason (the reason column only is read)."""
    try:
        with fs.open(f"{root}/{SOURCE_REJECTS}", "rb") as f:
            reasons = pq.read_table(f, columns=["reason"]).column("reason").to_pylist()
    except FileNotFoundError:
        return Counter()
    return Counter(reasons)


def _damaged(root: str, name: str, what: str) -> ConfigError:
    return ConfigError(f"{root}/{name} is damaged ({what}); the build cannot be resumed safely without it: add "
                       "--overwrite to start it again (only the build's own files are removed), or choose another "
                       "--out")


def read_inputs(fs, root: str) -> pa.Table:
    """The input manifest of a started build (the clips and their shards), checked to be whole."""
    try:
        with fs.open(f"{root}/{INPUTS}", "rb") as f:
            table = pq.read_table(f)
    except (pa.ArrowException, OSError) as e:
        raise _damaged(root, INPUTS, str(e).splitlines()[0]) from None
    missing = {"shard", "clip_index", "source", "clip_id", "static", "spec"} - set(table.column_names)
    if missing:
        raise _damaged(root, INPUTS, f"no {', '.join(sorted(missing))} column")
    return table


def looks_complete(sizes: dict[str, int], manifest: dict) -> bool:
    """The last run finished the build and nothing of it changed since (a rerun needs no workers): judged from the
    listing of the folder and the manifest, without reading a shard."""
    if not manifest.get("summary", {}).get("complete") or INPUTS not in sizes:
        return False
    return all(isinstance(s, dict) and s.get("files") and
               all(sizes.get(f"{name}{suffix}") == size for suffix, size in s["files"].items())
               for name, s in manifest.get("shards", {}).items())


def remove_stale_temporaries(fs, root: str, sizes: dict[str, int]) -> None:
    """Temporary files of writers that were killed; never under a final name."""
    for name in [n for n in sizes if n.endswith(".tmp")]:
        fs.rm(f"{root}/{name}")
        del sizes[name]
