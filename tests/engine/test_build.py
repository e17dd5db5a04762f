"""hm build end to end: shards that plain webdataset reads, bad inputs recorded as rejections, configuration errors
that stop at once, and a build killed with SIGKILL that resumes to exactly the samples of an uninterrupted one."""

import io
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import skimage.data
import webdataset as wds

from human_motion.cli import main
from human_motion.media import decode_jpg, decode_mp4_bytes, write_mp4
from human_motion.engine.build import build, prepare_inputs
from human_motion.schema import SAMPLE_FIELDS
from human_motion.sources.demo import render
from tests.conftest import small_build_config

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_shards_read_back_with_plain_webdataset(demo_build):
    index = pq.read_table(demo_build / "index.parquet").to_pandas()
    tars = sorted(str(p) for p in demo_build.glob("0*.tar"))
    seen = []
    for sample in wds.WebDataset(tars, shardshuffle=False):
        meta = json.loads(sample["json"])
        assert set(SAMPLE_FIELDS) <= set(meta)
        assert sample["__key__"] == meta["key"]
        frames = decode_mp4_bytes(sample["mp4"])  # every sample has the same members
        assert frames.shape == (16, 512, 512, 3)
        if meta["static"]:  # a still video: the image repeated (the paper's zero-intensity calibration)
            diff = np.abs(frames.astype(int) - frames[:1])
            assert diff.mean() < 0.1 and diff.max() <= 10 and meta["intensity"] == 0  # codec rounding only
        assert decode_jpg(sample["face.jpg"]).shape == (256, 256, 3)
        emb = np.load(io.BytesIO(sample["arcface.npy"]), allow_pickle=False)
        assert emb.shape == (meta["id_embedding"]["dim"],) and abs(np.linalg.norm(emb) - 1) < 1e-4
        flow = np.load(io.BytesIO(sample["flow.npy"]), allow_pickle=False)
        assert flow.dtype == np.uint8 and flow.shape == (15, 64, 64)
        assert meta["intensity_units"]["unit"] == "px_per_step" and meta["intensity_units"]["fps"] == 4.0
        assert len(meta["faces"]["boxes"]) == meta["num_frames"] == len(meta["faces"]["landmarks5"])
        seen.append(meta["key"])
    assert sorted(seen) == sorted(index["key"]) and len(seen) == len(set(seen))
    # Known motion: the demo pans at 0, 4 and 12 px per sampled step.
    pans = index[index.clip_id.str.contains("_pan_")].set_index("clip_id")["intensity"]
    for clip, value in pans.items():
        k = float(clip.split("_pan_")[1].removesuffix(".mp4"))
        assert value == pytest.approx(k, rel=0.2, abs=0.5), clip
    assert (index[index.static]["intensity"] == 0).all()
    rejects = pq.read_table(demo_build / "rejects.parquet").to_pandas()
    assert sorted(rejects.reason) == ["no_face", "several_faces"]
    manifest = json.loads((demo_build / "manifest.json").read_text())
    # The shards' own counts (made by the assembler from the parts, not from index.parquet) agree with the tars.
    assert sum(s["samples"] for s in manifest["shards"].values()) == len(seen)
    assert manifest["tars"] == [pathlib.Path(t).name for t in tars] and manifest["versions"]["human_motion"]


def make_bad_inputs(root: pathlib.Path) -> dict[str, str]:
    """Each file -> the reason it must be rejected for (None: must be accepted)."""
    root.mkdir(parents=True)
    frames = render(skimage.data.astronaut(), (0.44, 0.255, 0.195), "pan", 3)
    good = root / "sous-dossier avec espaces" / "vidéo été 1.mp4"
    good.parent.mkdir()
    write_mp4(str(good), frames, 8.0)
    data = good.read_bytes()
    (root / "zero.mp4").write_bytes(b"")
    (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (root / "not_a_video.mp4").write_text("this is text, not a video\n")
    (root / "random_bytes.mov").write_bytes(os.urandom(5000))
    write_mp4(str(root / "too_short.mp4"), frames[:10], 8.0)
    (root / "notes.txt").write_text("hello")
    cv2.imwrite(str(root / "coffee.png"), cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR))
    unreadable = root / "unreadable.mp4"
    shutil.copy(good, unreadable)
    unreadable.chmod(0)
    return {
        "sous-dossier avec espaces/vidéo été 1.mp4": None, "zero.mp4": "empty_file",
        "truncated.mp4": {"truncated", "not_a_video", "decode_failed"}, "not_a_video.mp4": "not_a_video",
        "random_bytes.mov": {"not_a_video", "decode_failed"}, "too_short.mp4": "too_short",
        "notes.txt": "unsupported_file", "coffee.png": "no_face",
        "unreadable.mp4": None if os.geteuid() == 0 else "unreadable",  # root reads anything
    }


