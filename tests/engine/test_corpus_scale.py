"""A build over a partial download: the rows the sources reject are recorded at plan time, once, and cost no worker;
shards hold only clips that can run, and a shard whose every clip is rejected leaves no tar."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "sources"))

from corpora import fast_config, write_face_video
from human_motion.engine import command
from human_motion.engine.build import build

REPO = pathlib.Path(__file__).resolve().parents[2]
LISTED, PRESENT = 400, 3  # a CelebV-HQ-shaped metadata file, and the clips whose video was downloaded


def write_partial_celebvhq(root: pathlib.Path, listed: int = LISTED, present: int = PRESENT) -> list[str]:
    """``celebvhq_info.json`` listing ``listed`` clips, of which the first ``present`` (in id order) have a cut
    clip under ``root``; returns the ids that have one."""
    clips = {f"yt{i:09d}_0": {"ytb_id": f"yt{i:09d}", "duration": {"start_sec": 0.0, "end_sec": 2.0},
                              "bbox": {"top": 0.1, "bottom": 0.9, "left": 0.1, "right": 0.9}}
             for i in range(listed)}
    have = sorted(clips)[:present]
    for clip_id in have:
        write_face_video(root / "processed" / f"{clip_id}.mp4")
    (root / "celebvhq_info.json").write_text(json.dumps({"clips": clips}))
    return have


def _rejects(out: pathlib.Path):
    return pq.read_table(out / "rejects.parquet").to_pandas()


@pytest.fixture(scope="module")
def partial(tmp_path_factory):
    root = tmp_path_factory.mktemp("celebvhq")
    have = write_partial_celebvhq(root)
    cfg = fast_config({"celebv-hq": {"root": str(root)}}, **{"sink.clips_per_shard": 2})
    out = root.parent / "out"
    summary = build(cfg, str(out))
    return root, cfg, out, have, summary


def test_missing_media_is_rejected_at_plan_time_and_reaches_no_worker(partial):
    root, cfg, out, have, summary = partial
    rejects = _rejects(out)
    missing = rejects[rejects.reason == "missing_file"]
    assert len(missing) == LISTED - PRESENT and missing.clip_id.is_unique
    assert set(missing.stage) == {"probe"} and set(missing.shard) == {""}  # recorded by the driver, in no shard
    assert all("no media" in d or "no video" in d or "under" in d for d in missing.detail), missing.detail.iloc[0]
    assert pq.read_table(out / "_source_rejects.parquet").num_rows == LISTED - PRESENT
    inputs = pq.read_table(out / "_inputs.parquet").to_pandas()
    assert sorted(inputs.clip_id) == have  # the shards are made of the clips that can run
    manifest = json.loads((out / "manifest.json").read_text())
    assert sum(s["clips"] for s in manifest["shards"].values()) == PRESENT  # what the workers were given
    assert summary["clips"] == LISTED and summary["clips_rejected_by_sources"] == LISTED - PRESENT
    assert summary["samples"] == PRESENT


def test_a_source_that_is_mostly_missing_gets_one_line_saying_what_to_do(partial):
    root, cfg, _, _, summary = partial
    lines = command.advice(summary, cfg)
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(f"hm build: {LISTED - PRESENT} of {LISTED} celebv-hq clips (99%) have no media under ")
    assert str(root) in line and f"only {PRESENT} of {LISTED}" in line and "sources.celebv-hq.root" in line


def test_a_rerun_and_a_resume_record_each_source_rejection_once(partial, tmp_path):
    import shutil

    import human_motion.engine.build as build_module

    root, cfg, done, _, _ = partial
    again = tmp_path / "again"
    shutil.copytree(done, again)
    index_before = (again / "index.parquet").read_bytes()
    summary = build(cfg, str(again))  # a rerun of a finished build: nothing runs, nothing is rewritten
    assert json.loads((again / "manifest.json").read_text())["runs"][-1]["shards_written"] == 0
    assert (again / "index.parquet").read_bytes() == index_before
    assert summary["rejects_by_reason"]["missing_file"] == LISTED - PRESENT

    resumed = tmp_path / "resumed"
    real = build_module.run_tasks_local

    def stop_after_one(cfg_, planner, out_):
        yield next(real(cfg_, planner, out_))
        raise KeyboardInterrupt

    build_module.run_tasks_local = stop_after_one
    try:
        with pytest.raises(KeyboardInterrupt):
            build(cfg, str(resumed))
    finally:
        build_module.run_tasks_local = real
    assert not (resumed / "rejects.parquet").exists() and (resumed / "_source_rejects.parquet").exists()
    build(cfg, str(resumed))
    assert _rejects(resumed).sort_values("clip_id").reset_index(drop=True).equals(
        _rejects(done).sort_values("clip_id").reset_index(drop=True))


def test_limit_counts_the_clips_that_can_be_built(partial, tmp_path):
    root, _, _, have, _ = partial
    cfg = fast_config({"celebv-hq": {"root": str(root), "limit": 2}})
    summary = build(cfg, str(tmp_path / "limited"))
    assert summary["samples"] == 2  # two clips built, however many missing rows came before them
    assert summary["clips_rejected_by_sources"] == 0  # (the present ones sort first)


def test_a_shard_whose_clips_are_all_rejected_writes_no_tar(tmp_path):
    """Four videos, two per shard; the second shard's are too small (low_resolution at the first select step): it
    gets its statistics and rejects, but no tar and no index part, and every reader of the folder still works."""
    import webdataset as wds

    from human_motion.dataset.verify import verify_build

    root = tmp_path / "videos"
    for name in ("a", "b"):
        write_face_video(root / f"{name}.mp4")
    for name in ("c", "d"):
        write_face_video(root / f"{name}.mp4", 48, 48)
    out = tmp_path / "out"
    summary = build(fast_config({"folder": {"root": str(root)}}, **{"sink.clips_per_shard": 2}), str(out))
    assert summary["samples"] == 2 and summary["rejects_by_reason"] == {"low_resolution": 2}
    names = {p.name for p in out.glob("0*")}
    assert {"000000.tar", "000000.parquet", "000000_stats.json", "000001_stats.json", "000001_rejects.parquet"} \
        <= names and not {"000001.tar", "000001.parquet"} & names, names
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tars"] == ["000000.tar"] and manifest["shards"]["000001"]["samples"] == 0
    report = verify_build(str(out))
    assert report.ok, report.problems
    keys = [s["__key__"] for s in wds.WebDataset(sorted(map(str, out.glob("*.tar"))), shardshuffle=False)]
    assert len(keys) == 2
    again = build(fast_config({"folder": {"root": str(root)}}, **{"sink.clips_per_shard": 2}), str(out))
    assert again["samples"] == 2  # the shard without a tar counts as done: nothing is made again
    assert json.loads((out / "manifest.json").read_text())["runs"][-1]["shards_written"] == 0


@pytest.mark.slow
def test_on_ray_the_source_rejections_are_recorded_by_the_driver_too(partial, tmp_path):
    """The same partial download built on a Ray the command starts: the missing rows are in rejects.parquet before
    any worker starts (the plan writes them), the samples are the in-process build's, and the console says what
    to do in one line."""
    root, _, local, _, _ = partial
    out = tmp_path / "ray"
    sets = [x for k, v in {"decode.num_frames": 4, "decode.size_px": 128, "decode.max_windows_per_clip": 1,
                           "select.min_source_side_px": 64, "select.min_face_side_px": 24,
                           "sink.clips_per_shard": 2, "ray.num_cpus": 2}.items() for x in ("--set", f"{k}={v}")]
    run = subprocess.run([sys.executable, "-m", "human_motion.cli", "build", "--sources", f"celebv-hq={root}",
                          "--out", str(out), *sets], env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                         text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"{LISTED - PRESENT} rejected by their source, recorded without running" in run.stderr
    assert f"{LISTED - PRESENT} of {LISTED} celebv-hq clips (99%) have no media" in run.stderr
    cols = ["source", "clip_id", "window", "stage", "reason", "shard"]
    ray_rejects, local_rejects = _rejects(out)[cols], _rejects(local)[cols]
    assert ray_rejects.sort_values("clip_id").reset_index(drop=True).equals(
        local_rejects.sort_values("clip_id").reset_index(drop=True))
    index = [pq.read_table(o / "index.parquet").to_pandas().set_index("key")[["clip_id", "intensity"]].round(4)
             for o in (out, local)]
    assert index[0].sort_index().equals(index[1].sort_index())
