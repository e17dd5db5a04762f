"""vfhq: meta files in the published format with frame folders, cut clip videos and raw videos."""

from __future__ import annotations

import pathlib

import cv2
import pytest

from corpora import FPS, center_inside, face_frames, fast_config, read_rejects, read_samples, write_face_video
from human_motion.config import ConfigError
from human_motion.engine.build import build
from human_motion.sources.config import SourceConfig
from human_motion.sources.vfhq import VFHQSource, parse_meta

W, H = 240, 160
FACE = (72, 32, 168, 128)  # face box in the raw 240x160 frame (write_face_video box 0.3-0.7 x 0.2-0.8)
CROP = (40, 0, 200, 160)  # a 160x160 crop around it


def meta_text(ytid: str, first: int, last: int, face=FACE, crop=CROP, w=W, h=H, fps=FPS, extra="") -> str:
    lines = [f"Video ID: {ytid}", f"H: {h}", f"W: {w}", f"FPS: {fps}", "FRAME INDEX X0 Y0 X1 Y1 [Landmarks (5 Points)]"]
    for i in range(first, last + 1):
        x0, y0, x1, y1 = face
        kps = [x0 + 30, y0 + 40, x1 - 30, y0 + 40, (x0 + x1) / 2, y0 + 60, x0 + 35, y1 - 25, x1 - 35, y1 - 25]
        lines.append(f"{i:06d} {x0} {y0} {x1} {y1} " + " ".join(f"{v:g}" for v in kps))
    lines.append(extra) if extra else None
    lines.append("CROP_BBOX: " + " ".join(str(v) for v in crop))
    return "\n".join(lines) + "\n"