def test_bad_inputs_become_rejections_and_good_ones_samples(tmp_path):
    expect = make_bad_inputs(tmp_path / "in")
    gone = tmp_path / "in" / "deleted_mid_build.mp4"
    shutil.copy(tmp_path / "in" / "sous-dossier avec espaces" / "vidéo été 1.mp4", gone)
    expect["deleted_mid_build.mp4"] = "missing_file"
    cfg = small_build_config(**{"sources": "{folder: {root: %s}}" % json.dumps(str(tmp_path / "in"))})
    out = tmp_path / "out"
    prepare_inputs(cfg, __import__("fsspec").filesystem("file"), str(out))  # the manifest names the file...
    gone.unlink()  # ...which disappears before the stages reach it
    summary = build(cfg, str(out))
    index = pq.read_table(out / "index.parquet").to_pandas()
    rejects = pq.read_table(out / "rejects.parquet").to_pandas().set_index("clip_id")
    for clip, reason in expect.items():
        if reason is None:
            assert clip in set(index.clip_id), (clip, rejects.loc[clip].to_dict() if clip in rejects.index else None)
        else:
            allowed = reason if isinstance(reason, set) else {reason}
            assert rejects.loc[clip, "reason"] in allowed, (clip, rejects.loc[clip].to_dict())
            assert rejects.loc[clip, "stage"] in ("probe", "decode")  # probe: from the header, decode: frames
    assert summary["clips"] == len(expect)
    assert summary["samples"] + summary["rejects"] >= len(expect)
    key = index.set_index("clip_id").loc["sous-dossier avec espaces/vidéo été 1.mp4", "key"]
    assert "/" not in key and " " not in key and key.isascii()


class HostileSource:
    """Yields ids that try to escape the output folder (as an untrusted metadata file could)."""

    def __init__(self, name, cfg, work_dir):
        self.name, self.root = name, pathlib.Path(cfg.root)

    def specs(self):
        from human_motion.types import ClipSpec

        image = str(self.root / "astronaut.png")
        for clip_id in ("../../escape", "/etc/passwd", "a/../../b", "ok"):
            yield ClipSpec(self.name, clip_id, image, static=True)


def test_clip_ids_with_dot_dot_stay_inside_the_output(tmp_path, monkeypatch):
    from human_motion import sources

    monkeypatch.setitem(sources.REGISTRY, "hostile", "tests.engine.test_build:HostileSource")
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "astronaut.png"), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    cfg = small_build_config(**{"sources": "{hostile: {root: %s}}" % json.dumps(str(tmp_path / "in"))})
    out = tmp_path / "out"
    build(cfg, str(out))
    index = pq.read_table(out / "index.parquet").to_pandas()
    assert len(index) == 4 and index.key.is_unique
    assert all(".." not in k and "/" not in k for k in index.key)
    members = [m for tar in out.glob("0*.tar") for m in __import__("tarfile").open(tar).getnames()]
    assert members and all("/" not in m and not m.startswith(".") for m in members)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]


