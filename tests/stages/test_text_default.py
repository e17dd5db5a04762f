"""The text-overlay filter is on by default: subtitles burnt into a development clip, inside the stored crop, are
rejected as ``text_overlay`` with the default config, while text outside the crop (a news ticker under a portrait
video) is not in the sample and is kept; the demo build keeps every sample."""

from __future__ import annotations

import pathlib

import cv2
import numpy as np
import pandas as pd
import pytest

from human_motion.engine.build import initial_record, run_stages_local
from human_motion.media import iter_sampled_frames, open_video, write_mp4
from human_motion.stages.select import SelectConfig
from human_motion.types import ClipSpec, Row
from tests.conftest import small_build_config


def with_text(src: pathlib.Path, out: pathlib.Path, kind: str) -> None:
    """The first 4 s of ``src`` at 12 fps, with a subtitle over the bottom of every frame (white with a black
    outline, as films burn them in) or a ticker band across the bottom of a tall frame."""
    times = list(np.arange(0.0, 4.0, 1 / 12))
    with open_video(str(src)) as container:
        frames = [f.copy() for _, f in iter_sampled_frames(container, 0.0, times)]
    for f in frames:
        h, w = f.shape[:2]
        if kind == "subtitle":
            for colour, thickness in (((0, 0, 0), 4), ((255, 255, 255), 1)):
                cv2.putText(f, "I never said that", (int(0.1 * w), int(0.93 * h)), cv2.FONT_HERSHEY_DUPLEX,
                            w / 520, colour, thickness + 1, cv2.LINE_AA)
        else:
            cv2.rectangle(f, (0, int(0.88 * h)), (w, int(0.95 * h)), (160, 20, 20), -1)
            cv2.putText(f, "MARKETS CLOSE HIGHER  +++  STORM WARNING", (10, int(0.93 * h)),
                        cv2.FONT_HERSHEY_DUPLEX, w / 720, (255, 255, 255), 2, cv2.LINE_AA)
    write_mp4(str(out), np.stack(frames), 12.0)


@pytest.mark.parametrize(("clip", "kind", "status"), [("tpsmm_driving.mp4", "subtitle", "text_overlay"),
                                                      ("lp_s29.mp4", "ticker", "ok")])
def test_burnt_in_text_is_judged_on_the_stored_crop(dev_data, tmp_path, clip, kind, status):
    path = tmp_path / f"{kind}.mp4"
    with_text(dev_data / clip, path, kind)
    cfg = small_build_config()
    assert cfg.select.max_text_frac == SelectConfig().max_text_frac < 1.0  # the default config, filter on
    (row,) = run_stages_local(cfg, [Row(0, 0, 1, initial_record(ClipSpec("test", kind, str(path))))])
    assert row.record["status"] == status, row.record.get("detail")
    if kind == "subtitle":  # inside the crop: the stored sample would show it
        assert row.record["scores"]["text_frac"] > 0.01
        assert "select.max_text_frac=1.0" in row.record["detail"]  # the one line says how to keep text
    else:  # the ticker lies below the crop around the face: the stored frames are clean
        x0, y0, x1, y1 = row.record["crop"]["source_box"]
        assert y1 < 0.88 * row.record["crop"]["source_size"][1] and row.record["scores"]["text_frac"] == 0.0


def test_the_demo_build_keeps_every_sample_with_the_new_checks(demo_build):
    """The default config's text, shot-cut and face-fill checks reject none of the demo's samples (only the group
    photo and the coffee cup, as before)."""
    rejects = pd.read_parquet(demo_build / "rejects.parquet")
    assert sorted(rejects["reason"]) == ["no_face", "several_faces"]
    index = pd.read_parquet(demo_build / "index.parquet")
    assert (index["text_frac"] == 0).all() and (index["cuts"] == 0).all() and (index["face_fill"] > 0.35).all()
