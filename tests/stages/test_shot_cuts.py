"""Shots are a window's boundary: cuts are counted on every decoded source frame of a window (the score ``cuts``) and
a window across one is rejected as ``shot_cut``, while the windows on each side of it are kept. Media are made
here: two moments of a development clip joined with a hard cut to another framing of the same person, and a shot
that flashes between two sampled frames."""

from __future__ import annotations

import pathlib
import sys

import cv2
import numpy as np

from human_motion.engine.build import initial_record, run_stages_local
from human_motion.media import iter_sampled_frames, open_video, write_mp4
from human_motion.metrics import cut_steps, window_cuts
from human_motion.stages.decode import ShotTap
from human_motion.types import ClipSpec, Row
from tests.conftest import small_build_config

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "sources"))
from corpora import face_frames, fast_config


def run_clip(path: pathlib.Path, cfg) -> list[Row]:
    return list(run_stages_local(cfg, [Row(0, 0, 1, initial_record(ClipSpec("test", path.stem, str(path))))]))


def frames_at(path: pathlib.Path, start_s: float, end_s: float, fps: float) -> np.ndarray:
    times = list(np.arange(start_s, end_s - 1e-6, 1 / fps))
    with open_video(str(path)) as container:
        return np.stack([f for _, f in iter_sampled_frames(container, times[0], times)])


def reframe(frames: np.ndarray, zoom: float) -> np.ndarray:
    """Another camera on the same scene: a closer framing around the face (upper middle of the frame)."""
    h, w = frames.shape[1:3]
    ch, cw = int(h / zoom), int(w / zoom)
    x0, y0 = (w - cw) // 2, int(min(max(0.45 * h - ch / 2, 0), h - ch))
    return np.stack([cv2.resize(f[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_AREA) for f in frames])


def test_cut_steps_absolute_and_adaptive():
    calm = [0.0, 3, 4, 3, 4, 3, 4, 3]
    assert not cut_steps(np.array(calm), 27, 15, 3).any()
    assert cut_steps(np.array([0.0, 3, 4, 40, 4, 3]), 27, 15, 3).tolist() == [False, False, False, True, False, False]
    # 24: under PySceneDetect's fixed 27, but 6x the change around it (another framing of the same person)
    adaptive = np.array([0.0, 3, 4, 24, 4, 3, 4])
    assert cut_steps(adaptive, 27, 15, 3)[3] and not cut_steps(adaptive, 27, 15, 0)[3]
    # A fast pan changes every step by as much: no step stands out.
    assert not cut_steps(np.array([0.0, 20, 22, 24, 21, 20, 23]), 27, 15, 3).any()
    # A step with fewer than two steps on one side is judged by the fixed threshold only (a clip's first frame).
    assert not cut_steps(np.array([0.0, 20, 3, 4, 3, 4]), 27, 15, 3).any()


def test_window_cuts_counts_steps_inside_the_window_only():
    times = np.arange(10) / 10  # frames at 0.0 .. 0.9 s; cuts into frames 3 and 8
    cuts = np.zeros(10, bool)
    cuts[[3, 8]] = True
    assert window_cuts(times, cuts, 0.0, 0.95) == 2
    assert window_cuts(times, cuts, 0.0, 0.45) == 1
    assert window_cuts(times, cuts, 0.3, 0.75) == 0  # the step into frame 3 starts before the window
    assert window_cuts(times, cuts, 0.45, 0.95) == 1


def test_a_shot_between_two_samples_is_found(tmp_path):
    """At 24 fps a 4 fps window samples every 6th frame; a 3-frame shot of another scene between two samples never
    reaches the stored frames, yet the window mixes shots in its source: the tap sees every frame."""
    a = face_frames(256, 256, 2.0, (0.3, 0.3, 0.7, 0.7), fps=24.0, pan_px=0.0)
    b = np.full_like(a[:3], (40, 160, 60))  # a green field, 3 frames
    video = np.concatenate([a[:8], b, a[11:]])  # frames 8-10: between the samples at frames 6 and 12
    path = tmp_path / "flash.mp4"
    write_mp4(str(path), video, 24.0)
    with open_video(str(path)) as container:
        tap = ShotTap(container)
        sampled = [f for _, f in iter_sampled_frames(tap, 0.0, [0.0, 0.25, 0.5, 0.75])]
    assert len(tap.times) >= 19 and sorted(np.argsort(tap.changes)[-2:]) == [8, 11]
    assert max(np.abs(s.astype(int) - sampled[0].astype(int)).mean() for s in sampled) < 3  # samples: one shot
    (row,) = run_clip(path, fast_config({"demo": {}}, **{"decode.size_px": 128}))
    assert row.record["status"] == "shot_cut", row.record.get("detail")
    assert row.record["scores"]["cuts"] == 2
    assert "select.max_cuts=0" in row.record["detail"] and "\n" not in row.record["detail"]


def test_the_tap_changes_no_decoded_frame(tmp_path):
    """The cut detector reads thumbnails beside the sampling loop: the sampled frames, and so every intensity (the
    README's demo table), are those of a decode without it."""
    path = tmp_path / "pan.mp4"
    write_mp4(str(path), face_frames(200, 160, 2.0, (0.3, 0.2, 0.7, 0.8), fps=12.0, pan_px=3.0), 12.0)
    times = [i / 4 for i in range(8)]
    with open_video(str(path)) as container:
        plain = [f for _, f in iter_sampled_frames(container, 0.0, times)]
    with open_video(str(path)) as container:
        tapped = [f for _, f in iter_sampled_frames(ShotTap(container), 0.0, times)]
    assert len(plain) == len(tapped) == 8
    assert all(np.array_equal(p, t) for p, t in zip(plain, tapped))


def test_a_hard_cut_between_two_framings_of_one_person(dev_data, tmp_path):
    """lp_d6 from 0 to 6.04 s, then a closer framing of the same woman 14 s later: the cut (between the samples at
    6.0 and 6.25 s) lies in window 1 of 3; windows 0 and 2 are one shot each and pass every check."""
    a = frames_at(dev_data / "lp_d6.mp4", 0.0, 6.05, 12.0)
    b = reframe(frames_at(dev_data / "lp_d6.mp4", 20.0, 26.0, 12.0), 1.3)
    path = tmp_path / "joined.mp4"
    write_mp4(str(path), np.concatenate([a, b]), 12.0)
    rows = run_clip(path, small_build_config())
    assert [r.record["window"] for r in rows] == [0, 1, 2]
    assert [r.record["status"] for r in rows] == ["ok", "shot_cut", "ok"], [r.record.get("detail") for r in rows]
    assert [r.record["scores"]["cuts"] for r in rows] == [0, 1, 0]
    assert all(r.record["scores"]["id_min_cos"] > 0.92 for r in (rows[0], rows[2]))  # the same person on each side
