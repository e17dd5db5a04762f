"""hm verify on shards made by hm build's code (the session's demo build), and on copies of them broken on purpose:
each broken copy must fail with a line naming the shard, key and member at fault."""

from __future__ import annotations

import io
import json
import pathlib
import shutil
import tarfile

import numpy as np
import pandas as pd
import pytest

from human_motion.cli import main
from human_motion.dataset.verify import VerifyConfig, check_sample_json, load_npy, verify_build


def read_tar(path: pathlib.Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar]


def write_tar(path: pathlib.Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def replace_member(path: pathlib.Path, name: str, data: bytes) -> None:
    members = read_tar(path)
    assert name in dict(members), name
    write_tar(path, [(n, data if n == name else d) for n, d in members])


def first_video_key(root: pathlib.Path) -> tuple[str, str]:
    index = pd.read_parquet(root / "index.parquet")
    row = index[~index["static"]].iloc[0]
    return row["shard"], row["key"]


def run_verify(root, capsys) -> tuple[int, list[str]]:
    rc = main(["verify", str(root)])
    out = capsys.readouterr().out.strip().splitlines()
    return rc, out


@pytest.fixture
def build_copy(demo_build, tmp_path) -> pathlib.Path:
    dst = tmp_path / "shards"
    shutil.copytree(demo_build, dst)
    return dst


def test_good_shards_pass(demo_build, capsys):
    rc, out = run_verify(demo_build, capsys)
    assert rc == 0, out
    index = pd.read_parquet(demo_build / "index.parquet")
    assert out[-1].startswith("hm verify: ok:") and f"{len(index)} samples" in out[-1]
    assert len(out) == 1


def test_truncated_tar_fails(build_copy, capsys):
    shard, _ = first_video_key(build_copy)
    tar = build_copy / f"{shard}.tar"
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 2])  # cuts a member's data
    rc, out = run_verify(build_copy, capsys)
    assert rc == 1
    assert any(line.startswith(f"{shard}.tar: ") and "truncated" in line for line in out), out
    assert any("no such sample" in line for line in out)  # the samples after the cut are gone


def test_tar_cut_at_a_member_boundary_fails(build_copy, capsys):
    """tarfile reads a tar cut between members without complaint; the missing end-of-archive marker gives it away."""
    shard, _ = first_video_key(build_copy)
    tar = build_copy / f"{shard}.tar"
    with tarfile.open(tar) as t:
        infos = t.getmembers()
    cut = infos[5].offset  # the header of the sixth member
    tar.write_bytes(tar.read_bytes()[:cut])
    rc, out = run_verify(build_copy, capsys)
    assert rc == 1
    assert any(line.startswith(f"{shard}.tar: truncated") for line in out), out


@pytest.mark.parametrize("member, data, why", [
    ("mp4", b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50, "does not decode"),
    ("face.jpg", b"\xff\xd8\xff\xe0not a jpeg", "does not decode"),
    ("arcface.npy", None, "does not decode"),  # an object array: refused, never unpickled
    ("json", b'{"key": "x", ', "does not decode"),
])
def test_member_that_does_not_decode_fails(build_copy, capsys, member, data, why):
    shard, key = first_video_key(build_copy)
    if data is None:
        buf = io.BytesIO()
        np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        data = buf.getvalue()
    replace_member(build_copy / f"{shard}.tar", f"{key}.{member}", data)
    rc, out = run_verify(build_copy, capsys)
    assert rc == 1
    assert any(line.startswith(f"{shard}.tar/{key}.{member}: {why}") for line in out), out


def test_index_row_without_sample_fails(build_copy, capsys):
    index = pd.read_parquet(build_copy / "index.parquet")
    ghost = index.iloc[[0]].assign(key="demo__ghost_mp4__w000")
    pd.concat([index, ghost]).to_parquet(build_copy / "index.parquet", index=False)
    rc, out = run_verify(build_copy, capsys)
    assert rc == 1
    assert f"index.parquet: row demo__ghost_mp4__w000 (shard {index.iloc[0]['shard']}): no such sample in any shard" \
        in out, out


def test_sample_without_index_row_fails(build_copy, capsys):
    index = pd.read_parquet(build_copy / "index.parquet")
    dropped = index.iloc[1]
    index.drop(index.index[1]).to_parquet(build_copy / "index.parquet", index=False)
    rc, out = run_verify(build_copy, capsys)
    assert rc == 1
    assert f"{dropped['shard']}.tar/{dropped['key']}: no row in index.parquet" in out, out


