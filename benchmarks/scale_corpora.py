"""The corpora and build folders ``scale.py`` measures on, made on the spot (nothing is committed):

- ``cheap_corpus``: N rows that cost the engine little, as a partial download does: half listed by a CelebV-HQ
  metadata file with no video (rejected by the source at plan time, ``missing_file``), a quarter links to a tiny
  48 px video (rejected by the first select step, ``low_resolution``), a quarter links to a file that is not a
  video (rejected at probe, ``not_a_video``). Hard links: one file, many names.
- ``real_corpus``: N hard links of the development videos under distinct names.
- ``synthetic_build``: a finished build folder of N samples in the real shard format (small members: one real
  sample of a 64 px build, copied under N keys), with its index, rejects, per-shard files and manifest.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "sources"))

from corpora import write_face_video  # noqa: E402 - the tests' face videos (a real photo moved)

from human_motion.schema import INDEX_SCHEMA, REJECTS_SCHEMA, safe_key  # noqa: E402

DEV = REPO.parent / "shared" / "data" / "dev"


def cheap_corpus(root: pathlib.Path, n: int) -> tuple[str, dict]:
    """``--sources`` value and the expected rejections by reason for ``n`` cheap rows under ``root``."""
    if root.exists():
        shutil.rmtree(root)
    listed, tiny, junk = n // 2, n // 4, n - n // 2 - n // 4
    meta = root / "celebvhq"
    meta.mkdir(parents=True)
    clips = {f"yt{i:09d}_0": {"ytb_id": f"yt{i:09d}", "duration": {"start_sec": 0.0, "end_sec": 4.0},
                              "bbox": {"top": 0.1, "bottom": 0.9, "left": 0.1, "right": 0.9}} for i in range(listed)}
    (meta / "celebvhq_info.json").write_text(json.dumps({"clips": clips}))
    files = root / "folder"
    seed = write_face_video(root / "seed" / "tiny.mp4", 48, 48, 4.0)
    bad = root / "seed" / "bad.mp4"
    bad.write_bytes(b"not a video, " * 40)
    for i in range(tiny + junk):
        folder = files / f"{i // 1000:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        os.link(seed if i < tiny else bad, folder / f"c{i:07d}.mp4")
    expected = {"missing_file": listed, "low_resolution": tiny, "not_a_video": junk}
    return f"celebv-hq={meta},folder={files}", expected


def partial_celebvhq(root: pathlib.Path, listed: int, present: int) -> pathlib.Path:
    """A CelebV-HQ root whose ``celebvhq_info.json`` lists ``listed`` clips, of which ``present`` (spread through
    the id order) have their cut clip (a hard link of a dev video) under ``processed/``."""
    videos = sorted(p for p in DEV.iterdir() if p.suffix.lower() in (".mp4", ".mov", ".avi", ".mkv", ".webm"))
    if root.exists():
        shutil.rmtree(root)
    (root / "processed").mkdir(parents=True)
    ids = [f"yt{i:09d}_0" for i in range(listed)]
    step = max(1, listed // max(1, present))
    for k, clip_id in enumerate(ids[::step][:present]):
        os.link(videos[k % len(videos)], root / "processed" / f"{clip_id}.mp4")
    clips = {i: {"ytb_id": i[:-2], "duration": {"start_sec": 0.0, "end_sec": 10.0},
                 "bbox": {"top": 0.1, "bottom": 0.9, "left": 0.1, "right": 0.9}} for i in ids}
    (root / "celebvhq_info.json").write_text(json.dumps({"clips": clips}))
    return root


def present_only(root: pathlib.Path, full: pathlib.Path) -> pathlib.Path:
    """The same corpus with a metadata file that lists only the clips that have media."""
    if root.exists():
        shutil.rmtree(root)
    (root / "processed").mkdir(parents=True)
    have = sorted(p.stem for p in (full / "processed").iterdir())
    for stem in have:
        os.link(full / "processed" / f"{stem}.mp4", root / "processed" / f"{stem}.mp4")
    clips = json.loads((full / "celebvhq_info.json").read_text())["clips"]
    (root / "celebvhq_info.json").write_text(json.dumps({"clips": {k: clips[k] for k in have}}))
    return root


def real_corpus(root: pathlib.Path, n: int) -> pathlib.Path:
    """``n`` hard links of the dev videos (round robin) under distinct names."""
    videos = sorted(p for p in DEV.iterdir() if p.suffix.lower() in (".mp4", ".mov", ".avi", ".mkv", ".webm"))
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for i in range(n):
        src = videos[i % len(videos)]
        os.link(src, root / f"{i:05d}_{src.stem}{src.suffix}")
    return root


def one_sample(work: pathlib.Path) -> tuple[dict[str, bytes], dict]:
    """The members and index row of one real sample of a small build (64 px crops): the template copied below."""
    out = work / "template"
    if not (out / "index.parquet").exists():
        cmd = [sys.executable, "-m", "human_motion.cli", "build", "--out", str(out),
               "--set", "decode.size_px=64", "--set", "ray.address=local", "--set", "progress=off",
               "--set", "sources.demo.options.pan_px=[4]", "--set", "sources.demo.options.zoom_pct=0",
               "--set", "sources.demo.options.rotate_deg=0", "--set", "sources.demo.options.rejects=false"]
        subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
    with tarfile.open(next(out.glob("0*.tar"))) as tar:
        members = {}
        for m in tar.getmembers():
            key, ext = m.name.split(".", 1)
            members.setdefault(key, {})[ext] = tar.extractfile(m).read()
    key = min(k for k, m in members.items() if "mp4" in m)  # a video sample
    row = next(r for r in pq.read_table(out / "index.parquet").to_pylist() if r["key"] == key)
    return members[key], row


def synthetic_build(out: pathlib.Path, n: int, per_shard: int, template: tuple[dict[str, bytes], dict]) -> None:
    """A finished build folder of ``n`` samples, ``per_shard`` to a shard, every file as hm build writes it."""
    import webdataset as wds

    members, row = template
    meta = json.loads(members["json"])
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shards, rows = {}, []
    for s in range(0, n, per_shard):
        name = f"{s // per_shard:06d}"
        shard_rows = []
        with open(out / f"{name}.tar", "wb") as f:
            sink = wds.TarWriter(f, encoder=False, mtime=0)
            for i in range(s, min(n, s + per_shard)):
                clip_id = f"clip{i:07d}.mp4"
                key = safe_key(meta["source"], clip_id, 0)
                sample = copy.deepcopy(meta)
                sample.update(key=key, clip_id=clip_id, intensity=(i % 210) / 10)  # spread over [0, 21)
                sink.write({"__key__": key, **members, "json": json.dumps(sample).encode()})
                shard_rows.append(dict(row, key=key, clip_id=clip_id, shard=name, intensity=sample["intensity"]))
            sink.close()
        pq.write_table(pa.Table.from_pylist(shard_rows, schema=INDEX_SCHEMA), out / f"{name}.parquet")
        stats = {"shard": name, "clips": len(shard_rows), "samples": len(shard_rows), "rejects": 0,
                 "rejects_by_reason": {}, "stage_seconds": {"decode": 0.3 * len(shard_rows)}}
        (out / f"{name}_stats.json").write_text(json.dumps(stats))
        shards[name] = stats
        rows += shard_rows
    pq.write_table(pa.Table.from_pylist(rows, schema=INDEX_SCHEMA), out / "index.parquet")
    pq.write_table(REJECTS_SCHEMA.empty_table(), out / "rejects.parquet")
    summary = {"shards": len(shards), "clips": n, "samples": n, "rejects": 0, "rejects_by_reason": {},
               "rejects_by_stage": {}, "samples_by_source": {meta["source"]: n}, "stage_seconds": {}}
    (out / "manifest.json").write_text(json.dumps({"summary": summary, "shards": shards, "runs": []}))


def count_files(root: pathlib.Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))