@pytest.mark.parametrize("argv, message", [
    (["--sources", "nope"], "unknown source 'nope'"),
    (["--sources", "folder=/does/not/exist"], "does not exist"),
    (["--sources", "folder"], "needs a root folder"),
    (["--set", "decode.nonsense=1"], "unknown config key 'decode.nonsense'"),
    (["--set", "decode.fps=fast"], "decode.fps: expected float"),
    (["--set", "flow.backend=magic"], "flow.backend: must be one of"),
    (["--config", "/no/such.yaml"], "does not exist"),
])
def test_bad_configuration_stops_with_one_line(tmp_path, capsys, argv, message):
    assert main(["build", "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_a_different_config_in_the_same_folder_is_refused(demo_build, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(demo_build, out)
    with pytest.raises(Exception, match="different configuration"):
        build(small_build_config(**{"decode.fps": 2.0}), str(out))


def _samples(out: pathlib.Path) -> dict[str, tuple]:
    index = pq.read_table(out / "index.parquet").to_pandas()
    return {r.key: (r.clip_id, r.window, round(r.intensity, 4), r.action) for r in index.itertuples()}


def _cmd(out, *extra):
    return [sys.executable, "-m", "human_motion.cli", "build", "--out", str(out), "--set", "sink.clips_per_shard=2",
            "--set", "sources.demo.options.pan_px=[0,3,6,9]", "--set", "sources.demo.options.zoom_pct=0",
            "--set", "ray.progress=false", *extra]


def kill_when_held(cmd: list[str], out: pathlib.Path, env: dict) -> None:
    """Run ``cmd`` (tests.engine.killer with WHERE=hold:N), wait until a worker holds the build at the moment the
    test chose (it wrote its N-th part: ``OUT.held`` appears; the build cannot end while it holds), then SIGKILL
    the build and everything it started. Raises if the build ended before reaching that moment."""
    log = open(f"{out}.log", "w+")  # noqa: SIM115 - read back below, closed at the end
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True, cwd=REPO)
    held = pathlib.Path(f"{out}.held")
    try:
        while not held.exists():  # an event, not a deadline: the subprocess either gets there or ends
            try:
                proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
            log.seek(0)
            raise AssertionError(f"the build ended before it was held: {log.read()[-2000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started, mid-build
        proc.wait()
        log.close()


def complete_tar(path: pathlib.Path) -> bool:
    """The tar reads to its end-of-archive marker (not a file cut half way)."""
    import tarfile

    try:
        with tarfile.open(path) as tar:
            for member in tar:
                tar.extractfile(member).read()
        return True
    except (tarfile.TarError, OSError):
        return False


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "ray"])
def test_sigkill_and_resume_gives_exactly_the_uninterrupted_samples(tmp_path, executor):
    extra = ["--set", "ray.address=local"] if executor == "local" else []
    env = dict(os.environ, PYTHONPATH=str(REPO))
    full = tmp_path / "full"
    subprocess.run(_cmd(full, *extra), check=True, env=env, capture_output=True)
    expected = _samples(full)

    killed = tmp_path / "killed"
    kill_when_held([sys.executable, "-m", "tests.engine.killer", str(killed), "hold:2", *_cmd(killed, *extra)[6:]],
                   killed, env)
    assert not (killed / "manifest.json").exists()  # killed part way: the build never got to its end
    parts = list(killed.glob("_parts/*/*.tar"))
    shards = list(killed.glob("*_stats.json"))
    assert parts or shards  # and after its second part at least
    for tar in killed.glob("0*.tar"):  # every tar under a final name is whole (a half one is only ever a .tmp)
        assert complete_tar(tar), tar
    subprocess.run(_cmd(killed, *extra), check=True, env=env, capture_output=True)
    assert _samples(killed) == expected
    keys = [s["__key__"] for s in wds.WebDataset(sorted(map(str, killed.glob("0*.tar"))), shardshuffle=False)]
    assert sorted(keys) == sorted(expected) and len(keys) == len(set(keys))
    assert not list(killed.glob("*.tmp")) and not list(killed.glob("_parts/*/*"))
    runs = json.loads((killed / "manifest.json").read_text())["runs"]
    assert len(runs) == 1 and runs[0]["shards_written"] >= 1  # the resumed run did the rest


def test_runtime_settings_do_not_block_a_resume(demo_build, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(demo_build, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name not in ("manifest.json", "_lock")}
    cfg = small_build_config(**{"flow.concurrency": 2, "faces.num_cpus": 1, "caption.request_timeout_s": 5})
    summary = build(cfg, str(out))  # every shard is done: nothing to redo, and no config complaint
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name not in ("manifest.json", "_lock")}
    assert after == before  # no shard, index or rejects file was written again
    runs = json.loads((out / "manifest.json").read_text())["runs"]
    assert len(runs) == 2 and runs[-1]["shards_written"] == 0
    assert summary["samples"] == len(pq.read_table(out / "index.parquet")) > 0