def test_duplicate_key_across_shards_fails(build_copy, capsys):
    shards = sorted(p for p in build_copy.glob("*.tar"))
    assert len(shards) >= 2, "the demo build should have several shards"
    first = read_tar(shards[0])
    key = first[0][0].split(".", 1)[0]
    copied = [(n, d) for n, d in first if n.split(".", 1)[0] == key]
    write_tar(shards[1], read_tar(shards[1]) + copied)
    rc, out = run_verify(build_copy, capsys)
    assert rc == 1
    assert any(line.startswith(f"{shards[1].stem}.tar/{key}: duplicate key, also in {shards[0].name}")
               for line in out), out


def test_duplicate_key_inside_a_shard_fails(build_copy, capsys):
    shard, key = first_video_key(build_copy)
    members = read_tar(build_copy / f"{shard}.tar")
    again = [(n, d) for n, d in members if n.split(".", 1)[0] == key]
    write_tar(build_copy / f"{shard}.tar", members + again)
    rc, out = run_verify(build_copy, capsys)
    assert rc == 1
    assert f"{shard}.tar/{key}: key appears twice in this shard" in out, out


def test_missing_stats_json_and_member_fail(build_copy, capsys):
    shard, key = first_video_key(build_copy)
    (build_copy / f"{shard}_stats.json").unlink()
    members = read_tar(build_copy / f"{shard}.tar")
    write_tar(build_copy / f"{shard}.tar", [(n, d) for n, d in members if n != f"{key}.flow.npy"])
    rc, out = run_verify(build_copy, capsys)
    assert rc == 1
    assert any(line.startswith(f"{shard}.tar: has no {shard}_stats.json") for line in out), out
    assert f"{shard}.tar/{key}.flow.npy: missing" in out


def test_shapes_and_norms_are_checked_against_the_json(build_copy, capsys):
    shard, key = first_video_key(build_copy)
    tar = build_copy / f"{shard}.tar"
    members = dict(read_tar(tar))
    meta = json.loads(members[f"{key}.json"])
    arc = load_npy(members[f"{key}.arcface.npy"])
    flow = load_npy(members[f"{key}.flow.npy"])
    buf_arc, buf_flow = io.BytesIO(), io.BytesIO()
    np.save(buf_arc, arc * 2)
    np.save(buf_flow, flow[:-1])
    meta["num_frames"] = meta["num_frames"] + 1
    meta["intensity_per_step"] = meta["intensity_per_step"] + [0.0]
    replace_member(tar, f"{key}.arcface.npy", buf_arc.getvalue())
    replace_member(tar, f"{key}.flow.npy", buf_flow.getvalue())
    replace_member(tar, f"{key}.json", json.dumps(meta).encode())
    report = verify_build(str(build_copy), VerifyConfig())
    problems = "\n".join(report.problems)
    assert f"{shard}.tar/{key}.arcface.npy: L2 norm 2" in problems
    assert f"{shard}.tar/{key}.flow.npy: shape" in problems
    assert f"{shard}.tar/{key}.mp4: decodes to {meta['num_frames'] - 1} frames" in problems
    assert f"index.parquet: row {key}: num_frames differ" in problems


def test_sample_json_types():
    assert check_sample_json("k", []) == ["is a JSON list, not an object"]
    problems = check_sample_json("k", {"schema_version": True, "window": "0", "fps": 4})
    assert "field 'schema_version' is bool, expected int" in problems
    assert "field 'window' is str, expected int" in problems
    assert not any("'fps'" in p for p in problems)  # JSON's 4 is a valid float
    assert "missing field 'key'" in problems


def test_npy_is_never_unpickled():
    import pickle

    with pytest.raises(ValueError):
        load_npy(pickle.dumps({"a": 1}))
    buf = io.BytesIO()
    np.savez(buf, a=np.zeros(3))
    with pytest.raises(ValueError):
        load_npy(buf.getvalue())


