"""Dynamic Degree and Motion Smoothness (VBench's definitions) on inputs with known answers.

The flow model is injected: OpenCV DIS measures the test's pans to within a few percent, so the known-answer tests
do not depend on RAFT weights; RAFT itself is checked for plumbing with random weights the test saves.
"""

from __future__ import annotations

import numpy as np
import pytest

from human_motion.eval.vbench import (
    VBenchRaft, dynamic_degree, dynamic_degree_params, motion_smoothness, pad_to_multiple, top5_mean,
)
from human_motion.backends.optical_flow import OpenCVFlow
from tests.eval.conftest import pan_video


def test_params_follow_vbench():
    assert dynamic_degree_params(512, 512, 16, 8.0) == (12.0, 4)  # 6 * 512 / 256, round(4 * 16 / 16)
    assert dynamic_degree_params(512, 768, 16, 24.0) == (12.0, 4)  # min(H, W); factor 1 above 8 fps
    assert dynamic_degree_params(256, 256, 16, 4.0) == (12.0, 4)  # factor max(1, 8 / fps) = 2 at 4 fps
    assert dynamic_degree_params(512, 512, 15, 8.0)[1] == 4  # round(3.75)
    assert dynamic_degree_params(512, 512, 10, 8.0)[1] == 2  # Python's round(2.5) == 2, as VBench


def test_top5_mean_and_padding():
    flow = np.zeros((20, 20, 2), np.float32)
    flow.reshape(-1, 2)[:20, 0] = 10.0  # exactly 5% of 400 pixels move by 10
    assert top5_mean(flow) == pytest.approx(10.0)
    padded = pad_to_multiple(np.zeros((3, 100, 130, 3), np.uint8))
    assert padded.shape == (3, 104, 136, 3)


def test_identical_frames_are_not_dynamic(astronaut):
    frames = np.stack([astronaut] * 16)
    result = dynamic_degree(frames, 8.0, OpenCVFlow("dis"))
    assert result["dynamic"] is False and result["pairs_above"] == 0
    assert max(result["pair_scores"]) < 1e-3


def test_pans_against_the_threshold(astronaut):
    flow = OpenCVFlow("dis")  # 512 px at 8 fps: threshold 12 px, 4 pairs needed
    slow, fast = dynamic_degree(pan_video(astronaut, 5), 8.0, flow), dynamic_degree(pan_video(astronaut, 16), 8.0, flow)
    assert not slow["dynamic"] and fast["dynamic"]
    assert np.median(fast["pair_scores"]) == pytest.approx(16, rel=0.05)
    # The same 16 px/frame video declared at 4 fps: VBench doubles the threshold (24 px), so it is not dynamic.
    assert not dynamic_degree(pan_video(astronaut, 16), 4.0, flow)["dynamic"]


def test_frame_sampling_at_high_fps():
    seen = {}

    def fake_flow(frames):
        seen["shape"] = frames.shape
        return np.zeros((len(frames) - 1, *frames.shape[1:3], 2), np.float32)

    result = dynamic_degree(np.zeros((48, 100, 100, 3), np.uint8), 24.0, fake_flow)
    assert result["frame_interval"] == 3 and result["sampled_frames"] == 16
    assert seen["shape"] == (16, 104, 104, 3)  # padded to a multiple of 8 before the flow


def test_raft_plumbing_with_saved_random_weights(tmp_path, astronaut):
    import cv2
    import torch
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    torch.save(raft_small(weights=None).state_dict(), tmp_path / "raft_small.pth")
    raft = VBenchRaft("raft_small", str(tmp_path / "raft_small.pth"), iters=2, batch_pairs=2)
    frames = np.stack([cv2.resize(astronaut, (128, 128))] * 3)
    seen = {}

    def recording(x):
        seen["flows"] = raft(x)
        return seen["flows"]

    result = dynamic_degree(frames, 8.0, recording)
    assert seen["flows"].shape == (2, 128, 128, 2) and np.isfinite(seen["flows"]).all()
    assert len(result["pair_scores"]) == 2 and isinstance(result["dynamic"], bool)


# --- Motion Smoothness: the scoring logic only, with a TRIVIAL interpolator (the mean of the two neighbours).
# This is not AMT-S and its numbers are not VBench's Motion Smoothness; it checks the frame selection and the score.

def _mean_interpolator(a, b):
    return ((a.astype(np.uint16) + b) // 2).astype(np.uint8)


def test_smoothness_scoring_identical_frames(astronaut):
    result = motion_smoothness(np.stack([astronaut] * 16), _mean_interpolator)
    assert result["motion_smoothness"] == pytest.approx(1.0)
    assert result["interpolated_frames"] == 7  # even frames 0..14 -> 7 middles, compared with frames 1..13


def test_smoothness_scoring_known_error():
    # Even frames black, odd frames at 51: the interpolated middles (black) miss every odd frame by 51.
    frames = np.zeros((9, 8, 8, 3), np.uint8)
    frames[1::2] = 51
    assert motion_smoothness(frames, _mean_interpolator)["motion_smoothness"] == pytest.approx((255 - 51) / 255)
    # A linear brightness ramp is interpolated exactly by the mean: perfectly smooth.
    ramp = np.stack([np.full((8, 8, 3), 10 * i, np.uint8) for i in range(9)])
    assert motion_smoothness(ramp, _mean_interpolator)["motion_smoothness"] == pytest.approx(1.0)


@pytest.mark.slow
def test_amt_interpolator_plumbing_with_random_weights(tmp_path, astronaut):
    """AmtInterpolator on VBench's own AMT-S code with random weights the test saves (plumbing only: random weights
    interpolate nothing sensible). Runs where `pip install vbench omegaconf` was done; skipped otherwise."""
    import os

    import cv2
    import torch

    pytest.importorskip("omegaconf")
    pytest.importorskip("vbench.third_party.amt.utils.build_utils")
    import vbench
    from omegaconf import OmegaConf
    from vbench.third_party.amt.utils.build_utils import build_from_cfg

    from human_motion.eval.vbench import AmtInterpolator

    config = os.path.join(os.path.dirname(vbench.__file__), "third_party", "amt", "cfgs", "AMT-S.yaml")
    torch.manual_seed(0)
    torch.save({"state_dict": build_from_cfg(OmegaConf.load(config).network).state_dict()}, tmp_path / "amt-s.pth")
    interpolate = AmtInterpolator(config, str(tmp_path / "amt-s.pth"), "cpu")
    frame = cv2.resize(astronaut, (96, 80))  # not a multiple of 16: padded and unpadded again
    middle = interpolate(frame, frame)
    assert middle.shape == frame.shape and middle.dtype == np.uint8
    assert motion_smoothness(np.stack([frame] * 5), interpolate)["interpolated_frames"] == 2
