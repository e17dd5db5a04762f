"""celebv-text: clips_set1/clips_set2, pixel boxes, frame spans, and the per-attribute text files."""

from __future__ import annotations

import json
import pathlib

import pytest

from corpora import FPS, center_inside, fast_config, read_rejects, read_samples, write_face_video
from human_motion.config import ConfigError
from human_motion.engine.build import build
from human_motion.sources.config import SourceConfig
from human_motion.sources.celebv_text import CelebVTextSource, action_from_sentence

W, H = 240, 160
PIXEL_BOX = {"top": 32, "bottom": 128, "left": 72, "right": 168}  # the face in the raw video below


def row(ytb_id, duration, bbox=PIXEL_BOX):
    return {"ytb_id": ytb_id, "duration": duration, "bbox": bbox, "version": "v0.1"}


def write_corpus(root: pathlib.Path) -> None:
    write_face_video(root / "processed/ytAAAAAAAAA_0.mp4", 160, 160, 2.0)
    write_face_video(root / "raw/ytBBBBBBBBB.mp4", W, H, 8.0, (0.3, 0.2, 0.7, 0.8))
    set1 = {
        "ytAAAAAAAAA_0": row("ytAAAAAAAAA", {"start_sec": 3.0, "end_sec": 5.0}),
        "ytBBBBBBBBB_1": row("ytBBBBBBBBB", {"start_sec": 1.5, "end_sec": 4.0}),
        "ytBBBBBBBBB_2": row("ytBBBBBBBBB", {"start_sec": 1.0, "end_sec": 3.0},
                             bbox={"top": 10, "bottom": 150, "left": 200, "right": 400}),  # past the 240 px width
    }
    set2 = {
        # frame numbers (integral): frames 8..20 at 4 fps = 2.0-5.0 s
        "ytBBBBBBBBB_3": row("ytBBBBBBBBB", {"start_frame": 8, "end_frame": 20}),
        # the published example's fractional "frames", read as seconds
        "ytBBBBBBBBB_4": row("ytBBBBBBBBB", {"start_frame": 4.25, "end_frame": 6.5}),
        "ytBBBBBBBBB_5": row("ytBBBBBBBBB", {"start_frame": 30, "end_frame": 90}),  # past the end (8 s = 32 frames)
        "ytBBBBBBBBB_6": {"ytb_id": "ytBBBBBBBBB", "duration": {"start_sec": 1.0, "end_sec": 3.0}},  # no bbox
        "..": row("ytBBBBBBBBB", {"start_sec": 1.0, "end_sec": 3.0}),
        "ytAAAAAAAAA_0": row("ytAAAAAAAAA", {"start_sec": 3.0, "end_sec": 5.0}),  # again, in set 2
    }
    (root / "celebvtext_info.json").write_text(json.dumps({"clips_set1": set1, "clips_set2": set2}))
    texts = root / "texts"
    for attr, line in {"face40_details_new": "The young man has short black hair and wears glasses.",
                       "emotion": "He looks happy.", "action_dur": "The man is talking while smiling.",
                       "light_dir": "The light comes from the left."}.items():
        (texts / attr).mkdir(parents=True, exist_ok=True)
        (texts / attr / "ytAAAAAAAAA_0.txt").write_text(line + "\nA second sentence.\n")
    (texts / "ytBBBBBBBBB_1").mkdir()
    (texts / "ytBBBBBBBBB_1" / "action.txt").write_text("She keeps turning her head to the left.\n")
    (texts / "ytBBBBBBBBB_3.txt").write_text("A woman is nodding slowly.\n")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("celebvtext")
    write_corpus(root)
    out = root.parent / (root.name + "_out")
    return root, out, build(fast_config({"celebv-text": {"root": str(root)}}), str(out))


def test_valid_clips_become_samples(built):
    _, out, summary = built
    samples = read_samples(out)
    assert set(samples) == {"ytAAAAAAAAA_0", "ytBBBBBBBBB_1", "ytBBBBBBBBB_3", "ytBBBBBBBBB_4"}
    cut = samples["ytAAAAAAAAA_0"]
    assert cut["media_path"].endswith("processed/ytAAAAAAAAA_0.mp4")
    assert cut["description"] == ("The young man has short black hair and wears glasses. He looks happy. "
                                  "The man is talking while smiling.")
    assert cut["action"] == "smiling and talking"
    assert set(cut["labels"]["texts"]) == {"face40_details_new", "emotion", "action_dur", "light_dir"}

    raw = samples["ytBBBBBBBBB_1"]
    assert 1.5 <= raw["span_s"][0] < 1.8
    assert center_inside((72 / W, 32 / H, 168 / W, 128 / H), raw["crop"]["source_box"], (W, H))
    assert raw["action"] == "turning head"
    assert samples["ytBBBBBBBBB_3"]["span_s"][0] == pytest.approx(8 / FPS, abs=0.3)
    assert samples["ytBBBBBBBBB_3"]["action"] == "nodding"
    assert samples["ytBBBBBBBBB_4"]["span_s"][0] == pytest.approx(4.25, abs=0.3)


def test_malformed_rows_become_rejections(built):
    _, out, summary = built
    rejects = read_rejects(out)
    assert rejects["ytBBBBBBBBB_2"] == "bad_bbox"
    assert rejects["ytBBBBBBBBB_5"] == "span_out_of_range"
    assert rejects["ytBBBBBBBBB_6"] == "missing_key"
    assert rejects[".."] == "bad_id"
    assert rejects["ytAAAAAAAAA_0 (clips_set2)"] == "duplicate_id"
    assert summary["samples"] == 4 and summary["rejects"] == 5


def test_frame_keys_option(tmp_path):
    write_corpus(tmp_path)
    src = CelebVTextSource("celebv-text", SourceConfig(root=str(tmp_path), options={"frame_keys": "seconds"}),
                           tmp_path)
    specs = {s.clip_id: s for s in src.specs()}
    assert specs["ytBBBBBBBBB_3"].span_frames is None and specs["ytBBBBBBBBB_3"].start_s == 8.0
    assert specs["ytBBBBBBBBB_1"].bbox == pytest.approx((72 / W, 32 / H, 168 / W, 128 / H))


def test_whole_file_errors(tmp_path):
    (tmp_path / "celebvtext_info.json").write_text('{"clips_test": [1]}')
    with pytest.raises(ConfigError, match="clips_set"):
        list(CelebVTextSource("celebv-text", SourceConfig(root=str(tmp_path)), tmp_path).specs())


@pytest.mark.parametrize("sentence, phrase", [
    ("The woman is talking while smiling.", "smiling and talking"),
    ("He shakes his head.", "shaking head"),
    ("The man is staring at the camera.", "staring at the camera"),
    ("Nothing happens.", None),
])
def test_action_from_sentence(sentence, phrase):
    assert action_from_sentence(sentence) == phrase
