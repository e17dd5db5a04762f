"""The in-process build's threads (``ray.local_threads``): clips run in several threads, each with its own models,
give exactly the samples of one thread; an error in one thread stops the build and leaves no thread running."""

from __future__ import annotations

import os
import tarfile
import threading

import pyarrow.parquet as pq
import pytest

from human_motion.engine import executors
from human_motion.engine.build import build, initial_record
from human_motion.stages.base import StageError
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
    """Three threads each take a clip (a barrier holds each in its first clip until all three have one); one clip
    breaks a stage's contract, a bug that stops a build. The other two finish their clips only once the build waits
    for its threads, after it has decided to stop: threads not told to stop would go on to the 17 clips still
    queued. So the error is raised, exactly those three clips were started, and no thread is left."""
    from human_motion.stages.base import ContractError
    from human_motion.stages.probe import Probe

    first_round = threading.Barrier(3, timeout=60)  # the timeouts only end a test that already failed
    consumer, joining = threading.get_ident(), threading.Event()
    real_join = threading.Thread.join
    started: list[str] = []

    def join(thread, timeout=None):  # the build waits for its threads: it has stopped handing out clips
        if threading.get_ident() == consumer:
            joining.set()
        return real_join(thread, timeout)

    def process(self, row):
        clip = ClipSpec.from_json(row["spec"]).clip_id
        started.append(clip)
        if len(started) <= 3:
            if first_round.wait() == 0:
                raise ContractError(f"clip {clip} broke")
            joining.wait(timeout=60)
        raise StageError("missing_file", "no such clip")

    monkeypatch.setattr(threading.Thread, "join", join)
    monkeypatch.setattr(Probe, "process", process)
    rows = [Row(0, i, 1, initial_record(ClipSpec("folder", f"c{i}", f"/nonexistent/c{i}.mp4"))) for i in range(20)]
    cfg = small_build_config(**{"ray.local_threads": 3, "stages": "[probe,decode,encode]"})
    with pytest.raises(ContractError, match=r"clip c\d+ broke"):
        list(executors.run_local(cfg, rows))
    assert len(started) == 3, started  # stopped after the clips in hand, not run to the end
    assert not [t for t in threading.enumerate() if t.name.startswith("hm-build-")]


def test_local_threads_below_one_is_refused_at_start_up():
    from human_motion.config import ConfigError

    with pytest.raises(ConfigError, match="local_threads"):
        small_build_config(**{"ray.local_threads": 0})
