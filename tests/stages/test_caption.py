"""The landmark captioner's rules on feature sequences whose answer is known."""

import numpy as np

from human_motion.stages.caption import Caption, describe, landmark_actions


def frames(n=16, **series):
    base = dict(mouth_open=0.01, mouth_width=0.75, eye_open=0.35, eye_open_r=0.35, eye_open_l=0.35, yaw=0.0,
                pitch=0.55, roll=0.0, corner_lift=0.0, brow_raise=0.4, brow_gap=0.4, face_h=300.0)
    out = []
    for i in range(n):
        f = dict(base)
        for k, v in series.items():
            f[k] = float(v[i])
        out.append(f)
    return out


def test_still_face_has_no_action():
    assert landmark_actions(frames())[0] == []


def test_talking_is_an_oscillating_mouth():
    mouth = 0.02 + 0.08 * (np.arange(16) % 2)
    assert landmark_actions(frames(mouth_open=mouth))[0][0] == "talking"


def test_mouth_opened_once_is_opening_mouth():
    mouth = np.r_[np.full(8, 0.01), np.full(8, 0.2)]
    assert landmark_actions(frames(mouth_open=mouth))[0] == ["opening mouth"]


def test_smile_needs_lifted_corners():
    lift = np.full(16, 0.05)
    assert "smiling" in landmark_actions(frames(corner_lift=lift))[0]
    # A grimace: wide mouth, corners not lifted.
    assert "smiling" not in landmark_actions(frames(mouth_width=np.full(16, 1.3)))[0]


def test_head_turn_direction_and_shake():
    turn = np.linspace(0, 0.4, 16)
    assert landmark_actions(frames(yaw=turn))[0] == ["turning head to the left"]
    assert landmark_actions(frames(yaw=-turn))[0] == ["turning head to the right"]
    shake = 0.15 * np.sin(np.arange(16) * 1.3)
    assert landmark_actions(frames(yaw=shake))[0] == ["shaking head"]


def test_blink_and_nod():
    eyes = np.full(16, 0.35)
    eyes[7] = 0.1
    assert landmark_actions(frames(eye_open_r=eyes, eye_open_l=eyes))[0] == ["blinking"]
    nod = 0.55 + 0.2 * np.sin(np.arange(16) * 1.2)
    assert landmark_actions(frames(pitch=nod))[0] == ["nodding"]


def test_description_prefers_source_text_then_template():
    assert describe("smiling", {"description": "A woman laughs."}, False) == "A woman laughs."
    assert describe("smiling", {}, False) == "A close-up video of a person smiling."
    assert describe("smiling", {"emotion": "happy"}, True) == "A close-up portrait photo of a person, happy, smiling."


def test_caption_stage_uses_source_action_and_keeps_landmark_candidate():
    from human_motion.types import Row
    from tests.conftest import small_build_config

    row = Row(0, 0, 1, {"static": False, "labels": {"action": "laughing"}, "status": "ok", "fps": 4.0,
                        "landmarks": {"features": frames(yaw=np.linspace(0, 0.4, 16))}})
    (out,) = Caption(small_build_config().caption).process_rows([row])
    assert out.record["action"] == "laughing"
    assert out.record["caption"]["candidates"] == {"landmarks": "turning head to the left", "source": "laughing"}


def test_whole_head_motion_from_the_face_box_track():
    still = [[100, 100, 300, 300]] * 16
    assert landmark_actions(frames(), still)[0] == []
    right = [[100 + 6 * i, 100, 300 + 6 * i, 300] for i in range(16)]  # the box moves to the image's right
    assert landmark_actions(frames(), right)[0] == ["moving to the left"]
    closer = [[200 - 4 * i, 200 - 4 * i, 300 + 4 * i, 300 + 4 * i] for i in range(16)]
    assert landmark_actions(frames(), closer)[0] == ["moving towards the camera"]
