"""The in-process build's threads (``ray.local_threads``): clips run in several threads, each with its own models,
give exactly the samples of one thread; an error in one thread stops the build and leaves no thread running."""

from __future__ import annotations

import os
import tarfile
import threading
import time

import pyarrow.parquet as pq
import pytest

from human_motion.engine import executors
from human_motion.engine.build import build, initial_record
from human_motion.types import ClipSpec, Row
from tests.conftest import small_build_config


def _members(out) -> dict[str, bytes]:
    """Every member of every shard; the demo source's media live in the build folder, so its path is made
    neutral."""
    members = {}
    for tar in sorted(out.glob("*.tar")):
        with tarfile.open(tar) as t:
            for m in t.getmembers():
                members[m.name] = t.extractfile(m).read().replace(str(out).encode(), b"OUT")
    return members


def _table(out, name: str, key: list[str]):
    table = pq.read_table(out / name).to_pandas().sort_values(key).reset_index(drop=True)
    if "media_path" in table:
        table["media_path"] = table["media_path"].str.replace(str(out), "OUT")
    return table


def test_threads_give_the_samples_of_one_thread_byte_for_byte(demo_build, tmp_path):
    """``demo_build`` ran with the default two threads; the same build on one thread has the same index, the same
    rejects and the same bytes in every member of every shard."""
    assert small_build_config().ray.in_process_threads() == min(2, os.cpu_count())
    out = tmp_path / "one"
    build(small_build_config(**{"ray.local_threads": 1}), str(out))
    for name, key in (("index.parquet", ["key"]), ("rejects.parquet", ["source", "clip_id", "window"])):
        assert _table(out, name, key).equals(_table(demo_build, name, key))
    one, two = _members(out), _members(demo_build)
    assert one.keys() == two.keys() and len(one) > 20
    assert all(one[k] == two[k] for k in one)


def test_an_error_in_one_thread_stops_the_build_and_no_thread_is_left(monkeypatch):
    def finish(runner, row):
        if row.clip_index == 1:
            raise RuntimeError("clip 1 broke")
        time.sleep(0.05)
        return [row.clip_index]

    monkeypatch.setattr(executors, "_finish", finish)
    monkeypatch.setattr(executors, "_local_runner", lambda cfg, out: type("R", (), {"close": lambda self: None})())
    spec = ClipSpec("folder", "x.mp4", "/nonexistent/x.mp4")
    rows = [Row(0, i, 1, initial_record(spec)) for i in range(20)]
    got = []
    with pytest.raises(RuntimeError, match="clip 1 broke"):
        for r in executors.run_local(small_build_config(**{"ray.local_threads": 3}), rows):
            got.append(r)
    assert len(got) < 20  # stopped, not run to the end
    assert not [t for t in threading.enumerate() if t.name.startswith("hm-build-")]


def test_local_threads_below_one_is_refused_at_start_up():
    from human_motion.config import ConfigError

    with pytest.raises(ConfigError, match="local_threads"):
        small_build_config(**{"ray.local_threads": 0})
