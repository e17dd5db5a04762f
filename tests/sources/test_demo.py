"""The demo source's motion kinds: default clips unchanged, vertical pans, sweeps of every kind, action phrases."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from human_motion.sources.config import SourceConfig
from human_motion.sources.demo import ACTION_PHRASES, DemoSource, render

FACE = (0.44, 0.255, 0.195)  # the astronaut's face in skimage's photo


def specs(tmp_path, **options):
    return list(DemoSource("demo", SourceConfig(options={"photos": ["astronaut"], "rejects": False, **options}),
                           tmp_path).specs())


def test_default_clips_and_labels_are_the_same_as_before(tmp_path):
    got = [(s.clip_id, s.labels) for s in specs(tmp_path)]
    pans = [(f"astronaut_pan_{v}.mp4", {"photo": "astronaut", "motion": "pan", "px_per_step": float(v)})
            for v in (0, 2, 5, 10, 16)]
    assert got == [*pans,
                   ("astronaut_zoom_3.mp4", {"photo": "astronaut", "motion": "zoom", "pct_per_step": 3.0}),
                   ("astronaut_rotate_3.mp4", {"photo": "astronaut", "motion": "rotate", "deg_per_step": 3.0}),
                   ("astronaut_portrait.jpg", {"photo": "astronaut"})]


def test_every_kind_at_several_speeds_sweeps_and_names_its_kind_only(tmp_path):
    got = specs(tmp_path, pan_px=[0, 8], vertical_px=[8], zoom_pct=[0, 3.5], rotate_deg=[2], sweep_steps=8,
                action_phrases=True)
    names = [s.clip_id for s in got]
    assert names == ["astronaut_pan_0_sweep8.mp4", "astronaut_pan_8_sweep8.mp4", "astronaut_vertical_8_sweep8.mp4",
                     "astronaut_zoom_0_sweep8.mp4", "astronaut_zoom_3.5_sweep8.mp4",
                     "astronaut_rotate_2_sweep8.mp4", "astronaut_portrait.jpg"]
    for s in got[:-1]:
        assert s.labels["action"] == ACTION_PHRASES[s.labels["motion"]]
        assert not any(ch.isdigit() for ch in s.labels["action"])  # the phrase never tells the speed
    assert "action" not in got[-1].labels and got[-1].static
    assert len(set(ACTION_PHRASES.values())) == len(ACTION_PHRASES)


def test_pan_sweep_steps_sweeps_the_pans_alone(tmp_path):
    names = [s.clip_id for s in specs(tmp_path, pan_px=[4], zoom_pct=2, rotate_deg=0, pan_sweep_steps=8)]
    assert names == ["astronaut_pan_4_sweep8.mp4", "astronaut_zoom_2.mp4", "astronaut_portrait.jpg"]


@pytest.mark.parametrize("options, message", [
    ({"vertical_px": "fast"}, "options.vertical_px must be a number or a list"),
    ({"zoom_pct": [-1]}, "options.zoom_pct must not be negative"),
    ({"sweep_steps": 2.5}, "options.sweep_steps must be an integer >= 1"),
])
def test_bad_options_say_which_and_why(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        DemoSource("demo", SourceConfig(options=options), tmp_path)


def sampled(motion: str, speed: float) -> np.ndarray:
    """The first sweep (8 sampled steps at 4 fps, the demo renders 8 fps), grayscale at 256 px."""
    frames = render(skimage.data.astronaut(), FACE, motion, speed, pan_sweep_steps=8)[::2][:9]
    return np.stack([cv2.cvtColor(cv2.resize(f, (256, 256), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
                     for f in frames])


def test_a_vertical_sweep_moves_down_at_its_speed_then_back():
    frames = sampled("vertical", 8.0)
    (dx, dy), _ = cv2.phaseCorrelate(frames[0].astype(np.float32), frames[8].astype(np.float32))
    assert dy == pytest.approx(8 * 8.0 / 2, abs=1.0) and abs(dx) < 0.5  # 8 steps of 8 px at 512 = 32 px at 256
    full = render(skimage.data.astronaut(), FACE, "vertical", 8.0, pan_sweep_steps=8)[::2]
    np.testing.assert_array_equal(full[0], full[16])  # back where it started after 16 steps


@pytest.mark.parametrize("motion, speed", [("zoom", 4.0), ("rotate", 2.0)])
def test_zoom_and_rotation_sweep_from_one_end_to_the_other(motion, speed):
    """A zoom from 0.84x to 1.16x (4 %/step for 8 steps), a rotation from -8 to +8 degrees (2 deg/step)."""
    frames = sampled(motion, speed)
    # The face, at the frame centre, fills more of the frame (zoom) or turns (rotation) as the sweep goes on.
    lo, hi = (1 - 4 * speed / 100, 1 + 4 * speed / 100) if motion == "zoom" else (-4 * speed, 4 * speed)
    photo = cv2.cvtColor(cv2.resize(render(skimage.data.astronaut(), FACE, "pan", 0)[0], (256, 256),
                                    interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    for frame, value in ((frames[0], lo), (frames[8], hi)):
        m = (cv2.getRotationMatrix2D((128, 128), 0, value) if motion == "zoom"
             else cv2.getRotationMatrix2D((128, 128), value, 1.0))
        expected = cv2.warpAffine(photo, m, (256, 256), borderMode=cv2.BORDER_REFLECT_101)
        centre = slice(64, 192)
        diff = np.abs(expected[centre, centre].astype(float) - frame[centre, centre].astype(float)).mean()
        assert diff < 4.0, (motion, value, diff)


def test_photo_files_add_people_framed_at_their_face_box(tmp_path):
    """Any photo with a face box joins the demo's own: framed with the face at the centre, moved, and named by it."""
    photo = tmp_path / "someone.png"
    cv2.imwrite(str(photo), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    got = specs(tmp_path, photos=["someone"], pan_px=[4], zoom_pct=0, rotate_deg=0, sweep_steps=8,
                action_phrases=True, photo_files={"someone": {"path": str(photo), "face": list(FACE)}})
    assert [s.clip_id for s in got] == ["someone_pan_4_sweep8.mp4", "someone_portrait.jpg"]
    assert got[0].labels == {"photo": "someone", "motion": "pan", "px_per_step": 4.0,
                             "action": ACTION_PHRASES["pan"]}
    ours = cv2.imread(str(tmp_path / "_demo_media" / "someone_portrait.jpg"))
    builtin = specs(tmp_path / "b")[-1]  # the astronaut framed by the demo's own face box
    np.testing.assert_allclose(ours.astype(float), cv2.imread(builtin.path).astype(float), atol=3)


@pytest.mark.parametrize("photo_files, message", [
    ({"../x": {"path": "x.png", "face": [0.5, 0.5, 0.3]}}, "must be letters, digits"),
    ({"a": {"path": "x.png"}}, r"must be \{path: FILE, face"),
    ({"a": {"path": "x.png", "face": [0.5, 0.5]}}, "3 fractions"),
    ({"a": {"path": "/nonexistent.png", "face": [0.5, 0.5, 0.3]}}, "no file"),
    (["a"], "must map names"),
])
def test_bad_photo_files_say_which_and_why(tmp_path, photo_files, message):
    with pytest.raises(ValueError, match=message):
        DemoSource("demo", SourceConfig(options={"photo_files": photo_files}), tmp_path)
