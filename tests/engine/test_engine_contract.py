"""The engine's contract: stages touch only what they declare, the fingerprint comes from the declarations, and the
output folder is guarded (no deleting what a build did not write, one build at a time, one-line refusals)."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest

from human_motion.cli import main
from human_motion.engine import writer
from human_motion.engine.config import fingerprint
from human_motion.schema import SCORE_COLUMNS
from human_motion.stages.base import FieldTypeError, RowView, Stage, StageResources, UndeclaredFieldError
from human_motion.stages.dataflow import DATAFLOW, check_dataflow, dataflow
from human_motion.stages.select import Select, select_step
from human_motion.types import Row
from tests.conftest import small_build_config

# The demo_build fixture's configuration, as hm build arguments.
DEMO_ARGS = ["--set", "sources.demo.options.pan_px=[0,4,12]", "--set", "sources.demo.options.zoom_pct=0",
             "--set", "sources.demo.options.rotate_deg=3", "--set", "sink.clips_per_shard=3",
             "--set", "ray.address=local", "--set", "progress=off"]


class Sneaky(Stage):
    name = "sneaky"
    reads = ("frames",)
    writes = ("action",)

    def process(self, row: RowView) -> list[RowView]:
        row["action"] = "fine"
        _ = row["intensity"]  # not in its header
        return [row]


def test_a_stage_that_reads_an_undeclared_field_fails_loudly():
    row = Row(0, 0, 1, {"status": "ok", "intensity": 3.0}, np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(UndeclaredFieldError, match="'intensity'.*does not declare"):
        Sneaky(StageResources()).process_rows([row])  # a bug in a stage stops the build: never a rejection

    class Writer(Sneaky):
        def process(self, row):
            row["description"] = "x"
            return [row]

    with pytest.raises(UndeclaredFieldError, match="'description'"):
        Writer(StageResources()).process_rows([Row(0, 0, 1, {"status": "ok"})])

    class Member(Sneaky):
        def process(self, row):
            row.member("mp4", b"")
            return [row]

    with pytest.raises(UndeclaredFieldError, match="member 'mp4'"):
        Member(StageResources()).process_rows([Row(0, 0, 1, {"status": "ok"})])


def test_a_stage_gets_its_own_section_only_and_types_are_checked():
    from human_motion.stages.decode import Decode

    with pytest.raises(TypeError, match="takes its 'decode' section"):
        Decode(small_build_config())  # the whole config: refused
    with pytest.raises(FieldTypeError, match="field 'frames'"):
        class BadFrames(Sneaky):
            writes = ("frames",)

            def process(self, row):
                row["frames"] = np.zeros((8, 8), np.float32)
                return [row]

        BadFrames(StageResources()).process_rows([Row(0, 0, 1, {"status": "ok"})])


def test_the_dataflow_is_checked_before_the_first_clip():
    check_dataflow(list(DATAFLOW))
    flow = dataflow(["decode", "encode"])  # optional stages left out: their select steps go with them
    assert [s.name for s in flow if not issubclass(s, Select)] == ["probe", "decode", "encode"]

    class ReadsTooEarly(Sneaky):
        reads = ("intensity",)

    with pytest.raises(UndeclaredFieldError, match="no earlier step writes"):
        check_dataflow([DATAFLOW[0], ReadsTooEarly])
    with pytest.raises(UndeclaredFieldError, match="unknown check"):
        select_step("nonsense")
    # Every score a stage declares is an index column, and every select check's score is declared upstream.
    declared = [s for step in DATAFLOW for s in step.scores]
    assert tuple(declared) == SCORE_COLUMNS


def test_the_row_fields_the_sample_json_carries_keep_the_stored_types():
    """Two contracts meet in encode: the fields in flight (stages/fields.py) and the stored sample (schema.py). Every
    field encode copies is declared in both, with one type (labels are stored as JSON text since schema 2)."""
    from human_motion.schema import JSON_TEXT_FIELDS, SAMPLE_FIELDS
    from human_motion.stages.encode import JSON_FIELDS, Encode
    from human_motion.stages.fields import FIELDS

    assert set(JSON_FIELDS) <= set(Encode.reads)
    for name in JSON_FIELDS:
        in_flight, stored = FIELDS[name][0], SAMPLE_FIELDS[name][0]
        if (name,) in JSON_TEXT_FIELDS:
            assert stored == (in_flight, str), name
        else:
            assert stored == in_flight, name


def test_the_fingerprint_comes_from_the_declared_sections():
    base = small_build_config()
    same = dataclasses.replace(base, flow=dataclasses.replace(base.flow, concurrency=4, device="cpu"))
    assert fingerprint(same) == fingerprint(base)  # runtime settings: a resume may change them
    other = dataclasses.replace(base, flow=dataclasses.replace(base.flow, work_px=128))
    assert fingerprint(other) != fingerprint(base)
    steps = [s["step"] for s in fingerprint(base)["steps"]]
    assert steps[0] == "Probe" and steps[-1] == "Encode" and any(s.startswith("Select[") for s in steps)


@pytest.mark.parametrize("sets, message", [
    (["sink.clips_per_shard=0"], "clips_per_shard must be >= 1"),
    (["sink.clips_per_shard=-1"], "clips_per_shard must be >= 1"),
    (["decode.max_windows_per_clip=0"], "max_windows_per_clip must be >= 1"),
    (["caption.model_kwargs={trust_remote_code: true}", "caption.backend=transformers", "caption.model=x"],
     "may not set trust_remote_code"),
])
def test_nonsense_values_are_refused_at_start_up(tmp_path, capsys, sets, message):
    args = [a for s in sets for a in ("--set", s)]
    assert main(["build", "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_a_folder_that_is_not_a_build_is_never_touched(tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "photos").mkdir(parents=True)
    (out / "notes.txt").write_text("keep me")
    (out / "photos" / "a.jpg").write_bytes(b"x")
    for extra in ([], ["--overwrite"]):
        assert main(["build", "--out", str(out), *DEMO_ARGS, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert "is not a build folder" in err and "notes.txt" in err and len(err.splitlines()) == 1
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "photos"]


def test_overwrite_removes_only_what_a_build_wrote(demo_build, tmp_path, caplog):
    import shutil

    out = tmp_path / "b"
    shutil.copytree(demo_build, out)
    (out / "my_notes.md").write_text("keep")
    (out / "analysis").mkdir()
    (out / "analysis" / "plot.png").write_bytes(b"png")
    assert main(["build", "--out", str(out), *DEMO_ARGS]) == 0  # resumes (nothing to do) and says what it keeps
    assert "kept 2 file(s)" in caplog.text and "analysis, my_notes.md" in caplog.text  # not the demo's own media
    assert main(["build", "--out", str(out), *DEMO_ARGS, "--overwrite"]) == 0
    assert (out / "my_notes.md").read_text() == "keep" and (out / "analysis" / "plot.png").read_bytes() == b"png"
    assert _samples(out) == _samples(demo_build)
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["runs"]) == 1  # the earlier build's manifest went with it


def test_a_second_build_into_a_folder_another_build_holds_is_refused(tmp_path, capsys):
    """The first build is stood in by a process that holds the folder's lock; once it is killed, its lock goes with
    it and a build proceeds."""
    out = tmp_path / "held"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fsspec, time
        from human_motion.engine.plan import OutputLock
        with OutputLock(fsspec.filesystem("file"), {str(out)!r}):
            print("held", flush=True)
            time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["build", "--out", str(out), *DEMO_ARGS, "--set", "sources.demo.limit=2"]) == 2
        err = capsys.readouterr().err.strip()
        assert "is being written by another build" in err and f"pid {holder.pid}" in err and len(err.splitlines()) == 1
        assert sorted(p.name for p in out.iterdir()) == ["_lock"]
    finally:
        holder.kill()
        holder.wait()
    assert main(["build", "--out", str(out), *DEMO_ARGS, "--set", "sources.demo.limit=2"]) == 0  # a stale lock


def test_a_full_disk_is_one_line_and_the_next_run_resumes(demo_build, tmp_path, capsys, monkeypatch):
    real = writer.write_atomic
    calls = {"n": 0}

    def fail_after_three(fs, path, data):
        calls["n"] += 1
        if calls["n"] > 3 and "/_parts/" in path:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real(fs, path, data)

    monkeypatch.setattr(writer, "write_atomic", fail_after_three)
    out = tmp_path / "full"
    assert main(["build", "--out", str(out), *DEMO_ARGS]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "/_parts/" in err[0], err
    assert "run the same command again to resume" in err[0]
    monkeypatch.setattr(writer, "write_atomic", real)
    assert main(["build", "--out", str(out), *DEMO_ARGS]) == 0
    assert _samples(out) == _samples(demo_build)
    assert not list(out.glob("_parts/*/*"))


def test_an_output_that_cannot_be_created_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    assert main(["build", "--out", str(blocker / "out"), *DEMO_ARGS]) != 0
    err = capsys.readouterr().err.strip()
    assert str(blocker) in err and len(err.splitlines()) == 1, err


def _samples(out) -> dict:
    index = pq.read_table(out / "index.parquet").to_pandas()
    return {r.key: (r.clip_id, r.window, round(r.intensity, 4), r.action) for r in index.itertuples()}


@pytest.mark.parametrize("damaged", ["_stats.json", ".parquet", "_rejects.parquet", ".tar (deleted)"])
def test_a_damaged_shard_file_has_its_shard_made_again(demo_build, tmp_path, caplog, damaged):
    """A shard's _stats.json is written last and marks it done; if it, or the shard's parquet files, do not read
    back (edited, cut by the disk), or its tar is gone, the shard is made again, and the build ends with the
    uninterrupted samples."""
    import shutil

    out = tmp_path / "b"
    shutil.copytree(demo_build, out)
    shard = sorted(out.glob("0*_stats.json"))[-1].name[:6]
    path = out / f"{shard}{damaged.split()[0]}"
    if damaged.endswith("(deleted)"):
        path.unlink()
    else:
        path.write_text("{not json")
    assert main(["build", "--out", str(out), *DEMO_ARGS]) == 0
    assert f"shard {shard}: {path}" in caplog.text and "it will be made again" in caplog.text
    assert _samples(out) == _samples(demo_build)
    assert json.loads((out / f"{shard}_stats.json").read_text())["clips"] >= 1


@pytest.mark.parametrize("name, content", [("_build.json", "{not json"), ("_build.json", "[]"),
                                           ("_inputs.parquet", "x")])
def test_a_damaged_plan_is_one_line_and_overwrite_starts_again(demo_build, tmp_path, capsys, name, content):
    import shutil

    out = tmp_path / "b"
    shutil.copytree(demo_build, out)
    (out / name).write_text(content)
    assert main(["build", "--out", str(out), *DEMO_ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"hm build: error: {out}/{name} is damaged (") and "--overwrite" in err
    assert len(err.splitlines()) == 1
    assert main(["build", "--out", str(out), *DEMO_ARGS, "--overwrite"]) == 0
    assert _samples(out) == _samples(demo_build)


def test_a_damaged_manifest_is_written_anew(demo_build, tmp_path, caplog):
    import shutil

    out = tmp_path / "b"
    shutil.copytree(demo_build, out)
    (out / "manifest.json").write_text("{not json")
    assert main(["build", "--out", str(out), *DEMO_ARGS]) == 0
    assert "manifest.json is damaged; it is written anew" in caplog.text
    assert len(json.loads((out / "manifest.json").read_text())["runs"]) == 1


def test_parts_of_a_killed_run_are_reused_and_nothing_is_doubled(demo_build, tmp_path):
    """A run stopped after some rows were written (parts on disk, not every shard assembled): the next run runs only
    the clips whose parts are missing and ends with exactly the uninterrupted samples."""
    import shutil

    import human_motion.engine.build as build_module

    out = tmp_path / "k"
    cfg = small_build_config(**{"ray.local_threads": 1})  # one task at a time: what was written is what came back
    real = build_module.run_tasks_local

    def stop_after_four(cfg_, planner, out_):
        for i, result in enumerate(real(cfg_, planner, out_)):
            if i == 4:  # the fifth row's part is written; the stop comes before the driver counts it
                raise KeyboardInterrupt
            yield result

    build_module.run_tasks_local = stop_after_four
    try:
        with pytest.raises(KeyboardInterrupt):
            build_module.build(cfg, str(out))
    finally:
        build_module.run_tasks_local = real
    assert [p.name for p in out.glob("*_stats.json")] == ["000000_stats.json"]  # shard 0: clips 0-2
    in_parts = {r["clip_index"] for p in out.glob("_parts/*/*.tar") for r in writer.read_part_rows(fs_local(), str(p))}
    assert {3, 4} <= in_parts and not in_parts & {0, 1, 2}, in_parts
    handed = []

    def counting(cfg_, planner, out_):
        take = planner.next_task

        def next_task():
            task = take()
            handed.extend(clip for _, clip, _ in task or [])
            return task

        planner.next_task = next_task
        yield from real(cfg_, planner, out_)

    build_module.run_tasks_local = counting
    try:
        build_module.build(cfg, str(out))
    finally:
        build_module.run_tasks_local = real
    assert handed and not set(handed) & ({0, 1, 2} | in_parts)  # clips whose parts were written are not run again
    assert set(handed) == set(range(12)) - {0, 1, 2} - in_parts  # (a clip a task left unstarted goes out again)
    assert _samples(out) == _samples(demo_build)
    shutil.rmtree(out)


def fs_local():
    import fsspec

    return fsspec.filesystem("file")


def test_plain_progress_lines_count_by_stage_and_say_eta(monkeypatch):
    """Without a terminal: a line at the interval and at the end, with samples, rejects by stage, rate and ETA
    ("?" before the first clip is done)."""
    import io

    from human_motion.engine import progress

    clock = iter([0.0, 0.0, 10.0, 10.0, 20.0, 20.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    stream = io.StringIO()
    p = progress.Progress(4, "auto", stream, interval_s=10.0)  # a StringIO is no terminal: plain lines
    p._line()  # nothing done yet
    p.row(True, "encode")
    p.row(False, "decode")
    p.clip()  # 10 s in: one clip, so 30 s to go
    p.close()
    first, second, last = stream.getvalue().splitlines()
    assert first.endswith("0.00 clips/s, elapsed 0:00, ETA ?")
    assert second == ("hm build: 1/4 clips, samples 1, rejects 1 (decode 1), 0.10 clips/s, elapsed 0:10, "
                      "ETA 0:30")
    assert last.startswith("hm build: 1/4 clips") and last.endswith("elapsed 0:20, ETA 1:00")
