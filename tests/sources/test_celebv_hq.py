"""celebv-hq: a small corpus in both layouts (cut clips and raw videos) with every kind of malformed row."""

from __future__ import annotations

import json
import pathlib

import pytest

from corpora import center_inside, fast_config, read_rejects, read_samples, write_face_video
from human_motion.config import ConfigError
from human_motion.engine.build import build
from human_motion.sources import celebv_labels
from human_motion.sources.celebv_hq import CelebVHQSource
from human_motion.sources.config import SourceConfig


def vector(names: list[str], on: list[str]) -> list[int]:
    return [int(n in on) for n in names]


def attributes(appearance=(), actions=(), emotion="neutral"):
    return {"appearance": vector(celebv_labels.APPEARANCE, list(appearance)),
            "action": vector(celebv_labels.ACTION, list(actions)), "emotion": emotion}


RAW_BOX = {"top": 0.2, "bottom": 0.8, "left": 0.3, "right": 0.7}  # where write_face_video puts the face below


def row(ytb_id, start, end, bbox=RAW_BOX, **attrs):
    return {"ytb_id": ytb_id, "duration": {"start_sec": start, "end_sec": end}, "bbox": bbox,
            "attributes": attributes(**attrs), "version": "v0.1"}


def write_corpus(root: pathlib.Path) -> None:
    # Cut clips (download_and_process.py layout) and one raw 8 s video of 240x160.
    write_face_video(root / "downloaded_celebvhq/processed/ytAAAAAAAAA_0.mp4", 160, 160, 2.0)
    write_face_video(root / "downloaded_celebvhq/raw/ytBBBBBBBBB.mp4", 240, 160, 8.0, (0.3, 0.2, 0.7, 0.8))
    clips = {
        "ytAAAAAAAAA_0": row("ytAAAAAAAAA", 10.0, 12.0, appearance=["male", "young", "black_hair", "eyeglasses"],
                             actions=["talk", "smile"], emotion={"sep_flag": False, "labels": "happy"}),
        "ytBBBBBBBBB_1": row("ytBBBBBBBBB", 2.0, 5.0, actions=["nod", "eat"], emotion={"sep_flag": True, "labels": [
            {"emotion": "neutral", "start_sec": 0.0, "end_sec": 0.5},
            {"emotion": "surprise", "start_sec": 0.5, "end_sec": 3.0}]}),
        "ytBBBBBBBBB_2": {"ytb_id": "ytBBBBBBBBB", "bbox": RAW_BOX},  # no duration
        "ytBBBBBBBBB_3": row("ytBBBBBBBBB", 6.0, 30.0),  # past the end of the 8 s video
        "ytBBBBBBBBB_4": row("ytBBBBBBBBB", 1.0, 3.0, bbox={"top": 0.2, "bottom": 0.8, "left": 0.5, "right": 1.4}),
        "../../../etc/passwd": row("ytBBBBBBBBB", 1.0, 3.0),
        "ytBBBBBBBBB_5": row("ytBBBBBBBBB", 4.0, 1.0),  # end before start
        "ytBBBBBBBBB_6": row("ytBBBBBBBBB", 1.0, 3.0, bbox={"top": 0.8, "bottom": 0.2, "left": 0.3, "right": 0.7}),
        "ytBBBBBBBBB_7": dict(row("ytBBBBBBBBB", 1.0, 3.0), attributes={"appearance": [1, 0], "action": []}),
        "ytBBBBBBBBB_8": "not a row",
        "ytCCCCCCCCC_0": row("ytCCCCCCCCC", 1.0, 3.0),  # no media at all
        "ytBBBBBBBBB_9": dict(row("ytBBBBBBBBB", 1.0, 3.0), ytb_id="../raw/ytBBBBBBBBB"),
    }
    text = json.dumps({"meta_info": {"appearance_mapping": celebv_labels.APPEARANCE,
                                     "action_mapping": celebv_labels.ACTION,
                                     "emotion_mapping": celebv_labels.EMOTION}, "clips": clips}, indent=1)
    # A NaN start (json.load accepts the literal), as a corrupted export would have.
    text = text.replace('"clips": {', '"clips": {"ytBBBBBBBBB_10": {"ytb_id": "ytBBBBBBBBB", '
                        '"duration": {"start_sec": NaN, "end_sec": 3.0}, "bbox": ' + json.dumps(RAW_BOX) + '},', 1)
    (root / "celebvhq_info.json").write_text(text)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("celebvhq")
    write_corpus(root)
    out = root.parent / (root.name + "_out")
    summary = build(fast_config({"celebv-hq": {"root": str(root)}}), str(out))
    return root, out, summary


def test_valid_clips_become_samples_with_span_crop_and_labels(built):
    root, out, summary = built
    samples = read_samples(out)
    assert set(samples) == {"ytAAAAAAAAA_0", "ytBBBBBBBBB_1"}

    cut = samples["ytAAAAAAAAA_0"]  # the cut clip is the whole file
    assert cut["media_path"].endswith("processed/ytAAAAAAAAA_0.mp4")
    assert cut["span_s"][0] == pytest.approx(0.0, abs=0.3)
    assert cut["labels"]["layout"] == "clips"
    assert cut["action"] == "smiling and talking"
    assert cut["description"] == ("A close-up video of a young man with black hair and eyeglasses, looking happy, "
                                  "smiling and talking.")

    raw = samples["ytBBBBBBBBB_1"]  # the raw video: span from the row, crop around the row's box
    assert raw["media_path"].endswith("raw/ytBBBBBBBBB.mp4")
    assert 2.0 <= raw["span_s"][0] < 2.3 and raw["span_s"][1] <= 5.0
    assert raw["crop"]["source_size"] == [240, 160]
    assert center_inside((0.3, 0.2, 0.7, 0.8), raw["crop"]["source_box"], (240, 160))
    assert raw["labels"]["emotion"] == "surprise"  # the longest segment
    assert raw["action"] == "nodding and eating"
    assert "looking surprised" in raw["description"]


