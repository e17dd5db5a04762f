"""The face filter on real photos and videos: one clear face is accepted, several faces, no face and an identity
switch are rejected with their reason."""

import pathlib

import cv2
import matplotlib
import numpy as np
import pytest
import skimage.data

from human_motion.media import package_file, write_mp4
from human_motion.engine.build import initial_record, run_stages_local
from human_motion.sources.demo import render
from human_motion.types import ClipSpec, Row
from tests.conftest import small_build_config

INSIGHTFACE_IMAGES = package_file("insightface", "data", "images")


def run_spec(spec: ClipSpec, **sets) -> list[Row]:
    cfg = small_build_config(**sets)
    return list(run_stages_local(cfg, [Row(0, 0, 1, initial_record(spec))]))


def image_spec(path, clip_id="x") -> ClipSpec:
    return ClipSpec("test", clip_id, str(path), static=True)


def test_multi_face_photo_is_rejected_as_several_faces():
    (row,) = run_spec(image_spec(INSIGHTFACE_IMAGES / "t1.jpg"))
    assert row.record["status"] == "several_faces"
    assert row.record["stage"] == "select"  # a threshold (select.max_multi_face_frac), applied after decode


def test_single_face_photo_is_accepted_with_reference_face_and_embedding(tmp_path):
    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    (row,) = run_spec(image_spec(path))
    assert row.ok, row.record.get("detail")
    emb = np.load(__import__("io").BytesIO(row.blobs["arcface.npy"]), allow_pickle=False)
    assert emb.shape == (128,) and emb.dtype == np.float32
    assert np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-4)
    face = cv2.imdecode(np.frombuffer(row.blobs["face.jpg"], np.uint8), cv2.IMREAD_COLOR)
    assert face.shape == (256, 256, 3)
    assert row.record["id_embedding"] == {"kind": "dlib", "dim": 128,
                                          "backend": "dlib_face_recognition_resnet_model_v1"}
    assert row.record["action"] == "smiling"  # the astronaut smiles
    assert row.record["intensity"] == 0.0


def test_dev_photo_is_accepted(dev_data):
    (row,) = run_spec(image_spec(dev_data / "lp_d8_photo.jpg"))
    assert row.ok, row.record.get("detail")


def test_no_face_is_rejected(tmp_path):
    path = tmp_path / "coffee.png"
    cv2.imwrite(str(path), cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR))
    (row,) = run_spec(image_spec(path))
    assert row.record["status"] == "no_face"


def test_identity_switch_inside_a_window_is_rejected(tmp_path):
    """8 sampled frames of one person, then 8 of another, at the same place in the frame."""
    hopper = cv2.cvtColor(cv2.imread(str(pathlib.Path(matplotlib.get_data_path()) / "sample_data/grace_hopper.jpg")),
                          cv2.COLOR_BGR2RGB)
    a = render(skimage.data.astronaut(), (0.44, 0.255, 0.195), "pan", 0)[:18]
    b = render(hopper, (0.525, 0.40, 0.385), "pan", 0)[:18]
    path = tmp_path / "switch.mp4"
    write_mp4(str(path), np.concatenate([a[:17], b]), 8.0)
    (row,) = run_spec(ClipSpec("test", "switch", str(path)), **{"select.max_cuts": 1})  # else: shot_cut first
    assert row.record["status"] == "identity_switch", row.record
    assert row.record["scores"]["id_min_cos"] < 0.92


def test_small_face_and_low_resolution_are_rejected(tmp_path):
    small = cv2.resize(skimage.data.astronaut(), (256, 256))
    path = tmp_path / "small.png"
    cv2.imwrite(str(path), small)
    (row,) = run_spec(image_spec(path), **{"select.min_face_side_px": 80, "select.min_source_side_px": 0})
    assert row.record["status"] == "small_face"
    (row,) = run_spec(image_spec(path), **{"select.min_source_side_px": 300})
    assert row.record["status"] == "low_resolution"


def test_a_cut_to_the_same_person_is_checked_and_kept(tmp_path):
    """A cut inside a window is embedded again, and passes when the person is the same: one embedding a shot."""
    a = render(skimage.data.astronaut(), (0.44, 0.255, 0.195), "pan", 0)[:18]
    b = (a.astype(np.float32) * 0.5).astype(np.uint8)  # the same shot, much darker: a cut for the content detector
    path = tmp_path / "cut.mp4"
    write_mp4(str(path), np.concatenate([a[:17], b]), 8.0)
    (row,) = run_spec(ClipSpec("test", "cut", str(path)), **{"select.max_cuts": 1})  # else: shot_cut first
    assert row.ok, row.record.get("detail")
    assert 0.92 <= row.record["scores"]["id_min_cos"] < 1.0  # a second shot was embedded and compared