@pytest.mark.slow
def test_a_clip_that_crashes_its_worker_is_quarantined_and_the_rest_is_built(tmp_path):
    """A clip that segfaults its Ray worker every time becomes a worker_crashed rejection; every other clip ends
    exactly as in a build without it, and a second run of the same command changes nothing."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    poison = "astronaut_pan_6.mp4"
    args = _cmd(tmp_path / "out")[6:] + ["--set", "ray.max_retries=1"]
    run = subprocess.run([sys.executable, "-m", "tests.engine.poison", str(tmp_path / "out"), poison, *args],
                         env=env, capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"{poison}" in run.stderr and "quarantined as worker_crashed" in run.stderr
    out = tmp_path / "out"
    rejects = pq.read_table(out / "rejects.parquet").to_pandas()
    crashed = rejects[rejects.reason == "worker_crashed"]
    assert list(crashed.clip_id) == [poison] and list(crashed.stage) == ["faces"]
    quarantine = json.loads((out / "_quarantine.json").read_text())
    assert [v["stage"] for v in quarantine.values()] == ["faces"]
    assert min(v["crashes"] for v in quarantine.values()) >= 2

    full = tmp_path / "full"  # the same build in one process, where nothing crashes
    subprocess.run(_cmd(full, "--set", "ray.address=local"), check=True, env=env, capture_output=True)
    expected = {k: v for k, v in _samples(full).items() if v[0] != poison}
    assert _samples(out) == expected
    index_before = (out / "index.parquet").read_bytes()
    again = subprocess.run([sys.executable, "-m", "tests.engine.poison", str(out), poison, *args], env=env,
                           capture_output=True, text=True, cwd=REPO)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "index.parquet").read_bytes() == index_before


@pytest.mark.slow
def test_a_clip_that_crashes_a_batched_stage_is_quarantined_without_its_batch_mates(tmp_path):
    """A multimodal captioner captions a batch in one call, so a crash there has every clip of the batch in flight.
    The retry runs those clips one at a time: only the clip that crashes again is quarantined."""
    poison = "hopper_pan_3_x2.mp4"
    log = tmp_path / "crashed_batches.jsonl"
    env = dict(os.environ, PYTHONPATH=str(REPO), HM_TEST_POISON_STAGE="caption", HM_TEST_POISON_LOG=str(log))
    # Two windows per clip: a crashed batch holds both of a batch-mate's, which must count as one crash of it.
    windows = ["--set", "sources.demo.options.windows=2"]
    args = _cmd(tmp_path / "out", *windows)[6:] + ["--set", "ray.max_retries=1", "--set", "caption.batch_size=16"]
    run = subprocess.run([sys.executable, "-m", "tests.engine.poison", str(tmp_path / "out"), poison, *args],
                         env=env, capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    batches = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(batches[0]) > 1, batches  # the first crash took batch-mates down with it
    assert batches[1:] == [[poison]], batches  # the retry ran them one at a time: only the poison crashed again
    out = tmp_path / "out"
    rejects = pq.read_table(out / "rejects.parquet").to_pandas()
    crashed = rejects[rejects.reason == "worker_crashed"]
    assert list(crashed.clip_id) == [poison] and list(crashed.stage) == ["caption"]
    assert len(json.loads((out / "_quarantine.json").read_text())) == 1

    full = tmp_path / "full"  # in one process, nothing crashes (and the landmark captioner names the actions)
    subprocess.run(_cmd(full, *windows, "--set", "ray.address=local"), check=True, env=env, capture_output=True)
    expected = {k: v[:3] for k, v in _samples(full).items() if v[0] != poison}
    assert max(v[1] for v in expected.values()) == 1  # clips of two windows
    built = _samples(out)
    assert {k: v[:3] for k, v in built.items()} == expected
    assert {v[3] for v in built.values()} == {"keeping still"}  # every batch-mate was captioned by the model


@pytest.mark.slow
def test_stages_in_pools_of_their_own_give_the_fused_samples(tmp_path):
    """With a pool per stage (what a GPU stage gets; here ray.fuse_cpu_stages=false on the CPU), Ray Data streams
    rows between the pools: the same samples as the fused in-process build, every part assembled."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    local, pools = tmp_path / "local", tmp_path / "pools"
    subprocess.run(_cmd(local, "--set", "ray.address=local"), check=True, env=env, capture_output=True)
    quarter = [x for s in ("decode", "quality", "faces", "flow", "caption", "encode")
               for x in ("--set", f"{s}.num_cpus=0.25")]  # seven pools on two CPUs
    run = subprocess.run(_cmd(pools, "--set", "ray.fuse_cpu_stages=false", "--set", "ray.num_cpus=2", *quarter),
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert _samples(pools) == _samples(local)
    assert not list(pools.glob("_parts/*/*")) and not list(pools.glob("*.tmp"))