def test_malformed_rows_become_rejections(built):
    _, out, summary = built
    rejects = read_rejects(out)
    assert rejects["ytBBBBBBBBB_2"] == "missing_key"
    assert rejects["ytBBBBBBBBB_3"] == "span_out_of_range"
    assert rejects["ytBBBBBBBBB_4"] == "bad_bbox"
    assert rejects["../../../etc/passwd"] == "bad_id"
    assert rejects["ytBBBBBBBBB_5"] == "bad_span"
    assert rejects["ytBBBBBBBBB_6"] == "bad_bbox"
    assert rejects["ytBBBBBBBBB_7"] == "bad_labels"
    assert rejects["ytBBBBBBBBB_8"] == "bad_row"
    assert rejects["ytCCCCCCCCC_0"] == "missing_file"
    assert rejects["ytBBBBBBBBB_9"] == "bad_id"
    assert rejects["ytBBBBBBBBB_10"] == "bad_value"
    assert summary["clips"] == 13 and summary["samples"] == 2 and summary["rejects"] == 11


def test_layout_option_forces_raw_videos(tmp_path):
    write_corpus(tmp_path)
    cfg = SourceConfig(root=str(tmp_path), options={"layout": "raw"})
    specs = {s.clip_id: s for s in CelebVHQSource("celebv-hq", cfg, tmp_path).specs()}
    assert specs["ytAAAAAAAAA_0"].reject_reason == "missing_file"  # its raw video is not there
    good = specs["ytBBBBBBBBB_1"]
    assert (good.start_s, good.end_s, good.bbox) == (2.0, 5.0, (0.3, 0.2, 0.7, 0.8))
    assert all(not s.path or pathlib.Path(s.path).resolve().is_relative_to(tmp_path.resolve())
               for s in specs.values())


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"videos": {}}', "no 'clips' mapping"),
    ("[1, 2]", "no 'clips' mapping"),
])
def test_malformed_metadata_file_is_one_clear_error(tmp_path, content, message):
    (tmp_path / "celebvhq_info.json").write_text(content)
    with pytest.raises(ConfigError, match=message):
        list(CelebVHQSource("celebv-hq", SourceConfig(root=str(tmp_path)), tmp_path).specs())


def test_missing_metadata_file_names_the_option(tmp_path):
    with pytest.raises(ConfigError, match="options.info"):
        list(CelebVHQSource("celebv-hq", SourceConfig(root=str(tmp_path)), tmp_path).specs())


def test_emotion_forms():
    names = celebv_labels.EMOTION
    assert celebv_labels.dominant_emotion("Happy", names)[0] == "happy"
    assert celebv_labels.dominant_emotion(3, names)[0] == "anger"
    assert celebv_labels.dominant_emotion({"sep_flag": False, "labels": "sad"}, names)[0] == "sad"
    segs = [{"emotion": "happy", "start_sec": 0, "end_sec": 1}, {"emotion": "sad", "start_sec": 1, "end_sec": 4}]
    assert celebv_labels.dominant_emotion(segs, names) == ("sad", [
        {"emotion": "happy", "start_sec": 0.0, "end_sec": 1.0}, {"emotion": "sad", "start_sec": 1.0, "end_sec": 4.0}])


@pytest.mark.parametrize("clip_id", ["x" * 201, "a\x00b", "/etc/passwd", "a/../../b", "..\\..\\x", "C:evil", "",
                                     "line\nbreak"])
def test_unsafe_ids_are_rejected_without_a_path(tmp_path, clip_id):
    write_face_video(tmp_path / "raw" / "ytBBBBBBBBB.mp4", 64, 64, 1.0)
    (tmp_path / "celebvhq_info.json").write_text(json.dumps({"clips": {clip_id: row("ytBBBBBBBBB", 0.0, 1.0)}}))
    (spec,) = CelebVHQSource("celebv-hq", SourceConfig(root=str(tmp_path)), tmp_path).specs()
    assert spec.reject_reason == "bad_id" and spec.path == ""
    assert "\x00" not in spec.clip_id and len(spec.clip_id) <= 220


@pytest.mark.slow
def test_ray_data_build_gives_the_same_samples_and_rejections(built, tmp_path, monkeypatch):
    """The same corpus through Ray Data actor pools (not the in-process runner): ~25 s on 2 cores."""
    root, local_out, _ = built
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a Ray of the build's own, not one the environment names
    cfg = fast_config({"celebv-hq": {"root": str(root)}}, **{"ray.num_cpus": 2})
    cfg.ray = __import__("dataclasses").replace(cfg.ray, address=None)  # start Ray in this process
    try:
        build(cfg, str(tmp_path / "ray"))
    finally:
        ray.shutdown()
    assert read_rejects(tmp_path / "ray") == read_rejects(local_out)
    assert set(read_samples(tmp_path / "ray")) == set(read_samples(local_out))