def write_corpus(root: pathlib.Path) -> dict[str, str]:
    meta = root / "meta_info"
    meta.mkdir(parents=True)
    names = {}

    def add(key, ytid, pid, clip, start, end, **kw):
        name = f"Clip+{ytid}+P{pid}+C{clip}+F{start}-{end}"
        text = kw.pop("text", None) or meta_text(ytid, start + 1, end - 1, **kw)
        (meta / f"{name}.txt").write_text(text)
        names[key] = name
        return name

    # 1. Frames extracted by the official processing: a folder of PNGs of the 160x160 crop.
    frames_clip = add("frames", "ytVVVVVVVVV", 0, 0, 100, 110)
    folder = root / "extracted" / frames_clip
    folder.mkdir(parents=True)
    for i, frame in enumerate(face_frames(160, 160, 2.0, (0.2, 0.2, 0.8, 0.8))):
        cv2.imwrite(str(folder / f"{i:08d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    # 2. A cut clip video named like the meta file.
    clip_video = add("clip", "ytVVVVVVVVV", 0, 1, 200, 210)
    write_face_video(root / "clips" / f"{clip_video}.mp4", 160, 160, 2.0, (0.2, 0.2, 0.8, 0.8))
    # 2b. A cut clip named without the frame range (third-party croppers: Clip+{ytid}+P{pid}+C{clip}.mp4).
    add("short_name", "ytVVVVVVVVV", 0, 2, 300, 310)
    write_face_video(root / "clips" / "Clip+ytVVVVVVVVV+P0+C2.mp4", 160, 160, 2.0, (0.2, 0.2, 0.8, 0.8))
    # 3. The raw video; frames 4..19 (F3-20 with the ends trimmed) = 1.0-5.0 s at 4 fps.
    write_face_video(root / "raw" / "ytRRRRRRRRR.mp4", W, H, 8.0, (0.3, 0.2, 0.7, 0.8))
    add("raw", "ytRRRRRRRRR", 1, 0, 3, 20)
    # Malformed.
    add("past_end", "ytRRRRRRRRR", 1, 1, 40, 60)
    add("no_crop", "ytRRRRRRRRR", 1, 2, 3, 20, text=meta_text("ytRRRRRRRRR", 4, 19).replace("CROP_BBOX", "CROP"))
    add("crop_outside", "ytRRRRRRRRR", 1, 3, 3, 20, crop=(100, 0, 400, 300))
    add("other_video", "ytRRRRRRRRR", 1, 4, 3, 20, text=meta_text("ytXXXXXXXXX", 4, 19))
    add("bad_row", "ytRRRRRRRRR", 1, 5, 3, 20, extra="000019 1 2 3")
    add("face_outside", "ytRRRRRRRRR", 1, 6, 3, 20, face=(300, 10, 500, 100))
    add("dotdot", "..", 0, 0, 3, 20)
    add("no_media", "ytNNNNNNNNN", 0, 0, 3, 20)
    (meta / "Clip+bad+name.txt").write_text(meta_text("bad", 1, 5))
    names["bad_name"] = "Clip+bad+name"
    return names


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("vfhq")
    names = write_corpus(root)
    out = root.parent / (root.name + "_out")
    return names, out, build(fast_config({"vfhq": {"root": str(root)}}), str(out))


def test_valid_clips_become_samples(built):
    names, out, summary = built
    samples = read_samples(out)
    assert set(samples) == {names["frames"], names["clip"], names["short_name"], names["raw"]}
    frames = samples[names["frames"]]
    assert frames["media_path"].endswith(".ffconcat") and frames["labels"]["layout"] == "frames"
    assert frames["crop"]["source_size"] == [160, 160]
    assert samples[names["clip"]]["labels"]["layout"] == "clips"
    raw = samples[names["raw"]]
    assert raw["labels"]["layout"] == "raw" and raw["labels"]["frames"] == [4, 20]
    assert raw["span_s"][0] == pytest.approx(4 / FPS, abs=0.3)
    assert center_inside((FACE[0] / W, FACE[1] / H, FACE[2] / W, FACE[3] / H), raw["crop"]["source_box"], (W, H))


def test_malformed_meta_files_become_rejections(built):
    names, out, summary = built
    rejects = read_rejects(out)
    expected = {"past_end": "span_out_of_range", "no_crop": "bad_metadata", "crop_outside": "bad_bbox",
                "other_video": "bad_metadata", "bad_row": "bad_metadata", "face_outside": "bad_bbox",
                "dotdot": "bad_id", "no_media": "missing_file", "bad_name": "bad_id"}
    assert {k: rejects.get(names[k]) for k in expected} == expected
    assert summary["samples"] == 4 and summary["rejects"] == len(expected)


def test_hints_and_spans(tmp_path):
    names = write_corpus(tmp_path)
    src = VFHQSource("vfhq", SourceConfig(root=str(tmp_path), options={"frames": "skip"}), tmp_path / "out")
    specs = {s.clip_id: s for s in src.specs()}
    clip = specs[names["clip"]]  # face box relative to CROP_BBOX
    assert clip.bbox == pytest.approx(((72 - 40) / 160, 32 / 160, (168 - 40) / 160, 128 / 160))
    raw = specs[names["raw"]]
    assert (raw.start_s, raw.end_s) == (4 / FPS, 20 / FPS) and raw.bbox == pytest.approx((0.3, 0.2, 0.7, 0.8))
    assert specs[names["frames"]].reject_reason == "missing_file"  # frame folders skipped
    untrimmed = VFHQSource("vfhq", SourceConfig(root=str(tmp_path), options={"trim_ends": False}), tmp_path / "o2")
    assert {s.clip_id: s for s in untrimmed.specs()}[names["raw"]].start_s == 3 / FPS


def test_parse_meta_header():
    meta = parse_meta(meta_text("abc", 1, 2))
    assert (meta["video_id"], meta["w"], meta["h"], meta["fps"]) == ("abc", W, H, FPS)
    assert sorted(meta["frames"]) == [1, 2] and meta["crop"] == list(map(float, CROP))


def test_no_meta_files_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no Clip"):
        list(VFHQSource("vfhq", SourceConfig(root=str(tmp_path)), tmp_path).specs())


def test_duplicate_meta_file_is_rejected(tmp_path):
    names = write_corpus(tmp_path)
    copy = tmp_path / "meta_copy"
    copy.mkdir()
    (copy / f"{names['raw']}.txt").write_text((tmp_path / "meta_info" / f"{names['raw']}.txt").read_text())
    specs = list(VFHQSource("vfhq", SourceConfig(root=str(tmp_path), options={"frames": "skip"}), tmp_path).specs())
    raw = [s for s in specs if s.clip_id == names["raw"]]
    assert [s.reject_reason for s in raw] == [None, "duplicate_id"]


def test_frame_folders_converted_to_mp4(tmp_path):
    from human_motion.media import open_video, probe_video

    names = write_corpus(tmp_path)
    src = VFHQSource("vfhq", SourceConfig(root=str(tmp_path), options={"frames": "convert"}), tmp_path / "out")
    spec = {s.clip_id: s for s in src.specs()}[names["frames"]]
    assert spec.path.endswith(".mp4") and spec.reject_reason is None
    with open_video(spec.path) as container:
        info = probe_video(container)
    assert (info.width, info.height, info.fps) == (160, 160, FPS) and info.duration_s == pytest.approx(2.0, abs=0.3)


def test_concat_list_reads_the_frames_exactly(tmp_path):
    from human_motion.media import iter_sampled_frames, open_video

    names = write_corpus(tmp_path)
    spec = {s.clip_id: s for s in VFHQSource("vfhq", SourceConfig(root=str(tmp_path)), tmp_path / "out").specs()}[
        names["frames"]]
    folder = tmp_path / "extracted" / names["frames"]
    with open_video(spec.path) as container:
        got = list(iter_sampled_frames(container, 0.75, [0.75, 1.5]))
    for (_, frame), index in zip(got, [3, 6]):
        expected = cv2.cvtColor(cv2.imread(str(folder / f"{index:08d}.png")), cv2.COLOR_BGR2RGB)
        assert (frame == expected).all()
