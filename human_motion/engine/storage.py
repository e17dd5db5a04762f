"""Where a build writes: a local folder or any fsspec URL (``s3://bucket/shards``), and what that costs.

A reader never sees half a file under its final name. On a local disk a file is written under a temporary name
unique to its writer and renamed (``os.replace``: atomic). On an object store there is no rename (fsspec's ``mv``
is a copy and a delete), but an object appears whole or not at all: a small file is one PUT (``pipe_file``), a
large stream a multipart upload that is completed only at ``commit`` (fsspec's ``autocommit=False``), and an upload
that is not committed leaves nothing under the name.

Every storage call per row or per shard is a round trip of tens of milliseconds on an object store, so the engine
lists a folder once (``listing``) instead of asking about each file, and reads each done shard's small files only
when the listing says they changed since the manifest recorded them (engine/shards.py).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import fsspec
from fsspec.implementations.local import LocalFileSystem


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def write_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file, or nothing, or the whole new one."""
    if not is_local(fs):
        fs.pipe_file(path, data)  # one PUT: an object is never seen half written
        return
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    with fs.open(tmp, "wb") as f:
        f.write(data)
    fs.mv(tmp, path)


@contextlib.contextmanager
def atomic_open(fs: fsspec.AbstractFileSystem, path: str) -> Iterator:
    """A file to stream into (a shard's tar): under ``path`` only once the block ends without an error."""
    if is_local(fs):
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with fs.open(tmp, "wb") as f:
                yield f
            fs.mv(tmp, path)
        finally:
            if fs.exists(tmp):
                fs.rm(tmp)
        return
    f = fs.open(path, "wb", autocommit=False)
    try:
        yield f
        f.close()
        f.commit()
    except BaseException:
        f.discard()
        raise


def listing(fs: fsspec.AbstractFileSystem, folder: str) -> dict[str, int]:
    """``{name: size}`` of what ``folder`` holds (a sub-folder's size is 0), in one call; {} when it is not there."""
    fs.invalidate_cache(folder)  # an object store's listing cache may predate this build's own writes
    try:
        entries = fs.ls(folder, detail=True)
    except FileNotFoundError:
        return {}
    out = {}
    for e in entries:
        name = e["name"].rstrip("/").rsplit("/", 1)[-1]
        if name:
            out[name] = int(e.get("size") or 0) if e.get("type") != "directory" else 0
    return out
