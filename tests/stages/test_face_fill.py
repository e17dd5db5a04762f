"""Face fill: the face's side over the crop's side on the window's frame where it is smallest. A head in the crop
fills about half of it; a zoom-out from a face to a whole standing figure leaves a crop that is mostly body, which
is rejected as ``low_face_fill`` by the default config. The figure is drawn here around a real face photo."""

from __future__ import annotations

import pathlib
import sys

import cv2
import numpy as np
import pytest
import skimage.data

from human_motion.engine.build import initial_record, run_stages_local
from human_motion.media import write_mp4
from human_motion.metrics import face_fill
from human_motion.types import ClipSpec, Row

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "sources"))
from corpora import fast_config

SIDE = 1200  # the scene; frames are square views of it
HEAD_W = 110  # the pasted head's width in the scene


def standing_figure() -> tuple[np.ndarray, tuple[float, float]]:
    """A scene with one standing figure: the astronaut's head (scikit-image, public domain) on a drawn suit and
    legs, in front of a wall and a floor; and the face's centre."""
    scene = np.full((SIDE, SIDE, 3), (150, 170, 190), np.uint8)
    scene[int(SIDE * 0.8):] = (110, 100, 90)
    head = skimage.data.astronaut()[30:250, 140:330]  # hair to collar
    hh = int(head.shape[0] * HEAD_W / head.shape[1])
    cx, top = SIDE // 2, int(SIDE * 0.08)
    scene[top:top + hh, cx - HEAD_W // 2:cx - HEAD_W // 2 + HEAD_W] = cv2.resize(head, (HEAD_W, hh),
                                                                                 interpolation=cv2.INTER_AREA)
    suit, legs, neck = (230, 230, 225), (60, 60, 70), top + hh
    cv2.rectangle(scene, (cx - 120, neck), (cx + 120, neck + 380), suit, -1)
    for x in (cx - 170, cx + 120):
        cv2.rectangle(scene, (x, neck + 10), (x + 50, neck + 330), suit, -1)
    for x in (cx - 110, cx + 15):
        cv2.rectangle(scene, (x, neck + 380), (x + 95, int(SIDE * 0.95)), legs, -1)
    return scene, (cx, top + hh * 0.55)


def views(n: int, zoom_out: bool, out_px: int = 512) -> np.ndarray:
    """n frames: a close-up of the face (a view 2.6 heads wide), held, or widening to the whole scene."""
    scene, (fx, fy) = standing_figure()
    close = 2.6 * HEAD_W
    frames = []
    for i in range(n):
        view = close * (SIDE / close) ** (i / (n - 1)) if zoom_out else close
        k = (view - close) / (SIDE - close)  # 0 at the close-up, 1 at the whole scene
        cx, cy = fx + (SIDE / 2 - fx) * k, fy + (SIDE / 2 - fy) * k
        v = int(round(view))
        x0, y0 = (int(round(min(max(c - view / 2, 0), SIDE - view))) for c in (cx, cy))
        frames.append(cv2.resize(scene[y0:y0 + v, x0:x0 + v], (out_px, out_px), interpolation=cv2.INTER_AREA))
    return np.stack(frames)


def run_video(path: pathlib.Path) -> Row:
    cfg = fast_config({"demo": {}}, **{"decode.num_frames": 8, "decode.size_px": 128})
    (row,) = run_stages_local(cfg, [Row(0, 0, 1, initial_record(ClipSpec("test", path.stem, str(path))))])
    return row


def test_face_fill_is_the_smallest_face_over_the_crop():
    boxes = np.array([[0, 0, 50, 50], [0, 0, 20, 20], [0, 0, 5, 5]], np.float32)
    assert face_fill(boxes, np.array([True, True, False]), 100) == pytest.approx(0.2)  # the missing frame is out
    assert face_fill(boxes, np.array([False, False, False]), 100) == 0.0


@pytest.mark.parametrize("zoom_out", [False, True])
def test_a_zoom_out_to_the_whole_body_is_rejected_and_a_close_up_kept(tmp_path, zoom_out):
    path = tmp_path / f"zoom_{zoom_out}.mp4"
    write_mp4(str(path), views(24, zoom_out), 12.0)  # 2 s at 12 fps: one window of 8 samples at 4 fps
    row = run_video(path)
    fill = row.record["scores"]["face_fill"]
    if zoom_out:
        assert row.record["status"] == "low_face_fill", row.record.get("detail")
        assert fill < 0.12 and row.record["scores"]["cuts"] == 0  # a zoom is not a cut
        assert "select.min_face_fill=0.2" in row.record["detail"] and "\n" not in row.record["detail"]
    else:
        assert row.ok, row.record.get("detail")
        assert fill > 0.4