def test_shards_load_with_webdataset_and_datasets(demo_build, tmp_path):
    """The loading snippets of docs/stats.md: every sample comes back, static ones with their jpg."""
    import glob

    import webdataset as wds

    from human_motion.media import decode_mp4_bytes

    index = pd.read_parquet(demo_build / "index.parquet").set_index("key")
    urls = sorted(glob.glob(f"{demo_build}/[0-9]*.tar"))

    def decode_video(key, data):
        return decode_mp4_bytes(data) if key.endswith(".mp4") else None

    seen = {}
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode(decode_video, "rgb8"):
        frames = sample["mp4"] if "mp4" in sample else sample["jpg"][None]
        meta = sample["json"]
        assert frames.shape == (meta["num_frames"], meta["size_px"], meta["size_px"], 3)
        assert sample["flow.npy"].dtype == np.uint8 and sample["arcface.npy"].dtype == np.float32
        seen[sample["__key__"]] = meta["intensity"]
    assert seen == pytest.approx(index["intensity"].to_dict())

    datasets = pytest.importorskip("datasets")
    # No features= block: every sample has the same members and the same json layout, so what datasets infers
    # from the first samples holds for all. Video columns decode with torchcodec when it is installed; the bytes
    # are there either way (Video(decode=False)).
    ds = datasets.load_dataset("webdataset", data_files={"train": urls}, split="train", cache_dir=str(tmp_path / "hf"))
    ds = ds.cast_column("mp4", datasets.Video(decode=False))
    assert sorted(ds["__key__"]) == sorted(index.index)
    for ex in ds:
        assert decode_mp4_bytes(ex["mp4"]["bytes"]).shape[0] == index.loc[ex["__key__"], "num_frames"]
        side = int(index.loc[ex["__key__"], "size_px"])
        assert ex["face.jpg"].size[0] == ex["face.jpg"].size[1] and len(ex["arcface.npy"]) == 128
        assert np.asarray(ex["flow.npy"]).shape == (15, side // 8, side // 8)
        assert ex["json"]["action"] == index.loc[ex["__key__"], "action"]
        assert ex["json"]["static"] == index.loc[ex["__key__"], "static"]


def test_datasets_keeps_every_field_of_builds_of_different_sources(demo_build, tmp_path):
    """Shards of two builds whose sources label their clips differently (the demo's labels; a folder's none),
    loaded together in either order: nothing inferred from the first shard drops what the others hold."""
    import glob
    import json

    import cv2
    import skimage.data

    from human_motion.engine.build import build
    from tests.conftest import small_build_config

    datasets = pytest.importorskip("datasets")
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "portrait.png"), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    build(small_build_config(sources="{folder: {root: %s}}" % json.dumps(str(tmp_path / "in"))), str(tmp_path / "f"))
    demo = sorted(glob.glob(f"{demo_build}/[0-9]*.tar"))
    folder = sorted(glob.glob(f"{tmp_path / 'f'}/[0-9]*.tar"))
    expected = {}
    for root in (demo_build, tmp_path / "f"):
        index = pd.read_parquet(root / "index.parquet")
        expected.update(dict(zip(index.key, index.source)))
    for order, urls in (("demo first", demo + folder), ("folder first", folder + demo)):
        ds = datasets.load_dataset("webdataset", data_files={"train": urls}, split="train",
                                   cache_dir=str(tmp_path / order.replace(" ", "_")))
        ds = ds.cast_column("mp4", datasets.Video(decode=False))
        assert dict(zip(ds["__key__"], [j["source"] for j in ds["json"]])) == expected, order
        for ex in ds:
            labels = json.loads(ex["json"]["labels"])
            assert ("photo" in labels) == (ex["json"]["source"] == "demo"), (order, ex["__key__"], labels)
            assert ex["mp4"]["bytes"] and set(ex["json"]["scores"]) >= {"face_score", "id_min_cos"}


def test_workers_give_the_same_report(build_copy):
    shard, key = first_video_key(build_copy)
    replace_member(build_copy / f"{shard}.tar", f"{key}.mp4", b"not a video")
    one = verify_build(str(build_copy), VerifyConfig(workers=1))
    two = verify_build(str(build_copy), VerifyConfig(workers=2))
    assert one.problems == two.problems and len(one.problems) == 1
    assert (one.shards, one.samples, one.members) == (two.shards, two.samples, two.members)


@pytest.mark.slow
def test_shards_load_with_ray_data(demo_build, monkeypatch):
    """ray.data.read_webdataset reads the shards as they are: one row per sample, every member a column. On a Ray of
    the test's own (``address="local"``: a bare ``ray.init()`` joins a ``ray start`` Ray left running on the
    machine, or RAY_ADDRESS's)."""
    ray = pytest.importorskip("ray")
    index = pd.read_parquet(demo_build / "index.parquet").set_index("key")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        rows = ray.data.read_webdataset(str(demo_build), file_extensions=["tar"], decoder=False).take_all()
    finally:
        ray.shutdown()
    assert sorted(r["__key__"] for r in rows) == sorted(index.index)
    for row in rows:
        assert {"mp4", "face.jpg", "arcface.npy", "flow.npy", "json"} <= set(row)
        assert len(row["mp4"]) > 1000 and len(row["face.jpg"]) and len(row["arcface.npy"]) and row["json"]
