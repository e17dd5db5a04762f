"""Face Similarity with the offline dlib embedder on a real face, and intensity fidelity on videos whose motion the
test controls."""

from __future__ import annotations

import json

import numpy as np
import pytest

from human_motion.eval.config import FaceSimConfig, IntensityConfig
from human_motion.eval.intensity_fidelity import IntensityMeter, fidelity_stats, plot_fidelity, within_group_stats
from tests.eval.conftest import pan_video


@pytest.fixture(scope="module")
def face_sim():
    from human_motion.eval.face_similarity import FaceSimilarity

    return FaceSimilarity(FaceSimConfig())  # mediapipe detector + dlib 128-d embedder, shipped by packages


def test_reference_video_scores_one_and_counts_faceless_frames(face_sim, astronaut):
    import matplotlib.cbook
    from skimage.transform import resize

    blank = np.full_like(astronaut, 128)
    result = face_sim.score(astronaut, np.stack([astronaut, astronaut, blank]))
    assert result["face_similarity"] == pytest.approx(1.0, abs=1e-4)
    assert result["frames_with_face"] == 2 and result["frames_without_face"] == 1
    # Another person scores lower than the same photo.
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        import PIL.Image

        hopper = np.asarray(PIL.Image.open(f).convert("RGB"))
    hopper = (resize(hopper, (512, 437)) * 255).astype(np.uint8)
    other = face_sim.score(astronaut, hopper[None])["face_similarity"]
    assert other is not None and other < 0.9


def test_no_reference_face(face_sim, astronaut):
    result = face_sim.score(np.full_like(astronaut, 128), astronaut[None])
    assert result["face_similarity"] is None and "reference" in result["face_error"]


def test_intensity_fidelity_of_controlled_pans(astronaut, tmp_path):
    meter = IntensityMeter(IntensityConfig())  # DIS at 256 px, reported at 512 px (the build's defaults)
    asked = [0, 2, 5, 10, 16]
    measured = [meter.measure(pan_video(astronaut, k)) for k in asked]
    stats = fidelity_stats(asked, measured)
    assert stats["spearman"] == pytest.approx(1.0)
    assert stats["mae"] < 0.5  # pixels per step
    assert stats["by_asked"]["10"]["mean"] == pytest.approx(10, rel=0.05)
    plot_fidelity(asked, measured, tmp_path / "fid.png", "test")
    assert (tmp_path / "fid.png").stat().st_size > 1000
    json.dumps(stats)  # plain data


def test_fidelity_stats_edge_cases():
    stats = fidelity_stats([5, 5], [4, 6])
    assert stats["spearman"] is None and stats["mae"] == 1.0  # correlation undefined for one asked value
    stats = fidelity_stats([0, 5, 10, 20], [1, 0, 3, 2])
    # ranks [2, 1, 4, 3]: rho = 1 - 6 * 4 / (4 * 15) = 0.6; MAE = (1 + 5 + 7 + 18) / 4
    assert stats["spearman"] == pytest.approx(0.6) and stats["mae"] == pytest.approx(7.75)


def test_face_similarity_through_an_arcface_pack(astronaut, tmp_path):
    """The paper's embedder path (insightface ArcFace from a model-pack folder), with a pack the test exports:
    mediapipe's 5 points align the face, the tiny ArcFace embeds it; the reference as a video scores 1."""
    from human_motion.eval.face_similarity import FaceSimilarity
    from tests.backends.test_insightface import TinyArcface, export

    folder = tmp_path / "models" / "tiny"
    folder.mkdir(parents=True)
    export(TinyArcface(), folder / "rec_tiny.onnx", (1, 3, 112, 112), 1, True)
    sim = FaceSimilarity(FaceSimConfig(embedder="insightface", insightface_root=str(tmp_path),
                                       insightface_pack="tiny"))
    assert sim.embedder.kind == "arcface"
    result = sim.score(astronaut, np.stack([astronaut, astronaut[:, ::-1]]))
    assert result["frames_with_face"] == 2 and -1 <= result["face_similarity"] <= 1
    assert sim.score(astronaut, astronaut[None])["face_similarity"] == pytest.approx(1.0, abs=1e-5)


def test_within_group_stats():
    groups = {"a": [(0, 0.1), (5, 4.0), (10, 9.0)], "b": [(0, 3.0), (5, 2.0), (10, 8.0)], "c": [(5, 1.0)]}
    stats = within_group_stats(groups)
    assert stats["groups"] == 2  # "c" has one asked value: no comparison
    assert stats["fraction_monotone"] == 0.5 and stats["mean_spearman"] == pytest.approx((1.0 + 0.5) / 2)


def test_large_reference_photos_are_downscaled(tmp_path):
    import cv2

    from human_motion.eval.inputs import REFERENCE_MAX_SIDE_PX, load_reference

    big = np.zeros((3000, 5000, 3), np.uint8)  # a stock-photo original: over media.read_image's default limit
    cv2.imwrite(str(tmp_path / "big.jpg"), big)
    assert load_reference(tmp_path / "big.jpg").shape == (1229, REFERENCE_MAX_SIDE_PX, 3)
